"""``planner compare`` and ``planner diff`` on small specs placed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import SMALL, SMALL_YAML, invoke

from planner import load_plan
from planner.planning import make_plan
from planner.reports.compare import compare, parse_strategies, parse_world_sizes
from planner.reports.diff import diff_plans
from planner.reports.diff import render as render_diff
from planner.spec import spec_from_dict
from planner.spec_fields import STRATEGIES

# a 100 x 8 float32 (800 elements, 3200 B), b 50 x 8 (400, 1600 B),
# c 10 x 4 float16 (40, 80 B), d 20 x 8 (160, 640 B); 5520 B in all.
#   basic on 2 ranks: rank 0 a, c (3280 B); rank 1 b, d (2240 B)
#   memory_optimized on 2 ranks: largest first onto the least loaded rank: a -> r0,
#     b -> r1, d -> r1, c -> r1; ranks end ordered by load, so rank 0 holds b, d, c
#     (2320 B) and rank 1 holds a (3200 B)
#   one rank: everything on rank 0 (5520 B), strategy basic whatever was asked


def plan_file(work: Path, name: str, **changes) -> Path:
    path = work / name
    path.write_text(make_plan(spec_from_dict({**SMALL, **changes})).to_json())
    return path


# --- compare ----------------------------------------------------------------------------


def test_world_sizes_and_strategies_parse() -> None:
    assert parse_world_sizes("8,16,32") == [8, 16, 32]
    assert parse_world_sizes("4,4,2") == [4, 2]
    for bad in ("", "8,", "x", "0,8", "-1"):
        with pytest.raises(ValueError, match="--world-size: expected positive integers"):
            parse_world_sizes(bad)
    assert parse_strategies("all") == list(STRATEGIES)
    assert parse_strategies("memory_optimized, basic") == ["memory_optimized", "basic"]
    with pytest.raises(ValueError, match="'fast' is not a strategy"):
        parse_strategies("basic,fast")


def test_compare_rows_are_the_hand_placed_numbers() -> None:
    # device memory 3250 B: basic on 2 ranks has 3280 B on rank 0 (1 over),
    # memory_optimized 3200 B at most (fits); one rank holds 5520 B (over)
    spec = spec_from_dict({**SMALL, "device_memory": 3250})
    rows = compare(spec, [1, 2], ["basic", "memory_optimized"])
    got = [
        (r.world_size, r.strategy, r.used, r.max_rank_bytes, r.mean_rank_bytes, r.shards)
        for r in rows
    ]
    assert got == [
        (1, "basic", "basic", 5520, 5520, 4),
        (1, "memory_optimized", "basic", 5520, 5520, 4),
        (2, "basic", "basic", 3280, 2760, 4),
        (2, "memory_optimized", "memory_optimized", 3200, 2760, 4),
    ]
    assert [(r.fits, r.ranks_over) for r in rows] == [(False, 1), (False, 1), (False, 1), (True, 0)]
    assert [r.imbalance for r in rows] == pytest.approx([1, 1, 3280 / 2760, 3200 / 2760])
    assert all(r.comm_seconds is None and r.step_seconds is None for r in rows)


def test_compare_table_with_traffic_and_fit(work: Path) -> None:
    # global batch 4 (2 per rank on two ranks), int64 ids, float32 outputs, 1000 B/s:
    #   basic: rank 0 holds a (8 wide) and c (4), rank 1 b and d (8 each).
    #     ids: each rank sends 2 inputs x 2 ids x 8 B = 32 B to the other
    #     embeddings: rank 0 sends 2 x (8 + 4) x 4 = 96 B, rank 1 sends 2 x 16 x 4 = 128 B;
    #     gradients the other way. Each rank: 32 + 96 + 128 = 256 B each way.
    #     time: ids 32 + forward 128 + backward 128 = 288 B at 1000 B/s = 288 ms
    #   memory_optimized: rank 0 holds b, d, c, rank 1 a.
    #     ids: rank 0 sends a's 16 B, rank 1 sends 3 x 16 = 48 B
    #     embeddings: rank 0 sends 2 x 20 x 4 = 160 B, rank 1 2 x 8 x 4 = 64 B
    #     rank 0 sends 16 + 160 + 64 = 240, receives 48 + 64 + 160 = 272 -> 272 B
    #     time: 48 + 160 + 160 = 368 B -> 368 ms
    # step (docs/cost_model.md), one host at 1000 B/s, memory at 1000 B/s: a table's
    # forward lookups read 4 ids x (8 B + a 128-byte line, the least a row read moves)
    # and write 4 x width x 4 B: a, b, d (8 wide) 672 B each, c (4 wide) 608 B.
    #   basic: ids 32, lookups max(672 + 608, 672 + 672) = 1344, outputs 128 and
    #     gradients 128, backward 2 x 1344: 4320 B -> 4320 ms
    #   memory_optimized: ids 48, lookups 672 + 672 + 608 = 1952, outputs 160 and
    #     gradients 160, backward 3904: 6224 ms
    result = invoke(
        "compare", "small.yaml", "--world-size", "2", "--strategy", "basic,memory_optimized",
        "--global-batch-size", "4", "--alltoall-bandwidth", "1e-6", "--device-memory", "3250",
        "--intra-host-bandwidth", "1e-6", "--memory-bandwidth", "1e-6",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "world  strategy          max/rank  mean/rank  imbalance  shards  comm/rank   comm time"
        "         step  fits",
        "-----  ----------------  --------  ---------  ---------  ------  ---------  ----------"
        "  -----------  -----------",
        "    2  basic             3.20 KiB   2.70 KiB      1.188       4      256 B  288.000 ms"
        "  4320.000 ms  no (1 over)",
        "    2  memory_optimized  3.12 KiB   2.70 KiB      1.159       4      272 B  368.000 ms"
        "  6224.000 ms  yes",
    ]
    assert sorted(p.name for p in work.iterdir()) == ["small.yaml"]  # nothing written
    # the JSON keys say what the columns hold: comm time is comm_seconds, step step_seconds
    result = invoke(
        "compare", "small.yaml", "--world-size", "2", "--strategy", "basic,memory_optimized",
        "--global-batch-size", "4", "--alltoall-bandwidth", "1e-6", "--format", "json",
        "--intra-host-bandwidth", "1e-6", "--memory-bandwidth", "1e-6",
    )  # fmt: skip
    rows = json.loads(result.stdout)
    assert [(r["comm_seconds"], r["step_seconds"]) for r in rows] == [
        pytest.approx((0.288, 4.32)),
        pytest.approx((0.368, 6.224)),
    ]
    assert "estimated_step_seconds" not in rows[0]


def test_compare_needs_no_world_size_in_the_spec_when_given_one(work: Path) -> None:
    # the spec without world_size: each row's world size comes from the option
    # (one rank: 5520 B; two ranks, basic: rank 0 holds a and c, 3280 B)
    (work / "any.yaml").write_text(SMALL_YAML.replace("world_size: 2\n", ""))
    result = invoke("compare", "any.yaml", "--world-size", "1,2", "--strategy", "basic",
                    "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["world_size"], r["max_rank_bytes"]) for r in rows] == [(1, 5520), (2, 3280)]
    missing = invoke("compare", "any.yaml")
    assert missing.exit_code == 2
    assert missing.stderr == "Error: any.yaml: world_size: required field is missing; add it\n"


def test_a_batch_size_from_the_spec_is_blamed_on_the_spec(work: Path) -> None:
    (work / "batch.yaml").write_text(SMALL_YAML + "global_batch_size: 4\n")
    result = invoke("compare", "batch.yaml", "--world-size", "2,3", "--strategy", "basic")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: batch.yaml (world size 3, strategy basic): global_batch_size: 4 samples do "
        "not split evenly over 3 ranks; use a multiple of world_size\n"
    )


def test_compare_defaults_to_the_spec_world_size_and_every_strategy(work: Path) -> None:
    result = invoke("compare", "small.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["world_size"], r["strategy"]) for r in rows] == [(2, s) for s in STRATEGIES]
    assert rows[0]["max_rank_bytes"] == 3280 and rows[0]["fits"] is None


def test_compare_markdown(work: Path) -> None:
    result = invoke("compare", "small.yaml", "--world-size", "1", "--strategy", "basic", "--format",
                    "markdown")  # fmt: skip
    assert result.stdout.splitlines() == [
        "| world | strategy | max/rank | mean/rank | imbalance | shards |",
        "|---|---|---|---|---|---|",
        "| 1 | basic | 5.39 KiB | 5.39 KiB | 1.000 | 4 |",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--world-size", "2,x"], "--world-size: expected positive integers"),
        (["--strategy", "fast"], "--strategy: 'fast' is not a strategy"),
        (  # the batch size came from an option: the option is named, not the spec
            ["--world-size", "2,3", "--global-batch-size", "4"],
            "Error: --global-batch-size: 4 samples do not split evenly over 3 ranks",
        ),
        (  # the first world size is checked as the spec is read
            ["--world-size", "3,2", "--global-batch-size", "4"],
            "Error: --global-batch-size: 4 samples do not split evenly over 3 ranks",
        ),
    ],
)
def test_compare_input_errors_are_one_line(work: Path, args, fragment) -> None:
    result = invoke("compare", "small.yaml", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and fragment in result.stderr


# --- diff -------------------------------------------------------------------------------


def test_identical_plans_have_no_differences(work: Path) -> None:
    old = plan_file(work, "old.json")
    result = invoke("diff", old, old, "--exit-code")
    assert (result.exit_code, result.stdout) == (0, "no differences\n")


def test_strategy_change_lists_what_moved_and_the_rank_bytes(work: Path) -> None:
    # basic -> memory_optimized (see the top): a 0 -> 1, b 1 -> 0, d 1 -> 0, c stays on 0;
    # rank 0 3280 -> 2320 B, rank 1 2240 -> 3200 B
    old = plan_file(work, "old.json")
    new = plan_file(work, "new.json", strategy="memory_optimized")
    result = invoke("diff", old, new)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "strategy basic -> memory_optimized; 3 of 4 tables moved; "
        "largest rank 3.20 KiB -> 3.12 KiB",
        "",
        "settings:",
        "  strategy: basic -> memory_optimized",
        "  parameters.requested_strategy: basic -> memory_optimized",
        "",
        "moved:",
        "  a: rank 0 -> rank 1",
        "  b: rank 1 -> rank 0",
        "  d: rank 1 -> rank 0",
        "",
        "rank bytes:",
        "  rank 0: 3.20 KiB -> 2.27 KiB (-960 B)",
        "  rank 1: 2.19 KiB -> 3.12 KiB (+960 B)",
    ]
    assert invoke("diff", old, new, "--exit-code").exit_code == 1


def test_diff_markdown_for_a_review(work: Path) -> None:
    # the same change as above, as a pull request comment shows it
    old = plan_file(work, "old.json")
    new = plan_file(work, "new.json", strategy="memory_optimized")
    result = invoke("diff", old, new, "--format", "markdown")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:8] == [
        "**strategy basic -> memory_optimized; 3 of 4 tables moved; "
        "largest rank 3.20 KiB -> 3.12 KiB**",
        "",
        "**settings**",
        "",
        "- `strategy: basic -> memory_optimized`",
        "- `parameters.requested_strategy: basic -> memory_optimized`",
        "",
        "**moved**",
    ]
    assert "- `rank 1: 2.19 KiB -> 3.12 KiB (+960 B)`" in result.stdout.splitlines()
    assert invoke("diff", old, old, "--format", "markdown").stdout == "**no differences**\n"


def test_a_long_markdown_section_is_folded_and_backticks_stay_code() -> None:
    # 21 tables, each moving from rank 0 to rank 1, one named with backticks
    names = [f"t{k}" for k in range(20)] + ["a`b``"]
    tables = [{"name": name, "rows": 4, "width": 4} for name in names]
    base = {"world_size": 2, "strategy": "basic", "tables": tables}
    old = make_plan(spec_from_dict(base))
    moved = {**base, "tables": [{"name": "pad", "rows": 4, "width": 4}, *tables]}
    new = make_plan(spec_from_dict(moved))
    text = render_diff(diff_plans(old, new), old, new, "markdown")
    lines = text.splitlines()
    start = lines.index("<details>")
    assert lines[start + 1] == "<summary>moved (21)</summary>"
    # a run of two backticks inside: fenced by three
    assert any(line.startswith("- ```a`b``: rank ") and line.endswith("1```") for line in lines)
    assert lines[lines.index("</details>", start) - 1] == ""
    # added names: one item each, so that many fold too
    grown = {**base, "tables": [*tables, *({"name": f"n{k}", "rows": 4, "width": 4}
                                           for k in range(25))]}
    more = make_plan(spec_from_dict(grown))
    text = render_diff(diff_plans(old, more), old, more, "markdown")
    assert "<summary>tables added (25)</summary>" in text
    assert "- `n24: rank 1`" in text.splitlines()  # basic deals the 46th table to rank 1
    # as text, more than 20 added tables are one line of names, with no placements
    lines = render_diff(diff_plans(old, more), old, more, "text").splitlines()
    assert lines[lines.index("tables added:") + 1] == "  " + ", ".join(f"n{k}" for k in range(25))


def test_tables_added_removed_changed_and_sliced(work: Path) -> None:
    # new: d removed, e (5 x 8) added, b grows to 60 rows, threshold 400 cuts a (800) and
    # b (480) into 2 slices of 4 columns. basic deals a0 a1 b0 b1 c e: rank 0 a0 b0 c,
    # rank 1 a1 b1 e. rank 0: 1600 + 960 + 80 = 2640 B; rank 1: 1600 + 960 + 160 = 2720 B
    old = plan_file(work, "old.json")
    tables = [
        SMALL["tables"][0],
        {"name": "b", "rows": 60, "width": 8},
        SMALL["tables"][2],
        {"name": "e", "rows": 5, "width": 8},
    ]
    new = plan_file(work, "new.json", tables=tables, column_slice_threshold=400)
    result = invoke("diff", old, new)
    assert result.stdout.splitlines() == [
        "2 of 3 tables moved; 1 added; 1 removed; 1 table changed; "
        "largest rank 3.20 KiB -> 2.66 KiB",
        "",
        "settings:",
        "  parameters.column_slice_threshold: null -> 400",
        "  parameters.column_slice_threshold_source: none -> spec",
        "",
        "tables added:",
        "  e: rank 1",
        "",
        "tables removed:",
        "  d",
        "",
        "tables changed:",
        "  b.rows: 50 -> 60",
        "",
        "inputs added:",
        "  e",
        "",
        "inputs removed:",
        "  d",
        "",
        "moved:",
        "  a: rank 0 -> cols 0:4 on rank 0, 4:8 on rank 1",
        "  b: rank 1 -> cols 0:4 on rank 0, 4:8 on rank 1",
        "",
        "rank bytes:",
        "  rank 0: 3.20 KiB -> 2.58 KiB (-640 B)",
        "  rank 1: 2.19 KiB -> 2.66 KiB (+480 B)",
    ]


def test_group_changes_and_new_ranks(work: Path) -> None:
    # 3 ranks, c (40 elements) data-parallel, a row-sliced (>= 800): rows 34, 33, 33.
    # b and d are table-parallel, two tables for three ranks: the automatic threshold
    # halves b (400) once, 399, so b is cut into two slices of 4 columns; basic deals
    # b0 b1 d to ranks 0, 1, 2. Rank 2: 33 rows of a (1056 B) + d (640) + c (80) = 1776 B
    old = plan_file(work, "old.json")
    new = plan_file(
        work, "new.json", world_size=3, data_parallel_threshold=40, row_slice_threshold=800
    )
    diff = diff_plans(load_plan(old), load_plan(new))
    moved = {c.what: (c.old, c.new) for c in diff.moved}
    assert moved == {
        "a": ("rank 0", "row-sliced over ranks 0-2 (33-34 rows each)"),
        "b": ("rank 1", "cols 0:4 on rank 0, 4:8 on rank 1"),
        "c": ("rank 0", "data-parallel"),
        "d": ("rank 1", "rank 2"),
    }
    assert [(c.what, c.old, c.new) for c in diff.rank_bytes][-1] == ("rank 2", None, 1776)
    assert diff.rank_host_bytes == []  # rank 2, new, holds nothing in host memory: no change
    text = invoke("diff", old, new).stdout
    assert text.startswith("world size 2 -> 3; 4 of 4 tables moved;")
    assert "  rank 2: none -> 1.73 KiB" in text
    assert "host memory" not in text


def test_only_an_estimate_changed(work: Path) -> None:
    # two ranks on one host: the step's exchanges go at intra_host_bandwidth, so only the
    # communication time (at the all-to-all bandwidth, 288 B at 1000 B/s) changes
    old = plan_file(work, "old.json", global_batch_size=4)
    new = plan_file(work, "new.json", global_batch_size=4, alltoall_bandwidth=1e-6)
    lines = invoke("diff", old, new).stdout.splitlines()
    assert lines[0] == "communication time 0.000 ms -> 288.000 ms"
    assert "  parameters.alltoall_bandwidth: 25.0 -> 1e-06" in lines
    assert lines[-2:] == ["estimates per step:", "  communication time: 0.000 ms -> 288.000 ms"]


def test_diff_reports_the_step_estimate_as_the_step(work: Path) -> None:
    # basic -> memory_optimized at global batch 4 and 1000 B/s everywhere (worked out in
    # test_compare_table_with_traffic_and_fit): step 4320 -> 6224 ms, communication alone
    # 288 -> 368 ms
    slow = {"alltoall_bandwidth": 1e-6, "intra_host_bandwidth": 1e-6, "memory_bandwidth": 1e-6}
    old = plan_file(work, "old.json", global_batch_size=4, **slow)
    new = plan_file(work, "new.json", global_batch_size=4, strategy="memory_optimized", **slow)
    lines = invoke("diff", old, new).stdout.splitlines()
    assert lines[0].endswith(
        "; largest rank 3.20 KiB -> 3.12 KiB; step estimate 4320.000 ms -> 6224.000 ms"
    )
    assert lines[-3:] == [
        "estimates per step:",
        "  step: 4320.000 ms -> 6224.000 ms",
        "  communication time: 288.000 ms -> 368.000 ms",
    ]
    data = json.loads(invoke("diff", old, new, "--format", "json").stdout)
    assert data["step"] == {
        "what": "stats.step.step_seconds",
        "old": pytest.approx(4.32),
        "new": pytest.approx(6.224),
    }
    assert data["comm"] == {
        "what": "stats.comm.step_seconds",
        "old": pytest.approx(0.288),
        "new": pytest.approx(0.368),
    }


def test_unexplained_differences_are_named(work: Path) -> None:
    # rank 0 holds a (width 8) and c (width 4) as two weights; listed the other way round
    # (as another version might), with the inputs pointing at the new positions, the plan
    # is as sound, places every table where it was, and still differs
    old = plan_file(work, "old.json")
    data = json.loads(old.read_text())
    rank = data["ranks"][0]
    rank["table_parallel_weights"].reverse()  # inputs find their table's weight by name
    (work / "new.json").write_text(json.dumps(data))
    assert invoke("validate", "new.json").exit_code == 0
    result = invoke("diff", old, "new.json", "--exit-code")
    assert (result.exit_code, result.stdout.splitlines()[0]) == (1, "plans differ in ranks")


def test_diff_json_and_bad_files(work: Path) -> None:
    old = plan_file(work, "old.json")
    new = plan_file(work, "new.json", strategy="memory_optimized")
    data = json.loads(invoke("diff", old, new, "--format", "json").stdout)
    assert data["summary"].startswith("strategy basic -> memory_optimized")
    assert data["moved"][0] == {"what": "a", "old": "rank 0", "new": "rank 1"}
    assert data["rank_bytes"] == [
        {"what": "rank 0", "old": 3280, "new": 2320},
        {"what": "rank 1", "old": 2240, "new": 3200},
    ]
    (work / "bad.json").write_text("{")
    result = invoke("diff", old, "bad.json")
    assert result.exit_code == 2
    assert "bad.json: not valid JSON" in result.stderr


def test_resized_tables_are_changed_not_moved(work: Path) -> None:
    # a grows from 100 to 120 rows (3840 B) and stays whole on rank 0: rank 0 holds
    # 3840 + 80 = 3920 B (+640 B). d widens from 8 to 16 columns (1280 B) and stays on
    # rank 1: 1600 + 1280 = 2880 B (+640 B)
    old = plan_file(work, "old.json")
    tables = [
        {"name": "a", "rows": 120, "width": 8},
        SMALL["tables"][1],
        SMALL["tables"][2],
        {"name": "d", "rows": 20, "width": 16},
    ]
    new = plan_file(work, "new.json", tables=tables)
    assert invoke("diff", old, new).stdout.splitlines() == [
        "2 tables changed; largest rank 3.20 KiB -> 3.83 KiB",
        "",
        "tables changed:",
        "  a.rows: 100 -> 120",
        "  d.width: 8 -> 16",
        "",
        "rank bytes:",
        "  rank 0: 3.20 KiB -> 3.83 KiB (+640 B)",
        "  rank 1: 2.19 KiB -> 2.81 KiB (+640 B)",
    ]


def test_a_resized_row_sliced_table_is_changed_not_moved(work: Path) -> None:
    # a is row-sliced over 3 ranks (32 B a row): 34, 33, 33 rows, then 40 each at 120
    # rows: rank 0 +6 rows (+192 B), ranks 1 and 2 +7 rows (+224 B)
    old = plan_file(work, "old.json", world_size=3, row_slice_threshold=800)
    tables = [{"name": "a", "rows": 120, "width": 8}, *SMALL["tables"][1:]]
    new = plan_file(work, "new.json", world_size=3, row_slice_threshold=800, tables=tables)
    diff = diff_plans(load_plan(old), load_plan(new))
    assert diff.moved == []
    assert [(c.what, c.new - c.old) for c in diff.rank_bytes] == [
        ("rank 0", 192),
        ("rank 1", 224),
        ("rank 2", 224),
    ]
    # the same split over other ranks is a move, resized or not
    moved = plan_file(work, "moved.json", world_size=4, row_slice_threshold=800, tables=tables)
    diff = diff_plans(load_plan(old), load_plan(moved))
    assert (diff.moved[0].what, diff.moved[0].old, diff.moved[0].new) == (
        "a",
        "row-sliced over ranks 0-2 (33-34 rows each)",
        "row-sliced over ranks 0-3 (30 rows each)",
    )


def test_a_plan_with_a_rank_missing_is_a_one_line_input_error(work: Path) -> None:
    old = plan_file(work, "old.json")
    data = json.loads(old.read_text())
    data["ranks"] = data["ranks"][:1]
    (work / "short.json").write_text(json.dumps(data))
    for args in (("short.json", old), (old, "short.json")):
        result = invoke("diff", *args, "--exit-code")
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: short.json: ranks: expected ranks 0..1 in order, found [0]; "
            "run planner validate for every problem\n"
        )


def test_a_row_sliced_table_without_shards_is_refused(work: Path) -> None:
    old = plan_file(work, "old.json", world_size=3, row_slice_threshold=800)
    data = json.loads(old.read_text())
    data["row_splits"] = []  # a's rows are nowhere
    (work / "new.json").write_text(json.dumps(data))
    result = invoke("diff", old, "new.json")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: new.json: row_splits: must hold one split per row-sliced table, and no other "
        "(and 3 more); run planner validate for every problem"
    ]


def test_a_table_added_and_one_removed(work: Path) -> None:
    # new: c removed, e (30 x 8, 960 B) added. basic deals a, b, d, e in turn: a and d
    # on rank 0 (3200 + 640 = 3840 B), b and e on rank 1 (1600 + 960 = 2560 B); d moved
    old = plan_file(work, "old.json")
    tables = [*SMALL["tables"][:2], SMALL["tables"][3], {"name": "e", "rows": 30, "width": 8}]
    new = plan_file(work, "new.json", tables=tables)
    assert invoke("diff", old, new).stdout.splitlines() == [
        "1 of 3 tables moved; 1 added; 1 removed; largest rank 3.20 KiB -> 3.75 KiB",
        "",
        "tables added:",
        "  e: rank 1",
        "",
        "tables removed:",
        "  c",
        "",
        "inputs added:",
        "  e",
        "",
        "inputs removed:",
        "  c",
        "",
        "moved:",
        "  d: rank 1 -> rank 0",
        "",
        "rank bytes:",
        "  rank 0: 3.20 KiB -> 3.75 KiB (+560 B)",
        "  rank 1: 2.19 KiB -> 2.50 KiB (+320 B)",
    ]
    assert invoke("diff", new, old).stdout.splitlines()[:7] == [
        "1 of 3 tables moved; 1 added; 1 removed; largest rank 3.75 KiB -> 3.20 KiB",
        "",
        "tables added:",
        "  c: rank 0",  # where basic dealt it in the old plan: a, b, c, d to ranks 0, 1, 0, 1
        "",
        "tables removed:",
        "  e",
    ]


@st.composite
def plan_pairs(draw):
    def plan():
        names = draw(st.lists(st.sampled_from("tuvwxyz"), min_size=1, max_size=6, unique=True))
        tables = [
            {"name": name, "rows": draw(st.integers(1, 200)), "width": draw(st.integers(1, 8))}
            for name in names
        ]
        return make_plan(
            spec_from_dict(
                {
                    "world_size": draw(st.integers(1, 4)),
                    "strategy": draw(st.sampled_from(["basic", "memory_optimized"])),
                    "column_slice_threshold": draw(st.one_of(st.none(), st.integers(0, 300))),
                    "row_slice_threshold": draw(st.one_of(st.none(), st.integers(1, 800))),
                    "tables": tables,
                }
            )
        )

    return plan(), plan()


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(plan_pairs())
def test_diff_backwards_mirrors_diff_forwards(pair) -> None:
    old, new = pair
    forwards, backwards = diff_plans(old, new), diff_plans(new, old)
    assert forwards.changed == backwards.changed == (old != new)
    assert diff_plans(old, old).changed is False
    assert (forwards.tables_added, forwards.tables_removed) == (
        backwards.tables_removed,
        backwards.tables_added,
    )
    common = {t.name for t in old.tables} & {t.name for t in new.tables}
    assert {c.what for c in forwards.moved} <= common
    assert {c.what: (c.old, c.new) for c in forwards.moved} == {
        c.what: (c.new, c.old) for c in backwards.moved
    }
    assert [(c.what, c.old, c.new) for c in forwards.rank_bytes] == [
        (c.what, c.new, c.old) for c in backwards.rank_bytes
    ]
