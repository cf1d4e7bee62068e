"""Writing plans: checked, sealed, whole.

A plan the planner writes passes ``plan_problems`` first; the file then carries a seal
(``planner.seal``) so that the loaders of a training job's ranks need not check it
again. A plan that fails its checks (made by hand, or edited in memory) is written
without one, for ``planner validate`` and the loaders to say what is wrong.
"""

from __future__ import annotations

from pathlib import Path

from planner.consistency import plan_problems
from planner.errors import PlanFileError, shown
from planner.files import MAX_PLAN_BYTES, too_large_to_write, write_atomically
from planner.plan import Plan
from planner.seal import sealed


def plan_text(plan: Plan, target: str = "<plan>") -> str:
    """The plan as its file holds it, sealed when it passes its checks; PlanFileError
    (naming ``target``, where it was to be written) when that is more than a plan may be.

    Every worker parses the whole file, and ``read_plan`` refuses one over
    ``MAX_PLAN_BYTES``, so a larger plan is not written for nobody to read back.
    """
    text = plan.to_json()
    if problem := too_large_to_write(text, MAX_PLAN_BYTES, "plan"):
        raise PlanFileError(
            f"{target}: {problem}; plan with fewer ranks, or fewer row-sliced tables (each "
            "lists a shard on every rank)"
        )
    return text if plan_problems(plan) else sealed(text)


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write atomically: a temp file in the same folder, then rename over ``path``.

    Readers (CI, a training job starting) never see half a plan.
    """
    path = Path(path)
    text = plan_text(plan, shown(str(path)))
    try:
        write_atomically(text, path)
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot write the plan ({exc.strerror or exc})") from exc
