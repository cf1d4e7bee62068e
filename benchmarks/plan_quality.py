"""Plan quality: every bundled config x world sizes x strategies.

For each plan: the balance (largest rank's bytes over the mean), the largest rank in GiB,
the estimated communication per step at a stated global batch size (the busiest rank's
MB, 10**6 bytes, and the step's communication time; only when the planner has the
estimate), the median planning time, and for ``auto`` its largest rank over the best
upstream strategy's.

    .venv/bin/python benchmarks/plan_quality.py [--markdown] [--repeats 3]
"""

from __future__ import annotations

import argparse

from _report import ROOT, machine, render, timed

from planner import load_spec, make_plan
from planner.plan import Plan
from planner.spec import Spec

UPSTREAM = ("basic", "memory_balanced", "memory_optimized")
STRATEGIES = (*UPSTREAM, "auto")
GIB = 2**30


def has_comm_estimate() -> bool:
    return "global_batch_size" in Spec.model_fields


def comm_mb(plan: Plan) -> str:
    comm = getattr(plan.stats, "comm", None)
    if comm is None:
        return "-"
    return f"{max(comm.max_rank_sent_bytes, comm.max_rank_received_bytes) / 1e6:,.1f}"


def comm_ms(plan: Plan) -> str:
    comm = getattr(plan.stats, "comm", None)
    return "-" if comm is None else f"{comm.step_seconds * 1000:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-sizes", default="8,16,32,128")
    parser.add_argument("--configs", default="", help="comma-separated names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per plan (median)")
    parser.add_argument("--batch", type=int, default=65536, help="global batch for the comm")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    worlds = [int(w) for w in args.world_sizes.split(",")]
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    if args.configs:
        paths = [p for p in paths if p.stem in args.configs.split(",")]
    comm = has_comm_estimate()

    full_head = ["config", "ranks", "strategy", "used", "max/mean", "largest GiB"]
    full_head += ["comm MB/step", "comm ms/step"] if comm else []
    full_head += ["plan ms", "auto/best upstream"]
    summary_head = ["config", "ranks", "best upstream", "max/mean", "auto", "used"]
    summary_head += ["largest GiB", "auto GiB"]
    summary_head += ["comm MB", "auto comm MB", "comm ms", "auto comm ms"] if comm else []
    summary_head += ["auto/best"]
    full, summary = [], []
    for path in paths:
        for world in worlds:
            overrides = {"world_size": world}
            if comm:
                overrides["global_batch_size"] = args.batch
            base = load_spec(path, overrides)
            plans: dict[str, tuple[Plan, float]] = {}
            for name in STRATEGIES:
                spec = base.model_copy(update={"strategy": name})
                plans[name] = timed(lambda spec=spec: make_plan(spec), args.repeats)
            best = min(UPSTREAM, key=lambda n: (plans[n][0].stats.max_rank_bytes, n))
            auto_plan = plans["auto"][0]
            ratio = auto_plan.stats.max_rank_bytes / plans[best][0].stats.max_rank_bytes
            for name in STRATEGIES:
                plan, seconds = plans[name]
                row = [path.stem, str(world), name, plan.strategy]
                row += [f"{plan.stats.imbalance:.3f}", f"{plan.stats.max_rank_bytes / GIB:.2f}"]
                row += [comm_mb(plan), comm_ms(plan)] if comm else []
                row += [f"{seconds * 1000:.1f}", f"{ratio:.3f}" if name == "auto" else "-"]
                full.append(row)
            best_plan = plans[best][0]
            row = [path.stem, str(world), best, f"{best_plan.stats.imbalance:.3f}"]
            row += [f"{auto_plan.stats.imbalance:.3f}", auto_plan.strategy]
            row += [
                f"{best_plan.stats.max_rank_bytes / GIB:.2f}",
                f"{auto_plan.stats.max_rank_bytes / GIB:.2f}",
            ]
            if comm:
                row += [comm_mb(best_plan), comm_mb(auto_plan)]
                row += [comm_ms(best_plan), comm_ms(auto_plan)]
            row += [f"{ratio:.3f}"]
            summary.append(row)

    print(f"machine: {machine()}; timings are medians of {args.repeats} runs of make_plan")
    if comm:
        print(
            f"comm: planner/costs/comm.py's estimate at global batch {args.batch:,}: MB = the "
            f"busiest rank's bytes sent or received per step (10^6 bytes); ms = the step's "
            f"communication time (each phase as slow as its busiest rank, phases summed)"
        )
    else:
        print("comm: not shown; this planner has no communication estimate")
    print("\nauto beside the best upstream strategy (least largest rank):\n")
    print(render(summary_head, summary, args.markdown))
    print("\nevery strategy:\n")
    print(render(full_head, full, args.markdown))


if __name__ == "__main__":
    main()
