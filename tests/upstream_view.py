"""Express a plan in upstream's vocabulary, so parity tests compare like with like.

Upstream (distributed-embeddings' DistEmbeddingStrategy) describes a placement with
positional nested lists; this module derives the same lists from a plan, using only
what the plan file holds.
"""

from __future__ import annotations

from planner.plan import Plan


def upstream_view(plan: Plan) -> dict:
    table_index = {t.name: i for i, t in enumerate(plan.tables)}
    input_index = {i.name: n for n, i in enumerate(plan.inputs)}
    groups = [plan.groups.data_parallel, plan.groups.table_parallel, plan.groups.row_sliced]
    input_groups = [
        plan.input_groups.data_parallel,
        plan.input_groups.table_parallel,
        plan.input_groups.row_sliced,
    ]
    table_groups = [[table_index[name] for name in group] for group in groups]
    in_groups = [[input_index[name] for name in group] for group in input_groups]
    map_groups = [[groups[g].index(plan.inputs[i].table) for i in in_groups[g]] for g in range(3)]
    flat = [i for group in in_groups for i in group]
    view = {
        "strategy_used": plan.strategy,
        "table_groups": table_groups,
        "input_groups": in_groups,
        "map_groups": map_groups,
        "rev_group_ids": sorted(range(len(flat)), key=lambda k: flat[k]),
    }
    if groups[2]:
        view["row_slices"] = [
            [s.rows[1] - s.rows[0] for s in rank.row_slices] for rank in plan.ranks
        ]
        view["row_inputs_offsets"] = [[-s.rows[0] for s in rank.row_slices] for rank in plan.ranks]
    if groups[1]:
        tp_position = {name: k for k, name in enumerate(input_groups[1])}
        tp_table = {name: k for k, name in enumerate(groups[1])}
        view["local_configs"] = [
            [
                {"input_dim": w.rows, "output_dim": w.width, "combiner": w.combiner}
                for w in rank.table_parallel_weights
            ]
            for rank in plan.ranks
        ]
        view["fused_tables"] = [
            [[tp_table[m.table] for m in w.members] for w in rank.table_parallel_weights]
            for rank in plan.ranks
        ]
        view["local_weight_offsets"] = [
            [[m.row_offset for m in w.members] + [w.rows] for w in rank.table_parallel_weights]
            for rank in plan.ranks
        ]
        view["input_ids_list"] = [
            [tp_position[i.input] for i in rank.table_parallel_inputs] for rank in plan.ranks
        ]
        view["local_maps"] = [[i.weight for i in rank.table_parallel_inputs] for rank in plan.ranks]
        view["local_input_offsets"] = [
            [i.row_offset for i in rank.table_parallel_inputs] for rank in plan.ranks
        ]
        view["widths_list_flat"] = list(plan.exchange.output_widths)
        worker_order = [k for ids in view["input_ids_list"] for k in ids]
        view["rev_tp_ids"] = sorted(range(len(worker_order)), key=lambda k: worker_order[k])
        view["empty_rank"] = any(not rank.table_parallel_weights for rank in plan.ranks)
    return view


def upstream_fused_tables(expected: dict) -> list[list[list[int]]]:
    """Upstream's fused groups as table ids (its local_group_list holds local positions)."""
    return [
        [[ids[p] for p in group] for group in groups]
        for ids, groups in zip(expected["table_ids"], expected["local_group_list"], strict=True)
    ]
