"""Upstream's pipeline: group, column-slice, assign, merge and fuse, row-slice.

One placement function serves upstream's three strategies; they differ only in the rule
that deals column slices to ranks (``planner.placement.assignment``).
"""

from __future__ import annotations

from planner.errors import TooManyShards
from planner.files import MAX_SHARDS
from planner.placement.assignment import ASSIGNMENTS, Assign
from planner.placement.grouping import (
    TableGroups,
    effective_thresholds,
    group_inputs,
    group_tables,
    table_of_input,
)
from planner.placement.layout import RankLayout, inputs_by_table, merge_slices, rank_layout
from planner.placement.result import Placement
from planner.placement.slicing import (
    automatic_column_threshold,
    column_slice_count,
    ranges_from_sizes,
    split_evenly,
)
from planner.spec import Spec, TableSpec

UPSTREAM_STRATEGIES: tuple[str, ...] = tuple(ASSIGNMENTS)  # the three upstream placements


def upstream_placement(spec: Spec) -> Placement:
    """Upstream's rules for ``spec.strategy``; with one rank the strategy is basic."""
    tables, world = spec.tables, spec.world_size
    thresholds = effective_thresholds(spec)
    groups = group_tables(spec, thresholds)
    input_tables = table_of_input(tables, spec.resolved_inputs())
    input_groups = group_inputs(groups, input_tables)
    column_threshold, threshold_source = _column_threshold(spec, groups)
    strategy = "basic" if world == 1 else spec.strategy
    layouts = _table_parallel_layouts(
        tables,
        groups.table_parallel,
        input_groups.table_parallel,
        input_tables,
        column_threshold,
        ASSIGNMENTS[strategy],
        world,
    )
    row_ranges = {
        t: ranges_from_sizes(split_evenly(tables[t].rows, world)) for t in groups.row_sliced
    }
    return Placement(
        strategy=strategy,
        groups=groups,
        thresholds=thresholds,
        column_threshold=column_threshold,
        threshold_source=threshold_source,
        layouts=layouts,
        row_ranges=row_ranges,
        input_groups=input_groups,
    )


def _column_threshold(spec: Spec, groups: TableGroups) -> tuple[int | None, str]:
    if spec.column_slice_threshold is not None:
        return spec.column_slice_threshold, "spec"
    sizes = [spec.tables[t].elements for t in groups.table_parallel]
    threshold = automatic_column_threshold(sizes, spec.world_size) if sizes else None
    return threshold, "none" if threshold is None else "automatic"


def _table_parallel_layouts(
    tables: list[TableSpec],
    table_ids: list[int],
    input_ids: list[int],
    input_tables: list[int],
    threshold: int | None,
    assign: Assign,
    world: int,
) -> list[RankLayout]:
    counts = {
        t: column_slice_count(tables[t].elements, tables[t].width, threshold, world)
        for t in table_ids
    }
    if sum(counts.values()) > MAX_SHARDS:
        enough = _threshold_for_shards([tables[t] for t in table_ids], threshold or 0, world)
        raise TooManyShards(
            f"column_slice_threshold {threshold:,} cuts {len(table_ids):,} tables into "
            f"{sum(counts.values()):,} column slices on {world:,} ranks, more than the "
            f"{MAX_SHARDS:,} a plan may hold",
            f"raise column_slice_threshold to {enough:,} or more",
        )
    slice_widths = {t: split_evenly(tables[t].width, counts[t]) for t in table_ids}
    owners = [t for t in table_ids for _ in slice_widths[t]]
    sizes = [tables[t].rows * width for t in table_ids for width in slice_widths[t]]
    assignment = assign(sizes, owners, world) if owners else [[] for _ in range(world)]
    readers = inputs_by_table(input_ids, input_tables)
    return [
        rank_layout(pieces, tables, readers)
        for pieces in merge_slices(assignment, slice_widths)
    ]


def _threshold_for_shards(tables: list[TableSpec], low: int, world: int) -> int:
    """The smallest column slice threshold above ``low`` that cuts ``tables`` into at
    most ``MAX_SHARDS`` slices (slices only get fewer as it rises), by bisection."""
    high = max(t.elements for t in tables)  # every table whole: one slice each

    def slices(threshold: int) -> int:
        return sum(column_slice_count(t.elements, t.width, threshold, world) for t in tables)

    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if slices(middle) <= MAX_SHARDS else (middle, high)
    return high
