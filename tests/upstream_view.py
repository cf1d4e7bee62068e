"""Express a plan in upstream's vocabulary, so parity tests compare like with like.

Upstream (distributed-embeddings' DistEmbeddingStrategy) describes a placement with
positional nested lists; this module derives the same lists from a plan, using only
what the plan file holds. It also reads the recorded cases (``data/upstream_*.json.gz``)
and compares a plan with a case's expected lists.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from planner.plan import Plan

DATA = Path(__file__).parent / "data"
PARAMETERS = (
    "world_size",
    "strategy",
    "column_slice_threshold",
    "row_slice_threshold",
    "data_parallel_threshold",
    "dp_input",
)
# Upstream attributes the view does not rebuild: table_ids and local_group_list are
# compared through fused_tables; sliced_out_ranges is upstream's buggy concat bookkeeping;
# ref_seconds is how long upstream took.
NOT_IN_VIEW = {"table_ids", "local_group_list", "sliced_out_ranges", "ref_seconds"}


def load_cases(name: str) -> list[dict]:
    return json.loads(gzip.decompress((DATA / name).read_bytes()))


def spec_dict(case: dict) -> dict:
    """The planner spec of a recorded case (upstream's names: input_dim is rows)."""
    raw = {key: case[key] for key in PARAMETERS}
    if case.get("gpu_embedding_size") is not None:
        raw["gpu_embedding_size"] = case["gpu_embedding_size"]
    raw["tables"] = [
        {
            "name": table["name"],
            "rows": table["input_dim"],
            "width": table["output_dim"],
            "combiner": table["combiner"],
        }
        for table in case["tables"]
    ]
    table_map = case["input_table_map"]
    raw["inputs"] = (
        None
        if table_map is None
        else [
            {"name": f"in{k}", "table": case["tables"][index]["name"]}
            for k, index in enumerate(table_map)
        ]
    )
    return raw


def assert_matches_upstream(plan: Plan, expected: dict) -> None:
    """Every list upstream computed equals the plan's, seen through ``upstream_view``.

    Cases recorded before upstream could offload have no ``cpu_offload``: nothing is
    offloaded there.
    """
    view = upstream_view(plan)
    if "cpu_offload" in view and "cpu_offload" not in expected:
        none_offloaded = [[False] * len(rank) for rank in expected["local_configs"]]
        expected = {**expected, "cpu_offload": none_offloaded}
    compared = set(view) - {"fused_tables"}
    assert compared == set(expected) - NOT_IN_VIEW
    for key in sorted(compared):
        wanted = expected[key]
        if key == "local_configs":
            wanted = [
                [{k: c[k] for k in ("input_dim", "output_dim", "combiner")} for c in rank]
                for rank in wanted
            ]
        assert view[key] == wanted, key
    if "fused_tables" in view:
        assert view["fused_tables"] == upstream_fused_tables(expected)


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
        view["cpu_offload"] = [
            [w.device == "host" for w in rank.table_parallel_weights] for rank in plan.ranks
        ]
    return view


def upstream_fused_tables(expected: dict) -> list[list[list[int]]]:
    """Upstream's fused groups as table ids (its local_group_list holds local positions)."""
    return [
        [[ids[p] for p in group] for group in groups]
        for ids, groups in zip(expected["table_ids"], expected["local_group_list"], strict=True)
    ]
