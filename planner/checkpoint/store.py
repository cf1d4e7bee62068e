"""A complete checkpoint opened for reading, and views of its tables by range.

A :class:`TableView` reads any rectangle of one table's weights or optimizer slot from
whichever pieces hold it, so every reader (a rank restoring under a new plan, an
offline reshard, an export) takes exactly the rows and columns it needs, one bounded
read at a time, whatever plan the pieces were written under.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from planner.checkpoint.blocks import OverlapIndex, Range
from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.manifest import (
    PLAN,
    STORAGE_DTYPES,
    Manifest,
    PieceEntry,
    TableEntry,
    read_manifest,
)
from planner.checkpoint.npyfile import READ_BYTES, crc_problem, read_header, read_rows
from planner.consistency import load_plan
from planner.errors import PlanFileError
from planner.plan import Plan


class Checkpoint:
    """A checkpoint directory whose manifest has been read and schema-checked."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._pieces: dict[tuple[str, str], list[PieceEntry]] = defaultdict(list)
        for piece in manifest.pieces:
            self._pieces[piece.table, piece.slot].append(piece)

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        path = Path(path)
        return cls(path, read_manifest(path))

    def plan(self) -> Plan:
        try:
            return load_plan(self.path / PLAN)
        except PlanFileError as exc:
            raise CheckpointError(str(exc)) from exc

    def pieces(self, table: str, slot: str) -> list[PieceEntry]:
        return self._pieces.get((table, slot), [])

    def view(self, table: str, slot: str, view_as: np.dtype | None = None) -> TableView:
        """Table ``table``'s ``slot`` (weights or an optimizer slot) as a readable array."""
        return TableView(
            self.path, self.manifest.table(table), self.pieces(table, slot), view_as
        )


class TableView:
    """One table's weights or slot, read by range from the pieces that hold it.

    Indexing with two slices (``view[r0:r1, c0:c1]``) returns a new array, as for a
    global array; ``view_as`` reinterprets the stored bits (bfloat16 is stored as
    uint16, and only the caller knows a numpy type for it).
    """

    def __init__(
        self,
        directory: Path,
        table: TableEntry,
        pieces: list[PieceEntry],
        view_as: np.dtype | None = None,
    ):
        self.directory = directory
        self.table = table
        self.pieces = pieces
        self.shape = (table.rows, table.width)
        self.storage = np.dtype(STORAGE_DTYPES[table.dtype])
        self.dtype = np.dtype(view_as) if view_as is not None else self.storage
        self._index = OverlapIndex([p.rows for p in pieces], [p.cols for p in pieces])
        self._offsets: dict[str, int] = {}

    def sources(self, rows: Range, cols: Range) -> list[tuple[PieceEntry, Range, Range]]:
        """The pieces overlapping the range, each with the rows and columns it shares."""
        return [(self.pieces[i], r, c) for i, r, c in self._index.query(rows, cols)]

    def offset(self, piece: PieceEntry) -> int:
        """Where the piece's data begins in its file, after checking its header."""
        if piece.file not in self._offsets:
            path = self.directory / piece.file
            offset, dtype, shape = read_header(path)
            if dtype != self.storage or tuple(shape) != piece.shape:
                raise CheckpointError(
                    f"{path}: holds {dtype} {tuple(shape)}, the manifest says "
                    f"{self.storage} {piece.shape}"
                )
            self._offsets[piece.file] = offset
        return self._offsets[piece.file]

    def blocks(self, piece: PieceEntry, rows: Range, block: int) -> set[int]:
        """Checksum blocks of the piece's file holding its header and table rows ``rows``."""
        row_bytes = piece.shape[1] * self.storage.itemsize
        start = self.offset(piece) + (rows[0] - piece.rows[0]) * row_bytes
        stop = self.offset(piece) + (rows[1] - piece.rows[0]) * row_bytes
        return {0, *range(start // block, (stop - 1) // block + 1)}

    def read(self, rows: Range, cols: Range) -> np.ndarray:
        """Rows [r0, r1) and columns [c0, c1) of the table, assembled from its pieces."""
        out = np.empty((rows[1] - rows[0], cols[1] - cols[0]), self.storage)
        filled = 0
        for piece, (r0, r1), (c0, c1) in self.sources(rows, cols):
            width = piece.shape[1]
            step = max(1, READ_BYTES // (width * self.storage.itemsize))
            path = self.directory / piece.file
            whole_rows = (c0, c1) == piece.cols == cols  # read straight into ``out``
            for start in range(r0, r1, step):
                stop = min(start + step, r1)
                target = out[start - rows[0] : stop - rows[0]]
                block = read_rows(
                    path, self.offset(piece), self.storage, width,
                    start - piece.rows[0], stop - piece.rows[0],
                    target if whole_rows else None,
                )
                if not whole_rows:
                    target[:, c0 - cols[0] : c1 - cols[0]] = block[
                        :, c0 - piece.cols[0] : c1 - piece.cols[0]
                    ]
            filled += (r1 - r0) * (c1 - c0)
        if filled != out.size:
            raise CheckpointError(
                f"{self.directory}: table {self.table.name!r}: rows {rows[0]}:{rows[1]}, "
                f"columns {cols[0]}:{cols[1]} are not all in the checkpoint"
            )
        return out.view(self.dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        row_slice, col_slice = key
        rows = row_slice.indices(self.shape[0])
        cols = col_slice.indices(self.shape[1])
        if rows[2] != 1 or cols[2] != 1:
            raise IndexError("a table view takes contiguous slices only")
        return self.read(rows[:2], cols[:2])


def read_problems(
    checkpoint: Checkpoint,
    requests: list[tuple[str, str, Range, Range]],
    checksums: bool = True,
) -> list[str]:
    """Check, before anything is read for use, every file the requests will read.

    A request is (table, slot, rows, cols). Files must have their recorded sizes and
    headers, and (with ``checksums``) the blocks read their recorded checksums; a reader
    of a few rows of a large piece checks only the blocks holding them.
    """
    block = checkpoint.manifest.checksum_block_bytes
    views: dict[tuple[str, str], TableView] = {}
    reads = []
    for table, slot, rows, cols in requests:
        view = views.setdefault((table, slot), checkpoint.view(table, slot))
        reads += [(view, piece, shared) for piece, shared, _ in view.sources(rows, cols)]
    problems: dict[str, str | None] = {}
    for view, piece, _ in reads:
        if piece.file not in problems:
            path = checkpoint.path / piece.file
            problems[piece.file] = crc_problem(path, piece.bytes, piece.crc32, block, ())
            if problems[piece.file] is None:
                try:
                    view.offset(piece)
                except CheckpointError as exc:
                    problems[piece.file] = str(exc)
    if checksums:
        needed: dict[str, tuple[PieceEntry, set[int]]] = {}
        for view, piece, rows in reads:
            if problems[piece.file] is None:
                needed.setdefault(piece.file, (piece, set()))[1].update(
                    view.blocks(piece, rows, block)
                )
        for file, (piece, blocks) in sorted(needed.items()):
            path = checkpoint.path / file
            problems[file] = crc_problem(path, piece.bytes, piece.crc32, block, blocks)
    return [problem for problem in problems.values() if problem]


def row_chunks(
    array: Any, rows: Range, cols: Range, chunk_bytes: int, dtype: np.dtype
) -> Iterator[np.ndarray]:
    """Rows [r0, r1), columns [c0, c1) of ``array`` (numpy, memory-mapped, or a table
    view) in consecutive ``dtype`` arrays of at most ``chunk_bytes`` (one row at least)."""
    width = cols[1] - cols[0]
    step = max(1, chunk_bytes // max(1, width * dtype.itemsize))
    for start in range(rows[0], rows[1], step):
        yield np.asarray(array[start : min(start + step, rows[1]), cols[0] : cols[1]], dtype)
