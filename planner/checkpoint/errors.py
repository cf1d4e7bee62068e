"""The one error a checkpoint operation raises on purpose."""

from planner.errors import PlannerError, and_more


class CheckpointError(PlannerError):
    """A checkpoint cannot be read, written or used: the message names the file and the fix."""


VERIFY = "run planner checkpoint verify"


def raise_first(problems: list[str], where: object = None, others: str = VERIFY) -> None:
    """Raise the first of ``problems`` as one line (counting the others, and saying where
    to see them all), if any."""
    if problems:
        prefix = f"{where}: " if where is not None else ""
        raise CheckpointError(prefix + problems[0] + and_more(len(problems), then=others))
