"""Planner speed and scale: planning time and plan size from 26 to 10,000 tables and 1 to
4,096 ranks, the time a worker takes to load the plan and pick its own rank's part, and
the time ``planner validate`` takes to check it.

``--configs`` plans bundled specs (``configs/NAME.yaml``) at the ``--ranks`` world sizes
instead of synthetic ones: ``--configs synthetic_tiny --ranks 1024 --strategies auto``.

The specs are synthetic (seeded, so every run plans the same tables): rows log-uniform
from 10 to 40 million, widths 8 to 256, combiner sum, one input per table, a fifth of
them multi-hot (2 to 50 ids). Planning time is ``make_plan`` on an already validated
spec (YAML parsing is not included); the worker's time is ``load_plan`` on the file
``save_plan`` wrote (read, schema, and the seal: the plan was checked as it was written)
plus taking ``plan.ranks[r]``'s weights, inputs and row slices (rank r alone is worked
out, and its entry alone schema-checked); the checked load is
``load_plan`` on the same plan written without its seal (as after an edit by hand: every
consistency check runs); validate's is what ``planner validate PLAN`` does:
``read_plan`` (read and schema) and ``plan_problems`` (every check, all problems
listed). Combinations whose single run exceeds ``--budget`` seconds are measured once
rather than ``--repeats`` times (the runs columns say so).

    .venv/bin/python benchmarks/planner_speed.py [--markdown] [--repeats 3]
    .venv/bin/python benchmarks/planner_speed.py --tables 20000,100000 --ranks 4096 \
        --strategies memory_balanced      # validate at scale
    .venv/bin/python benchmarks/planner_speed.py --tables 5000,20000 --ranks 4096 \
        --strategies auto --device-memory 80GiB --repeats 1   # auto's time objective

``--device-memory`` gives every spec that memory per GPU and a global batch of
``--batch-per-rank`` samples per rank, so ``auto`` plans with its time objective (the
fast candidates and the stage search) instead of the memory objective.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import machine, render

from planner import load_plan, load_spec, make_plan, plan_problems, save_plan, spec_from_dict
from planner.plan import read_plan
from planner.spec import Spec
from planner.units import parse_size

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

WIDTHS = (8, 16, 32, 64, 128, 256)


def synthetic_spec(tables: int, world_size: int, strategy: str, seed: int = 0) -> Spec:
    rng = np.random.default_rng(seed + tables)
    rows = np.exp(rng.uniform(np.log(10), np.log(4e7), tables)).astype(np.int64)
    widths = rng.choice(WIDTHS, tables)
    hotness = np.where(rng.random(tables) < 0.2, rng.integers(2, 51, tables), 1)
    return spec_from_dict(
        {
            "world_size": world_size,
            "strategy": strategy,
            "tables": [
                {"name": f"t{i}", "rows": int(r), "width": int(w), "combiner": "sum"}
                for i, (r, w) in enumerate(zip(rows, widths, strict=True))
            ],
            "inputs": [
                {"name": f"i{i}", "table": f"t{i}", "hotness": int(h)}
                for i, h in enumerate(hotness)
            ],
        },
        source=f"synthetic {tables} tables",
    )


def config_spec(name: str, world_size: int, strategy: str) -> Spec:
    """A bundled spec at another world size and strategy."""
    spec = load_spec(CONFIGS / f"{name}.yaml")
    return spec.model_copy(update={"world_size": world_size, "strategy": strategy})


def worker_part(path: Path, rank: int) -> object:
    """What a worker does at start: load the plan, then take its own rank's part."""
    mine = load_plan(path).ranks[rank]
    return mine.table_parallel_weights, mine.table_parallel_inputs, mine.row_slices


def measure(work, repeats: int, budget: float):
    """(result, median seconds, runs, median CPU seconds): one run only when the first
    takes over budget. CPU time (this process's) moves less than wall time when other
    jobs share the machine."""
    times, cpu, result = [], [], None
    while len(times) < repeats and (not times or times[0] <= budget):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return result, statistics.median(times), len(times), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="26,100,1000,10000")
    parser.add_argument("--configs", default="", help="bundled specs instead of --tables")
    parser.add_argument("--ranks", default="1,8,64,512,4096")
    parser.add_argument("--strategies", default="memory_balanced,auto")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds; slower: one run")
    parser.add_argument("--device-memory", help="e.g. 80GiB: auto plans for time")
    parser.add_argument("--batch-per-rank", type=int, default=64)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    head = ["tables", "ranks", "strategy", "max/mean", "plan s", "plan runs", "plan MB"]
    head += ["worker load s", "load CPU s", "load runs", "checked load s", "checked CPU s"]
    head += ["checked runs"]
    head += ["validate s", "validate runs", "validate/plan"]
    head += ["validate/plan CPU"]
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        path, unsealed = Path(folder) / "plan.json", Path(folder) / "unsealed.json"
        sources = args.configs.split(",") if args.configs else args.tables.split(",")
        for source in sources:
            for world in (int(n) for n in args.ranks.split(",")):
                for strategy in args.strategies.split(","):
                    spec = (
                        config_spec(source, world, strategy)
                        if args.configs
                        else synthetic_spec(int(source), world, strategy)
                    )
                    if args.device_memory:
                        spec = spec.model_copy(
                            update={
                                "device_memory": parse_size(args.device_memory),
                                "global_batch_size": args.batch_per_rank * world,
                            }
                        )
                    plan, seconds, runs, plan_cpu = measure(
                        lambda spec=spec: make_plan(spec), args.repeats, args.budget
                    )
                    save_plan(plan, path)
                    unsealed.write_text(plan.to_json())
                    rank = world - 1  # the last rank: the whole file is read either way
                    _, loading, load_runs, load_cpu = measure(
                        lambda rank=rank: worker_part(path, rank), args.repeats, args.budget
                    )
                    _, checked, checked_runs, checked_cpu = measure(
                        lambda rank=rank: worker_part(unsealed, rank), args.repeats, args.budget
                    )
                    problems, checking, check_runs, check_cpu = measure(
                        lambda: plan_problems(read_plan(path)), args.repeats, args.budget
                    )
                    assert problems == [], problems[:3]
                    rows.append(
                        [
                            f"{len(spec.tables):,}" if args.configs else f"{int(source):,}",
                            f"{world:,}",
                            strategy,
                            f"{plan.stats.imbalance:.3f}",
                            f"{seconds:.3f}",
                            str(runs),
                            f"{path.stat().st_size / 1e6:.2f}",
                            f"{loading:.3f}",
                            f"{load_cpu:.3f}",
                            str(load_runs),
                            f"{checked:.3f}",
                            f"{checked_cpu:.3f}",
                            str(checked_runs),
                            f"{checking:.3f}",
                            str(check_runs),
                            f"{checking / seconds:.2f}x",
                            f"{check_cpu / plan_cpu:.2f}x",
                        ]
                    )
                    print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    print(f"1-minute load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(
        f"timings: median of {args.repeats} runs (1 run when the first took over "
        f"{args.budget:g} s); plan MB = the written JSON, 10^6 bytes; validate/plan: "
        "validate's time over planning's, in wall and in CPU time\n"
    )
    print(render(head, rows, args.markdown))


if __name__ == "__main__":
    main()
