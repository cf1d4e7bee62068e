"""Spec in, plan out: place the tables with the strategy the spec names, then describe."""

from __future__ import annotations

from planner.describe import describe
from planner.errors import SpecError
from planner.files import MAX_LIST_ITEMS
from planner.placement.registry import place
from planner.plan import Plan
from planner.spec import Spec


def make_plan(spec: Spec) -> Plan:
    """Place ``spec``'s tables over its ranks and describe the result as a plan.

    A spec built in Python skips the YAML reader's list limit; it is checked here, so
    that no plan is made that ``load_plan`` would refuse."""
    spec = spec.normalized()
    for key, found in (("tables", spec.tables), ("inputs", spec.resolved_inputs())):
        if len(found) > MAX_LIST_ITEMS:
            raise SpecError(
                f"{key}: {len(found):,} entries, more than the {MAX_LIST_ITEMS:,} a plan holds"
            )
    return describe(spec, place(spec))
