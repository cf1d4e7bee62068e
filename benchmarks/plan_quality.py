"""Plan quality: every bundled config x world sizes x strategies, objectives and baselines.

Each config is planned at each world size with ``device_memory`` (default 80 GiB) and a
global batch (default 65,536), and rated by the planner's own step estimate
(planner/costs/steptime.py): upstream's three strategies, ``auto`` with each
objective (``time``, ``memory``), and NeuroShard's four greedy baselines
(benchmarks/baselines.py). For each plan: the estimated step, the largest rank's bytes
and its ratio to the mean, whether it fits, and the median planning time.

    .venv/bin/python benchmarks/plan_quality.py [--markdown] [--repeats 3]
"""

from __future__ import annotations

import argparse

from _report import ROOT, machine, render, timed
from baselines import COSTS, greedy_plan

from planner import load_spec, make_plan
from planner.costs.memory import ranks_over_limit
from planner.plan import Plan

UPSTREAM = ("basic", "memory_balanced", "memory_optimized")
OURS = {
    **{name: {"strategy": name} for name in UPSTREAM},
    "auto time": {"strategy": "auto", "objective": "time"},
    "auto memory": {"strategy": "auto", "objective": "memory"},
}
GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-sizes", default="8,16,32,128")
    parser.add_argument("--configs", default="", help="comma-separated names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per plan (median)")
    parser.add_argument("--batch", type=int, default=65536, help="global batch per step")
    parser.add_argument("--device-memory", default="80GiB")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    worlds = [int(w) for w in args.world_sizes.split(",")]
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    if args.configs:
        paths = [p for p in paths if p.stem in args.configs.split(",")]

    full_head = ["config", "ranks", "plan", "used", "step ms", "largest GiB", "max/mean"]
    full_head += ["fits", "plan ms"]
    summary_head = ["config", "ranks", "fastest fitting other", "step ms", "auto time ms"]
    summary_head += ["auto/fastest", "auto time max/mean", "auto memory max/mean"]
    full, summary = [], []
    for path in paths:
        for world in worlds:
            base = load_spec(
                path,
                {
                    "world_size": world,
                    "global_batch_size": args.batch,
                    "device_memory": args.device_memory,
                },
            )
            plans: dict[str, tuple[Plan | None, float]] = {}
            for name, update in OURS.items():
                spec = base.model_copy(update=update)
                plans[name] = timed(lambda spec=spec: make_plan(spec), args.repeats)
            for name, cost in COSTS.items():
                plans[f"greedy {name}"] = timed(
                    lambda cost=cost, base=base: greedy_plan(base, cost), args.repeats
                )
            for name, (plan, seconds) in plans.items():
                row = [path.stem, str(world), name]
                if plan is None:
                    full.append([*row, "-", "-", "-", "-", "no (a table fits no rank)", "-"])
                    continue
                over = len(ranks_over_limit(plan))
                row += [plan.strategy if name in OURS else "-", _ms(plan)]
                row += [f"{plan.stats.max_rank_bytes / GIB:.2f}", f"{plan.stats.imbalance:.3f}"]
                row += ["yes" if not over else f"no ({over} over)", f"{seconds * 1000:.1f}"]
                full.append(row)
            auto = plans["auto time"][0]
            others = {
                name: plan
                for name, (plan, _) in plans.items()
                if not name.startswith("auto") and plan is not None and not ranks_over_limit(plan)
            }
            row = [path.stem, str(world)]
            if others:
                fastest = min(others, key=lambda n: others[n].stats.step.step_seconds)
                ratio = auto.stats.step.step_seconds / others[fastest].stats.step.step_seconds
                row += [fastest, _ms(others[fastest]), _ms(auto), f"{ratio:.3f}"]
            else:
                row += ["none fits", "-", _ms(auto), "-"]
            row += [f"{auto.stats.imbalance:.3f}"]
            row += [f"{plans['auto memory'][0].stats.imbalance:.3f}"]
            summary.append(row)

    print(f"machine: {machine()}; timings are medians of {args.repeats} runs")
    print(
        f"step: planner/costs/steptime.py's estimate at global batch {args.batch:,}, "
        f"{args.device_memory} per rank, the configs' other settings as written\n"
    )
    print("auto (objective time) beside the fastest other plan that fits:\n")
    print(render(summary_head, summary, args.markdown))
    print("\nevery plan:\n")
    print(render(full_head, full, args.markdown))


def _ms(plan: Plan) -> str:
    return f"{plan.stats.step.step_seconds * 1000:,.3f}"


if __name__ == "__main__":
    main()
