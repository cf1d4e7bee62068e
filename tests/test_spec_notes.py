"""Settings that change nothing in the plan are named on stderr by ``planner plan``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from planner import make_plan
from planner.cli import main
from planner.reports.preview import render
from planner.spec import spec_from_dict
from planner.spec_notes import unused_in_plan, unused_settings

BASE = {
    "world_size": 4,
    "strategy": "basic",
    "tables": [{"name": "a", "rows": 100, "width": 8}, {"name": "b", "rows": 50, "width": 4}],
}


def notes_of(**changes) -> list[str]:
    return unused_settings(spec_from_dict({**BASE, **changes}))


@pytest.mark.parametrize(
    ("changes", "starts"),
    [
        ({"objective": "time", "device_memory": "1GiB"}, "objective: only strategy auto"),
        ({"column_multiple": 8}, "column_multiple: only strategy auto"),
        ({"host_memory": "1GiB"}, "host_memory: only offloaded pieces"),
        ({"row_reduction": "host", "gpus_per_host": 8}, "row_reduction: host has nothing"),
        ({"row_reduction": "host", "gpus_per_host": 1}, "row_reduction: host has nothing"),
        ({"dp_input": False, "row_slice_threshold": 10}, "row_slice_threshold: no replicas"),
        ({"dp_input": False, "data_parallel_threshold": 10}, "data_parallel_threshold: no"),
        ({"world_size": 1, "strategy": "memory_balanced"}, "strategy: with one rank"),
        ({"world_size": 1, "row_slice_threshold": 10}, "row_slice_threshold: with one rank"),
        ({"world_size": 1, "strategy": "basic", "objective": "memory"}, "objective: with one"),
        ({"row_reduction": "host", "dp_input": False}, "row_reduction: without dp_input"),
        ({"memory_reserve": 0.1}, "memory_reserve: a share of device_memory"),
        ({"alltoall_bandwidth": 5}, "alltoall_bandwidth: only the step estimate"),
        ({"compute_dtype": "float16"}, "compute_dtype: only the step estimate"),
        # on one rank the settings unrelated to placing are noted as on several
        ({"world_size": 1, "memory_reserve": 0.1}, "memory_reserve: a share of device_memory"),
        ({"world_size": 1, "host_memory": "1GiB"}, "host_memory: only offloaded pieces"),
        ({"world_size": 1, "id_bytes": 4}, "id_bytes: only the step estimate"),
        ({"world_size": 1, "row_reduction": "direct"}, "row_reduction: with one rank no table"),
        ({"world_size": 1, "strategy": "basic", "row_reduction": "host"}, "row_reduction: with"),
    ],
)
def test_a_setting_that_changes_nothing_is_named(changes, starts) -> None:
    notes = notes_of(**changes)
    assert len(notes) == 1 and notes[0].startswith(starts), notes


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"strategy": "auto", "objective": "time", "device_memory": "1GiB", "column_multiple": 8},
        {"offload": "auto", "device_memory": "1GiB", "host_memory": "1GiB"},
        {"gpu_embedding_size": 100, "host_memory": "1GiB"},  # implies offload: upstream
        {"row_reduction": "host", "world_size": 4, "gpus_per_host": 2},
        {"row_slice_threshold": 10, "data_parallel_threshold": 10},
        {"world_size": 1},
        {"alltoall_bandwidth": 5, "global_batch_size": 8},  # the plan carries an estimate
        {"strategy": "auto", "alltoall_bandwidth": 5},  # auto estimates without a batch
        {"gpus_per_host": 2},  # whole hosts in capacity advice
        {"memory_reserve": 0.1, "device_memory": "1GiB"},
        {"world_size": 1, "id_bytes": 4, "global_batch_size": 8},
        {"world_size": 1, "row_reduction": "auto"},  # the same as leaving it out
    ],
)
def test_settings_that_count_get_no_note(changes) -> None:
    assert notes_of(**changes) == []


def test_plan_prints_the_notes_on_stderr_and_still_plans(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "world_size: 2\nstrategy: basic\nobjective: memory\n"
        "tables: [{name: a, rows: 10, width: 4}, {name: b, rows: 10, width: 4}]\n"
    )
    out = tmp_path / "p.json"
    done = CliRunner().invoke(main, ["plan", str(spec), "-o", str(out), "--host-memory", "1GiB"])
    assert done.exit_code == 0, done.output
    assert out.exists()
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert [n.split(":")[1].strip() for n in notes] == ["objective", "host_memory"]
    assert "note:" not in done.stdout


def test_host_sums_asked_for_where_nothing_is_row_sliced_get_a_note_from_the_plan() -> None:
    # 4 ranks as 2 hosts of 2: host sums can run, but only a row_slice_threshold below a
    # table's size row-slices it; without one the plan has nothing to add up
    asked = {**BASE, "row_reduction": "host", "gpus_per_host": 2, "global_batch_size": 8}
    idle = make_plan(spec_from_dict(asked))
    assert unused_settings(spec_from_dict(asked)) == []
    assert [n.split(":")[0] for n in unused_in_plan(idle)] == ["row_reduction"]
    assert "sums added up within hosts" not in render(idle, "table", None, "all")
    assert "row-slice sums within hosts" not in render(idle, "table", None, "all")
    working = make_plan(spec_from_dict({**asked, "row_slice_threshold": 100}))
    assert working.groups.row_sliced == ["a", "b"]
    assert unused_in_plan(working) == []
    preview = render(working, "table", None, "all")
    assert "; row-sliced sums added up within hosts" in preview
    assert "row-slice sums within hosts at 200 GB/s; every other byte as if it crossed" in preview
    assert unused_in_plan(make_plan(spec_from_dict({**asked, "row_reduction": None}))) == []


def test_plan_prints_the_note_from_the_plan(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "world_size: 4\ngpus_per_host: 2\nrow_reduction: host\n"
        "tables: [{name: a, rows: 10, width: 4}, {name: b, rows: 10, width: 4}]\n"
    )
    done = CliRunner().invoke(main, ["plan", str(spec), "-o", str(tmp_path / "p.json")])
    assert done.exit_code == 0, done.output
    assert done.stderr.startswith("note: row_reduction: no table is row-sliced in this plan")
