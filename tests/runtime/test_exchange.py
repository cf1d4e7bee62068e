"""Parts packed into one payload come back bit for bit, and gradients travel back alike.

No collective here: a payload packed for two ranks is unpacked as if rank 0 and rank 1
had each sent the block they are meant to receive.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

import tensorflow as tf

from runtime import exchange
from runtime.lookup import Ids

pytestmark = pytest.mark.runtime

RECORD = tf.constant([0, 1, -1, 2**31 - 1, -(2**31), 7], tf.int32)  # 1: a denormal's bits
FLOATS = tf.constant([1.5, -2.25e-40, 3.0e38, -0.0, 1e-45], tf.float32)
NORMAL = tf.constant([1.5, -2.5e30, 3.0e38, -0.0], tf.float32)


@pytest.mark.parametrize("payload", [tf.float32, tf.float16, tf.bfloat16, tf.float64, tf.int64])
def test_record_survives_any_payload(payload):
    packed, splits = exchange.pack([[RECORD], [RECORD]], payload)
    assert packed.dtype == payload
    heads = exchange.heads(packed, splits, int(RECORD.shape[0]), tf.int32)
    np.testing.assert_array_equal(heads.numpy(), [RECORD.numpy()] * 2)


@pytest.mark.parametrize(
    ("payload", "values"),
    [
        (tf.float32, FLOATS),
        (tf.float16, FLOATS),  # bit-cast: even denormals survive
        (tf.bfloat16, FLOATS),
        (tf.float64, NORMAL),  # cast, which flushes denormals as TensorFlow ops on CPU do
    ],
)
def test_float32_parts_come_back_bit_for_bit(payload, values):
    packed, splits = exchange.pack([[RECORD, values], [RECORD]], payload)
    first = exchange.skip_head(exchange.by_source(packed, splits, 2)[0], 6, tf.int32)
    (back,) = exchange.unpack(first, [(tf.float32, int(values.shape[0]))])
    assert back.numpy().tobytes() == values.numpy().tobytes()


@pytest.mark.parametrize("payload", [tf.float32, tf.float16])
def test_gradient_travels_back_as_the_values_travelled(payload):
    rows = tf.Variable([[1.0, 2.0], [3.0, 4.0]])  # [world_size, n]: row r to rank r
    weights = tf.constant([[10.0, 20.0], [30.0, 40.0]])
    with tf.GradientTape() as tape:
        packed, splits = exchange.pack_rows([rows], payload)
        blocks = exchange.by_source(packed, splits, 2)
        back = [exchange.unpack(block, [(tf.float32, 2)])[0] for block in blocks]
        loss = tf.reduce_sum(tf.stack(back) * weights)
    np.testing.assert_array_equal(tf.stack(back).numpy(), rows.numpy())
    np.testing.assert_array_equal(tape.gradient(loss, rows).numpy(), weights.numpy())


def test_ids_of_ragged_and_dense_inputs_unpack_per_source():
    # Two sources, local batch 2: input 0 two-hot, input 1 ragged.
    local = [
        [Ids(tf.constant([1, 2, 3, 4]), None, 2),
         Ids(tf.constant([5, 6, 7]), tf.constant([1, 2]), None)],
        [Ids(tf.constant([8, 9, 10, 11]), None, 2),
         Ids(tf.constant([12]), tf.constant([0, 1]), None)],
    ]
    blocks = [tf.concat(exchange.id_parts(inputs), 0) for inputs in local]
    dense, ragged = exchange.unpack_ids(blocks, [2, None], tf.constant(2))
    np.testing.assert_array_equal(dense.values.numpy(), [1, 2, 3, 4, 8, 9, 10, 11])
    np.testing.assert_array_equal(ragged.values.numpy(), [5, 6, 7, 12])
    np.testing.assert_array_equal(ragged.lengths.numpy(), [1, 2, 0, 1])
