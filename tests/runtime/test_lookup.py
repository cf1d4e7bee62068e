"""runtime.lookup in one process: row numbers past int32, id problems, id bounds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime.lookup import IdProblem, Ids, describe_input, id_bounds, local_rows, lookup

pytestmark = pytest.mark.runtime

BIG = 2**31  # first row number that int32 cannot hold


def slice_lookup(ids, valid_rows, rows=4, width=3):
    """Lookup of one-hot ``ids`` into a slice holding global rows valid_rows (row i = i+1)."""
    weight = tf.Variable(np.arange(1, rows + 1, dtype=np.float32)[:, None] * np.ones(width))
    return lookup(weight, Ids(ids, None, 1), None, valid_rows=valid_rows).numpy()[:, 0]


@pytest.mark.parametrize("start", [BIG + 3, 2 * BIG + 3, 2**40])
def test_int32_ids_never_reach_a_slice_past_int32(start):
    # Every int32 id is below the slice: all rows zero, none a hit after wrapping around
    # (start 2**32 + 3 cast to int32 is 3; start 2**31 + 3 wraps -2**31 + 3 onto it).
    ids = tf.constant([0, 3, 4, 6, 7, BIG - 1, -BIG + 3, -BIG + 5], tf.int32)
    got = slice_lookup(ids, (start, start + 4))
    np.testing.assert_array_equal(got, np.zeros(8))


def test_int32_ids_into_a_slice_across_int32():
    ids = tf.constant([BIG - 2, BIG - 1, 0, BIG - 3], tf.int32)
    np.testing.assert_array_equal(slice_lookup(ids, (BIG - 2, BIG + 2)), [1, 2, 0, 0])


def test_int64_ids_into_a_slice_past_int32():
    ids = tf.constant([BIG + 3, BIG + 6, 7, BIG + 7, -1], tf.int64)
    np.testing.assert_array_equal(slice_lookup(ids, (BIG + 3, BIG + 7)), [1, 4, 0, 0, 0])


def test_slice_mean_divides_by_the_full_id_count():
    weight = tf.Variable([[2.0], [4.0]])
    ids = Ids(tf.constant([BIG + 1, 0, BIG + 2, BIG + 1], tf.int64), None, 2)
    got = lookup(weight, ids, "mean", valid_rows=(BIG + 1, BIG + 3)).numpy()[:, 0]
    np.testing.assert_allclose(got, [1.0, 3.0])


def test_slice_gathers_and_updates_only_the_ids_it_holds():
    # Ragged, mean: sample 0 holds ids 5 (in the slice) and 1; sample 1 ids 6, 6, 7.
    weight = tf.Variable([[10.0], [20.0]])  # global rows 5 and 6
    ids = Ids(tf.constant([5, 1, 6, 6, 7], tf.int32), tf.constant([2, 3]), None)
    with tf.GradientTape() as tape:
        got = lookup(weight, ids, "mean", valid_rows=(5, 7))
    np.testing.assert_allclose(got.numpy()[:, 0], [10.0 / 2, 40.0 / 3])
    grad = tape.gradient(got, weight)
    assert isinstance(grad, tf.IndexedSlices)
    np.testing.assert_array_equal(grad.indices.numpy(), [0, 1, 1])  # three held ids only
    np.testing.assert_allclose(grad.values.numpy()[:, 0], [1 / 2, 1 / 3, 1 / 3])


def test_fused_offset_past_int32_widens_int32_ids():
    values = tf.constant([0, 5, BIG - 1], tf.int32)
    indices, mask = local_rows(values, weight_rows=2 * BIG + 10, offset=BIG + 3)
    assert mask is None
    assert indices.dtype == tf.int64
    np.testing.assert_array_equal(indices.numpy(), [BIG + 3, BIG + 8, 2 * BIG + 2])


def test_small_offsets_keep_int32():
    indices, _ = local_rows(tf.constant([1, 2], tf.int32), weight_rows=40, offset=20)
    assert indices.dtype == tf.int32
    np.testing.assert_array_equal(indices.numpy(), [21, 22])


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
