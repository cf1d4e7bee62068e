"""Spec in, plan out: place the tables with the strategy the spec names, then describe."""

from __future__ import annotations

from planner.costs.memory import ranks_over_host_limit, ranks_over_limit
from planner.describe import describe
from planner.errors import SpecError
from planner.files import MAX_LIST_ITEMS
from planner.placement.offload import with_offload
from planner.placement.registry import place
from planner.placement.upstream import UPSTREAM_STRATEGIES, upstream_placement
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
    plan = describe(spec, place(spec))
    if spec.strategy == "auto" and spec.offload != "none" and spec.world_size > 1:
        return _checked_against_upstream(spec, plan)
    return plan


def _checked_against_upstream(spec: Spec, plan: Plan) -> Plan:
    """``auto``'s plan, unless with offload an upstream strategy's is better.

    ``auto`` weighs its candidates before pieces move to host memory, and offload moves
    table-parallel pieces only: a candidate that row-slices a table can fit nowhere when
    the same table whole, offloaded, fits; and what moves changes the step. So with
    offload every upstream plan is made too, offloaded, and ``auto`` keeps its promise:
    it fits where one of them fits, and under ``time`` its step is at most the fastest
    fitting one's (under ``memory``, or when none fits, its largest rank at most theirs)."""
    by_time = spec.resolved_objective() == "time"

    def rank(made: Plan) -> tuple[bool, float]:
        fits = not ranks_over_limit(made) and not ranks_over_host_limit(made)
        step = made.stats.step
        timed = by_time and fits and step is not None
        return not fits, step.step_seconds if timed else made.stats.max_rank_bytes

    placements = (
        upstream_placement(spec.model_copy(update={"strategy": name}))
        for name in UPSTREAM_STRATEGIES
    )
    upstream = [describe(spec, with_offload(spec, placement)) for placement in placements]
    return min([plan, *upstream], key=rank)  # the first of equals: auto's own
