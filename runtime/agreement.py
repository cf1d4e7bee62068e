"""Every rank agrees on each call's inputs before any rank uses them.

A rank whose inputs are unusable must not raise alone: the others would wait for it in
the next collective forever. So each rank inspects its inputs (statically: their
number, types and layouts; dynamically: batch sizes and ids outside their tables) and
summarizes them in a small record (:class:`runtime.checks.Record`, eleven int32
words). The record travels at the head of every block of the layer's first
all-to-all, which every rank makes whatever its inputs (see :mod:`runtime.pipeline`),
so the check costs no collective of its own. Every rank then judges all records with
the same code and raises the same error, eagerly or when the traced step runs, before
it uses what it received. Lookups that must run before the judgement (with
``dp_input=False`` the first all-to-all carries embeddings) read ids clamped into
their tables, so that no rank fails alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import tensorflow as tf

from planner.plan import Plan
from runtime import checks
from runtime.lookup import IdProblem, describe_input, id_bounds


@dataclass(frozen=True)
class Inspection:
    """What this rank's inputs look like, from static information only."""

    status: int  # checks.OK or the static problem
    detail: int  # see checks.Record.detail
    problem: IdProblem | None
    hotness: dict[str, int | None]  # by input name; None: ragged


class InputAgreement:
    """Inspects this rank's inputs and agrees on every rank's with the other ranks."""

    def __init__(self, plan: Plan, rank: int, world_size: int):
        self.rank = rank
        self.world_size = world_size
        dp_input = plan.parameters.dp_input
        # Input names each rank feeds, in order (``Plan.served``: no rank's weights built).
        self.expected = [
            [i.name for i in plan.inputs] if dp_input else [name for name, _ in plan.served(r)]
            for r in range(len(plan.ranks))
        ]
        tables = {t.name: t for t in plan.tables}  # not plan.table: 20,000 searches
        self._tables = {i.name: tables[i.table] for i in plan.inputs}
        self.context = checks.InputContext(
            dp_input,
            world_size,
            self.expected,
            {name: (table.name, table.rows) for name, table in self._tables.items()},
        )

    def inspect(self, inputs: list) -> Inspection:
        """Static checks of this rank's inputs."""
        expected = self.expected[self.rank]
        if len(inputs) != len(expected):
            return Inspection(checks.WRONG_COUNT, len(inputs), None, {})
        hotness = {}
        for index, (name, inp) in enumerate(zip(expected, inputs, strict=True)):
            problem, k = describe_input(inp)
            if problem:
                return Inspection(checks.BAD_INPUT, index, problem, {})
            if self._tables[name].combiner is None and k != 1:
                return Inspection(checks.NEEDS_COMBINER, index, None, {})
            hotness[name] = k
        return Inspection(checks.OK, 0, None, hotness)

    def record(self, inputs: list, inspection: Inspection) -> tf.Tensor:
        """This rank's record, int32 [RECORD_FIELDS], in :class:`checks.Record` order."""
        problem = inspection.problem
        record = {
            "status": inspection.status,
            "detail": inspection.detail,
            "problem": problem.kind if problem else 0,
            "problem_arg": problem.arg if problem else 0,
            "bits": 0,
            "batch": -1,
            "consistent": 1,
            "layout": checks.signature(
                [inspection.hotness.get(n) for n in self.expected[self.rank]]
            ),
            "bad_input": -1,
            "bad_id_high": 0,
            "bad_id_low": 0,
        }
        if inspection.status == checks.OK and inputs:
            batches = tf.stack([_batch_size(inp) for inp in inputs])
            bad_input, bad_id = self._out_of_range(inputs)
            high, low = _words(bad_id)
            record.update(
                bits=64 if any(i.dtype == tf.int64 for i in inputs) else 32,
                batch=batches[0],
                consistent=tf.reduce_all(tf.equal(batches, batches[0])),
                bad_input=bad_input,
                bad_id_high=high,
                bad_id_low=low,
            )
        return tf.stack([tf.cast(record[field], tf.int32) for field in checks.Record._fields])

    def judge(self, records: tf.Tensor) -> tf.Tensor | None:
        """Judge every rank's record ([world_size, RECORD_FIELDS]); the same error everywhere.

        Eagerly it raises now, or returns None once every rank's inputs passed. Traced,
        it returns a tensor that fails on every rank when the step runs: whatever uses
        the inputs must depend on it.
        """
        judge = functools.partial(checks.judge_or_raise, context=self.context)
        if tf.executing_eagerly():
            judge(records.numpy())
            return None
        return tf.numpy_function(judge, [records], tf.int32, stateful=True)

    def _out_of_range(self, inputs: list) -> tuple[tf.Tensor, tf.Tensor]:
        """The index of the first input with an id outside its table (-1: none), and the id.

        Unchecked, such an id would read another table of a fused weight, be dropped by
        a row slice, or make ``tf.gather`` raise on the rank serving it alone.
        """
        bounds = [id_bounds(inp) for inp in inputs]
        low = tf.stack([b[0] for b in bounds])
        high = tf.stack([b[1] for b in bounds])
        rows = tf.constant([self._tables[n].rows for n in self.expected[self.rank]], tf.int64)
        bad = tf.logical_or(low < 0, high >= rows)
        first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
        index = tf.where(tf.reduce_any(bad), first, -1)
        return index, tf.where(low[first] < 0, low[first], high[first])


def placeholders(
    ok: tf.Tensor, widths: list[int], weights: list[tf.Variable], dtype: tf.DType
) -> list[tf.Tensor]:
    """Outputs for a call whose inputs failed a static check; only built while tracing.

    Eagerly the check has already raised. Traced, it fails on every rank when run, so
    these are never computed. They must only let the code after the layer trace here as
    on the ranks whose inputs passed, or this rank alone would fail while the others
    wait for it in a collective:

    * their batch dimension comes from the check's result, so it is unknown when
      tracing, as on the other ranks (a concat with a static batch traces);
    * they read (no rows of) every trainable weight, so gradients of the layer's
      weights exist, as on the other ranks (an optimizer given no gradient at all
      raises when traced).
    """
    unknown = tf.reshape(ok, []) * 0  # not zeros_like: that folds to a constant
    tie = tf.zeros([], dtype)
    for weight in weights:
        none = tf.gather(weight, tf.zeros([0], tf.int32))
        tie += tf.cast(tf.reduce_sum(none), dtype)
    return [tf.zeros(tf.stack([unknown, width]), dtype) + tie for width in widths]


def _words(value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """An int64 scalar as two int32 words, upper and lower (see checks.join_words)."""
    high = tf.bitwise.right_shift(value, 32)
    low = value - tf.bitwise.left_shift(high, 32)  # 0 .. 2**32 - 1
    low = tf.where(low >= 2**31, low - 2**32, low)
    return tf.cast(high, tf.int32), tf.cast(low, tf.int32)


def _batch_size(inp) -> tf.Tensor:
    if isinstance(inp, tf.RaggedTensor):
        return tf.cast(inp.nrows(), tf.int32)
    return tf.shape(inp, out_type=tf.int32)[0]
