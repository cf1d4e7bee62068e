"""Spec in, plan out: place the tables with the strategy the spec names, then describe."""

from __future__ import annotations

from planner.describe import describe
from planner.placement.registry import place
from planner.plan import Plan
from planner.spec import Spec


def make_plan(spec: Spec) -> Plan:
    """Place ``spec``'s tables over its ranks and describe the result as a plan."""
    spec = spec.normalized()
    return describe(spec, place(spec))
