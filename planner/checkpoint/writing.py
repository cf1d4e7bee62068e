"""Writing a checkpoint's parts: pieces, the plan, other files, and the manifest last.

Shared by the training runtime (each rank its own pieces) and the offline reshard.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from planner.checkpoint.blocks import Block
from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    PLAN,
    STORAGE_DTYPES,
    FileEntry,
    Manifest,
    OptimizerEntry,
    PieceEntry,
    TableEntry,
    piece_file,
)
from planner.checkpoint.npyfile import READ_BYTES, BlockCrc, write_piece
from planner.files import too_large_to_write, write_atomically
from planner.plan import Plan
from planner.saving import save_plan

# Bytes moved per chunk when saving, restoring or resharding: bounds the memory a
# checkpoint operation adds to the process (a chunk, its copy, one read buffer). Below
# glibc's largest mmap threshold (32 MiB), so freed chunks are reused from the heap
# instead of mapped afresh: 32 MiB chunks made every gather fault in and zero its pages,
# 4 times slower per byte than 8 MiB ones.
CHUNK_BYTES = 8 * 2**20


def table_entries(plan: Plan) -> list[TableEntry]:
    group = plan.groups.group_of()
    return [
        TableEntry(name=t.name, rows=t.rows, width=t.width, dtype=t.dtype, group=group[t.name])
        for t in plan.tables
    ]


def save_piece(
    root: Path,
    plan: Plan,
    block: Block,
    slot: str,
    chunks: Iterable[np.ndarray],
    block_bytes: int,
    sync: bool = True,
) -> PieceEntry:
    """Write one piece (its rows in chunks of the table's storage dtype) under ``root``;
    with ``sync=False`` the caller fsyncs it later (``npyfile.fsync_files``)."""
    index = next(i for i, t in enumerate(plan.tables) if t.name == block.table)
    table = plan.tables[index]
    relative = piece_file(index, table.name, slot, block.rows, block.cols)
    size, crcs = write_piece(
        root / relative, STORAGE_DTYPES[table.dtype], block.shape, chunks, block_bytes, sync
    )
    return PieceEntry(
        file=relative, bytes=size, crc32=crcs, table=block.table, slot=slot,
        rows=block.rows, cols=block.cols, rank=block.rank,
    )


def file_entry(root: Path, relative: str, block_bytes: int, sync: bool = True) -> FileEntry:
    """Size and block checksums of a file already written under ``root``, which is
    fsynced too with ``sync`` (files written by other libraries may not be)."""
    crc = BlockCrc(block_bytes)
    size = 0
    with open(root / relative, "rb", buffering=0) as handle:
        while data := handle.read(READ_BYTES):
            crc.update(data)
            size += len(data)
        if sync:
            os.fsync(handle.fileno())
    return FileEntry(file=relative, bytes=size, crc32=crc.finish())


def save_plan_file(root: Path, plan: Plan, block_bytes: int, sync: bool = True) -> FileEntry:
    save_plan(plan, root / PLAN)
    return file_entry(root, PLAN, block_bytes, sync)


def write_manifest(
    root: Path,
    plan: Plan,
    optimizer: OptimizerEntry | None,
    pieces: list[PieceEntry],
    files: list[FileEntry],
    block_bytes: int,
    sync: bool = True,
) -> Manifest:
    """The last file of a checkpoint: once it is in place the directory is complete.

    A manifest over ``MAX_MANIFEST_BYTES`` is refused rather than written, as a plan
    over its cap is: no reader would take the checkpoint it completes.
    """
    manifest = Manifest(
        world_size=plan.world_size,
        fingerprint=plan.fingerprint,
        checksum_block_bytes=block_bytes,
        optimizer=optimizer,
        tables=table_entries(plan),
        pieces=sorted(pieces, key=lambda p: p.file),
        files=files,
    )
    text = manifest.to_json()
    if problem := too_large_to_write(text, MAX_MANIFEST_BYTES, "manifest"):
        raise CheckpointError(
            f"{root / MANIFEST}: {problem}; use a plan with fewer pieces (fewer ranks, or "
            "fewer row-sliced tables)"
        )
    write_atomically(text, root / MANIFEST, sync)
    return manifest
