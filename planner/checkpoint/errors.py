"""The one error a checkpoint operation raises on purpose."""

from planner.errors import PlannerError


class CheckpointError(PlannerError):
    """A checkpoint cannot be read, written or used: the message names the file and the fix."""
