"""The rest of the model (dense layers) and its optimizer state, for checkpoints.

``tf.train.Checkpoint(model=model, optimizer=optimizer)`` does not fit a model with a
distributed embedding: it would save every rank's table pieces, and a Keras 2.15
optimizer saves its slots by position in one list, so under another plan (other
pieces, other variables) the dense layers' slots would be read into the wrong
variables. :class:`DenseState` holds only the variables outside distributed embedding
layers, each with its optimizer slots, under names that depend on neither: the
variable's position among the model's dense variables and the slot's name.
"""

from __future__ import annotations

import tensorflow as tf

from runtime import slots
from runtime.layer import DistributedEmbedding

DENSE_DIR = "dense"
DENSE_PREFIX = f"{DENSE_DIR}/state"


class DenseState:
    """The model's variables outside distributed embeddings, with their optimizer state.

    Build it after the model (its variables must exist). With ``optimizer``, its slots
    for the model are created now if they do not exist yet (as its first step would),
    so they can be saved and restored; its step count is included.

    Pass it as ``dense=`` to ``save_checkpoint``/``restore_checkpoint``, or use
    :meth:`write` and :meth:`read` like a ``tf.train.Checkpoint``.
    """

    def __init__(self, model: tf.keras.Model, optimizer=None):
        embedding = {
            var.ref()
            for layer in model.submodules
            if isinstance(layer, DistributedEmbedding)
            for var in layer.variables
        }
        dense = [var for var in model.variables if var.ref() not in embedding]
        if optimizer is not None:
            slots.create_slots(optimizer, model.trainable_variables)
        self.variables: dict[str, tf.Variable] = {}
        for i, var in enumerate(dense):
            self.variables[f"variable_{i:04d}"] = var
            if optimizer is not None:
                for name, slot in slots.slots_of(optimizer, var).items():
                    self.variables[f"variable_{i:04d}/{name}"] = slot
        if optimizer is not None:
            self.variables["optimizer/iterations"] = optimizer.iterations
        self._checkpoint = tf.train.Checkpoint(**self.variables)

    def write(self, prefix: str) -> str:
        return self._checkpoint.write(prefix)

    def read(self, prefix: str) -> None:
        self._checkpoint.read(prefix).assert_consumed()

    def problems(self, prefix: str) -> list[str]:
        """How the state saved at ``prefix`` differs from this one, before reading it."""
        try:
            saved = dict(tf.train.list_variables(prefix))
        except (tf.errors.OpError, ValueError) as exc:
            return [f"{prefix}: cannot read the dense state ({exc})"]
        problems = []
        for key, var in self.variables.items():
            stored = _escape(key) + "/.ATTRIBUTES/VARIABLE_VALUE"
            if stored not in saved:
                problems.append(f"{prefix}: no {key} ({var.name}) in the saved dense state")
            elif (shape := list(saved.pop(stored))) != var.shape.as_list():
                problems.append(
                    f"{prefix}: {key} ({var.name}) is saved as {shape} but is "
                    f"{var.shape.as_list()} here; the dense model differs from the saved one"
                )
        extra = [k.split("/.ATTRIBUTES")[0] for k in saved if "/.ATTRIBUTES/" in k]
        if extra:
            problems.append(f"{prefix}: the saved dense state has {extra} that this model lacks")
        return problems


def _escape(name: str) -> str:
    """A checkpoint key as TensorFlow writes it: '.' doubled, '/' as '.S'."""
    return name.replace(".", "..").replace("/", ".S")
