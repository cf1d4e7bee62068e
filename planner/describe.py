"""Write a ``Placement`` out as a ``Plan``: everything a worker needs, nothing to recompute.

The placement says where each table's pieces go; this step names them, lays out each
rank's local weights, inputs and row slices, lists the shards and the exchange, and
fills in the costs (bytes per rank, optimizer state, traffic) and the totals.
"""

from __future__ import annotations

from planner.costs.comm import CommConfig, estimate_comm
from planner.costs.memory import footprint, offloaded_bytes
from planner.costs.summary import summarize
from planner.placement.grouping import TableGroups
from planner.placement.layout import RankLayout
from planner.placement.result import Placement
from planner.plan import (
    Exchange,
    FusedMember,
    Groups,
    LocalInput,
    LocalWeight,
    OutputAssembly,
    Parameters,
    Plan,
    RankPlan,
    RowSlice,
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
    ranks = [
        _rank_plan(rank, layout, held_everywhere, row_ranges, tables, inputs, spec.optimizer)
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
            **_cost_parameters(spec),
        ),
        tables=tables,
        inputs=inputs,
        groups=_named(groups, names),
        input_groups=_named(input_groups, input_names),
        shards=_shards(layouts, row_ranges, tables),
        ranks=ranks,
        exchange=_exchange(layouts, input_groups.table_parallel, input_names),
        stats=summarize(ranks, tables),
    )
    return with_comm_estimate(plan)


def _cost_parameters(spec: Spec) -> dict:
    return {
        "optimizer": spec.optimizer,
        "optimizer_slots": optimizer_slots(spec.optimizer),
        **{key: getattr(spec, key) for key in COST_FIELDS if key != "optimizer"},
    }


def with_comm_estimate(plan: Plan) -> Plan:
    """The plan with each rank's traffic estimated, when it names a global batch size."""
    config = CommConfig.from_parameters(plan.parameters)
    if config is None:
        return plan
    ranks = [
        rank.model_copy(update={"comm": comm})
        for rank, comm in zip(plan.ranks, estimate_comm(plan, config), strict=True)
    ]
    return plan.model_copy(update={"ranks": ranks, "stats": summarize(ranks, plan.tables)})


def _rank_plan(
    rank: int,
    layout: RankLayout,
    data_parallel: list[TableSpec],
    row_ranges: dict[int, list[tuple[int, int]]],
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
    row_slices = [RowSlice(table=tables[t].name, rows=row_ranges[t][rank]) for t in row_ranges]
    elements, size = footprint(
        weights, row_slices, data_parallel, {tables[t].name: tables[t] for t in row_ranges}
    )
    slots = optimizer_slots(optimizer)
    state = size * slots
    return RankPlan(
        rank=rank,
        table_parallel_weights=weights,
        table_parallel_inputs=[
            LocalInput(input=inputs[i].name, weight=w, row_offset=offset)
            for i, w, offset in layout.inputs
        ],
        row_slices=row_slices,
        elements=elements,
        bytes=size + state,
        optimizer_bytes=state,
        host_bytes=offloaded_bytes(weights) * (1 + slots),
    )


def _shards(
    layouts: list[RankLayout],
    row_ranges: dict[int, list[tuple[int, int]]],
    tables: list[TableSpec],
) -> list[Shard]:
    """Every non-empty piece, ordered by table (spec order), then rank."""
    found = [
        (piece.table, rank, (0, tables[piece.table].rows), piece.cols, piece.on_host)
        for rank, layout in enumerate(layouts)
        for piece in layout.pieces
    ]
    found += [
        (table, rank, rows, (0, tables[table].width), False)
        for table, ranges in row_ranges.items()
        for rank, rows in enumerate(ranges)
        if rows[1] > rows[0]
    ]
    found.sort(key=lambda item: (item[0], item[1]))
    return [
        Shard(
            table=tables[t].name,
            rank=rank,
            rows=rows,
            cols=cols,
            device="host" if on_host else "gpu",
        )
        for t, rank, rows, cols, on_host in found
    ]


def _exchange(layouts: list[RankLayout], tp_inputs: list[int], input_names: list[str]) -> Exchange:
    """Output widths in worker order, and which received outputs rebuild each input."""
    flat = [(i, layout.weights[w].width) for layout in layouts for i, w, _ in layout.inputs]
    positions: dict[int, list[int]] = {}
    for position, (input_index, _) in enumerate(flat):
        positions.setdefault(input_index, []).append(position)
    return Exchange(
        output_widths=[width for _, width in flat],
        outputs=[OutputAssembly(input=input_names[i], pieces=positions[i]) for i in tp_inputs],
    )


def _named(groups: TableGroups, names: list[str]) -> Groups:
    return Groups(**{group: [names[i] for i in ids] for group, ids in vars(groups).items()})
