"""Runtime speed on CPU: the distributed layer's step time on 2 ranks against a single
process on the same tables, the step's collectives and bytes against the planner's
estimate, and the layer's start-up time from a plan file against the original
constructor, which plans in process.

The distributed measurements run under ``horovodrun -np 2 --gloo -H localhost:2`` and rank
0 reports them: one job for the start-up times, then one job per spec for the step times
(a fresh Horovod per spec, as in a training job). The reference runs last, as one plain
process, so that nothing else of this script competes with it for the cores.

* **Step**: forward, backward and a plain SGD update (``tf.keras.optimizers.legacy.SGD``)
  inside one ``tf.function``, after ``--warmup`` steps; the median of ``--steps`` steps.
  Two ranks take a local batch of ``--batch`` samples each, through
  ``DistributedEmbedding.from_plan`` and ``DistributedGradientTape``; the reference takes
  the global batch (2 x ``--batch``) in one process, one ``runtime.Embedding`` per table
  (the same lookup code, no collectives). Both see the same ids, and the same loss: the
  sum over inputs of the batch mean of ``sum(output * target)``. On one machine the two
  ranks share its cores, so this measures the layer's overhead, not scaling.
* **Traffic**: the Horovod collectives in the timed step's graph, and the bytes rank 0
  sends and receives per step in each, metered on a second trace of the same step
  (``_traffic.py``) over a few more steps, beside the planner's estimate for the same
  plan (``ranks[0].comm``, planned at the global batch with 4-byte ids). Then the same
  collectives with the same bytes run back to back with nothing else (``_floor.py``):
  no step making them can be faster here, which is the *floor ratio* against one process.
* **Start-up**: ``DistributedEmbedding.from_plan(path)`` (read and check the plan file,
  set up the layer) against ``DistributedEmbedding(embeddings, strategy=...)`` with the
  plan's options (describe the Keras layers, plan in process); the Keras embedding layers
  the constructor needs are made beforehand and timed on their own. Creating this rank's
  variables (``build``) is the same work on both paths; it is timed where the tables are
  small enough to create here, and left out for the bundled configs (tens to thousands
  of GiB per rank at 2 ranks). Median of ``--repeats`` runs, both ranks at once, with
  Python's garbage collector paused during each timed call (as ``timeit`` does).

    .venv/bin/python benchmarks/runtime_step.py [--markdown] [--batch 256] [--steps 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import ROOT, machine, render

from planner import load_spec, make_plan, save_plan, spec_from_dict
from planner.plan import Plan

RANKS = 2
MARKER = "RUNTIME_STEP_RESULT "
GIB = 2**30
KB = 1e3
TRAFFIC_STEPS = 5  # steps whose collectives are metered (after the timed ones)


# --- the specs --------------------------------------------------------------------------


def synthetic_spec(**options) -> dict:
    """32 seeded tables of 500 to 100,000 rows, widths 16 to 64 (106 MB in float32); 8 are
    multi-hot (2 to 20 ids, sum or mean), 4 of those also read by a one-hot input."""
    rng = np.random.default_rng(7)
    count = 32
    rows = np.exp(rng.uniform(np.log(500), np.log(100_000), count)).astype(int)
    widths = rng.choice([16, 32, 64], count)
    multi = {int(i) for i in rng.choice(count, 8, replace=False)}
    tables, inputs = [], []
    for i in range(count):
        combiner = ("sum" if len(tables) % 2 else "mean") if i in multi else None
        tables.append(
            {"name": f"t{i}", "rows": int(rows[i]), "width": int(widths[i]), "combiner": combiner}
        )
        hotness = int(rng.integers(2, 21)) if i in multi else 1
        inputs.append({"name": f"t{i}", "table": f"t{i}", "hotness": hotness})
    inputs += [{"name": f"t{i}_one", "table": f"t{i}"} for i in sorted(multi)[:4]]
    return {
        "world_size": RANKS,
        "strategy": "memory_balanced",
        "tables": tables,
        "inputs": inputs,
        **options,
    }


def step_plans(global_batch: int) -> dict[str, Plan]:
    """What the step time is measured on, by name, each with the planner's traffic
    estimate at ``global_batch`` and 4-byte ids (the int32 ids the runtime sends)."""
    traffic = {"global_batch_size": global_batch, "id_bytes": 4}
    synthetic = {
        "synthetic32": {},
        "synthetic32 column slices": {"column_slice_threshold": 400_000},
        "synthetic32 row slices": {"row_slice_threshold": 2_000_000},
        "synthetic32 data-parallel": {"data_parallel_threshold": 65_536},
    }
    plans = {"dlrm_tiny": make_plan(load_spec(ROOT / "examples" / "dlrm_tiny.yaml", traffic))}
    for name, options in synthetic.items():
        spec = synthetic_spec(**traffic, **options)
        plans[name] = make_plan(spec_from_dict(spec, source=name))
    return plans


def startup_plans(step: dict[str, Plan]) -> dict[str, tuple[Plan, bool]]:
    """What the start-up time is measured on: (plan, whether its variables are built)."""
    plans = {name: (step[name], True) for name in ("dlrm_tiny", "synthetic32")}
    for config in ("criteo_1tb_mlperf_v1", "synthetic_medium", "synthetic_colossal"):
        spec = load_spec(ROOT / "configs" / f"{config}.yaml", {"world_size": RANKS})
        plans[config] = (make_plan(spec), False)
    return plans


def placement(plan: Plan) -> str:
    """Tables per group, and the column pieces of table-parallel tables when sliced."""
    groups = plan.groups
    parts = []
    if groups.data_parallel:
        parts.append(f"{len(groups.data_parallel)} dp")
    pieces = sum(1 for s in plan.shards if s.table in set(groups.table_parallel))
    tp = f"{len(groups.table_parallel)} tp"
    parts.append(tp if pieces == len(groups.table_parallel) else f"{tp} ({pieces} pieces)")
    if groups.row_sliced:
        parts.append(f"{len(groups.row_sliced)} row-sliced")
    return ", ".join(parts)


# --- traffic: measured against the planner's estimate --------------------------------------

# The layer's collectives (by what they carry), and the planner's phases each one covers.
CARRIES = {
    "ids": ("id_alltoall", "row_id_allgather"),
    "embeddings": ("embedding_alltoall", "row_reduce_scatter"),
    "gradients": ("embedding_grad_alltoall", "row_grad_allgather"),
    "dp gradients": ("dp_allreduce",),
}
OP_NAMES = {
    "HorovodAlltoall": "all-to-all",
    "HorovodAllgather": "all-gather",
    "HorovodReducescatter": "reduce-scatter",
    "HorovodAllreduce": "all-reduce",
    "HorovodGroupedAllreduce": "grouped all-reduce",
}


def carried(kind: str, name: str) -> str:
    """What a metered collective carries, from its kind and the layer's naming."""
    if kind == "alltoall":
        for suffix, what in (("_out_grad", "gradients"), ("_out", "embeddings"), ("_ids", "ids")):
            if name.endswith(suffix):
                return what
    if kind in ("allreduce", "grouped_allreduce"):
        return "dp gradients"
    return f"other {kind}"


def traffic_rows(plans: dict[str, Plan], dist: dict) -> tuple[list[str], list[list[str]]]:
    """Per spec: collectives in the traced step, and rank 0's bytes per step (sent plus
    received) per collective, measured and as the planner estimates them."""
    head = ["spec", "collectives per step"]
    head += [f"{what} KB (est.)" for what in CARRIES]
    head += ["total KB", "estimate KB", "measured / estimate"]
    rows = []
    for name, plan in plans.items():
        d = dist["step"][name]
        ops = ", ".join(f"{n} {OP_NAMES.get(op, op)}" for op, n in sorted(d["collectives"].items()))
        measured: dict[str, float] = {}
        for entry in d["traffic"]:
            what = carried(entry["kind"], entry["name"])
            measured[what] = measured.get(what, 0) + entry["sent"] + entry["received"]
        comm = plan.ranks[0].comm
        estimate = {
            what: sum(getattr(comm, p).sent + getattr(comm, p).received for p in phases)
            for what, phases in CARRIES.items()
        }
        cells = [
            f"{measured.get(what, 0) / KB:,.1f} ({estimate[what] / KB:,.1f})" for what in CARRIES
        ]
        total, expected = sum(measured.values()), sum(estimate.values())
        ratio = f"{total / expected:.3f}" if expected else "-"
        count = f"{sum(d['collectives'].values())}: {ops}"
        rows.append([name, count, *cells, f"{total / KB:,.1f}", f"{expected / KB:,.1f}", ratio])
    return head, rows


# --- the driver -------------------------------------------------------------------------


def environment(cycle_time: float | None = None) -> dict[str, str]:
    """As the runtime tests launch: quiet TensorFlow, one OpenMP thread, this checkout;
    with ``cycle_time``, Horovod's background cycle in ms (``HOROVOD_CYCLE_TIME``)."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if cycle_time is not None:
        env["HOROVOD_CYCLE_TIME"] = str(cycle_time)
    return env


def horovodrun() -> str:
    candidate = Path(sys.executable).parent / "horovodrun"
    return str(candidate) if candidate.exists() else "horovodrun"


def run_worker(command: list[str], prefix: str, args: argparse.Namespace) -> dict:
    """Run a worker (progress goes to stderr) and parse its result line."""
    done = subprocess.run(
        command,
        env=environment(args.cycle_time),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=args.timeout,
    )
    for line in done.stdout.splitlines():
        if line.startswith(prefix + MARKER):
            return json.loads(line[len(prefix + MARKER) :])
    sys.stderr.write(done.stdout[-4000:])
    raise SystemExit(f"no result from {' '.join(command[:6])} ... (exit code {done.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="local batch per rank")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=5, help="start-up runs (median)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per launch")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--specs", help="comma-separated step specs (default: all)")
    parser.add_argument("--no-startup", action="store_true", help="step times only")
    parser.add_argument(
        "--cycle-time", type=float, help="HOROVOD_CYCLE_TIME in ms (default: Horovod's, 1 ms)"
    )
    parser.add_argument("--worker", choices=["distributed", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--jobs", help=argparse.SUPPRESS)
    parser.add_argument("--select", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(Path(args.jobs).read_text()), args.select)
        return

    load_before = os.getloadavg()[0]
    step = step_plans(RANKS * args.batch)
    if args.specs:
        step = {name: step[name] for name in args.specs.split(",")}
    startup = {} if args.no_startup else startup_plans(step_plans(RANKS * args.batch))
    with tempfile.TemporaryDirectory() as folder:
        jobs = {
            "batch": args.batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "step": [],
            "startup": [],
        }
        for kind, plans in (("step", step), ("startup", {k: v[0] for k, v in startup.items()})):
            for name, plan in plans.items():
                path = Path(folder) / f"{kind}_{len(jobs[kind])}.plan.json"
                save_plan(plan, path)
                job = {"name": name, "plan": str(path)}
                if kind == "startup":
                    job["build"] = startup[name][1]
                jobs[kind].append(job)
        jobs_path = Path(folder) / "jobs.json"
        jobs_path.write_text(json.dumps(jobs))
        me = [sys.executable, str(Path(__file__).resolve()), "--jobs", str(jobs_path)]
        launcher = [horovodrun(), "-np", str(RANKS), "--gloo", "-H", f"localhost:{RANKS}"]
        distributed = [*launcher, *me, "--worker", "distributed", "--select"]
        # One job per spec, as a training job runs one layer: nothing (warm caches,
        # Gloo's connections) carries over from one spec to the next.
        dist = {"startup": {}}
        if startup:
            dist = run_worker([*distributed, "startup"], "[0]<stdout>:", args)
        dist["step"] = {}
        for index in range(len(jobs["step"])):
            one = run_worker([*distributed, str(index)], "[0]<stdout>:", args)
            dist["step"].update(one.pop("step"))
            dist = {**one, **dist}  # the start-up job's import time and threads, if it ran
        ref = run_worker([*me, "--worker", "reference", "--select", "all"], "", args)
    load_after = os.getloadavg()[0]

    global_batch = RANKS * args.batch
    step_head = ["spec", "tables", "inputs", "placement", "2 ranks ms", "p10-p90"]
    step_head += ["1 process ms", "p10-p90", "ratio", "collectives alone ms", "floor ratio"]
    step_head += ["CPU ms per step (rank 0 / 1 process)", "2 ranks samples/s"]
    step_head += ["1 process samples/s"]
    step_head += ["first step s (2r / 1p)"]
    step_rows = []
    for name, plan in step.items():
        d, r = dist["step"][name], ref["step"][name]
        step_rows.append(
            [
                name,
                str(len(plan.tables)),
                str(len(plan.inputs)),
                placement(plan),
                f"{d['ms']:.1f}",
                f"{d['p10']:.1f}-{d['p90']:.1f}",
                f"{r['ms']:.1f}",
                f"{r['p10']:.1f}-{r['p90']:.1f}",
                f"{d['ms'] / r['ms']:.2f}x",
                f"{d['alone_ms']:.1f}",
                f"{d['alone_ms'] / r['ms']:.2f}x",
                f"{d['cpu_ms']:.1f} / {r['cpu_ms']:.1f}",
                f"{global_batch / d['ms'] * 1000:,.0f}",
                f"{global_batch / r['ms'] * 1000:,.0f}",
                f"{d['first_s']:.1f} / {r['first_s']:.1f}",
            ]
        )
    start_head = ["spec", "tables", "rank 0 GiB", "plan KB", "from_plan ms", "constructor ms"]
    start_head += ["ratio", "Keras layers ms", "build ms", "same shards"]
    start_rows = []
    for name, (plan, built) in startup.items():
        s = dist["startup"][name]
        start_rows.append(
            [
                name,
                f"{len(plan.tables):,}",
                f"{plan.ranks[0].bytes / GIB:,.3f}",
                f"{s['plan_bytes'] / 1e3:,.1f}",
                f"{s['from_plan_ms']:.1f}",
                f"{s['constructor_ms']:.1f}",
                f"{s['constructor_ms'] / s['from_plan_ms']:.1f}x",
                f"{s['layers_ms']:.1f}",
                f"{s['build_ms']:.1f}" if built else "-",
                "yes" if s["same_shards"] else "NO",
            ]
        )

    print(
        f"machine: {machine()}; 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after"
    )
    cycle = "Horovod's default 1 ms" if args.cycle_time is None else f"{args.cycle_time} ms"
    print(
        f"launch: horovodrun -np {RANKS} --gloo -H localhost:{RANKS}, OMP_NUM_THREADS=1, "
        f"TensorFlow's default thread pools (intra-op {dist['threads']}), Horovod cycle time "
        f"{cycle}; reference: one plain process, same environment, run after the "
        "distributed jobs"
    )
    print(
        f"step: local batch {args.batch} per rank, global batch {global_batch}; median (and "
        f"10th-90th percentile) of {args.steps} steps after {args.warmup}; ratio = 2 ranks ms "
        "/ 1 process ms; collectives alone = the step's collectives with its bytes, back to "
        "back, nothing else (median, as many steps); floor ratio = collectives alone / 1 "
        "process ms; CPU ms = the process's CPU time (every thread, user and system) per "
        "timed step; first step = tracing and first run"
    )
    print(f"import tensorflow + horovod and hvd.init(): {dist['import_s']:.1f} s (not included)")
    print(
        f"rank 0 idle, Horovod up: {dist['idle_cpu']:.0%} of a core (its background cycle, "
        "taken from the step's share of the cores)"
    )
    if start_rows:
        print(
            f"start-up: median of {args.repeats} runs on rank 0 (both ranks at once); ratio = "
            "constructor ms / from_plan ms; Keras layers = making the embedding layers the "
            "constructor takes; build = creating rank 0's variables"
        )
    print()
    print(render(step_head, step_rows, args.markdown))
    print()
    print(
        "traffic: rank 0's bytes per step, sent plus received, metered on a second trace of "
        "the same step; in brackets the planner's estimate for the same plan (its phases, "
        "at the same global batch, 4-byte ids); collectives counted in the timed step's graph"
    )
    print(render(*traffic_rows(step, dist), args.markdown))
    if start_rows:
        print()
        print(render(start_head, start_rows, args.markdown))


# --- the workers --------------------------------------------------------------------------


def worker(role: str, jobs: dict, select: str) -> None:
    """Measure ``select``: "startup", one step job's index, or "all" step jobs."""
    started = time.perf_counter()
    import tensorflow as tf

    if role == "distributed":
        import horovod.tensorflow as hvd

        hvd.init()
        rank = hvd.rank()
    else:
        rank = 0
    result = {"import_s": time.perf_counter() - started}
    if role == "distributed":
        result["idle_cpu"] = idle_cpu_share()
    result["threads"] = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    if select == "startup":
        result["startup"] = {}
        for job in jobs["startup"]:
            result["startup"][job["name"]] = startup_times(job, jobs["repeats"])
            if rank == 0:
                print(
                    f"start-up {job['name']}: {result['startup'][job['name']]}",
                    file=sys.stderr,
                    flush=True,
                )
    else:
        step_jobs = jobs["step"] if select == "all" else [jobs["step"][int(select)]]
        result["step"] = {}
        for job in step_jobs:
            result["step"][job["name"]] = step_times(role, job, jobs)
            if rank == 0:
                print(
                    f"{role} step {job['name']}: {result['step'][job['name']]}",
                    file=sys.stderr,
                    flush=True,
                )
            tf.keras.backend.clear_session()
    if rank == 0:
        print(MARKER + json.dumps(result), flush=True)


def idle_cpu_share(seconds: float = 2.0) -> float:
    """This process's CPU time per second while it does nothing but keep Horovod up: the
    background thread cycles (and coordinates with the other ranks) whether or not a
    collective is waiting, and takes that share of a core from the step."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.allreduce(tf.constant(0.0), name="idle_cpu_warmup")  # connections made
    before = time.process_time()
    time.sleep(seconds)
    return (time.process_time() - before) / seconds


def batch_data(plan: Plan, batch: int, seed: int = 0):
    """Global ids and loss targets for every input, the same in every process."""
    rng = np.random.default_rng(seed)
    ids, targets = [], []
    for inp in plan.inputs:
        table = plan.table(inp.table)
        shape = (batch,) if inp.hotness == 1 else (batch, inp.hotness)
        ids.append(rng.integers(0, table.rows, size=shape).astype(np.int32))
        targets.append(rng.normal(size=(batch, table.width)).astype(np.float32))
    return ids, targets


def step_times(role: str, job: dict, jobs: dict) -> dict:
    """The step's times; on the distributed side also its collectives and their bytes."""
    import tensorflow as tf

    from planner import load_plan
    from runtime import DistributedEmbedding, DistributedGradientTape, Embedding

    plan = load_plan(job["plan"])
    local = jobs["batch"]
    ids, targets = batch_data(plan, RANKS * local)
    if role == "distributed":
        import horovod.tensorflow as hvd

        rows = slice(hvd.rank() * local, (hvd.rank() + 1) * local)
        ids, targets = [x[rows] for x in ids], [t[rows] for t in targets]
        layer = DistributedEmbedding.from_plan(job["plan"])
        layer.build(None)
        variables = layer.trainable_variables

        def forward(inputs):
            return layer(inputs)

        def gradients(tape, loss):
            return DistributedGradientTape(tape).gradient(loss, variables)
    else:
        index = {t.name: i for i, t in enumerate(plan.tables)}
        tables = [Embedding(t.rows, t.width, combiner=t.combiner) for t in plan.tables]
        for t in tables:
            t.build(None)
        variables = [t.embeddings for t in tables]

        def lookup(table: int, ids: tf.Tensor) -> tf.Tensor:
            # Upstream's Embedding reads 1-D ids with a combiner as ambiguous: one id
            # per sample is a column of ids to combine.
            if ids.shape.rank == 1 and plan.tables[table].combiner is not None:
                ids = ids[:, None]
            return tables[table](ids)

        def forward(inputs):
            return [lookup(index[i.table], x) for i, x in zip(plan.inputs, inputs, strict=True)]

        def gradients(tape, loss):
            return tape.gradient(loss, variables)

    optimizer = tf.keras.optimizers.legacy.SGD(0.01)
    ids = [tf.constant(x) for x in ids]
    targets = [tf.constant(t) for t in targets]

    def training_step(inputs, wanted):
        with tf.GradientTape() as tape:
            outputs = forward(inputs)
            loss = tf.add_n(
                [
                    tf.reduce_mean(tf.reduce_sum(out * want, axis=1))
                    for out, want in zip(outputs, wanted, strict=True)
                ]
            )
        grads = gradients(tape, loss)
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        )
        return loss

    step = tf.function(training_step)
    start = time.perf_counter()
    step(ids, targets).numpy()
    first = time.perf_counter() - start
    for _ in range(jobs["warmup"]):
        step(ids, targets).numpy()
    times = []
    cpu_before = time.process_time()
    for _ in range(jobs["steps"]):
        start = time.perf_counter()
        step(ids, targets).numpy()
        times.append(time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu_before) / jobs["steps"] * 1000
    deciles = statistics.quantiles(times, n=10)
    result = {
        "cpu_ms": cpu_ms,
        "ms": statistics.median(times) * 1000,
        "p10": deciles[0] * 1000,
        "p90": deciles[-1] * 1000,
        "first_s": first,
    }
    if role == "distributed":
        from _traffic import TrafficMeter

        from runtime.diagnostics import collective_ops

        result["collectives"] = collective_ops(step.get_concrete_function(ids, targets))
        meter = TrafficMeter()
        with meter.counting():
            counted = tf.function(training_step)  # a second trace, with the meter in it
            counted(ids, targets).numpy()
        meter.reset()
        for _ in range(TRAFFIC_STEPS):
            counted(ids, targets).numpy()
        result["traffic"] = [
            {"kind": kind, "name": name, **{k: v / TRAFFIC_STEPS for k, v in counts.items()}}
            for (kind, name), counts in meter.totals().items()
        ]
        from _floor import collectives_alone

        result["alone_ms"] = collectives_alone(result["traffic"], jobs["steps"], jobs["warmup"])
    return result


def startup_times(job: dict, repeats: int) -> dict:
    """from_plan(path) and the constructor, each median of ``repeats``; build where asked."""
    import tensorflow as tf

    from planner import load_plan
    from runtime import DistributedEmbedding, Embedding

    path = job["plan"]
    plan = load_plan(path)
    index = {t.name: i for i, t in enumerate(plan.tables)}
    params = plan.parameters
    options = {
        "strategy": params.requested_strategy,
        "column_slice_threshold": params.requested_column_slice_threshold,
        "row_slice_threshold": params.requested_row_slice_threshold,
        "data_parallel_threshold": params.requested_data_parallel_threshold,
        "dp_input": params.dp_input,
        "input_table_map": [index[i.table] for i in plan.inputs],
    }
    times: dict[str, list[float]] = {"from_plan": [], "constructor": [], "layers": [], "build": []}

    def timed(key: str, work):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = work()
            times[key].append(time.perf_counter() - start)
        finally:
            gc.enable()
        return result

    same = True
    for _ in range(repeats):
        layer = timed("from_plan", lambda: DistributedEmbedding.from_plan(path))
        if job["build"]:
            timed("build", lambda layer=layer: layer.build(None))
        del layer
        tf.keras.backend.clear_session()
        embeddings = timed(
            "layers",
            lambda: [
                Embedding(t.rows, t.width, combiner=t.combiner, name=t.name) for t in plan.tables
            ],
        )
        layer = timed(
            "constructor", lambda embeddings=embeddings: DistributedEmbedding(embeddings, **options)
        )
        same = same and layer.plan.shards == plan.shards
        del layer, embeddings
        tf.keras.backend.clear_session()
    result = {
        f"{key}_ms": statistics.median(values) * 1000 if values else None
        for key, values in times.items()
    }
    result["plan_bytes"] = Path(path).stat().st_size
    result["same_shards"] = same
    return result


if __name__ == "__main__":
    main()
