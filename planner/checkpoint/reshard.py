"""Offline: write a checkpoint for a plan from any arrays, reshard one, export a table.

Everything reads by range (numpy arrays, memory maps, or a checkpoint's table views),
so memory stays at one chunk and one read buffer whatever the tables' sizes, and
everything writes through a temporary name: the output appears complete or not at
all, and the input is never touched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from planner.checkpoint.blocks import plan_blocks
from planner.checkpoint.directory import new_token, publish, staging_path
from planner.checkpoint.errors import CheckpointError, raise_first, tables_listed_by
from planner.checkpoint.manifest import (
    CHECKSUM_BLOCK_BYTES,
    PLAN,
    STORAGE_DTYPES,
    WEIGHTS,
    Manifest,
    OptimizerEntry,
)
from planner.checkpoint.npyfile import fsync_files, write_piece
from planner.checkpoint.store import Checkpoint, read_problems, row_chunks
from planner.checkpoint.verify import structure_problems, table_problems
from planner.checkpoint.writing import (
    CHUNK_BYTES,
    file_entry,
    save_piece,
    save_plan_file,
    write_manifest,
)
from planner.plan import Plan


def open_for_reading(path: str | Path) -> Checkpoint:
    """Open a checkpoint whose manifest is consistent; raise on its first problem."""
    checkpoint = Checkpoint.open(path)
    raise_first(structure_problems(checkpoint.manifest), checkpoint.path / "manifest.json")
    return checkpoint


def refuse_overlap(source: Path, target: Path, writing: str) -> None:
    """Refuse an output inside the checkpoint being read, or holding it.

    Written there, an export replaces a piece or the manifest, and a new checkpoint
    becomes files the source's manifest does not list: either way the input is no
    longer the checkpoint it was. Paths are compared resolved, through symlinks
    (``realpath``, which leaves a symlink loop as it is for its reader to refuse).
    """
    read, written = Path(os.path.realpath(source)), Path(os.path.realpath(target))
    if written == read:
        raise CheckpointError(f"{target}: is the checkpoint being read; write {writing} elsewhere")
    if read in written.parents:
        raise CheckpointError(
            f"{target}: inside the checkpoint {source} being read; write {writing} outside it"
        )
    if written in read.parents:
        raise CheckpointError(
            f"{target}: holds the checkpoint {source} being read; write {writing} elsewhere"
        )


def write_checkpoint(
    target: str | Path,
    plan: Plan,
    arrays: Callable[[str, str], object],
    optimizer: OptimizerEntry | None = None,
    files: dict[str, Path] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    block_bytes: int = CHECKSUM_BLOCK_BYTES,
) -> Manifest:
    """Write a complete checkpoint for ``plan`` at ``target`` (which must not exist).

    ``arrays(table, slot)`` gives the global ``[rows, width]`` array of a table's
    weights (slot ``weights``) or of an optimizer slot, in the table's storage dtype
    (anything sliceable: numpy, memory-mapped, a table view); only the rows and columns
    of one chunk are taken at a time. ``files`` are copied in under their relative names.
    A failed write (no such place, no permission, a full disk) is a CheckpointError,
    and the staging directory is removed.
    """
    target = Path(target)
    if target.exists():
        raise CheckpointError(f"{target}: already exists; choose a new output directory")
    slots = [WEIGHTS, *(optimizer.slots if optimizer else [])]
    staging = staging_path(target, new_token())
    try:
        staging.mkdir(parents=True)
        pieces = []
        for block in plan_blocks(plan):
            dtype = np.dtype(STORAGE_DTYPES[plan.table(block.table).dtype])
            for slot in slots:
                chunks = row_chunks(arrays(block.table, slot), block.rows, block.cols,
                                    chunk_bytes, dtype)
                pieces.append(
                    save_piece(staging, plan, block, slot, chunks, block_bytes, sync=False)
                )
        fsync_files(staging / p.file for p in pieces)
        entries = [save_plan_file(staging, plan, block_bytes)]
        for relative, source in (files or {}).items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / relative)
            entries.append(file_entry(staging, relative, block_bytes))
        manifest = write_manifest(staging, plan, optimizer, pieces, entries, block_bytes)
        publish(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"{target}: cannot write the checkpoint ({exc.strerror or exc})"
            ) from exc
        raise
    return manifest


def reshard(
    source: str | Path,
    plan: Plan,
    target: str | Path,
    plan_source: str = "the plan",
    chunk_bytes: int = CHUNK_BYTES,
) -> Manifest:
    """Write ``target``: the checkpoint at ``source``, cut for ``plan`` (same tables).

    Weights and every optimizer slot are copied; the optimizer's step count and the
    files other than pieces (the dense model's state) are carried over unchanged. Every
    checksum is checked before anything is written; ``target`` may neither lie inside
    ``source`` nor hold it.
    """
    refuse_overlap(Path(source), Path(target), "the new checkpoint")
    checkpoint = open_for_reading(source)
    manifest = checkpoint.manifest
    raise_first(table_problems(manifest, plan, plan_source), others=tables_listed_by(source))
    requests = [(b.table, s, b.rows, b.cols) for b in plan_blocks(plan) for s in manifest.slots]
    raise_first(read_problems(checkpoint, requests))
    return write_checkpoint(
        target,
        plan,
        checkpoint.view,
        manifest.optimizer,
        {f.file: checkpoint.path / f.file for f in manifest.files if f.file != PLAN},
        chunk_bytes,
        manifest.checksum_block_bytes,
    )


def export_table(
    source: str | Path,
    table: str,
    output: str | Path,
    slot: str = WEIGHTS,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[tuple[int, int], np.dtype]:
    """Write one table's weights (or an optimizer slot) as a plain ``[rows, width]`` .npy.

    bfloat16 tables are written as float32 (exactly: bfloat16 is float32's upper half),
    since numpy has no bfloat16. Returns the array's shape and dtype.

    A regular file (or a new one) is written through a temporary name and renamed into
    place; a device or FIFO is written into, as ``planner plan -o`` does, since renaming
    over it would replace it. Never a file inside ``source``.
    """
    output = Path(output)
    refuse_overlap(Path(source), output, "the table")
    checkpoint = open_for_reading(source)
    manifest = checkpoint.manifest
    names = [t.name for t in manifest.tables]
    if table not in names:
        raise CheckpointError(f"{checkpoint.path}: no table {table!r}; tables: {names}")
    if slot not in manifest.slots:
        raise CheckpointError(f"{checkpoint.path}: no slot {slot!r}; slots: {manifest.slots}")
    entry = manifest.table(table)
    full = ((0, entry.rows), (0, entry.width))
    raise_first(read_problems(checkpoint, [(table, slot, *full)]))
    view = checkpoint.view(table, slot)
    widen = entry.dtype == "bfloat16"
    chunks = row_chunks(view, *full, chunk_bytes, view.storage)
    if widen:
        chunks = ((c.astype(np.uint32) << 16).view(np.float32) for c in chunks)
    dtype = np.dtype("<f4") if widen else view.storage
    stream = output.exists() and not output.is_file()
    written = output if stream else output.with_name(f".{output.name}.{new_token()}.tmp")
    try:
        write_piece(written, dtype.str, view.shape, chunks, None, sync=not stream)
        if not stream:
            os.replace(written, output)
    except BaseException as exc:
        if not stream:
            written.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"{output}: cannot write the table ({exc.strerror or exc})"
            ) from exc
        raise
    return view.shape, dtype
