"""Shared helpers for the scenario workers run under horovodrun.

Every rank builds the same global data from a fixed seed, feeds its own slice, and
compares against a single-process TensorFlow computation on the global batch with the
same global weights. The objective is the convention documented in runtime.layer:
each rank's loss is the mean over its local batch, so the reference loss is the mean
over the global batch.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from planner import make_plan, spec_from_dict

LR = 0.5


def plan_for(spec: dict):
    return make_plan(spec_from_dict({"world_size": hvd.size(), **spec}))


@dataclass
class GlobalData:
    """Global tables, ids and loss targets, identical on every rank."""

    tables: list[np.ndarray]
    ids: dict[str, object]  # name -> np.ndarray [B] / [B, k], or (lengths, values)
    targets: dict[str, np.ndarray]
    batch: int
    layouts: dict[str, str] = field(default_factory=dict)


def make_data(
    plan, local_batch: int, seed: int, layouts: dict[str, str] | None = None
) -> GlobalData:
    """Random tables and ids; ``layouts[input]`` is "dense" (default), "1d" or "ragged"."""
    rng = np.random.default_rng(seed)
    layouts = layouts or {}
    batch = local_batch * hvd.size()
    tables = [rng.normal(size=(t.rows, t.width)).astype(np.float32) for t in plan.tables]
    ids, targets = {}, {}
    for inp in plan.inputs:
        table = plan.table(inp.table)
        layout = layouts.get(inp.name, "dense")
        if layout == "ragged":
            lengths = rng.integers(0, inp.hotness + 1, size=batch)
            values = rng.integers(0, table.rows, size=int(lengths.sum()))
            ids[inp.name] = (lengths, values)
        elif layout == "1d":
            ids[inp.name] = rng.integers(0, table.rows, size=batch)
        else:
            ids[inp.name] = rng.integers(0, table.rows, size=(batch, inp.hotness))
        targets[inp.name] = rng.normal(size=(batch, table.width)).astype(np.float32)
    return GlobalData(tables, ids, targets, batch, layouts)


def id_tensor(value, rows: slice | None, dtype):
    """The ids of samples ``rows`` (all when None) as a dense or ragged tensor."""
    if isinstance(value, tuple):
        lengths, values = value
        splits = np.concatenate([[0], np.cumsum(lengths)])
        rt = tf.RaggedTensor.from_row_splits(values.astype(np.int64), splits.astype(np.int64))
        if rows is not None:
            rt = rt[rows]
        return tf.cast(rt, dtype)
    part = value if rows is None else value[rows]
    return tf.constant(part, dtype)


def local_rows(local_batch: int) -> slice:
    return slice(hvd.rank() * local_batch, (hvd.rank() + 1) * local_batch)


def feed(plan, data: GlobalData, local_batch: int, dtype=tf.int32) -> list:
    """This rank's inputs: local batch of every input, or (dp_input False) the global
    batch of the inputs it serves, in its plan order."""
    if plan.parameters.dp_input:
        rows = local_rows(local_batch)
        return [id_tensor(data.ids[i.name], rows, dtype) for i in plan.inputs]
    mine = plan.ranks[hvd.rank()].table_parallel_inputs
    return [id_tensor(data.ids[local.input], None, dtype) for local in mine]


def reference_outputs(plan, data: GlobalData, variables: list) -> dict:
    """Single-process outputs of every input on the global batch, by input name."""
    index = {t.name: i for i, t in enumerate(plan.tables)}
    outputs = {}
    for inp in plan.inputs:
        table = plan.table(inp.table)
        ids = id_tensor(data.ids[inp.name], None, tf.int64)
        rows = tf.gather(variables[index[inp.table]], ids)
        if isinstance(ids, tf.RaggedTensor):
            total = tf.reduce_sum(rows, axis=1)
            if table.combiner == "mean":
                count = tf.cast(tf.maximum(ids.row_lengths(), 1), tf.float32)
                total = total / count[:, None]
            out = total
        elif ids.shape.rank == 1:
            out = rows
        elif table.combiner == "mean":
            out = tf.reduce_mean(rows, axis=1)
        elif table.combiner == "sum":
            out = tf.reduce_sum(rows, axis=1)
        else:
            out = rows[:, 0]
        outputs[inp.name] = out
    return outputs


def reference_loss(plan, data: GlobalData, outputs: dict):
    """The objective on the global batch: the mean over samples, summed over inputs."""
    return tf.add_n([
        tf.reduce_mean(tf.reduce_sum(outputs[inp.name] * data.targets[inp.name], axis=1))
        for inp in plan.inputs
    ])


def reference_step(plan, data: GlobalData, lr: float = LR):
    """Single-process outputs on the global batch, and the tables after one SGD step."""
    variables = [tf.Variable(t) for t in data.tables]
    with tf.GradientTape() as tape:
        outputs = reference_outputs(plan, data, variables)
        loss = reference_loss(plan, data, outputs)
    grads = tape.gradient(loss, variables)
    for var, grad in zip(variables, grads, strict=True):
        if grad is not None:
            var.assign_sub(lr * tf.convert_to_tensor(grad))
    return (
        {name: out.numpy() for name, out in outputs.items()},
        [v.numpy() for v in variables],
    )


def local_loss(plan, outputs, data: GlobalData, local_batch: int):
    rows = local_rows(local_batch)
    loss = 0.0
    for inp, out in zip(plan.inputs, outputs, strict=True):
        target = tf.constant(data.targets[inp.name][rows])
        loss += tf.reduce_mean(tf.reduce_sum(tf.cast(out, tf.float32) * target, axis=1))
    return loss


def close(name: str, got, want, atol: float) -> None:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != {want.shape}")
    if not np.allclose(got, want, atol=atol, rtol=atol):
        worst = float(np.max(np.abs(got - want)))
        raise AssertionError(f"{name}: max difference {worst:.3g} > {atol}")


def run(scenarios: dict, names: list[str]) -> int:
    """Run the named scenarios in order; one OK/FAIL line each."""
    failed = 0
    for name in names:
        try:
            scenarios[name]()
        except Exception as exc:  # report and go on: the other ranks do the same
            failed += 1
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
            print(f"FAIL {name}: {detail}", flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"OK {name}", flush=True)
    return failed


def main(scenarios: dict) -> None:
    """A worker's entry point: run the scenarios named on the command line (default all)."""
    hvd.init()
    tf.keras.utils.set_random_seed(1234)
    names = sys.argv[1:] or list(scenarios)
    sys.exit(1 if run(scenarios, names) else 0)
