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


def bucket(ids: Ids, rows: tuple[int, int]) -> Ids:
    """The ids in rows [start, stop), in sample order, as a ragged batch of the same
    samples (lengths in the ids' dtype, which is how they travel)."""
    start, stop = rows
    wide = tf.cast(ids.values, tf.int64)
    mask = tf.logical_and(wide >= start, wide < stop)
    counts = tf.cast(mask, ids.values.dtype)
    if ids.lengths is None:
        lengths = tf.reduce_sum(tf.reshape(counts, [-1, ids.hotness]), axis=1)
    else:
        lengths = tf.reduce_sum(tf.RaggedTensor.from_row_lengths(counts, ids.lengths), axis=1)
    return Ids(tf.boolean_mask(ids.values, mask), lengths, None)


def finish(sums: tf.Tensor, ids: Ids, combiner: str | None) -> tf.Tensor:
    """A row-sliced input's output from the holders' summed partial sums and this rank's
    own ids of it (``mean``: divided by each sample's id count)."""
    return per_sample_mean(sums, ids) if combiner == "mean" else sums
