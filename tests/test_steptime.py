"""The step-time estimate, worked by hand: lookups, exchanges, topology, critical path."""

from __future__ import annotations

import json

import pytest

from planner import Plan, make_plan, spec_from_dict
from planner.costs.comm import CommConfig, estimate_comm
from planner.costs.memory import rank_footprints
from planner.costs.steptime import (
    LOOKUP_SECONDS,
    Holdings,
    StepConfig,
    TableLoad,
    estimate_step,
    plan_step,
)
from planner.costs.summary import summarize
from planner.plan import parse_plan
from planner.validation import plan_problems

GB = 10**9


def test_two_tables_on_two_ranks_of_one_host() -> None:
    # Global batch 4, local 2; 8-byte ids, float32 outputs; every bandwidth 1 GB/s.
    # a: 100 x 4, one input of hotness 1, on rank 0; b: 10 x 8, one input of hotness 3, on 1.
    config = StepConfig(
        global_batch_size=4,
        world_size=2,
        intra_bandwidth=GB,
        alltoall_bandwidth=GB,
        ring_bandwidth=GB,
        memory_bandwidth=GB,
    )
    loads = [TableLoad(1, 1, 100, 4, 4), TableLoad(3, 1, 10, 8, 4)]
    holdings = Holdings(pieces=[[(0, 4)], [(1, 8)]], row_rows={}, replicas=[])
    estimate = estimate_step(config, loads, holdings)
    # ids per peer: rank 0 receives 2 x 1 x 8 = 16 from rank 1 and sends it 2 x 3 x 8 = 48
    # outputs per peer: rank 0 sends 2 x 4 x 4 = 32, rank 1 sends 2 x 8 x 4 = 64
    # a row read moves at least a 128-byte cache line (a's rows are 16 bytes, b's 32):
    # rank 0 forward: 4 ids x (8 + 128) + 4 outputs x 4 x 4 = 608 bytes, 4 ids
    # rank 1 forward: 12 ids x (8 + 128) + 4 x 8 x 4 = 1760 bytes, 12 ids
    forward = [608e-9 + 4 * LOOKUP_SECONDS, 1760e-9 + 12 * LOOKUP_SECONDS]
    assert estimate.rank(0) == pytest.approx(
        {
            "ids": 48e-9,
            "forward_lookups": forward[0],
            "outputs": 64e-9,
            "output_gradients": 64e-9,
            "backward_lookups": 2 * forward[0],
            "dp_allreduce": 0.0,
        }
    )
    assert estimate.stage_seconds["forward_lookups"] == pytest.approx(forward[1])
    assert estimate.step_seconds == pytest.approx(48e-9 + 64e-9 * 2 + 3 * forward[1])


def test_peers_on_other_hosts_use_the_network() -> None:
    # 4 ranks, 2 per host; a table read by one input of hotness 1 on rank 0, batch 8
    # (2 per rank), 8-byte ids: rank 0 receives 16 bytes from each peer, one on its host
    # (NVLink, 100 GB/s here) and two on the other (network, 1 GB/s): 32 bytes over the
    # network, the slower link.
    config = StepConfig(
        global_batch_size=8,
        world_size=4,
        gpus_per_host=2,
        intra_bandwidth=100 * GB,
        alltoall_bandwidth=GB,
    )
    loads = [TableLoad(1, 1, 10, 4, 4)]
    holdings = Holdings(pieces=[[(0, 4)], [], [], []], row_rows={}, replicas=[])
    ids = estimate_step(config, loads, holdings).rank_seconds["ids"]
    assert ids[0] == pytest.approx(32e-9)
    # rank 1 (same host) sends 16 bytes over NVLink; ranks 2 and 3 send 16 over the network
    assert ids[1] == pytest.approx(16 / (100 * GB))
    assert ids[2] == ids[3] == pytest.approx(16e-9)


def test_a_column_cut_of_narrow_rows_pays_the_ids_and_rows_twice() -> None:
    # One hot table (hotness 10, width 8: 32-byte rows) whole on rank 0, or cut into two
    # 4-column pieces on ranks 0 and 1. Each piece receives every id, so the id stage
    # does not shrink, and reads a whole cache line per id however narrow its rows: a
    # piece's lookups save only half the output writes (64 x 4 x 4 = 1024 bytes).
    config = StepConfig(global_batch_size=64, world_size=2)
    loads = [TableLoad(10, 1, 1000, 8, 4)]
    whole = Holdings([[(0, 8)], []], {}, [])
    cut = Holdings([[(0, 4)], [(0, 4)]], {}, [])
    whole_step, cut_step = (estimate_step(config, loads, h) for h in (whole, cut))
    assert cut_step.stage_seconds["ids"] == whole_step.stage_seconds["ids"]
    assert cut_step.stage_seconds["outputs"] == pytest.approx(
        whole_step.stage_seconds["outputs"] / 2
    )
    assert cut_step.stage_seconds["forward_lookups"] == pytest.approx(
        whole_step.stage_seconds["forward_lookups"] - 1024 / config.memory_bandwidth
    )
    assert cut_step.step_seconds > 0.9 * whole_step.step_seconds


def test_replicas_cost_their_gradient_allreduce() -> None:
    # 4 ranks on one host at 1 GB/s: a 1,000-byte table's gradient is ring-allreduced,
    # 2 x 3/4 x 1000 = 1500 bytes each way.
    config = StepConfig(global_batch_size=4, world_size=4, intra_bandwidth=GB)
    loads = [TableLoad(1, 1, 25, 10, 4)]
    holdings = Holdings([[]] * 4, {}, [0])
    assert estimate_step(config, loads, holdings).stage_seconds["dp_allreduce"] == pytest.approx(
        1500e-9
    )


def test_plans_carry_the_estimate_and_validate() -> None:
    spec = spec_from_dict(
        {
            "world_size": 2,
            "global_batch_size": 4,
            "tables": [
                {"name": "a", "rows": 100, "width": 4},
                {"name": "b", "rows": 10, "width": 8, "combiner": "sum"},
            ],
            "inputs": [{"name": "a", "table": "a"}, {"name": "b", "table": "b", "hotness": 3}],
        }
    )
    plan = make_plan(spec)
    assert plan_problems(plan) == []
    step = plan.stats.step
    assert step is not None
    assert step.step_seconds == pytest.approx(sum(step.stage_seconds.values()))
    assert step.stage_seconds["forward_lookups"] == max(
        r.step.forward_lookups for r in plan.ranks if r.step
    )
    tampered = plan.model_copy(
        update={"ranks": [plan.ranks[0].model_copy(update={"step": None}), plan.ranks[1]]}
    )
    assert any("step-time" in p for p in plan_problems(tampered))


def test_a_row_split_over_one_host_is_valid_and_costs_only_its_ranks_lookups() -> None:
    # 4 ranks, 2 per host; big (1000 x 4) row-sliced, first over all 4 ranks, then (by
    # hand) over host 0 alone: ranks 2 and 3 stop looking big's ids up, ranks 0 and 1
    # read twice the rows (the exchanges: test_a_row_split_over_a_group_exchanges_...).
    spec = spec_from_dict(
        {
            "world_size": 4,
            "gpus_per_host": 2,
            "row_slice_threshold": 4000,
            "global_batch_size": 8,
            "tables": [
                {"name": "big", "rows": 1000, "width": 4},
                {"name": "small", "rows": 10, "width": 4},
            ],
        }
    )
    plan = make_plan(spec)
    data = json.loads(plan.to_json())
    assert data["row_splits"] == [{"table": "big", "ranks": [0, 4], "remainder_start": 0}]
    data["row_splits"][0]["ranks"] = [0, 2]
    edited = recounted(parse_plan(data))  # the schema only: the totals are recounted below
    assert plan_problems(edited) == []
    assert [s.rank for s in edited.shards if s.table == "big"] == [0, 1]
    assert [r.row_slices[0].rows for r in edited.ranks] == [
        (0, 500),
        (500, 1000),
        (1000, 1000),
        (1000, 1000),
    ]
    before = [r.step.forward_lookups for r in plan.ranks]
    after = [r.step.forward_lookups for r in edited.ranks]
    # Global batch 8, big read by one one-hot input: a holder of R rows reads 8 counts
    # (8 x 8 B), writes 8 x 4 x 4 B of float32 partial sums, and looks up its share of
    # the ids, floor(8 x R / 1000), each 8 B and a 128-byte row (a cache line):
    # R = 250 (all 4 ranks): 64 + 128 + 2 x 8 + 8 x 128 x 250 // 1000 = 464 B, 2 ids;
    # R = 500 (host 0 only): 64 + 128 + 4 x 8 + 512 = 736 B, 4 ids.
    quarter = 464 / (900 * GB) + 2 * LOOKUP_SECONDS
    half = 736 / (900 * GB) + 4 * LOOKUP_SECONDS
    assert after[3] == pytest.approx(before[3] - quarter)
    assert after[0] == pytest.approx(before[0] - quarter + half)


def test_a_row_split_over_a_group_exchanges_with_its_holders_only() -> None:
    # 4 ranks, 2 per host (NVLink 100 GB/s, network 1 GB/s); batch 8 (2 per rank); one
    # table, one input of hotness 1, 4 columns, rows on ranks 0 and 1 only, 500 each.
    # Ids: every rank sends each holder a count per sample (2 x 8 B) and the ids in its
    # rows, floor(2 x 500 / 1000) = 1 (8 B): 24 B. Rank 0 receives 24 from rank 1
    # (NVLink) and 48 from ranks 2, 3 (network): 48 ns; rank 2 sends 24 to each holder
    # over the network: 48 ns. Partial sums, 2 x 4 x 4 = 32 B per sample block: rank 0
    # sends 64 over the network, rank 2 receives 64 from it: 64 ns each; backward the same.
    config = StepConfig(
        global_batch_size=8, world_size=4, gpus_per_host=2,
        intra_bandwidth=100 * GB, alltoall_bandwidth=GB,
    )
    loads = [TableLoad(1, 1, 1000, 4, 4)]
    estimate = estimate_step(config, loads, Holdings([[]] * 4, {0: [500, 500, 0, 0]}, []))
    assert estimate.rank_seconds["ids"] == pytest.approx([48e-9, 48e-9, 48e-9, 48e-9])
    assert estimate.rank_seconds["outputs"] == pytest.approx([64e-9, 64e-9, 64e-9, 64e-9])
    assert estimate.rank_seconds["forward_lookups"][2:] == [0.0, 0.0]
    # Over one host of 4 ranks (NVLink only) the same split costs a hundredth of that.
    one_host = StepConfig(
        global_batch_size=8, world_size=4, gpus_per_host=4,
        intra_bandwidth=100 * GB, alltoall_bandwidth=GB,
    )
    estimate = estimate_step(one_host, loads, Holdings([[]] * 4, {0: [500, 500, 0, 0]}, []))
    assert estimate.rank_seconds["ids"] == pytest.approx([72 / (100 * GB), 72 / (100 * GB),
                                                          48 / (100 * GB), 48 / (100 * GB)])


def recounted(plan: Plan) -> Plan:
    """The plan with its bytes, traffic and step estimates recomputed from what it holds."""
    comms = estimate_comm(plan, CommConfig.from_parameters(plan.parameters))
    ranks = [
        rank.model_copy(update={"elements": e, "bytes": b, "optimizer_bytes": o, "comm": c})
        for rank, (e, b, o), c in zip(plan.ranks, rank_footprints(plan), comms, strict=True)
    ]
    plan = plan.model_copy(update={"ranks": ranks})
    steps = plan_step(plan)
    ranks = [rank.model_copy(update={"step": s}) for rank, s in zip(ranks, steps, strict=True)]
    return plan.model_copy(update={"ranks": ranks, "stats": summarize(ranks, plan.tables)})


def test_a_host_larger_than_the_world_is_the_world() -> None:
    """gpus_per_host may be any 64-bit count; past the world size every rank is on one
    host, so the plan and its estimate are those of a host of exactly the world (the
    stage search's arrays are per host: 2**63 - 1 of them raised from numpy)."""
    settings = {
        "world_size": 2, "strategy": "auto", "device_memory": "80GiB",
        "global_batch_size": 4096,
        "tables": [{"name": n, "rows": 100_000, "width": 16, "combiner": "sum"} for n in "abc"],
    }
    huge = make_plan(spec_from_dict({**settings, "gpus_per_host": 2**63 - 1}))
    exact = make_plan(spec_from_dict({**settings, "gpus_per_host": 2}))
    assert huge.shards == exact.shards
    assert huge.stats.step == exact.stats.step
    assert huge.parameters.gpus_per_host == 2**63 - 1  # as the spec says
