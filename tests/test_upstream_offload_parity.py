"""CPU offload parity with upstream HEAD on 300 recorded random specs.

``data/upstream_offload_cases.json.gz`` holds 300 random specs with what upstream's
newest ``DistEmbeddingStrategy``, which takes ``gpu_embedding_size``, computed for them:
the lists of ``test_upstream_parity`` and ``cpu_offload[rank][g]``, whether the g-th
local weight of a rank lives in host memory. It is the shared reference file with
upstream's timings (``ref_seconds``) dropped and the JSON written without spaces.

A spec with ``gpu_embedding_size`` plans with ``offload: upstream``; the plan, seen
through ``upstream_view``, must give every list exactly, offload flags included.
"""

from __future__ import annotations

from functools import cache

import pytest
from upstream_view import assert_matches_upstream, load_cases, spec_dict

from planner.planning import make_plan
from planner.spec import spec_from_dict
from planner.validation import plan_problems

CASES = load_cases("upstream_offload_cases.json.gz")


def case_id(number: int) -> str:
    case = CASES[number]
    limit = case["gpu_embedding_size"]
    offload = "no-offload" if limit is None else f"gpu{limit}"
    return f"{number:03d}-w{case['world_size']}-{case['strategy']}-{offload}"


ALL = [pytest.param(n, id=case_id(n)) for n in range(len(CASES))]


@cache
def plan_of(number: int):
    return make_plan(spec_from_dict(spec_dict(CASES[number]), source=f"case {number}"))


def offload_flags(number: int) -> list[list[bool]]:
    return CASES[number]["expected"].get("cpu_offload", [])


def test_the_data_covers_the_rule():
    """Cases without a limit, with 0 (everything offloaded), and with some pieces
    offloaded and some kept on one rank. The random sizes never tie across the limit;
    ties are worked by hand in test_offload.py."""
    assert len(CASES) == 300
    limits = [c["gpu_embedding_size"] for c in CASES]
    assert None in limits and 0 in limits
    mixed = [
        n
        for n in range(len(CASES))
        if any(any(rank) and not all(rank) for rank in offload_flags(n))
    ]
    assert len(mixed) > 25
    assert any(CASES[n]["world_size"] == 1 for n in mixed)
    assert any(CASES[n]["input_table_map"] is not None for n in mixed)
    assert any(not CASES[n]["dp_input"] for n in mixed)


@pytest.mark.parametrize("number", ALL)
def test_plan_matches_upstream(number):
    assert_matches_upstream(plan_of(number), CASES[number]["expected"])


@pytest.mark.parametrize("number", ALL)
def test_plan_passes_its_own_checks(number):
    plan = plan_of(number)
    assert plan_problems(plan) == []
    limit = CASES[number]["gpu_embedding_size"]
    assert plan.parameters.offload == ("none" if limit is None else "upstream")
    assert plan.parameters.gpu_embedding_size == limit
    for rank in plan.ranks:
        kept = [w for w in rank.table_parallel_weights if w.device == "gpu"]
        assert limit is None or sum(w.rows * w.width for w in kept) <= limit
