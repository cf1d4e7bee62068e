"""Bytes a rank sends and receives in Horovod collectives, counted while a step runs.

Inside :meth:`TrafficMeter.counting`, ``hvd.alltoall``, ``hvd.allgather``,
``hvd.allreduce``, ``hvd.grouped_allreduce`` and ``hvd.reducescatter`` are wrapped:
every collective traced there adds, each time it runs, its calls and its bytes to
variables kept per (kind, name). Sizes are the real tensors' at run time; what stays on
the rank (an all-to-all's own block) is not counted. How many bytes a ring all-reduce
or all-gather puts on the wire is not observable from here, so those use the standard
ring counts on the real sizes, as the planner's estimate does.

Wrap only a step traced for measuring: the counting adds ops to the graph.
"""

from __future__ import annotations

import contextlib

import horovod.tensorflow as hvd
import tensorflow as tf

KINDS = ("alltoall", "allgather", "allreduce", "grouped_allreduce", "reducescatter")


def _bytes(tensor) -> tf.Tensor:
    tensor = tf.convert_to_tensor(tensor)
    return tf.cast(tf.size(tensor, out_type=tf.int64) * tensor.dtype.size, tf.int64)


class TrafficMeter:
    """Calls, bytes sent and bytes received per collective (kind and name) on this rank."""

    def __init__(self):
        self.size, self.rank = hvd.size(), hvd.rank()
        self._counters: dict[tuple[str, str], tf.Variable] = {}
        self._originals = {kind: getattr(hvd, kind) for kind in KINDS}

    def _count(self, kind: str, name: str | None, sent, received) -> None:
        key = (kind, name or kind)
        if key not in self._counters:
            with tf.init_scope():
                self._counters[key] = tf.Variable(tf.zeros([3], tf.int64), trainable=False)
        self._counters[key].assign_add(tf.stack([tf.constant(1, tf.int64), sent, received]))

    def _ring(self, tensor_bytes, share: float):
        return tf.cast(tf.cast(tensor_bytes, tf.float64) * share, tf.int64)

    def _alltoall(self, tensor, splits=None, name=None, **kwargs):
        result = self._originals["alltoall"](tensor, splits=splits, name=name, **kwargs)
        received, received_splits = result if splits is not None else (result, None)
        tensor = tf.convert_to_tensor(tensor)
        rows = tf.cast(tf.shape(tensor, out_type=tf.int64)[0], tf.int64)
        row_bytes = _bytes(tensor) // tf.maximum(rows, 1)
        if splits is None:
            own_sent = own_received = rows // self.size
        else:
            own_sent = tf.cast(tf.convert_to_tensor(splits)[self.rank], tf.int64)
            own_received = tf.cast(received_splits[self.rank], tf.int64)
        received_rows = tf.cast(tf.shape(received, out_type=tf.int64)[0], tf.int64)
        sent = (rows - own_sent) * row_bytes
        self._count("alltoall", name, sent, (received_rows - own_received) * row_bytes)
        return result

    def _allgather(self, tensor, *args, name=None, **kwargs):
        result = self._originals["allgather"](tensor, *args, name=name, **kwargs)
        own = _bytes(tensor)
        self._count("allgather", name, own * (self.size - 1), _bytes(result) - own)
        return result

    def _reducescatter(self, tensor, *args, name=None, **kwargs):
        result = self._originals["reducescatter"](tensor, *args, name=name, **kwargs)
        moved = self._ring(_bytes(tensor), (self.size - 1) / self.size)
        self._count("reducescatter", name, moved, moved)
        return result

    def _allreduce(self, tensor, *args, name=None, **kwargs):
        result = self._originals["allreduce"](tensor, *args, name=name, **kwargs)
        moved = self._ring(_bytes(tensor), 2 * (self.size - 1) / self.size)
        self._count("allreduce", name, moved, moved)
        return result

    def _grouped_allreduce(self, tensors, *args, name=None, **kwargs):
        result = self._originals["grouped_allreduce"](tensors, *args, name=name, **kwargs)
        total = tf.add_n([_bytes(t) for t in tensors])
        moved = self._ring(total, 2 * (self.size - 1) / self.size)
        self._count("grouped_allreduce", name, moved, moved)
        return result

    @contextlib.contextmanager
    def counting(self):
        """Collectives traced (or run eagerly) inside this block count their traffic."""
        for kind in KINDS:
            setattr(hvd, kind, getattr(self, f"_{kind}"))
        try:
            yield self
        finally:
            for kind, original in self._originals.items():
                setattr(hvd, kind, original)

    def reset(self) -> None:
        for counter in self._counters.values():
            counter.assign(tf.zeros([3], tf.int64))

    def totals(self) -> dict[tuple[str, str], dict[str, int]]:
        """Per (kind, name): calls, bytes sent and bytes received since the last reset."""
        result = {}
        for key, counter in self._counters.items():
            calls, sent, received = (int(x) for x in counter.numpy())
            result[key] = {"calls": calls, "sent": sent, "received": received}
        return result
