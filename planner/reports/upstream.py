"""A plan in upstream's vocabulary: the positional lists ``DistEmbeddingStrategy`` publishes.

Upstream (distributed-embeddings) describes a placement with nested lists of positions,
which training scripts read (``layer.strategy.input_ids_list[rank]`` says which inputs a
rank feeds with ``dp_input=False``). These are derived here from what a plan file holds,
so the runtime can publish them and the parity tests can compare a plan with upstream's
own lists. Positions follow upstream's conventions: table-parallel lists count within
the table-parallel group (``table_groups[1]``, ``input_groups[1]``), not over all
tables.

Not derived: ``global_configs``, ``dp_configs``, ``row_sliced_configs`` and
``local_configs`` (Keras layer configs, which a plan does not hold) and
``sliced_out_ranges`` (upstream's concat bookkeeping, wrong when slices of a shared table
merge on one rank; a plan lists each input's received pieces instead).
"""

from __future__ import annotations

from planner.plan import GROUP_NAMES, Plan


def upstream_lists(plan: Plan) -> dict:
    """Upstream's lists for ``plan``, by attribute name; table-parallel ones per rank."""
    table_index = {t.name: i for i, t in enumerate(plan.tables)}
    input_index = {i.name: n for n, i in enumerate(plan.inputs)}
    groups = [list(getattr(plan.groups, g)) for g in GROUP_NAMES]
    input_groups = [list(getattr(plan.input_groups, g)) for g in GROUP_NAMES]
    in_groups = [[input_index[name] for name in group] for group in input_groups]
    flat = [i for group in in_groups for i in group]
    lists = {
        "table_groups": [[table_index[name] for name in group] for group in groups],
        "input_groups": in_groups,
        "map_groups": [
            [groups[g].index(plan.inputs[i].table) for i in in_groups[g]] for g in range(3)
        ],
        "rev_group_ids": sorted(range(len(flat)), key=lambda k: flat[k]),
        "row_inputs_offsets": [[-s.rows[0] for s in rank.row_slices] for rank in plan.ranks]
        if groups[2]
        else [],
    }
    tp_position = {name: k for k, name in enumerate(input_groups[1])}
    tp_table = {name: k for k, name in enumerate(groups[1])}
    table_ids = [_rank_table_ids(rank, tp_table) for rank in plan.ranks]
    lists.update(
        input_ids_list=[
            [tp_position[i.input] for i in rank.table_parallel_inputs] for rank in plan.ranks
        ],
        local_maps=[[i.weight for i in rank.table_parallel_inputs] for rank in plan.ranks],
        local_input_offsets=[
            [i.row_offset for i in rank.table_parallel_inputs] for rank in plan.ranks
        ],
        local_weight_offsets=[
            [[m.row_offset for m in w.members] + [w.rows] for w in rank.table_parallel_weights]
            for rank in plan.ranks
        ],
        table_ids=table_ids,
        local_group_list=[
            [[ids.index(tp_table[m.table]) for m in w.members] for w in rank.table_parallel_weights]
            for ids, rank in zip(table_ids, plan.ranks, strict=True)
        ],
        widths_list_flat=list(plan.exchange.output_widths),
    )
    worker_order = [k for ids in lists["input_ids_list"] for k in ids]
    lists["rev_tp_ids"] = sorted(range(len(worker_order)), key=lambda k: worker_order[k])
    return lists


def _rank_table_ids(rank, tp_table: dict[str, int]) -> list[int]:
    """The table-parallel tables a rank holds (group positions), in upstream's order.

    Upstream lists a rank's merged pieces in the order they were dealt, serves their
    inputs in that order, and fuses them into weights in that order: so the order of
    first appearance among the inputs a rank serves, then the members no input reads.
    """
    weights = rank.table_parallel_weights
    order = []
    for local in rank.table_parallel_inputs:
        member = _member_at(weights[local.weight], local.row_offset)
        if member.table not in order:
            order.append(member.table)
    order += [m.table for w in weights for m in w.members if m.table not in order]
    return [tp_table[name] for name in order]


def _member_at(weight, row_offset: int):
    return next(m for m in weight.members if m.row_offset == row_offset)
