"""planner validate catches hand edits that look plausible: each mutation here once passed.

Every case starts from a sound plan, changes it the way a hand edit would, fixes up
the totals the edit would otherwise give away, and expects a named problem.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from shared import RICH

from planner import make_plan, plan_problems, spec_from_dict
from planner.cli import main
from planner.costs.memory import rank_footprints
from planner.costs.summary import summarize
from planner.plan import parse_plan

# RICH (tests/shared.py): a (1000 x 4) is row-sliced over 2 ranks (4000 >= 3000
# elements); b (10 x 4) is table-parallel on rank 0; c (2 x 4) is data-parallel; d is read
# by two inputs.
SPEC = RICH


@pytest.fixture
def plan_dict() -> dict:
    plan = make_plan(spec_from_dict(SPEC))
    assert plan_problems(plan) == []
    assert plan.groups.row_sliced == ["a"] and plan.groups.data_parallel == ["c"]
    return json.loads(plan.to_json())


def problems_after(data: dict) -> list[str]:
    """Problems of the edited plan, its per-rank totals and stats recounted first."""
    plan = parse_plan(data)
    ranks = [
        rank.model_copy(update={"elements": e, "bytes": b, "optimizer_bytes": o})
        for rank, (e, b, o) in zip(plan.ranks, rank_footprints(plan), strict=True)
    ]
    plan = plan.model_copy(update={"ranks": ranks, "stats": summarize(ranks, plan.tables)})
    return plan_problems(plan)


def test_row_sliced_table_also_cut_by_columns(plan_dict: dict) -> None:
    # a is row-sliced (its rows follow from row_splits); shards claiming its columns too
    plan_dict["shards"] += [
        {"table": "a", "rank": 0, "rows": [0, 1000], "cols": [0, 2]},
        {"table": "a", "rank": 1, "rows": [0, 1000], "cols": [2, 4]},
    ]
    problems = problems_after(plan_dict)
    assert "shards: 'a' must be cut into whole-column row ranges, in rank order" in problems


def test_row_split_over_ranks_that_do_not_exist(plan_dict: dict) -> None:
    assert plan_dict["row_splits"] == [{"table": "a", "ranks": [0, 2], "remainder_start": 0}]
    plan_dict["row_splits"][0]["ranks"] = [0, 3]
    assert "row_splits: 'a' names ranks 0..2, outside 0..1" in problems_after(plan_dict)


def test_row_sliced_table_without_a_split(plan_dict: dict) -> None:
    plan_dict["row_splits"] = []
    problems = problems_after(plan_dict)
    assert "row_splits: must hold one split per row-sliced table, and no other" in problems


def test_input_listed_twice_and_another_missing(plan_dict: dict) -> None:
    groups = plan_dict["input_groups"]["table_parallel"]
    assert groups == ["b", "d1", "d2"]
    plan_dict["input_groups"]["table_parallel"] = ["b", "d1", "d1"]
    assert "input_groups: every input must be in exactly one group" in problems_after(plan_dict)


def test_data_parallel_group_with_model_parallel_input(plan_dict: dict) -> None:
    plan_dict["parameters"]["dp_input"] = False
    assert (
        "groups: with one rank or dp_input false every table must be table-parallel"
        in problems_after(plan_dict)
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["parameters"].update(global_batch_size=16),
        lambda d: d["parameters"].update(alltoall_bandwidth=50.0),
        lambda d: d["inputs"][4].update(hotness=4),
        lambda d: [rank.update(comm=None) for rank in d["ranks"]],
    ],
    ids=["batch", "bandwidth", "hotness", "estimate dropped"],
)
def test_traffic_estimate_must_follow_the_plan(plan_dict: dict, edit) -> None:
    edit(plan_dict)
    problems = problems_after(plan_dict)
    assert any(p.startswith("ranks: the traffic estimates do not follow") for p in problems)


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory_reserve", 5.0), ("id_bytes", 3), ("device_memory", -5), ("allreduce_bandwidth", 0)],
)
def test_impossible_parameters_are_refused_on_load(
    plan_dict: dict, tmp_path, field: str, value
) -> None:
    plan_dict["parameters"][field] = value
    (tmp_path / "plan.json").write_text(json.dumps(plan_dict))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "plan.json")])
    assert result.exit_code == 2
    assert f"parameters.{field}" in result.output


def test_infinite_bandwidth_is_refused_before_a_plan_is_written(tmp_path) -> None:
    spec = tmp_path / "inf.yaml"
    spec.write_text(
        "world_size: 2\nalltoall_bandwidth: .inf\ntables:\n  - {name: a, rows: 3, width: 4}\n"
    )
    result = CliRunner().invoke(main, ["plan", str(spec), "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "alltoall_bandwidth: Input should be a finite number (got inf)" in result.output
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(("command", "name"), [("plan", "bin.yaml"), ("show", "bin.json")])
def test_binary_file_is_a_one_line_error(tmp_path, command: str, name: str) -> None:
    (tmp_path / name).write_bytes(b"\xff\xfe\x00not text")
    result = CliRunner().invoke(main, [command, str(tmp_path / name)])
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1
    assert "not UTF-8 text" in result.output
