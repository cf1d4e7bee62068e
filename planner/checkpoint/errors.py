"""The one error a checkpoint operation raises on purpose."""

from planner.errors import PlannerError


class CheckpointError(PlannerError):
    """A checkpoint cannot be read, written or used: the message names the file and the fix."""


def raise_first(problems: list[str], where: object = None) -> None:
    """Raise the first of ``problems`` as one line (counting the others), if any."""
    if problems:
        more = len(problems) - 1
        suffix = f" (and {more} more; run planner checkpoint verify)" if more else ""
        prefix = f"{where}: " if where is not None else ""
        raise CheckpointError(prefix + problems[0] + suffix)
