"""Upstream's interface of the layer: ``horovodrun -np N python upstream_api.py NAME...``.

Upstream's constructor arguments (``gpu_embedding_size`` too), ``layer.strategy``'s
lists, a hidden exchange anchor, offloaded weights on the host, and upstream's
"not divisible" error, on 2 and 3 ranks. Expectations are worked out by hand from
upstream's rules (round-robin dealing, smallest pieces kept first), not by the planner.

The process has two logical CPUs: the layer is built and run under ``/CPU:1``, which
stands for the rank's GPU, so that a weight on the host (``/CPU:0``) is told apart
from one on the default device.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from scenarios import check, expect_error

import runtime
from runtime import DistributedEmbedding
from runtime.slots import slots_of

DEVICE = "/CPU:1"  # the rank's default device in this worker (a GPU in training)

# Four one-hot tables of width 2, dealt round-robin (basic) and fused per rank.
FOUR = [(10, 2), (11, 2), (4, 2), (4, 2)]
# Upstream's lists for FOUR with dp_input=False, by world size, worked out by hand.
FOUR_LISTS = {
    2: {
        "table_ids": [[0, 2], [1, 3]],
        "input_ids_list": [[0, 2], [1, 3]],
        "local_group_list": [[[0, 1]], [[0, 1]]],
        "local_maps": [[0, 0], [0, 0]],
        "local_input_offsets": [[0, 10], [0, 11]],
        "local_weight_offsets": [[[0, 10, 14]], [[0, 11, 15]]],
        "widths_list_flat": [2, 2, 2, 2],
        "rev_tp_ids": [0, 2, 1, 3],
        "table_groups": [[], [0, 1, 2, 3], []],
    },
    3: {
        "table_ids": [[0, 3], [1], [2]],
        "input_ids_list": [[0, 3], [1], [2]],
        "local_group_list": [[[0, 1]], [[0]], [[0]]],
        "local_maps": [[0, 0], [0], [0]],
        "local_input_offsets": [[0, 10], [0], [0]],
        "local_weight_offsets": [[[0, 10, 14]], [[0, 11]], [[0, 4]]],
        "widths_list_flat": [2, 2, 2, 2],
        "rev_tp_ids": [0, 2, 3, 1],
        "table_groups": [[], [0, 1, 2, 3], []],
    },
}
# Two small and two large tables; upstream keeps a rank's pieces on the GPU smallest
# first while they total at most GPU_ELEMENTS elements.
OFFLOAD = [(30, 4), (30, 4), (200, 8), (200, 8)]
GPU_ELEMENTS = 250
# Tables each rank keeps in host memory: basic deals 0, 2 / 1, 3 on 2 ranks (120 kept,
# 1600 over), and 0, 3 / 1 / 2 on 3 ranks (2's 1600 alone is over).
OFFLOADED = {2: [{2}, {3}], 3: [{3}, set(), {2}]}


def keras_tables(sizes, prefix: str) -> list:
    return [tf.keras.layers.Embedding(r, w, name=f"{prefix}{i}") for i, (r, w) in enumerate(sizes)]


def arguments():
    """Every upstream argument by keyword, and upstream's attributes and lists."""
    world = hvd.size()
    with tf.device(DEVICE):
        layer = DistributedEmbedding(
            keras_tables(FOUR, "four"), strategy="basic", column_slice_threshold=None,
            row_slice_threshold=None, dp_input=False, input_table_map=None,
            data_parallel_threshold=None, gpu_embedding_size=None, name="de_arguments",
        )
    strategy = layer.strategy
    for name, want in FOUR_LISTS[world].items():
        if getattr(strategy, name) != want:
            raise AssertionError(f"strategy.{name} is {getattr(strategy, name)}, not {want}")
    settings = (layer.dp_input, strategy.strategy, layer.gpu_embedding_size, layer.world_size)
    if settings != (False, "basic", None, world):
        raise AssertionError(f"attributes are {settings}")
    expect_error(
        "from_plan with gpu_embedding_size",
        lambda: DistributedEmbedding.from_plan(layer.plan, gpu_embedding_size=0),
        "gpu_embedding_size",
        "plan",
    )
    try:
        DistributedEmbedding(keras_tables(FOUR, "bad"), strategy="round_robin")
    except ValueError as exc:  # upstream's type and words
        if not str(exc).startswith("Unsupported shard strategy 'round_robin'"):
            raise AssertionError(f"unknown strategy: {exc}") from None
    else:
        raise AssertionError("an unknown strategy was accepted")
    with tf.device(DEVICE):
        check("arguments", {}, layer=layer, plan=layer.plan, local_batch=2)
    expect_hidden_anchor(layer, fused_weights=1)


def expect_hidden_anchor(layer, fused_weights: int) -> None:
    """The anchor exists (so the check means something) but is no weight of the layer."""
    if layer._variables.anchor is None:
        raise AssertionError("this layer has no exchange anchor: the check tests nothing")
    for kind in ("weights", "trainable_weights", "variables", "trainable_variables"):
        found = getattr(layer, kind)
        if len(found) != fused_weights or any("anchor" in v.name for v in found):
            raise AssertionError(f"layer.{kind} is {[v.name for v in found]}")
    if len(layer.get_weights(all_ranks=True)) != len(layer.plan.tables):
        raise AssertionError("get_weights does not return one array per table")


def offload():
    """gpu_embedding_size offloads upstream's pieces; they and their lookups and slots
    live on the host, the rest on the default device; numbers as in one process."""
    world, rank = hvd.size(), hvd.rank()
    with tf.device(DEVICE):
        layer = DistributedEmbedding(
            keras_tables(OFFLOAD, "off"), gpu_embedding_size=GPU_ELEMENTS, name="de_offload"
        )
    plan = layer.plan
    if plan.parameters.gpu_embedding_size != GPU_ELEMENTS:
        raise AssertionError("the plan does not record gpu_embedding_size")
    for r, want in enumerate(OFFLOADED[world]):
        host = {
            m.table for w in plan.ranks[r].table_parallel_weights if w.device == "host"
            for m in w.members
        }
        if host != {f"off{t}" for t in want}:
            raise AssertionError(f"rank {r} offloads {sorted(host)}, not tables {sorted(want)}")
    with tf.device(DEVICE):
        check("offload", {}, layer=layer, plan=plan, local_batch=2)
        on_host = [w.device == "host" for w in plan.ranks[rank].table_parallel_weights]
        variables = layer._variables.table_parallel
        for var, host in zip(variables, on_host, strict=True):
            expect_device(var.name, var.device, "CPU:0" if host else "CPU:1")
        for optimizer in (
            tf.keras.optimizers.Adagrad(0.1),
            tf.keras.optimizers.legacy.Adagrad(0.1),
        ):
            grads = [tf.zeros_like(v) for v in variables]
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            for var, host in zip(variables, on_host, strict=True):
                for slot in slots_of(optimizer, var).values():
                    expect_device(f"slot of {var.name}", slot.device, "CPU:0" if host else "CPU:1")
        expect_lookup_devices(layer, on_host)


def expect_device(what: str, device: str, want: str) -> None:
    if not device.endswith(want):
        raise AssertionError(f"{what} is on {device}, not {want}")


def expect_lookup_devices(layer, on_host: list[bool]) -> None:
    """In a traced call, the gathers of host weights are placed on /CPU:0, no others."""
    data = common.make_data(layer.plan, 2, seed=3)
    inputs = common.feed(layer.plan, data, 2)
    graph = tf.function(layer).get_concrete_function(inputs).graph
    host_handles = {
        id(var.handle) for var, host in zip(layer._variables.table_parallel, on_host, strict=True)
        if host
    }
    captured = {id(outer): inner for outer, inner in graph.captures}
    host_inputs = {captured[h].name for h in host_handles if h in captured}
    gathers = [op for op in graph.get_operations() if op.type == "ResourceGather"]
    for op in gathers:
        reads_host = op.inputs[0].name in host_inputs
        on_cpu0 = op.device.endswith("CPU:0")
        if reads_host != on_cpu0:
            raise AssertionError(f"{op.name} reads a host weight: {reads_host}, on {op.device!r}")
    if len([op for op in gathers if op.inputs[0].name in host_inputs]) < sum(on_host):
        raise AssertionError("fewer gathers of host weights than host weights")


def indivisible():
    """A global batch (dp_input=False) that ranks cannot share: upstream's words first,
    the same on every rank, eagerly and traced; the layer works afterwards."""
    world = hvd.size()
    with tf.device(DEVICE):
        layer = DistributedEmbedding(keras_tables(FOUR, "div"), dp_input=False, name="de_div")
    served = layer.strategy.input_ids_list[hvd.rank()]

    def inputs(batch):
        return [tf.constant(np.arange(batch) % FOUR[k][0], tf.int32) for k in served]

    bad = inputs(2 * world + 1)
    for how, call in (("eagerly", layer), ("traced", tf.function(layer))):
        try:
            call(bad)
        except ValueError as exc:
            # Keras and tf.function wrap the layer's message in lines of their own.
            if f"not divisible: the global batch size {2 * world + 1} " not in str(exc):
                raise AssertionError(f"{how}: message is {exc}") from None
        else:
            raise AssertionError(f"{how}: no error for a global batch of {2 * world + 1}")
    for call in (layer, tf.function(layer)):
        outputs = call(inputs(2 * world))
        if [tuple(o.shape) for o in outputs] != [(2, 2)] * len(FOUR):
            raise AssertionError(f"shapes after the error: {[o.shape for o in outputs]}")


# One width-1 table cannot be cut: on 2 ranks rank 1 holds nothing of it, and with the
# data-parallel table nothing of its own feeds the exchange.
IDLE = {
    "data_parallel_threshold": 10,
    "tables": [
        {"name": "wide", "rows": 30, "width": 1, "combiner": "sum"},
        {"name": "small", "rows": 3, "width": 2, "combiner": "sum"},
    ],
    "inputs": [
        {"name": "w", "table": "wide", "hotness": 2},
        {"name": "s", "table": "small", "hotness": 2},
    ],
}


def idle_fit():
    """A rank with nothing of its own in the exchange trains with DistributedOptimizer in
    model.fit (and the tape, in ``check``) as one process does; no anchor in weights."""
    plan = common.plan_for(IDLE)
    b = 3
    if plan.ranks[-1].table_parallel_weights:
        raise AssertionError("the last rank is not idle: the scenario tests less")
    check("idle_tape", IDLE, function=True, local_batch=b)
    data = common.make_data(plan, b, seed=17)
    layer = DistributedEmbedding.from_plan(plan, name="de_idle_fit")
    inputs = common.feed(plan, data, b)

    class Model(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = layer

        def call(self, ids):
            return tf.concat(self.embedding(ids), axis=1)

    model = Model()
    model(inputs)
    layer.set_weights(data.tables)
    expect_hidden_anchor(layer, fused_weights=len(layer._variables.tables_in_order()))
    targets = np.concatenate([data.targets[i.name] for i in plan.inputs], axis=1)
    model.compile(optimizer=runtime.DistributedOptimizer(tf.keras.optimizers.SGD(0.5)),
                  loss="mse")
    model.fit(inputs, targets[common.local_rows(b)], batch_size=b, epochs=1, verbose=0,
              shuffle=False)
    tables = [tf.Variable(t) for t in data.tables]
    with tf.GradientTape() as tape:
        outs = common.reference_outputs(plan, data, tables)
        joined = tf.concat([outs[i.name] for i in plan.inputs], axis=1)
        loss = tf.reduce_mean((joined - targets) ** 2)
    for var, grad in zip(tables, tape.gradient(loss, tables), strict=True):
        var.assign_sub(0.5 * tf.convert_to_tensor(grad))
    for t, got, want in zip(plan.tables, layer.get_weights(True), tables, strict=True):
        common.close(f"table {t.name} after fit", got, want.numpy(), 1e-5)


def regularized_tables() -> list:
    """Regularizers and constraints on tables of every group (with the placement below):
    data-parallel, table-parallel, column-sliced, row-sliced. Dealt round-robin, tp_a
    and tp_b (positions 0 and 6 among the table-parallel pieces) land on rank 0 on 2 and
    3 ranks, where they are fused into one weight."""
    reg, Embedding = tf.keras.regularizers, tf.keras.layers.Embedding
    return [
        Embedding(4, 3, embeddings_regularizer=reg.L2(0.1), embeddings_constraint="non_neg",
                  name="dp_l2"),
        Embedding(30, 4, embeddings_regularizer=reg.L1(0.05), name="tp_a"),
        Embedding(40, 6, embeddings_regularizer=reg.L2(0.03), name="sliced"),  # 2 pieces
        Embedding(15, 2, name="w2"),
        Embedding(10, 3, name="w3"),
        Embedding(10, 5, name="w5"),
        Embedding(25, 4, activity_regularizer=reg.L2(0.2), embeddings_constraint="non_neg",
                  name="tp_b"),
        Embedding(200, 4, embeddings_regularizer=reg.L2(0.02), embeddings_constraint="non_neg",
                  activity_regularizer=reg.L1(0.1), name="rows"),
    ]


REGULARIZED_PLACEMENT = {
    "strategy": "basic",
    "data_parallel_threshold": 20,
    "column_slice_threshold": 200,
    "row_slice_threshold": 500,
}


def regularized():
    """One step with every table's regularizers and constraint equals one process's."""
    tables = regularized_tables()
    layer = DistributedEmbedding(tables, name="de_regularized", **REGULARIZED_PLACEMENT)
    plan, b = layer.plan, 3
    fused = [
        {m.table for m in w.members} for r in plan.ranks for w in r.table_parallel_weights
    ]
    if {"tp_a", "tp_b"} not in fused or plan.groups.row_sliced != ["rows"]:
        raise AssertionError(f"the placement no longer covers every case: {fused}")
    data = common.make_data(plan, b, seed=23)
    layer.set_weights(data.tables)
    optimizer = runtime.DistributedOptimizer(tf.keras.optimizers.SGD(common.LR))
    with tf.GradientTape() as tape:
        outputs = layer(common.feed(plan, data, b))
        loss = common.local_loss(plan, outputs, data, b) + tf.add_n(layer.losses)
    grads = runtime.DistributedGradientTape(tape).gradient(loss, layer.trainable_variables)
    optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))

    variables = [tf.Variable(t) for t in data.tables]
    with tf.GradientTape() as tape:
        outs = common.reference_outputs(plan, data, variables)
        loss = common.reference_loss(plan, data, outs)
        for table, var, inp in zip(tables, variables, plan.inputs, strict=True):
            if table.embeddings_regularizer:
                loss += table.embeddings_regularizer(var)
            if table.activity_regularizer:
                loss += table.activity_regularizer(outs[inp.name]) / data.batch
    for table, var, grad in zip(tables, variables, tape.gradient(loss, variables), strict=True):
        var.assign_sub(common.LR * tf.convert_to_tensor(grad))
        if table.embeddings_constraint:
            var.assign(table.embeddings_constraint(var))
    for t, got, want in zip(plan.tables, layer.get_weights(True), variables, strict=True):
        common.close(f"table {t.name}", got, want.numpy(), 1e-5)


SCENARIOS = {
    "regularized": regularized,
    "arguments": arguments,
    "offload": offload,
    "indivisible": indivisible,
    "idle_fit": idle_fit,
}


if __name__ == "__main__":
    # Before TensorFlow's first op: two logical CPUs (see the module docstring).
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )
    common.main(SCENARIOS)
