"""Optimizer slots of local variables are local, for both Keras optimizer families."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

import tensorflow as tf

from runtime.horovod_patches import is_local, mark_local

pytestmark = pytest.mark.runtime

legacy = tf.keras.optimizers.legacy

OPTIMIZERS = {
    "sgd_momentum": lambda: tf.keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: tf.keras.optimizers.Adam(amsgrad=True),
    "adagrad": lambda: tf.keras.optimizers.Adagrad(),
    "ftrl": lambda: tf.keras.optimizers.Ftrl(),
    "legacy_sgd_momentum": lambda: legacy.SGD(0.1, momentum=0.9),
    "legacy_adam": lambda: legacy.Adam(),
    "legacy_adagrad": lambda: legacy.Adagrad(),
    "legacy_loss_scale": lambda: tf.keras.mixed_precision.LossScaleOptimizer(legacy.Adam()),
    "loss_scale": lambda: tf.keras.mixed_precision.LossScaleOptimizer(tf.keras.optimizers.Adam()),
}


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_slots_follow_their_variable(name, traced):
    # Same variable name on purpose: slots are told apart by their variable, not by name.
    local = tf.Variable(tf.ones([3, 2]), name="table")
    mark_local(local)
    shared = tf.Variable(tf.ones([5, 2]), name="table")
    optimizer = OPTIMIZERS[name]()

    def step():
        optimizer.apply_gradients([(tf.ones([3, 2]), local), (tf.ones([5, 2]), shared)])

    (tf.function(step) if traced else step)()
    variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
    local_slots = [v for v in variables if v.shape == [3, 2]]
    shared_slots = [v for v in variables if v.shape == [5, 2]]
    assert local_slots and len(local_slots) == len(shared_slots)
    assert all(is_local(v) for v in local_slots)
    assert not any(is_local(v) for v in shared_slots)
    assert not any(is_local(v) for v in variables if v.shape.rank == 0)  # iterations etc.
    assert is_local(local) and not is_local(shared)
