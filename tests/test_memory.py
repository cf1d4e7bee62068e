"""Memory in bytes: optimizer state, dtypes, data-parallel copies, sizes and capacity.

Expected numbers are worked out by hand from the small spec below, not taken from the
planner.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import SMALL, invoke

from planner import load_plan, plan_from_dict
from planner.cli import main
from planner.costs.memory import usable_memory
from planner.errors import PlanFileError, SpecError
from planner.plan import parse_plan
from planner.planning import make_plan
from planner.reports import capacity
from planner.reports.capacity import _smaller_that_fits, _world_sizes_to_try, capacity_report
from planner.reports.overflow import largest_world_to_try, over_capacity
from planner.spec import COST_FIELDS, load_spec, spec_from_dict
from planner.spec_fields import DTYPE_BYTES
from planner.units import OPTIMIZERS, exact_size, missing_unit_hint, parse_size
from planner.validation import plan_problems, spec_problems

# Four tables, two ranks, round-robin ("basic"):
#   a 100 x 8 float32 =  800 elements, 3200 B
#   b  50 x 8 float32 =  400 elements, 1600 B
#   c  10 x 4 float16 =   40 elements,   80 B
#   d  20 x 8 float32 =  160 elements,  640 B
# rank 0 gets a and c: 3280 B of weights; rank 1 gets b and d: 2240 B. Total 5520 B.


def plan_of(**changes):
    return make_plan(spec_from_dict({**SMALL, **changes}))


# --- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80GiB", 80 * 2**30),
        ("80GB", 80 * 10**9),
        ("512MiB", 512 * 2**20),
        ("1.5TiB", 3 * 2**39),
        ("2 gib", 2 * 2**30),
        ("64KB", 64_000),
        ("4096", 4096),
        ("100B", 100),
        (4096, 4096),
    ],
)
def test_sizes_parse_in_decimal_and_binary_units(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["80 gigs", "GiB", "-5GiB", "0", "", "80Gbit", "1e9", "0.1B"])
def test_unreadable_sizes_say_what_is_accepted(text) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (80, "80B"),
        (614_400, "600KiB"),
        (80 * 10**9, "80GB"),
        (80 * 2**30, "80GiB"),
        (3 * 2**39, "1536GiB"),
        (10**12, "1TB"),
        (2**40, "1TiB"),
        (1_234_567, "1234567B"),
    ],
)
def test_exact_sizes_use_the_largest_unit_that_divides_and_read_back(count, text) -> None:
    assert exact_size(count) == text
    assert parse_size(text) == count


@pytest.mark.parametrize(
    ("count", "meant"),
    [
        (80, "80GiB"),
        (1023, "1023GiB"),
        (1025, "1025MiB"),
        (3000, "3000MiB"),
        (2**20 - 1, "1048575MiB"),
    ],
)
def test_a_memory_too_small_for_any_device_hints_at_a_missing_unit(count, meant) -> None:
    # under 1 MiB and not a whole number of KiB: GiB meant below 1 KiB, MiB above
    assert missing_unit_hint(count) == f"a bare number is bytes: did you mean {meant}?"


@pytest.mark.parametrize("count", [1024, 614_400, 2**20, 80 * 2**30, 10**9])
def test_a_plausible_memory_gets_no_hint(count) -> None:
    assert missing_unit_hint(count) == ""


def test_a_bare_device_memory_is_bytes_and_the_refusal_says_so(work: Path) -> None:
    # 80 B: both ranks are over (3280 B and 2240 B); the tables need 2760 B per rank
    result = invoke("plan", "small.yaml", "--device-memory", "80", "-o", "p.json")
    (line,) = assert_capacity_failure(result, work, ["ranks 0-1"])
    assert line.startswith(
        "ranks 0-1 need 2.19 KiB to 3.20 KiB, up to 3.12 KiB over the 80 B limit "
        "(80 B less 0% reserve; a bare number is bytes: did you mean 80GiB?); "
    )


def test_device_memory_reads_a_size_and_reports_a_bad_one() -> None:
    assert spec_from_dict({**SMALL, "device_memory": "80GiB"}).device_memory == 80 * 2**30
    with pytest.raises(SpecError) as caught:
        spec_from_dict({**SMALL, "device_memory": "80 gigs"}, source="m.yaml")
    message = str(caught.value)
    assert message.startswith("m.yaml: device_memory: cannot read this as a size")
    assert "80GiB" in message and "'80 gigs'" in message


def test_usable_memory_takes_the_reserve_off() -> None:
    assert usable_memory(4000, 0.25) == 3000
    assert usable_memory(80 * 2**30, 0.0) == 80 * 2**30


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"optimizer": "adamm"}, "optimizer: Input should be 'sgd'"),
        ({"memory_reserve": 1}, "memory_reserve: Input should be less than 1"),
        ({"memory_reserve": -0.1}, "memory_reserve: Input should be greater than or equal"),
        ({"id_bytes": 2}, "id_bytes"),
        ({"global_batch_size": 3}, "global_batch_size: 3 samples do not split evenly over 2"),
        ({"alltoall_bandwidth": 0}, "alltoall_bandwidth: Input should be greater than or equal"),
    ],
)
def test_bad_cost_fields_are_one_line_errors(changes, fragment) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_dict({**SMALL, **changes}, source="m.yaml")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


# --- fingerprints -----------------------------------------------------------------------


def test_fingerprint_is_unchanged_by_cost_fields_at_their_defaults() -> None:
    spec = spec_from_dict(SMALL)
    # the fingerprint as computed before the cost fields existed
    data = spec.normalized().model_dump(mode="json")
    for key in COST_FIELDS:
        del data[key]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert spec.fingerprint() == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    explicit = spec_from_dict({**SMALL, "optimizer": "sgd", "id_bytes": 8, "memory_reserve": 0})
    assert explicit.fingerprint() == spec.fingerprint()


def test_fingerprint_follows_cost_fields_that_are_set() -> None:
    base = spec_from_dict(SMALL).fingerprint()
    adam = spec_from_dict({**SMALL, "optimizer": "adam"}).fingerprint()
    by_text = spec_from_dict({**SMALL, "device_memory": "1KiB"}).fingerprint()
    by_count = spec_from_dict({**SMALL, "device_memory": 1024}).fingerprint()
    assert len({base, adam, by_text}) == 3
    assert by_text == by_count


# --- bytes per rank ---------------------------------------------------------------------


def test_sgd_keeps_weights_only() -> None:
    plan = plan_of()
    assert [r.bytes for r in plan.ranks] == [3280, 2240]
    assert [r.optimizer_bytes for r in plan.ranks] == [0, 0]
    assert (plan.parameters.optimizer, plan.parameters.optimizer_slots) == ("sgd", 0)


def test_adam_triples_every_rank() -> None:
    # two slots (first and second moment) per weight, each in the weight's dtype:
    # rank 0: 3280 + 2 x 3280 = 9840; rank 1: 2240 x 3 = 6720
    plan = plan_of(optimizer="adam")
    assert [r.bytes for r in plan.ranks] == [9840, 6720]
    assert [r.optimizer_bytes for r in plan.ranks] == [6560, 4480]
    assert [r.elements for r in plan.ranks] == [840, 560]  # elements count weights only
    assert plan.parameters.optimizer_slots == 2
    assert plan.stats.max_rank_bytes == 9840
    assert plan.stats.mean_rank_bytes == 8280
    assert plan.stats.total_bytes == 5520  # the model's weights, once
    assert plan_problems(plan) == []


# State values per weight: sgd none; momentum (velocity), adagrad (accumulator) and
# rmsprop (mean square) one; the Adam family (two moments), lamb, ftrl (accumulator and
# linear term) and adadelta (two running averages) two.
SLOTS = [
    ("sgd", 0),
    ("momentum", 1),
    ("adagrad", 1),
    ("rmsprop", 1),
    ("adam", 2),
    ("adamw", 2),
    ("lazy_adam", 2),
    ("nadam", 2),
    ("adamax", 2),
    ("lamb", 2),
    ("ftrl", 2),
    ("adadelta", 2),
]


def test_every_optimizer_is_listed_above() -> None:
    assert sorted(name for name, _ in SLOTS) == sorted(OPTIMIZERS)


@pytest.mark.parametrize(("optimizer", "slots"), SLOTS)
def test_every_optimizer_multiplies_by_its_slots(optimizer, slots) -> None:
    plan = plan_of(optimizer=optimizer)
    assert plan.parameters.optimizer_slots == slots
    assert [r.bytes for r in plan.ranks] == [3280 * (1 + slots), 2240 * (1 + slots)]


def test_half_precision_state_stays_half_precision() -> None:
    # one bfloat16 table of 10 x 8 on one rank: 80 elements x 2 B = 160 B of weights,
    # adagrad adds one accumulator of the same type: 320 B
    plan = make_plan(
        spec_from_dict(
            {
                "world_size": 1,
                "optimizer": "adagrad",
                "tables": [{"name": "h", "rows": 10, "width": 8, "dtype": "bfloat16"}],
            }
        )
    )
    assert (plan.ranks[0].bytes, plan.ranks[0].optimizer_bytes) == (320, 160)


def test_data_parallel_tables_and_their_state_count_on_every_rank() -> None:
    # threshold 40: c (40 elements, 80 B) is copied to both ranks; a, b, d round-robin:
    # rank 0: a + d = 3840, rank 1: b = 1600, each + 80 for c = 3920, 1680;
    # momentum keeps one slot per weight, replicas included: 7840, 3360
    plan = plan_of(data_parallel_threshold=40, optimizer="momentum")
    assert plan.groups.data_parallel == ["c"]
    assert [r.bytes for r in plan.ranks] == [7840, 3360]
    assert [r.optimizer_bytes for r in plan.ranks] == [3920, 1680]


def test_row_sliced_tables_split_their_state_too() -> None:
    # a (800 elements) row-sliced over 2 ranks: 50 rows x 8 x 4 B = 1600 B each;
    # b, c, d round-robin: rank 0 b + d = 2240, rank 1 c = 80; adam triples
    plan = plan_of(row_slice_threshold=800, optimizer="adam")
    assert plan.groups.row_sliced == ["a"]
    assert [r.bytes for r in plan.ranks] == [(1600 + 2240) * 3, (1600 + 80) * 3]


def test_tampered_optimizer_bytes_fail_validation() -> None:
    plan = plan_of(optimizer="adam")
    data = json.loads(plan.to_json())
    data["ranks"][0]["bytes"] = 3280
    assert "ranks[0]: elements or bytes do not match what it holds" in plan_problems(
        parse_plan(data)
    )


def test_plans_from_before_the_optimizer_still_load() -> None:
    plan = plan_of()
    data = json.loads(plan.to_json())
    for key in ("optimizer", "optimizer_slots", "device_memory", "memory_reserve"):
        del data["parameters"][key]
    for rank in data["ranks"]:
        del rank["optimizer_bytes"], rank["comm"]
    del data["stats"]["comm"]
    assert plan_from_dict(data) == plan


def test_unknown_optimizer_in_a_plan_is_a_plan_error() -> None:
    data = json.loads(plan_of().to_json())
    data["parameters"]["optimizer"] = "adamm"
    with pytest.raises(PlanFileError):
        plan_from_dict(data)


@st.composite
def specs(draw):
    count = draw(st.integers(1, 8))
    tables = [
        {
            "name": f"t{k}",
            "rows": draw(st.integers(1, 500)),
            "width": draw(st.sampled_from([1, 2, 3, 4, 8, 16])),
            "dtype": draw(st.sampled_from(sorted(DTYPE_BYTES))),
        }
        for k in range(count)
    ]
    return spec_from_dict(
        {
            "world_size": draw(st.integers(1, 6)),
            "strategy": draw(st.sampled_from(["basic", "memory_balanced", "memory_optimized"])),
            "optimizer": draw(st.sampled_from(sorted(OPTIMIZERS))),
            "data_parallel_threshold": draw(st.one_of(st.none(), st.integers(1, 800))),
            "row_slice_threshold": draw(st.one_of(st.none(), st.integers(1, 4000))),
            "column_slice_threshold": draw(st.one_of(st.none(), st.integers(0, 2000))),
            "tables": tables,
        }
    )


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_ranks_hold_every_table_once_and_replicas_on_each(spec) -> None:
    plan = make_plan(spec)
    factor = 1 + dict(SLOTS)[spec.optimizer]
    size = {t.name: t.rows * t.width * DTYPE_BYTES[t.dtype] for t in spec.tables}
    replicas = sum(size[name] for name in plan.groups.data_parallel)
    placed = sum(size.values()) - replicas
    assert sum(r.bytes for r in plan.ranks) == factor * (placed + plan.world_size * replicas)
    assert sum(r.optimizer_bytes for r in plan.ranks) == (factor - 1) * (
        placed + plan.world_size * replicas
    )
    assert plan_problems(plan) == []


# --- capacity through the CLI -----------------------------------------------------------


def assert_capacity_failure(result: Result, work: Path, ranks: list[str]) -> list[str]:
    """Exit 3, nothing on stdout, no file written, and on stderr one line per group of
    ranks with the same advice, each starting with its ranks (``rank 0``, ``ranks 0-1``)."""
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert [" ".join(line.split(" ")[:2]) for line in lines] == ranks, lines
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]
    return lines


def test_plan_over_the_limit_fails_with_one_line_per_rank(work: Path) -> None:
    # 3000 B: rank 0 (3280 B) is 280 B over, rank 1 (2240 B) fits. Balanced the tables
    # would fit (2760 B each) but table a alone (3200 B) does not: 2 column slices of
    # 4 columns (1600 B each) would; threshold ceil(800 / 2) = 400 elements. Re-planned,
    # that threshold does not fit with basic (a0, b, d = 3840 B on rank 0), 5 ranks do
    # (automatic slicing gives every rank one slice, 1600 B at most).
    result = invoke("plan", "small.yaml", "--device-memory", "3000", "-o", "p.json")
    (line,) = assert_capacity_failure(result, work, ["rank 0"])
    assert line.startswith(
        "rank 0 needs 3.20 KiB, 280 B over the 2.93 KiB limit (2.93 KiB less 0% reserve; "
        "a bare number is bytes: did you mean 3000MiB?); table 'a' alone takes 3.12 KiB "
        "here; it fits with"
    )
    assert "--world-size 5" in line
    assert "--column-slice-threshold" not in line
    (overflow,) = over_capacity(plan_of(device_memory=3000))
    assert overflow.advice == (
        "column-slice it: set column_slice_threshold to 400 or less (cuts it into 2 column slices)"
    )
    assert (overflow.needs, overflow.limit, overflow.over) == (3280, 3000, 280)


def test_ranks_over_for_the_same_reason_share_one_line(work: Path) -> None:
    # 2000 B: both ranks over (3280 B is 1280 B over, 2240 B is 240 B over); even balanced
    # 5520 / 2 = 2760 B > 2000, so no placement on two ranks fits; at least
    # ceil(5520 / 2000) = 3 ranks are needed. Same reason, same advice: one line.
    result = invoke("plan", "small.yaml", "--device-memory", "2000", "-o", "p.json")
    (line,) = assert_capacity_failure(result, work, ["ranks 0-1"])
    assert line.startswith(
        "ranks 0-1 need 2.19 KiB to 3.20 KiB, up to 1.25 KiB over the 1.95 KiB limit "
        "(1.95 KiB less 0% reserve; a bare number is bytes: did you mean 2000MiB?); "
        "even perfectly balanced the tables need 2.70 KiB per "
        "rank; it fits with any one of: --world-size 5; --strategy auto --world-size 3"
    )
    overflows = over_capacity(plan_of(device_memory=2000))
    assert [o.advice for o in overflows] == ["raise --world-size to at least 3"] * 2


def test_the_reserve_lowers_the_limit(work: Path) -> None:
    # 4000 B less 25% = 3000 B, as in the first case
    result = invoke(
        "plan", "small.yaml", "--device-memory", "4000", "--memory-reserve", "0.25", "-o", "p"
    )
    (line,) = assert_capacity_failure(result, work, ["rank 0"])
    assert "280 B over the 2.93 KiB limit (3.91 KiB less 25% reserve; a bare" in line


def test_optimizer_state_can_push_a_plan_over(work: Path) -> None:
    assert invoke("plan", "small.yaml", "--device-memory", "4KiB", "-o", "p.json").exit_code == 0
    (work / "p.json").unlink()
    result = invoke(
        "plan", "small.yaml", "--device-memory", "4KiB", "--optimizer", "adam", "-o", "p.json"
    )
    # adam: 9840 and 6720 B against 4096 B; balanced 8280 B each, so the same reason
    (line,) = assert_capacity_failure(result, work, ["ranks 0-1"])
    # a whole number of KiB is no slip of the unit: no hint
    assert line.startswith(
        "ranks 0-1 need 6.56 KiB to 9.61 KiB, up to 5.61 KiB over the 4.00 KiB limit "
        "(4.00 KiB less 0% reserve); "
    )


def test_data_parallel_copies_that_fill_a_rank_name_the_threshold(work: Path) -> None:
    # threshold 1000: every table is copied to both ranks, 5520 B each, over 5000 B.
    # Smallest first: c 80, d 640, b 1600 (2320 B kept); a (800 elements) would pass the
    # limit, so the threshold must fall below 800. With 799, a is table-parallel alone,
    # cut in two by the automatic threshold: 2320 + 1600 = 3920 B per rank: fits.
    result = invoke(
        "plan",
        "small.yaml",
        "--device-memory",
        "5000",
        "--data-parallel-threshold",
        "1000",
        "-o",
        "p.json",
    )
    (line,) = assert_capacity_failure(result, work, ["ranks 0-1"])
    assert line.startswith("ranks 0-1 need 5.39 KiB each, 520 B over the 4.88 KiB limit")
    assert "the data-parallel tables alone take 5.39 KiB on every rank" in line
    assert "--data-parallel-threshold 799" in line


def overflows_on_4_ranks_of_3000_bytes(tables: dict[str, tuple[int, int]], **settings):
    """The overflows of ``tables`` (name: (rows, width)) on 4 ranks of 3,000 B, column
    slicing off unless asked for."""
    spec = {
        "world_size": 4,
        "device_memory": 3000,
        "column_slice_threshold": 10**6,
        "tables": [{"name": n, "rows": r, "width": w} for n, (r, w) in tables.items()],
    }
    return over_capacity(make_plan(spec_from_dict({**spec, **settings})))


def test_a_table_too_wide_to_column_slice_is_told_to_row_slice() -> None:
    # one 1000 x 2 float32 table (8000 B) on 4 ranks, limit 3000 B: two column slices of
    # 4000 B are still too big (width 2 caps slicing); row-sliced it is 2000 B per rank
    (overflow,) = overflows_on_4_ranks_of_3000_bytes({"wide": (1000, 2), "x": (1, 1)})
    assert overflow.diagnosis == (
        "table 'wide' alone takes 7.81 KiB here and does not fit even cut into 2 column slices"
    )
    assert overflow.advice == "row-slice it: set row_slice_threshold to 2,000 or less"


def test_a_piece_too_large_beside_replicas_says_what_they_take() -> None:
    # a data-parallel table of 2,000 B on each of 4 ranks leaves 1,000 B of the 3,000 B
    # limit; the 4,000 B table ("big") fits there only cut into 4 column slices
    overflows = overflows_on_4_ranks_of_3000_bytes(
        {"big": (125, 8), "copied": (125, 4)}, data_parallel_threshold=600
    )
    assert overflows[0].diagnosis == (
        "table 'big' alone takes 3.91 KiB here, beside 1.95 KiB of data-parallel copies and "
        "row slices"
    )
    assert overflows[0].advice.endswith("(cuts it into 4 column slices)")


def counting_make_plan(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(world size, strategy) of every plan the capacity advice makes from now on."""
    calls, make = [], capacity.make_plan

    def counted(spec):
        calls.append((spec.world_size, spec.strategy))
        return make(spec)

    monkeypatch.setattr(capacity, "make_plan", counted)
    return calls


def test_world_sizes_tried_stop_at_eight_times_the_plan_or_4096() -> None:
    assert [largest_world_to_try(n) for n in (1, 2, 512, 1024)] == [4096, 4096, 4096, 8192]
    assert [largest_world_to_try(n) for n in (2048, 4096, 16384)] == [16384] * 3  # the bound
    assert _world_sizes_to_try(3, 4096) == [3, 4, 5, 6, 8, 16]
    assert _world_sizes_to_try(1000, 4800) == [1000, 1001, 1002, 1003, 1024, 2048, 4096, 4800]
    assert _world_sizes_to_try(4094, 4096) == [4094, 4095, 4096]
    assert _world_sizes_to_try(5000, 4096) == []


def test_world_sizes_tried_beyond_one_host_are_whole_hosts() -> None:
    # up to one host of 8 any count; beyond, multiples of 8 (rounded up; the top down)
    assert _world_sizes_to_try(3, 4096, 8) == [3, 4, 5, 6, 8, 16]
    assert _world_sizes_to_try(7, 4096, 8) == [7, 8, 16, 32]
    assert _world_sizes_to_try(10, 4096, 8) == [16, 32, 64]
    assert _world_sizes_to_try(1000, 4800, 8) == [1000, 1008, 1024, 2048, 4096, 4800]
    assert _world_sizes_to_try(1000, 4803, 8) == [1000, 1008, 1024, 2048, 4096, 4800]
    assert _world_sizes_to_try(4095, 4100, 8) == [4096]
    assert _world_sizes_to_try(10, 4096, 1) == _world_sizes_to_try(10, 4096)


def test_world_sizes_tried_split_the_global_batch_evenly() -> None:
    # a spec whose global batch does not split over the world size is refused, so
    # advice naming such a size would be refused when followed: 65,536 = 2**16
    assert _world_sizes_to_try(5, 4096, 8, 65536) == [8, 16, 32]
    assert _world_sizes_to_try(3, 4096, 1, 4096) == [4, 8, 16]
    assert _world_sizes_to_try(5, 4096, 1, 4099) == []  # 4,099 is prime
    assert _world_sizes_to_try(3, 100, 1, 6) == [3, 6]  # 6's divisors from 3: the last is 6


def test_bisection_keeps_to_sizes_the_global_batch_splits_over() -> None:
    tried = []

    def overflows_with(update: dict) -> list[str]:
        tried.append(update["world_size"])
        return [] if update["world_size"] >= 40 else ["over"]

    # between 32 (does not fit) and 64 (fits), 3,840 splits evenly over 40 and 48 only
    assert _smaller_that_fits(32, 64, 8, overflows_with, 3840) == 40
    assert tried == [40]


def test_bisection_finds_the_smallest_size_that_fits_in_few_plans() -> None:
    def fitting_from(smallest: int):
        tried = []

        def overflows_with(update: dict) -> list[str]:
            tried.append(update["world_size"])
            return [] if update["world_size"] >= smallest else ["over"]

        return overflows_with, tried

    overflows_with, tried = fitting_from(104)
    assert _smaller_that_fits(64, 128, 8, overflows_with) == 104
    assert tried == [96, 112, 104]  # whole hosts of 8 only
    overflows_with, tried = fitting_from(1100)
    assert _smaller_that_fits(1000, 2048, 1, overflows_with) == 1131  # stops after 4 plans
    assert tried == [1524, 1262, 1131, 1065]
    overflows_with, tried = fitting_from(1)
    assert _smaller_that_fits(8, 16, 8, overflows_with) == 16 and tried == []


def test_world_size_advice_names_whole_hosts(tmp_path) -> None:
    # 12 tables of 1 MiB on 4 ranks of 1.5 MiB, basic: one table per rank, so 12 ranks.
    # Any count: 8 to 11 are tried and fail, then 16 fits, and bisection finds 13, then
    # 12. Hosts of 4: 8, then 12 (3 hosts). Hosts of 5: 10 fails, 15 fits, none between.
    # auto balances 12 MiB over the 8 ranks of the lower bound (1.5 MiB each), in whole
    # hosts: 8 with hosts of 1 or 4, 10 with hosts of 5.
    spec = tmp_path / "s.yaml"
    tables = "".join(f"  - {{name: t{k}, rows: 4096, width: 64}}\n" for k in range(12))
    spec.write_text(f"world_size: 4\ndevice_memory: 1.5MiB\ntables:\n{tables}")
    for per_host, advised in (
        (1, "any one of: --world-size 12; --strategy auto --world-size 8"),
        (4, "any one of: --world-size 12; --strategy auto --world-size 8"),
        (5, "any one of: --world-size 15; --strategy auto --world-size 10"),
    ):
        done = CliRunner().invoke(
            main, ["plan", str(spec), "--gpus-per-host", str(per_host), "--strategy", "basic",
                   "-o", str(tmp_path / "p.json")]
        )
        assert done.exit_code == 3, done.output
        assert done.output.rstrip().endswith(f"it fits with {advised}"), done.output


def test_world_size_advice_is_a_size_the_global_batch_splits_over(tmp_path) -> None:
    # 3 tables of 256 MB on ranks of 300 MB: one table a rank, 3 ranks; but 4,096
    # samples do not split over 3, so the advice names 4, and 4 plans
    spec = tmp_path / "s.yaml"
    tables = "".join(f"  - {{name: t{k}, rows: 1000000, width: 64}}\n" for k in range(3))
    spec.write_text(
        f"world_size: 2\ndevice_memory: 300MB\nglobal_batch_size: 4096\ntables:\n{tables}"
    )
    done = CliRunner().invoke(main, ["plan", str(spec), "-o", str(tmp_path / "p.json")])
    assert done.exit_code == 3
    assert done.output.rstrip().endswith("it fits with --world-size 4"), done.output
    followed = CliRunner().invoke(
        main, ["plan", str(spec), "--world-size", "4", "-o", str(tmp_path / "p.json")]
    )
    assert followed.exit_code == 0, followed.output


def test_no_world_size_splitting_the_global_batch_is_said_so(tmp_path) -> None:
    # 12 tables of 256,000 B on ranks of 300,000 B need 11 ranks, 12 in whole hosts of
    # 6; no multiple of 6 divides a global batch of 15, so no size can be advised
    spec = tmp_path / "s.yaml"
    tables = "".join(f"  - {{name: t{k}, rows: 1000, width: 64}}\n" for k in range(12))
    spec.write_text(
        "world_size: 3\ndevice_memory: 300000\nglobal_batch_size: 15\ngpus_per_host: 6\n"
        f"tables:\n{tables}"
    )
    done = CliRunner().invoke(main, ["plan", str(spec), "-o", str(tmp_path / "p.json")])
    assert done.exit_code == 3
    assert done.output.rstrip().endswith(
        "no world size from 12 to 4,096 in whole hosts of 6 splits global_batch_size 15 "
        "evenly; change global_batch_size"
    ), done.output


def test_advice_is_checked_with_the_global_batch_that_decides_auto_s_replicas() -> None:
    # planned without its global batch (as the advice once checked it), auto's own plan
    # fits once offloaded; with the batch of 15 auto keeps memory_optimized's, whose row
    # slices cannot go to host memory. So --strategy auto is no fix here.
    spec = load_spec(Path(__file__).parent / "data" / "auto_needs_its_batch.yaml")
    report = capacity_report(make_plan(spec))
    assert not report.fits and "--strategy auto" not in report.fixes
    assert capacity_report(make_plan(spec.model_copy(update={"strategy": "auto"}))).fits is False


def test_whole_hosts_past_the_largest_size_tried_say_so(tmp_path) -> None:
    # 4,093 tables of 4 KiB on 4 KiB devices need 4,093 ranks perfectly balanced. Hosts
    # of 6 make that 4,098 (683 hosts), past the 4,096 tried; hosts of 8 make it 4,096.
    spec = tmp_path / "s.yaml"
    tables = "".join(f"  - {{name: t{k}, rows: 16, width: 64}}\n" for k in range(4093))
    spec.write_text(f"world_size: 512\ndevice_memory: 4KiB\ntables:\n{tables}")
    for per_host, ending in (
        (6, "even 4,096 ranks do not fit (balanced perfectly the tables need 4,093 ranks, "
            "4,098 in whole hosts of 6); use devices with more memory or raise --world-size "
            "to at least 4098"),
        (8, "it fits with --world-size 4096"),
    ):
        result = invoke("plan", spec, "-o", tmp_path / "p.json", "--strategy", "basic",
                        "--gpus-per-host", str(per_host))
        assert result.exit_code == 3, result.output
        assert result.stderr.rstrip().endswith(ending), result.stderr


def test_advice_never_names_more_ranks_than_a_spec_may_ask_for(tmp_path, monkeypatch) -> None:
    # 64 x 100 float32 = 25,600 B on 4,096 ranks of 1 B: perfectly balanced they need
    # 25,600 ranks, past the 16,384 a spec may have; none is re-planned above the bound
    replans = counting_make_plan(monkeypatch)
    spec = tmp_path / "s.yaml"
    spec.write_text("world_size: 4096\ntables:\n  - {name: a, rows: 100, width: 64}\n")
    result = invoke("plan", spec, "-o", tmp_path / "p.json", "--device-memory", "1B")
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)
    first = result.stderr.splitlines()[0]
    assert first.endswith(
        "even 16,384 ranks do not fit (balanced perfectly the tables need 25,600 ranks); use "
        "devices with more memory (16,384 ranks are the most this planner plans)"
    ), first
    assert max(world for world, _ in replans) <= 16384
    assert not (tmp_path / "p.json").exists()


def test_a_spec_that_needs_thousands_of_ranks_is_not_replanned_at_them(monkeypatch) -> None:
    # 6,400,000 float32 elements (25.6 MB) on 1000 B devices: perfectly balanced they need
    # ceil(25,600,000 / 1000) = 25,600 ranks, past the 4,096 tried and the 16,384 a spec
    # may ask for. Only the other strategies are re-planned, at 2 ranks.
    spec = spec_from_dict(
        {
            "world_size": 2,
            "device_memory": 1000,
            "tables": [{"name": "a", "rows": 100_000, "width": 64}],
        }
    )
    plan = make_plan(spec)
    calls = counting_make_plan(monkeypatch)
    (line,) = capacity_report(plan).lines()  # both ranks, one reason: one line
    assert calls == [(2, "memory_balanced"), (2, "memory_optimized"), (2, "auto")]
    assert line.startswith("ranks 0-1 need ")
    assert line.endswith(
        "even perfectly balanced the tables need 12.21 MiB per rank; even 4,096 ranks do "
        "not fit (balanced perfectly the tables need 25,600 ranks); use devices with more memory "
        "(16,384 ranks are the most this planner plans)"
    )


def test_when_no_world_size_tried_fits_the_largest_one_advises(monkeypatch) -> None:
    # a 1000 x 2 float32 table (8000 B) and x (4 B), limit 3000 B: at least
    # ceil(8004 / 3000) = 3 ranks. Without row slicing (no dp_input) a is cut into 2
    # column slices at most, 4000 B each, so no world size fits: 3, 4, 5, 6, then powers
    # of two up to 8 x 3 = 24 are tried, then the same with auto (no one change fits),
    # and at 16 ranks the advice is to turn dp_input on: more ranks would not help.
    spec = {
        "world_size": 2,
        "device_memory": 3000,
        "dp_input": False,
        "tables": [
            {"name": "a", "rows": 1000, "width": 2},
            {"name": "x", "rows": 1, "width": 1},
        ],
    }
    plan = make_plan(spec_from_dict(spec))
    calls = counting_make_plan(monkeypatch)
    (line,) = capacity_report(plan).lines()
    assert calls == [
        (2, "memory_balanced"), (2, "memory_optimized"), (2, "auto"),
        (3, "basic"), (4, "basic"), (5, "basic"), (6, "basic"), (8, "basic"), (16, "basic"),
        (3, "auto"), (4, "auto"), (5, "auto"), (6, "auto"), (8, "auto"), (16, "auto"),
    ]  # fmt: skip
    assert line.endswith(
        "even 16 ranks do not fit (at 16, table 'a' alone takes 3.91 KiB here and does not fit "
        "even cut into 2 column slices); set dp_input: true to row-slice it, or use devices "
        "with more memory"
    )
    # with dp_input (the default) auto row-slices a: 3 slices of at most 2,668 B fit 3 ranks
    calls.clear()
    (line,) = capacity_report(make_plan(spec_from_dict({**spec, "dp_input": True}))).lines()
    assert line.endswith("it fits with --strategy auto --world-size 3")
    assert calls[-1] == (3, "auto")


def test_the_search_stops_at_the_first_world_size_that_fits(monkeypatch) -> None:
    # 3000 B (see test_plan_over_the_limit_fails_with_one_line_per_rank): 5 ranks fit,
    # so 3 and 4 are tried before it and nothing after
    plan = plan_of(device_memory=3000)
    calls = counting_make_plan(monkeypatch)
    (line,) = capacity_report(plan).lines()
    assert [size for size, _ in calls if size != 2] == [3, 4, 5]
    assert "--world-size 5" in line


def test_a_plan_that_fits_is_written_and_says_so(work: Path) -> None:
    result = invoke(
        "plan", "small.yaml", "--device-memory", "4KiB", "--memory-reserve", "0.1", "-o", "p.json"
    )
    assert result.exit_code == 0, result.output
    # 4096 B less 10% = 3686 B; rank 0 holds 3280 B, 89.0% of it
    assert (
        "device memory 4.00 KiB less 10% reserve = 3.60 KiB per rank: fits, largest rank at "
        "89.0%" in result.stdout
    )
    plan = load_plan(work / "p.json")
    assert (plan.parameters.device_memory, plan.parameters.memory_reserve) == (4096, 0.1)
    spec = spec_from_dict({**SMALL, "device_memory": "4KiB", "memory_reserve": 0.1})
    assert spec_problems(plan, spec) == []
    checked = invoke(
        "validate", "p.json", "--spec", "small.yaml", "--device-memory", "4KiB",
        "--memory-reserve", "0.1",
    )  # fmt: skip
    assert checked.exit_code == 0, checked.output


def test_preview_shows_optimizer_state_and_free_memory(work: Path) -> None:
    result = invoke(
        "plan", "small.yaml", "--optimizer", "adam", "--device-memory", "10KiB", "-o", "p.json"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "optimizer adam: 2 state values per weight, included in bytes" in lines
    head = next(line for line in lines if line.startswith("rank "))
    assert head.split() == [
        "rank", "shards", "weights", "elements", "bytes", "of", "largest", "optimizer", "free",
    ]  # fmt: skip
    # rank 0: 9840 B (9.61 KiB), 6560 B of it optimizer state (6.41 KiB), 10240 - 9840 = 400 B
    row = lines[lines.index(head) + 2].split()
    assert row[4:] == ["9.61", "KiB", "100.0%", "6.41", "KiB", "400", "B"]
    shown = invoke("show", "p.json", "--format", "json")
    data = json.loads(shown.stdout)
    assert [r["optimizer_bytes"] for r in data["ranks"]] == [6560, 4480]
    assert data["capacity"] == {
        "device_memory": 10240,
        "memory_reserve": 0.0,
        "usable_bytes": 10240,
        "fits": True,
        "ranks_over": [],
        "overflows": [],
        "fixes": [],
        "advice": [],
    }


def test_default_preview_has_no_extra_columns(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "p.json", "--format", "markdown")
    assert "| rank | shards | weights | elements | bytes | of largest |" in result.stdout
    assert "optimizer" not in result.stdout and "device memory" not in result.stdout


def test_bad_device_memory_on_the_command_line_is_an_input_error(work: Path) -> None:
    result = invoke("plan", "small.yaml", "--device-memory", "lots", "-o", "p.json")
    assert result.exit_code == 2
    assert "--device-memory: cannot read this as a size" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]


def test_when_no_one_change_fits_auto_with_more_ranks_is_tried() -> None:
    # criteo_1tb at 1 GiB per GPU: memory_balanced fits at no size the advice tries (up
    # to 512 ranks: each rank keeps its data-parallel copies beside its largest table);
    # auto with more ranks does, and the advice names both changes, at the smallest size
    # found that fits
    config = Path(__file__).parent.parent / "configs" / "criteo_1tb_mlperf_v1.yaml"
    args = ("plan", config, "--device-memory", "1GiB", "-o", "-")
    result = invoke(*args, "--world-size", "8")
    assert result.exit_code == 3
    assert result.stderr.rstrip().endswith("it fits with --strategy auto --world-size 104")
    assert invoke(*args, "--world-size", "104", "--strategy", "auto").exit_code == 0
    assert invoke(*args, "--world-size", "96", "--strategy", "auto").exit_code == 3
    alone = invoke(*args, "--world-size", "64")
    assert alone.exit_code == 3 and "--strategy auto --world-size" in alone.stderr
