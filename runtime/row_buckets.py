"""A row-sliced input's ids, bucketed by the rank holding their rows.

Each rank holding rows of a row-sliced table receives, from every rank, only the ids
that fall in its rows, with how many of them each sample has (a ragged batch), so it
reads and looks up its share of the ids, not all of them (TorchRec's row-wise sharding
buckets ids the same way). It sends back per-sample partial *sums*; the rank the
samples belong to adds the holders' sums and divides by its own id counts for a
``mean``, since no holder knows how many of a sample's ids the others got.
"""

from __future__ import annotations

import tensorflow as tf

from runtime.lookup import Ids, per_sample_mean


def buckets(ids: Ids, starts: list[int]) -> list[Ids]:
    """The ids bucketed by holder, in holder order: the holders hold consecutive row
    ranges from ``starts[0]`` on, holder j from ``starts[j]``. Each bucket keeps the ids in
    sample order, as a ragged batch of the same samples (lengths in the ids' dtype,
    which is how they travel). A few ops per input whatever the number of holders.

    An id outside the table lands in the first or last bucket; the input check fails
    the call on every rank before any lookup reads it.
    """
    count = len(starts)
    if count == 1:
        return [Ids(ids.values, _lengths(ids), None)]
    edges = tf.constant(starts[1:], tf.int64)
    holder = tf.searchsorted(edges, tf.cast(ids.values, tf.int64), side="right", out_type=tf.int32)
    values = tf.dynamic_partition(ids.values, holder, count)
    batch = ids.batch_size()
    if ids.lengths is None:
        samples = tf.range(tf.size(ids.values, out_type=tf.int32)) // ids.hotness
    else:
        samples = tf.repeat(tf.range(batch), tf.cast(ids.lengths, tf.int32))
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(ids.values), samples * count + holder, batch * count
    )
    counts = tf.reshape(counts, [batch, count])
    return [Ids(values[j], counts[:, j], None) for j in range(count)]


def _lengths(ids: Ids) -> tf.Tensor:
    """Ids per sample, in the ids' dtype."""
    if ids.lengths is not None:
        return tf.cast(ids.lengths, ids.values.dtype)
    return tf.fill([ids.batch_size()], tf.cast(ids.hotness, ids.values.dtype))


def finish(sums: tf.Tensor, ids: Ids, combiner: str | None) -> tf.Tensor:
    """A row-sliced input's output from the holders' summed partial sums and this rank's
    own ids of it (``mean``: divided by each sample's id count)."""
    return per_sample_mean(sums, ids) if combiner == "mean" else sums
