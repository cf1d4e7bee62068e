"""The plan's summary numbers: totals, the largest and mean rank, and the traffic summary."""

from __future__ import annotations

from collections.abc import Sequence

from planner.costs.comm import summarize_comm
from planner.costs.steptime import summarize_step
from planner.plan import RankPlan, Stats
from planner.spec import TableSpec


def summarize(ranks: Sequence[RankPlan], tables: Sequence[TableSpec]) -> Stats:
    """Totals and balance over ranks; the traffic summary when ranks carry estimates."""
    per_rank = [rank.bytes for rank in ranks]
    mean = sum(per_rank) / len(per_rank)
    comms = [rank.comm for rank in ranks if rank.comm is not None]
    steps = [rank.step for rank in ranks if rank.step is not None]
    return Stats(
        total_elements=sum(t.elements for t in tables),
        total_bytes=sum(t.elements * t.itemsize for t in tables),
        max_rank_bytes=max(per_rank),
        mean_rank_bytes=mean,
        imbalance=max(per_rank) / mean if mean else 1.0,
        comm=summarize_comm(comms) if len(comms) == len(ranks) else None,
        step=summarize_step(steps) if len(steps) == len(ranks) else None,
    )
