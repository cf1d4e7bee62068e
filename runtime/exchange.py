"""Collective plumbing: ids to the ranks that hold the tables, embeddings back.

Horovod matches a collective across ranks by its name. Inside ``tf.function`` an
unnamed collective is named after its input tensor, and those names depend on how many
ops a rank's graph already holds, which differs between ranks whose local tables
differ. So every collective here, forward and backward, gets an explicit name derived
from the layer's name, with the name scope ignored.

Gradients use the exact adjoint of each collective: the output all-to-all is reversed
by an all-to-all, the row-slice reduce-scatter (a sum) by a plain all-gather. Horovod's
own gradient for a summing reduce-scatter multiplies by the world size, which would
make row-sliced tables learn ``size`` times too fast, hence the custom gradients.
"""

from __future__ import annotations

import horovod.tensorflow as hvd
import tensorflow as tf

from runtime.lookup import Ids


def _named(name: str) -> dict:
    return {"name": name, "ignore_name_scope": True}


def alltoall(
    tensor: tf.Tensor, splits: tf.Tensor, name: str, issued: list[tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor]:
    """Non-differentiable all-to-all (for ids): returns (received, received splits).

    It starts after the collectives in ``issued`` and is appended to it.
    """
    tensor = _after(tensor, issued[-1] if issued else None)
    received, received_splits = hvd.alltoall(
        tensor, splits=tf.cast(splits, tf.int32), **_named(name)
    )
    issued.append(received)
    return received, received_splits


def return_embeddings(
    packed: tf.Tensor | None,
    row_parts: list[tf.Tensor],
    world_size: int,
    name: str,
    anchor: tf.Tensor,
    after: list[tf.Tensor],
) -> tuple[tf.Tensor | None, list[tf.Tensor]]:
    """Send looked-up embeddings back to the ranks that own the samples, in one step.

    ``packed`` (table-parallel lookups, see :func:`pack_outputs`) goes through an
    all-to-all; the row-slice partial results [global_batch, width] are placed side by
    side and summed over ranks and scattered by samples in one reduce-scatter (one
    collective however many row-sliced inputs; their gradients likewise come back in
    one all-gather). Returns (received embeddings, row-slice outputs).

    All of it is one differentiable function so that the backward collectives run in
    one fixed order on every rank. Eagerly, Horovod pairs collectives by the order in
    which ranks issue them, and the order in which a gradient tape visits separate ops
    depends on each rank's own graph, which differs between ranks.

    Two more measures keep every rank issuing the same collectives:

    * ``anchor`` (a scalar read from a local variable, zero) is added to every input,
      so a gradient tape records this function on every rank, even on a rank whose
      inputs would otherwise not depend on any variable (no table-parallel piece, an
      empty row slice). Without it that rank would skip the backward collectives;
    * Horovod's ops are not stateful, so inside ``tf.function`` a collective whose
      result a rank does not use would be pruned on that rank alone. All results are
      tied together with data dependencies (:func:`_depending_on`), and the inputs
      depend on ``after`` (the earlier collectives of the layer) the same way.
    """
    has_packed = packed is not None
    row_widths = [int(part.shape[1]) for part in row_parts]
    tensors = ([packed] if has_packed else []) + list(row_parts)
    if not tensors:
        return None, []
    tensors = [t + tf.cast(anchor, t.dtype) for t in tensors]
    if after:
        tensors = [_depending_on(t, after) for t in tensors]

    @tf.custom_gradient
    def _exchange(*inputs):
        outputs, received_splits = [], None
        rest = list(inputs)
        if has_packed:
            share = tf.shape(rest[0], out_type=tf.int32)[0] // world_size
            received, received_splits = hvd.alltoall(
                rest.pop(0), splits=tf.fill([world_size], share), **_named(name)
            )
            outputs.append(received)
        if rest:  # every row-sliced output in one reduce-scatter, side by side
            stacked = _after(tf.concat(rest, axis=1), outputs[-1] if outputs else None)
            summed = hvd.reducescatter(stacked, op=hvd.Sum, **_named(f"{name}_rows"))
            outputs.extend(tf.split(summed, row_widths, axis=1))
        outputs = _tied(outputs)

        def _grad(*upstream):
            upstream = [
                tf.zeros_like(out) if grad is None else tf.convert_to_tensor(grad)
                for grad, out in zip(upstream, outputs, strict=True)
            ]
            grads = []
            if has_packed:
                back, _ = hvd.alltoall(
                    upstream.pop(0), splits=received_splits, **_named(f"{name}_grad")
                )
                grads.append(back)
            if upstream:
                stacked = _after(tf.concat(upstream, axis=1), grads[-1] if grads else None)
                gathered = hvd.allgather(stacked, **_named(f"{name}_rows_grad"))
                grads.extend(tf.split(gathered, row_widths, axis=1))
            return _tied(grads)

        return outputs, _grad

    outputs = list(_exchange(*tensors))
    received = outputs.pop(0) if has_packed else None
    return received, outputs


def _after(tensor: tf.Tensor, previous: tf.Tensor | None) -> tf.Tensor:
    """``tensor``, available only after ``previous``: collectives issued in a fixed order.

    Inside ``tf.function`` independent collectives may otherwise start in any order,
    and a different order on each rank.
    """
    return tensor if previous is None else _depending_on(tensor, [previous])


def _tied(tensors: list[tf.Tensor]) -> list[tf.Tensor]:
    """The same tensors, each computed only once all of them are: if one is used, all run."""
    return [_depending_on(t, tensors) for t in tensors]


def _depending_on(tensor: tf.Tensor, others: list[tf.Tensor]) -> tf.Tensor:
    """``tensor`` unchanged, but with a data dependency on each of ``others``.

    A control dependency is not enough: Horovod's ops are registered as stateless, and
    Grappler turns a stateless op whose output only feeds control edges into a no-op.
    A rank that does not use a collective's result (a rank serving no inputs ignores
    the ids it receives) would then skip the collective while the others wait for it.
    ``min(size(x), 0)`` is always zero, but no optimizer can know that, so it keeps a
    real data edge from every ``x``.
    """
    zero = tf.add_n([tf.minimum(tf.size(other, out_type=tf.int32), 0) for other in others])
    return tensor + tf.cast(zero, tensor.dtype)


def allgather(tensor: tf.Tensor, name: str, issued: list[tf.Tensor] | None = None) -> tf.Tensor:
    """Concatenate every rank's tensor along dimension 0, in rank order (no gradient).

    With ``issued``, it starts after those collectives and is appended to them.
    """
    if issued is None:
        return hvd.allgather(tensor, **_named(name))
    tensor = _after(tensor, issued[-1] if issued else None)
    gathered = hvd.allgather(tensor, **_named(name))
    issued.append(gathered)
    return gathered


# --- ids: data-parallel -> model-parallel -------------------------------------------


def pack_ids(per_destination: list[list[Ids]], dtype: tf.DType) -> tuple[tf.Tensor, tf.Tensor]:
    """One flat id tensor and its per-rank split sizes for the id all-to-all.

    For each destination rank, the ids of the inputs it serves, in its order. Dense ids
    travel as they are (the receiver knows their hotness from its own copy of the
    input); ragged ids are preceded by their per-sample lengths.
    """
    blocks, sizes = [], []
    for inputs in per_destination:
        parts = []
        for ids in inputs:
            if ids.lengths is not None:
                parts.append(tf.cast(ids.lengths, dtype))
            parts.append(tf.cast(ids.values, dtype))
        block = tf.concat(parts, 0) if parts else tf.zeros([0], dtype)
        blocks.append(block)
        sizes.append(tf.shape(block, out_type=tf.int32)[0])
    return tf.concat(blocks, 0), tf.stack(sizes)


def unpack_ids(
    received: tf.Tensor,
    received_splits: tf.Tensor,
    hotness: list[int | None],
    local_batch: tf.Tensor,
    world_size: int,
) -> list[Ids]:
    """Rebuild this rank's inputs over the global batch from every rank's block.

    ``hotness[i]`` is this rank's i-th served input's hotness (None: ragged). Every
    rank sent ``local_batch`` samples per input (checked beforehand), so sample order
    in the result is rank 0's samples, then rank 1's, and so on.
    """
    per_source = tf.split(received, received_splits, num=world_size)
    values: list[list[tf.Tensor]] = [[] for _ in hotness]
    lengths: list[list[tf.Tensor]] = [[] for _ in hotness]
    for block in per_source:
        start = tf.constant(0, tf.int32)
        for i, k in enumerate(hotness):
            if k is None:
                row_lengths = block[start : start + local_batch]
                start += local_batch
                count = tf.cast(tf.reduce_sum(row_lengths), tf.int32)
                lengths[i].append(row_lengths)
            else:
                count = local_batch * k
            values[i].append(block[start : start + count])
            start += count
    return [
        Ids(tf.concat(values[i], 0), tf.concat(lengths[i], 0) if k is None else None, k)
        for i, k in enumerate(hotness)
    ]


# --- embeddings: model-parallel -> data-parallel ------------------------------------


def pack_outputs(outputs: list[tf.Tensor], world_size: int, dtype: tf.DType) -> tf.Tensor:
    """Lay out [global_batch, width] outputs so that rank r's block holds its samples.

    Block r is, for each output in order, rows r*b..(r+1)*b-1 flattened. The outputs
    are already in ``dtype``, which only an empty result needs.
    """
    if not outputs:
        return tf.zeros([0], dtype)
    rows = [tf.reshape(out, [world_size, -1]) for out in outputs]
    return tf.reshape(tf.concat(rows, axis=1), [-1])


def unpack_outputs(received: tf.Tensor, widths: list[int]) -> list[tf.Tensor]:
    """Split the received embeddings into [local_batch, width] pieces in worker order."""
    total = sum(widths)
    batch = tf.shape(received, out_type=tf.int32)[0] // total
    sizes = batch * tf.constant(widths, tf.int32)
    pieces = tf.split(received, sizes, num=len(widths))
    return [tf.reshape(piece, [batch, width]) for piece, width in zip(pieces, widths, strict=True)]
