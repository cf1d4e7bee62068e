"""Global table weights to and from the pieces each rank holds, as the plan says.

Every piece is described by the plan alone: which table, which rows and columns of
it, and where it sits inside a local variable (fused weights stack several tables by
rows). Setting weights cuts each rank's pieces out of the global arrays by those exact
ranges, so tables whose column slices were merged unevenly on one rank are cut right;
getting weights puts each gathered piece back at the same ranges.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from planner.plan import Plan

# Elements per write, and per all-gather result (every rank's block together), at most
# (at least one row per rank, whatever the chunk).
DEFAULT_CHUNK = 2**27


@dataclass(frozen=True)
class Piece:
    """Rows [r0, r1) and columns [c0, c1) of a table, stored from ``var_row`` of a variable."""

    table: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    var_row: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]


def variable_pieces(plan: Plan, rank: int) -> list[list[Piece]]:
    """For each of the rank's variables, in the layer's order, the pieces it stores.

    The layer's order is: data-parallel tables, then table-parallel weights, then row
    slices, each in plan order.
    """
    index = {t.name: i for i, t in enumerate(plan.tables)}
    result = []
    for name in plan.groups.data_parallel:
        table = plan.tables[index[name]]
        result.append([Piece(index[name], (0, table.rows), (0, table.width), 0)])
    for weight in plan.ranks[rank].table_parallel_weights:
        result.append(
            [
                Piece(index[m.table], (0, m.rows), tuple(m.cols), m.row_offset)
                for m in weight.members
            ]
        )
    for row_slice in plan.ranks[rank].row_slices:
        width = plan.tables[index[row_slice.table]].width
        result.append([Piece(index[row_slice.table], tuple(row_slice.rows), (0, width), 0)])
    return result


def _load(weights: list) -> list:
    """Arrays as given; ``.npy`` paths (str or path-like) memory-mapped, so only the rows
    cut are read."""
    return [np.load(w, mmap_mode="r") if isinstance(w, (str, os.PathLike)) else w for w in weights]


def check_global_weights(plan: Plan, weights: list) -> list:
    """Load and check one array per plan table, in plan order, before writing anything."""
    if len(weights) != len(plan.tables):
        raise ValueError(
            f"set_weights got {len(weights)} arrays but the plan has {len(plan.tables)} "
            f"tables; pass one array (or .npy path) per table, in the plan's table order"
        )
    arrays = _load(weights)
    for array, table in zip(arrays, plan.tables, strict=True):
        if tuple(np.shape(array)) != (table.rows, table.width):
            raise ValueError(
                f"weights for table {table.name!r} are shaped {tuple(np.shape(array))} but the "
                f"table is ({table.rows}, {table.width}); pass the table's global weights"
            )
    return arrays


def variable_rows(var: tf.Variable, first: int, last: int) -> tf.Tensor:
    """Rows [first, last) of ``var``, copied by one gather of just those rows.

    Not a slice of the variable: once a variable has served lookups (gathers),
    TensorFlow copies all of it on every plain read, so reading a chunk by slicing would
    copy the whole variable each time.
    """
    return var.sparse_read(tf.range(first, last, dtype=tf.int64))


def host_view(var: tf.Variable) -> np.ndarray | None:
    """All of ``var`` as a read-only numpy array sharing its buffer, when the variable
    lives in host memory (a CPU job, or pieces offloaded to the host); None on a GPU,
    where reading means copying and :func:`variable_rows` copies only a chunk.

    Once a variable has served gathers, TensorFlow copies it whole on every plain read
    ("copy-on-read", so that gathers and scatters may work on it in place).
    ``DisableCopyOnRead`` turns that off, so the read below shares the buffer. The next
    gather or scatter turns it back on, and first copies the buffer if a view like this
    one is still alive: the view never changes under its reader, and once it is gone
    training pays nothing.
    """
    if tf.DeviceSpec.from_string(var.device).device_type != "CPU":
        return None
    tf.raw_ops.DisableCopyOnRead(resource=var.handle)
    return np.asarray(tf.raw_ops.ReadVariableOp(resource=var.handle, dtype=var.dtype))


def write_pieces(
    variables: list[tf.Variable], pieces: list[list[Piece]], arrays: list, chunk: int
) -> None:
    """Write each piece into its variable, at most ``chunk`` elements per update.

    Scatter updates of row blocks avoid the extra full-size copy that ``assign`` of a
    whole huge table would make.
    """
    for var, var_pieces in zip(variables, pieces, strict=True):
        dtype = var.dtype.as_numpy_dtype
        for piece in var_pieces:
            rows, cols = piece.shape
            if rows == 0 or cols == 0:
                continue
            step = max(1, chunk // cols)
            for start in range(0, rows, step):
                stop = min(start + step, rows)
                block = np.asarray(
                    arrays[piece.table][
                        piece.rows[0] + start : piece.rows[0] + stop,
                        piece.cols[0] : piece.cols[1],
                    ],
                    dtype=dtype,
                )
                indices = tf.range(piece.var_row + start, piece.var_row + stop, dtype=tf.int64)
                var.scatter_update(tf.IndexedSlices(tf.constant(block), indices, var.shape))


def gather_table(
    plan: Plan,
    table: int,
    local: tuple[Piece, tf.Variable] | None,
    pieces_by_rank: list[Piece | None],
    chunk: int,
    name: str,
    keep: bool,
) -> np.ndarray | None:
    """Assemble one sliced table from every rank's piece with chunked all-gathers.

    Every rank makes the same all-gathers, their number derived from the plan, whether
    or not it holds a piece; a rank without a piece sends nothing. Each all-gather takes
    the same rows of every piece, as many as keep the gathered result within ``chunk``
    elements: column slices share their rows, so together they are one table width
    wide, while row slices each add a full width. A rank sends its rows of each
    all-gather by one gather off its variable (:func:`variable_rows`). Only ranks with
    ``keep`` assemble the result.
    """
    spec = plan.tables[table]
    dtype = tf.as_dtype(spec.dtype).as_numpy_dtype
    width = sum(p.shape[1] for p in pieces_by_rank if p is not None and p.shape[0] > 0)
    step = max(1, chunk // max(width, 1))
    longest = max((p.shape[0] for p in pieces_by_rank if p is not None), default=0)
    result = np.zeros((spec.rows, spec.width), dtype) if keep else None
    for k in range(math.ceil(longest / step)):
        lo = k * step
        spans = [
            (min(lo, p.shape[0]), min(lo + step, p.shape[0])) if p is not None else (0, 0)
            for p in pieces_by_rank
        ]
        if local is not None:
            piece, var = local
            start, stop = spans[hvd.rank()]
            block = variable_rows(var, piece.var_row + start, piece.var_row + stop)
            block = tf.reshape(tf.cast(block, tf.float32), [-1])
        else:
            block = tf.zeros([0], tf.float32)
        gathered = hvd.allgather(block, name=f"{name}_{k}", ignore_name_scope=True)
        if not keep:
            continue
        flat = gathered.numpy()
        offset = 0
        for piece, (start, stop) in zip(pieces_by_rank, spans, strict=True):
            if piece is None or stop == start:
                continue
            size = (stop - start) * piece.shape[1]
            values = flat[offset : offset + size].reshape(stop - start, piece.shape[1])
            offset += size
            r0 = piece.rows[0]
            result[r0 + start : r0 + stop, piece.cols[0] : piece.cols[1]] = values
    return result
