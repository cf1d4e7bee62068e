"""The communication estimate, on a small plan worked out by hand, and its properties."""

from __future__ import annotations

import functools
import json
import operator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import load_plan, plan_from_dict
from planner.cli import main
from planner.costs.comm import (
    HOST_PHASES,
    PHASES,
    CommConfig,
    estimate_comm,
    phase_bytes,
    plain_sum,
)
from planner.errors import SpecError
from planner.plan import parse_plan
from planner.planning import make_plan
from planner.spec import load_spec, spec_from_dict
from planner.validation import plan_problems, spec_problems

# Three ranks, global batch 6, so each rank holds b = 2 samples of every input.
# Ids are int64 (8 B), embeddings float32 (4 B).
#
#   t  10 x 4, sum, read by t_multi (hotness 3)    40 elements: table-parallel
#   u  20 x 2, one-hot, read by u                   40 elements: table-parallel
#   r  1000 x 8, sum, read by r (hotness 2)       8000 elements: row-sliced (>= 8000)
#   s  5 x 3, read by s                             15 elements: data-parallel (<= 15)
#
# Column threshold 20 cuts t and u in two slices each (t: 2 + 2 columns, u: 1 + 1);
# basic deals slices t0 t1 u0 u1 round-robin: rank 0 gets t0 and u1, rank 1 t1,
# rank 2 u0. Merged in rank order: rank 0 holds t cols 0:2 and u cols 0:1, rank 1 holds
# t cols 2:4, rank 2 holds u cols 1:2.
SPEC = {
    "world_size": 3,
    "strategy": "basic",
    "column_slice_threshold": 20,
    "row_slice_threshold": 8000,
    "data_parallel_threshold": 15,
    "global_batch_size": 6,
    "tables": [
        {"name": "t", "rows": 10, "width": 4, "combiner": "sum"},
        {"name": "u", "rows": 20, "width": 2},
        {"name": "r", "rows": 1000, "width": 8, "combiner": "sum"},
        {"name": "s", "rows": 5, "width": 3},
    ],
    "inputs": [
        {"name": "t_multi", "table": "t", "hotness": 3},
        {"name": "u", "table": "u"},
        {"name": "r", "table": "r", "hotness": 2},
        {"name": "s", "table": "s"},
    ],
}

# Per phase, per rank: (sent, received).
EXPECTED = {
    # t_multi: 2 x 3 ids x 8 B = 48 B from each rank to each holder of t (ranks 0, 1);
    # u: 2 x 1 x 8 = 16 B to each holder of u (ranks 0, 2). Nothing to itself.
    #   rank 0 sends t ids to 1 (48) and u ids to 2 (16) = 64; receives t ids from 1 and
    #          2 (96) and u ids from 1 and 2 (32) = 128
    #   rank 1 sends t ids to 0 (48), u ids to 0 and 2 (32) = 80; receives t ids 96
    #   rank 2 sends t ids to 0 and 1 (96), u ids to 0 (16) = 112; receives u ids 32
    "id_alltoall": [(64, 128), (80, 96), (112, 32)],
    # each holder sends 2 samples x its piece width x 4 B to each other rank; a hotness-3
    # sum input still sends one vector per sample:
    #   rank 0: t piece 2 wide to ranks 1, 2 (2 x 16 = 32), u piece 1 wide (2 x 8 = 16) = 48;
    #           receives t cols 2:4 from rank 1 (16) and u col 1 from rank 2 (8) = 24
    #   rank 1: t piece to ranks 0, 2 = 32; receives t from 0 (16), u from 0 and 2 (16) = 32
    #   rank 2: u piece to ranks 0, 1 = 16; receives t from 0 and 1 (32), u from 0 (8) = 40
    "embedding_alltoall": [(48, 24), (32, 32), (16, 40)],
    # gradients: the same volumes the other way
    "embedding_grad_alltoall": [(24, 48), (32, 32), (40, 16)],
    # r: its rows 334 / 333 / 333 on ranks 0-2; each rank sends each other rank a count
    # per sample (2 x 8 B) and the ids in its rows, floor(2 x 2 x 333 / 1000) = 1 of
    # them (ids taken as spread like the rows): 24 B, to 2 ranks: 48 each way
    "row_id_allgather": [(48, 48)] * 3,
    # each rank's [2, 8] float32 partial sums to the 2 others: 2 x 2 x 8 x 4 B = 128
    "row_reduce_scatter": [(128, 128)] * 3,
    # backward: allgather of the [2, 8] output gradients: 2 x 2 x 8 x 4 B = 128
    "row_grad_allgather": [(128, 128)] * 3,
    # s: 5 x 3 x 4 B = 60 B of dense gradients, ring allreduce 2 x (3 - 1) / 3 x 60 = 80
    "dp_allreduce": [(80, 80)] * 3,
}


def plan_of(**changes):
    return make_plan(spec_from_dict({**SPEC, **changes}))


def test_the_small_plan_is_laid_out_as_described() -> None:
    plan = plan_of()
    assert plan.groups.model_dump() == {
        "data_parallel": ["s"],
        "table_parallel": ["t", "u"],
        "row_sliced": ["r"],
    }
    held = [(s.table, s.rank, s.cols) for s in plan.shards if s.table in ("t", "u")]
    assert held == [("t", 0, (0, 2)), ("t", 1, (2, 4)), ("u", 0, (0, 1)), ("u", 2, (1, 2))]


def test_each_phase_matches_the_hand_count() -> None:
    comms = plan_of().ranks
    for phase, expected in EXPECTED.items():
        got = [(getattr(r.comm, phase).sent, getattr(r.comm, phase).received) for r in comms]
        assert got == expected, phase


def test_rank_totals_add_the_phases() -> None:
    # rank 0 sends 64 + 48 + 24 + 48 + 128 + 128 + 80 = 520, receives 128 + 24 + 48 + 48 +
    # 128 + 128 + 80 = 584; rank 1 528 / 544; rank 2 552 / 472. 1600 B each way in all.
    plan = plan_of()
    assert [(r.comm.sent_bytes, r.comm.received_bytes) for r in plan.ranks] == [
        (520, 584),
        (528, 544),
        (552, 472),
    ]
    stats = plan.stats.comm
    assert stats.total_bytes == 1600
    assert stats.mean_rank_bytes == pytest.approx(1600 / 3)
    assert (stats.max_rank_sent_bytes, stats.max_rank_received_bytes) == (552, 584)


def test_time_is_the_slowest_rank_per_phase_summed() -> None:
    # 1000 B/s for all-to-all, 2000 B/s for ring collectives (bandwidths in GB/s):
    # ids: the busiest rank moves max(64, 128) = 128 B -> 0.128 s; embeddings forward:
    # rank 0 max(48, 24) = 48 -> 0.048 s; backward the same. The row phases ride in the
    # all-to-alls: row ids 48 / 1000 = 0.048; partial outputs and their gradients 128 /
    # 1000 = 0.128 each; the allreduce 80 / 2000 = 0.040.
    # Step: 0.128 + 0.048 + 0.048 + 0.048 + 0.128 + 0.128 + 0.040 = 0.568 s
    plan = plan_of(alltoall_bandwidth=1e-6, allreduce_bandwidth=2e-6)
    seconds = plan.stats.comm.phase_seconds
    direct = [p for p in PHASES if p not in HOST_PHASES]  # no row_reduction host here
    assert list(seconds) == direct
    assert [seconds[p] for p in direct] == pytest.approx(
        [0.128, 0.048, 0.048, 0.048, 0.128, 0.128, 0.040]
    )
    assert plan.stats.comm.step_seconds == pytest.approx(0.568)
    # rank 2 on its own: max(112, 32) + max(16, 40) + max(40, 16) + 48 + 128 + 128 over
    # 1000 B/s, then 80 / 2000
    assert plan.ranks[2].comm.seconds == pytest.approx(0.112 + 0.040 + 0.040 + 0.304 + 0.040)


def test_a_row_split_over_a_group_moves_bytes_to_and_from_its_holders_only() -> None:
    # r's rows on ranks 1 and 2 only, 500 each. Ids: rank 0 sends each holder a count
    # per sample (16 B) and the floor(2 x 2 x 500 / 1000) = 2 ids in its rows (16 B), 64
    # in all, and receives none; each holder sends 32 to the other holder and receives 32
    # from each other rank (64). Partial outputs: each holder sends 2 x 8 x
    # 4 = 64 B to each other rank (128); rank 0 receives 64 from each holder (128), a
    # holder 64 from the other one. Gradients: the other way.
    raw = plan_of().model_dump(mode="json", by_alias=True)
    raw["row_splits"][0]["ranks"] = [1, 3]
    config = CommConfig(global_batch_size=6)
    phases = phase_bytes(parse_plan(raw), config)
    got = {name: list(zip(phases[name].sent, phases[name].received, strict=True))
           for name in ("row_id_allgather", "row_reduce_scatter", "row_grad_allgather")}
    assert got == {
        "row_id_allgather": [(64, 0), (32, 64), (32, 64)],
        "row_reduce_scatter": [(0, 128), (128, 64), (128, 64)],
        "row_grad_allgather": [(128, 0), (64, 128), (64, 128)],
    }


def test_totals_add_left_to_right_on_every_python() -> None:
    # Python 3.12's sum() compensates rounding: sum([0.1, 0.2, 0.3]) is 0.6 there and
    # 0.6000000000000001 on 3.10 and 3.11. Plans keep the plain total everywhere.
    assert plain_sum([0.1, 0.2, 0.3]) == 0.6000000000000001
    assert plain_sum([3, 4]) == 7 and isinstance(plain_sum([3, 4]), int)
    assert plain_sum([]) == 0


def test_plan_times_are_the_plain_sums_of_their_phases() -> None:
    # On this plan the compensated sum differs in the last digit (0.0004198704 instead of
    # 0.00041987039999999995), so a plan made on Python 3.11 would not validate on 3.12.
    spec = load_spec(
        Path(__file__).resolve().parents[1] / "configs" / "criteo_kaggle.yaml",
        {"strategy": "memory_optimized", "world_size": 16, "optimizer": "adam",
         "global_batch_size": 65536, "id_bytes": 4},
    )
    plan = make_plan(spec)
    plain = functools.partial(functools.reduce, operator.add)
    assert plan.stats.comm.step_seconds == plain(plan.stats.comm.phase_seconds.values())
    assert plan.stats.comm.step_seconds == 0.00041987039999999995
    for rank in plan.ranks:
        assert rank.comm.seconds == plain(getattr(rank.comm, p).seconds for p in PHASES)


def test_int32_ids_halve_the_id_traffic_and_half_precision_the_embeddings() -> None:
    plan = plan_of(id_bytes=4, compute_dtype="float16")
    rank0 = plan.ranks[0].comm
    assert (rank0.id_alltoall.sent, rank0.id_alltoall.received) == (32, 64)
    assert (rank0.row_id_allgather.sent, rank0.embedding_alltoall.sent) == (24, 24)
    assert rank0.row_reduce_scatter.sent == 128  # row partial outputs travel in float32
    assert rank0.dp_allreduce.sent == 80  # gradients keep the weights' type


def test_model_parallel_input_sends_no_ids_but_still_the_outputs() -> None:
    # dp_input false makes every table table-parallel; compare t and u alone both ways
    spec = {
        **SPEC,
        "tables": SPEC["tables"][:2],
        "inputs": SPEC["inputs"][:2],
        "row_slice_threshold": None,
        "data_parallel_threshold": None,
    }
    data_parallel = make_plan(spec_from_dict(spec))
    model_parallel = make_plan(spec_from_dict({**spec, "dp_input": False}))
    for rank_dp, rank_mp in zip(data_parallel.ranks, model_parallel.ranks, strict=True):
        assert rank_mp.comm.id_alltoall.sent == rank_mp.comm.id_alltoall.received == 0
        assert rank_mp.comm.embedding_alltoall == rank_dp.comm.embedding_alltoall
        assert rank_mp.comm.embedding_grad_alltoall == rank_dp.comm.embedding_grad_alltoall
    assert [r.comm.id_alltoall.sent for r in data_parallel.ranks] == [64, 80, 112]


def test_one_rank_moves_nothing() -> None:
    plan = plan_of(world_size=1)
    assert all(r.comm.sent_bytes == r.comm.received_bytes == 0 for r in plan.ranks)
    assert plan.stats.comm.step_seconds == 0


def test_no_batch_size_no_estimate() -> None:
    plan = plan_of(global_batch_size=None)
    assert all(r.comm is None for r in plan.ranks)
    assert plan.stats.comm is None


def test_a_batch_that_does_not_split_over_the_ranks_is_refused() -> None:
    with pytest.raises(SpecError, match="global_batch_size: 7 samples do not split evenly"):
        spec_from_dict({**SPEC, "global_batch_size": 7})


def test_the_estimate_of_a_plan_without_one_at_twice_the_batch() -> None:
    # b = 12 / 3 = 4 samples per rank, twice the hand count's 2: every id and embedding
    # volume in EXPECTED doubles but the row ids (rounded down per pair); the dense
    # gradients of s (80 B) do not depend on the batch
    plan = plan_of(global_batch_size=None)
    comms = estimate_comm(plan, CommConfig(global_batch_size=12))
    got = {
        phase: [(getattr(c, phase).sent, getattr(c, phase).received) for c in comms]
        for phase in PHASES
        if phase not in HOST_PHASES
    }
    assert got == {
        "id_alltoall": [(128, 256), (160, 192), (224, 64)],
        "embedding_alltoall": [(96, 48), (64, 64), (32, 80)],
        "embedding_grad_alltoall": [(48, 96), (64, 64), (80, 32)],
        # counts 4 x 8 B and floor(4 x 2 x 333 / 1000) = 2 ids per pair: 48 B, to 2 ranks
        "row_id_allgather": [(96, 96)] * 3,
        "row_reduce_scatter": [(256, 256)] * 3,
        "row_grad_allgather": [(256, 256)] * 3,
        "dp_allreduce": [(80, 80)] * 3,
    }


def test_plan_with_estimate_round_trips_and_validates(tmp_path: Path) -> None:
    plan = plan_of()
    (tmp_path / "p.json").write_text(plan.to_json())
    loaded = load_plan(tmp_path / "p.json")
    assert loaded == plan
    assert loaded.to_json() == plan.to_json()
    assert plan_problems(loaded) == []
    assert spec_problems(loaded, spec_from_dict(SPEC)) == []
    assert spec_problems(loaded, spec_from_dict({**SPEC, "global_batch_size": 12}))


def test_schema_accepts_a_plan_with_estimates_and_a_device_limit() -> None:
    import jsonschema

    from planner.plan import plan_json_schema

    plan = plan_of(optimizer="adam", device_memory="1GiB", memory_reserve=0.1)
    validator = jsonschema.Draft202012Validator(plan_json_schema())
    data = json.loads(plan.to_json())
    assert list(validator.iter_errors(data)) == []
    data["ranks"][0]["comm"]["id_alltoall"]["sent"] = "many"
    assert not validator.is_valid(data)


def test_tampered_stats_fail_validation() -> None:
    data = json.loads(plan_of().to_json())
    data["stats"]["comm"]["step_seconds"] *= 2
    assert "stats: do not match the ranks" in plan_problems(parse_plan(data))


def test_preview_shows_traffic_per_rank_and_the_step(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = plan_of(alltoall_bandwidth=1e-6, allreduce_bandwidth=2e-6)
    (tmp_path / "p.json").write_text(plan.to_json())
    result = CliRunner().invoke(main, ["show", "p.json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = next(line for line in lines if line.startswith("rank "))
    assert head.split()[-5:] == ["sent", "received", "comm", "time", "step"]
    # rank 0: (128 + 48 + 48 + 48 + 128 + 128) / 1000 + 80 / 2000 = 0.568 s
    assert lines[lines.index(head) + 2].split()[-8:-2] == ["520", "B", "584", "B", "568.000", "ms"]
    assert (
        "communication per step at global batch 6 (2 per rank, 8-byte ids, float32 "
        "embeddings): largest rank sends 552 B, receives 584 B; 1.56 KiB in all"
    ) in lines
    summary = next(line for line in lines if line.startswith("estimated communication time"))
    assert summary.startswith("estimated communication time 568.000 ms per step (ids 128.000 ms")
    # it can be longer than the step, which puts ranks on a host at NVLink speed: say so
    assert summary.endswith("every byte as if it crossed hosts, no latency, overlap or compute "
                            "modelled (the estimated step counts hosts and lookups)")
    data = json.loads(CliRunner().invoke(main, ["show", "p.json", "--format", "json"]).stdout)
    assert data["ranks"][0]["comm"]["id_alltoall"] == {
        "sent": 64,
        "received": 128,
        "seconds": pytest.approx(0.064 * 2),
    }


def test_cli_options_set_the_estimate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = {k: v for k, v in SPEC.items() if k != "global_batch_size"}
    (tmp_path / "m.yaml").write_text(json.dumps(spec))  # JSON is YAML
    args = ["--global-batch-size", "6", "--id-bytes", "4", "--alltoall-bandwidth", "1e-6"]
    result = CliRunner().invoke(main, ["plan", "m.yaml", "-o", "p.json", *args])
    assert result.exit_code == 0, result.output
    plan = load_plan(tmp_path / "p.json")
    assert (plan.parameters.global_batch_size, plan.parameters.id_bytes) == (6, 4)
    assert plan.ranks[0].comm.id_alltoall.sent == 32
    check = CliRunner().invoke(main, ["validate", "p.json", "--spec", "m.yaml", *args])
    assert check.exit_code == 0, check.output
    stale = CliRunner().invoke(main, ["validate", "p.json", "--spec", "m.yaml"])
    assert stale.exit_code == 1


# --- properties -------------------------------------------------------------------------


@st.composite
def specs(draw):
    world = draw(st.integers(1, 6))
    count = draw(st.integers(1, 7))
    tables = [
        {
            "name": f"t{k}",
            "rows": draw(st.integers(1, 300)),
            "width": draw(st.sampled_from([1, 2, 3, 4, 8, 16])),
            "combiner": "sum",
            "dtype": draw(st.sampled_from(["float32", "float16"])),
        }
        for k in range(count)
    ]
    inputs = [
        {
            "name": f"i{k}",
            "table": f"t{draw(st.integers(0, count - 1))}",
            "hotness": draw(st.integers(1, 5)),
        }
        for k in range(draw(st.integers(1, 9)))
    ]
    return spec_from_dict(
        {
            "world_size": world,
            "strategy": draw(st.sampled_from(["basic", "memory_balanced", "memory_optimized"])),
            "dp_input": draw(st.booleans()),
            "data_parallel_threshold": draw(st.one_of(st.none(), st.integers(1, 600))),
            "row_slice_threshold": draw(st.one_of(st.none(), st.integers(1, 3000))),
            "column_slice_threshold": draw(st.one_of(st.none(), st.integers(0, 1500))),
            "global_batch_size": world * draw(st.integers(1, 64)),
            "id_bytes": draw(st.sampled_from([4, 8])),
            "gpus_per_host": draw(st.sampled_from([g for g in range(1, 7) if world % g == 0])),
            "row_reduction": draw(st.sampled_from(["direct", "host"])),
            "tables": tables,
            "inputs": inputs,
        }
    )


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_every_phase_sends_what_it_receives(spec) -> None:
    plan = make_plan(spec)
    config = CommConfig.from_parameters(plan.parameters)
    for name, phase in phase_bytes(plan, config).items():
        assert sum(phase.sent) == sum(phase.received), name
        assert min(phase.sent + phase.received) >= 0, name
    # every embedding a rank receives in the forward pass is one it asked for: b samples
    # of the columns of each table-parallel input it does not hold itself
    b = spec.global_batch_size // spec.world_size
    widths = {t.name: t.width for t in spec.tables}
    table_of = {i.name: i.table for i in plan.inputs}
    for rank in plan.ranks:
        own = {s.table: s.cols[1] - s.cols[0] for s in plan.shards if s.rank == rank.rank}
        expected = sum(
            b * (widths[table_of[name]] - own.get(table_of[name], 0)) * 4
            for name in plan.input_groups.table_parallel
        )
        assert rank.comm.embedding_alltoall.received == expected
    assert plan_problems(plan) == []
    assert plan_from_dict(json.loads(plan.to_json())) == plan
