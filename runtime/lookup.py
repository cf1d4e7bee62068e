"""Embedding lookups with a combiner, for every id layout the layer accepts.

All lookups in the runtime (data-parallel tables, fused table-parallel weights and
masked row slices) go through :func:`lookup`, so one-hot, multi-hot and ragged ids are
combined the same way everywhere. Only stock TensorFlow ops are used: ``tf.gather``
for rows and a reshape-and-sum (dense ids) or a segment sum (ragged ids) to combine.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Ids:
    """A batch of ids, flattened.

    ``values`` holds every id of the batch in sample order. Dense ids have a fixed
    ``hotness`` (ids per sample) and ``lengths`` None; ragged ids have ``hotness`` None
    and ``lengths`` giving the ids per sample. Keeping both layouts in one type lets the
    exchange code move ids between ranks without caring which layout it carries.
    """

    values: tf.Tensor
    lengths: tf.Tensor | None
    hotness: int | None

    @property
    def ragged(self) -> bool:
        return self.lengths is not None

    def batch_size(self) -> tf.Tensor:
        """Number of samples, as an int32 scalar (dynamic when the batch is)."""
        if self.lengths is not None:
            return tf.shape(self.lengths, out_type=tf.int32)[0]
        return tf.shape(self.values, out_type=tf.int32)[0] // self.hotness

    def cast(self, dtype: tf.DType) -> Ids:
        lengths = None if self.lengths is None else tf.cast(self.lengths, dtype)
        return Ids(tf.cast(self.values, dtype), lengths, self.hotness)


def describe_input(inp) -> tuple[str | None, int | None]:
    """Why ``inp`` cannot be used as ids (or None), and its static hotness (None: ragged).

    Computed from static information only, so it never fails inside a traced function.
    """
    if isinstance(inp, tf.RaggedTensor):
        if inp.shape.rank != 2 or inp.ragged_rank != 1:
            return f"ragged ids must be [batch, (ids)], got shape {inp.shape}", None
        problem = None if inp.dtype.is_integer else f"ids must be integers, got {inp.dtype.name}"
        return problem, None
    if isinstance(inp, tf.SparseTensor):
        return "sparse ids are not supported; pass a tf.RaggedTensor", None
    shape = inp.shape
    if not inp.dtype.is_integer:
        return f"ids must be int32 or int64, got {inp.dtype.name}", None
    if shape.rank == 1:
        return None, 1
    if shape.rank == 2 and shape[1] is not None:
        return None, int(shape[1])
    return f"ids must be [batch] or [batch, hotness] with a static hotness, got {shape}", None


def to_ids(inp) -> Ids:
    """Flatten a [batch], [batch, k] or ragged [batch, (k)] id tensor (already validated)."""
    if isinstance(inp, tf.RaggedTensor):
        return Ids(inp.values, inp.row_lengths(), None)
    hotness = 1 if inp.shape.rank == 1 else int(inp.shape[1])
    return Ids(tf.reshape(inp, [-1]), None, hotness)


def lookup(
    weight: tf.Variable,
    ids: Ids,
    combiner: str | None,
    offset: int = 0,
    valid_rows: tuple[int, int] | None = None,
) -> tf.Tensor:
    """Rows of ``weight`` for ``ids + offset``, combined per sample: [batch, width].

    ``valid_rows=(r0, r1)`` looks up a row slice that holds global rows r0..r1-1 only:
    ids outside the slice contribute zero rows. They are masked here rather than left to
    ``tf.gather``, which raises on out-of-range ids on CPU. A ``mean`` still divides by
    the sample's full id count, so the partial results of all slices add up to the mean.
    """
    values = ids.values
    mask = None
    if valid_rows is not None:
        start, stop = valid_rows
        values = values - tf.cast(start, values.dtype)
        mask = tf.logical_and(values >= 0, values < stop - start)
        values = tf.where(mask, values, tf.zeros_like(values))
    elif offset:
        values = _widen(values, int(weight.shape[0]))
        values = values + tf.cast(offset, values.dtype)
    rows = tf.gather(weight, values)
    if mask is not None:
        rows = rows * tf.cast(mask, rows.dtype)[:, None]
    return combine(rows, ids, combiner)


def _widen(values: tf.Tensor, limit: int) -> tf.Tensor:
    """int64 ids when the largest fused row index would not fit in int32."""
    if values.dtype == tf.int32 and limit > 2**31 - 1:
        return tf.cast(values, tf.int64)
    return values


def combine(rows: tf.Tensor, ids: Ids, combiner: str | None) -> tf.Tensor:
    """Reduce looked-up rows [n_ids, width] to one row per sample."""
    width = rows.shape[-1]
    if ids.lengths is None:
        if ids.hotness == 1:
            return rows
        stacked = tf.reshape(rows, [-1, ids.hotness, width])
        total = tf.reduce_sum(stacked, axis=1)
        return total / ids.hotness if combiner == "mean" else total
    lengths = tf.cast(ids.lengths, tf.int32)
    batch = tf.shape(lengths)[0]
    segments = tf.repeat(tf.range(batch), lengths)
    total = tf.math.unsorted_segment_sum(rows, segments, batch)
    if combiner == "mean":
        total = tf.math.divide_no_nan(total, tf.cast(lengths, total.dtype)[:, None])
    return total


def zeros_for(ids: Ids, width: int, dtype: tf.DType) -> tf.Tensor:
    """The output of a lookup into an empty row slice: nothing held, so all zeros."""
    return tf.zeros([ids.batch_size(), width], dtype)
