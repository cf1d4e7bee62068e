"""verify, reshard and export, as library calls and as ``planner checkpoint`` commands.

Expectations come from the global arrays a checkpoint was written from, never from
reading the checkpoint back through the code under test alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from checkpoint_data import ADAM, MIXED, global_arrays, plan_of, table, write
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import make_plan, save_plan, spec_from_dict
from planner.checkpoint import Checkpoint, CheckpointError, export_table, reshard, verify
from planner.checkpoint.manifest import MANIFEST
from planner.cli import main


@pytest.fixture
def saved(tmp_path):
    """MIXED on 2 ranks (basic) with Adam state; returns (path, plan, arrays)."""
    plan = plan_of(MIXED, 2)
    arrays = global_arrays(plan)
    write(tmp_path / "ckpt", plan, arrays)
    return tmp_path / "ckpt", plan, arrays


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_a_fresh_checkpoint_verifies(saved):
    path, plan, _ = saved
    assert verify(path) == []
    manifest = Checkpoint.open(path).manifest
    # 7 tables; dp 1 piece, big 2 row slices, wide 2 column slices, the rest 1 each
    weights = [p for p in manifest.pieces if p.slot == "weights"]
    assert len(weights) == 1 + 2 + 2 + 4
    assert len(manifest.pieces) == 3 * len(weights)  # weights, m, v
    assert manifest.optimizer == ADAM
    assert manifest.world_size == 2 and manifest.fingerprint == plan.fingerprint


def piece(path: Path, table: str, slot: str = "weights") -> Path:
    manifest = Checkpoint.open(path).manifest
    return path / next(p.file for p in manifest.pieces if p.table == table and p.slot == slot)


def test_verify_finds_a_missing_file(saved):
    path = saved[0]
    lost = piece(path, "big", "m")
    lost.unlink()
    assert verify(path) == [f"{lost}: missing"]


def test_verify_finds_a_truncated_file(saved):
    path = saved[0]
    short = piece(path, "wide")
    size = short.stat().st_size
    short.write_bytes(short.read_bytes()[:-4])
    assert verify(path) == [f"{short}: truncated: {size - 4} bytes, the manifest says {size}"]


def test_verify_finds_a_flipped_bit(saved):
    path = saved[0]
    bad = piece(path, "f2", "v")
    raw = bytearray(bad.read_bytes())
    raw[-3] ^= 0x10
    bad.write_bytes(raw)
    (problem,) = verify(path)
    assert problem.startswith(f"{bad}: corrupted: checksum of bytes 0:")


def test_verify_finds_a_duplicated_and_a_missing_piece(saved):
    path = saved[0]

    def duplicate(manifest):
        first = next(p for p in manifest["pieces"] if p["table"] == "big" and p["slot"] == "m")
        manifest["pieces"].append({**first, "file": first["file"] + ".copy"})

    edit_manifest(path, duplicate)
    problems = verify(path)
    assert any("table 'big' m:" in p and "(a duplicated piece)" in p for p in problems)
    assert any(p.endswith(".copy: missing") for p in problems)

    def drop(manifest):
        manifest["pieces"] = [
            p for p in manifest["pieces"]
            if not (p["table"] == "big" and p["slot"] == "m" and p["rows"][0] == 30)
        ]

    write(path.with_name("again"), saved[1], saved[2])
    edit_manifest(path.with_name("again"), drop)
    problems = verify(path.with_name("again"))
    assert "table 'big' m: 120 of 240 elements are in no piece (missing)" in problems
    assert any("not listed in the manifest" in p for p in problems)  # the dropped file


def test_verify_finds_a_header_that_lies(saved):
    path = saved[0]
    target, other = piece(path, "f1"), piece(path, "f3")  # 10 x 4 and 9 x 4
    target.write_bytes(other.read_bytes())
    relative = target.relative_to(path).as_posix()

    def record_the_new_bytes(manifest):  # as if the manifest had been written for them
        entry = next(p for p in manifest["pieces"] if p["file"] == relative)
        entry["bytes"], entry["crc32"] = other.stat().st_size, [zlib.crc32(other.read_bytes())]

    edit_manifest(path, record_the_new_bytes)
    assert verify(path) == [f"{target}: holds float32 (9, 4), the manifest says float32 (10, 4)"]


def test_verify_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"manifest\.json: missing: not a complete"):
        verify(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a checkpoint manifest"):
        verify(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        verify(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        verify(tmp_path / "nothing")


# --- reshard and export ---------------------------------------------------------------


def read_back(path: Path, plan, slots) -> dict:
    checkpoint = Checkpoint.open(path)
    return {(t.name, s): checkpoint.view(t.name, s)[:, :] for t in plan.tables for s in slots}


@pytest.mark.parametrize(
    ("world", "strategy"),
    [(3, "memory_optimized"), (1, "basic"), (4, "auto"), (5, "memory_balanced")],
)
def test_reshard_keeps_every_element(saved, tmp_path, world, strategy):
    path, _, arrays = saved
    new = plan_of(MIXED, world, strategy)
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    manifest = reshard(path, new, out, chunk_bytes=64)  # tiny chunks: many reads per piece
    assert verify(out) == []
    assert manifest.world_size == world and manifest.optimizer == ADAM
    got = read_back(out, new, ("weights", "m", "v"))
    for key, array in arrays.items():
        assert np.array_equal(got[key], array), key
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before  # input intact


def test_a_plan_for_other_tables_is_refused_in_one_short_line(saved, tmp_path):
    # 60 tables none of which the checkpoint holds: a few names and a count, not all 60
    others = {**MIXED, "tables": [table(f"other_table_{k:02d}", 8, 8) for k in range(60)]}
    with pytest.raises(CheckpointError) as err:
        reshard(saved[0], plan_of(others, 2), tmp_path / "out")
    line = str(err.value)
    assert "tables not in the checkpoint: 60 tables: other_table_00, other_table_01, " in line
    assert "... and 5" in line and "other_table_59" not in line and len(line) < 400, line


def test_reshard_refuses_other_tables_and_existing_output(saved, tmp_path):
    path = saved[0]
    other = {**MIXED, "tables": [*MIXED["tables"][:-1], table("half", 8, 8)]}  # float32 now
    with pytest.raises(CheckpointError, match="table 'half' is float32 in the plan but float16"):
        reshard(path, plan_of(other, 2), tmp_path / "out")
    grown = {**MIXED, "tables": [*MIXED["tables"][:-1], table("half", 9, 8, dtype="float16")]}
    with pytest.raises(CheckpointError, match="'half' is 9 x 8 in the plan but 8 x 8"):
        reshard(path, plan_of(grown, 2), tmp_path / "out")
    renamed = {**MIXED, "tables": [*MIXED["tables"][:-1], table("halves", 8, 8, dtype="float16")]}
    missing = r"tables not in the checkpoint: halves \(and 1 more"
    with pytest.raises(CheckpointError, match=missing) as err:
        reshard(path, plan_of(renamed, 2), tmp_path / "out")
    # the other problem (the checkpoint's 'half' not in the plan) is the plan's, not the
    # checkpoint's: the line points at the checkpoint's tables, not at verify
    assert str(err.value).endswith(
        f"(and 1 more; planner checkpoint inspect {path} lists its tables)"
    )
    (tmp_path / "taken").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        reshard(path, plan_of(MIXED, 3), tmp_path / "taken")
    assert not (tmp_path / "out").exists()


def test_reshard_stops_on_a_corrupted_input_and_writes_nothing(saved, tmp_path):
    path = saved[0]
    bad = piece(path, "big", "v")
    raw = bytearray(bad.read_bytes())
    raw[-1] ^= 1
    bad.write_bytes(raw)
    with pytest.raises(CheckpointError, match=f"{bad}: corrupted"):
        reshard(path, plan_of(MIXED, 3), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_export_writes_the_global_table(saved, tmp_path):
    path, _, arrays = saved
    for name, slot in (("big", "weights"), ("wide", "v"), ("half", "m")):
        shape, dtype = export_table(path, name, tmp_path / "t.npy", slot=slot, chunk_bytes=100)
        got = np.load(tmp_path / "t.npy")
        assert got.dtype == arrays[name, slot].dtype == dtype
        assert np.array_equal(got, arrays[name, slot]) and shape == got.shape
    with pytest.raises(CheckpointError, match="no table 'nope'"):
        export_table(path, "nope", tmp_path / "t.npy")
    with pytest.raises(CheckpointError, match="no slot 'accumulator'"):
        export_table(path, "big", tmp_path / "t.npy", slot="accumulator")


def test_export_widens_bfloat16_exactly(tmp_path):
    plan = plan_of({"tables": [table("b", 5, 3, dtype="bfloat16")]}, 1)
    bits = np.array([[0x3F80, 0xC000, 0x0000], [0x7F80, 0x3E80, 0x4049]] * 2 + [[1, 2, 3]],
                    np.uint16)
    write(tmp_path / "ckpt", plan, {("b", "weights"): bits}, optimizer=None)
    export_table(tmp_path / "ckpt", "b", tmp_path / "b.npy")
    got = np.load(tmp_path / "b.npy")
    assert got.dtype == np.float32
    assert got[0].tolist() == [1.0, -2.0, 0.0] and got[1, 0] == np.inf and got[1, 1] == 0.25
    assert np.array_equal(got.view(np.uint32) >> 16, bits)


# --- property: any plan to any plan ----------------------------------------------------


@st.composite
def two_plans(draw):
    count = draw(st.integers(1, 5))
    tables = [
        table(f"t{k}", draw(st.integers(1, 40)), draw(st.sampled_from([1, 2, 3, 4, 8, 13])),
              draw(st.sampled_from([None, "sum"])),
              dtype=draw(st.sampled_from(["float32", "float16", "bfloat16"])))
        for k in range(count)
    ]
    sizes = [t["rows"] * t["width"] for t in tables]

    def spec():
        threshold = st.one_of(st.none(), st.sampled_from(sizes), st.integers(0, 2 * max(sizes)))
        return {
            "world_size": draw(st.integers(1, 5)),
            "strategy": draw(st.sampled_from(["basic", "memory_balanced", "memory_optimized",
                                              "auto"])),
            "column_slice_threshold": draw(threshold),
            "row_slice_threshold": draw(threshold),
            "data_parallel_threshold": draw(threshold),
            "tables": tables,
        }

    return make_plan(spec_from_dict(spec())), make_plan(spec_from_dict(spec()))


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(two_plans(), st.integers(1, 300))
def test_reshard_between_any_two_plans_preserves_every_element(plans, chunk_bytes):
    old, new = plans
    arrays = global_arrays(old, slots=("weights", "accumulator"), seed=chunk_bytes)
    optimizer = ADAM.model_copy(update={"name": "Adagrad", "slots": ["accumulator"]})
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder) / "a", old, arrays, optimizer, chunk_bytes=chunk_bytes)
        reshard(Path(folder) / "a", new, Path(folder) / "b", chunk_bytes=chunk_bytes)
        assert verify(Path(folder) / "b") == []
        got = read_back(Path(folder) / "b", new, ("weights", "accumulator"))
        for key, array in arrays.items():
            assert np.array_equal(got[key], array), key


# --- the commands ----------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_verify(saved):
    path = saved[0]
    ok = run("checkpoint", "verify", str(path))
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout.startswith(f"{path}: ok (7 tables, 27 pieces, ")
    piece(path, "dp", "v").unlink()
    bad = run("checkpoint", "verify", str(path))
    assert bad.exit_code == 1
    assert bad.stderr == f"{piece(path, 'dp', 'v')}: missing\n"
    (path / MANIFEST).unlink()
    gone = run("checkpoint", "verify", str(path))
    assert gone.exit_code == 2
    assert gone.stderr.startswith(f"Error: {path / MANIFEST}: missing: not a complete checkpoint")
    assert gone.stderr.count("\n") == 1


def test_cli_inspect(saved):
    path, plan, _ = saved
    text = run("checkpoint", "inspect", str(path))
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1] == f"plan: 2 ranks, spec fingerprint {plan.fingerprint.split(':')[1][:12]}"
    assert lines[2] == "optimizer state: Adam (slots m, v), 7 steps"
    assert any(line.split()[:4] == ["big", "row_sliced", "60", "x"] for line in lines)
    summary = json.loads(run("checkpoint", "inspect", str(path), "--format", "json").stdout)
    tables = {t["name"]: t for t in summary["tables"]}
    # big: 60 x 4 float32 in 2 pieces of 30 rows, each a 128-byte .npy header and 480 bytes
    assert tables["big"]["pieces"] == 2
    assert tables["big"]["weight_bytes"] == 2 * (128 + 480)
    assert tables["big"]["slot_bytes"] == 2 * 2 * (128 + 480)
    assert [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert sum(r["bytes"] for r in summary["ranks"]) + summary["other_bytes"] == (
        summary["total_bytes"]
    )


def test_cli_reshard_and_export(saved, tmp_path):
    path, _, arrays = saved
    new_plan = tmp_path / "new.plan.json"
    save_plan(plan_of(MIXED, 3, "memory_optimized"), new_plan)
    out = tmp_path / "three"
    done = run("checkpoint", "reshard", str(path), "--plan", str(new_plan), "-o", str(out))
    assert done.exit_code == 0, done.stderr
    # dp 1, big 3 row slices, wide 2 column slices, f1 f2 f3 half 1 each: 10, x 3 slots
    assert done.stdout == f"wrote {out}: 30 pieces for 3 ranks (memory_optimized)\n"
    again = run("checkpoint", "reshard", str(path), "--plan", str(new_plan), "-o", str(out))
    assert again.exit_code == 2 and "already exists" in again.stderr
    missing = run("checkpoint", "reshard", str(path), "--plan", str(tmp_path / "no.json"),
                  "-o", str(tmp_path / "x"))
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: ")
    exported = run("checkpoint", "export", str(out), "--table", "wide", "--slot", "m",
                   "-o", str(tmp_path / "wide.npy"))
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout == f"wrote {tmp_path / 'wide.npy'}: wide m, 12 x 16 float32\n"
    assert np.array_equal(np.load(tmp_path / "wide.npy"), arrays["wide", "m"])
    nowhere = run("checkpoint", "export", str(out), "--table", "wide",
                  "-o", str(tmp_path / "no" / "wide.npy"))
    assert nowhere.exit_code == 2 and "does not exist; create it first" in nowhere.stderr
    assert not os.path.exists(tmp_path / "no")
