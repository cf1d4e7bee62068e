"""Checkpoint scenarios: ``[horovodrun -np N] python checkpoints.py WORKDIR NAME...``.

Each scenario prints ``OK name`` or ``FAIL name: reason`` on every rank. Scenarios of
one chain run in separate jobs of different world sizes and share WORKDIR:

* ``stage0`` .. ``stage3``: train K steps per stage with four optimizers (Keras 2.15 and
  legacy Adagrad and Adam), save, and in the next stage (another world size and
  strategy) restore and train K more. After every stage the tables and the optimizer
  slots equal a single-process reference that took all the steps on the global batches.
* ``fit_save`` / ``fit_resume``: ``model.fit`` with the checkpoint callback, then a job
  of another world size resuming from a saved step with the dense layers.
* ``dtypes``, ``errors``: float16 and bfloat16 round trips under another plan; bad
  checkpoints refused on every rank with nothing changed.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from common import GlobalData, close, feed, local_loss, reference_loss, reference_outputs
from scenarios import expect_error, table

import runtime
from planner import make_plan, spec_from_dict
from planner.checkpoint import Checkpoint
from runtime import DistributedEmbedding, DistributedGradientTape
from runtime.slots import slots_of

GLOBAL_BATCH = 12  # divisible by 1, 2 and 3 ranks
STEPS = 2  # per stage
LR = 0.05


# dp data-parallel; big row-sliced; wide column-sliced; f1..f4 fused where they meet.
SPEC = {
    "data_parallel_threshold": 30,
    "row_slice_threshold": 200,
    "column_slice_threshold": 64,
    "tables": [
        table("dp", 6, 4, "sum"),
        table("big", 60, 4, "mean"),
        table("wide", 12, 16, "sum"),
        table("f1", 8, 4, "sum"),
        table("f2", 9, 4, "mean"),
        table("f3", 10, 4, "sum"),
        table("f4", 11, 4, "sum"),
    ],
    "inputs": [
        {"name": "dp", "table": "dp", "hotness": 2},
        {"name": "big", "table": "big", "hotness": 3},
        {"name": "wide", "table": "wide", "hotness": 2},
        {"name": "f1", "table": "f1", "hotness": 1},
        {"name": "f2", "table": "f2", "hotness": 2},
        {"name": "f3", "table": "f3", "hotness": 2},
        {"name": "f4", "table": "f4", "hotness": 1},
        {"name": "big2", "table": "big", "hotness": 1},
    ],
}
# Stage n runs on WORLDS[n] ranks with STRATEGIES[n]: 2 -> 3 -> 2 -> 1.
WORLDS = [2, 3, 2, 1]
STRATEGIES = ["basic", "memory_optimized", "memory_balanced", "basic"]
OPTIMIZERS = {
    "adagrad": lambda: tf.keras.optimizers.Adagrad(LR),
    "adam": lambda: tf.keras.optimizers.Adam(LR),
    "legacy_adagrad": lambda: tf.keras.optimizers.legacy.Adagrad(LR),
    "legacy_adam": lambda: tf.keras.optimizers.legacy.Adam(LR),
}


def plan_for(spec: dict, strategy: str):
    return make_plan(spec_from_dict({**spec, "world_size": hvd.size(), "strategy": strategy}))


def expect_every_kind(plan) -> None:
    """Each multi-rank plan must keep all four kinds of pieces, or the chain tests less."""
    if plan.world_size == 1:
        return
    weights = [w for r in plan.ranks for w in r.table_parallel_weights]
    kinds = {
        "data-parallel": bool(plan.groups.data_parallel),
        "row-sliced": bool(plan.groups.row_sliced),
        "column-sliced": len({s.rank for s in plan.shards if s.table == "wide"}) > 1,
        "fused": any(len(w.members) > 1 for w in weights),
    }
    missing = [k for k, present in kinds.items() if not present]
    if missing:
        raise AssertionError(f"the {plan.strategy} plan on {plan.world_size} ranks has no "
                             f"{missing} pieces; fix the spec")


def initial_tables(plan) -> list[np.ndarray]:
    rng = np.random.default_rng(2024)
    return [rng.normal(size=(t.rows, t.width)).astype(np.float32) for t in plan.tables]


def batch(plan, step: int) -> GlobalData:
    """Global batch ``step``: the same on every rank and in every job."""
    rng = np.random.default_rng(1000 + step)
    ids, targets = {}, {}
    for inp in plan.inputs:
        rows = plan.table(inp.table).rows
        ids[inp.name] = rng.integers(0, rows, size=(GLOBAL_BATCH, inp.hotness))
        width = plan.table(inp.table).width
        targets[inp.name] = rng.normal(size=(GLOBAL_BATCH, width)).astype(np.float32)
    return GlobalData([], ids, targets, GLOBAL_BATCH)


def train(layer, optimizer, plan, steps: range) -> None:
    local = GLOBAL_BATCH // hvd.size()
    for step in steps:
        data = batch(plan, step)
        with tf.GradientTape() as tape:
            loss = local_loss(plan, layer(feed(plan, data, local)), data, local)
        variables = layer.trainable_variables
        grads = DistributedGradientTape(tape).gradient(loss, variables)
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        )


def reference(kind: str, plan, steps: int):
    """A single process taking ``steps`` steps on the global batches: tables and slots."""
    variables = [tf.Variable(t) for t in initial_tables(plan)]
    optimizer = OPTIMIZERS[kind]()
    for step in range(steps):
        data = batch(plan, step)
        with tf.GradientTape() as tape:
            loss = reference_loss(plan, data, reference_outputs(plan, data, variables))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
    slots = [slots_of(optimizer, v) for v in variables]
    return [v.numpy() for v in variables], [{k: s.numpy() for k, s in d.items()} for d in slots]


def stage(workdir: Path, n: int) -> None:
    if hvd.size() != WORLDS[n]:
        raise AssertionError(f"stage {n} runs on {WORLDS[n]} ranks, not {hvd.size()}")
    plan = plan_for(SPEC, STRATEGIES[n])
    expect_every_kind(plan)
    for kind, make in OPTIMIZERS.items():
        layer = DistributedEmbedding.from_plan(plan, name=f"ck_{kind}_{n}")
        layer.build(None)
        optimizer = make()
        if n == 0:
            layer.set_weights(initial_tables(plan))
        else:  # a fresh optimizer: Keras 2.15 ones fill their slots when creating them
            step = runtime.restore_checkpoint(workdir / kind / f"stage{n - 1}", layer, optimizer)
            if step != n * STEPS:
                raise AssertionError(f"{kind}: restored step {step}, expected {n * STEPS}")
        train(layer, optimizer, plan, range(n * STEPS, (n + 1) * STEPS))
        path = runtime.save_checkpoint(workdir / kind / f"stage{n}", layer, optimizer)
        want_tables, want_slots = reference(kind, plan, (n + 1) * STEPS)
        for t, got, want in zip(plan.tables, layer.get_weights(all_ranks=True), want_tables,
                                strict=True):
            close(f"{kind}: table {t.name} after {(n + 1) * STEPS} steps", got, want, 2e-5)
        saved = Checkpoint.open(path)
        if saved.manifest.optimizer.iterations != (n + 1) * STEPS:
            raise AssertionError(f"{kind}: saved step {saved.manifest.optimizer.iterations}")
        for t, slots in zip(plan.tables, want_slots, strict=True):
            for name, want in slots.items():
                close(f"{kind}: slot {name} of {t.name}", saved.view(t.name, name)[:, :], want,
                      2e-5)


# --- model.fit with the callback, resumed on another world size --------------------------


FIT_STEPS = 6  # the first job saves at 2, 4 and 6 (keeping 4 and 6); the second resumes at 4


def fit_model(plan, outputs: int = 1):
    class Model(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = DistributedEmbedding.from_plan(plan, name="ck_fit")
            self.head = tf.keras.layers.Dense(outputs, kernel_initializer="glorot_uniform")

        def call(self, inputs):
            return self.head(tf.concat(self.embedding(inputs), axis=1))

    model = Model()
    data = batch(plan, 0)
    model(feed(plan, data, GLOBAL_BATCH // hvd.size()))
    return model


def fit_data(plan, steps: range):
    """This rank's samples of global batches ``steps``, in order, and their labels."""
    local = GLOBAL_BATCH // hvd.size()
    rows = common.local_rows(local)
    xs = [[] for _ in plan.inputs]
    ys = []
    for step in steps:
        data = batch(plan, step)
        for i, inp in enumerate(plan.inputs):
            xs[i].append(data.ids[inp.name][rows])
        ys.append(data.targets[plan.inputs[0].name][rows][:, :1])
    return [tf.constant(np.concatenate(x), tf.int32) for x in xs], np.concatenate(ys), local


def fit_save(workdir: Path) -> None:
    plan = plan_for(SPEC, "basic")
    model = fit_model(plan)
    model.embedding.set_weights(initial_tables(plan))
    runtime.broadcast_variables(model.variables)
    optimizer = runtime.DistributedOptimizer(tf.keras.optimizers.Adam(LR))
    model.compile(optimizer=optimizer, loss="mse")
    x, y, local = fit_data(plan, range(FIT_STEPS))
    callback = runtime.CheckpointCallback(workdir / "fit", every_steps=2, keep=2)
    model.fit(x, y, batch_size=local, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    hvd.allgather_object(None, name="ck_saved")  # rank 0 deletes the oldest after saving
    series = sorted(p.name for p in (workdir / "fit").iterdir())
    if series != ["step-000000004", "step-000000006"]:
        raise AssertionError(f"kept {series}, expected steps 4 and 6")
    if runtime.latest_checkpoint(workdir / "fit") != workdir / "fit" / "step-000000006":
        raise AssertionError("latest_checkpoint is not step 6")
    if hvd.rank() == 0:
        np.savez(workdir / "fit_final.npz", *model.embedding.get_weights(),
                 kernel=model.head.kernel.numpy(), bias=model.head.bias.numpy())
    else:
        model.embedding.get_weights()


def fit_resume(workdir: Path) -> None:
    """Another world size and strategy, resumed from step 4: steps 5 and 6 as before."""
    plan = plan_for(SPEC, "memory_optimized")
    model = fit_model(plan)
    optimizer = runtime.DistributedOptimizer(tf.keras.optimizers.Adam(LR))
    model.compile(optimizer=optimizer, loss="mse")
    dense = runtime.DenseState(model, optimizer)
    saved = workdir / "fit" / "step-000000004"
    wider = fit_model(plan, outputs=2)  # another dense model: its head's kernel is [n, 2]
    widths = {t.name: t.width for t in plan.tables}
    width = sum(widths[i.table] for i in plan.inputs)  # the outputs the head reads
    expect_error("a dense model unlike the saved one",
                 lambda: runtime.restore_checkpoint(saved, wider.embedding,
                                                    dense=runtime.DenseState(wider)),
                 f"is saved as [{width}, 1] but is [{width}, 2] here")
    # the weights alone: the saved step still says where the input pipeline resumes
    if runtime.restore_checkpoint(saved, model.embedding) != 4:
        raise AssertionError("a restore without the optimizer does not return the step")
    step = runtime.restore_checkpoint(saved, model.embedding, optimizer, dense=dense)
    if step != 4 or int(optimizer.iterations.numpy()) != 4:
        raise AssertionError(f"restored step {step}, optimizer at {optimizer.iterations.numpy()}")
    x, y, local = fit_data(plan, range(4, FIT_STEPS))
    model.fit(x, y, batch_size=local, epochs=1, shuffle=False, verbose=0)
    want = np.load(workdir / "fit_final.npz")
    for i, (t, got) in enumerate(zip(plan.tables, model.embedding.get_weights(True),
                                     strict=True)):
        close(f"table {t.name}", got, want[f"arr_{i}"], 2e-5)
    close("dense kernel", model.head.kernel, want["kernel"], 2e-5)
    close("dense bias", model.head.bias, want["bias"], 2e-5)


def fit_epochs(workdir: Path) -> None:
    """Saves at the end of every epoch only, keeping one: the last epoch's step; with
    ``durable=False``, without a single fsync."""
    plan = plan_for(SPEC, "basic")
    model = fit_model(plan)
    model.compile(optimizer=runtime.DistributedOptimizer(tf.keras.optimizers.Adagrad(LR)),
                  loss="mse")
    x, y, local = fit_data(plan, range(3))
    base = workdir / f"epochs_{hvd.size()}"
    callback = runtime.CheckpointCallback(base, every_steps=None, every_epochs=1, keep=1,
                                          durable=False)
    fsync, fsynced = os.fsync, []
    os.fsync = fsynced.append
    try:
        model.fit(x, y, batch_size=local, epochs=2, shuffle=False, verbose=0,
                  callbacks=[callback])
    finally:
        os.fsync = fsync
    if fsynced:
        raise AssertionError(f"{len(fsynced)} fsyncs in saves with durable=False")
    hvd.allgather_object(None, name="ck_epochs_saved")
    if sorted(p.name for p in base.iterdir()) != ["step-000000006"]:
        raise AssertionError(f"kept {sorted(p.name for p in base.iterdir())}")
    saved = Checkpoint.open(base / "step-000000006").manifest
    if saved.optimizer.name != "Adagrad" or saved.optimizer.iterations != 6:
        raise AssertionError(f"saved {saved.optimizer}")
    if not any(f.file.startswith("dense/") for f in saved.files):
        raise AssertionError("the callback saved no dense state")


# --- dtypes and errors -----------------------------------------------------------------


DTYPES = {
    "column_slice_threshold": 20,
    "tables": [table("h", 9, 6, "sum", dtype="float16"),
               table("b", 7, 8, "sum", dtype="bfloat16"), table("s", 5, 4, "sum")],
}


def dtypes(workdir: Path) -> None:
    """float16 and bfloat16 pieces restored exactly under another strategy's plan."""
    first = DistributedEmbedding.from_plan(plan_for(DTYPES, "basic"), name="ck_dtypes")
    first.build(None)
    values = first.get_weights(all_ranks=True)
    runtime.save_checkpoint(workdir / "dtypes", first, None)
    other = plan_for({**DTYPES, "column_slice_threshold": 10}, "memory_balanced")
    second = DistributedEmbedding.from_plan(other, name="ck_dtypes_2")
    runtime.restore_checkpoint(workdir / "dtypes", second)
    for t, got, want in zip(other.tables, second.get_weights(all_ranks=True), values,
                            strict=True):
        if got.dtype != want.dtype or got.tobytes() != want.tobytes():
            raise AssertionError(f"{t.name}: {got.dtype} not restored bit for bit")


def on_rank0(work) -> None:
    """Change files on rank 0 while the others wait (one tiny all-gather as a barrier)."""
    if hvd.rank() == 0:
        work()
    hvd.allgather_object(None, name="ck_barrier")


def errors(workdir: Path) -> None:
    """Bad checkpoints: the same clear error on every rank, and nothing changed."""
    workdir = workdir / f"errors_{hvd.size()}"
    plan = plan_for(SPEC, "basic")
    layer = DistributedEmbedding.from_plan(plan, name="ck_errors")
    layer.build(None)
    optimizer = tf.keras.optimizers.Adam(LR)
    layer.set_weights(initial_tables(plan))
    train(layer, optimizer, plan, range(1))
    good = runtime.save_checkpoint(workdir / "good", layer, optimizer)
    target = DistributedEmbedding.from_plan(plan_for(SPEC, "memory_balanced"), name="ck_t")
    target.build(None)
    target_optimizer = tf.keras.optimizers.legacy.Adam(LR)
    runtime.restore_checkpoint(good, target, target_optimizer)
    before = target.get_weights(all_ranks=True)
    slots_before = {k: v.numpy() for k, v in
                    slots_of(target_optimizer, target.trainable_variables[0]).items()}
    manifest = Checkpoint.open(good).manifest
    last_rank_piece = next(p for p in manifest.pieces if p.rank == hvd.size() - 1
                           and p.slot == "v")
    bad = workdir / "bad"

    def copy(change):
        def work():
            shutil.rmtree(bad, ignore_errors=True)
            shutil.copytree(good, bad)
            change(bad)
        on_rank0(work)

    def flip(path: Path):
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 1
        path.write_bytes(raw)

    file = last_rank_piece.file
    cases = [
        ("missing piece", lambda d: (d / file).unlink(), [f"{bad / file}: missing"]),
        ("truncated piece", lambda d: (d / file).write_bytes((d / file).read_bytes()[:-8]),
         [f"{bad / file}: truncated"]),
        ("corrupted piece", lambda d: flip(d / file), [f"{bad / file}: corrupted"]),
        ("no manifest", lambda d: (d / "manifest.json").unlink(),
         ["manifest.json: missing: not a complete checkpoint"]),
        ("manifest damaged", lambda d: (d / "manifest.json").write_text("{\"format\""),
         ["manifest.json: not valid JSON"]),
    ]
    for what, change, needles in cases:
        copy(change)
        expect_error(what, lambda: runtime.restore_checkpoint(bad, target, target_optimizer),
                     *needles)
    expect_error("not a directory", lambda: runtime.restore_checkpoint(workdir / "nope", target),
                 "does not exist")
    expect_error("other optimizer",
                 lambda: runtime.restore_checkpoint(good, target,
                                                    tf.keras.optimizers.legacy.Adagrad()),
                 "holds Adam state but the optimizer is Adagrad; restore with Adam as the "
                 "optimizer")
    weights_only = runtime.save_checkpoint(workdir / "weights_only", layer)
    expect_error("no optimizer state saved",
                 lambda: runtime.restore_checkpoint(weights_only, target, target_optimizer),
                 "holds no optimizer state")
    for n, (last, needle) in enumerate((
        (table("f4", 12, 4, "sum"), "'f4' is 12 x 4 in the plan but 11 x 4 in the checkpoint"),
        (table("f5", 11, 4, "sum"), "tables not in the checkpoint: f5"),
        (table("f4", 11, 4, "sum", dtype="float16"), "'f4' is float16 in the plan but float32"),
    )):
        other_plan = plan_for({**SPEC, "inputs": None, "tables": [*SPEC["tables"][:-1], last]},
                              "basic")
        other = DistributedEmbedding.from_plan(other_plan, name=f"ck_other_{n}")
        expect_error(needle, lambda other=other: runtime.restore_checkpoint(good, other), needle)
    for t, got, want in zip(plan.tables, target.get_weights(all_ranks=True), before,
                            strict=True):
        if not np.array_equal(got, want):
            raise AssertionError(f"table {t.name} changed by a refused restore")
    for name, slot in slots_of(target_optimizer, target.trainable_variables[0]).items():
        if not np.array_equal(slot.numpy(), slots_before[name]):
            raise AssertionError(f"slot {name} changed by a refused restore")
    exists = workdir / "exists"
    on_rank0(lambda: (exists.mkdir(), (exists / "notes.txt").write_text("mine")))
    expect_error("save over something else", lambda: runtime.save_checkpoint(exists, layer),
                 "is not a checkpoint (no manifest.json); refusing")
    if (exists / "notes.txt").read_text() != "mine":
        raise AssertionError("a refused save touched the directory")


def after_kill(workdir: Path) -> None:
    """Each killed save (kill_save.py) left the previous checkpoint whole: restored under
    this job's plan it holds exactly what was recorded before the second save began."""
    plan = plan_for(SPEC, "memory_optimized")
    for mode in ("pieces", "publish", "publish_fast", "rename"):
        folder = workdir / mode
        layer = DistributedEmbedding.from_plan(plan, name=f"ck_kill_{mode}")
        layer.build(None)
        optimizer = tf.keras.optimizers.Adam(LR)
        optimizer.build(layer.trainable_variables)  # slots exist: filled at once
        if runtime.restore_checkpoint(folder / "ckpt", layer, optimizer) != 1:
            raise AssertionError(f"{mode}: not the first save's step")
        expected = np.load(folder / "expected.npz")
        for t, got in zip(plan.tables, layer.get_weights(all_ranks=True), strict=True):
            if not np.array_equal(got, expected[f"{t.name}/weights"]):
                raise AssertionError(f"{mode}: table {t.name} is not the first save's")
        hvd.allgather_object(None, name="ck_before_resave")
        again = Checkpoint.open(runtime.save_checkpoint(folder / "ckpt", layer, optimizer))
        for key in expected.files:
            name, slot = key.split("/")
            if not np.array_equal(again.view(name, slot)[:, :], expected[key]):
                raise AssertionError(f"{mode}: {slot} of {name} is not the first save's")
        left = sorted(p.name for p in folder.iterdir() if p.name.startswith("ckpt"))
        if left != ["ckpt"]:
            raise AssertionError(f"{mode}: the new save left {left}")


SCENARIOS = {
    "after_kill": after_kill,
    **{f"stage{n}": functools.partial(stage, n=n) for n in range(len(WORLDS))},
    "fit_save": fit_save,
    "fit_resume": fit_resume,
    "fit_epochs": fit_epochs,
    "dtypes": dtypes,
    "errors": errors,
}


if __name__ == "__main__":
    hvd.init()
    tf.keras.utils.set_random_seed(1234)
    workdir = Path(sys.argv[1])
    names = sys.argv[2:]
    chosen = {name: (lambda name=name: SCENARIOS[name](workdir)) for name in names}
    sys.exit(1 if common.run(chosen, names) else 0)
