"""runtime.weights.host_view: a variable in host memory read without a copy, safely."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from runtime.weights import host_view

pytestmark = pytest.mark.runtime


def served_variable(dtype=tf.float32) -> tf.Variable:
    """A 6 x 3 variable (row i = i) that has served a gather, as in training: from then
    on TensorFlow copies it whole on a plain read."""
    var = tf.Variable(tf.cast(tf.range(6)[:, None] * tf.ones([1, 3], tf.int32), dtype))
    tf.gather(var, [0, 5])
    return var


def test_a_served_variable_is_copied_by_a_plain_read():
    # The premise: without host_view, each read of a served variable is a fresh copy.
    var = served_variable()
    assert not np.shares_memory(np.asarray(var.read_value()), np.asarray(var.read_value()))


def test_the_view_is_the_variable_itself_and_read_only():
    var = served_variable()
    first, second = host_view(var), host_view(var)
    assert np.shares_memory(first, second)  # no copy: both are the variable's buffer
    np.testing.assert_array_equal(first, np.arange(6)[:, None] * np.ones((1, 3)))
    assert not first.flags.writeable


def test_an_update_while_a_view_lives_leaves_the_view_unchanged():
    var = served_variable()
    view = host_view(var)
    var.scatter_update(tf.IndexedSlices(tf.fill([1, 3], 9.0), [2]))  # training's kind of write
    np.testing.assert_array_equal(view[2], [2, 2, 2])  # what was saved stays consistent
    np.testing.assert_array_equal(var[2].numpy(), [9, 9, 9])
    assert not np.shares_memory(view, host_view(var))  # the update got a buffer of its own


def test_lookups_and_updates_after_a_view_work_as_before():
    var = served_variable()
    host_view(var)  # taken and dropped, as after a save
    var.scatter_add(tf.IndexedSlices(tf.ones([2, 3]), [1, 4]))
    np.testing.assert_array_equal(tf.gather(var, [1, 4, 0]).numpy()[:, 0], [2, 5, 0])
    np.testing.assert_array_equal(host_view(var)[:, 1], [0, 2, 2, 3, 5, 5])


def test_bfloat16_bits_are_viewed_as_stored():
    var = served_variable(tf.bfloat16)
    bits = host_view(var).view(np.uint16)
    # bfloat16 is the high half of float32: 3.0 is 0x4040.
    assert bits[3, 0] == 0x4040


def test_a_variable_on_a_gpu_gets_no_view():
    # Reading a GPU variable means copying all of it to the host: host_view declines
    # before touching it (and the save gathers chunk by chunk instead).
    gpu = SimpleNamespace(device="/job:localhost/replica:0/task:0/device:GPU:0")
    assert host_view(gpu) is None
