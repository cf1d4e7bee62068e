"""runtime.row_buckets in one process: ids split by the rank holding their rows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime.lookup import Ids
from runtime.row_buckets import buckets, finish

pytestmark = pytest.mark.runtime

STARTS = [0, 10, 15]  # three holders: rows 0-9, 10-14, 15 on


def as_lists(found: list[Ids]) -> list[tuple[list[int], list[int]]]:
    return [(b.values.numpy().tolist(), b.lengths.numpy().tolist()) for b in found]


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_dense_ids_keep_sample_order_in_each_bucket(dtype):
    # two samples of hotness 3: [12, 3, 20] and [9, 10, 14]
    ids = Ids(tf.constant([12, 3, 20, 9, 10, 14], dtype), None, 3)
    found = buckets(ids, STARTS)
    assert as_lists(found) == [([3, 9], [1, 1]), ([12, 10, 14], [1, 2]), ([20], [1, 0])]
    assert all(b.values.dtype == dtype and b.lengths.dtype == dtype for b in found)


def test_ragged_ids_and_empty_samples():
    # samples [16], [], [1, 11, 2]
    ids = Ids(tf.constant([16, 1, 11, 2]), tf.constant([1, 0, 3], tf.int64), None)
    assert as_lists(buckets(ids, STARTS)) == [
        ([1, 2], [0, 0, 2]),
        ([11], [0, 0, 1]),
        ([16], [1, 0, 0]),
    ]


def test_one_holder_takes_everything_and_an_empty_batch_gives_empty_buckets():
    ids = Ids(tf.constant([4, 7, 5, 6]), None, 2)
    assert as_lists(buckets(ids, [0])) == [([4, 7, 5, 6], [2, 2])]
    empty = Ids(tf.zeros([0], tf.int32), None, 2)
    assert as_lists(buckets(empty, STARTS)) == [([], [])] * 3


def test_a_mean_divides_the_summed_partial_sums_by_the_sample_s_own_count():
    sums = tf.constant([[6.0, 3.0], [0.0, 0.0], [4.0, 8.0]])
    ragged = Ids(tf.constant([1, 2, 3, 4, 5]), tf.constant([3, 0, 2]), None)
    np.testing.assert_allclose(finish(sums, ragged, "mean"), [[2, 1], [0, 0], [2, 4]])
    np.testing.assert_allclose(finish(sums, ragged, "sum"), sums)
