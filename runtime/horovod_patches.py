"""Horovod's tape, optimizer, callback and broadcast, aware of model-parallel variables.

Variables the layer marks ``de_local`` hold this rank's own table pieces: they differ
between ranks, so they must never be broadcast or averaged. Everything else is
data-parallel and goes through Horovod as usual.

Optimizer slots of a local variable (momentum and the like) are local too. They are
recognised by identity, not by name (:mod:`runtime.slots`): local variables are marked
when the layer builds them, before any optimizer can create their slots.

Three more things every wrapper does:

* local variables are registered with Horovod, which divides their gradients by the
  world size (``scale_local_gradients=True``, the default). That is the right scale:
  the backward collectives sum every rank's loss into a local gradient, and the
  objective is the mean of the ranks' losses (see :mod:`runtime.layer`);
* gradient all-reduces get generic names (``grad_0``, ``grad_1``, ...). Ranks with
  different local tables build different graphs, so names derived from gradient
  tensors would not match across ranks and the all-reduces would never pair up;
* unless ``groups`` (or ``num_groups``) is given, every gradient is all-reduced in one
  grouped all-reduce (``groups=1``) instead of one all-reduce per variable: a step
  makes the same few collectives however many data-parallel tables there are. A
  grouped all-reduce takes one dtype, so gradients of mixed dtypes (a float16 table
  beside float32 ones) are all-reduced in float32 and cast back.

The wrappers keep the original names and call signatures, so switching a training
script over is a change of import.
"""

from __future__ import annotations

import inspect

import horovod.tensorflow as hvd
import horovod.tensorflow.keras as hvd_keras
import tensorflow as tf

from runtime.anchor import consume, watched_anchors
from runtime.slots import is_local, mark_local

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "DistributedGradientTape",
    "DistributedOptimizer",
    "broadcast_variables",
    "is_local",
    "mark_local",
]


def broadcast_variables(variables, root_rank: int = 0, **kwargs):
    """Broadcast data-parallel variables from ``root_rank``; local ones stay as they are.

    Works for model and optimizer variables alike: optimizer slots of local variables
    (which differ in shape between ranks) are left alone too.
    """
    shared = [var for var in variables if not is_local(var)]
    return hvd.broadcast_variables(shared, root_rank=root_rank, **kwargs)


def DistributedGradientTape(gradtape, *args, **kwargs):
    """Horovod's tape; local variables among the sources keep their own gradients.

    Local sources are registered when ``gradient`` is called, from the sources
    themselves (plus the exchange anchors the tape watched, see :mod:`runtime.anchor`),
    so the tape works however it was created (wrapped before or after the
    forward pass). ``sparse_as_dense`` defaults to True, as the embedding gradients
    of data-parallel tables are otherwise all-gathered as sparse slices.
    """
    kwargs.setdefault("sparse_as_dense", True)
    kwargs = _one_group_unless_given(hvd.DistributedGradientTape, (gradtape, *args), kwargs)
    tape = hvd.DistributedGradientTape(gradtape, *args, **kwargs)
    tape._allreduce_grads = _in_one_dtype(tape._allreduce_grads)
    horovod_gradient = tape.gradient

    @tf.autograph.experimental.do_not_convert  # plain Python over the sources: no graph code
    def gradient(target, sources, output_gradients=None, use_generic_names=True):
        flat = tf.nest.flatten(sources)
        anchors = watched_anchors(tape, flat)
        for source in flat + anchors:
            if is_local(source):
                tape.register_local_source(source)
        grads = horovod_gradient(target, flat + anchors, output_gradients, use_generic_names=True)
        consume(anchors, grads[len(flat) :])
        return tf.nest.pack_sequence_as(sources, grads[: len(flat)])

    tape.gradient = gradient
    return tape


def DistributedOptimizer(optimizer, *args, **kwargs):
    """Horovod's Keras optimizer; local variables are registered on first use.

    Like the tape, it also asks for the gradients of the exchange anchors the tape
    watched (:mod:`runtime.anchor`), and returns only those of ``var_list``.
    """
    kwargs.setdefault("sparse_as_dense", True)
    kwargs = _one_group_unless_given(hvd_keras.DistributedOptimizer, (optimizer, *args), kwargs)
    opt = hvd_keras.DistributedOptimizer(optimizer, *args, **kwargs)
    horovod_allreduce = opt._allreduce
    horovod_allreduce_grads = _in_one_dtype(opt._allreduce_grads)

    def _allreduce(grads, variables):
        for var in variables:
            if is_local(var):
                opt.register_local_var(var)
        return horovod_allreduce(grads, variables)

    def _allreduce_grads(grads, variables=None, use_generic_names=True):
        return horovod_allreduce_grads(grads, variables, use_generic_names=True)

    def _compute_gradients(loss, var_list, grad_loss=None, tape=None):
        # Keras' fit passes its tape; without one the loss is a callable, run here so
        # that the tape has watched the exchange anchors before they are looked for.
        tape = tf.GradientTape() if tape is None else tape
        if callable(loss):
            with tape:
                loss = loss()
        if callable(var_list):
            var_list = var_list()
        var_list = list(var_list)
        anchors = watched_anchors(tape, var_list)
        pairs = horovod_compute_gradients(loss, var_list + anchors, grad_loss, tape)
        consume(anchors, [grad for grad, _ in pairs[len(var_list) :]])
        return pairs[: len(var_list)]

    horovod_compute_gradients = opt._compute_gradients
    opt._allreduce = _allreduce
    opt._allreduce_grads = _allreduce_grads
    opt._compute_gradients = _compute_gradients
    return opt


def _one_group_unless_given(wrapped, args: tuple, kwargs: dict) -> dict:
    """``kwargs`` with ``groups=1`` added, unless the call already groups the gradients."""
    given = inspect.signature(wrapped).bind_partial(*args, **kwargs).arguments
    if given.get("groups") is None and not given.get("num_groups"):
        return {**kwargs, "groups": 1}
    return kwargs


def _in_one_dtype(allreduce_grads):
    """Horovod's gradient all-reduce, fed gradients of one dtype, and nothing when none.

    A grouped all-reduce takes one dtype: mixed dtypes are all-reduced in float32 and
    cast back. Horovod's grouping also fails on an empty list, which a step gets when
    every variable it trains is local.
    """

    def allreduce(grads, variables=None, use_generic_names=True):
        present = [g for g in grads if g is not None]
        if not present:
            return list(grads)
        if len({g.dtype for g in present}) == 1:
            return allreduce_grads(grads, variables, use_generic_names)
        wide = [None if g is None else tf.cast(tf.convert_to_tensor(g), tf.float32) for g in grads]
        reduced = allreduce_grads(wide, variables, use_generic_names)
        pairs = zip(grads, reduced, strict=True)
        return [None if g is None else tf.cast(r, g.dtype) for g, r in pairs]

    return allreduce


class BroadcastGlobalVariablesCallback(hvd_keras.callbacks.BroadcastGlobalVariablesCallback):
    """Broadcast data-parallel model and optimizer variables after the first batch.

    Horovod's callback also broadcasts every optimizer variable, which includes the
    slots (momentum and the like) of local variables: those differ in shape between
    ranks, so the broadcast fails or overwrites a rank's slots with another's. Here the
    slots of local variables are left alone too.
    """

    def on_batch_end(self, batch, logs=None):
        if self.broadcast_done:
            return
        with tf.device(self.device):
            broadcast_variables(self.model.variables, root_rank=self.root_rank)
            opt_vars = self.model.optimizer.variables
            opt_vars = opt_vars() if callable(opt_vars) else opt_vars
            broadcast_variables(opt_vars, root_rank=self.root_rank)
        self.broadcast_done = True
