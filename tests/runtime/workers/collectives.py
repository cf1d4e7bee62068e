"""Collectives worker: ``horovodrun -np 2 python collectives.py NAME...``.

* ``tape`` and ``fit``: trace one training step over generated specs of 40 and 400
  tables and count Horovod's collective ops in its graph. ``tape`` is forward,
  ``DistributedGradientTape`` and an SGD update in one ``tf.function``; ``fit`` is
  ``model.fit`` with ``DistributedOptimizer`` (the count comes from Keras' train
  function). The 40-table step also runs (the count is the graph's; running it shows
  the graph is one every rank can execute); the 400-table one is only traced, which
  takes long enough. Rank 0 prints ``COUNT <scenario> <tables> <json>``.
* ``no_slowdown``: time a large all-to-all before and after training the layer at the
  configuration that used to trigger Horovod's Gloo slowdown (a narrow row-sliced
  table at a small batch); ``slowdown_reproduces`` then triggers it on purpose (a
  small reduce-scatter) to show the measurement sees it. Rank 0 prints ``TIMES``.

Each scenario also prints ``OK name`` or ``FAIL name: reason`` on every rank.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

import runtime
from runtime import DistributedEmbedding, DistributedGradientTape
from runtime.diagnostics import collective_ops

TABLE_COUNTS = (40, 400)
HOST_SUMS_COUNTS = (40, 120)
LOCAL_BATCH = 4


def generated_spec(count: int, seed: int = 3) -> dict:
    """``count`` seeded tables of width 8: a quarter small enough to be data-parallel,
    a quarter big enough to be row-sliced, the rest table-parallel. A third have a
    combiner and a multi-hot input; every seventh table is also read by a second,
    one-hot input (a shared table)."""
    rng = np.random.default_rng(seed)
    tables, inputs = [], []
    for i in range(count):
        low, high = [(20, 200), (300, 3000), (300, 3000), (6000, 10000)][i % 4]
        combiner = [None, "sum", "mean"][i % 3]
        tables.append(
            {"name": f"t{i}", "rows": int(rng.integers(low, high)), "width": 8,
             "combiner": combiner}
        )
        hotness = int(rng.integers(2, 6)) if combiner else 1
        inputs.append({"name": f"x{i}", "table": f"t{i}", "hotness": hotness})
    inputs += [{"name": f"s{i}", "table": f"t{i}"} for i in range(0, count, 7)]
    return {
        "data_parallel_threshold": 1600,
        "row_slice_threshold": 40000,
        "tables": tables,
        "inputs": inputs,
    }


def _ids_and_targets(plan, batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ids, targets = [], []
    for inp in plan.inputs:
        table = plan.table(inp.table)
        shape = (batch,) if inp.hotness == 1 else (batch, inp.hotness)
        ids.append(tf.constant(rng.integers(0, table.rows, size=shape), tf.int32))
        targets.append(tf.constant(rng.normal(size=(batch, table.width)), tf.float32))
    return ids, targets


def training_step(layer):
    """Forward, DistributedGradientTape and an SGD update, in one tf.function."""
    optimizer = tf.keras.optimizers.legacy.SGD(0.1)

    @tf.function
    def step(inputs, wanted):
        with tf.GradientTape() as tape:
            pairs = zip(layer(inputs), wanted, strict=True)
            loss = tf.add_n([tf.reduce_mean(tf.reduce_sum(o * w, 1)) for o, w in pairs])
        variables = layer.trainable_variables
        grads = DistributedGradientTape(tape).gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    return step


def _groups(plan) -> str:
    groups = plan.groups
    return (
        f"{len(groups.data_parallel)} dp, {len(groups.table_parallel)} tp, "
        f"{len(groups.row_sliced)} row-sliced"
    )


def _report(scenario: str, count: int, plan, counts) -> None:
    if not (plan.groups.data_parallel and plan.groups.table_parallel and plan.groups.row_sliced):
        raise AssertionError(f"the generated spec lacks a group: {_groups(plan)}")
    if hvd.rank() == 0:
        print(f"COUNT {scenario} {count} {json.dumps(dict(sorted(counts.items())))}", flush=True)
        print(f"GROUPS {scenario} {count} {_groups(plan)}", flush=True)


def tape(scenario: str = "tape", counts=TABLE_COUNTS, **options) -> None:
    for count in counts:
        plan = common.plan_for({**generated_spec(count), **options})
        layer = DistributedEmbedding.from_plan(plan, name=f"de_{scenario}_{count}")
        step = training_step(layer)
        ids, targets = _ids_and_targets(plan, LOCAL_BATCH)
        if count == counts[0]:
            step(ids, targets)
        _report(scenario, count, plan, collective_ops(step.get_concrete_function(ids, targets)))


def tape_host_sums() -> None:
    """row_reduction host on 4 ranks as two hosts of 2: one all-to-all more each way
    (fewer tables: 4 ranks tracing on 2 cores)."""
    tape("tape_host_sums", HOST_SUMS_COUNTS, row_reduction="host", gpus_per_host=2)


def fit() -> None:
    for count in TABLE_COUNTS:
        plan = common.plan_for(generated_spec(count))
        ids, _ = _ids_and_targets(plan, 2 * LOCAL_BATCH)
        labels = tf.constant(np.random.default_rng(2).normal(size=(2 * LOCAL_BATCH, 1)))
        inputs = [tf.keras.Input(shape=x.shape[1:], dtype=tf.int32) for x in ids]
        embedded = DistributedEmbedding.from_plan(plan, name=f"de_fit_{count}")(inputs)
        head = tf.keras.layers.Dense(1)(tf.keras.layers.Concatenate()(embedded))
        model = tf.keras.Model(inputs, head)
        optimizer = runtime.DistributedOptimizer(tf.keras.optimizers.SGD(0.1, momentum=0.9))
        model.compile(optimizer=optimizer, loss="mse")
        data = tf.data.Dataset.from_tensor_slices((tuple(ids), labels)).batch(LOCAL_BATCH)
        if count == TABLE_COUNTS[0]:
            model.fit(data, epochs=1, verbose=0)
        traced = model.make_train_function().get_concrete_function(iter(data))
        _report("fit", count, plan, collective_ops(traced))


# --- the Gloo slowdown ------------------------------------------------------------------

LARGE = 665_600  # float32 elements: a 2.7 MB all-to-all


def _alltoall_ms(repeats: int) -> float:
    """Median time of a large all-to-all, in ms (after one untimed run)."""
    tensor = tf.random.normal([LARGE])
    splits = [LARGE // hvd.size()] * hvd.size()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        hvd.alltoall(tensor, splits=splits, name="timed_alltoall")[0].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def no_slowdown() -> None:
    """The layer's traffic must not slow later large all-to-alls down (by 10x or more).

    The configuration that triggered it: a narrow row-sliced table at a small batch,
    whose partial results used to be summed by a 32 KB reduce-scatter.
    """
    before = _alltoall_ms(5)
    spec = {
        "row_slice_threshold": 50_000,
        "tables": [
            {"name": "narrow", "rows": 4000, "width": 16, "combiner": "sum"},
            {"name": "wide", "rows": 500, "width": 64},
        ],
        "inputs": [
            {"name": "narrow", "table": "narrow", "hotness": 4},
            {"name": "wide", "table": "wide"},
        ],
    }
    plan = common.plan_for(spec)
    if plan.groups.row_sliced != ["narrow"]:
        raise AssertionError(f"the spec no longer row-slices the narrow table: {plan.groups}")
    step = training_step(DistributedEmbedding.from_plan(plan, name="de_slowdown"))
    ids, targets = _ids_and_targets(plan, 256)
    for _ in range(3):
        step(ids, targets)
    after = _alltoall_ms(5)
    if hvd.rank() == 0:
        print(f"TIMES no_slowdown before {before:.1f} after {after:.1f}", flush=True)
    if after > 10 * before:
        raise AssertionError(
            f"a 2.7 MB all-to-all took {after:.0f} ms after training the layer against "
            f"{before:.0f} ms before: the Gloo slowdown is back"
        )


def slowdown_reproduces() -> None:
    """A small reduce-scatter still pins Gloo's send buffer and slows all-to-alls down;
    if this fails, Horovod no longer has the problem the layer avoids.

    Run first in a job of its own: once a process has made large collectives, the small
    reduce-scatter no longer causes the slowdown, so after other scenarios it is not seen.
    """
    before = _alltoall_ms(5)
    hvd.reducescatter(tf.ones([512, 32]), op=hvd.Sum, name="small_reducescatter").numpy()
    trapped = _alltoall_ms(3)
    if hvd.rank() == 0:
        print(f"TIMES slowdown_reproduces before {before:.1f} after {trapped:.1f}")
    if trapped < 4 * before:
        raise AssertionError(
            f"after a small reduce-scatter the all-to-all took {trapped:.0f} ms against "
            f"{before:.0f} ms before: the slowdown did not reproduce"
        )


SCENARIOS = {
    "tape": tape,
    "tape_host_sums": tape_host_sums,
    "fit": fit,
    "no_slowdown": no_slowdown,
    "slowdown_reproduces": slowdown_reproduces,
}


if __name__ == "__main__":
    common.main(SCENARIOS)
