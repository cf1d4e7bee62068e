"""The ``planner`` command line: plan, show, validate, schema, and how each fails.

Every command runs through click's CliRunner in a temporary folder. Expected numbers come
from placing a small spec by hand (see SMALL_YAML), not from the planner itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
from click.testing import Result
from shared import SMALL_YAML, invoke, rank_lines

from planner import (
    PlanFileError,
    jsonlines,
    load_plan,
    load_spec,
    make_plan,
    plan_problems,
    save_plan,
    spec_problems,
)
from planner.cli import main
from planner.field_errors import option_name
from planner.saving import plan_text
from planner.spec import OPTION_FIELDS

# SMALL_YAML and its hand-worked placement: see tests/shared.py.

# The same model with every default written out, keys in another order.
SMALL_SPEC_EXPLICIT = """\
tables:
  - {name: a, rows: 100, width: 8, combiner: null, dtype: float32, initializer: uniform}
  - {name: b, rows: 50, width: 8, combiner: null, dtype: float32, initializer: uniform}
  - {name: c, rows: 10, width: 4, combiner: null, dtype: float16, initializer: uniform}
  - {name: d, rows: 20, width: 8, combiner: null, dtype: float32, initializer: uniform}
inputs:
  - {name: a, table: a, hotness: 1}
  - {name: b, table: b, hotness: 1}
  - {name: c, table: c, hotness: 1}
  - {name: d, table: d, hotness: 1}
dp_input: true
data_parallel_threshold: null
row_slice_threshold: null
column_slice_threshold: null
strategy: basic
world_size: 2
"""

EXPECTED_RANK_ROWS = [
    # rank, shards, weights, elements, bytes, share of the largest rank
    ["0", "2", "2", "840", "3.20", "KiB", "100.0%"],
    ["1", "2", "1", "560", "2.19", "KiB", "68.3%"],
]
EXPECTED_FOOTER = "largest rank 3.20 KiB, mean 2.70 KiB, imbalance (max/mean) 1.188"


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden ones (temp files) included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def saved(work: Path) -> Path:
    """small.yaml planned through the CLI into plan.json."""
    result = invoke("plan", "small.yaml", "-o", "plan.json")
    assert result.exit_code == 0, result.output
    return work / "plan.json"


def assert_clean_failure(result: Result, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, one line on stderr naming every fragment, nothing on stdout."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def preview_of(result: Result) -> str:
    """What ``plan`` printed, without its final ``wrote ...`` line."""
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("wrote ")
    return "\n".join(lines[:-1]) + "\n"


# --- plan: the happy path -------------------------------------------------------------


def test_plan_writes_the_plan_and_prints_the_preview(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "plan.json")
    assert result.exit_code == 0, result.output
    assert files_in(work) == ["plan.json", "small.yaml"]
    out = result.stdout
    assert out.splitlines()[0] == (
        "world size 2, strategy basic, 4 tables, 4 inputs, 5.39 KiB of weights"
    )
    assert rank_lines(out) == EXPECTED_RANK_ROWS
    assert EXPECTED_FOOTER in out.splitlines()
    assert out.splitlines()[-1] == "wrote plan.json"

    plan = json.loads((work / "plan.json").read_text())
    assert plan["format_version"] == 3
    assert plan["world_size"] == 2
    assert [r["bytes"] for r in plan["ranks"]] == [3280, 2240]
    assert [r["elements"] for r in plan["ranks"]] == [840, 560]
    assert plan["stats"]["total_bytes"] == 5520
    assert plan["stats"]["imbalance"] == pytest.approx(3280 / 2760)
    assert [(s["table"], s["rank"], s["rows"], s["cols"]) for s in plan["shards"]] == [
        ("a", 0, [0, 100], [0, 8]),
        ("b", 1, [0, 50], [0, 8]),
        ("c", 0, [0, 10], [0, 4]),
        ("d", 1, [0, 20], [0, 8]),
    ]


def test_plan_lists_shards_with_their_shape_and_bytes(work: Path) -> None:
    out = invoke("plan", "small.yaml", "-o", "plan.json").stdout
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line[:2] in {"a ", "b ", "c ", "d "}
    }
    assert rows["a"] == ["a", "0", "0:100", "0:8", "100", "x", "8", "3.12", "KiB"]
    assert rows["c"] == ["c", "0", "0:10", "0:4", "10", "x", "4", "80", "B"]
    assert rows["d"] == ["d", "1", "0:20", "0:8", "20", "x", "8", "640", "B"]


def test_plan_default_output_is_the_spec_name_in_the_current_folder(work: Path) -> None:
    (work / "specs").mkdir()
    (work / "specs" / "model.yaml").write_text(SMALL_YAML)
    result = invoke("plan", "specs/model.yaml")
    assert result.exit_code == 0, result.output
    assert (work / "model.plan.json").is_file()
    assert result.stdout.splitlines()[-1] == "wrote model.plan.json"


def test_plan_json_format_has_the_same_numbers(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--format", "json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)  # the "wrote" line goes to stderr
    assert result.stderr.strip() == "wrote plan.json"
    assert preview["world_size"] == 2
    assert preview["strategy"] == "basic"
    assert [
        (r["rank"], r["shards"], r["weights"], r["elements"], r["bytes"]) for r in preview["ranks"]
    ] == [(0, 2, 2, 840, 3280), (1, 2, 1, 560, 2240)]
    assert [r["share"] for r in preview["ranks"]] == pytest.approx([1.0, 2240 / 3280])
    assert preview["stats"]["max_rank_bytes"] == 3280
    assert preview["stats"]["mean_rank_bytes"] == pytest.approx(2760)
    assert preview["stats"]["imbalance"] == pytest.approx(3280 / 2760)
    assert preview["data_parallel"] == []
    assert len(preview["shards"]) == 4
    assert (work / "plan.json").is_file()


def test_plan_markdown_format_prints_pipe_tables(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = lines.index("| rank | shards | weights | elements | bytes | of largest |")
    assert lines[head + 1] == "|---|---|---|---|---|---|"
    assert lines[head + 2] == "| 0 | 2 | 2 | 840 | 3.20 KiB | 100.0% |"
    assert lines[head + 3] == "| 1 | 2 | 1 | 560 | 2.19 KiB | 68.3% |"
    assert f"- {EXPECTED_FOOTER}" in lines  # the summary as a list: lines, not a paragraph
    assert lines[head - 1] == "" and all(line.startswith("- ") for line in lines[: head - 1])
    assert "| table | rank | rows | cols | shape | bytes |" in lines
    assert "| a | 0 | 0:100 | 0:8 | 100 x 8 | 3.12 KiB |" in lines


def test_long_shard_lists_are_summarized_unless_asked_for(work: Path) -> None:
    tables = "\n".join(f"  - {{name: t{i}, rows: 2, width: 2}}" for i in range(201))
    (work / "many.yaml").write_text(f"world_size: 1\ntables:\n{tables}\n")
    short = invoke("plan", "many.yaml", "-o", "many.json")
    assert short.exit_code == 0, short.output
    assert "201 shards (pass --shards to list them)" in short.stdout
    assert "t200" not in short.stdout
    full = invoke("show", "many.json", "--shards")
    assert full.exit_code == 0, full.output
    assert "t200" in full.stdout
    assert "pass --shards" not in full.stdout
    none = invoke("show", "many.json", "--no-shards")
    assert none.exit_code == 0, none.output
    assert not any(line.startswith("t0 ") for line in none.stdout.splitlines())
    assert "201 shards (pass --shards to list them)" in none.stdout


# --- plan: options override the file ---------------------------------------------------


def test_world_size_override(work: Path) -> None:
    # four tables on four ranks: one each, no slicing needed.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--world-size", "4")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["world_size"] == 4
    assert len(plan["ranks"]) == 4
    assert [r["bytes"] for r in plan["ranks"]] == [3200, 1600, 80, 640]
    assert plan["stats"]["imbalance"] == pytest.approx(3200 / 1380)
    assert [r[0] for r in rank_lines(result.stdout)] == ["0", "1", "2", "3"]


def test_world_size_override_with_automatic_column_slicing(work: Path) -> None:
    # Four tables on five ranks: the largest (a, 800 elements) is halved, so the threshold
    # is 799 and a goes out as two 4-column slices; basic then deals a0 a1 b c d.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--world-size", "5")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["parameters"]["column_slice_threshold"] == 799
    assert plan["parameters"]["column_slice_threshold_source"] == "automatic"
    assert [(s["table"], s["rank"], s["cols"]) for s in plan["shards"]] == [
        ("a", 0, [0, 4]),
        ("a", 1, [4, 8]),
        ("b", 2, [0, 8]),
        ("c", 3, [0, 4]),
        ("d", 4, [0, 8]),
    ]
    assert [r["bytes"] for r in plan["ranks"]] == [1600, 1600, 1600, 80, 640]


def test_strategy_override(work: Path) -> None:
    # memory_optimized, largest first onto the least-loaded rank: a -> r0 (800),
    # b, d, c -> r1 (400, 560, 600); ranks end ordered by load, so b d c become rank 0.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--strategy", "memory_optimized")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["strategy"] == "memory_optimized"
    assert plan["parameters"]["requested_strategy"] == "memory_optimized"
    assert [r["bytes"] for r in plan["ranks"]] == [2320, 3200]
    assert {s["table"]: s["rank"] for s in plan["shards"]} == {"a": 1, "b": 0, "c": 0, "d": 0}
    assert rank_lines(result.stdout) == [
        ["0", "3", "2", "600", "2.27", "KiB", "72.5%"],
        ["1", "1", "1", "800", "3.12", "KiB", "100.0%"],
    ]
    assert "imbalance (max/mean) 1.159" in result.stdout


def test_column_slice_threshold_override(work: Path) -> None:
    # 200 elements per slice: a (800) wants 4 slices and b (400) 2, both capped at 2 ranks;
    # basic deals a0 a1 b0 b1 c d, so rank 0 holds a0 b0 c and rank 1 holds a1 b1 d.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--column-slice-threshold", "200")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["parameters"]["column_slice_threshold"] == 200
    assert plan["parameters"]["column_slice_threshold_source"] == "spec"
    assert [(s["table"], s["rank"], s["cols"]) for s in plan["shards"]] == [
        ("a", 0, [0, 4]),
        ("a", 1, [4, 8]),
        ("b", 0, [0, 4]),
        ("b", 1, [4, 8]),
        ("c", 0, [0, 4]),
        ("d", 1, [0, 8]),
    ]
    assert [r["bytes"] for r in plan["ranks"]] == [1600 + 800 + 80, 1600 + 800 + 640]


def test_row_slice_threshold_override(work: Path) -> None:
    # a (800 elements) is row-sliced 50/50; b c d are dealt round-robin: b d | c.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--row-slice-threshold", "800")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["groups"]["row_sliced"] == ["a"]
    assert plan["row_splits"] == [{"table": "a", "ranks": [0, 2], "remainder_start": 0}]
    assert "a" not in {s["table"] for s in plan["shards"]}  # written once, as its split
    loaded = load_plan(work / "plan.json")
    assert [(s.rank, s.rows, s.cols) for s in loaded.shards if s.table == "a"] == [
        (0, (0, 50), (0, 8)),
        (1, (50, 100), (0, 8)),
    ]
    assert [r["bytes"] for r in plan["ranks"]] == [1600 + 1600 + 640, 1600 + 80]


def test_data_parallel_threshold_override(work: Path) -> None:
    # c (40 elements) is replicated on both ranks and has no shard; a d | b.
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--data-parallel-threshold", "40")
    assert result.exit_code == 0, result.output
    plan = json.loads((work / "plan.json").read_text())
    assert plan["groups"]["data_parallel"] == ["c"]
    assert "c" not in {s["table"] for s in plan["shards"]}
    assert [r["bytes"] for r in plan["ranks"]] == [3200 + 640 + 80, 1600 + 80]
    assert "data-parallel on every rank (80 B each): c" in result.stdout  # 10 x 4 x 2 B


# --- determinism and the file itself ----------------------------------------------------


def test_planning_twice_gives_identical_bytes(work: Path) -> None:
    assert invoke("plan", "small.yaml", "-o", "one.json").exit_code == 0
    assert invoke("plan", "small.yaml", "-o", "two.json").exit_code == 0
    assert (work / "one.json").read_bytes() == (work / "two.json").read_bytes()


def test_equal_specs_written_differently_give_identical_bytes(work: Path) -> None:
    (work / "explicit.yaml").write_text(SMALL_SPEC_EXPLICIT)
    assert invoke("plan", "small.yaml", "-o", "one.json").exit_code == 0
    assert invoke("plan", "explicit.yaml", "-o", "two.json").exit_code == 0
    assert (work / "one.json").read_bytes() == (work / "two.json").read_bytes()


def test_plan_file_is_pretty_printed_and_versioned(saved: Path) -> None:
    text = saved.read_text()
    data = json.loads(text)
    assert text == jsonlines.dumps(data) + "\n"
    assert list(data)[:4] == ["format_version", "seal", "fingerprint", "world_size"]
    assert data["format_version"] == 3
    # a shard per line, everything above it indented
    assert '    {"table": "a", "rank": 0, "rows": [0, 100], "cols": [0, 8]},' in text.splitlines()
    assert data["fingerprint"].startswith("sha256:")
    assert len(data["fingerprint"]) == len("sha256:") + 64


def test_replanning_overwrites_and_leaves_no_temp_file(work: Path) -> None:
    assert invoke("plan", "small.yaml", "-o", "plan.json").exit_code == 0
    assert invoke("plan", "small.yaml", "-o", "plan.json", "--world-size", "3").exit_code == 0
    assert files_in(work) == ["plan.json", "small.yaml"]
    assert json.loads((work / "plan.json").read_text())["world_size"] == 3


def test_plan_to_dev_null_writes_nothing_here(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", os.devnull)
    assert result.exit_code == 0, result.output
    assert files_in(work) == ["small.yaml"]
    assert rank_lines(result.stdout) == EXPECTED_RANK_ROWS


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_plan_to_a_named_pipe(work: Path) -> None:
    """The plan streams into a FIFO (no rename over it), e.g. for another process."""
    pipe = work / "pipe"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    result = invoke("plan", "small.yaml", "-o", "pipe")
    reader.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert invoke("plan", "small.yaml", "-o", "plan.json").exit_code == 0
    assert received == [(work / "plan.json").read_text()]
    assert files_in(work) == ["pipe", "plan.json", "small.yaml"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_plan_file_permissions_follow_the_umask(work: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert invoke("plan", "small.yaml", "-o", "plan.json").exit_code == 0
    finally:
        os.umask(old)
    assert (work / "plan.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_leaves_no_partial_or_temp_file(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "plan.json").write_text("old plan\n")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("planner.files.os.replace", refuse)
    result = invoke("plan", "small.yaml", "-o", "plan.json")
    assert result.exit_code != 0
    assert files_in(work) == ["plan.json", "small.yaml"]
    assert (work / "plan.json").read_text() == "old plan\n"


def test_failed_write_is_reported_in_one_line(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("planner.files.os.replace", refuse)
    result = invoke("plan", "small.yaml", "-o", "plan.json")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert len(result.stderr.splitlines()) == 1
    assert "plan.json" in result.stderr


# --- show ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_show_prints_what_plan_printed(work: Path, fmt: str) -> None:
    planned = invoke("plan", "small.yaml", "-o", "plan.json", "--format", fmt)
    assert planned.exit_code == 0, planned.output
    shown = invoke("show", "plan.json", "--format", fmt)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == preview_of(planned)


def test_show_json_matches_plan_json(work: Path) -> None:
    planned = invoke("plan", "small.yaml", "-o", "plan.json", "--format", "json")
    shown = invoke("show", "plan.json", "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == json.loads(planned.stdout)


def test_show_of_an_override_plan(work: Path) -> None:
    assert invoke("plan", "small.yaml", "-o", "plan.json", "--world-size", "4").exit_code == 0
    shown = invoke("show", "plan.json")
    assert shown.exit_code == 0, shown.output
    assert [r[0] for r in rank_lines(shown.stdout)] == ["0", "1", "2", "3"]
    assert shown.stdout.startswith("world size 4, strategy basic")


# --- validate -----------------------------------------------------------------------------


def test_validate_passes_on_a_fresh_plan(saved: Path) -> None:
    result = invoke("validate", "plan.json")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "plan.json: ok (2 ranks, 4 shards)"


def test_validate_passes_with_the_right_spec(saved: Path) -> None:
    result = invoke("validate", "plan.json", "--spec", "small.yaml")
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout


def test_validate_passes_with_the_spec_and_the_same_overrides(work: Path) -> None:
    args = ["--world-size", "3", "--strategy", "memory_balanced"]
    assert invoke("plan", "small.yaml", "-o", "plan.json", *args).exit_code == 0
    assert invoke("validate", "plan.json", "--spec", "small.yaml", *args).exit_code == 0
    without = invoke("validate", "plan.json", "--spec", "small.yaml")
    assert without.exit_code == 1
    assert "fingerprint" in without.stderr


def test_validate_fails_with_a_different_spec(saved: Path, work: Path) -> None:
    (work / "other.yaml").write_text(SMALL_YAML.replace("rows: 50", "rows: 51"))
    result = invoke("validate", "plan.json", "--spec", "other.yaml")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines == [
        "plan.json: fingerprint: does not match the spec (tables['b'].rows: 50 in the plan, "
        "51 in the spec); re-run planner plan on the spec and commit the new plan"
    ]


def test_validate_names_the_options_the_plan_was_made_with(work: Path) -> None:
    args = ["--optimizer", "adagrad", "--device-memory", "600KiB"]
    assert invoke("plan", "small.yaml", "-o", "plan.json", *args).exit_code == 0
    result = invoke("validate", "plan.json", "--spec", "small.yaml")
    assert result.exit_code == 1
    assert result.stderr == (
        "plan.json: fingerprint: does not match the spec (optimizer: 'adagrad' in the plan, "
        "'sgd' in the spec; device_memory: 600KiB in the plan, not set in the spec); pass "
        "validate the options the plan was made with (--optimizer adagrad --device-memory "
        "600KiB), or re-run planner plan on the spec and commit the new plan\n"
    )
    # what it names is what passes
    assert invoke("validate", "plan.json", "--spec", "small.yaml", *args).exit_code == 0


def test_validate_names_no_options_when_none_would_do(saved: Path, work: Path) -> None:
    # the spec sets a device memory the plan has none of: no option unsets it
    (work / "mem.yaml").write_text(SMALL_YAML + "device_memory: 1000000000\n")
    result = invoke("validate", "plan.json", "--spec", "mem.yaml")
    assert result.stderr == (
        "plan.json: fingerprint: does not match the spec (device_memory: not set in the "
        "plan, 1GB in the spec); re-run planner plan on the spec and commit the new plan\n"
    )


def test_the_spec_options_are_the_spec_fields_named_as_options() -> None:
    """validate names options by the fields that differ: each must be an option."""
    options = {p.name for p in main.commands["validate"].params} - {"plan_path", "spec_path"}
    assert options == set(OPTION_FIELDS)
    plan_options = {p.opts[0] for p in main.commands["plan"].params}
    assert {option_name(field) for field in OPTION_FIELDS} <= plan_options


def test_validate_spec_options_need_the_spec(saved: Path) -> None:
    result = invoke("validate", "plan.json", "--world-size", "3")
    assert_clean_failure(result, "--spec")


def tamper(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_validate_catches_a_shard_with_wrong_columns(saved: Path) -> None:
    tamper(saved, lambda d: d["shards"][0].update(cols=[0, 7]))  # a is 8 wide
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert (
        "plan.json: shards: the shards of 'a' do not cover its 100 x 8 elements "
        "exactly once" in lines
    )
    assert all(line.startswith("plan.json: ") for line in lines)
    assert "ok" not in result.stdout


def test_validate_catches_a_duplicated_shard(saved: Path) -> None:
    tamper(saved, lambda d: d["shards"].append(dict(d["shards"][2])))
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert any("'c'" in line and "exactly once" in line for line in result.stderr.splitlines())


def test_validate_catches_wrong_rank_bytes(saved: Path) -> None:
    tamper(saved, lambda d: d["ranks"][1].update(bytes=d["ranks"][1]["bytes"] + 4))
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert "plan.json: ranks[1]: elements or bytes do not match what it holds" in (
        result.stderr.splitlines()
    )


def test_validate_catches_wrong_stats(saved: Path) -> None:
    tamper(saved, lambda d: d["stats"].update(imbalance=1.0))
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["plan.json: stats: do not match the ranks"]


def test_validate_catches_a_shard_on_a_missing_rank(saved: Path) -> None:
    tamper(saved, lambda d: d["shards"][1].update(rank=5))
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert "plan.json: shards: shard of 'b' names rank 5, outside 0..1" in (
        result.stderr.splitlines()
    )


def test_validate_with_spec_catches_a_consistent_edit(saved: Path) -> None:
    # Swap the two ranks wholesale: still self-consistent, but not what the spec gives.
    def swap(d: dict) -> None:
        for shard in d["shards"]:
            shard["rank"] = 1 - shard["rank"]
        d["ranks"].reverse()
        for index, rank in enumerate(d["ranks"]):
            rank["rank"] = index

    tamper(saved, swap)
    alone = invoke("validate", "plan.json")
    assert alone.exit_code == 0, alone.output
    result = invoke("validate", "plan.json", "--spec", "small.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "plan.json: the plan differs from what this planner makes for the spec; re-run planner plan"
    ]


def _unknown_member(d: dict) -> None:
    d["ranks"][0]["table_parallel_weights"][0]["tables"][0] = "zz"


def _inputs_with_no_weight(d: dict) -> None:
    d["ranks"][0]["table_parallel_weights"] = []  # its inputs read no weight now


def _no_ranks(d: dict) -> None:
    d["ranks"] = []


BROKEN_PLANS = {
    "member of an unknown table": _unknown_member,
    "inputs with no weight to read": _inputs_with_no_weight,
    "no ranks at all": _no_ranks,
}


@pytest.mark.parametrize("damage", list(BROKEN_PLANS))
def test_validate_reports_rather_than_crashes(saved: Path, damage: str) -> None:
    tamper(saved, BROKEN_PLANS[damage])
    result = invoke("validate", "plan.json")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.splitlines()
    assert all(line.startswith("plan.json: ") for line in result.stderr.splitlines())


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["shards"][1].update(rank=5),
        lambda d: d["shards"][0].update(table="zz"),
    ],
    ids=["rank 5 of 2", "unknown table"],
)
def test_show_of_an_inconsistent_plan_fails_cleanly(saved: Path, change) -> None:
    tamper(saved, change)
    result = invoke("show", "plan.json")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (1, 2)
    assert "plan.json" in result.stderr


# --- schema -------------------------------------------------------------------------------


def test_schema_validates_a_real_plan(saved: Path) -> None:
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    plan = json.loads(saved.read_text())
    assert list(validator.iter_errors(plan)) == []

    for broken in (
        {**plan, "format_version": 1},
        {**plan, "surprise": 1},
        {**plan, "world_size": "two"},
        {k: v for k, v in plan.items() if k != "shards"},
        {**plan, "shards": [{**plan["shards"][0], "cols": [0, 4, 8]}]},
    ):
        assert not validator.is_valid(broken)


def test_schema_accepts_every_override_plan(work: Path) -> None:
    schema = json.loads(invoke("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for option, value in [
        ("--row-slice-threshold", "800"),
        ("--data-parallel-threshold", "40"),
        ("--column-slice-threshold", "200"),
    ]:
        assert invoke("plan", "small.yaml", "-o", "p.json", option, value).exit_code == 0
        assert list(validator.iter_errors(json.loads((work / "p.json").read_text()))) == []


# --- bad spec input: one line, exit 2, nothing written ----------------------------------


BAD_SPECS = {
    "unknown table key": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4}\n"
        "  - {name: b, rows: 10, width: 4, colour: red}\n",
        ["tables[1].colour", "unknown key"],
    ),
    "unknown top-level key": (
        "world_size: 2\nstratgy: basic\ntables:\n  - {name: a, rows: 10, width: 4}\n",
        ["stratgy", "unknown key"],
    ),
    "duplicate table name": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4}\n"
        "  - {name: a, rows: 20, width: 4}\n",
        ["tables[1].name", "'a'", "already used by tables[0]"],
    ),
    "duplicate input name": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4}\n"
        "inputs:\n  - {name: x, table: a}\n  - {name: x, table: a}\n",
        ["inputs[1].name", "'x'", "already used by inputs[0]"],
    ),
    "input naming a missing table": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4}\n"
        "inputs:\n  - {name: x, table: a}\n  - {name: y, table: zz}\n",
        ["inputs[1].table", "'zz'"],
    ),
    "zero rows": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4}\n"
        "  - {name: b, rows: 0, width: 4}\n",
        ["tables[1].rows", "(got 0)"],
    ),
    "negative width": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: -4}\n",
        ["tables[0].width", "(got -4)"],
    ),
    "zero hotness": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4, combiner: sum}\n"
        "inputs:\n  - {name: x, table: a, hotness: 0}\n",
        ["inputs[0].hotness", "(got 0)"],
    ),
    "bad strategy": (
        "world_size: 2\nstrategy: greedy\ntables:\n  - {name: a, rows: 10, width: 4}\n",
        ["strategy", "'greedy'"],
    ),
    "bad combiner": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4, combiner: max}\n",
        ["tables[0].combiner", "'max'"],
    ),
    "world size 0": (
        "world_size: 0\ntables:\n  - {name: a, rows: 10, width: 4}\n",
        ["world_size", "(got 0)"],
    ),
    "world size missing": (
        "tables:\n  - {name: a, rows: 10, width: 4}\n",
        ["world_size", "missing"],
    ),
    "no tables": ("world_size: 2\ntables: []\n", ["tables"]),
    "hotness > 1 without a combiner": (
        "world_size: 2\ntables:\n  - {name: a, rows: 10, width: 4, combiner: null}\n"
        "inputs:\n  - {name: x, table: a, hotness: 3}\n",
        ["inputs[0].hotness", "3", "combiner", "'a'"],
    ),
    "invalid YAML": ("world_size: 2\ntables: [\n", ["not valid YAML", "line 3"]),
    "a list at the top": ("- world_size: 2\n- tables: []\n", ["expected a mapping"]),
    "an empty file": ("", ["expected a mapping"]),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(work: Path, case: str) -> None:
    text, fragments = BAD_SPECS[case]
    (work / "bad.yaml").write_text(text)
    before = files_in(work)
    result = invoke("plan", "bad.yaml", "-o", "plan.json")
    line = assert_clean_failure(result, "bad.yaml", *fragments)
    assert line.removeprefix("Error: ").startswith("bad.yaml: ")
    assert files_in(work) == before


@pytest.mark.parametrize("case", ["zero rows", "duplicate table name", "invalid YAML"])
def test_bad_spec_given_to_validate_is_one_line_exit_2(saved: Path, case: str) -> None:
    text, fragments = BAD_SPECS[case]
    (saved.parent / "bad.yaml").write_text(text)
    result = invoke("validate", "plan.json", "--spec", "bad.yaml")
    assert_clean_failure(result, "bad.yaml", *fragments)


def test_missing_spec_file(work: Path) -> None:
    before = files_in(work)
    result = invoke("plan", "nowhere.yaml")
    assert_clean_failure(result, "nowhere.yaml", "cannot read the spec")
    assert files_in(work) == before


def test_missing_output_folder(work: Path) -> None:
    before = files_in(work)
    result = invoke("plan", "small.yaml", "-o", "no/such/plan.json")
    assert_clean_failure(result, "no/such/plan.json", "no/such", "does not exist")
    assert files_in(work) == before


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--world-size", "0", "world_size"),
        ("--column-slice-threshold", "-1", "column_slice_threshold"),
        ("--row-slice-threshold", "-5", "row_slice_threshold"),
        ("--data-parallel-threshold", "-2", "data_parallel_threshold"),
    ],
)
def test_bad_override_is_one_line_exit_2_and_writes_nothing(
    work: Path, option: str, value: str, field: str
) -> None:
    before = files_in(work)
    result = invoke("plan", "small.yaml", "-o", "plan.json", option, value)
    line = assert_clean_failure(result, option, f"(got {value})")
    assert field not in line  # the option is to blame, not the file's field
    assert files_in(work) == before


def test_bad_input_leaves_an_existing_plan_alone(saved: Path) -> None:
    original = saved.read_bytes()
    result = invoke("plan", "small.yaml", "-o", "plan.json", "--world-size", "0")
    assert result.exit_code == 2
    assert saved.read_bytes() == original
    assert files_in(saved.parent) == ["plan.json", "small.yaml"]


def test_entry_point_prints_no_traceback(work: Path) -> None:
    """The real process, not the test runner: one line on stderr, exit 2."""
    (work / "bad.yaml").write_text(BAD_SPECS["zero rows"][0])
    done = subprocess.run(
        [sys.executable, "-m", "planner.cli", "plan", "bad.yaml"],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.rstrip("\n").removeprefix("Error: ") == (
        "bad.yaml: tables[1].rows: Input should be greater than 0 (got 0)"
    )
    assert not (work / "bad.plan.json").exists()


def test_duplicate_name_error_names_the_entry(work: Path) -> None:
    (work / "bad.yaml").write_text(BAD_SPECS["duplicate table name"][0])
    result = invoke("plan", "bad.yaml")
    assert_clean_failure(result, "tables[1].name", "'a'")


def test_bad_override_error_names_the_option(work: Path) -> None:
    result = invoke("plan", "small.yaml", "--world-size", "0")
    assert_clean_failure(result, "--world-size", "0")


def test_a_setting_checked_with_others_names_its_option_or_its_file(work: Path) -> None:
    # 3 samples do not split over 2 ranks: the option at fault is named, not the spec
    result = invoke("plan", "small.yaml", "--global-batch-size", "3")
    assert result.stderr == (
        "Error: --global-batch-size: 3 samples do not split evenly over 2 ranks; use a "
        "multiple of world_size\n"
    )
    # the same value written in the spec: the spec is named
    (work / "batch.yaml").write_text(SMALL_YAML + "global_batch_size: 3\n")
    result = invoke("plan", "batch.yaml")
    assert result.stderr == (
        "Error: batch.yaml: global_batch_size: 3 samples do not split evenly over 2 ranks; "
        "use a multiple of world_size\n"
    )
    # the line names the setting the message is about: here the spec's batch size, which
    # the world size given as an option does not divide
    (work / "even.yaml").write_text(SMALL_YAML + "global_batch_size: 4\n")
    result = invoke("plan", "even.yaml", "--world-size", "3")
    assert result.stderr == (
        "Error: even.yaml: global_batch_size: 4 samples do not split evenly over 3 ranks; "
        "use a multiple of world_size\n"
    )


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("row_reducton: host", "row_reducton: unknown key; did you mean row_reduction?"),
        ("global_batch: 1024", "global_batch: unknown key; did you mean global_batch_size?"),
        ("inputs: [{name: x, table: a, hotnes: 2}]",
         "inputs[0].hotnes: unknown key; did you mean hotness?"),
        ("tables: [{name: a, rows: 10, width: 4, combinr: sum}]",
         "tables[0].combinr: unknown key; did you mean combiner?"),
        ("colour: red", "colour: unknown key; remove it or check its spelling"),
    ],
)
def test_a_misspelt_optional_key_gets_the_key_it_resembles(work: Path, line, said) -> None:
    # optional keys are not missing when misspelt, so the model's own keys are searched
    tables = "" if line.startswith("tables") else "tables: [{name: a, rows: 10, width: 4}]\n"
    (work / "typo.yaml").write_text(f"world_size: 2\n{line}\n{tables}")
    result = invoke("plan", "typo.yaml")
    assert result.exit_code == 2
    assert result.stderr == f"Error: typo.yaml: {said}\n"


def test_a_misspelt_key_in_a_plan_gets_the_key_it_resembles(work: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "dlrm_tiny.plan.json"
    plan = json.loads(example.read_text())
    plan.pop("seal")
    plan["parameters"]["gpus_per_hots"] = plan["parameters"].pop("gpus_per_host")
    (work / "typo.json").write_text(json.dumps(plan))
    result = invoke("validate", "typo.json")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: typo.json: parameters.gpus_per_hots: unknown key; did you mean gpus_per_host?\n"
    )


def test_an_unknown_key_is_shown_before_the_problems_it_causes(work: Path) -> None:
    (work / "typo.yaml").write_text("world_size: 2\ntables:\n  - {name: a, rows: 10, widht: 4}\n")
    result = invoke("plan", "typo.yaml")
    assert result.stderr == (
        "Error: typo.yaml: tables[0].widht: unknown key; did you mean width? (and 1 more problem)\n"
    )
    # first even when pydantic lists it last; no key spelt like it is missing
    (work / "extra.yaml").write_text(
        "world_size: 2\ntables:\n  - {name: a, rows: 0, width: 4, colour: red}\n"
    )
    result = invoke("plan", "extra.yaml")
    assert result.stderr == (
        "Error: extra.yaml: tables[0].colour: unknown key; remove it or check its spelling "
        "(and 1 more problem)\n"
    )


def test_bad_strategy_option_is_one_line(work: Path) -> None:
    result = invoke("plan", "small.yaml", "--strategy", "greedy")
    assert_clean_failure(result, "--strategy", "'greedy'")


def test_boolean_size_is_rejected(work: Path) -> None:
    (work / "bad.yaml").write_text("world_size: 2\ntables:\n  - {name: a, rows: yes, width: 4}\n")
    before = files_in(work)
    result = invoke("plan", "bad.yaml", "-o", "plan.json")
    assert_clean_failure(result, "bad.yaml", "tables[0].rows")
    assert files_in(work) == before


# --- bad plan files: one line, exit 2 -----------------------------------------------------


def _plan_with(change) -> str:
    def build(saved: Path) -> str:
        data = json.loads(saved.read_text())
        change(data)
        return json.dumps(data)

    return build


BAD_PLANS = {
    "not JSON": (lambda saved: "world_size: 2\n", ["not valid JSON", "line 1"]),
    "JSON but not a plan": (lambda saved: '{"a": 1}', ["not a plan file", "planner plan"]),
    "wrong format_version": (
        _plan_with(lambda d: d.update(format_version=4)),
        ["format_version 4", "not supported"],
    ),
    "format 1": (
        _plan_with(lambda d: d.update(format_version=1)),
        ["format_version 1", "re-plan the spec with this version"],
    ),
    "unknown key": (_plan_with(lambda d: d.update(extra=1)), ["extra", "unknown key"]),
    "a field of the wrong type": (
        _plan_with(lambda d: d["ranks"][0].update(bytes="many")),
        ["ranks[0].bytes", "'many'"],
    ),
}


@pytest.mark.parametrize("command", ["show", "validate"])
@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_bad_plan_file_is_one_line_exit_2(saved: Path, command: str, case: str) -> None:
    build, fragments = BAD_PLANS[case]
    (saved.parent / "bad.json").write_text(build(saved))
    before = files_in(saved.parent)
    result = invoke(command, "bad.json")
    line = assert_clean_failure(result, "bad.json", *fragments)
    assert line.removeprefix("Error: ").startswith("bad.json: ")
    assert files_in(saved.parent) == before


@pytest.mark.parametrize("command", ["show", "validate"])
def test_missing_plan_file(work: Path, command: str) -> None:
    result = invoke(command, "nowhere.json")
    assert_clean_failure(result, "nowhere.json", "cannot read the plan")


def test_plan_file_holding_a_list_is_explained(work: Path) -> None:
    (work / "bad.json").write_text("[1, 2]")
    result = invoke("show", "bad.json")
    line = assert_clean_failure(result, "bad.json")
    assert ": : " not in line
    assert "dictionary or instance of" not in line


# --- the library path ---------------------------------------------------------------------


def test_library_round_trip(work: Path) -> None:
    spec = load_spec(work / "small.yaml")
    plan = make_plan(spec)
    save_plan(plan, work / "lib.json")
    loaded = load_plan(work / "lib.json")
    assert loaded == plan
    assert plan_text(loaded) == (work / "lib.json").read_text()  # sealed: it passes its checks
    assert plan_problems(loaded) == []
    assert spec_problems(loaded, spec) == []
    assert [r.bytes for r in loaded.ranks] == [3280, 2240]
    assert loaded.fingerprint == spec.fingerprint()
    assert loaded.spec().fingerprint() == spec.fingerprint()
    assert files_in(work) == ["lib.json", "small.yaml"]
    # The CLI writes the very same bytes.
    assert invoke("plan", "small.yaml", "-o", "cli.json").exit_code == 0
    assert (work / "cli.json").read_bytes() == (work / "lib.json").read_bytes()


def test_library_overrides_match_cli_overrides(work: Path) -> None:
    spec = load_spec(work / "small.yaml", {"world_size": 4, "strategy": None})
    assert spec.world_size == 4
    assert spec.strategy == "basic"  # None means "not given", not "unset the file's value"
    save_plan(make_plan(spec), work / "lib.json")
    assert invoke("plan", "small.yaml", "-o", "cli.json", "--world-size", "4").exit_code == 0
    assert (work / "cli.json").read_bytes() == (work / "lib.json").read_bytes()


def test_save_plan_failure_cleans_up(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(load_spec(work / "small.yaml"))

    def refuse(src: str, dst: str) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr("planner.files.os.replace", refuse)
    with pytest.raises(PlanFileError, match=r"lib\.json: cannot write the plan"):
        save_plan(plan, work / "lib.json")
    assert files_in(work) == ["small.yaml"]
