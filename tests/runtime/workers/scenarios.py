"""Scenario worker: ``horovodrun -np N python scenarios.py NAME...``.

Each scenario prints ``OK name`` or ``FAIL name: reason`` on every rank.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from common import close, feed, local_loss, make_data, plan_for, reference_step

import runtime
from planner.saving import save_plan
from runtime import DistributedEmbedding, DistributedGradientTape
from runtime.horovod_patches import is_local


def table(name, rows, width, combiner=None, **extra):
    return {"name": name, "rows": rows, "width": width, "combiner": combiner, **extra}


def inp(name, table_name, hotness=1):
    return {"name": name, "table": table_name, "hotness": hotness}


# --- specs ------------------------------------------------------------------------------

DATA_PARALLEL = {
    "data_parallel_threshold": 10**6,
    "tables": [table("a", 20, 4, "sum"), table("b", 30, 8, "mean"), table("c", 12, 3)],
    "inputs": [inp("x", "a", 3), inp("y", "b", 2), inp("z", "c"), inp("w", "a")],
}
TABLE_PARALLEL = {
    "tables": [
        table("a", 20, 4),
        table("b", 30, 4, "sum"),
        table("c", 25, 8, "mean"),
        table("d", 17, 6, "sum"),
    ],
    "inputs": [inp("a", "a"), inp("b", "b", 3), inp("c", "c", 2), inp("d", "d", 2), inp("b2", "b")],
}
FUSED = {
    "tables": [table(n, 10 + i, 4, "sum") for i, n in enumerate("pqrs")],
    "inputs": [inp("p", "p", 2), inp("q", "q"), inp("r", "r", 3), inp("s", "s"), inp("p2", "p")],
}
COLUMN_SLICES = {
    "strategy": "memory_balanced",
    "column_slice_threshold": 30,
    "tables": [table("a", 16, 8, "sum"), table("b", 10, 7, "mean"), table("c", 9, 2, "sum")],
    "inputs": [inp("a", "a", 2), inp("b", "b", 3), inp("c", "c"), inp("a2", "a", 1)],
}
MIXED_GROUPS = {
    "data_parallel_threshold": 50,
    "row_slice_threshold": 300,
    "tables": [
        table("small", 10, 4, "sum"),
        table("mid", 20, 4, "mean"),
        table("big", 120, 4, "mean"),
        table("onerow", 1, 320, "sum"),
        table("wide", 30, 6),
    ],
    "inputs": [
        inp("s", "small", 2),
        inp("m", "mid", 3),
        inp("b", "big", 3),
        inp("o", "onerow", 2),
        inp("w", "wide"),
        inp("b2", "big", 2),
        inp("m2", "mid"),
    ],
}
MIXED_LAYOUTS = {"s": "ragged", "b": "ragged", "m": "ragged", "w": "1d"}
MODEL_PARALLEL_INPUT = {
    "dp_input": False,
    "tables": [table("a", 20, 4, "sum"), table("b", 30, 6, "mean"), table("c", 15, 4)],
    "inputs": [inp("x", "a", 3), inp("y", "b", 2), inp("z", "c"), inp("x2", "a", 2)],
}
# 3 or 4 ranks: uneven merges of column slices, and ranks without table-parallel pieces.
MERGE_BALANCED = {
    "strategy": "memory_balanced",
    "column_slice_threshold": 20,
    "tables": [table("t0", 8, 10, "sum"), table("t1", 9, 6, "mean"), table("t2", 10, 3, "sum")],
    "inputs": [inp("t0", "t0", 2), inp("t1", "t1", 3), inp("t2", "t2"), inp("t1b", "t1")],
}
MERGE_OPTIMIZED = {
    "strategy": "memory_optimized",
    "column_slice_threshold": 40,
    "tables": [
        table("t0", 8, 11, "sum"),
        table("t1", 9, 6, "mean"),
        table("t2", 10, 5, "sum"),
        table("t3", 11, 2, "sum"),
    ],
    "inputs": [inp("t0", "t0", 2), inp("t1", "t1", 2), inp("t2", "t2"), inp("t3", "t3", 3)],
}
# On 3 ranks: rank 0 holds no table-parallel piece but one row of rows2, rank 2 a
# table-parallel piece and no row of rows2.
NO_TABLE_PARALLEL = {
    "strategy": "memory_optimized",
    "column_slice_threshold": 60,
    "data_parallel_threshold": 10,
    "row_slice_threshold": 70,
    "tables": [
        table("t0", 8, 7, "sum"),
        table("t1", 9, 5, "mean"),
        table("tiny", 2, 4, "sum"),
        table("rows2", 2, 40, "mean"),
    ],
    "inputs": [
        inp("t0", "t0", 2),
        inp("t1", "t1", 3),
        inp("tiny", "tiny", 2),
        inp("r", "rows2", 3),
        inp("t0b", "t0"),
    ],
}
# On 3 ranks: rank 2 holds no table-parallel piece and an empty slice of rows2, only the
# data-parallel table: nothing of its own feeds the exchange (the exchange anchor's case).
EMPTY_RANK = {**NO_TABLE_PARALLEL, "strategy": "basic", "column_slice_threshold": 1000}
# On 3 ranks with dp_input=False: rank 2 serves no input and passes an empty list.
EMPTY_RANK_MP = {
    "dp_input": False,
    "column_slice_threshold": 1000,
    "tables": [table("t0", 8, 7, "sum"), table("t1", 9, 5, "mean")],
    "inputs": [inp("t0", "t0", 2), inp("t1", "t1", 3), inp("t0b", "t0")],
}
IDLE_RANK = 2  # the rank of EMPTY_RANK and EMPTY_RANK_MP on 3 ranks with nothing of its own


def expect_idle_rank(plan) -> None:
    """The plans above must keep giving the idle rank nothing, or the scenarios test less."""
    if hvd.size() != 3:
        return
    idle = plan.ranks[IDLE_RANK]
    if idle.table_parallel_weights or any(r.rows[1] > r.rows[0] for r in idle.row_slices):
        raise AssertionError(f"rank {IDLE_RANK} of this plan is not idle; fix the spec")


# --- the generic check ------------------------------------------------------------------


def check(
    name: str,
    spec: dict,
    layouts: dict | None = None,
    local_batch: int = 4,
    dtype=tf.int32,
    function: bool = False,
    policy: str | None = None,
    atol: float = 1e-5,
    layer=None,
    plan=None,
) -> None:
    """Forward equal to the reference slice; after one SGD step, tables equal too."""
    plan = plan or plan_for(spec)
    if spec in (EMPTY_RANK, EMPTY_RANK_MP):
        expect_idle_rank(plan)
    data = make_data(plan, local_batch, seed=_seed(name), layouts=layouts)
    if policy:
        tf.keras.mixed_precision.set_global_policy(policy)
    try:
        layer = layer or DistributedEmbedding.from_plan(plan, name=f"de_{name}")
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    layer.set_weights(data.tables)
    for got, want in zip(layer.get_weights(all_ranks=True), data.tables, strict=True):
        if not np.array_equal(got, want):
            raise AssertionError("get_weights after set_weights is not exact")
    inputs = feed(plan, data, local_batch, dtype)
    ref_outputs, ref_tables = reference_step(plan, data)

    def step(inputs):
        with tf.GradientTape() as tape:
            outputs = layer(inputs)
            loss = local_loss(plan, outputs, data, local_batch)
        tape = DistributedGradientTape(tape)
        variables = layer.trainable_variables
        grads = tape.gradient(loss, variables)
        for var, grad in zip(variables, grads, strict=True):
            if grad is None:
                continue
            if isinstance(grad, tf.IndexedSlices):
                var.scatter_sub(tf.IndexedSlices(common.LR * grad.values, grad.indices))
            else:
                var.assign_sub(common.LR * grad)
        return outputs

    outputs = (tf.function(step) if function else step)(inputs)
    rows = common.local_rows(local_batch)
    compute = tf.keras.mixed_precision.Policy(policy or "float32").compute_dtype
    for i, out in zip(plan.inputs, outputs, strict=True):
        if out.dtype != tf.as_dtype(compute):
            raise AssertionError(f"output {i.name} is {out.dtype.name}, not {compute}")
        close(f"output {i.name}", out, ref_outputs[i.name][rows], atol)
    after = layer.get_weights(all_ranks=True)
    for t, got, want in zip(plan.tables, after, ref_tables, strict=True):
        close(f"table {t.name} after one step", got, want, atol)


def _seed(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 10007


# --- scenarios --------------------------------------------------------------------------


def constructor():
    """The original constructor: Keras layers, options, an input_table_map."""
    embeddings = [
        runtime.Embedding(20, 4, combiner="sum", name="ta"),
        runtime.Embedding(16, 6, combiner="mean", name="tb"),
        tf.keras.layers.Embedding(12, 4, name="tc"),
    ]
    layer = DistributedEmbedding(
        embeddings, strategy="memory_balanced", column_slice_threshold=40,
        input_table_map=[0, 1, 1, 2], name="de_constructor",
    )
    check("constructor", {}, layer=layer, plan=layer.plan)
    again = DistributedEmbedding.from_config(layer.get_config())
    if again.plan != layer.plan:
        raise AssertionError("from_config(get_config()) changed the plan")


def round_trips():
    """set/get from arrays and .npy files (str and Path), small chunks, with and without
    the lock."""
    plan = plan_for(MIXED_GROUPS if hvd.size() == 2 else MERGE_OPTIMIZED)
    data = make_data(plan, 2, seed=7)
    layer = DistributedEmbedding.from_plan(plan, name="de_round_trips")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for t, array in zip(plan.tables, data.tables, strict=True):
            paths.append(str(Path(folder) / f"{hvd.rank()}_{t.name}.npy"))
            np.save(paths[-1], array)
        path_objects = [Path(p) for p in paths]  # path-like, memory-mapped as well
        cases = ((data.tables, 7, False), (paths, 5, True), (path_objects, 10**6, False))
        for weights, chunk, lock in cases:
            layer.set_weights([np.zeros_like(a) for a in data.tables])
            layer.set_weights(weights, chunk=chunk, use_lock=lock)
            for all_ranks in (True, False):
                got = layer.get_weights(all_ranks=all_ranks, chunk=chunk)
                if not all_ranks and hvd.rank() != 0:
                    if got != []:
                        raise AssertionError("get_weights(all_ranks=False) off rank 0 must be []")
                    continue
                for t, g, want in zip(plan.tables, got, data.tables, strict=True):
                    if not np.array_equal(g, want):
                        raise AssertionError(f"round trip of {t.name} (chunk {chunk}) differs")


def expect_error(what: str, fn, *needles: str) -> None:
    """``fn`` raises an error whose message holds every needle.

    No clock: a rank left waiting in a collective never returns, which the launch's
    timeout reports, and an error from anywhere else lacks the needles. A wall-clock
    limit only measured the machine's load (tracing a step took 28 s on a busy one).
    """
    try:
        fn()
    except Exception as exc:  # the message is what matters
        text = str(exc)
        missing = [n for n in needles if n not in text]
        if missing:
            raise AssertionError(f"{what}: message {text[:300]!r} lacks {missing}") from exc
        return
    raise AssertionError(f"{what}: no error raised")


def errors():
    """Clear errors, raised on every rank, without hangs."""
    size, rank = hvd.size(), hvd.rank()
    last = size - 1  # the rank that feeds bad inputs
    other = make_plan_for_world(size + 1)
    expect_error("plan for another world size", lambda: DistributedEmbedding.from_plan(other),
                 f"{size + 1} ranks", f"{size} are running")
    plan = plan_for(TABLE_PARALLEL)
    if size > 1:  # a stale plan file on one host: the same tables, another strategy
        stale = plan_for({**TABLE_PARALLEL, "strategy": "memory_optimized"})
        given = stale if rank == last else plan
        others = "rank 0" if last == 1 else f"ranks 0-{last - 1}"
        expect_error("ranks given different plans", lambda: DistributedEmbedding.from_plan(given),
                     "the ranks were given different plans", f"{others}: {plan.digest[7:19]} "
                     f"(basic, 4 tables, {size} ranks); rank {last}: {stale.digest[7:19]} "
                     f"(memory_optimized,", "give every rank the same plan file")
    wrong = [runtime.Embedding(t.rows, t.width, combiner=t.combiner) for t in plan.tables]
    wrong[2] = runtime.Embedding(99, 8, combiner="mean")
    expect_error("layers not matching the plan",
                 lambda: DistributedEmbedding.from_plan(plan, embeddings=wrong), "99x8", "'c'")
    combiners = [runtime.Embedding(t.rows, t.width, combiner="sum") for t in plan.tables]
    expect_error("combiner not matching the plan",
                 lambda: DistributedEmbedding.from_plan(plan, embeddings=combiners), "combiner")
    expect_error("placement options with a plan",
                 lambda: DistributedEmbedding.from_plan(plan, dp_input=False, strategy="basic"),
                 "dp_input, strategy", "re-plan")
    layer = DistributedEmbedding.from_plan(plan, name="de_errors")
    data = make_data(plan, 4, seed=3)
    good = feed(plan, data, 4)
    names = [i.name for i in plan.inputs]

    def on_last(change):
        """``good`` with ``change(input name, tensor)`` applied on the last rank only."""
        if rank != last:
            return good
        return [change(names[n], x) for n, x in enumerate(good)]

    function = tf.function(layer)
    if size > 1:
        uneven = [x[: 3 + rank] for x in good]
        expect_error("batch sizes differ (eager)", lambda: layer(uneven),
                     "different local batch sizes")
        expect_error("batch sizes differ (tf.function)", lambda: tf.function(layer)(uneven),
                     "different local batch sizes")
        mixed = [tf.cast(x, tf.int64) for x in good] if rank == 0 else good
        expect_error("id types differ", lambda: layer(mixed), "different integer types")
        # Input b (table b, combiner sum) is 3-hot; two ids per sample are fine alone.
        layouts = on_last(lambda name, x: x[:, :2] if name == "b" else x)
        expect_error("layouts differ", lambda: layer(layouts), "different layouts")
    fewer = good[:-1] if rank == last else good
    count = f"rank {last} passed {len(good) - 1} inputs"
    expect_error("one rank passes too few inputs", lambda: layer(fewer), count)

    optimizer = tf.keras.optimizers.SGD(0.1)

    @tf.function
    def then_static_batch(inputs):
        # A training step whose ops need the layer's batch statically, and an optimizer
        # that refuses to apply no gradients at all: the failing rank must trace it too.
        with tf.GradientTape() as tape:
            outputs = layer(inputs)
            joined = tf.concat([*outputs, tf.zeros([4, 2])], axis=1)
            stacked = tf.stack([outputs[0], tf.ones([4, 4])])
            loss = tf.reduce_sum(joined) + tf.reduce_sum(stacked)
        variables = layer.trainable_variables
        grads = DistributedGradientTape(tape).gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    expect_error("too few inputs, then a static batch (tf.function)",
                 lambda: then_static_batch(fewer), count)
    floats = on_last(lambda name, x: tf.cast(x, tf.float32) if name == "b" else x)
    float_ids = f"rank {last}: input 'b': ids must be int32 or int64, got float32"
    expect_error("float ids (eager)", lambda: layer(floats), float_ids)
    expect_error("float ids (tf.function)", lambda: then_static_batch(floats), float_ids)
    # Table a has no combiner: one id per sample.
    two_hot = on_last(lambda name, x: tf.concat([x, x], axis=1) if name == "a" else x)
    expect_error("several ids without a combiner", lambda: function(two_hot),
                 f"rank {last}: input 'a' has several ids per sample", "no combiner")
    for what, change, needle in (
        ("id = rows", lambda x: tf.tensor_scatter_nd_update(x, [[1, 0]], [25]), "id 25"),
        ("negative id", lambda x: tf.tensor_scatter_nd_update(x, [[2, 1]], [-3]), "id -3"),
    ):
        bad = on_last(lambda name, x, change=change: change(x) if name == "c" else x)
        message = [f"rank {last}: input 'c' has", needle, "outside table 'c'", "0..24"]
        expect_error(f"{what} (eager)", lambda bad=bad: layer(bad), *message)
        expect_error(f"{what} (tf.function)", lambda bad=bad: function(bad), *message)
    expect_error("set_weights with a wrong shape",
                 lambda: layer.set_weights([np.zeros((1, 1))] * len(plan.tables)), "shaped (1, 1)")
    layer(good)  # still in step after all that
    out_of_range_kinds()


def out_of_range_kinds():
    """Ids beyond a table that sits in a fused weight (1 rank) or is row-sliced (2 ranks)."""
    plan = plan_for(MIXED_GROUPS)
    layer = DistributedEmbedding.from_plan(plan, name="de_errors_ranges")
    good = feed(plan, make_data(plan, 4, seed=4), 4)
    last = hvd.size() - 1
    for name in ("m", "b"):  # tables mid (fused with big on 1 rank) and big (row-sliced)
        index = [i.name for i in plan.inputs].index(name)
        rows = plan.table(plan.inputs[index].table).rows
        bad = list(good)
        if hvd.rank() == last:
            bad[index] = good[index] + rows
        expect_error(f"ids beyond table of input {name}", lambda bad=bad: layer(bad),
                     f"rank {last}: input {name!r} has id", f"0..{rows - 1}")
    layer(good)


def empty_batch():
    """A local batch of 0 samples on every rank: empty outputs, tables unchanged."""
    if hvd.size() == 3:
        spec, layouts = EMPTY_RANK, {"t1": "ragged", "r": "ragged"}
    else:
        spec, layouts = MIXED_GROUPS, MIXED_LAYOUTS
    check("empty_batch", spec, layouts=layouts, local_batch=0, function=True)
    check("empty_batch_mp", MODEL_PARALLEL_INPUT, layouts={"y": "ragged"}, local_batch=0)


def make_plan_for_world(world: int):
    from planner import make_plan, spec_from_dict

    return make_plan(spec_from_dict({**TABLE_PARALLEL, "world_size": world}))


def plan_file():
    """from_plan with a path, as a training script does, beside the plan object."""
    plan = plan_for(MIXED_GROUPS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        save_plan(plan, path)
        # rank 0 from the file (its digest the seal), the others from the plan in memory
        # (theirs worked out): one plan, so the layer is made without complaint
        given = str(path) if hvd.rank() == 0 else plan
        layer = DistributedEmbedding.from_plan(given, name="de_plan_file")
    check("plan_file", {}, layer=layer, plan=plan, layouts=MIXED_LAYOUTS)


# Step size of fit: small enough for training to stay stable (at 0.1 the 320-wide row
# that every sample reads made step 2 diverge, and float32 rounding grew to 7e-5).
FIT_LR = 0.01


def fit():
    """model.fit with DistributedOptimizer and the broadcast callback (momentum slots).

    Ranks start from different dense and data-parallel weights; the callback broadcasts
    rank 0's after the first batch. The reference replays exactly that: the first step
    averages gradients each rank takes at its own weights and applies them to rank 0's,
    the second step is a plain single-process step on the global batch.

    The reference computes in float64, so what separates it from the layer is float32
    rounding alone, in whatever order Keras' fused kernels, Horovod's averaging and the
    layer add: a few ulps while steps are stable (float32 replays of this scenario stay
    within 2% of the tolerance of it). What must be exact is checked exactly: after
    training, every replicated variable is bit for bit the same on every rank.
    """
    spec = {1: MIXED_GROUPS, 2: MIXED_GROUPS}.get(hvd.size(), EMPTY_RANK)
    plan = plan_for(spec)
    b, steps, world = 4, 2, hvd.size()
    data = make_data(plan, b * steps, seed=11)
    rng = np.random.default_rng(5)
    width = sum(plan.table(i.table).width for i in plan.inputs)
    kernel = (rng.normal(size=(width, 1)) / np.sqrt(width)).astype(np.float32)
    labels = rng.normal(size=(b * steps * world, 1)).astype(np.float32)
    # What rank r adds to rank 0's starting weights (rank 0: nothing).
    shifts = [np.random.default_rng(100 + r) for r in range(world)]
    kernel_shift = [0.1 * r * g.normal(size=kernel.shape).astype(np.float32)
                    for r, g in enumerate(shifts)]
    bias_shift = [np.float32(0.2 * r) for r in range(world)]
    data_parallel = {n for n, t in enumerate(plan.tables) if t.name in plan.groups.data_parallel}
    table_shift = [
        [0.3 * r * np.ones_like(t) if n in data_parallel else np.zeros_like(t)
         for n, t in enumerate(data.tables)]
        for r in range(world)
    ]
    rank = hvd.rank()

    class Model(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = DistributedEmbedding.from_plan(plan, name="de_fit")
            self.head = tf.keras.layers.Dense(
                1,
                kernel_initializer=tf.constant_initializer(kernel + kernel_shift[rank]),
                bias_initializer=tf.constant_initializer(bias_shift[rank]),
            )

        def call(self, inputs):
            return self.head(tf.concat(self.embedding(inputs), axis=1))

    # Global batch k is rank 0's k-th local batch, then rank 1's, ...
    def local_batch(step, r):
        return list(range((step * world + r) * b, (step * world + r + 1) * b))

    mine = [i for s in range(steps) for i in local_batch(s, rank)]
    x = [tf.constant(data.ids[i.name][mine], tf.int32) for i in plan.inputs]
    y = labels[mine]
    model = Model()
    model(x)
    model.embedding.set_weights(
        [t + shift for t, shift in zip(data.tables, table_shift[rank], strict=True)]
    )
    opt = runtime.DistributedOptimizer(tf.keras.optimizers.SGD(FIT_LR, momentum=0.9))
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=b, epochs=1, shuffle=False, verbose=0,
              callbacks=[runtime.BroadcastGlobalVariablesCallback(0)])

    def f64(array):
        return tf.constant(array, tf.float64)

    tables = [tf.Variable(f64(t)) for t in data.tables]
    head_k, head_b = tf.Variable(f64(kernel)), tf.Variable(tf.zeros([1], tf.float64))
    ref_opt = tf.keras.optimizers.SGD(FIT_LR, momentum=0.9)
    index = {t.name: n for n, t in enumerate(plan.tables)}

    def loss_of(rows, r):
        outs = []
        for i in plan.inputs:
            table = tables[index[i.table]] + f64(table_shift[r][index[i.table]])
            looked = tf.gather(table, data.ids[i.name][rows])
            combiner = plan.table(i.table).combiner
            outs.append(tf.reduce_mean(looked, 1) if combiner == "mean"
                        else tf.reduce_sum(looked, 1))
        pred = tf.concat(outs, 1) @ (head_k + f64(kernel_shift[r])) + (head_b + f64(bias_shift[r]))
        return tf.reduce_mean((pred - f64(labels[rows])) ** 2)

    for s in range(steps):
        with tf.GradientTape() as tape:
            if s == 0:  # each rank at its own weights, gradients averaged
                loss = tf.add_n([loss_of(local_batch(s, r), r) for r in range(world)]) / world
            else:
                loss = loss_of([i for r in range(world) for i in local_batch(s, r)], 0)
        variables = [*tables, head_k, head_b]
        ref_opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
    for t, got, want in zip(plan.tables, model.embedding.get_weights(True), tables, strict=True):
        close(f"table {t.name}", got, want.numpy(), 1e-5)
    close("dense kernel", model.head.kernel, head_k.numpy(), 1e-5)
    close("dense bias", model.head.bias, head_b.numpy(), 1e-5)
    for var in model.trainable_variables:
        if not is_local(var):
            every = hvd.allgather(var[None]).numpy()
            if not (every == every[:1]).all():
                raise AssertionError(f"{var.name}: replicas differ between ranks after fit")


SCENARIOS = {
    "data_parallel": lambda: check("data_parallel", DATA_PARALLEL),
    "table_parallel": lambda: check("table_parallel", TABLE_PARALLEL),
    "fused": lambda: check("fused", FUSED, layouts={"q": "1d"}),
    "column_slices": lambda: check("column_slices", COLUMN_SLICES, layouts={"b": "ragged"}),
    "mixed_groups": lambda: check("mixed_groups", MIXED_GROUPS, layouts=MIXED_LAYOUTS),
    "mixed_groups_int64": lambda: check("mixed_groups_int64", MIXED_GROUPS, dtype=tf.int64),
    "mixed_groups_function": lambda: check(
        "mixed_groups_function", MIXED_GROUPS, layouts=MIXED_LAYOUTS, function=True
    ),
    "mixed_precision": lambda: check(
        "mixed_precision", MIXED_GROUPS, layouts=MIXED_LAYOUTS, policy="mixed_float16", atol=2e-2
    ),
    "model_parallel_input": lambda: check(
        "model_parallel_input", MODEL_PARALLEL_INPUT, layouts={"y": "ragged", "z": "1d"}
    ),
    "model_parallel_input_function": lambda: check(
        "model_parallel_input_function", MODEL_PARALLEL_INPUT, function=True
    ),
    "merge_balanced": lambda: check("merge_balanced", MERGE_BALANCED, layouts={"t1": "ragged"}),
    "merge_optimized": lambda: check("merge_optimized", MERGE_OPTIMIZED, function=True),
    "no_table_parallel": lambda: check(
        "no_table_parallel", NO_TABLE_PARALLEL, layouts={"t1": "ragged", "r": "ragged"}
    ),
    "empty_rank": lambda: check("empty_rank", EMPTY_RANK, layouts={"t1": "ragged", "r": "ragged"}),
    "empty_rank_function": lambda: check(
        "empty_rank_function", EMPTY_RANK, dtype=tf.int64, function=True
    ),
    "empty_rank_mp": lambda: check("empty_rank_mp", EMPTY_RANK_MP, layouts={"t1": "ragged"}),
    "empty_rank_mp_function": lambda: check(
        "empty_rank_mp_function", EMPTY_RANK_MP, layouts={"t1": "ragged"}, function=True
    ),
    "empty_batch": empty_batch,
    "constructor": constructor,
    "round_trips": round_trips,
    "errors": errors,
    "plan_file": plan_file,
    "fit": fit,
}


if __name__ == "__main__":
    common.main(SCENARIOS)
