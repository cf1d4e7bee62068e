"""Collective plumbing: every byte the layer exchanges goes through all-to-alls.

A step makes at most three collectives of its own, whatever the number of tables and
inputs: one all-to-all for ids (forward), one for embeddings (forward) and its adjoint
for their gradients (backward); with ``row_reduction: host`` one more each way, within
the hosts, for the row-sliced partial sums (``Pipeline._sum_within_host``). Each
carries several *parts* per destination rank, flattened into one payload of a single
dtype:

* ids: this rank's input record (see :mod:`runtime.agreement`), the ids of the
  table-parallel inputs the destination serves, and, for every row-sliced input whose
  table has rows on the destination, the ids that fall in those rows with their count
  per sample (:mod:`runtime.row_buckets`);
* embeddings: the destination's samples of each table-parallel output this rank
  serves, and of this rank's partial sums for the row-sliced inputs it holds rows
  for, which the destination adds up over the holders (a reduce-scatter from the
  table's group of ranks). The gradient all-to-all reverses it: each rank's output
  gradients of a row-sliced input reach the table's holders only.

No reduce-scatter, on purpose: over Gloo, Horovod's sets the TCP send buffer of the
connections it uses to the size of its first message, which turns the kernel's
buffer autotuning off for good; after a small reduce-scatter, large all-to-alls crawl
(docs/benchmarks.md). Summing received partial results locally moves the same bytes.

A part whose dtype differs from the payload's is cast when that is exact (ids checked
against their tables in the ids' payload, float32 in float64, which only flushes
denormals, as TensorFlow's CPU kernels do anyway) and otherwise bit-cast (the int32
record in a float payload, float32 row partial results in a float16 one), so nothing
is rounded.

Horovod matches a collective across ranks by its name. Inside ``tf.function`` an
unnamed collective is named after its input tensor, and those names depend on how many
ops a rank's graph already holds, which differs between ranks whose local tables
differ. So every collective here, forward and backward, gets an explicit name derived
from the layer's name, with the name scope ignored.
"""

from __future__ import annotations

import horovod.tensorflow as hvd
import tensorflow as tf

from runtime.lookup import Ids


def _named(name: str) -> dict:
    return {"name": name, "ignore_name_scope": True}


# --- parts in one payload -----------------------------------------------------------


def _bit_cast(part: tf.DType, payload: tf.DType) -> bool:
    """Whether a ``part`` travels bit-cast in a ``payload`` (else cast, which is exact).

    Integers in an integer payload are cast: ids fit it (they are checked against their
    tables, see Pipeline.id_dtype). Floats are cast only to a wider float.
    """
    if part == payload or (part.is_integer and payload.is_integer):
        return False
    widening = payload.size > part.size and payload.is_floating == part.is_floating
    int_to_double = part.is_integer and payload == tf.float64
    return not (widening or int_to_double)


def ratio(part: tf.DType, payload: tf.DType) -> int:
    """Payload elements per element of ``part``."""
    return part.size // payload.size if _bit_cast(part, payload) else 1


def _merge_last(x: tf.Tensor) -> tf.Tensor:
    """``x`` with its last two dimensions merged (a bit-cast's trailing one)."""
    return tf.reshape(x, tf.concat([tf.shape(x)[:-2], [-1]], 0))


def _bit_uncast(y: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """The ``dtype`` values bit-cast into ``y``'s last dimension."""
    parts = dtype.size // y.dtype.size
    if parts > 1:
        y = tf.reshape(y, tf.concat([tf.shape(y)[:-1], [-1, parts]], 0))
    return tf.bitcast(y, dtype)


def _encode_float(x: tf.Tensor, payload: tf.DType) -> tf.Tensor:
    """A float tensor bit-cast into the narrower float ``payload``, along its last axis.

    Its gradient decodes the gradient the same way, so a gradient travels back through
    the payload exactly as the values travelled forward.
    """
    dtype = x.dtype

    @tf.custom_gradient
    def encode_float(x):
        def grad(upstream):
            return _decode_float(upstream, dtype)

        return _merge_last(tf.bitcast(x, payload)), grad

    return encode_float(x)


def _decode_float(y: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """The ``dtype`` values :func:`_encode_float` put into ``y``."""
    payload = y.dtype

    @tf.custom_gradient
    def decode_float(y):
        def grad(upstream):
            return _encode_float(upstream, payload)

        return _bit_uncast(y, dtype), grad

    return decode_float(y)


def encode(part: tf.Tensor, payload: tf.DType) -> tf.Tensor:
    """``part`` in ``payload`` elements, :func:`ratio` of them per element of its last axis."""
    if not _bit_cast(part.dtype, payload):
        return tf.cast(part, payload)
    if part.dtype.is_floating:
        return _encode_float(part, payload)
    return _merge_last(tf.bitcast(part, payload))


def _decode(block: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """The ``dtype`` values :func:`encode` put into ``block``."""
    if not _bit_cast(dtype, block.dtype):
        return tf.cast(block, dtype)
    if dtype.is_floating:
        return _decode_float(block, dtype)
    return _bit_uncast(block, dtype)


def pack(blocks: list[list[tf.Tensor]], dtype: tf.DType) -> tuple[tf.Tensor, tf.Tensor]:
    """One flat payload and its per-rank split sizes: block r, its parts in order, to rank r.

    A part given to several ranks (the same tensor object) is encoded once.
    """
    encoded: dict[int, tf.Tensor] = {}
    flat, sizes = [], []
    for parts in blocks:
        for part in parts:
            if id(part) not in encoded:
                encoded[id(part)] = encode(tf.reshape(part, [-1]), dtype)
        block = tf.concat([encoded[id(part)] for part in parts], 0) if parts else []
        block = tf.convert_to_tensor(block, dtype)
        flat.append(block)
        sizes.append(tf.shape(block, out_type=tf.int32)[0])
    return tf.concat(flat, 0), tf.stack(sizes)


def pack_rows(parts: list[tf.Tensor], dtype: tf.DType) -> tuple[tf.Tensor, tf.Tensor]:
    """One flat payload and its split sizes from parts shaped [world_size, n]: row r of
    every part, side by side, to rank r."""
    rows = tf.concat([encode(part, dtype) for part in parts], axis=1)
    share = tf.shape(rows, out_type=tf.int32)[1]
    return tf.reshape(rows, [-1]), tf.fill(tf.shape(rows, out_type=tf.int32)[:1], share)


def unpack(block: tf.Tensor, layout: list[tuple[tf.DType, tf.Tensor | int]]) -> list[tf.Tensor]:
    """Split a received block into its parts, ``layout`` giving each part's dtype and
    element count, and decode them (flat)."""
    sizes = [tf.cast(count, tf.int32) * ratio(dtype, block.dtype) for dtype, count in layout]
    pieces = tf.split(block, tf.stack(sizes), num=len(layout))
    return [_decode(piece, dtype) for piece, (dtype, _) in zip(pieces, layout, strict=True)]


def heads(
    received: tf.Tensor, received_splits: tf.Tensor, count: int, dtype: tf.DType
) -> tf.Tensor:
    """The first ``count`` ``dtype`` values of every rank's block: [world_size, count].

    Gathered at the blocks' offsets rather than split off: a rank whose inputs failed a
    static check sends a constant record, and shape inference would evaluate split
    sizes computed from constants while the graph is built, running the all-to-all
    then, on that rank alone, and never returning.
    """
    width = count * ratio(dtype, received.dtype)
    offsets = tf.cumsum(received_splits, exclusive=True)
    index = tf.reshape(offsets[:, None] + tf.range(width, dtype=offsets.dtype)[None, :], [-1])
    return tf.reshape(_decode(tf.gather(received, index), dtype), [-1, count])


def skip_head(block: tf.Tensor, count: int, dtype: tf.DType) -> tf.Tensor:
    """``block`` without its first ``count`` ``dtype`` values."""
    return block[count * ratio(dtype, block.dtype) :]


def by_source(received: tf.Tensor, received_splits: tf.Tensor, world_size: int) -> list[tf.Tensor]:
    """The received payload cut into the blocks sent by rank 0, 1, ..."""
    return tf.split(received, received_splits, num=world_size)


# --- the collectives ----------------------------------------------------------------


def alltoall(payload: tf.Tensor, splits: tf.Tensor, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Non-differentiable all-to-all (ids): returns (received, received splits)."""
    return hvd.alltoall(payload, splits=tf.cast(splits, tf.int32), **_named(name))


def differentiable_alltoall(
    payload: tf.Tensor, splits: tf.Tensor, name: str
) -> tuple[tf.Tensor, tf.Tensor]:
    """All-to-all whose gradient is its adjoint: the upstream gradient sent back.

    Horovod's own gradient for the all-to-all would be the same; it is written here so
    that the backward collective gets an explicit name too.
    """

    @tf.custom_gradient
    def _exchange(payload):
        received, received_splits = hvd.alltoall(
            payload, splits=tf.cast(splits, tf.int32), **_named(name)
        )

        def _grad(upstream, _splits_grad=None):
            back, _ = hvd.alltoall(
                tf.convert_to_tensor(upstream), splits=received_splits, **_named(f"{name}_grad")
            )
            return back

        return (received, received_splits), _grad

    return _exchange(payload)


def depending_on(tensor: tf.Tensor, others: list[tf.Tensor | None]) -> tf.Tensor:
    """``tensor`` unchanged, but with a data dependency on each of ``others``.

    Inside ``tf.function`` independent collectives may start in any order, a different
    one on each rank, so the layer chains them with these dependencies. A control
    dependency is not enough: Horovod's ops are registered as stateless, and Grappler
    turns a stateless op whose output only feeds control edges into a no-op, so a rank
    that does not use a collective's result (a rank serving no inputs ignores the ids
    it receives) would skip the collective while the others wait for it.
    ``min(size(x), 0)`` is always zero, but no optimizer can know that, so it keeps a
    real data edge from every ``x``.
    """
    others = [other for other in others if other is not None]
    if not others:
        return tensor
    zero = tf.add_n([tf.minimum(tf.size(other, out_type=tf.int32), 0) for other in others])
    return tensor + tf.cast(zero, tensor.dtype)


# --- ids ----------------------------------------------------------------------------


def id_parts(inputs: list[Ids]) -> list[tf.Tensor]:
    """How a list of inputs' ids travel: the per-sample lengths of the ragged ones, then
    every input's ids. Dense ids need no lengths: the receiver knows their hotness from
    its own copy of the input."""
    lengths = [ids.lengths for ids in inputs if ids.lengths is not None]
    return lengths + [ids.values for ids in inputs]


def unpack_ids(
    blocks: list[tf.Tensor], hotness: list[int | None], local_batch: tf.Tensor
) -> list[Ids]:
    """Inputs over the global batch from every rank's :func:`id_parts` (records removed).

    ``hotness[i]`` is the i-th input's hotness in each block (None: ragged). Every rank
    sent ``local_batch`` samples per input (agreed beforehand), so sample order in the
    result is rank 0's samples, then rank 1's, and so on.
    """
    if not hotness:
        return []
    ragged = [i for i, k in enumerate(hotness) if k is None]
    values: list[list[tf.Tensor]] = [[] for _ in hotness]
    lengths: list[list[tf.Tensor]] = [[] for _ in hotness]
    dense_counts = [local_batch * (k or 0) for k in hotness]
    head = local_batch * len(ragged)
    for block in blocks:
        counts = list(dense_counts)
        if ragged:
            per_input = tf.reshape(block[:head], [len(ragged), local_batch])
            totals = tf.cast(tf.reduce_sum(per_input, axis=1), tf.int32)
            for j, i in enumerate(ragged):
                lengths[i].append(per_input[j])
                counts[i] = totals[j]
        pieces = tf.split(block[head:], tf.stack(counts), num=len(hotness))
        for i, piece in enumerate(pieces):
            values[i].append(piece)
    return [
        Ids(tf.concat(values[i], 0), tf.concat(lengths[i], 0) if k is None else None, k)
        for i, k in enumerate(hotness)
    ]


# --- embeddings ---------------------------------------------------------------------


def rows_for(output: tf.Tensor, rank: int, batch: tf.Tensor) -> tf.Tensor:
    """Rows ``rank * batch`` to ``(rank + 1) * batch`` of a [global_batch, width] output."""
    return output[rank * batch : (rank + 1) * batch]

