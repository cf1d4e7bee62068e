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
from planner.reports.upstream import upstream_lists

DATA = Path(__file__).parent / "data"
PARAMETERS = (
    "world_size",
    "strategy",
    "column_slice_threshold",
    "row_slice_threshold",
    "data_parallel_threshold",
    "dp_input",
)
# Upstream attributes the view does not rebuild: sliced_out_ranges is upstream's buggy
# concat bookkeeping; ref_seconds is how long upstream took.
NOT_IN_VIEW = {"sliced_out_ranges", "ref_seconds"}
UPSTREAM_ALWAYS = ("table_groups", "input_groups", "map_groups", "rev_group_ids")
UPSTREAM_TABLE_PARALLEL = (
    "input_ids_list",
    "local_maps",
    "local_input_offsets",
    "local_weight_offsets",
    "table_ids",
    "local_group_list",
    "widths_list_flat",
    "rev_tp_ids",
)


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
    compared = set(view)
    assert compared == set(expected) - NOT_IN_VIEW
    for key in sorted(compared):
        wanted = expected[key]
        if key == "local_configs":
            wanted = [
                [{k: c[k] for k in ("input_dim", "output_dim", "combiner")} for c in rank]
                for rank in wanted
            ]
        assert view[key] == wanted, key


def upstream_view(plan: Plan) -> dict:
    """The lists upstream would publish for this plan (only those of groups it has)."""
    lists = upstream_lists(plan)
    view = {"strategy_used": plan.strategy}
    view.update({key: lists[key] for key in UPSTREAM_ALWAYS})
    if plan.groups.row_sliced:
        view["row_slices"] = [
            [s.rows[1] - s.rows[0] for s in rank.row_slices] for rank in plan.ranks
        ]
        view["row_inputs_offsets"] = lists["row_inputs_offsets"]
    if plan.groups.table_parallel:
        view.update({key: lists[key] for key in UPSTREAM_TABLE_PARALLEL})
        view["local_configs"] = [
            [
                {"input_dim": w.rows, "output_dim": w.width, "combiner": w.combiner}
                for w in rank.table_parallel_weights
            ]
            for rank in plan.ranks
        ]
        view["empty_rank"] = any(not rank.table_parallel_weights for rank in plan.ranks)
        view["cpu_offload"] = [
            [w.device == "host" for w in rank.table_parallel_weights] for rank in plan.ranks
        ]
    return view
