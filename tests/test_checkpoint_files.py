"""Piece files and checkpoint directories: checksums, range reads, atomic publishing."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from checkpoint_data import MIXED, global_arrays, plan_of, write
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.checkpoint import CheckpointError, latest_checkpoint, space
from planner.checkpoint.directory import (
    check_target,
    complete_steps,
    keep_last,
    publish,
    resolve,
    staging_path,
    step_path,
)
from planner.checkpoint.manifest import MANIFEST, read_manifest
from planner.checkpoint.npyfile import (
    BlockCrc,
    PieceWriter,
    ahead,
    crc_problem,
    read_header,
    read_rows,
    write_piece,
)
from planner.files import write_atomically


@settings(deadline=None, max_examples=60)
@given(st.binary(max_size=300), st.integers(1, 64), st.lists(st.integers(1, 50), max_size=12))
def test_block_crc_equals_crc32_of_each_block(data, block, cuts):
    crc = BlockCrc(block)
    pos = 0
    for cut in cuts:  # fed in arbitrary pieces
        crc.update(data[pos : pos + cut])
        pos += cut
    crc.update(data[pos:])
    want = [zlib.crc32(data[i : i + block]) for i in range(0, len(data), block)] or [0]
    assert crc.finish() == want


def test_ahead_makes_the_next_item_while_the_current_one_is_in_use():
    used = []
    making = {i: threading.Event() for i in range(5)}

    def items():
        for i in range(5):
            assert len(used) >= i - 1, "more than one item ahead of the caller"
            making[i].set()
            yield i

    for item in ahead(items()):
        if item < 4:  # the next one is being made while this one is still in hand
            assert making[item + 1].wait(timeout=30)
        used.append(item)
    assert used == [0, 1, 2, 3, 4]


def test_ahead_passes_on_the_error_of_making_an_item():
    def items():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in ahead(items()):
            got.append(item)
    assert got == [1]


def test_piece_file_is_a_plain_npy_and_reads_by_row(tmp_path):
    array = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    path = tmp_path / "p.npy"
    size, crcs = write_piece(path, "<f4", (7, 3), [array[:2], array[2:3], array[3:]], 16)
    assert np.array_equal(np.load(path), array)
    assert np.array_equal(np.load(path, mmap_mode="r")[2:5], array[2:5])
    raw = path.read_bytes()
    assert size == len(raw)
    assert crcs == [zlib.crc32(raw[i : i + 16]) for i in range(0, len(raw), 16)]
    offset, dtype, shape = read_header(path)
    assert (dtype, shape) == (np.dtype("<f4"), (7, 3))
    assert np.array_equal(read_rows(path, offset, dtype, 3, 4, 7), array[4:])
    assert crc_problem(path, size, crcs, 16) is None


def test_piece_file_refuses_wrong_rows(tmp_path):
    with pytest.raises(ValueError, match="3 of 4 rows"):
        write_piece(tmp_path / "p.npy", "<f4", (4, 2), [np.zeros((3, 2), np.float32)], 64)
    with pytest.raises(ValueError, match="do not fit"):
        write_piece(tmp_path / "q.npy", "<f4", (4, 2), [np.zeros((4, 3), np.float32)], 64)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux reserves blocks")
def test_a_piece_file_has_its_blocks_before_its_rows_arrive(tmp_path):
    writer = PieceWriter(tmp_path / "p.npy", "<f4", (2**16, 16), 2**20)  # 4 MiB of rows
    stat = os.stat(tmp_path / "p.npy")
    assert stat.st_size == 128  # the header only: reserving leaves the size alone
    assert stat.st_blocks * 512 >= 128 + 2**22  # every block the rows will need
    writer.write(np.ones((2**16, 16), np.float32))
    size, _ = writer.close()
    assert size == os.stat(tmp_path / "p.npy").st_size == 128 + 2**22


def refusing(code: int):
    """A stand-in for the C library's fallocate that refuses with ``code``."""

    def fallocate(fd, mode, offset, length):
        ctypes.set_errno(code)
        return -1

    return lambda: fallocate


def test_a_full_disk_is_found_before_any_row_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(space, "_fallocate", refusing(errno.ENOSPC))
    path = tmp_path / "p.npy"
    with pytest.raises(CheckpointError, match=r"p\.npy: no space left .* 4,194,432 bytes"):
        write_piece(path, "<f4", (2**16, 16), [np.ones((2**16, 16), np.float32)], 2**20)
    assert path.stat().st_size == 0  # not a byte of it


def test_a_filesystem_that_cannot_reserve_still_gets_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(space, "_fallocate", refusing(errno.EOPNOTSUPP))
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_piece(tmp_path / "p.npy", "<f4", (4, 3), [array], 64)
    assert np.array_equal(np.load(tmp_path / "p.npy"), array)


def test_checksum_problems_name_the_file_and_the_damage(tmp_path):
    path = tmp_path / "p.npy"
    size, crcs = write_piece(path, "<f8", (100, 4), [np.ones((100, 4))], 256)
    assert len(crcs) == -(-size // 256)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 1
    path.write_bytes(raw)
    problem = crc_problem(path, size, crcs, 256)
    assert problem == f"{path}: corrupted: checksum of bytes 768:1024 does not match the manifest"
    assert crc_problem(path, size, crcs, 256, blocks=[0, 1]) is None  # other blocks only
    path.write_bytes(raw[:500])
    assert crc_problem(path, size, crcs, 256) == (
        f"{path}: truncated: 500 bytes, the manifest says {size}"
    )
    path.unlink()
    assert crc_problem(path, size, crcs, 256) == f"{path}: missing"


def test_read_rows_past_the_end_says_truncated(tmp_path):
    path = tmp_path / "p.npy"
    write_piece(path, "<f4", (10, 2), [np.zeros((10, 2), np.float32)], 64)
    offset, dtype, _ = read_header(path)
    path.write_bytes(path.read_bytes()[: offset + 8 * 5])
    with pytest.raises(CheckpointError, match="truncated: rows 3:8"):
        read_rows(path, offset, dtype, 2, 3, 8)


def test_not_an_npy_file(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"hello, world")
    with pytest.raises(CheckpointError, match=r"not an \.npy file"):
        read_header(tmp_path / "x.npy")


# --- directories ---------------------------------------------------------------------


@pytest.fixture
def plan():
    return plan_of(MIXED, 2)


def values_of(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "pieces").rglob("*.npy")))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_publish_replaces_a_checkpoint_whole(tmp_path, plan, exchange):
    target = tmp_path / "ckpt"
    write(target, plan, global_arrays(plan, seed=1))
    old = values_of(target)
    staged = tmp_path / "new"
    write(staged, plan, global_arrays(plan, seed=2))
    new = values_of(staged)
    staging = staging_path(target, "abc")
    staged.rename(staging)
    publish(staging, target, exchange=exchange)
    assert values_of(target) == new != old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nothing left over


@pytest.mark.parametrize("sync", [True, False], ids=["durable", "page cache"])
def test_only_a_durable_publish_waits_for_the_disk(tmp_path, plan, monkeypatch, sync):
    """``durable=False`` saves skip every fsync (files, manifest, directories) and keep
    the renames that make the replacement atomic."""
    target = tmp_path / "ckpt"
    write(target, plan, global_arrays(plan, seed=1))
    staging = staging_path(target, "abc")
    staging.mkdir()
    (staging / "plan.json").write_text("{}")
    manifest = read_manifest(target)
    fsynced = []
    monkeypatch.setattr(os, "fsync", fsynced.append)
    write_atomically(manifest.to_json(), staging / MANIFEST, sync)
    publish(staging, target, sync=sync)
    assert bool(fsynced) is sync
    assert (target / "plan.json").read_text() == "{}"
    assert read_manifest(target) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_publish_refuses_what_is_not_a_checkpoint(tmp_path, plan):
    target = tmp_path / "data"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(no manifest\.json\); refusing"):
        check_target(target)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        check_target(tmp_path / "file")
    check_target(tmp_path / "new" / "deeper")  # missing: parents are made
    assert (tmp_path / "new").is_dir()


def test_a_replace_cut_between_its_renames_still_reads_the_old_checkpoint(tmp_path, plan):
    target = tmp_path / "ckpt"
    write(target, plan, global_arrays(plan, seed=1))
    old = values_of(target)
    target.rename(tmp_path / "ckpt.old-0123abcd")  # the first rename, then a crash
    assert resolve(target) == tmp_path / "ckpt.old-0123abcd"
    assert values_of(resolve(target)) == old
    assert resolve(tmp_path / "other") == tmp_path / "other"


def test_a_staging_directory_is_never_complete(tmp_path, plan):
    staging = staging_path(tmp_path / "ckpt", "abc")
    write(tmp_path / "done", plan, global_arrays(plan))
    (tmp_path / "done").rename(staging)
    (staging / MANIFEST).unlink()  # killed before the manifest
    with pytest.raises(CheckpointError, match=r"manifest\.json: missing: not a complete"):
        read_manifest(staging)
    assert latest_checkpoint(tmp_path) is None


def test_keep_last_keeps_the_newest_complete_steps(tmp_path, plan):
    arrays = global_arrays(plan)
    for step in (5, 10, 20, 40):
        write(step_path(tmp_path, step), plan, arrays)
    # an interrupted save of step 80 and a deletion cut short
    write(tmp_path / "x", plan, arrays)
    (tmp_path / "x").rename(tmp_path / "step-000000080.partial-00ff")
    (tmp_path / "step-000000080.partial-00ff" / MANIFEST).unlink()
    (tmp_path / "step-000000001.deleting-00aa").mkdir()
    assert latest_checkpoint(tmp_path) == step_path(tmp_path, 40)
    keep_last(tmp_path, 2)
    assert [s for s, _ in complete_steps(tmp_path)] == [20, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000020", "step-000000040"]
    keep_last(tmp_path, 5)
    assert [s for s, _ in complete_steps(tmp_path)] == [20, 40]


def test_series_ignore_names_that_are_not_steps(tmp_path, plan):
    write(tmp_path / "step-12", plan, global_arrays(plan))
    write(tmp_path / "my-copy", plan, global_arrays(plan))
    assert latest_checkpoint(tmp_path) == tmp_path / "step-12"
    keep_last(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-copy", "step-12"]
