"""Summaries that scale: totals first, rank rows folded, long name lists and repeated
capacity advice said once, and capacity results in JSON.

Expected rows come from specs whose placement is worked out by hand below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared import invoke, rank_lines

from planner import load_plan, make_plan, spec_from_dict
from planner.reports.capacity import MAX_ADVICE_LINES, AdviceGroup, CapacityReport
from planner.reports.folding import fold_names, rank_ranges, runs
from planner.reports.overflow import RankOverflow
from planner.reports.preview import choose_ranks, parse_ranks


def staircase_yaml(world_size: int, tables: int) -> str:
    """Tables t0, t1, ... of 100 + i rows, width 1, float32 (400 + 4i B), dealt by basic
    round-robin in table order: rank r holds t_r, t_{r+world}, ... (no slicing, as there
    are at least as many tables as ranks)."""
    rows = "\n".join(f"  - {{name: t{i}, rows: {100 + i}, width: 1}}" for i in range(tables))
    return f"world_size: {world_size}\nstrategy: basic\ntables:\n{rows}\n"


def listed_ranks(text: str) -> list[int]:
    """The rank numbers of the rank table's rows, in printed order."""
    return [int(row[0]) for row in rank_lines(text)]


# --- folding helpers ------------------------------------------------------------------


def test_short_name_lists_are_printed_whole() -> None:
    assert fold_names(["a", "b", "c"]) == "a, b, c"
    assert fold_names([]) == ""


def test_long_name_lists_show_the_first_names_and_count_the_rest() -> None:
    names = [f"table_{i:05d}" for i in range(18_211)]  # 11 characters each
    # a budget of 30 characters fits two names with their ", " (13 + 13 = 26 <= 30)
    assert (
        fold_names(names, budget=30)
        == "18,211 tables: table_00000, table_00001, ... and 18,209 more"
    )
    folded = fold_names(names)
    assert folded.startswith("18,211 tables: table_00000, table_00001, ")
    assert folded.endswith(" more") and len(folded) < 120


def test_a_single_name_longer_than_the_budget_is_still_shown() -> None:
    long = "x" * 300
    assert fold_names([long, "y"], budget=10) == f"2 tables: {long}, ... and 1 more"


def test_rank_numbers_fold_into_ranges() -> None:
    assert runs([5, 0, 1, 2, 9, 10]) == [(0, 2), (5, 5), (9, 10)]
    assert rank_ranges([3]) == "rank 3"
    assert rank_ranges(range(64)) == "ranks 0-63"
    assert rank_ranges([0, 1, 2, 3, 7, 9, 10, 11, 12]) == "ranks 0-3, 7, 9-12"
    assert rank_ranges(range(0, 1024, 2)) == "ranks 0, 2, 4, 6, 8, ... (512 ranks)"


# --- which ranks get a row ------------------------------------------------------------


def test_ranks_option_values() -> None:
    assert parse_ranks("all") is None
    assert parse_ranks("none") == 0
    assert parse_ranks("top 3") == 3
    assert parse_ranks("TOP12") == 12
    for bad in ("top", "top 0", "top -1", "3", "most"):
        with pytest.raises(ValueError, match="expected all, none or 'top N'"):
            parse_ranks(bad)


def test_a_bad_ranks_value_is_one_line_and_writes_nothing(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "p.json", "--ranks", "most")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --ranks: expected all, none or 'top N' with N from 1 to 16,384 (got 'most')"
    )
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]


def test_totals_and_imbalance_come_before_the_rank_rows(work: Path) -> None:
    out = invoke("plan", "small.yaml", "-o", "p.json").stdout.splitlines()
    assert out[2] == "largest rank 3.20 KiB, mean 2.70 KiB, imbalance (max/mean) 1.188"
    assert out.index(out[2]) < next(i for i, line in enumerate(out) if line.startswith("rank "))


def test_up_to_64_ranks_every_rank_is_listed(work: Path) -> None:
    (work / "s.yaml").write_text(staircase_yaml(64, 64))
    result = invoke("plan", "s.yaml", "-o", "p.json")
    assert result.exit_code == 0, result.output
    assert listed_ranks(result.stdout) == list(range(64))
    assert "not listed" not in result.stdout


def test_above_64_ranks_the_ten_largest_and_the_smallest_are_listed(work: Path) -> None:
    # 70 tables on 65 ranks: ranks 0-4 hold two tables (t_r and t_{r+65}: 4 (265 + 2r) B),
    # the others one (4 (100 + r) B). Largest first: ranks 4, 3, 2, 1, 0, then 64, 63,
    # 62, 61, 60; the smallest is rank 5 (420 B).
    (work / "s.yaml").write_text(staircase_yaml(65, 70))
    result = invoke("plan", "s.yaml", "-o", "p.json")
    assert result.exit_code == 0, result.output
    assert listed_ranks(result.stdout) == [4, 3, 2, 1, 0, 64, 63, 62, 61, 60, 5]
    assert (
        "the 10 largest ranks by bytes and the smallest; 54 of 65 ranks not listed "
        "(--ranks all lists every rank):"
    ) in result.stdout.splitlines()
    plan = load_plan(work / "p.json")
    assert [plan.ranks[r].bytes for r in (4, 0, 64, 5)] == [4 * 273, 4 * 265, 4 * 164, 420]

    every = invoke("show", "p.json", "--ranks", "all").stdout
    assert listed_ranks(every) == list(range(65))
    top = invoke("show", "p.json", "--ranks", "top 3").stdout
    assert listed_ranks(top) == [4, 3, 2, 5]
    assert "the 3 largest ranks by bytes and the smallest; 61 of 65 ranks not listed" in top
    none = invoke("show", "p.json", "--ranks", "none", "--format", "markdown").stdout
    assert "| rank | shards |" not in none
    assert "65 ranks not listed (--ranks all or --ranks 'top N' lists them)" in none


def test_json_lists_every_rank_unless_asked_otherwise(work: Path) -> None:
    (work / "s.yaml").write_text(staircase_yaml(65, 70))
    assert invoke("plan", "s.yaml", "-o", "p.json").exit_code == 0
    data = json.loads(invoke("show", "p.json", "--format", "json").stdout)
    assert [r["rank"] for r in data["ranks"]] == list(range(65))
    assert "ranks_not_listed" not in data
    top = json.loads(invoke("show", "p.json", "--format", "json", "--ranks", "top 2").stdout)
    assert [r["rank"] for r in top["ranks"]] == [4, 3, 5]
    assert top["ranks_not_listed"] == 62


def test_the_smallest_is_not_listed_twice() -> None:
    plan = make_plan(spec_from_dict({"world_size": 3, "tables": [
        {"name": "a", "rows": 30, "width": 1},
        {"name": "b", "rows": 20, "width": 1},
        {"name": "c", "rows": 10, "width": 1},
    ]}))  # fmt: skip
    assert choose_ranks(plan, 2) == [0, 1, 2]  # a on 0, b on 1, c on 2: smallest is third
    assert choose_ranks(plan, 3) == [0, 1, 2]
    assert choose_ranks(plan, 0) == []


def test_many_data_parallel_tables_fold_to_a_count(work: Path) -> None:
    # 20,000 tables of 10 x 1 float32, every one at or under the data-parallel threshold
    rows = "\n".join(f"  - {{name: t{i}, rows: 10, width: 1}}" for i in range(20_000))
    (work / "dp.yaml").write_text(f"world_size: 2\ndata_parallel_threshold: 10\ntables:\n{rows}\n")
    result = invoke("plan", "dp.yaml", "-o", "p.json")
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("data-parallel on")]
    # 20,000 x 40 B = 800,000 B on every rank
    assert line.startswith("data-parallel on every rank (781.25 KiB each): 20,000 tables: t0, ")
    assert line.endswith(" more") and len(line) < 170


def test_ranks_that_hold_no_piece_are_named(work: Path) -> None:
    # uncut, basic deals a, b, c, d to ranks 0-3 of 8: ranks 4-7 take no part in lookups
    whole = ("plan", "small.yaml", "--world-size", "8", "--column-slice-threshold", "100000")
    result = invoke(*whole, "-o", "p.json")
    assert result.exit_code == 0, result.output
    idle = "4 of 8 ranks hold no table-parallel or row-sliced piece: ranks 4-7"
    assert idle in result.stdout.splitlines()
    # a (100 rows, 800 elements) row-sliced over the 8 ranks gives every rank a piece
    result = invoke(*whole, "--row-slice-threshold", "799", "-o", "q.json")
    assert result.exit_code == 0, result.output
    assert "hold no table-parallel" not in result.stdout


# --- capacity advice once per group of ranks, and in JSON -----------------------------


def test_identical_advice_for_64_ranks_is_one_line(work: Path) -> None:
    # 128 tables of 1000 x 8 float32 (32,000 B) dealt two to each of 64 ranks: 64,000 B
    # against 60,000 B on every rank, and perfectly balanced still 64,000 B. Re-planned,
    # 69-72 ranks leave some rank with two tables; 128 ranks hold one each and fit. auto
    # balances 4,096,000 B over 72 ranks (the bound, 69, in whole hosts of 8): 56,864 to
    # 56,896 B each, which fit.
    rows = "\n".join(f"  - {{name: t{i}, rows: 1000, width: 8}}" for i in range(128))
    (work / "s.yaml").write_text(f"world_size: 64\nstrategy: basic\ntables:\n{rows}\n")
    result = invoke("plan", "s.yaml", "-o", "p.json", "--device-memory", "60000")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "ranks 0-63 need 62.50 KiB each, 3.91 KiB over the 58.59 KiB limit (58.59 KiB less "
        "0% reserve; a bare number is bytes: did you mean 60000MiB?); even perfectly "
        "balanced the tables need 62.50 KiB per rank; it fits with any one of: --world-size "
        "128; --strategy auto --world-size 72"
    ]


def test_more_groups_than_fit_on_a_screen_end_in_a_count() -> None:
    overflows = [
        RankOverflow(r, 1100, 1000, f"table 't{r}' alone takes 1 KiB", "x") for r in range(25)
    ]
    groups = [AdviceGroup([o.rank], [o.needs], o.limit, o.diagnosis, o.advice) for o in overflows]
    report = CapacityReport(1000, 0.0, 1000, overflows, [], groups)
    lines = report.lines()
    assert len(lines) == MAX_ADVICE_LINES + 1 == 21
    assert lines[0] == (
        "rank 0 needs 1.07 KiB, 100 B over the 1000 B limit (1000 B less 0% reserve; a bare "
        "number is bytes: did you mean 1000GiB?); table 't0' alone takes 1 KiB; x"
    )
    assert lines[-1] == (
        "and ranks 20-24 over with other advice (5 ranks; --format json lists the advice for "
        "every rank)"
    )


def test_json_carries_the_capacity_check_when_the_plan_does_not_fit(work: Path) -> None:
    # 2000 B: rank 0 (3280 B) is 1280 B over, rank 1 (2240 B) 240 B; the same reason
    # for both. 3 and 4 ranks still overflow with basic; 5 fit. auto row-slices a and
    # spreads 5,520 B over the 3 ranks of the lower bound: 1,808 to 1,856 B, which fit.
    result = invoke(
        "plan", "small.yaml", "-o", "p.json", "--device-memory", "2000", "--format", "json"
    )
    assert result.exit_code == 3
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]  # no plan written
    capacity = json.loads(result.stdout)["capacity"]
    assert capacity == {
        "device_memory": 2000,
        "memory_reserve": 0.0,
        "usable_bytes": 2000,
        "fits": False,
        "ranks_over": [0, 1],
        "overflows": [
            {"rank": 0, "bytes": 3280, "over": 1280},
            {"rank": 1, "bytes": 2240, "over": 240},
        ],
        "fixes": ["--world-size 5", "--strategy auto --world-size 3"],
        "advice": [
            {
                "ranks": [0, 1],
                "diagnosis": "even perfectly balanced the tables need 2.70 KiB per rank",
                "advice": "it fits with any one of: --world-size 5; --strategy auto "
                "--world-size 3",
            }
        ],
    }
    assert result.stderr.startswith("ranks 0-1 need 2.19 KiB to 3.20 KiB")


def test_ranks_whose_needs_look_the_same_are_said_once() -> None:
    limit = 1000 * 2**20
    group = AdviceGroup([0, 1], [1200 * 2**20, 1200 * 2**20], limit, "why", "fix")
    assert group.line("LIMIT").startswith("ranks 0-1 need 1.17 GiB each, 200.00 MiB over")
    near = AdviceGroup([0, 1, 2], [1200 * 2**20, 1200 * 2**20 + 5, 1201 * 2**20], limit, "w", "f")
    assert near.line("LIMIT").startswith(
        "ranks 0-2 need about 1.17 GiB each, up to 201.00 MiB over LIMIT"
    )
    apart = AdviceGroup([0, 1], [1100 * 2**20, 1300 * 2**20], limit, "why", "fix")
    assert apart.line("LIMIT").startswith("ranks 0-1 need 1.07 GiB to 1.27 GiB, up to 300.00")
