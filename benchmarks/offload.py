"""CPU offload: how many bytes ``offload: auto`` moves to host memory, against the least
possible and against upstream's rule, and how long the step takes.

For each bundled config and world size, the plan without offload gives each rank's bytes
(sgd, no reserve); the device memory is then set to a fraction of the largest rank's.

- *lower GiB*: a lower bound on what any choice must offload: each rank's excess over
  the limit, summed (pieces are whole, so it is often out of reach).
- *auto GiB*: what ``offload: auto`` offloads; *auto/lower* their ratio; *exact*: of
  the ranks over the limit, on how many the search proved its choice the least possible
  (on the others it is within the smallest offloaded piece of it); *fits*: whether every
  rank then fits (replicas and row slices alone may not).
- *upstream GiB*: what upstream's rule offloads at the largest ``gpu_embedding_size``
  with which every rank fits (found by bisection); *upstream/auto* the ratio.
- *step s*: the offload step alone (``with_offload`` on the strategy's placement),
  median of ``--repeats`` runs; *pieces*: the most table-parallel pieces on one rank.

    .venv/bin/python benchmarks/offload.py [--markdown] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys

from _report import ROOT, machine, render, timed

from planner import load_spec, make_plan
from planner.placement.offload import offload_search, upstream_rule, with_offload
from planner.placement.registry import PLACEMENTS
from planner.plan import Plan

GIB = 2**30


def rank_pieces(plan: Plan) -> list[list[tuple[int, int]]]:
    """Per rank, (elements, bytes) of each table-parallel piece."""
    itemsize = {t.name: t.itemsize for t in plan.tables}
    return [
        [
            (m.rows * (m.cols[1] - m.cols[0]), m.rows * (m.cols[1] - m.cols[0]) * itemsize[m.table])
            for w in rank.table_parallel_weights
            for m in w.members
        ]
        for rank in plan.ranks
    ]


def exact_ranks(plan: Plan, limit: int) -> tuple[int, int]:
    """(ranks whose search was exact, ranks over the limit) without offload."""
    pieces = rank_pieces(plan)
    over = [
        (rank, p) for rank, p in zip(plan.ranks, pieces, strict=True) if rank.bytes > limit
    ]
    exact = sum(
        offload_search([b for _, b in p], limit - (r.bytes - sum(b for _, b in p))).exact
        for r, p in over
    )
    return exact, len(over)


def upstream_offloaded(plan: Plan, limit: int) -> int | None:
    """Bytes upstream's rule offloads at the largest element limit that fits every rank;
    None when even 0 (everything offloaded) does not fit."""
    pieces = rank_pieces(plan)
    fixed = [r.bytes - sum(b for _, b in p) for r, p in zip(plan.ranks, pieces, strict=True)]

    def offloaded(budget: int) -> list[int]:
        return [
            sum(b for (_, b), off in zip(p, upstream_rule([e for e, _ in p], budget), strict=True)
                if off)
            for p in pieces
        ]  # fmt: skip

    def fits(budget: int) -> bool:
        gone = offloaded(budget)
        return all(
            r.bytes - g <= limit for r, g in zip(plan.ranks, gone, strict=True)
        )

    if any(f > limit for f in fixed):
        return None
    low, high = 0, max(sum(e for e, _ in p) for p in pieces) + 1  # fits(low), not fits(high)
    if fits(high):
        return 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return sum(offloaded(low))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        default="criteo_1tb_mlperf_v1,mlperf_dlrm_v2,synthetic_large,synthetic_colossal",
    )
    parser.add_argument("--world-sizes", default="8,64")
    parser.add_argument("--fractions", default="0.9,0.5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    head = ["config", "ranks", "memory", "pieces", "lower GiB", "auto GiB", "auto/lower"]
    head += ["exact", "fits", "upstream GiB", "upstream/auto", "step s"]
    rows = []
    for name in args.configs.split(","):
        for world in (int(n) for n in args.world_sizes.split(",")):
            path = ROOT / "configs" / f"{name}.yaml"
            base = make_plan(load_spec(path, {"world_size": world}))
            largest = max(r.bytes for r in base.ranks)
            pieces = max(len(p) for p in rank_pieces(base))
            for fraction in (float(f) for f in args.fractions.split(",")):
                limit = int(largest * fraction)
                spec = load_spec(
                    path, {"world_size": world, "device_memory": limit, "offload": "auto"}
                ).normalized()
                placement = PLACEMENTS[spec.strategy](spec)
                _, seconds = timed(lambda s=spec, p=placement: with_offload(s, p), args.repeats)
                offloaded = make_plan(spec)
                auto = sum(r.host_bytes for r in offloaded.ranks)
                fits = all(r.device_bytes <= limit for r in offloaded.ranks)
                lower = sum(max(0, r.bytes - limit) for r in base.ranks)
                upstream = upstream_offloaded(base, limit)
                exact, over = exact_ranks(base, limit)
                rows.append(
                    [
                        name,
                        str(world),
                        f"{fraction:.0%}",
                        str(pieces),
                        f"{lower / GIB:,.2f}",
                        f"{auto / GIB:,.2f}",
                        f"{auto / lower:.4f}x" if lower and fits else "-",
                        f"{exact}/{over}",
                        "yes" if fits else "no",
                        "-" if upstream is None else f"{upstream / GIB:,.2f}",
                        f"{upstream / auto:.2f}x" if upstream and auto else "-",
                        f"{seconds:.3f}",
                    ]
                )
                print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    print(f"device memory = the fraction of the largest rank's bytes without offload; "
          f"step s = median of {args.repeats} runs\n")  # fmt: skip
    print(render(head, rows, args.markdown))


if __name__ == "__main__":
    main()
