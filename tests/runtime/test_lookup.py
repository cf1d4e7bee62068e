"""runtime.lookup in one process: row numbers past int32, id problems, id bounds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime.lookup import (
    IdProblem,
    Ids,
    describe_input,
    id_bounds,
    local_rows,
    lookup,
    sum_per_sample,
)

pytestmark = pytest.mark.runtime

BIG = 2**31  # first row number that int32 cannot hold


def slice_lookup(ids, start, rows=4, width=3):
    """Lookup of one-hot ``ids`` into a slice holding global rows from ``start`` (row i = i+1)."""
    weight = tf.Variable(np.arange(1, rows + 1, dtype=np.float32)[:, None] * np.ones(width))
    return lookup(weight, Ids(ids, None, 1), None, offset=-start).numpy()[:, 0]


def test_int32_ids_into_a_slice_across_int32():
    # The slice holds global rows 2**31 - 2 to 2**31 + 1: row numbers int32 cannot hold.
    ids = tf.constant([BIG - 2, BIG - 1, BIG - 1], tf.int32)
    np.testing.assert_array_equal(slice_lookup(ids, BIG - 2), [1, 2, 2])


@pytest.mark.parametrize("start", [BIG + 3, 2 * BIG + 3, 2**40])
def test_int64_ids_into_a_slice_past_int32(start):
    ids = tf.constant([start, start + 3, start + 1], tf.int64)
    np.testing.assert_array_equal(slice_lookup(ids, start), [1, 4, 2])


def test_slice_mean_divides_by_its_own_ids():
    # A slice's lookup is a plain lookup of the ids it got; the layer divides a row-sliced
    # mean by each sample's full id count after adding up the holders' sums.
    weight = tf.Variable([[2.0], [4.0]])  # global rows 2**31 + 1 and 2**31 + 2
    ids = Ids(tf.constant([BIG + 1, BIG + 2, BIG + 1], tf.int64), tf.constant([1, 2]), None)
    got = lookup(weight, ids, "mean", offset=-(BIG + 1)).numpy()[:, 0]
    np.testing.assert_allclose(got, [2.0, 3.0])


def test_ragged_gradient_is_the_segment_sums_own():
    # Ragged, mean: sample 0 holds ids 0 and 1, sample 1 none, sample 2 ids 1, 1, 0.
    weight = tf.Variable([[10.0, 1.0], [20.0, 2.0]])
    ids = Ids(tf.constant([0, 1, 1, 1, 0], tf.int32), tf.constant([2, 0, 3]), None)
    upstream = tf.constant([[1.0, 2.0], [5.0, 5.0], [3.0, 6.0]])
    with tf.GradientTape() as tape:
        got = lookup(weight, ids, "mean")
        loss = tf.reduce_sum(got * upstream)
    np.testing.assert_allclose(got.numpy(), [[15.0, 1.5], [0.0, 0.0], [50 / 3, 5 / 3]])
    grad = tape.gradient(loss, weight)
    assert isinstance(grad, tf.IndexedSlices)  # the optimizer updates the rows read only
    np.testing.assert_array_equal(grad.indices.numpy(), [0, 1, 1, 1, 0])
    expected = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 6.0], [3.0, 6.0], [3.0, 6.0]])
    expected /= np.array([2, 2, 3, 3, 3])[:, None]
    np.testing.assert_allclose(grad.values.numpy(), expected)


def test_sum_per_sample_matches_tensorflows_segment_sum_and_gradient():
    rng = np.random.default_rng(3)
    rows = tf.constant(rng.normal(size=(9, 4)), tf.float32)
    samples = tf.constant([0, 0, 2, 2, 2, 3, 5, 5, 6], tf.int32)
    upstream = tf.constant(rng.normal(size=(9, 4)), tf.float32)  # samples 7 and 8: no ids
    results = []
    for summed in (sum_per_sample, tf.math.unsorted_segment_sum):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            out = summed(rows, samples, 9)
            loss = tf.reduce_sum(out * upstream)
        results.append((out.numpy(), tape.gradient(loss, rows).numpy()))
    assert results[0][0].shape == (9, 4)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


def test_fused_offset_past_int32_widens_int32_ids():
    values = tf.constant([0, 5, BIG - 1], tf.int32)
    indices = local_rows(values, weight_rows=2 * BIG + 10, offset=BIG + 3)
    assert indices.dtype == tf.int64
    np.testing.assert_array_equal(indices.numpy(), [BIG + 3, BIG + 8, 2 * BIG + 2])


def test_small_offsets_keep_int32():
    indices = local_rows(tf.constant([1, 2], tf.int32), weight_rows=40, offset=20)
    assert indices.dtype == tf.int32
    np.testing.assert_array_equal(indices.numpy(), [21, 22])
    indices = local_rows(tf.constant([7, 5], tf.int32), weight_rows=4, offset=-5)  # a slice
    assert indices.dtype == tf.int32
    np.testing.assert_array_equal(indices.numpy(), [2, 0])


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: tf.constant([1.0, 2.0]), "ids must be int32 or int64, got float32"),
        (lambda: tf.constant([1, 2], tf.int16), "ids must be int32 or int64, got int16"),
        (lambda: tf.zeros([2, 2, 2], tf.int32), "got a 3-D tensor"),
        (lambda: tf.constant(3), "got a 0-D tensor"),
        (
            lambda: tf.SparseTensor([[0, 0]], tf.constant([1], tf.int64), [2, 2]),
            "sparse ids are not supported",
        ),
        (
            lambda: tf.RaggedTensor.from_nested_row_lengths(
                tf.constant([1, 2, 3], tf.int32), [[1, 1], [2, 1]]
            ),
            "ragged ids must be 2-D, [batch, (ids)], got a 3-D ragged tensor",
        ),
        (lambda: [1, 2], "ids must be a tensor"),
    ],
)
def test_problems_say_what_is_wrong(make, text):
    problem, _ = describe_input(make())
    assert problem is not None
    assert text in problem.text()
    # The record carries only the two numbers: they must rebuild the same text.
    assert IdProblem(problem.kind, problem.arg).text() == problem.text()


def test_unknown_hotness_is_a_problem_inside_a_function():
    texts = []

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def describe(ids):
        problem, _ = describe_input(ids)
        texts.append(problem.text())
        return ids

    describe(tf.zeros([2, 2], tf.int32))
    assert "got [batch, None]" in texts[0]


@pytest.mark.parametrize(
    ("ids", "hotness"),
    [
        (tf.constant([1, 2], tf.int64), 1),
        (tf.constant([[1, 2, 3]], tf.int32), 3),
        (tf.ragged.constant([[1], [2, 3]], tf.int32), None),
    ],
)
def test_good_ids_have_no_problem(ids, hotness):
    assert describe_input(ids) == (None, hotness)


def test_id_bounds():
    low, high = id_bounds(tf.ragged.constant([[4, -2], [], [9]], tf.int32))
    assert (int(low), int(high)) == (-2, 9)
    low, high = id_bounds(tf.zeros([0, 3], tf.int32))  # empty: flags nothing
    assert int(low) >= 0 and int(high) < 0
