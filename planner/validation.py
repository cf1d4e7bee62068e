"""Does a plan belong to a spec? The fingerprint, then a re-plan for equality.

A plan's checks on its own terms, and the checked loaders, are in
``planner.consistency``; ``plan_problems`` is also importable from here, where it was
first.
"""

from __future__ import annotations

from pydantic import ValidationError

from planner.consistency import plan_problems
from planner.errors import brief
from planner.plan import Plan
from planner.planning import make_plan
from planner.spec import Spec

__all__ = ["plan_problems", "spec_problems"]


def spec_problems(plan: Plan, spec: Spec) -> list[str]:
    """Does ``plan`` belong to ``spec``? Fingerprint first, then a re-plan for equality."""
    if spec.fingerprint() != plan.fingerprint:
        return [
            f"fingerprint: does not match the spec ({_differences(plan, spec)}); "
            "re-run planner plan on the spec and commit the new plan"
        ]
    if make_plan(spec) != plan:
        return ["the plan differs from what this planner makes for the spec; re-run planner plan"]
    return []


def _differences(plan: Plan, spec: Spec, shown_at_most: int = 3) -> str:
    """The settings, tables and inputs that differ, as 'field: X in the plan, Y in the spec'."""
    try:
        planned = plan.spec().normalized().model_dump(mode="json")
    except ValidationError:  # a plan that fails its own checks: nothing to compare with
        return "the plan's own settings are inconsistent"
    given = spec.normalized().model_dump(mode="json")
    found = [
        _difference(key, planned[key], given[key])
        for key in planned
        if key not in ("tables", "inputs") and planned[key] != given[key]
    ]
    for key in ("tables", "inputs"):
        found += _list_differences(key, planned[key], given[key])
    if not found:
        return "the plan's fingerprint is not that of its own tables and settings"
    more = len(found) - shown_at_most
    return "; ".join(found[:shown_at_most]) + (f"; and {more:,} more" if more > 0 else "")


def _difference(what: str, in_plan: object, in_spec: object) -> str:
    return f"{what}: {brief(in_plan)} in the plan, {brief(in_spec)} in the spec"


def _list_differences(key: str, in_plan: list[dict], in_spec: list[dict]) -> list[str]:
    before = {item["name"]: item for item in in_plan}
    after = {item["name"]: item for item in in_spec}
    found = [f"{key}: {brief(name)} only in the spec" for name in after if name not in before]
    found += [f"{key}: {brief(name)} only in the plan" for name in before if name not in after]
    for name, item in after.items():
        if name in before:
            found += [
                _difference(f"{key}[{brief(name)}].{field}", before[name][field], value)
                for field, value in item.items()
                if before[name][field] != value
            ]
    if not found and list(before) != list(after):
        found.append(f"{key}: the same names in another order")
    return found
