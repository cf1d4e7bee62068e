"""Does a plan belong to a spec? The fingerprint, then a re-plan for equality.

A plan's checks on its own terms, and the checked loaders, are in
``planner.consistency``; ``plan_problems`` is also importable from here, where it was
first.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from planner.consistency import plan_problems
from planner.errors import brief
from planner.field_errors import option_name
from planner.plan import Plan
from planner.planning import make_plan
from planner.spec import OPTION_FIELDS, Spec
from planner.spec_fields import SIZE_FIELDS
from planner.units import exact_size

__all__ = ["plan_problems", "spec_problems"]


def spec_problems(plan: Plan, spec: Spec) -> list[str]:
    """Does ``plan`` belong to ``spec``? Fingerprint first, then a re-plan for equality."""
    if spec.fingerprint() != plan.fingerprint:
        try:
            planned: Spec | None = plan.spec()
        except ValidationError:  # a plan that fails its own checks: nothing to compare with
            planned = None
        options = None if planned is None else _options_made_with(plan, planned, spec)
        remedy = (
            f"pass validate the options the plan was made with ({options}), or " if options else ""
        )
        return [
            f"fingerprint: does not match the spec "
            f"({_differences(planned, spec, plan.parameters.row_reduction)}); "
            f"{remedy}re-run planner plan on the spec and commit the new plan"
        ]
    if make_plan(spec) != plan:
        return ["the plan differs from what this planner makes for the spec; re-run planner plan"]
    return []


def _differences(
    plan_spec: Spec | None, spec: Spec, chosen: str = "direct", shown_at_most: int = 3
) -> str:
    """The settings, tables and inputs that differ between the spec a plan records and
    ``spec``, as 'field: X in the plan, Y in the spec'; a row reduction the plan left to
    the planner says what it ``chosen``."""
    if plan_spec is None:
        return "the plan's own settings are inconsistent"
    planned = plan_spec.normalized().model_dump(mode="json")
    given = spec.normalized().model_dump(mode="json")
    found = [
        _difference(key, planned[key], given[key])
        for key in planned
        if key not in ("tables", "inputs") and planned[key] != given[key]
    ]
    if planned["row_reduction"] is None and given["row_reduction"] is not None:
        made = "auto chose host" if chosen == "host" else "so direct"
        found = [
            f"row_reduction: left to the planner in the plan ({made}), "
            f"{brief(given['row_reduction'])} in the spec; leave row_reduction unset to match"
            if item.startswith("row_reduction:")
            else item
            for item in found
        ]
    for key in ("tables", "inputs"):
        found += _list_differences(key, planned[key], given[key])
    if not found:
        return "the plan's fingerprint is not that of its own tables and settings"
    more = len(found) - shown_at_most
    return "; ".join(found[:shown_at_most]) + (f"; and {more:,} more" if more > 0 else "")


def _options_made_with(plan: Plan, planned: Spec, spec: Spec) -> str | None:
    """The options (``--optimizer adagrad --device-memory 600KiB``) that turn ``spec`` into
    ``planned``, the spec the plan records, when options alone do (its tables and inputs
    are the spec's, and no setting the plan leaves unset is set in the spec); else None."""
    changed = {
        key: getattr(planned, key)
        for key in OPTION_FIELDS
        if getattr(planned, key) != getattr(spec, key)
    }
    if (
        None in changed.values()
        or spec.model_copy(update=changed).fingerprint() != plan.fingerprint
    ):
        return None
    return " ".join(f"{option_name(key)} {_setting(key, value)}" for key, value in changed.items())


def _setting(key: str, value: Any) -> str:
    """A setting as an option takes it: sizes exact with their unit (600KiB), others as
    they are."""
    return exact_size(value) if key in SIZE_FIELDS else str(value)


def _difference(what: str, in_plan: object, in_spec: object) -> str:
    return f"{what}: {_shown(what, in_plan)} in the plan, {_shown(what, in_spec)} in the spec"


def _shown(what: str, value: Any) -> str:
    """A value in a difference: sizes exact with their unit, other values quoted."""
    if value is None:
        return "unset (or auto)" if what == "row_reduction" else "not set"
    return exact_size(value) if what in SIZE_FIELDS else brief(value)


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
