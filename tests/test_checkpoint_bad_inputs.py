"""``planner checkpoint`` on bad inputs and outputs: one line, exit 2, the input intact.

Outputs inside the checkpoint being read, outputs that cannot be written, special
files, and manifests that are damaged or hostile (too deep, a key twice, a device, a
huge file). Every refusal is checked against the files on disk, not only the message.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from checkpoint_data import MIXED, global_arrays, plan_of, write
from click.testing import CliRunner, Result
from shared import snapshot

from planner import save_plan
from planner.checkpoint import CheckpointError, verify
from planner.checkpoint.manifest import MANIFEST, MAX_MANIFEST_BYTES
from planner.cli import main

PROC = Path("/proc/self")  # where nothing new can be made, even as root
needs_proc = pytest.mark.skipif(not PROC.is_dir(), reason="needs /proc")


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, dict]:
    """A checkpoint of MIXED on 2 ranks at ``ckpt`` and a plan for 3 at ``three.json``."""
    plan = plan_of(MIXED, 2)
    arrays = global_arrays(plan)
    write(tmp_path / "ckpt", plan, arrays)
    save_plan(plan_of(MIXED, 3, "memory_optimized"), tmp_path / "three.json")
    return tmp_path, arrays


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["checkpoint", *args])


def refused(result: Result, *phrases: str) -> None:
    """Exit 2 with one ``Error:`` line holding every phrase, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def export(folder: Path, output: str | Path, table: str = "dp") -> Result:
    return run("export", str(folder / "ckpt"), "--table", table, "-o", str(output))


def reshard(folder: Path, output: str | Path) -> Result:
    return run("reshard", str(folder / "ckpt"), "--plan", str(folder / "three.json"),
               "-o", str(output))


# --- outputs inside the checkpoint being read --------------------------------------------


def first_piece(ckpt: Path) -> Path:
    return next((ckpt / "pieces").rglob("*.npy"))


@pytest.mark.parametrize(
    "inside",
    [
        lambda ckpt: ckpt / MANIFEST,
        lambda ckpt: ckpt / "plan.json",
        first_piece,
        lambda ckpt: ckpt / "pieces" / "new.npy",
        lambda ckpt: ckpt.parent / "elsewhere" / ".." / "ckpt" / MANIFEST,
    ],
    ids=["manifest", "plan", "a piece", "a new file", "through .."],
)
def test_export_refuses_an_output_inside_the_checkpoint(work, inside) -> None:
    folder, _ = work
    (folder / "elsewhere").mkdir()
    before = snapshot(folder)
    output = inside(folder / "ckpt")
    refused(export(folder, output), str(output), "inside the checkpoint", "outside it")
    assert snapshot(folder) == before
    assert verify(folder / "ckpt") == []


def test_export_refuses_a_symlink_into_the_checkpoint(work) -> None:
    folder, _ = work
    (folder / "link.npy").symlink_to(folder / "ckpt" / MANIFEST)
    before = snapshot(folder)
    refused(export(folder, folder / "link.npy"), "link.npy", "inside the checkpoint")
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    ("output", "phrase"),
    [
        ("ckpt/sub", "inside the checkpoint"),
        ("ckpt/pieces/new", "inside the checkpoint"),
        ("ckpt", "is the checkpoint being read"),
        (".", "holds the checkpoint"),
    ],
)
def test_reshard_refuses_an_output_inside_or_holding_the_checkpoint(work, output, phrase) -> None:
    folder, _ = work
    before = snapshot(folder)
    refused(reshard(folder, folder / output), phrase, "new checkpoint")
    assert snapshot(folder) == before
    assert verify(folder / "ckpt") == []


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("export", "{loop}", "--table", "dp", "-o", "{folder}/dp.npy"), "does not exist"),
        (("reshard", "{ckpt}", "--plan", "{folder}/three.json", "-o", "{loop}"), "Not a directory"),
    ],
    ids=["export from a loop", "reshard into a loop"],
)
def test_a_symlink_loop_is_one_line(work, args, phrase) -> None:
    folder, _ = work
    (folder / "loop").symlink_to(folder / "pool")
    (folder / "pool").symlink_to(folder / "loop")
    before = snapshot(folder)
    names = {"loop": folder / "loop", "ckpt": folder / "ckpt", "folder": folder}
    refused(run(*(arg.format(**names) for arg in args)), str(folder / "loop"), phrase)
    assert snapshot(folder) == before


# --- outputs that cannot be written ------------------------------------------------------


@pytest.mark.parametrize("command", [export, reshard], ids=["export", "reshard"])
def test_a_missing_output_folder_is_refused_and_not_made(work, command) -> None:
    folder, _ = work
    before = snapshot(folder)
    output = folder / "nodir" / "out"
    refused(command(folder, output), str(output), f"folder {folder / 'nodir'} does not exist")
    assert snapshot(folder) == before


@pytest.mark.parametrize("command", [export, reshard], ids=["export", "reshard"])
def test_an_output_under_a_file_is_refused(work, command) -> None:
    folder, _ = work
    before = snapshot(folder)
    refused(command(folder, folder / "three.json" / "out"), "three.json does not exist")
    assert snapshot(folder) == before


@needs_proc
@pytest.mark.parametrize(
    ("command", "what"),
    [(export, "cannot write the table"), (reshard, "cannot write the checkpoint")],
    ids=["export", "reshard"],
)
def test_an_unwritable_place_is_one_line(work, command, what) -> None:
    folder, _ = work
    before = snapshot(folder)
    output = PROC / "new.npy"
    refused(command(folder, output), str(output), what, "(No such file or directory)")
    assert not output.exists()
    assert snapshot(folder) == before


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG (a full disk, as a test can make one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs file size limits")
@pytest.mark.parametrize(
    ("command", "output", "what"),
    [
        (lambda f, o: export(f, o, table="big"), "big.npy", "cannot write the table"),
        (reshard, "three", "cannot write the checkpoint"),
    ],
    ids=["export", "reshard"],
)
def test_a_write_that_fails_half_way_leaves_nothing(work, command, output, what) -> None:
    folder, _ = work
    (folder / "big.npy").write_bytes(b"the earlier export")
    before = snapshot(folder)
    # big's pieces pass 300 bytes: 60 (or 20) rows x 4 float32 and a 128-byte header
    with file_size_limit(300):
        result = command(folder, folder / output)
    refused(result, str(folder / output), what, "File too large")
    assert snapshot(folder) == before  # no temporary file, no staging directory


# --- special files -----------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_export_streams_into_a_fifo_and_leaves_it_in_place(work) -> None:
    """Like ``planner plan -o PIPE``: written into, not renamed over."""
    folder, arrays = work
    pipe = folder / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    result = export(folder, pipe, table="wide")
    reader.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    written = folder / "wide.npy"
    written.write_bytes(received[0])
    assert np.array_equal(np.load(written), arrays["wide", "weights"])
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt", "pipe", "three.json", "wide.npy"]


# --- damaged and hostile manifests -------------------------------------------------------


def twice(text: str) -> str:
    return text.replace('"world_size": 2', '"world_size": 2, "world_size": 3', 1)


def linked(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def huge(path: Path) -> None:
    with open(path, "wb") as handle:  # sparse: no disk, no time
        handle.truncate(MAX_MANIFEST_BYTES + 1)


MANIFESTS = {
    "nested 200,000 deep": (lambda p: p.write_text("[" * 200_000), "nested too deeply"),
    "a key twice": (lambda p: p.write_text(twice(p.read_text())), "'world_size' given twice"),
    "a link to /dev/zero": (lambda p: linked(p, "/dev/zero"), "NUL byte at byte 0"),
    "over the cap": (huge, "larger than 1,024 MiB, the most a manifest may be"),
    "not UTF-8": (lambda p: p.write_bytes(b'{"format": "\xff"}'), "not UTF-8"),
    "cut short": (lambda p: p.write_text(p.read_text()[:100]), "not valid JSON at line"),
}


@needs_proc
@pytest.mark.parametrize("command", ["verify", "inspect"])
@pytest.mark.parametrize("name", MANIFESTS)
def test_a_bad_manifest_is_one_line(work, command, name) -> None:
    folder, _ = work
    manifest = folder / "ckpt" / MANIFEST
    damage, phrase = MANIFESTS[name]
    damage(manifest)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))
    try:  # a manifest read whole, or a runaway parser, would pass this cap
        result = run(command, str(folder / "ckpt"))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    refused(result, str(manifest), phrase)


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def test_a_manifest_over_the_cap_is_not_written(tmp_path, monkeypatch) -> None:
    """What no reader would take is refused at the end of the write, and nothing stays."""
    monkeypatch.setattr("planner.checkpoint.writing.MAX_MANIFEST_BYTES", 1000)
    plan = plan_of(MIXED, 2)
    refusal = r"manifest\.json: the manifest would be .* MiB, more than the .* a manifest may be"
    with pytest.raises(CheckpointError, match=refusal):
        write(tmp_path / "ckpt", plan, global_arrays(plan))
    assert list(tmp_path.iterdir()) == []
