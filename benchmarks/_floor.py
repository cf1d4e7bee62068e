"""The step's collectives alone: the same Horovod collectives, in the same order and with
the same bytes per peer, with no other work between them.

A step cannot be faster than its collectives run back to back, so this is its floor on
the machine at hand: what is left of a step's time after it is the layer's own work
(packing, lookups, sums) and the time the ranks spend waiting for each other's cores.
On a few shared cores a collective costs milliseconds even when it carries a few bytes
(Horovod's background cycle and Gloo's round trips), so the floor, not the bytes,
bounds how close a small model's 2-rank step can come to one process's.

The collectives come from a :class:`_traffic.TrafficMeter` reading of the step: each
all-to-all sends every peer (and itself) its mean bytes per peer, each all-reduce
reduces a tensor of the size that moves those bytes in a ring; each takes an empty
slice of the one before as input, so they run in the order the step ran them.
"""

from __future__ import annotations

import statistics
import time

import horovod.tensorflow as hvd
import tensorflow as tf

FLOAT_BYTES = 4


def _replay(entries: list[dict], size: int):
    """A tf.function making ``entries``' collectives in order, with their bytes."""

    def collective(index: int, entry: dict, after: tf.Tensor) -> tf.Tensor:
        name = f"floor_{index}"
        if entry["kind"] == "alltoall":
            per_peer = round(entry["sent"] / FLOAT_BYTES / max(size - 1, 1))
            payload = tf.concat([tf.ones([per_peer * size]), after], 0)
            splits = tf.fill([size], tf.constant(per_peer, tf.int32))
            received, _ = hvd.alltoall(payload, splits=splits, name=name, ignore_name_scope=True)
            return received[:0]
        ring = 2 * (size - 1) / size
        elements = max(round(entry["sent"] / ring / FLOAT_BYTES), 1)
        tensor = tf.concat([tf.ones([elements]), after], 0)
        (summed,) = hvd.grouped_allreduce([tensor], op=hvd.Sum, name=name)
        return summed[:0]

    @tf.function
    def replay(start: tf.Tensor):
        # ``start`` is an argument, not a constant: Horovod registers its ops as
        # stateless, and Grappler would run collectives of constants once, while
        # optimizing the graph, and never again.
        after = start
        for index, entry in enumerate(entries):
            after = collective(index, entry, after)
        return after

    return replay


def collectives_alone(traffic: list[dict], steps: int, warmup: int) -> float:
    """Median ms of the step's collectives run back to back (``traffic``: the meter's
    per-step entries, in the order the step traced them; call on every rank)."""
    entries = [e for e in traffic if e["kind"] in ("alltoall", "allreduce", "grouped_allreduce")]
    replay = _replay(entries, hvd.size())
    empty = tf.zeros([0])
    for _ in range(warmup):
        replay(empty).numpy()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        replay(empty).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
