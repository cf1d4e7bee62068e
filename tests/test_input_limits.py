"""Inputs small on disk that would take gigabytes to plan or to refuse are refused
early, in one line, within a second or two: the limits on lists, shards and paths."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from shared import SMALL

from planner import make_plan, parsing, planning, spec_from_dict
from planner.cli import main
from planner.errors import SpecError
from planner.files import MAX_LIST_ITEMS, MAX_SHARDS
from planner.placement import upstream


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


def wide_tables_spec(path: Path, world_size: int, **settings: object) -> Path:
    """400 one-row tables 16,384 wide, sliced as far as they go: 400 x 16,384 slices."""
    tables = [{"name": f"t{k}", "rows": 1, "width": 16384} for k in range(400)]
    path.write_text(
        yaml.safe_dump(
            {"world_size": world_size, "strategy": "basic", "column_slice_threshold": 0,
             "tables": tables, **settings}
        )
    )
    return path


def test_a_spec_that_asks_for_millions_of_slices_is_refused_before_planning(tmp_path) -> None:
    spec = wide_tables_spec(tmp_path / "wide.yaml", 16384)
    started = time.perf_counter()
    code, out, err = run("plan", spec, "-o", tmp_path / "p.json")
    assert time.perf_counter() - started < 10  # planning it took 8 minutes and 19 GB
    assert code == 2 and out == ""
    assert err == (
        f"Error: {spec}: column_slice_threshold 0 cuts 400 tables into 6,553,600 column "
        f"slices on 16,384 ranks, more than the {MAX_SHARDS:,} a plan may hold; raise "
        "column_slice_threshold to 16 or more\n"  # 1,024 slices of 16 elements per table
    )
    # given as an option, the option is blamed, not the file
    code, _, err = run("plan", spec, "-o", tmp_path / "p.json", "--column-slice-threshold", "8")
    assert code == 2 and err.startswith("Error: --column-slice-threshold: column_slice_thresh")
    assert not (tmp_path / "p.json").exists()



def test_compare_shows_a_world_size_with_too_many_slices_as_a_row_without_a_plan(
    tmp_path,
) -> None:
    # at 8 ranks each table is cut into 8 slices (3,200 in all); at 16,384 into 16,384
    spec = wide_tables_spec(tmp_path / "wide.yaml", 8)
    args = ["compare", spec, "--world-size", "8,16384", "--strategy", "basic,memory_balanced"]
    code, out, err = run(*args, "--device-memory", "80GiB")
    assert code == 0 and err == ""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()[2:6]]
    assert [row[:2] + row[-2:] for row in rows] == [
        ["8", "basic", "3200", "yes"],
        ["8", "memory_balanced", "3200", "yes"],
        ["16384", "basic", "-", "no plan"],
        ["16384", "memory_balanced", "-", "no plan"],
    ]
    reason = (
        "column_slice_threshold 0 cuts 400 tables into 6,553,600 column slices on 16,384 "
        f"ranks, more than the {MAX_SHARDS:,} a plan may hold; raise column_slice_threshold "
        "to 16 or more"
    )  # said once for both strategies
    assert out.splitlines()[6:] == [
        "", f"no plan at world size 16384 (basic, memory_balanced): {reason}"
    ]
    code, out, _ = run(*args[:4], "--strategy", "basic", "--format", "json")
    assert code == 0
    assert json.loads(out)[1] == {"world_size": 16384, "strategy": "basic", "no_plan": reason}
    code, out, _ = run(*args[:4], "--strategy", "basic", "--format", "markdown")
    assert out.splitlines()[-1] == f"- no plan at world size 16384 (basic): {reason}"
    assert out.splitlines()[3] == "| 16384 | basic | - | - | - | - |"


def test_capacity_advice_counts_a_size_with_too_many_slices_as_not_fitting(tmp_path) -> None:
    # 25.6 MB of tables on 16 KiB GPUs: 1,600 ranks at least; at every size tried the
    # 400 tables are cut into more than 500,000 slices, which is the reason given
    spec = wide_tables_spec(tmp_path / "wide.yaml", 8, device_memory="16KiB")
    code, _, err = run("plan", spec, "-o", tmp_path / "p.json")
    assert code == 3
    assert err.rstrip().endswith(
        "even 4,096 ranks do not fit (at 4,096, column_slice_threshold 0 cuts 400 tables "
        "into 1,638,400 column slices on 4,096 ranks, more than the 500,000 a plan may "
        "hold); raise column_slice_threshold to 16 or more"
    )


def test_as_many_slices_as_a_plan_may_hold_still_plan(monkeypatch) -> None:
    # 4 tables 8 wide sliced as far as they go on 8 ranks: 32 slices, planned as upstream
    # does up to the limit (lowered here to 32; at 500,000 planning takes seconds)
    spec = spec_from_dict(
        {"world_size": 8, "strategy": "basic", "column_slice_threshold": 0,
         "tables": [{"name": f"t{k}", "rows": 2, "width": 8} for k in range(4)]}
    )
    monkeypatch.setattr(upstream, "MAX_SHARDS", 32)
    assert len(make_plan(spec).shards) == 32
    monkeypatch.setattr(upstream, "MAX_SHARDS", 31)
    # 16 elements a table: threshold 3 still cuts each into 8 (3 x 4 < 16), 4 into 4
    with pytest.raises(SpecError, match="cuts 4 tables into 32 column slices on 8 ranks") as e:
        make_plan(spec)
    assert str(e.value).endswith("raise column_slice_threshold to 4 or more")
    assert len(make_plan(spec.model_copy(update={"column_slice_threshold": 4})).shards) == 16


def test_a_spec_built_in_python_gets_the_list_limit_too(monkeypatch) -> None:
    # the YAML reader bounds lists; make_plan bounds a spec made from a dict the same way,
    # so no plan is written that load_plan would refuse
    monkeypatch.setattr(planning, "MAX_LIST_ITEMS", 3)
    with pytest.raises(SpecError, match=r"^tables: 4 entries, more than the 3 a plan holds$"):
        make_plan(spec_from_dict(SMALL))


def test_a_yaml_list_longer_than_a_spec_holds_is_refused(tmp_path) -> None:
    spec = tmp_path / "long.yaml"
    spec.write_text("world_size: 2\ntables: [" + ", ".join(["1"] * (MAX_LIST_ITEMS + 1)) + "]\n")
    code, _, err = run("plan", spec)
    assert code == 2
    assert err == (
        f"Error: {spec}: line 2: a list of 200,001 entries; a spec holds at most 200,000 "
        "tables and 200,000 inputs\n"
    )


def test_too_many_values_without_aliases_says_so_without_blaming_aliases(tmp_path, monkeypatch):
    monkeypatch.setattr(parsing, "MAX_YAML_VALUES", 50)
    spec = tmp_path / "many.yaml"
    spec.write_text(
        "world_size: 2\ntables:\n"
        + "".join(f"  - {{name: t{k}, rows: 1, width: 1}}\n" for k in range(20))
    )
    code, _, err = run("plan", spec)
    assert code == 2 and err.rstrip().endswith("more than 50 values, the most a spec may hold")
    spec.write_text("world_size: 2\nbase: &b {rows: 1, width: 1}\ntables:\n"
                    + "".join(f"  - {{name: t{k}, <<: *b}}\n" for k in range(20)))
    code, _, err = run("plan", spec)
    assert code == 2 and "once aliases are expanded; use fewer aliases" in err


@pytest.mark.parametrize(
    ("key", "count", "limit"),
    [("shards", MAX_SHARDS + 1, MAX_SHARDS), ("tables", MAX_LIST_ITEMS + 1, MAX_LIST_ITEMS),
     ("ranks", 16385, 16384)],
)
def test_a_plan_with_more_entries_than_any_plan_holds_is_refused_first(
    tmp_path, key, count, limit
) -> None:
    # each entry wrong: checked one by one they took 8 GB to report (5,000,000 shards)
    plan = json.loads(make_plan(spec_from_dict(SMALL)).to_json())
    plan[key] = [1] * count
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan))
    for command in ("show", "validate"):
        code, _, err = run(command, path)
        assert code == 2
        assert err == (
            f"Error: {path}: {key}: {count:,} entries, more than the {limit:,} a plan holds; "
            "re-plan the spec (planner plan SPEC)\n"
        )


@pytest.mark.parametrize(
    "args",
    [("plan", ""), ("validate", ""), ("show", ""), ("diff", "a.json", ""), ("compare", ""),
     ("plan", "s.yaml", "-o", ""), ("plan", "s.yaml", "--html", ""),
     ("validate", "a.json", "--spec", "")],
)
def test_an_empty_path_is_named_as_empty(args) -> None:
    code, _, err = run(*args)
    assert code == 2 and err.rstrip().endswith("an empty file name; name the file"), err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("verify", ""), "Invalid value for 'CKPT': an empty path; name it"),
        (("inspect", ""), "Invalid value for 'CKPT': an empty path; name it"),
        (("export", "ck", "--table", "t", "-o", ""), "an empty path; name it"),
        (("export", "ck", "--table", "t", "-o", "-"), "-o -: these commands write files"),
        (("reshard", "ck", "--plan", "p.json", "-o", "-"), "-o -: these commands write files"),
    ],
)
def test_checkpoint_paths_that_name_nothing_are_refused(tmp_path, monkeypatch, args, said):
    monkeypatch.chdir(tmp_path)
    code, _, err = run("checkpoint", *args)
    assert code == 2 and said in err, err
    assert list(tmp_path.iterdir()) == []  # no file called "-"
