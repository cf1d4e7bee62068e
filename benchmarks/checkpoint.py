"""Checkpoint speed and memory: save and restore on 2 ranks, and the offline reshard.

The model is ``configs/criteo_kaggle.yaml`` (26 tables, 2.01 GiB in float32) planned on
2 ranks, with ``--optimizer adagrad`` one optimizer slot more per element. The layers
serve one batch of lookups first, as in training (it changes how TensorFlow reads
variables). Under ``horovodrun -np 2 --gloo -H localhost:2`` each rank measures, median
of ``--repeats`` runs:

* **save**: ``save_checkpoint`` to a new directory; the rank's bytes are the pieces it
  writes. Beside it, ``numpy.save`` of the same pieces (already copied into numpy arrays,
  so only the writing is timed) with ``fsync``, then without, then a save with
  ``durable=False``, then ``numpy.save`` of the pieces read off the variables in the
  same call (one ``sparse_read`` per piece: the plain numpy route from a live layer):
  the baselines the goal is stated against (within 2x). A durable save is compared with
  ``numpy.save`` and ``fsync``, one with ``durable=False`` (no fsync) with plain
  ``numpy.save`` of both kinds; each ratio is the median over the runs of a save's time
  over its baseline's in the same run;
* **restore, same plan**: ``restore_checkpoint`` into the same layer (checksums of every
  block read verified first, as by default); the rank's bytes are the ones it holds;
* **restore, other plan**: into a layer of another plan of the same tables on 2 ranks
  (``memory_optimized``, the three largest tables row-sliced, more data-parallel tables);
* **peak memory**: the peak resident set during the call (``VmHWM`` after resetting it
  through ``/proc/self/clear_refs``) less the resident set before it: what the call adds
  to a process already holding its tables. The goal: within the rank's own bytes plus
  256 MiB.

Then, in a plain process, ``reshard`` of the last checkpoint to a 3-rank ``auto`` plan:
bytes written per second and peak memory over the process's resident set before it.
The checkpoints are written under ``--dir`` (default: the system's temporary folder),
so read speeds there are mostly those of the page cache, as after a save on one machine.

    .venv/bin/python benchmarks/checkpoint.py [--markdown] [--repeats 3] [--optimizer adagrad]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import ROOT, machine, render
from runtime_step import environment, horovodrun

from planner import load_spec, make_plan, save_plan

RANKS = 2
MARKER = "CHECKPOINT_RESULT "
MIB = 2**20


def plans(folder: Path, config: Path) -> dict[str, Path]:
    specs = {
        "save": {"world_size": RANKS},
        "other": {"world_size": RANKS, "strategy": "memory_optimized",
                  "row_slice_threshold": 10**8, "data_parallel_threshold": 10**4},
        "reshard": {"world_size": 3, "strategy": "auto"},
    }
    paths = {}
    for name, overrides in specs.items():
        paths[name] = folder / f"{name}.plan.json"
        save_plan(make_plan(load_spec(config, overrides)), paths[name])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimizer", choices=["none", "adagrad"], default="none")
    parser.add_argument("--config", default=str(ROOT / "configs" / "criteo_kaggle.yaml"),
                        help="table spec (default: the Criteo Kaggle model)")
    parser.add_argument("--dir", default=None, help="where to write (default: temp folder)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", choices=["ranks", "reshard"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = Path(args.work)
        result = rank_worker(work, args) if args.worker == "ranks" else reshard_worker(work)
        print(MARKER + json.dumps(result), flush=True)
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        work = Path(folder)
        plans(work, Path(args.config))
        me = [sys.executable, str(Path(__file__).resolve()), "--work", folder,
              "--repeats", str(args.repeats), "--optimizer", args.optimizer]
        launcher = [horovodrun(), "-np", str(RANKS), "--gloo", "-H", f"localhost:{RANKS}"]
        ranks = run([*launcher, *me, "--worker", "ranks"], args.timeout)
        reshard = run([*me, "--worker", "reshard"], args.timeout)[0]
    load_after = os.getloadavg()[0]
    report(ranks, reshard, args, load_before, load_after)


def run(command: list[str], timeout: float) -> list[dict]:
    """Run a worker; one result per rank, in rank order."""
    done = subprocess.run(command, env=environment(), cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, timeout=timeout)
    found = {}
    for line in done.stdout.splitlines():
        prefix, _, rest = line.partition(MARKER)
        if rest:
            found[int(prefix[1:].split("]")[0]) if prefix else 0] = json.loads(rest)
    if not found or done.returncode:
        sys.stderr.write(done.stdout[-4000:])
        raise SystemExit(f"no result from {' '.join(command[:6])} (exit code {done.returncode})")
    return [found[r] for r in sorted(found)]


def report(ranks: list[dict], reshard: dict, args, load_before: float, load_after: float):
    def mbps(nbytes: float, seconds: float) -> str:
        return f"{nbytes / MIB / seconds:,.0f}"

    head = ["rank", "own GiB", "save s", "save MB/s", "numpy.save +fsync MB/s",
            "vs numpy.save +fsync", "durable=False MB/s", "numpy.save MB/s", "vs numpy.save",
            "read + numpy.save MB/s", "vs read + numpy.save",
            "save peak MiB", "restore MB/s", "restore peak MiB", "other plan MB/s",
            "other plan peak MiB"]
    rows = []
    for r, m in enumerate(ranks):
        save = m["save_bytes"]
        rows.append([
            str(r),
            f"{m['held_bytes'] / 2**30:.3f}",
            f"{m['save_s']:.2f}",
            mbps(save, m["save_s"]),
            mbps(save, m["numpy_fsync_s"]),
            f"{m['vs_numpy_fsync']:.2f}x",
            mbps(save, m["fast_s"]),
            mbps(save, m["numpy_s"]),
            f"{m['vs_numpy']:.2f}x",
            mbps(save, m["from_variables_s"]),
            f"{m['vs_from_variables']:.2f}x",
            f"{m['save_peak'] / MIB:,.0f}",
            mbps(m["held_bytes"], m["restore_s"]),
            f"{m['restore_peak'] / MIB:,.0f}",
            mbps(m["other_bytes"], m["other_s"]),
            f"{m['other_peak'] / MIB:,.0f}",
        ])
    print(f"machine: {machine()}; 1-minute load average {load_before:.1f} before, "
          f"{load_after:.1f} after")
    print(f"model: {Path(args.config).name} on {RANKS} ranks (memory_balanced), optimizer "
          f"state: {args.optimizer}; median of {args.repeats} runs; MB = MiB; own = the "
          f"rank's tables (and slots) in memory; save MB/s counts the pieces the rank writes; "
          f"vs = median over the runs of each save's time over its numpy.save run (durable "
          f"saves against numpy.save with fsync, durable=False ones against numpy.save, from "
          f"arrays in memory or read off the variables first)")
    print("peak = highest resident set during the call less the resident set before it\n")
    print(render(head, rows, args.markdown))
    print()
    print(render(
        ["offline reshard", "GiB written", "s", "MB/s", "peak MiB"],
        [["2 ranks -> 3 ranks (auto)", f"{reshard['bytes'] / 2**30:.3f}", f"{reshard['s']:.2f}",
          mbps(reshard["bytes"], reshard["s"]), f"{reshard['peak'] / MIB:,.0f}"]],
        args.markdown,
    ))


# --- measuring -------------------------------------------------------------------------


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _no_barrier() -> None:
    """A single process has no one to wait for."""


def measured(work, *args, barrier=_no_barrier) -> tuple[float, int]:
    """Seconds ``work(*args)`` takes, and the peak resident set above the one before it.

    Dirty pages and deletions of earlier runs are written out first (``os.sync``,
    untimed): otherwise each run pays for the one before it, as the kernel writes its
    data back (and, on a filesystem mounted with ``discard``, trims the blocks of the
    files just deleted) during the next one. On ranks, ``barrier`` starts the clock on
    all of them at once and stops it when the last is done: a checkpoint is complete
    when its slowest rank is, and a baseline timed alone would have the disk and the
    cores to itself while the other rank was still syncing or waiting.
    """
    gc.collect()
    os.sync()
    barrier()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    start = time.perf_counter()
    work(*args)
    peak = _status("VmHWM") - before  # before the barrier: its buffers are Horovod's
    barrier()
    return time.perf_counter() - start, peak


def median_of(repeats: int, work, barrier=_no_barrier) -> tuple[float, int]:
    runs = [measured(work, barrier=barrier) for _ in range(repeats)]
    return statistics.median(s for s, _ in runs), max(p for _, p in runs)


def rank_worker(work: Path, args) -> dict:
    import horovod.tensorflow as hvd

    hvd.init()

    def barrier() -> None:
        hvd.allgather_object(None, name="bench_barrier")

    result, latest = first_plan(work, args, hvd.rank(), barrier)
    gc.collect()  # the first layer is gone: the other plan's layer takes its place
    result.update(other_plan(work, args, latest, barrier))
    hvd.allgather_object(None, name="bench_done")
    if hvd.rank() == 0:
        latest.rename(work / "ckpt")
    return result


def make_optimizer(args, variables):
    import tensorflow as tf

    if args.optimizer == "none":
        return None
    optimizer = tf.keras.optimizers.Adagrad()
    optimizer.build(variables)
    return optimizer


def serve_a_batch(layer) -> None:
    """One lookup, as in training. TensorFlow copies a variable whole on every read once
    it has served a gather; a checkpoint must not read variables that way."""
    import tensorflow as tf

    layer([tf.zeros([4], tf.int32) for _ in layer.plan.inputs])


def held_bytes(layer, optimizer) -> int:
    per_element = 1 if optimizer is None else 2
    return per_element * sum(v.shape.num_elements() * v.dtype.size
                             for v in layer.table_variables())


def first_plan(work: Path, args, rank: int, barrier) -> tuple[dict, Path]:
    """Save (once for its peak memory, before the baseline's arrays exist), then saves
    alternating with numpy.save of the same pieces, then restores into the same layer.
    Alternating, in both orders, exposes both writers to the same states of the
    machine's page cache and disk (writeback of earlier runs, other jobs)."""
    import runtime
    from planner import load_plan
    from planner.checkpoint import plan_blocks

    plan = load_plan(work / "save.plan.json")
    layer = runtime.DistributedEmbedding.from_plan(plan, name="bench")
    layer.build(None)
    serve_a_batch(layer)
    optimizer = make_optimizer(args, layer.trainable_variables)
    latest = work / "ckpt-first"
    timed = functools.partial(measured, barrier=barrier)
    _, save_peak = timed(runtime.save_checkpoint, latest, layer, optimizer)  # peak only
    blocks = plan_blocks(layer.plan)
    arrays = pieces_in_numpy(layer, blocks, optimizer, rank)
    times: dict[str, list[float]] = {
        "save": [], "fast": [], "numpy": [], "numpy_fsync": [], "from_variables": []}
    folder = work / f"numpy-{rank}"

    def save(path: Path, durable: bool) -> None:
        runtime.save_checkpoint(path, layer, optimizer, durable=durable)

    def discard(path: Path) -> None:
        if rank == 0:  # the ranks' files share one directory
            shutil.rmtree(path)

    for i in range(args.repeats):
        discard(latest)
        latest, fast = work / f"ckpt-{i}", work / f"fast-{i}"
        # Each save beside its baseline, the order flipping every run: here the same
        # write swung between slow and fast from one round to the next (2 to 5 times),
        # whichever writer it was, so a fixed order favours one of them.
        pairs = [
            [("save", functools.partial(save, latest, True), lambda: None),
             ("numpy_fsync", functools.partial(numpy_save, arrays, folder, True),
              functools.partial(shutil.rmtree, folder))],
            [("fast", functools.partial(save, fast, False), functools.partial(discard, fast)),
             ("numpy", functools.partial(numpy_save, arrays, folder, False),
              functools.partial(shutil.rmtree, folder))],
        ]
        for pair in pairs:
            for name, write, clean in pair if i % 2 == 0 else pair[::-1]:
                times[name].append(timed(write)[0])
                clean()
        times["from_variables"].append(
            timed(read_then_save, layer, blocks, optimizer, rank, folder)[0])
        shutil.rmtree(folder)
    arrays.clear()
    restore_s, restore_peak = median_of(
        args.repeats, lambda: runtime.restore_checkpoint(latest, layer, optimizer), barrier)
    return {
        "held_bytes": held_bytes(layer, optimizer),
        "save_bytes": sum(p.bytes for p in rank_pieces(latest, rank)),
        "save_s": statistics.median(times["save"]), "save_peak": save_peak,
        "fast_s": statistics.median(times["fast"]),
        "numpy_s": statistics.median(times["numpy"]),
        "numpy_fsync_s": statistics.median(times["numpy_fsync"]),
        "vs_numpy": paired_ratio(times["fast"], times["numpy"]),
        "from_variables_s": statistics.median(times["from_variables"]),
        "vs_from_variables": paired_ratio(times["fast"], times["from_variables"]),
        "vs_numpy_fsync": paired_ratio(times["save"], times["numpy_fsync"]),
        "restore_s": restore_s, "restore_peak": restore_peak,
    }, latest


def paired_ratio(times: list[float], baseline: list[float]) -> float:
    """Median over the runs of each save's time over the baseline's right after it: the
    pairs meet the same state of the machine, which drifts between runs."""
    return statistics.median(t / b for t, b in zip(times, baseline, strict=True))


def rank_pieces(path: Path, rank: int):
    from planner.checkpoint import Checkpoint

    return [p for p in Checkpoint.open(path).manifest.pieces if p.rank == rank]


def pieces_in_numpy(layer, blocks, optimizer, rank: int) -> list[np.ndarray]:
    """The pieces this rank saves, as numpy arrays (weights, and slots with an optimizer)."""
    import tensorflow as tf

    from runtime.slots import slots_of
    from runtime.weights import variable_pieces

    plan = layer.plan
    mine = {(b.table, b.rows, b.cols) for b in blocks if b.rank == rank}
    arrays = []
    for var, pieces in zip(layer.table_variables(), variable_pieces(plan, rank),
                           strict=True):
        sources = [var, *(slots_of(optimizer, var).values() if optimizer else [])]
        for piece in pieces:
            if (plan.tables[piece.table].name, piece.rows, piece.cols) in mine:
                rows = tf.range(piece.var_row, piece.var_row + piece.shape[0], dtype=tf.int64)
                arrays += [source.sparse_read(rows).numpy() for source in sources]
    return arrays


def numpy_save(arrays: list[np.ndarray], folder: Path, sync: bool) -> None:
    folder.mkdir(exist_ok=True)
    for i, array in enumerate(arrays):
        with open(folder / f"{i}.npy", "wb") as handle:
            np.save(handle, array)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())


def read_then_save(layer, blocks, optimizer, rank: int, folder: Path) -> None:
    """The plain numpy route from a live layer: read each piece off its variable, save it."""
    numpy_save(pieces_in_numpy(layer, blocks, optimizer, rank), folder, sync=False)


def other_plan(work: Path, args, latest: Path, barrier) -> dict:
    """Restore into a layer of another plan of the same tables."""
    import runtime
    from planner import load_plan

    layer = runtime.DistributedEmbedding.from_plan(load_plan(work / "other.plan.json"),
                                                   name="bench_other")
    layer.build(None)
    serve_a_batch(layer)
    optimizer = make_optimizer(args, layer.trainable_variables)
    seconds, peak = median_of(
        args.repeats, lambda: runtime.restore_checkpoint(latest, layer, optimizer), barrier)
    return {"other_bytes": held_bytes(layer, optimizer), "other_s": seconds, "other_peak": peak}


def reshard_worker(work: Path) -> dict:
    from planner import load_plan
    from planner.checkpoint import reshard

    plan = load_plan(work / "reshard.plan.json")
    result = {}

    def go():
        result["manifest"] = reshard(work / "ckpt", plan, work / "resharded")

    seconds, peak = measured(go)
    written = sum(p.bytes for p in result["manifest"].pieces)
    return {"s": seconds, "peak": peak, "bytes": written}


if __name__ == "__main__":
    main()
