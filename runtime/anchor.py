"""The exchange anchor: a hidden, empty variable that keeps every rank in the backward pass.

The gradient of the embedding exchange is an all-to-all that every rank must make. A
gradient tape computes an op's gradient only when the op lies between the loss and a
source, so a rank whose own variables feed nothing into the exchange (it serves no
input and holds no rows) would skip it while the others wait forever. The layer
therefore reads a variable of zero elements into the exchange on every rank; asking
for its gradient puts the exchange's gradient on every rank's path.

The anchor is not a weight of the layer: it is created with ``tf.Variable``, outside
Keras' tracking (no ``add_weight``), so ``weights``, ``trainable_weights`` and
``get_weights`` never show it, and the training wrappers add it to the sources
themselves. They find it among the variables the tape watched (a trainable variable
read under a tape is watched), and consume its gradient with an assignment: a stateful
op, which ``tf.function`` always runs, so the gradient all-to-all (which Horovod
registers as stateless) is never pruned.
"""

from __future__ import annotations

import tensorflow as tf

from runtime.slots import mark_local


def create_anchor(name: str) -> tf.Variable:
    """A trainable float32 variable of shape [0], marked local and as an anchor."""
    with tf.init_scope():
        anchor = tf.Variable(tf.zeros([0], tf.float32), trainable=True, name=name)
    mark_local(anchor)
    anchor.de_anchor = True
    return anchor


def watched_anchors(tape: tf.GradientTape, sources: list) -> list[tf.Variable]:
    """The anchors ``tape`` watched that are not among ``sources`` already."""
    given = {id(source) for source in sources}
    return [
        var
        for var in tape.watched_variables()
        if getattr(var, "de_anchor", False) and id(var) not in given
    ]


def consume(anchors: list[tf.Variable], gradients: list) -> None:
    """Use each anchor's (empty) gradient in a stateful op, so that it is computed."""
    for anchor, gradient in zip(anchors, gradients, strict=True):
        if gradient is not None:
            gradient = tf.cast(tf.convert_to_tensor(gradient), anchor.dtype)
            anchor.assign_add(tf.reshape(gradient, [0]))
