"""Strategy ``auto``: sound plans, within the runtime's rules, never worse than upstream.

Bytes in the hand-worked examples are rows x width x 4 (float32).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.costs.memory import ranks_over_host_limit, ranks_over_limit
from planner.describe import describe
from planner.placement import auto_time
from planner.placement.auto import (
    BALANCED,
    TOLERANCE,
    Candidate,
    choose,
    choose_fastest,
    reduction_models,
    upstream_runs,
)
from planner.plan import Plan
from planner.planning import make_plan
from planner.spec import Spec, load_spec, spec_from_dict
from planner.validation import plan_problems, spec_problems

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
UPSTREAM = ("basic", "memory_balanced", "memory_optimized")


def sound(plan: Plan) -> list[str]:
    """plan_problems, less a rank over the device or host memory: the property specs draw
    memories that the tables may not fit, and such a plan is sound (the CLI refuses to
    write it)."""
    over = ("usable device memory", "over host_memory")
    return [p for p in plan_problems(plan) if not any(o in p for o in over)]


def auto_plan(spec: Spec) -> Plan:
    plan = make_plan(spec.model_copy(update={"strategy": "auto"}))
    assert sound(plan) == []
    assert runtime_problems(plan) == []
    return plan


def every_candidate(spec: Spec) -> list[Candidate]:
    """The balanced, fast and upstream candidates of every model ``auto`` weighs (two
    where it may choose the row reduction), as it scores them."""
    models = reduction_models(spec)
    placements = upstream_runs(spec)
    balanced = models[0].auto_candidates(models[1:])
    scored = balanced + [c for m in models for c in m.scored(placements)]
    return auto_time.fast_candidates(models) + scored


def best_upstream(spec: Spec) -> int:
    return min(
        make_plan(spec.model_copy(update={"strategy": name})).stats.max_rank_bytes
        for name in UPSTREAM
    )


def runtime_problems(plan: Plan) -> list[str]:
    """What the runtime needs beyond plan_problems' coverage checks."""
    problems = []
    split = plan.groups.data_parallel or plan.groups.row_sliced
    if split and (not plan.parameters.dp_input or plan.world_size == 1):
        problems.append("data-parallel or row-sliced tables without data-parallel input")
    by_table: dict[str, list] = {}
    for shard in plan.shards:
        by_table.setdefault(shard.table, []).append(shard)
    for name in plan.groups.table_parallel:
        shards = sorted(by_table[name], key=lambda s: s.rank)
        ranks = [s.rank for s in shards]
        if len(set(ranks)) != len(ranks):
            problems.append(f"{name}: two pieces on one rank")
        if any(a.cols[1] != b.cols[0] for a, b in pairwise(shards)) or shards[0].cols[0]:
            problems.append(f"{name}: columns not consecutive in rank order")
    for index, name in enumerate(plan.groups.row_sliced):
        ranges = [rank.row_slices[index].rows for rank in plan.ranks]
        if ranges[0][0] or any(a[1] != b[0] for a, b in pairwise(ranges)):
            problems.append(f"{name}: row ranges not consecutive in rank order")
        if ranges[-1][1] != plan.table(name).rows:
            problems.append(f"{name}: row ranges do not end at the last row")
    return problems


def spec_of(tables, world_size, **params) -> Spec:
    return spec_from_dict(
        {"world_size": world_size, "strategy": "auto", "tables": tables, **params}
    )


def table(name, rows, width, **kw):
    return {"name": name, "rows": rows, "width": width, **kw}


def shards(plan):
    return [(s.table, s.rank, s.rows, s.cols) for s in plan.shards]


# --- worked by hand -------------------------------------------------------------------


def test_a_huge_table_is_split_where_upstream_keeps_it_whole() -> None:
    # 3 tables on 2 ranks: more tables than ranks, so upstream slices nothing and its best
    # (memory_optimized) puts big alone on a rank: 1000 x 4 x 4 = 16000 bytes, against a
    # mean of (16000 + 1600 + 1600) / 2 = 9600. The ideal is 9600 on both ranks, and only
    # one way reaches it: big cut into two 2-column halves (8000 bytes), one with s1 and
    # one with s2. auto pours the tables into rank 0 up to the cap 9600 (s1, then two of
    # big's columns) and rank 1 takes the rest.
    spec = spec_of(
        [table("big", 1000, 4), table("s1", 100, 4), table("s2", 100, 4)],
        2,
        data_parallel_threshold=0,  # no replicas, so the arithmetic stays plain
        column_multiple=1,  # any cut (the default, 4, would keep big's 4 columns whole)
    )
    assert best_upstream(spec) == 16000
    plan = auto_plan(spec)
    assert plan.strategy == "auto"
    assert [r.bytes for r in plan.ranks] == [9600, 9600]
    assert shards(plan) == [
        ("big", 0, (0, 1000), (0, 2)),
        ("big", 1, (0, 1000), (2, 4)),
        ("s1", 0, (0, 100), (0, 4)),
        ("s2", 1, (0, 100), (0, 4)),
    ]
    # local weights: pieces in table order, fused only at equal widths (2 and 4 here)
    rank0 = plan.ranks[0]
    weights = rank0.table_parallel_weights
    assert [(w.rows, w.width, [m.table for m in w.members]) for w in weights] == [
        (1000, 2, ["big"]),
        (100, 4, ["s1"]),
    ]
    assert [(i.input, i.weight, i.row_offset) for i in rank0.table_parallel_inputs] == [
        ("big", 0, 0),
        ("s1", 1, 0),
    ]
    assert plan.parameters.column_slice_threshold == 2000  # big's widest piece, elements
    assert plan.parameters.column_slice_threshold_source == "auto"


def test_a_table_too_narrow_to_split_by_columns_is_row_sliced() -> None:
    # big: 1,000,000 x 2 = 8,000,000 bytes; one column is 4,000,000, twice the mean rank,
    # so no column split balances 4 ranks. auto row-slices it: 250,000 rows a rank.
    # The two 100 x 2 tables (800 bytes each) are replicated: together 1600 bytes, within
    # the replica budget of 1e-3 x 8,001,600 / 4 = 2000.4 bytes a rank.
    # Every rank: 250,000 x 2 x 4 + 1600 = 2,001,600 bytes.
    tables = [table("big", 1_000_000, 2), table("a", 100, 2), table("b", 100, 2)]
    spec = spec_of(tables, 4)
    # upstream (automatic column threshold): big in two columns, 4,000,000 on a rank
    assert best_upstream(spec) == 4_000_000
    plan = auto_plan(spec)
    assert (plan.groups.data_parallel, plan.groups.table_parallel, plan.groups.row_sliced) == (
        ["a", "b"],
        [],
        ["big"],
    )
    assert [r.row_slices[0].rows for r in plan.ranks] == [
        (0, 250_000),
        (250_000, 500_000),
        (500_000, 750_000),
        (750_000, 1_000_000),
    ]
    assert [r.bytes for r in plan.ranks] == [2_001_600] * 4
    assert plan.parameters.data_parallel_threshold == 200  # the replicas' elements
    assert plan.parameters.row_slice_threshold == 2_000_000  # the row-sliced table's


def test_without_data_parallel_input_only_columns_are_split() -> None:
    # The same tables with dp_input false: no replicas, no row slices. big's two columns
    # (4,000,000 bytes each, the least any placement can hold) take two ranks; a and b,
    # small, are dealt to the two others, so that each rank sends about as many
    # embeddings as the next.
    tables = [table("big", 1_000_000, 2), table("a", 100, 2), table("b", 100, 2)]
    plan = auto_plan(spec_of(tables, 4, dp_input=False, column_multiple=1))
    assert plan.groups.data_parallel == plan.groups.row_sliced == []
    assert [r.bytes for r in plan.ranks] == [800, 800, 4_000_000, 4_000_000]
    assert shards(plan) == [
        ("big", 2, (0, 1_000_000), (0, 1)),
        ("big", 3, (0, 1_000_000), (1, 2)),
        ("a", 0, (0, 100), (0, 2)),
        ("b", 1, (0, 100), (0, 2)),
    ]


def test_one_rank_holds_everything_whole() -> None:
    plan = auto_plan(spec_of([table("x", 10, 3), table("y", 5, 3, dtype="float16")], 1))
    assert plan.groups.table_parallel == ["x", "y"]
    assert plan.ranks[0].bytes == 10 * 3 * 4 + 5 * 3 * 2
    assert len(plan.ranks[0].table_parallel_weights) == 2  # dtypes differ: not fused


def test_row_remainders_rotate_over_the_ranks() -> None:
    # Two one-column tables of 10 rows (40 bytes each) over 4 ranks, where the mean rank
    # holds 80 / 4 = 20 bytes plus the replica r: whole, either would double a rank, so
    # both are row-sliced: 2 rows a rank and 2 left over. The first table's extra rows
    # go to ranks 0 and 1, the second's to ranks 2 and 3: every rank holds 5 rows.
    tables = [table("p", 10, 1), table("q", 10, 1), table("r", 1, 1)]
    plan = auto_plan(spec_of(tables, 4, data_parallel_threshold=1))
    assert plan.groups.row_sliced == ["p", "q"]
    assert [r.bytes for r in plan.ranks] == [5 * 4 + 4] * 4
    assert [[s.rows for s in r.row_slices] for r in plan.ranks] == [
        [(0, 3), (0, 2)],
        [(3, 6), (2, 4)],
        [(6, 8), (4, 7)],
        [(8, 10), (7, 10)],
    ]


# --- the choice between candidates ----------------------------------------------------


def candidate(max_bytes: int, seconds: float) -> Candidate:
    return Candidate(max_bytes=max_bytes, step_seconds=seconds, build=lambda: None)


def test_choice_prefers_the_faster_among_those_within_2_percent_of_the_mean() -> None:
    best, balanced, unbalanced = candidate(1000, 10), candidate(1020, 1), candidate(1021, 0)
    assert choose([best, balanced], [candidate(2000, 0)], 1000) is balanced
    assert choose([best, unbalanced], [candidate(2000, 0)], 1000) is best
    assert (TOLERANCE, BALANCED) == (0.01, 0.02)


def test_choice_allows_1_percent_over_the_best_when_none_is_within_2_percent() -> None:
    # mean 900: 2% of it (918) is below the best, so the 1% tolerance applies instead
    best, close, cheap_upstream = candidate(1000, 10), candidate(1009, 1), candidate(2000, 0)
    assert choose([best, close], [cheap_upstream], 900) is close
    far = candidate(1011, 1)
    assert choose([best, far], [cheap_upstream], 900) is best


def test_choice_is_never_above_the_best_upstream() -> None:
    ours, upstream = [candidate(1000, 10), candidate(1008, 1)], [candidate(1005, 50)]
    assert choose(ours, upstream, 900) is ours[0]  # 1008 is within 1% but above upstream's
    worse = [candidate(1100, 1)]
    assert choose(worse, upstream, 900) is upstream[0]


def test_fastest_choice_among_those_that_fit() -> None:
    slow_small, fast_big, fast_small = candidate(100, 5), candidate(300, 1), candidate(200, 1)
    assert choose_fastest([slow_small, fast_big, fast_small], [], 250) is fast_small
    assert choose_fastest([slow_small, fast_big], [], 250) is slow_small
    assert choose_fastest([slow_small, fast_big], [], None) is fast_big
    # nothing fits: the smallest largest rank
    assert choose_fastest([fast_big], [slow_small], 50) is slow_small


def test_steps_within_1_percent_are_ties_that_memory_decides() -> None:
    fastest, close, far = candidate(300, 1.0), candidate(200, 1.01), candidate(100, 1.011)
    assert choose_fastest([fastest, close, far], [], None) is close
    # never above the fastest fitting upstream candidate, tie or not
    assert choose_fastest([fastest, close], [candidate(400, 1.005)], None) is fastest
    # an upstream candidate that does not fit sets no ceiling
    assert choose_fastest([fastest, close], [candidate(400, 1.005)], 350) is close


# --- properties on random specs -------------------------------------------------------


@st.composite
def specs(draw) -> Spec:
    count = draw(st.integers(1, 10))
    tables = []
    for k in range(count):
        tables.append(
            {
                "name": f"t{k}",
                "rows": draw(st.one_of(st.integers(1, 8), st.integers(1, 100_000))),
                "width": draw(st.one_of(st.sampled_from([1, 4, 8, 16]), st.integers(1, 40))),
                "combiner": draw(st.sampled_from([None, "sum", "mean"])),
                "dtype": draw(st.sampled_from(["float32", "float16", "bfloat16"])),
                "initializer": draw(st.sampled_from(["uniform", "zeros"])),
            }
        )
    inputs = None
    if draw(st.booleans()):
        inputs = [{"name": f"i{k}", "table": t["name"]} for k, t in enumerate(tables)]
        for t in tables:
            if t["combiner"] and draw(st.booleans()):  # a second, multi-hot reader
                inputs.append({"name": f"{t['name']}_multi", "table": t["name"], "hotness": 7})
    threshold = st.one_of(st.none(), st.just(0), st.integers(1, 10**6))
    world = draw(st.integers(1, 12))
    raw = {
        "world_size": world,
        "strategy": "auto",
        "objective": draw(st.sampled_from(["time", "memory"])),
        "global_batch_size": world * draw(st.integers(1, 64)),
        "gpus_per_host": draw(st.sampled_from([1, 2, 8])),
        "column_multiple": draw(st.sampled_from([1, 4])),
        "dp_input": draw(st.booleans()),
        "column_slice_threshold": draw(threshold),
        "row_slice_threshold": draw(threshold),
        "data_parallel_threshold": draw(threshold),
        "tables": tables,
    }
    if inputs is not None:
        raw["inputs"] = inputs
    if draw(st.booleans()):  # a device that the tables may or may not fit
        total = sum(t["rows"] * t["width"] * 4 for t in tables)
        raw["device_memory"] = max(1, total * draw(st.integers(1, 30)) // (10 * world))
        if draw(st.booleans()):  # what does not fit may go to host memory, which may be small
            raw["offload"] = "auto"
            if draw(st.booleans()):
                raw["host_memory"] = max(1, total * draw(st.integers(1, 10)) // (10 * world))
    return spec_from_dict(raw)


def fits(plan: Plan) -> bool:
    return not ranks_over_limit(plan) and not ranks_over_host_limit(plan)


def upstream_plans(spec: Spec) -> list[Plan]:
    return [make_plan(spec.model_copy(update={"strategy": name})) for name in UPSTREAM]


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_auto_is_sound_deterministic_and_never_worse_than_upstream(spec: Spec) -> None:
    plan = auto_plan(spec)
    upstream = upstream_plans(spec)
    fitting = [p for p in upstream if fits(p)]
    if fitting:  # fitting comes first, with or without offload
        assert fits(plan)
    if spec.resolved_objective() == "memory":
        # without offload auto's balance never loses; with it, among the plans that fit
        rivals = fitting or upstream if spec.offload != "none" else upstream
        assert plan.stats.max_rank_bytes <= min(p.stats.max_rank_bytes for p in rivals)
    elif fitting:
        assert plan.stats.step.step_seconds <= min(p.stats.step.step_seconds for p in fitting)
    elif not fits(plan):  # nothing fits: the memory objective's plan
        assert plan.stats.max_rank_bytes <= min(p.stats.max_rank_bytes for p in upstream)
    assert make_plan(spec).to_json() == plan.to_json()
    assert plan.parameters.requested_strategy == "auto"
    assert plan.strategy in ("auto", *UPSTREAM)
    if plan.strategy == "auto":  # all pieces of a table but one a multiple of column_multiple
        odd = Counter(
            s.table for s in plan.table_parallel_shards
            if (s.cols[1] - s.cols[0]) % spec.column_multiple
        )
        assert all(count == 1 for count in odd.values())


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_candidates_are_scored_as_their_plans_report(spec: Spec) -> None:
    # auto compares candidates by bytes it adds up itself; the plans must agree
    spec = spec.normalized()
    for candidate in every_candidate(spec):
        plan = describe(spec, candidate.build())
        assert sound(plan) == []
        assert runtime_problems(plan) == []
        assert candidate.max_bytes == plan.stats.max_rank_bytes  # sgd: weights only
        assert candidate.step_seconds == plan.stats.step.step_seconds


# --- the bundled models ---------------------------------------------------------------

CONFIG_NAMES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("world_size", [8, 16, 32, 128])
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_bundled_models_are_balanced(config: str, world_size: int) -> None:
    # README: with the memory objective (the default without device_memory), at most
    # 1.02x the mean on every bundled config at 8 to 128 ranks (the largest measured,
    # 1.0195, is criteo_1tb_mlperf_v1 on 16 ranks). Tables whose single 4-column unit is
    # too big for an even share are row-sliced.
    spec = load_spec(CONFIGS / f"{config}.yaml", {"world_size": world_size})
    assert spec.resolved_objective() == "memory"
    plan = auto_plan(spec)
    assert plan.stats.imbalance <= 1.02
    assert plan.stats.max_rank_bytes <= best_upstream(spec)


def test_the_bundled_configs_worst_balance_is_the_one_the_readme_quotes() -> None:
    spec = load_spec(CONFIGS / "criteo_1tb_mlperf_v1.yaml", {"world_size": 16})
    assert round(auto_plan(spec).stats.imbalance, 4) == 1.0195


def test_one_rank_uses_basic_even_when_auto_is_asked() -> None:
    # README placement rule 1: with one rank the strategy is basic; the plan is basic's,
    # with auto recorded as the requested strategy
    tables = [
        {"name": "a", "rows": 100, "width": 8},
        {"name": "b", "rows": 50, "width": 8},
        {"name": "c", "rows": 10, "width": 4, "dtype": "float16"},
    ]
    auto = make_plan(spec_from_dict({"world_size": 1, "strategy": "auto", "tables": tables}))
    basic = make_plan(spec_from_dict({"world_size": 1, "strategy": "basic", "tables": tables}))
    assert (auto.strategy, auto.parameters.requested_strategy) == ("basic", "auto")
    assert auto.shards == basic.shards
    assert auto.ranks == basic.ranks
    assert auto.parameters.column_slice_threshold_source == "none"


@pytest.mark.parametrize("world_size", [8, 128])
@pytest.mark.parametrize("config", ["synthetic_tiny", "synthetic_medium", "criteo_kaggle"])
def test_model_parallel_input_uses_columns_only(config: str, world_size: int) -> None:
    spec = load_spec(CONFIGS / f"{config}.yaml", {"world_size": world_size})
    plan = auto_plan(spec.model_copy(update={"dp_input": False}))
    assert plan.groups.data_parallel == plan.groups.row_sliced == []
    assert plan.stats.max_rank_bytes <= best_upstream(spec.model_copy(update={"dp_input": False}))


def test_upstream_balance_as_quoted_in_the_issue() -> None:
    # Upstream's best strategy on its own synthetic models: 1.81x the mean (small, 8
    # ranks), 1.85x (medium, 8) and 29.6x (medium, 128: a 47.7 GiB table never split).
    quoted = {("synthetic_small", 8): 1.81, ("synthetic_medium", 8): 1.85}
    quoted[("synthetic_medium", 128)] = 29.6
    for (config, world_size), ratio in quoted.items():
        spec = load_spec(CONFIGS / f"{config}.yaml", {"world_size": world_size})
        best = min(
            make_plan(spec.model_copy(update={"strategy": name})).stats.imbalance
            for name in UPSTREAM
        )
        assert round(best, 2 if ratio < 10 else 1) == ratio
        assert auto_plan(spec).stats.imbalance <= 1.02


@pytest.mark.parametrize("objective", ["time", "memory"])
@pytest.mark.parametrize(
    ("config", "world_size"),
    [
        ("synthetic_small", 16),
        ("mlperf_dlrm_v2", 8),
        ("criteo_kaggle", 32),
        ("synthetic_tiny", 128),
    ],
)
def test_auto_scores_candidates_as_their_plans_report_the_step(
    config: str, world_size: int, objective: str
) -> None:
    # auto picks among placements by planner.costs.steptime's estimate, computed from the
    # pieces without writing each candidate out as a plan; both must agree exactly.
    overrides = {"world_size": world_size, "objective": objective, "global_batch_size": 2**16}
    spec = load_spec(CONFIGS / f"{config}.yaml", overrides).normalized()
    for candidate in every_candidate(spec):
        plan = describe(spec, candidate.build())
        assert candidate.step_seconds == plan.stats.step.step_seconds


# --- the time objective -----------------------------------------------------------------


def test_a_hot_small_table_is_replicated_and_a_hot_big_one_kept_whole() -> None:
    # 16 ranks, one GPU per host (so no host to split rows over), batch 8,192: "hot"
    # (1,000 x 16, read by an input of hotness 50) whole on one rank would receive 50 ids
    # of 8 bytes per sample from every rank and look them all up; replicated, only its
    # 64 KB gradient is allreduced. On two hosts of 8 the estimate prefers splitting its
    # rows over one host (each holder looks up an eighth of its ids). "big"
    # (1,000,000 x 16, hotness 20) is too big to replicate cheaply; each column piece
    # would receive all its ids again, and whole it already costs less than the mean
    # rank's load (40 one-hot tables share the ranks), so it stays whole.
    tables = [
        table("hot", 1_000, 16, combiner="sum"),
        table("big", 1_000_000, 16, combiner="sum"),
        *(table(f"t{k}", 100_000, 64) for k in range(40)),
    ]
    inputs = [
        {"name": "hot", "table": "hot", "hotness": 50},
        {"name": "big", "table": "big", "hotness": 20},
        *({"name": f"t{k}", "table": f"t{k}"} for k in range(40)),
    ]
    raw = {
        "world_size": 16,
        "strategy": "auto",
        "tables": tables,
        "inputs": inputs,
        "device_memory": "1GiB",
        "global_batch_size": 8192,
        "gpus_per_host": 1,
    }
    spec = spec_from_dict(raw)
    assert spec.resolved_objective() == "time"  # device_memory is set
    plan = auto_plan(spec)
    assert plan.groups.data_parallel == ["hot"]
    assert [s.cols for s in plan.shards if s.table == "big"] == [(0, 16)]
    upstream = upstream_plans(spec)
    assert plan.stats.step.step_seconds < min(p.stats.step.step_seconds for p in upstream)
    hosts = auto_plan(spec_from_dict({**raw, "gpus_per_host": 8}))
    assert [(s.table, s.ranks) for s in hosts.row_splits] == [("hot", (0, 8))]
    assert [s.cols for s in hosts.shards if s.table == "big"] == [(0, 16)]


def test_column_pieces_are_multiples_of_4_columns() -> None:
    # the memory objective on a model that needs cuts: every piece of a cut table but
    # one is a multiple of 4 columns wide (here every one: the widths are multiples)
    spec = load_spec(CONFIGS / "synthetic_tiny.yaml", {"world_size": 32})
    plan = auto_plan(spec)
    cuts = [s.cols for s in plan.shards if s.cols != (0, plan.table(s.table).width)]
    assert cuts
    assert all((end - start) % 4 == 0 for start, end in cuts)
    narrow = auto_plan(spec.model_copy(update={"column_multiple": 1}))
    assert any((s.cols[1] - s.cols[0]) % 4 for s in narrow.shards)


def test_one_piece_of_a_cut_table_takes_the_columns_left_wherever_it_is_placed() -> None:
    # 5 columns cut into pieces of 4 and 1; the 1-column piece lands on rank 0, and a
    # table's columns follow its pieces' ranks, so it holds 0:1 and rank 3 holds 1:5
    spec = spec_of([table("small", 1, 5), table("big", 1, 43)], 4, dp_input=False, objective="time")
    plan = auto_plan(spec)
    assert sorted((s.rank, s.cols) for s in plan.shards if s.table == "small") == [
        (0, (0, 1)),
        (3, (1, 5)),
    ]


@pytest.mark.parametrize("world_size", [8, 32, 128, 1024])
@pytest.mark.parametrize("config", ["synthetic_tiny", "synthetic_small"])
def test_time_objective_is_at_or_below_the_fastest_fitting_upstream(
    config: str, world_size: int
) -> None:
    overrides = {"world_size": world_size, "device_memory": "80GiB", "global_batch_size": 2**16}
    spec = load_spec(CONFIGS / f"{config}.yaml", overrides)
    plan = auto_plan(spec)
    fitting = [p for p in upstream_plans(spec) if not ranks_over_limit(p)]
    assert not ranks_over_limit(plan)
    assert plan.stats.step.step_seconds <= min(p.stats.step.step_seconds for p in fitting)


def _narrow_hot_spec(gpus_per_host: int) -> Spec:
    """One very hot table of 4-column rows (too narrow to cut, too large to replicate
    cheaply) beside six light ones, on 4 ranks."""
    light = [{"name": f"t{i}", "rows": 100_000, "width": 16, "combiner": "sum"} for i in range(6)]
    return spec_from_dict(
        {
            "world_size": 4,
            "gpus_per_host": gpus_per_host,
            "strategy": "auto",
            "objective": "time",
            "device_memory": "80GiB",
            "global_batch_size": 4096,
            "tables": [{"name": "hot", "rows": 50_000_000, "width": 4, "combiner": "sum"}, *light],
            "inputs": [
                {"name": "hot", "table": "hot", "hotness": 400},
                *({"name": t["name"], "table": t["name"], "hotness": 2} for t in light),
            ],
        }
    )


def test_auto_splits_a_hot_narrow_table_over_one_host_where_that_pays() -> None:
    # Two hosts of two ranks: the hot table's rows go to one host's two ranks, which
    # then read half its rows each; the other host takes the light tables.
    plan = make_plan(_narrow_hot_spec(gpus_per_host=2))
    assert [(s.table, s.ranks) for s in plan.row_splits] == [("hot", (0, 2))]
    assert plan_problems(plan) == []
    assert spec_problems(plan, _narrow_hot_spec(gpus_per_host=2)) == []
    held = [r.row_slices[0].rows for r in plan.ranks]
    assert held == [(0, 25_000_000), (25_000_000, 50_000_000)] + [(50_000_000,) * 2] * 2
    # No rank of host 1 looks the hot table up: its ranks' lookups are the light
    # tables' alone, far below the holders'.
    lookups = [r.step.forward_lookups for r in plan.ranks]
    assert max(lookups[2:]) < min(lookups[:2]) / 10
    # Without hosts to split over (one GPU per host), auto cannot make the split, and
    # its best plan is slower by its own estimate.
    unsplit = make_plan(_narrow_hot_spec(gpus_per_host=1))
    assert all(s.ranks == (0, 4) for s in unsplit.row_splits)
    assert plan.stats.step.step_seconds < unsplit.stats.step.step_seconds


def _cold_giant_spec() -> Spec:
    """4 ranks, one GPU per host: "cold" (10,000,000 x 16, 640 MB, one id per sample)
    beside eight hot tables (100,000 x 16, 6.4 MB each, 10 ids per sample)."""
    hot = [{"name": f"t{i}", "rows": 100_000, "width": 16, "combiner": "sum"} for i in range(8)]
    return spec_from_dict(
        {
            "world_size": 4,
            "gpus_per_host": 1,
            "strategy": "auto",
            "objective": "time",
            "device_memory": "80GiB",
            "global_batch_size": 4096,
            "data_parallel_threshold": 0,
            "tables": [{"name": "cold", "rows": 10_000_000, "width": 16}, *hot],
            "inputs": [
                {"name": "cold", "table": "cold"},
                *({"name": t["name"], "table": t["name"], "hotness": 10} for t in hot),
            ],
        }
    )


def test_time_objective_spreads_a_large_cold_table_where_the_step_allows(monkeypatch) -> None:
    # Whole, "cold" puts 640 MB on one rank against a mean of 173 MB (3.7x). Its lookups
    # are light: cut into four 4-column pieces, each rank receives its ids once more (4
    # bytes per sample), which leaves the step within auto's 1% tie, so the four pieces
    # go one to a rank and the largest rank holds 173 MB (160 MB of "cold" and two hot
    # tables). Without the spreading variant auto keeps it whole, as before.
    plan = auto_plan(_cold_giant_spec())
    assert sorted(s.cols for s in plan.shards if s.table == "cold") == [
        (0, 4), (4, 8), (8, 12), (12, 16)
    ]
    assert plan.stats.imbalance < 1.01
    monkeypatch.setattr(auto_time, "VARIANTS", [v for v in auto_time.VARIANTS if not v[2]])
    whole = auto_plan(_cold_giant_spec())
    assert [s.cols for s in whole.shards if s.table == "cold"] == [(0, 16)]
    assert whole.stats.imbalance > 3.5
    assert plan.stats.step.step_seconds <= whole.stats.step.step_seconds * 1.01


def test_time_objective_keeps_tables_over_half_a_rank_in_fewer_pieces(monkeypatch) -> None:
    # synthetic_large's g2_t0 and g3_t0 are 200,000,000 x 128 float32: 95.4 GiB each,
    # on 32 ranks of 80 GiB. With pieces only up to half a rank (40 GiB) each is cut in
    # three, and each piece receives all of its table's ids; with pieces up to a whole
    # rank, in two of 64 columns (47.7 GiB). Measured: 9.448 ms in two pieces; in three,
    # 10.920 ms after the stage search's descent and 9.467 ms after its kicks too.
    spec = load_spec(
        CONFIGS / "synthetic_large.yaml",
        {"world_size": 32, "strategy": "auto", "objective": "time",
         "device_memory": 80 * 2**30, "global_batch_size": 512 * 32},
    )
    plan = make_plan(spec)
    for name in ("g2_t0", "g3_t0"):
        assert sorted(s.cols for s in plan.shards if s.table == name) == [(0, 64), (64, 128)]
    assert not ranks_over_limit(plan)
    monkeypatch.setattr(auto_time, "PIECE_SHARES", (auto_time.MEMORY_SHARE,))
    halves = make_plan(spec)
    assert len([s for s in halves.shards if s.table == "g2_t0"]) == 3
    assert plan.stats.step.step_seconds < halves.stats.step.step_seconds
    monkeypatch.setattr(auto_time, "KICKS", 0)
    assert plan.stats.step.step_seconds < 0.9 * make_plan(spec).stats.step.step_seconds
