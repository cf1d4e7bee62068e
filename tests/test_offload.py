"""CPU offload: upstream's rule and ``offload: auto``, worked by hand, and what plans record.

The small spec (tests/shared.py) on two ranks with ``basic``:
  rank 0: a 100 x 8 float32 (800 elements, 3200 B), c 10 x 4 float16 (40, 80 B)
  rank 1: b  50 x 8 float32 (400 elements, 1600 B), d 20 x 8 float32 (160, 640 B)
Without offload b and d fuse into one weight (same width and config).
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import ROWS_AND_REPLICAS, SMALL

from planner import load_plan, make_plan, plan_problems, save_plan, spec_from_dict
from planner.errors import SpecError
from planner.placement.offload import EXACT_WORK, offload_search, upstream_rule
from planner.plan import Plan
from planner.validation import spec_problems


def plan_of(**changes) -> Plan:
    return make_plan(spec_from_dict({**SMALL, **changes}))


def layout(plan: Plan) -> list[list[tuple[str, list[str]]]]:
    """Per rank, each local weight as (device, member tables)."""
    return [
        [(w.device, [m.table for m in w.members]) for w in rank.table_parallel_weights]
        for rank in plan.ranks
    ]


def devices(plan: Plan) -> dict[str, str]:
    return {s.table: s.device for s in plan.shards}


# --- upstream's rule --------------------------------------------------------------------


def test_upstream_rule_keeps_the_smallest_while_their_total_fits() -> None:
    # sorted 10 (piece 1), 20 (piece 2), 30 (piece 0): totals 10, 30, 60; the limit 30 is
    # reached exactly by the second (kept), the third passes it
    assert upstream_rule([30, 10, 20], 30) == [True, False, False]
    assert upstream_rule([30, 10, 20], 29) == [True, False, True]
    assert upstream_rule([30, 10, 20], 60) == [False, False, False]
    assert upstream_rule([30, 10, 20], 0) == [True, True, True]
    assert upstream_rule([], 0) == []


def test_upstream_rule_keeps_the_earlier_of_equal_pieces() -> None:
    assert upstream_rule([10, 10, 10], 20) == [False, False, True]
    assert upstream_rule([10, 5, 10, 5], 20) == [False, False, True, False]


def test_a_limit_offloads_the_largest_piece_of_each_rank() -> None:
    # rank 0: c (40), then a (840 > 500): a off. rank 1: d (160), then b (560 > 500): b off.
    # b no longer fuses with d: an offloaded piece is a weight of its own.
    plan = plan_of(gpu_embedding_size=500)
    assert layout(plan) == [
        [("host", ["a"]), ("gpu", ["c"])],
        [("host", ["b"]), ("gpu", ["d"])],
    ]
    assert devices(plan) == {"a": "host", "b": "host", "c": "gpu", "d": "gpu"}
    assert [(r.bytes, r.host_bytes, r.device_bytes) for r in plan.ranks] == [
        (3280, 3200, 80),
        (2240, 1600, 640),
    ]
    # inputs read the weight their table is in, at row 0 now
    assert [(i.input, i.weight, i.row_offset) for i in plan.ranks[1].table_parallel_inputs] == [
        ("b", 0, 0),
        ("d", 1, 0),
    ]
    assert plan.parameters.offload == "upstream"
    assert plan.parameters.gpu_embedding_size == 500
    assert plan_problems(plan) == []


def test_a_limit_reached_exactly_keeps_the_piece() -> None:
    # rank 1: 160 + 400 = 560 elements, at the limit: both stay and fuse again
    plan = plan_of(gpu_embedding_size=560)
    assert layout(plan) == [[("host", ["a"]), ("gpu", ["c"])], [("gpu", ["b", "d"])]]
    assert [r.host_bytes for r in plan.ranks] == [3200, 0]


def test_of_equal_pieces_the_earlier_on_the_rank_stays() -> None:
    # one rank, three 10 x 4 tables of 40 elements, limit 80: the first two stay (fused),
    # the third goes; listing the tables the other way round swaps which
    tables = [{"name": n, "rows": 10, "width": 4} for n in ("e", "f", "g")]
    spec = {"world_size": 1, "gpu_embedding_size": 80, "tables": tables}
    assert layout(make_plan(spec_from_dict(spec))) == [[("gpu", ["e", "f"]), ("host", ["g"])]]
    reverse = {**spec, "tables": tables[::-1]}
    assert layout(make_plan(spec_from_dict(reverse))) == [[("gpu", ["g", "f"]), ("host", ["e"])]]


def test_offloaded_pieces_do_not_fuse_with_each_other() -> None:
    tables = [{"name": n, "rows": 10, "width": 4} for n in ("e", "f", "g")]
    plan = make_plan(spec_from_dict({"world_size": 1, "gpu_embedding_size": 0, "tables": tables}))
    assert layout(plan) == [[("host", ["e"]), ("host", ["f"]), ("host", ["g"])]]


def test_row_slices_and_replicas_are_never_offloaded() -> None:
    plan = make_plan(spec_from_dict(ROWS_AND_REPLICAS | {"gpu_embedding_size": 0}))
    assert devices(plan) == {"r": "gpu", "a": "host", "b": "host"}
    # the replica s (40 B) and half of r (400 B) stay on every GPU
    assert [r.device_bytes for r in plan.ranks] == [440, 440]


# --- offload: auto -----------------------------------------------------------------------

def test_auto_offloads_only_on_ranks_that_do_not_fit() -> None:
    # 3000 B: rank 0 (3280 B) must lose a (c alone cannot make room); rank 1 fits
    plan = plan_of(device_memory=3000, offload="auto")
    assert layout(plan) == [[("host", ["a"]), ("gpu", ["c"])], [("gpu", ["b", "d"])]]
    assert [(r.device_bytes, r.host_bytes) for r in plan.ranks] == [(80, 3200), (2240, 0)]
    assert plan_problems(plan) == []


def test_auto_counts_what_cannot_move() -> None:
    # 800 B: rank 0 has 800 - 440 = 360 B for a (400 B): off; rank 1 keeps b (640 B)
    plan = make_plan(spec_from_dict(ROWS_AND_REPLICAS | {"device_memory": 800, "offload": "auto"}))
    assert devices(plan) == {"r": "gpu", "a": "host", "b": "gpu"}
    assert [(r.device_bytes, r.host_bytes) for r in plan.ranks] == [(440, 400), (640, 0)]


def test_auto_counts_optimizer_state_and_the_reserve() -> None:
    # adam: 3 values per weight, rank 0 = 9840 B, rank 1 = 6720 B. 10,000 B less 10%
    # reserve = 9000 B: rank 0 sheds a (9600 B), rank 1 fits
    plan = plan_of(device_memory=10_000, memory_reserve=0.1, optimizer="adam", offload="auto")
    assert [(r.device_bytes, r.host_bytes) for r in plan.ranks] == [(240, 9600), (6720, 0)]


def test_auto_finds_the_least_bytes_where_largest_first_would_not() -> None:
    # one rank: p 240 B, q 200 B, r 200 B in 400 B. Keeping the largest first keeps p and
    # offloads 400 B; keeping q and r offloads p alone, 240 B.
    spec = {
        "world_size": 1,
        "device_memory": 400,
        "offload": "auto",
        "tables": [
            {"name": "p", "rows": 60, "width": 1},
            {"name": "q", "rows": 50, "width": 1},
            {"name": "r", "rows": 50, "width": 1},
        ],
    }
    plan = make_plan(spec_from_dict(spec))
    assert layout(plan) == [[("host", ["p"]), ("gpu", ["q", "r"])]]
    assert (plan.ranks[0].device_bytes, plan.ranks[0].host_bytes) == (400, 240)


def offloaded(sizes: list[int], room: int) -> list[bool]:
    search = offload_search(sizes, room)
    assert search.exact
    return search.offloaded


def test_offload_search_by_hand() -> None:
    assert offloaded([240, 200, 200], 400) == [True, False, False]
    # largest first: 5, then 4 reaches the room exactly; the search stops there
    assert offloaded([5, 4, 3, 2], 9) == [False, False, True, True]
    # of equal sizes the earlier is kept
    assert offloaded([3, 3, 3], 6) == [False, False, True]
    assert offloaded([10, 20], 30) == [False, False]  # fits: nothing moves
    assert offloaded([10, 20], 5) == [True, True]  # nothing fits
    assert offloaded([10, 20], -1) == [True, True]  # the rank overflows anyway
    assert offloaded([], 0) == []


def least_offloaded(sizes: list[int], room: int) -> int:
    """Brute force: the fewest bytes whose removal leaves at most ``room``."""
    total = sum(sizes)
    kept = max(
        (
            sum(combo)
            for k in range(len(sizes) + 1)
            for combo in itertools.combinations(sizes, k)
            if sum(combo) <= room
        ),
        default=0,
    )
    return total - kept


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 10_000), min_size=0, max_size=12),
    share=st.floats(0, 1.2),
)
def test_offload_search_is_minimal(sizes: list[int], share: float) -> None:
    room = int(sum(sizes) * share)
    kept = sum(size for size, off in zip(sizes, offloaded(sizes, room), strict=True) if not off)
    assert kept <= room
    assert sum(sizes) - kept == least_offloaded(sizes, room)


def test_the_search_is_exact_for_up_to_18_pieces() -> None:
    # even powers of two: every subset has its own total, and the odd room is never hit,
    # so the search must extend every total: 2^18 - 1 steps for 18 pieces
    sizes = [2 << k for k in range(18)]
    search = offload_search(sizes, sum(sizes) - 1)
    assert search.exact
    assert search.offloaded == [True] + [False] * 17  # the smallest goes
    more = [2 << k for k in range(19)]
    assert not offload_search(more, sum(more) - 1).exact


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 10**9), min_size=40, max_size=80),
    share=st.floats(0.05, 0.95),
)
def test_past_the_exact_search_the_excess_is_below_the_smallest_offloaded_piece(
    sizes: list[int], share: float
) -> None:
    # 40 or more random sizes: far more totals than EXACT_WORK steps can extend
    assert 2 ** len(sizes) > EXACT_WORK
    room = int(sum(sizes) * share)
    flags = offload_search(sizes, room).offloaded
    kept = sum(size for size, off in zip(sizes, flags, strict=True) if not off)
    gone = [size for size, off in zip(sizes, flags, strict=True) if off]
    assert kept <= room
    # nothing offloaded fits the room left, so offloaded - (total - room) < smallest gone
    assert all(size > room - kept for size in gone)
    assert sum(gone) - (sum(sizes) - room) < min(gone)


TABLE = st.fixed_dictionaries(
    {
        "rows": st.integers(1, 200),
        "width": st.integers(1, 16),
        "dtype": st.sampled_from(["float32", "float16"]),
        "combiner": st.sampled_from([None, "sum"]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tables=st.lists(TABLE, min_size=1, max_size=9),
    world=st.integers(1, 3),
    strategy=st.sampled_from(["basic", "memory_balanced", "memory_optimized", "auto"]),
    optimizer=st.sampled_from(["sgd", "adagrad", "adam"]),
    share=st.floats(0.05, 1.1),
)
def test_auto_offloads_the_fewest_bytes_on_every_rank(
    tables, world, strategy, optimizer, share
) -> None:
    """Against brute force over every subset of each rank's pieces (without offload).

    Plans over the limit even with everything offloaded (replicas and row slices alone
    overflow) are possible here; the capacity check refuses them, and validation says so.
    """
    raw = {
        "world_size": world,
        "strategy": strategy,
        "optimizer": optimizer,
        "objective": "memory",  # auto places as without device_memory; offload then moves
        "tables": [{"name": f"t{k}", **t} for k, t in enumerate(tables)],
    }
    placed = make_plan(spec_from_dict(raw))
    largest = max(r.bytes for r in placed.ranks)
    memory = max(1, int(largest * share))
    plan = make_plan(spec_from_dict({**raw, "device_memory": memory, "offload": "auto"}))
    if plan.strategy != placed.strategy:  # auto took an upstream plan, better once offloaded
        placed = make_plan(spec_from_dict({**raw, "strategy": plan.strategy}))
    slots = 1 + plan.parameters.optimizer_slots
    itemsize = {t.name: t.itemsize for t in plan.tables}
    for before, after in zip(placed.ranks, plan.ranks, strict=True):
        pieces = [
            m.rows * (m.cols[1] - m.cols[0]) * itemsize[m.table] * slots
            for w in before.table_parallel_weights
            for m in w.members
        ]
        room = memory - (before.bytes - sum(pieces))  # replicas and row slices stay
        assert after.bytes == before.bytes
        if room >= 0:
            assert after.host_bytes == least_offloaded(pieces, room)
            assert after.device_bytes <= memory
        else:  # nothing can make it fit: everything that can move has
            assert after.host_bytes == sum(pieces)
    assert all("usable device memory" in problem for problem in plan_problems(plan))


# --- the plan file -----------------------------------------------------------------------


def test_plans_without_offload_write_none_of_its_fields() -> None:
    text = plan_of().to_json()
    for key in ('"device"', '"host_bytes"', '"offload"', '"gpu_embedding_size"', '"host_memory"'):
        assert key not in text


def test_offloaded_pieces_say_host_in_shards_and_weights(tmp_path) -> None:
    plan = plan_of(gpu_embedding_size=500, host_memory="4KiB")
    data = json.loads(plan.to_json())
    assert [s.get("device") for s in data["shards"]] == ["host", "host", None, None]
    assert [[w.get("device") for w in r["table_parallel_weights"]] for r in data["ranks"]] == [
        ["host", None],
        ["host", None],
    ]
    assert [r.get("host_bytes") for r in data["ranks"]] == [3200, 1600]
    assert {k: data["parameters"][k] for k in ("offload", "gpu_embedding_size", "host_memory")} == {
        "offload": "upstream",
        "gpu_embedding_size": 500,
        "host_memory": 4096,
    }
    save_plan(plan, tmp_path / "p.json")
    assert load_plan(tmp_path / "p.json") == plan


def test_the_plan_remembers_its_offload_settings_for_validation() -> None:
    spec = spec_from_dict({**SMALL, "gpu_embedding_size": 500, "host_memory": 4096})
    plan = make_plan(spec)
    assert plan.spec() == spec.normalized()
    assert spec_problems(plan, spec) == []
    other = spec_from_dict({**SMALL, "gpu_embedding_size": 560, "host_memory": 4096})
    assert spec_problems(plan, other)


# --- the spec ----------------------------------------------------------------------------


def test_gpu_embedding_size_alone_means_upstreams_rule() -> None:
    assert spec_from_dict({**SMALL, "gpu_embedding_size": 5}).offload == "upstream"
    assert spec_from_dict(SMALL).offload == "none"
    assert spec_from_dict({**SMALL, "host_memory": "2GiB"}).host_memory == 2 * 2**30


def test_fingerprints_change_only_with_offload_settings() -> None:
    base = spec_from_dict(SMALL).fingerprint()
    assert spec_from_dict({**SMALL, "offload": "none"}).fingerprint() == base
    limited = spec_from_dict({**SMALL, "gpu_embedding_size": 5}).fingerprint()
    explicit = spec_from_dict({**SMALL, "gpu_embedding_size": 5, "offload": "upstream"})
    assert limited != base
    assert explicit.fingerprint() == limited


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"offload": "upstream"},
            "s.yaml: offload: upstream keeps gpu_embedding_size elements per rank on the GPU; "
            "set gpu_embedding_size, or use offload: auto with device_memory",
        ),
        (
            {"offload": "auto"},
            "s.yaml: offload: auto moves to host memory what does not fit device_memory; "
            "set device_memory",
        ),
        (
            {"offload": "none", "gpu_embedding_size": 10},
            "s.yaml: gpu_embedding_size: it is upstream's offload rule, but offload is none; "
            "remove gpu_embedding_size or set offload: upstream",
        ),
        (
            {"offload": "auto", "device_memory": 10, "gpu_embedding_size": 10},
            "s.yaml: gpu_embedding_size: it is upstream's offload rule, but offload is auto; "
            "remove gpu_embedding_size or set offload: upstream",
        ),
        (
            {"gpu_embedding_size": -1},
            "s.yaml: gpu_embedding_size: Input should be greater than or equal to 0 (got -1)",
        ),
        ({"offload": "cpu"}, "s.yaml: offload: Input should be 'none', 'upstream' or 'auto'"),
        ({"host_memory": "lots"}, "s.yaml: host_memory: cannot read this as a size"),
    ],
)
def test_bad_offload_settings_are_one_line(changes: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_dict({**SMALL, **changes}, source="s.yaml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_auto_with_offload_fits_where_an_upstream_strategy_does() -> None:
    # one 1e9 x 4 table (16 GB) on 2 ranks of 4 GiB. auto weighs its candidates before
    # offload: none fits a GPU, and row slices (8 GB a rank) are the smallest, but row
    # slices cannot go to host memory. Upstream's strategies cut it into two column
    # halves (more ranks than tables), which offload moves whole: 8 GB of host memory a
    # rank, none on the GPUs. They fit, so auto must, here with one of their plans.
    spec = spec_from_dict({
        "world_size": 2, "strategy": "auto", "device_memory": "4GiB", "offload": "auto",
        "host_memory": "16GiB", "tables": [{"name": "big", "rows": 10**9, "width": 4}],
    })
    plan = make_plan(spec)
    assert plan.parameters.requested_strategy == "auto"
    assert plan.strategy in ("basic", "memory_balanced", "memory_optimized")
    assert [(s.rank, s.cols, s.device) for s in plan.shards] == [
        (0, (0, 2), "host"),
        (1, (2, 4), "host"),
    ]
    assert [r.device_bytes for r in plan.ranks] == [0, 0]


def test_auto_with_offload_where_nothing_fits_keeps_the_smallest_largest_rank() -> None:
    # nothing fits GPU and host memory in any plan of these tables; auto then gives the
    # memory objective's plan (its step is no longer the point), with offload as without
    tables = [("t41", 85109, 337), ("t45", 8, 354), ("t47", 4, 64)]
    spec = spec_from_dict({
        "world_size": 2, "strategy": "auto", "device_memory": 18_552_645, "offload": "auto",
        "host_memory": 18_552_645, "global_batch_size": 2,
        "tables": [{"name": n, "rows": rows, "width": width} for n, rows, width in tables],
    })
    upstream = [
        make_plan(spec.model_copy(update={"strategy": name}))
        for name in ("basic", "memory_balanced", "memory_optimized")
    ]
    assert all(plan_problems(p) for p in upstream)  # none fits
    plan = make_plan(spec)
    assert plan.stats.max_rank_bytes <= min(p.stats.max_rank_bytes for p in upstream)
