"""Plan format 3: compact ranks, the seal, and format 2 plans still read.

The ranks are written as each weight's tables and first columns and each input's name;
everything else is worked out on reading and must come out as the planner made it. A
file the planner wrote carries a seal, and ``load_plan`` trusts it only while the rest
of the file is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from planner import (
    PlanFileError,
    consistency,
    load_plan,
    load_spec,
    make_plan,
    plan_from_dict,
    save_plan,
    spec_from_dict,
)
from planner.plan import RowSplit, read_plan
from planner.saving import plan_text
from planner.seal import seal_holds

ROOT = Path(__file__).resolve().parent.parent
FORMAT_2 = ROOT / "tests" / "data" / "dlrm_tiny.format2.plan.json"

# b and d fused on rank 0 (width 8: d's first half), c cut over ranks 1 and 2, d's second
# half on rank 3; a row-sliced over the 4 ranks
SPEC = {
    "world_size": 4,
    "row_slice_threshold": 3000,
    "tables": [
        {"name": "a", "rows": 1000, "width": 4},
        {"name": "b", "rows": 10, "width": 8},
        {"name": "c", "rows": 100, "width": 8, "combiner": "sum"},
        {"name": "d", "rows": 50, "width": 16},
    ],
}


@pytest.fixture
def plan():
    return make_plan(spec_from_dict(SPEC))


def test_ranks_are_written_compact_and_read_back_in_full(plan, tmp_path: Path) -> None:
    data = json.loads(plan.to_json())
    assert data["format_version"] == 3
    rank0 = data["ranks"][0]
    assert rank0["table_parallel_weights"] == [
        {"width": 8, "tables": ["b", "d"], "first_cols": [0, 0]}
    ]
    assert rank0["table_parallel_inputs"] == ["b", "d"]
    save_plan(plan, tmp_path / "plan.json")
    loaded = read_plan(tmp_path / "plan.json")
    assert loaded == plan
    (weight,) = loaded.ranks[0].table_parallel_weights
    # worked out from the tables: b's 10 rows, then d's 50, d's columns 0..8
    assert (weight.rows, weight.combiner, weight.dtype) == (60, None, "float32")
    assert [(m.table, m.row_offset, m.rows, m.cols) for m in weight.members] == [
        ("b", 0, 10, (0, 8)),
        ("d", 10, 50, (0, 8)),
    ]
    assert [(i.input, i.weight, i.row_offset) for i in loaded.ranks[0].table_parallel_inputs] == [
        ("b", 0, 0),
        ("d", 0, 10),
    ]


def test_a_format_2_plan_still_loads_as_the_planner_makes_it() -> None:
    assert json.loads(FORMAT_2.read_text())["format_version"] == 2
    assert load_plan(FORMAT_2) == make_plan(load_spec(ROOT / "examples" / "dlrm_tiny.yaml"))


def test_saved_plans_are_sealed_and_not_checked_again(plan, tmp_path, monkeypatch) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    text = path.read_text()
    assert text.splitlines()[2].startswith('  "seal": "sha256:')
    assert seal_holds(text)
    assert seal_holds(text.replace("\n", "\n ", 1)) is False  # any change breaks it

    def no_checks(_plan):
        raise AssertionError("a sealed plan was checked again")

    monkeypatch.setattr(consistency, "plan_problems", no_checks)
    assert load_plan(path) == plan


def test_an_edit_that_keeps_the_seal_line_is_checked(plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    text = path.read_text()
    edited = text.replace('"elements": ', '"elements": 1', 1)  # rank 0 claims more
    assert edited != text and edited.splitlines()[2] == text.splitlines()[2]
    path.write_text(edited)
    with pytest.raises(PlanFileError, match=r"ranks\[0\]: elements or bytes do not match"):
        load_plan(path)


def test_a_plan_that_fails_its_checks_is_written_without_a_seal(plan) -> None:
    rank = plan.ranks[0].model_copy(update={"bytes": plan.ranks[0].bytes + 1})
    broken = plan.model_copy(update={"ranks": [rank, *plan.ranks[1:]]})
    assert '"seal"' not in plan_text(broken)
    assert '"seal"' in plan_text(plan)


def test_weights_naming_fewer_columns_than_tables_are_refused(plan, tmp_path: Path) -> None:
    data = json.loads(plan.to_json())
    data["ranks"][0]["table_parallel_weights"][0]["first_cols"] = [0]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=r"first_cols gives 1 columns for 2 tables"):
        load_plan(path)


@pytest.mark.parametrize(
    ("rows", "ranks", "remainder_start", "world"),
    [
        (10, (0, 4), 0, 4),
        (10, (0, 4), 3, 4),
        (7, (2, 5), 1, 8),
        (3, (1, 7), 5, 9),
        (0, (0, 3), 0, 3),
    ],
)
def test_a_rank_works_out_its_rows_alone_as_the_whole_split_does(
    rows: int, ranks: tuple[int, int], remainder_start: int, world: int
) -> None:
    split = RowSplit(table="t", ranks=ranks, remainder_start=remainder_start)
    starts, ends = split.bounds(rows, world)
    assert [split.rank_rows(rows, r) for r in range(world)] == list(
        zip(starts.tolist(), ends.tolist(), strict=True)
    )
    assert int(np.sum(ends - starts)) == rows


def test_one_plan_has_one_digest_built_saved_or_read(plan, tmp_path: Path) -> None:
    """What the ranks of a training job compare: the sha256 of the plan as written, the
    same whether a rank built the plan, read its sealed file (the seal, no rank worked
    out) or got it as a dict; another plan of the same tables has another."""
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    text = path.read_text()
    seal = json.loads(text)["seal"]
    unsealed = "".join(line for line in text.splitlines(keepends=True) if '"seal"' not in line)
    assert plan.digest == seal == "sha256:" + hashlib.sha256(unsealed.encode()).hexdigest()
    loaded = load_plan(path)
    assert loaded.digest == seal and loaded.ranks._built == [None] * 4  # from the seal
    assert loaded == plan  # the digest known is no part of the plan's value
    assert plan_from_dict(json.loads(text)).digest == seal
    other = make_plan(spec_from_dict({**SPEC, "strategy": "memory_optimized"}))
    assert other.digest != plan.digest
