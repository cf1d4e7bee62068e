"""The example specs in configs/: they load, they plan soundly, and they say what they claim.

Expected shapes come from the upstream sources each file cites (written out here, not read
from the files): NVIDIA distributed-embeddings' synthetic_models/config_v3.py and README,
MLPerf's DLRM v2 reference, and the Criteo sizes in the DLRM reference implementation.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner import Plan, Spec, load_spec, make_plan, plan_problems
from planner.cli import main
from planner.placement.upstream import UPSTREAM_STRATEGIES
from planner.spec_fields import STRATEGIES

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CONFIG_NAMES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))
SYNTHETIC = ["tiny", "small", "medium", "large", "jumbo", "colossal"]
GIB = 2**30

# Upstream README: tables and float32 GiB of each synthetic model.
UPSTREAM_README = {
    "tiny": (55, 4.2),
    "small": (107, 26.3),
    "medium": (311, 206.2),
    "large": (612, 773.8),
    "jumbo": (1022, 3109.5),
    "colossal": (2002, 22327.4),
}

# Upstream config_v3.py: EmbeddingConfig(num_tables, nnz, num_rows, width, shared) per group.
UPSTREAM_GROUPS = {
    "tiny": [
        (1, [1, 10], 10_000, 8, True),
        (1, [1, 10], 1_000_000, 16, True),
        (1, [1, 10], 25_000_000, 16, True),
        (1, [1], 25_000_000, 16, False),
        (16, [1], 10, 8, False),
        (10, [1], 1_000, 8, False),
        (4, [1], 10_000, 8, False),
        (2, [1], 100_000, 16, False),
        (19, [1], 1_000_000, 16, False),
    ],
    "small": [
        (5, [1, 30], 10_000, 16, True),
        (3, [1, 30], 4_000_000, 32, True),
        (1, [1, 30], 50_000_000, 32, True),
        (1, [1], 50_000_000, 32, False),
        (30, [1], 10, 16, False),
        (30, [1], 1_000, 16, False),
        (5, [1], 10_000, 16, False),
        (5, [1], 100_000, 32, False),
        (27, [1], 4_000_000, 32, False),
    ],
    "medium": [
        (20, [1, 50], 100_000, 64, True),
        (5, [1, 50], 10_000_000, 64, True),
        (1, [1, 50], 100_000_000, 128, True),
        (1, [1], 100_000_000, 128, False),
        (80, [1], 10, 32, False),
        (60, [1], 1_000, 32, False),
        (80, [1], 100_000, 64, False),
        (24, [1], 200_000, 64, False),
        (40, [1], 10_000_000, 64, False),
    ],
    "large": [
        (40, [1, 100], 100_000, 64, True),
        (16, [1, 100], 15_000_000, 64, True),
        (1, [1, 100], 200_000_000, 128, True),
        (1, [1], 200_000_000, 128, False),
        (100, [1], 10, 32, False),
        (100, [1], 10_000, 32, False),
        (160, [1], 100_000, 64, False),
        (50, [1], 500_000, 64, False),
        (144, [1], 15_000_000, 64, False),
    ],
    "jumbo": [
        (50, [1, 200], 100_000, 128, True),
        (24, [1, 200], 20_000_000, 128, True),
        (1, [1, 200], 400_000_000, 256, True),
        (1, [1], 400_000_000, 256, False),
        (100, [1], 10, 32, False),
        (200, [1], 10_000, 64, False),
        (350, [1], 100_000, 128, False),
        (80, [1], 1_000_000, 128, False),
        (216, [1], 20_000_000, 128, False),
    ],
    "colossal": [
        (100, [1, 300], 100_000, 128, True),
        (50, [1, 300], 40_000_000, 256, True),
        (1, [1, 300], 2_000_000_000, 256, True),
        (1, [1], 1_000_000_000, 256, False),
        (100, [1], 10, 32, False),
        (400, [1], 10_000, 128, False),
        (100, [1], 100_000, 128, False),
        (800, [1], 1_000_000, 128, False),
        (450, [1], 40_000_000, 256, False),
    ],
}

# MLPerf Training DLRM v2: --num_embeddings_per_feature and --multi_hot_sizes.
DLRM_V2_ROWS = [
    40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
    2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36,
]  # fmt: skip
DLRM_V2_HOTNESS = [
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
]  # fmt: skip
# DLRM reference: Criteo Terabyte with --max-ind-range=40000000, and Criteo Kaggle.
TERABYTE_ROWS = [
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
]  # fmt: skip
KAGGLE_ROWS = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
    14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
]  # fmt: skip


@functools.cache
def spec_of(name: str) -> Spec:
    return load_spec(CONFIGS / f"{name}.yaml")


def resized(spec: Spec, world_size: int, strategy: str) -> Spec:
    return Spec.model_validate(
        {**spec.model_dump(), "world_size": world_size, "strategy": strategy}
    )


def assert_sound(plan: Plan, spec: Spec) -> None:
    """plan_problems finds nothing, and the plan agrees with counts made here from the spec."""
    assert plan_problems(plan) == []
    world = spec.world_size
    assert plan.world_size == world
    assert [r.rank for r in plan.ranks] == list(range(world))
    assert plan.parameters.requested_strategy == spec.strategy
    if spec.strategy in UPSTREAM_STRATEGIES:  # placed by upstream's rules
        assert plan.strategy == ("basic" if world == 1 else spec.strategy)
    assert plan.fingerprint == spec.fingerprint()
    tables = {t.name: t for t in spec.tables}
    # Every table held once: data-parallel ones whole on every rank, the rest tiled by
    # shards whose areas add up to the table.
    area = Counter()
    for shard in plan.shards:
        area[shard.table] += (shard.rows[1] - shard.rows[0]) * (shard.cols[1] - shard.cols[0])
    replicated = set(plan.groups.data_parallel)
    assert {name: area[name] for name in tables if name not in replicated} == {
        name: t.elements for name, t in tables.items() if name not in replicated
    }
    assert not replicated & set(area)
    total = sum(t.elements * t.itemsize for t in spec.tables)
    replica = sum(tables[name].elements * tables[name].itemsize for name in replicated)
    assert plan.stats.total_bytes == total
    assert sum(r.bytes for r in plan.ranks) == total + (world - 1) * replica
    assert plan.stats.max_rank_bytes == max(r.bytes for r in plan.ranks)


def test_the_expected_configs_are_there() -> None:
    assert set(CONFIG_NAMES) >= {f"synthetic_{name}" for name in SYNTHETIC} | {
        "criteo_kaggle",
        "criteo_1tb_mlperf_v1",
        "mlperf_dlrm_v2",
    }


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_loads(name: str) -> None:
    spec = spec_of(name)
    assert spec.world_size >= 1
    assert spec.tables
    # Every input reads a declared table (the model checks this; the test states it).
    assert {i.table for i in spec.resolved_inputs()} <= {t.name for t in spec.tables}


def _plan_cases() -> list:
    cases = []
    for name in CONFIG_NAMES:
        own = spec_of(name).world_size
        for world in dict.fromkeys([own, 1, 8, 128]):
            for strategy in STRATEGIES:
                cases.append(pytest.param(name, world, strategy, id=f"{name}-{world}-{strategy}"))
    return cases


@pytest.mark.parametrize(("name", "world", "strategy"), _plan_cases())
def test_config_plans_soundly(name: str, world: int, strategy: str) -> None:
    spec = resized(spec_of(name), world, strategy)
    assert_sound(make_plan(spec), spec)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_colossal_plans_on_1024_ranks(strategy: str) -> None:
    spec = resized(spec_of("synthetic_colossal"), 1024, strategy)
    started = time.process_time()
    plan = make_plan(spec)
    seconds = time.process_time() - started
    assert_sound(plan, spec)
    assert len(plan.ranks) == 1024
    # A guard against an order-of-magnitude regression, not a measurement: the figures
    # (0.3 s upstream strategies, 0.6 s auto) come from benchmarks/planner_speed.py.
    # CPU time, not wall time: on a busy machine auto took 6 s of wall time, 0.4 s of CPU.
    assert seconds < 5, f"colossal on 1024 ranks took {seconds:.1f} s of CPU time"


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_through_the_cli(name: str, tmp_path: Path) -> None:
    """plan at the file's own settings, then validate the result against the same file."""
    runner = CliRunner()
    spec_path, plan_path = str(CONFIGS / f"{name}.yaml"), str(tmp_path / "plan.json")
    planned = runner.invoke(main, ["plan", spec_path, "-o", plan_path])
    assert planned.exit_code == 0, planned.output
    checked = runner.invoke(main, ["validate", plan_path, "--spec", spec_path])
    assert checked.exit_code == 0, checked.output


# --- synthetic models match upstream -----------------------------------------------------


@pytest.mark.parametrize("model", SYNTHETIC)
def test_synthetic_size_matches_upstream_readme(model: str) -> None:
    tables, gib = UPSTREAM_README[model]
    spec = spec_of(f"synthetic_{model}")
    assert len(spec.tables) == tables
    float32_bytes = sum(t.rows * t.width * 4 for t in spec.tables)
    assert float32_bytes / GIB == pytest.approx(gib, abs=0.05)
    assert {t.dtype for t in spec.tables} == {"float32"}


@pytest.mark.parametrize("model", SYNTHETIC)
def test_synthetic_tables_and_inputs_match_upstream_config(model: str) -> None:
    spec = spec_of(f"synthetic_{model}")
    want_tables, want_inputs = [], Counter()
    for group, (count, nnz, rows, width, shared) in enumerate(UPSTREAM_GROUPS[model]):
        assert shared == (len(nnz) > 1)  # every multi-nnz group upstream is shared
        for index in range(count):
            name = f"g{group}_t{index}"
            want_tables.append((name, rows, width, "sum"))
            want_inputs.update((name, hotness) for hotness in nnz)
    assert [(t.name, t.rows, t.width, t.combiner) for t in spec.tables] == want_tables
    assert Counter((i.table, i.hotness) for i in spec.resolved_inputs()) == want_inputs
    assert len({i.name for i in spec.resolved_inputs()}) == sum(want_inputs.values())


@pytest.mark.parametrize("model", SYNTHETIC)
def test_synthetic_settings_follow_upstream_benchmark(model: str) -> None:
    spec = spec_of(f"synthetic_{model}")
    assert spec.strategy == "memory_balanced"
    assert spec.column_slice_threshold is None
    assert spec.row_slice_threshold is None
    assert spec.data_parallel_threshold is None


# --- real-world models match their sources and their stated settings ---------------------


def test_mlperf_dlrm_v2_matches_the_reference() -> None:
    spec = spec_of("mlperf_dlrm_v2")
    names = [f"C{i}" for i in range(1, 27)]
    assert [(t.name, t.rows, t.width, t.combiner) for t in spec.tables] == [
        (name, rows, 128, "sum") for name, rows in zip(names, DLRM_V2_ROWS, strict=True)
    ]
    assert [(i.name, i.table, i.hotness) for i in spec.resolved_inputs()] == [
        (name, name, hot) for name, hot in zip(names, DLRM_V2_HOTNESS, strict=True)
    ]
    assert sum(i.hotness for i in spec.resolved_inputs()) == 214


def test_mlperf_dlrm_v2_groups_at_its_own_size() -> None:
    # Row-sliced: rows x 128 >= 1e9 elements, i.e. the five 40M-row tables. Replicated:
    # rows x 128 <= 2**20, i.e. at most 8192 rows. The other 8 fill the 8 ranks whole.
    plan = make_plan(spec_of("mlperf_dlrm_v2"))
    assert plan.groups.row_sliced == ["C1", "C10", "C20", "C21", "C22"]
    assert plan.groups.data_parallel == [
        "C4", "C6", "C7", "C8", "C9", "C13", "C14", "C16", "C17", "C18", "C19", "C25", "C26",
    ]  # fmt: skip
    assert plan.groups.table_parallel == ["C2", "C3", "C5", "C11", "C12", "C15", "C23", "C24"]
    assert plan.parameters.column_slice_threshold is None
    for rank in plan.ranks:
        assert [(s.rows[1] - s.rows[0]) for s in rank.row_slices] == [5_000_000] * 5
        assert len(rank.table_parallel_inputs) == 1


def test_criteo_1tb_matches_the_reference() -> None:
    spec = spec_of("criteo_1tb_mlperf_v1")
    assert [(t.name, t.rows, t.width, t.combiner) for t in spec.tables] == [
        (f"C{i}", rows, 128, None) for i, rows in enumerate(TERABYTE_ROWS, start=1)
    ]
    assert sum(t.rows * t.width * 4 for t in spec.tables) / GIB == pytest.approx(89.53, abs=0.01)


def test_criteo_1tb_slicing_at_its_own_size() -> None:
    # 2**30 elements per slice: C1, C10, C20, C22 hold 4.6-4.8 x 2**30 elements -> 8 slices
    # of 16 columns; C21 (3.06 x 2**30) -> 4 slices of 32. With basic dealing, consecutive
    # slices land on consecutive ranks, so each slice is one shard.
    spec = spec_of("criteo_1tb_mlperf_v1")
    plan = make_plan(resized(spec, spec.world_size, "basic"))
    assert plan.parameters.column_slice_threshold == 2**30
    assert plan.groups.data_parallel == [
        "C4", "C6", "C7", "C8", "C9", "C13", "C14", "C16", "C17", "C18", "C19", "C25", "C26",
    ]  # fmt: skip
    shards = Counter(s.table for s in plan.shards)
    widths = {s.table: s.cols[1] - s.cols[0] for s in plan.shards}
    sliced = {"C1": 8, "C10": 8, "C20": 8, "C21": 4, "C22": 8}
    for name in plan.groups.table_parallel:
        assert shards[name] == sliced.get(name, 1), name
        assert widths[name] == 128 // sliced.get(name, 1), name


def test_criteo_kaggle_matches_the_reference() -> None:
    spec = spec_of("criteo_kaggle")
    assert [(t.name, t.rows, t.width, t.combiner) for t in spec.tables] == [
        (f"C{i}", rows, 16, None) for i, rows in enumerate(KAGGLE_ROWS, start=1)
    ]
    assert sum(t.rows * t.width * 4 for t in spec.tables) / GIB == pytest.approx(2.01, abs=0.01)


def test_criteo_kaggle_groups_at_its_own_size() -> None:
    # Replicated: rows x 16 <= 131072, i.e. at most 8192 rows. The 10 others outnumber the
    # 8 ranks, so nothing is column-sliced.
    plan = make_plan(spec_of("criteo_kaggle"))
    assert plan.groups.data_parallel == [
        "C1", "C2", "C5", "C6", "C8", "C9", "C11", "C13", "C14", "C17", "C18", "C19", "C20",
        "C22", "C23", "C25",
    ]  # fmt: skip
    assert len(plan.groups.table_parallel) == 10
    assert plan.parameters.column_slice_threshold is None
    assert len(plan.shards) == 10
