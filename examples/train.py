"""Train a small DLRM-style model on synthetic data with a committed plan.

    planner plan examples/dlrm_tiny.yaml -o examples/dlrm_tiny.plan.json   # once; commit it
    horovodrun -np 2 --gloo -H localhost:2 \
        python examples/train.py --plan examples/dlrm_tiny.plan.json

Without ``--plan``, examples/dlrm_tiny.yaml is planned in process for the world size
horovodrun started (every rank makes the same plan). Each rank reads its own local
batches of synthetic click data; dense features go through a bottom MLP, sparse
features through the distributed embedding, and a top MLP predicts the click. The
feature interaction stacks every embedding, so all tables must share one width (16).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

import runtime
from planner import Plan, load_plan, load_spec, make_plan

DENSE_FEATURES = 4
DEFAULT_SPEC = Path(__file__).with_name("dlrm_tiny.yaml")


def plan_for_this_job(plan_path: str | None) -> Plan:
    """The committed plan, or the example spec planned for this job's world size."""
    if plan_path:
        return load_plan(plan_path)
    return make_plan(load_spec(DEFAULT_SPEC, {"world_size": hvd.size()}))


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
    parser.add_argument("--plan", help=f"plan file (default: plan {DEFAULT_SPEC.name} here)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64, help="local batch size per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    hvd.init()
    tf.keras.utils.set_random_seed(42)  # same dense-layer init everywhere
    plan = plan_for_this_job(args.plan)
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
