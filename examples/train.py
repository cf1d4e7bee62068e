"""Train a small DLRM-style model on synthetic data with a committed plan.

    planner plan --spec tables.yaml --out plan.json      # once, anywhere
    horovodrun -np 2 --gloo -H localhost:2 python examples/train.py --plan plan.json

Without ``--plan`` a plan for a small built-in spec is made in process for the world
size horovodrun started (every rank makes the same one). Each rank reads its own local
batches of synthetic click data; dense features go through a bottom MLP, sparse
features through the distributed embedding, and a top MLP predicts the click.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

import runtime
from planner.plan import Plan
from planner.planning import make_plan
from planner.spec import spec_from_dict

DENSE_FEATURES = 4


def builtin_plan(world_size: int) -> Plan:
    tables = [
        {"name": "user", "rows": 2000, "width": 16, "combiner": "sum"},
        {"name": "item", "rows": 5000, "width": 16, "combiner": "sum"},
        {"name": "category", "rows": 50, "width": 16, "combiner": "mean"},
        {"name": "history", "rows": 5000, "width": 16, "combiner": "mean"},
    ]
    inputs = [
        {"name": "user", "table": "user"},
        {"name": "item", "table": "item"},
        {"name": "category", "table": "category", "hotness": 3},
        {"name": "history", "table": "history", "hotness": 5},
    ]
    spec = {
        "world_size": world_size,
        "strategy": "memory_balanced",
        "data_parallel_threshold": 1000,
        "tables": tables,
        "inputs": inputs,
    }
    return make_plan(spec_from_dict(spec))


class DLRM(tf.keras.Model):
    def __init__(self, plan):
        super().__init__()
        self.embedding = runtime.DistributedEmbedding.from_plan(plan)
        self.bottom = tf.keras.Sequential(
            [tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(16)]
        )
        self.top = tf.keras.Sequential(
            [tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(1)]
        )

    def call(self, inputs):
        dense, sparse = inputs
        features = [self.bottom(dense), *self.embedding(sparse)]
        stacked = tf.stack(features, axis=1)  # [batch, features, 16]
        interactions = tf.matmul(stacked, stacked, transpose_b=True)
        upper = tf.linalg.band_part(interactions, 0, -1)
        flat = tf.reshape(upper, [tf.shape(upper)[0], -1])
        return self.top(tf.concat([features[0], flat], axis=1))


def synthetic_batch(plan: Plan, rng: np.random.Generator, batch: int):
    """Local batch: dense features, ids per plan input, and clicks from a hidden rule."""
    dense = rng.normal(size=(batch, DENSE_FEATURES)).astype(np.float32)
    sparse = []
    for inp in plan.inputs:
        rows = plan.table(inp.table).rows
        shape = (batch,) if inp.hotness == 1 else (batch, inp.hotness)
        sparse.append(tf.constant(rng.integers(0, rows, size=shape), tf.int32))
    signal = dense[:, 0] + (sparse[0].numpy() % 7 < 3)
    clicks = (signal + 0.3 * rng.normal(size=batch) > 0.5).astype(np.float32)[:, None]
    return (tf.constant(dense), sparse), tf.constant(clicks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", help="plan file (default: a built-in plan)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64, help="local batch size per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    hvd.init()
    tf.keras.utils.set_random_seed(42)  # same dense-layer init everywhere
    plan = args.plan or builtin_plan(hvd.size())
    model = DLRM(plan)
    optimizer = tf.keras.optimizers.legacy.Adagrad(args.lr)
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    rng = np.random.default_rng(1000 + hvd.rank())  # each rank its own data

    @tf.function
    def train_step(inputs, clicks, first):
        with tf.GradientTape() as tape:
            loss = loss_fn(clicks, model(inputs))
        tape = runtime.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if first:
            # Same starting point on every rank for everything that is replicated.
            runtime.broadcast_variables(model.variables, root_rank=0)
            runtime.broadcast_variables(optimizer.variables(), root_rank=0)
        return hvd.allreduce(loss)

    for step in range(args.steps):
        inputs, clicks = synthetic_batch(model.embedding.plan, rng, args.batch)
        loss = train_step(inputs, clicks, step == 0)
        if hvd.rank() == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {float(loss):.4f}", flush=True)


if __name__ == "__main__":
    main()
