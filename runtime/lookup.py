"""Embedding lookups with a combiner, for every id layout the layer accepts.

All lookups in the runtime (data-parallel tables, fused table-parallel weights and
row slices) go through :func:`lookup`, so one-hot, multi-hot and ragged ids are
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

    def batch_size(self) -> tf.Tensor:
        """Number of samples, as an int32 scalar (dynamic when the batch is)."""
        if self.lengths is not None:
            return tf.shape(self.lengths, out_type=tf.int32)[0]
        return tf.shape(self.values, out_type=tf.int32)[0] // self.hotness


ID_DTYPES = (tf.int32, tf.int64)


@dataclass(frozen=True)
class IdProblem:
    """Why a tensor cannot be used as ids: a kind and one number.

    Two integers, so a rank can put its problem in its input-check record and every
    rank can print the same message (see :mod:`runtime.checks`).
    """

    kind: int
    arg: int = 0

    NOT_A_TENSOR = 1
    SPARSE = 2
    DTYPE = 3  # arg: the dtype's enum
    RAGGED_SHAPE = 4  # arg: the ragged tensor's rank
    DENSE_SHAPE = 5  # arg: the tensor's rank, -1 when unknown

    def text(self) -> str:
        if self.kind == self.NOT_A_TENSOR:
            return "ids must be a tensor or a tf.RaggedTensor"
        if self.kind == self.SPARSE:
            return "sparse ids are not supported; pass a tf.RaggedTensor"
        if self.kind == self.DTYPE:
            return f"ids must be int32 or int64, got {tf.as_dtype(self.arg).name}"
        if self.kind == self.RAGGED_SHAPE:
            return f"ragged ids must be 2-D, [batch, (ids)], got a {self.arg}-D ragged tensor"
        if self.kind == self.DENSE_SHAPE:
            got = {-1: "a tensor of unknown rank", 2: "[batch, None]"}.get(
                self.arg, f"a {self.arg}-D tensor"
            )
            return f"ids must be [batch] or [batch, hotness] with a static hotness, got {got}"
        return f"unusable ids (problem {self.kind})"


def describe_input(inp) -> tuple[IdProblem | None, int | None]:
    """Why ``inp`` cannot be used as ids (or None), and its static hotness (None: ragged).

    Computed from static information only, so it never fails inside a traced function.
    """
    if isinstance(inp, tf.SparseTensor):
        return IdProblem(IdProblem.SPARSE), None
    if not isinstance(inp, tf.RaggedTensor) and not tf.is_tensor(inp):
        return IdProblem(IdProblem.NOT_A_TENSOR), None
    if inp.dtype not in ID_DTYPES:
        return IdProblem(IdProblem.DTYPE, inp.dtype.as_datatype_enum), None
    if isinstance(inp, tf.RaggedTensor):
        if inp.shape.rank != 2 or inp.ragged_rank != 1:
            return IdProblem(IdProblem.RAGGED_SHAPE, inp.shape.rank), None
        return None, None
    rank = inp.shape.rank
    if rank == 1:
        return None, 1
    if rank == 2 and inp.shape[1] is not None:
        return None, int(inp.shape[1])
    return IdProblem(IdProblem.DENSE_SHAPE, -1 if rank is None else rank), None


def id_bounds(inp) -> tuple[tf.Tensor, tf.Tensor]:
    """The smallest and largest id of a (validated) id tensor, as int64 scalars.

    An empty tensor gives (dtype max, dtype min), which no range check flags.
    """
    values = inp.flat_values if isinstance(inp, tf.RaggedTensor) else inp
    return (
        tf.cast(tf.reduce_min(values), tf.int64),
        tf.cast(tf.reduce_max(values), tf.int64),
    )


def to_ids(inp) -> Ids:
    """Flatten a [batch], [batch, k] or ragged [batch, (k)] id tensor (already validated)."""
    if isinstance(inp, tf.RaggedTensor):
        return Ids(inp.values, inp.row_lengths(), None)
    hotness = 1 if inp.shape.rank == 1 else int(inp.shape[1])
    return Ids(tf.reshape(inp, [-1]), None, hotness)


def lookup(weight: tf.Variable, ids: Ids, combiner: str | None, offset: int = 0) -> tf.Tensor:
    """Rows of ``weight`` for ``ids + offset``, combined per sample: [batch, width].

    A positive ``offset`` reads a table stacked at that row of a fused weight; a
    negative one reads a row slice holding global rows from ``-offset`` on, which only
    ever receives ids in its rows (the senders bucket them, :mod:`runtime.row_buckets`).

    Ids must lie in what ``weight`` holds; the layer checks its inputs against their
    tables before any lookup (see :mod:`runtime.checks`), this function does not.
    """
    indices = local_rows(ids.values, int(weight.shape[0]), offset)
    return combine(tf.gather(weight, indices), ids, combiner)


def local_rows(values: tf.Tensor, weight_rows: int, offset: int = 0) -> tf.Tensor:
    """Row indices into a local weight of ``weight_rows`` rows for ids: ``id + offset``.

    The arithmetic is done in int64 whenever an id or a row number involved does not
    fit in int32 (a fused weight past 2**31 rows, a slice starting past it), so int32
    ids never wrap.
    """
    if not offset:
        return values
    values = _widen(values, max(weight_rows, weight_rows - offset))
    return values + tf.cast(offset, values.dtype)


def _widen(values: tf.Tensor, limit: int) -> tf.Tensor:
    """int64 ids when a row number up to ``limit`` would not fit in int32."""
    if values.dtype == tf.int32 and limit > 2**31 - 1:
        return tf.cast(values, tf.int64)
    return values


def combine(rows: tf.Tensor, ids: Ids, combiner: str | None) -> tf.Tensor:
    """Reduce looked-up rows [n_ids, width] to one row per sample."""
    if ids.lengths is None:
        if ids.hotness == 1:
            return rows
        total = tf.reduce_sum(tf.reshape(rows, [-1, ids.hotness, rows.shape[-1]]), axis=1)
    else:
        total = sum_per_sample(rows, _samples(ids), ids.batch_size())
    return per_sample_mean(total, ids) if combiner == "mean" else total


def sum_per_sample(rows: tf.Tensor, samples: tf.Tensor, batch: tf.Tensor | int) -> tf.Tensor:
    """``rows`` added up by sample ([batch, width]); ``samples`` gives each row's sample,
    in sample order (as ragged ids list them).

    A sorted segment sum, padded with zero rows for the last samples without ids: its
    gradient is a plain gather of the output gradient. ``unsorted_segment_sum``'s
    gradient allows for negative segment ids (rows to drop) and pays for it on every
    step: it gathers, then selects against a zeros tensor as large as ``rows``.
    """
    total = tf.math.segment_sum(rows, samples)
    missing = tf.cast(batch, tf.int32) - tf.shape(total, out_type=tf.int32)[0]
    return tf.pad(total, [[0, missing], [0, 0]])


def _samples(ids: Ids) -> tf.Tensor:
    """The sample of each of a ragged batch's ids."""
    return tf.repeat(tf.range(ids.batch_size()), tf.cast(ids.lengths, tf.int32))


def per_sample_mean(total: tf.Tensor, ids: Ids) -> tf.Tensor:
    """Per-sample sums divided by the samples' id counts (an empty sample stays zero)."""
    if ids.lengths is None:
        return total / ids.hotness
    return tf.math.divide_no_nan(total, tf.cast(ids.lengths, total.dtype)[:, None])
