"""The one error a checkpoint operation raises on purpose."""

import shlex
from pathlib import Path

from planner.errors import PlannerError, and_more, shown


class CheckpointError(PlannerError):
    """A checkpoint cannot be read, written or used: the message names the file and the fix."""


VERIFY = "run planner checkpoint verify"


def tables_listed_by(checkpoint: str | Path) -> str:
    """Where to see what a checkpoint holds, when it is not what a plan asks for (verify
    checks a checkpoint against itself, so it would find nothing wrong)."""
    return f"planner checkpoint inspect {shlex.quote(shown(str(checkpoint)))} lists its tables"


def raise_first(problems: list[str], where: object = None, others: str = VERIFY) -> None:
    """Raise the first of ``problems`` as one line (counting the others, and saying where
    to see them all), if any."""
    if problems:
        prefix = f"{where}: " if where is not None else ""
        raise CheckpointError(prefix + problems[0] + and_more(len(problems), then=others))
