"""Planner speed and scale: planning time and plan size from 26 to 10,000 tables and 1 to
4,096 ranks, and the time a worker takes to load the plan and pick its own rank's part.

The specs are synthetic (seeded, so every run plans the same tables): rows log-uniform
from 10 to 40 million, widths 8 to 256, combiner sum, one input per table, a fifth of
them multi-hot (2 to 50 ids). Planning time is ``make_plan`` on an already validated
spec (YAML parsing is not included); the worker's time is ``load_plan`` on the written
file plus taking ``plan.ranks[r]``. Combinations whose single run exceeds ``--budget``
seconds are measured once rather than ``--repeats`` times (the runs column says so).

    .venv/bin/python benchmarks/planner_speed.py [--markdown] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import machine, render

from planner import load_plan, make_plan, save_plan, spec_from_dict
from planner.spec import Spec

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


def measure(work, repeats: int, budget: float):
    """(result, median seconds, runs): one run only when the first takes over budget."""
    times, result = [], None
    while len(times) < repeats and (not times or times[0] <= budget):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="26,100,1000,10000")
    parser.add_argument("--ranks", default="1,8,64,512,4096")
    parser.add_argument("--strategies", default="memory_balanced,auto")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds; slower: one run")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    head = ["tables", "ranks", "strategy", "max/mean", "plan s", "plan runs", "plan MB"]
    head += ["worker load s", "load runs"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        for tables in (int(n) for n in args.tables.split(",")):
            for world in (int(n) for n in args.ranks.split(",")):
                for strategy in args.strategies.split(","):
                    spec = synthetic_spec(tables, world, strategy)
                    plan, seconds, runs = measure(
                        lambda spec=spec: make_plan(spec), args.repeats, args.budget
                    )
                    save_plan(plan, path)
                    rank = world - 1  # the last rank: the whole file is read either way
                    _, loading, load_runs = measure(
                        lambda rank=rank: load_plan(path).ranks[rank], args.repeats, args.budget
                    )
                    rows.append(
                        [
                            f"{tables:,}",
                            f"{world:,}",
                            strategy,
                            f"{plan.stats.imbalance:.3f}",
                            f"{seconds:.3f}",
                            str(runs),
                            f"{path.stat().st_size / 1e6:.2f}",
                            f"{loading:.3f}",
                            str(load_runs),
                        ]
                    )
                    print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    print(
        f"timings: median of {args.repeats} runs (1 run when the first took over "
        f"{args.budget:g} s); plan MB = the written JSON, 10^6 bytes\n"
    )
    print(render(head, rows, args.markdown))


if __name__ == "__main__":
    main()
