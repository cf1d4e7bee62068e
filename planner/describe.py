"""Write a ``Placement`` out as a ``Plan``: everything a worker needs, nothing to recompute.

The placement says where each table's pieces go; this step names them, lays out each
rank's local weights, inputs and row slices, lists the shards and the exchange, and
fills in the costs (bytes per rank, optimizer state, traffic) and the totals.
"""

from __future__ import annotations

import numpy as np

from planner.costs.comm import CommConfig, estimate_comm
from planner.costs.memory import footprint, offloaded_bytes, row_split_footprints
from planner.costs.steptime import plan_step
from planner.costs.summary import summarize
from planner.placement.grouping import TableGroups
from planner.placement.layout import RankLayout
from planner.placement.result import Placement
from planner.plan import (
    FusedMember,
    Groups,
    LocalInput,
    LocalWeight,
    Parameters,
    Plan,
    RankPlan,
    RowSplit,
    Shard,
)
from planner.spec import COST_FIELDS, InputSpec, Spec, TableSpec
from planner.units import optimizer_slots


def describe(spec: Spec, placement: Placement) -> Plan:
    """Write a placement out as a plan: everything a worker needs, nothing to recompute."""
    tables, inputs = spec.tables, spec.resolved_inputs()
    groups, layouts, row_ranges = placement.groups, placement.layouts, placement.row_ranges
    input_groups = placement.input_groups
    held_everywhere = [tables[t] for t in groups.data_parallel]
    row_splits = [_row_split(tables[t].name, ranges) for t, ranges in row_ranges.items()]
    by_name = {t.name: t for t in tables}
    row_held = row_split_footprints(row_splits, by_name, spec.world_size)
    ranks = [
        _rank_plan(rank, layout, held_everywhere, row_held, tables, inputs, spec.optimizer)
        for rank, layout in enumerate(layouts)
    ]
    names = [t.name for t in tables]
    input_names = [i.name for i in inputs]
    plan = Plan(
        fingerprint=spec.fingerprint(),
        world_size=spec.world_size,
        strategy=placement.strategy,
        parameters=Parameters(
            requested_strategy=spec.strategy,
            column_slice_threshold=placement.column_threshold,
            column_slice_threshold_source=placement.threshold_source,
            row_slice_threshold=placement.thresholds.row_slice,
            data_parallel_threshold=placement.thresholds.data_parallel,
            requested_column_slice_threshold=spec.column_slice_threshold,
            requested_row_slice_threshold=spec.row_slice_threshold,
            requested_data_parallel_threshold=spec.data_parallel_threshold,
            dp_input=spec.dp_input,
            **_cost_parameters(spec, placement),
        ),
        tables=tables,
        inputs=inputs,
        groups=_named(groups, names),
        input_groups=_named(input_groups, input_names),
        row_splits=row_splits,
        shards=_shards(layouts, tables),
        ranks=ranks,
        stats=summarize(ranks, tables),
    )
    return with_comm_estimate(plan)


def _cost_parameters(spec: Spec, placement: Placement) -> dict:
    """The training, cluster and offload settings, as the spec gives them; the row
    reduction as the placement runs it, beside what the spec asked."""
    return {
        **{key: getattr(spec, key) for key in COST_FIELDS},
        "optimizer_slots": optimizer_slots(spec.optimizer),
        "row_reduction": placement.row_reduction or spec.row_reduction or "direct",
        "requested_row_reduction": spec.row_reduction,
    }


def with_comm_estimate(plan: Plan) -> Plan:
    """The plan with each rank's traffic and step time estimated, when it names a global
    batch size."""
    config = CommConfig.from_parameters(plan.parameters)
    steps = plan_step(plan)
    if config is None or steps is None:
        return plan
    ranks = [
        rank.model_copy(update={"comm": comm, "step": step})
        for rank, comm, step in zip(plan.ranks, estimate_comm(plan, config), steps, strict=True)
    ]
    return plan.model_copy(update={"ranks": ranks, "stats": summarize(ranks, plan.tables)})


def _rank_plan(
    rank: int,
    layout: RankLayout,
    data_parallel: list[TableSpec],
    row_held: tuple[np.ndarray, np.ndarray],
    tables: list[TableSpec],
    inputs: list[InputSpec],
    optimizer: str = "sgd",
) -> RankPlan:
    weights = [
        LocalWeight(
            rows=weight.rows,
            width=weight.width,
            combiner=tables[weight.members[0].table].combiner,
            dtype=tables[weight.members[0].table].dtype,
            initializer=tables[weight.members[0].table].initializer,
            device="host" if weight.on_host else "gpu",
            members=[
                FusedMember(
                    table=tables[piece.table].name,
                    row_offset=offset,
                    rows=tables[piece.table].rows,
                    cols=piece.cols,
                )
                for piece, offset in zip(weight.members, weight.offsets, strict=True)
            ],
        )
        for weight in layout.weights
    ]
    elements, size = footprint(weights, [], data_parallel, {})
    elements += int(row_held[0][rank])
    size += int(row_held[1][rank])
    slots = optimizer_slots(optimizer)
    state = size * slots
    return RankPlan(
        rank=rank,
        table_parallel_weights=weights,
        table_parallel_inputs=[
            LocalInput(input=inputs[i].name, weight=w, row_offset=offset)
            for i, w, offset in layout.inputs
        ],
        elements=elements,
        bytes=size + state,
        optimizer_bytes=state,
        host_bytes=offloaded_bytes(weights) * (1 + slots),
    )


def _shards(layouts: list[RankLayout], tables: list[TableSpec]) -> list[Shard]:
    """Every table-parallel piece, by table (spec order), then rank; the plan adds the
    row-sliced tables' from their splits."""
    found = sorted(
        (piece.table, rank, piece.cols, piece.on_host)
        for rank, layout in enumerate(layouts)
        for piece in layout.pieces
    )
    return [
        Shard(
            table=tables[t].name,
            rank=rank,
            rows=(0, tables[t].rows),
            cols=cols,
            device="host" if on_host else "gpu",
        )
        for t, rank, cols, on_host in found
    ]


def _row_split(table: str, ranges: list[tuple[int, int]]) -> RowSplit:
    """The compact form of a row-sliced table's ranges, as even as they go over all ranks
    or over the consecutive ranks that hold rows (a group split, ``auto``'s per host).

    Placements split rows evenly (upstream: the remainder to the first ranks; auto: to
    the ranks after the previous table's); anything else is a bug, not a plan.
    """
    counts = np.array([stop - start for start, stop in ranges], np.int64)
    firsts = np.array([first for first, _ in ranges], np.int64)
    if firsts[0] or np.any(np.diff(firsts) != counts[:-1]):
        raise ValueError(f"row split of {table!r} is not in rank order: {ranges}")
    start = _remainder_start(counts)
    if start is not None:
        return RowSplit(table=table, ranks=(0, len(counts)), remainder_start=start)
    held = np.flatnonzero(counts)
    first, stop = (int(held[0]), int(held[-1]) + 1) if len(held) else (0, 0)
    start = _remainder_start(counts[first:stop]) if len(held) else None
    if start is None:
        raise ValueError(f"row split of {table!r} is not even: {counts.tolist()}")
    return RowSplit(table=table, ranks=(first, stop), remainder_start=start)


def _remainder_start(counts: np.ndarray) -> int | None:
    """Where an even split's remainder rows start in its group; None: not even."""
    size, total = len(counts), int(counts.sum())
    even, extra = divmod(total, size)
    longer = np.flatnonzero(counts > even)
    start = int(next((j for j in longer if counts[j - 1] == even), 0)) if extra else 0
    expected = np.full(size, even, np.int64)
    expected[(start + np.arange(extra)) % size] += 1
    return start if np.array_equal(counts, expected) else None


def _named(groups: TableGroups, names: list[str]) -> Groups:
    return Groups(**{group: [names[i] for i in ids] for group, ids in vars(groups).items()})
