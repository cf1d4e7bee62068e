"""Piece files: ``.npy`` written in row chunks with block checksums, read by row range.

``.npy`` keeps a piece readable by anything that reads numpy (``np.load``, memory
mapped), with its dtype and shape in the header, and the data contiguous after it, so a
row range is one positioned read. Reads go into one bounded buffer rather than through a
memory map: pages touched through a map count against the process until it is unmapped,
which would let a restore's resident memory grow to the files it reads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from zlib_ng.zlib_ng import crc32

from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.space import reserve

T = TypeVar("T")

# Largest single read or checksum step; callers' chunks are cut to this.
READ_BYTES = 16 * 2**20


class BlockCrc:
    """crc32 of each ``block``-byte block of a byte stream fed in arbitrary chunks.

    crc32 because checksums guard against torn, truncated or bit-rotted files, not
    tampering, and a checksum must not dominate writing. zlib-ng computes the same crc32
    as zlib (any zlib checks the files) with the processor's carry-less multiply, about
    ten times zlib's speed: at zlib's 1 GB/s the checksum alone took as long as writing
    the bytes. Blocks let a reader of a row range check only the blocks it reads.
    """

    def __init__(self, block: int):
        self.block = block
        self.crcs: list[int] = []
        self._crc = 0
        self._filled = 0

    def update(self, data: memoryview | bytes) -> None:
        data = memoryview(data).cast("B")
        pos = 0
        while pos < len(data):
            take = min(self.block - self._filled, len(data) - pos)
            self._crc = crc32(data[pos : pos + take], self._crc)
            self._filled += take
            pos += take
            if self._filled == self.block:
                self.crcs.append(self._crc)
                self._crc, self._filled = 0, 0

    def finish(self) -> list[int]:
        if self._filled or not self.crcs:
            self.crcs.append(self._crc)
            self._crc, self._filled = 0, 0
        return self.crcs


def _header(dtype: str, shape: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


_END = object()


def ahead(items: Iterable[T]) -> Iterator[T]:
    """The items of ``items``, each next one made in a helper thread while the caller
    uses the current one.

    A writer's chunks come from a gather off a variable or a read of other files; making
    the next one overlaps writing (and checksumming) this one, as all of them release
    Python's lock. At most two items exist at once: the one in use and the next. Leaving
    the loop early waits for the item being made, so ``items`` never runs on alone.
    """
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-ahead") as pool:
        pending = pool.submit(next, iterator, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, iterator, _END)
            yield item


class PieceWriter:
    """Write one 2-D ``.npy`` file from row chunks; ``close`` gives (bytes, crcs).

    The file's blocks are reserved first (:func:`~planner.checkpoint.space.reserve`):
    faster writes, and a full disk found before any of them.

    With ``block`` None no checksums are computed (a plain export). ``close(sync=False)``
    leaves the fsync to the caller (:func:`fsync_files`), so that the kernel writes one
    file back while the next is being produced.
    """

    def __init__(self, path: Path, dtype: str, shape: tuple[int, int], block: int | None):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self._rows = 0
        self._crc = BlockCrc(block) if block else None
        self._bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        header = _header(dtype, shape)
        try:
            data = shape[0] * shape[1] * self.dtype.itemsize
            reserve(self._handle.fileno(), len(header) + data, path)
        except BaseException:
            self._handle.close()
            raise
        self._put(header)

    def _put(self, data: memoryview | bytes) -> None:
        view = memoryview(data).cast("B")
        if self._crc:
            self._crc.update(view)
        written = 0
        while written < len(view):
            written += self._handle.write(view[written:])
        self._bytes += len(view)

    def write(self, rows: np.ndarray) -> None:
        """Append whole rows (``[n, width]`` of the file's dtype)."""
        if rows.dtype != self.dtype or rows.ndim != 2 or rows.shape[1] != self.shape[1]:
            raise ValueError(
                f"{self.path}: rows of {rows.dtype} {rows.shape} do not fit a file of "
                f"{self.dtype} {self.shape}"
            )
        if self._rows + rows.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path}: more than {self.shape[0]} rows written")
        self._put(np.ascontiguousarray(rows).data)
        self._rows += rows.shape[0]

    def close(self, sync: bool = True) -> tuple[int, list[int]]:
        if self._rows != self.shape[0]:
            raise ValueError(f"{self.path}: {self._rows} of {self.shape[0]} rows written")
        if sync:
            os.fsync(self._handle.fileno())
        self._handle.close()
        return self._bytes, self._crc.finish() if self._crc else []

    def abandon(self) -> None:
        self._handle.close()


def write_piece(
    path: Path,
    dtype: str,
    shape: tuple[int, int],
    chunks: Iterable[np.ndarray],
    block: int | None,
    sync: bool = True,
) -> tuple[int, list[int]]:
    """Write a whole piece from its row chunks; returns its size and block checksums.

    The next chunk is made (:func:`ahead`) while this one is written."""
    writer = PieceWriter(path, dtype, shape, block)
    try:
        for chunk in ahead(chunks):
            writer.write(chunk)
        return writer.close(sync)
    except BaseException:
        writer.abandon()
        raise


def fsync_files(paths: Iterable[Path]) -> None:
    """fsync files written with ``sync=False``; most of their data is on disk by now."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_header(path: Path) -> tuple[int, np.dtype, tuple[int, ...]]:
    """(data offset, dtype, shape) of an ``.npy`` file; CheckpointError when it is not one."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: not an .npy file ({exc})") from exc
    if fortran:
        raise CheckpointError(f"{path}: stored in Fortran order; pieces are C order")
    return offset, dtype, shape


def read_rows(
    path: Path,
    offset: int,
    dtype: np.dtype,
    width: int,
    start: int,
    stop: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rows [start, stop) of a 2-D ``.npy`` file whose data begins at ``offset``, into
    ``out`` (C-contiguous, ``[stop - start, width]``) when given."""
    if out is None:
        out = np.empty((stop - start, width), dtype)
    target = out.data.cast("B")
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset + start * width * dtype.itemsize)
        got = 0
        while got < len(target):
            n = handle.readinto(target[got:])
            if not n:
                raise CheckpointError(
                    f"{path}: truncated: rows {start}:{stop} end past the end of the file"
                )
            got += n
    return out


def _block_crc(handle, length: int) -> int | None:
    """crc32 of the next ``length`` bytes (None if the file ends first), read through
    one reused buffer of at most ``READ_BYTES``."""
    buffer = memoryview(bytearray(min(READ_BYTES, length)))
    crc = 0
    while length > 0:
        got = handle.readinto(buffer[: min(len(buffer), length)])
        if not got:
            return None
        crc = crc32(buffer[:got], crc)
        length -= got
    return crc


def crc_problem(
    path: Path, size: int, crcs: list[int], block: int, blocks: Iterable[int] | None = None
) -> str | None:
    """Check ``path``'s size and the checksums of ``blocks`` (all when None).

    Returns the problem in words, or None when the file is as the manifest says.
    """
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return f"{path}: missing"
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    if actual != size:
        kind = "truncated" if actual < size else "longer than recorded"
        return f"{path}: {kind}: {actual} bytes, the manifest says {size}"
    expected_blocks = max(1, -(-size // block))
    if len(crcs) != expected_blocks:
        return f"{path}: the manifest lists {len(crcs)} checksums for {expected_blocks} blocks"
    wanted = range(expected_blocks) if blocks is None else sorted(set(blocks))
    try:
        with open(path, "rb", buffering=0) as handle:
            for index in wanted:
                handle.seek(index * block)
                crc = _block_crc(handle, min(block, size - index * block))
                if crc is None:
                    return f"{path}: truncated while reading block {index}"
                if crc != crcs[index]:
                    return (
                        f"{path}: corrupted: checksum of bytes {index * block}:"
                        f"{min(size, (index + 1) * block)} does not match the manifest"
                    )
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    return None
