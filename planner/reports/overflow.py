"""Why a rank does not fit its GPU, and the change that addresses it, from the plan
alone: too many data-parallel copies, upstream's rule keeping too much, too few ranks
even perfectly balanced, one table's piece too large, or an unbalanced placement.

``planner.reports.capacity`` groups these per rank and checks the advice by planning
again; this module plans nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.costs.memory import (
    Holdings,
    memory_limit,
    rank_holdings,
    ranks_over_limit,
    spread_bytes,
    state_factor,
)
from planner.plan import Plan
from planner.spec_fields import MAX_WORLD_SIZE
from planner.units import human_bytes


@dataclass(frozen=True)
class RankOverflow:
    """A rank whose weights and optimizer state on the GPU do not fit the usable memory."""

    rank: int
    needs: int
    limit: int
    diagnosis: str  # why, in one clause
    advice: str  # what to change, worked out from this plan alone
    option: tuple[str, int] | None = None  # the advice as one CLI option, when it is one

    @property
    def over(self) -> int:
        return self.needs - self.limit


def over_capacity(plan: Plan) -> list[RankOverflow]:
    """The ranks over the plan's usable memory, in rank order; empty when it fits.

    A plan made without ``device_memory`` always fits.
    """
    limit, over = memory_limit(plan), ranks_over_limit(plan)
    if limit is None or not over:
        return []
    holdings, spread = rank_holdings(plan), spread_bytes(plan)
    return [
        _overflow(plan, rank.rank, rank.device_bytes, limit, holdings[rank.rank], spread)
        for rank in over
    ]


def largest_world_to_try(world_size: int) -> int:
    """Capacity advice re-plans at most this many ranks: 8x the plan's, or 4,096, and never
    more than a spec may ask for (MAX_WORLD_SIZE)."""
    return min(max(8 * world_size, 4096), MAX_WORLD_SIZE)


def whole_hosts(size: int, per_host: int) -> int:
    """``size`` ranks rounded up to whole hosts of ``per_host`` once it passes one host
    (up to one host any count runs)."""
    return size if size <= per_host else -(-size // per_host) * per_host


def _ranks_needed(ranks: int, whole: int, per_host: int) -> str:
    """``5,582 ranks``, or where rounding up to whole hosts changed it,
    ``5,582 ranks, 5,584 in whole hosts of 8``."""
    hosts = f", {whole:,} in whole hosts of {per_host}" if whole != ranks else ""
    return f"{ranks:,} ranks{hosts}"


def _overflow(
    plan: Plan, rank: int, needs: int, limit: int, held: Holdings, spread: int
) -> RankOverflow:
    """The most specific reason this rank overflows, and the change that addresses it.

    ``spread`` is the bytes the GPUs must share (see spread_bytes).
    """
    if held.replicas and held.replicas >= limit:
        return _too_many_replicas(plan, rank, needs, limit, held.replicas)
    even = held.replicas + spread / plan.world_size
    if even > limit:
        return _too_few_ranks(plan, rank, needs, limit, held.replicas, even, spread)
    room = limit - held.replicas - held.row_slices
    offload = plan.parameters.offload
    if offload != "none" and room < 0:
        return RankOverflow(
            rank,
            needs,
            limit,
            f"even with every table-parallel piece in host memory, its data-parallel copies "
            f"and row slices take {human_bytes(held.replicas + held.row_slices)}",
            "raise --world-size",
        )
    if offload == "upstream":
        return _keeps_too_much(plan, rank, needs, limit, held, room)
    if held.pieces:
        table, size = max(held.pieces, key=lambda item: item[1])
        if size > room:
            return _piece_too_large(plan, rank, needs, limit, table, size, room)
    return _unbalanced(plan, rank, needs, limit, even)


def _too_many_replicas(
    plan: Plan, rank: int, needs: int, limit: int, replicas: int
) -> RankOverflow:
    """Data-parallel copies alone overflow: keep fewer (the smaller) tables data-parallel."""
    factor = state_factor(plan)
    replicated = set(plan.groups.data_parallel)  # a list: 20,000 names searched per table
    dp = sorted(
        (t.elements, t.elements * t.itemsize * factor)
        for t in plan.tables
        if t.name in replicated
    )
    kept, first_out = 0, dp[0][0]
    for elements, size in dp:
        if kept + size >= limit:
            first_out = elements
            break
        kept += size
    threshold = max(first_out - 1, 0)
    return RankOverflow(
        rank,
        needs,
        limit,
        f"the data-parallel tables alone take {human_bytes(replicas)} on every rank",
        f"set data_parallel_threshold to {threshold:,} or less so fewer tables are copied to "
        "every rank",
        ("data_parallel_threshold", threshold),
    )


def _keeps_too_much(
    plan: Plan, rank: int, needs: int, limit: int, held: Holdings, room: int
) -> RankOverflow:
    """Upstream's rule keeps more on this GPU than fits: the element limit that would not.

    Kept pieces are at most ``gpu_embedding_size`` elements, and an element takes at
    most the widest dtype's bytes with its optimizer state, so this limit always fits."""
    largest_element = max(t.itemsize for t in plan.tables) * state_factor(plan)
    elements = room // largest_element
    kept = sum(size for _, size in held.pieces)
    return RankOverflow(
        rank,
        needs,
        limit,
        f"gpu_embedding_size {plan.parameters.gpu_embedding_size:,} keeps "
        f"{human_bytes(kept)} of table-parallel pieces on it",
        f"set gpu_embedding_size to {elements:,} or less",
        ("gpu_embedding_size", elements),
    )


def _too_few_ranks(
    plan: Plan, rank: int, needs: int, limit: int, replicas: int, even: float, spread: int
) -> RankOverflow:
    """Even a perfect balance overflows: more ranks (or fewer data-parallel copies)."""
    per_host = plan.parameters.gpus_per_host
    ranks = math.ceil(spread / (limit - replicas))
    needed = whole_hosts(ranks, per_host)
    largest = largest_world_to_try(plan.world_size)
    more_ranks = (
        f" or raise --world-size to at least {needed}"
        if needed <= MAX_WORLD_SIZE
        else f" ({MAX_WORLD_SIZE:,} ranks are the most this planner plans)"
    )
    advice = (
        f"raise --world-size to at least {needed}"
        if needed <= largest
        else f"even {largest:,} ranks do not fit (balanced perfectly the tables need "
        f"{_ranks_needed(ranks, needed, per_host)}); use devices with more memory{more_ranks}"
    )
    if replicas and (spread + replicas) / plan.world_size <= limit:
        advice += (
            f", or lower data_parallel_threshold (the data-parallel copies take "
            f"{human_bytes(replicas)} on every rank)"
        )
    diagnosis = (
        f"even perfectly balanced the tables need {human_bytes(even)} per rank"
        if plan.parameters.offload == "none"
        else f"even with every table-parallel piece in host memory and the row slices "
        f"perfectly balanced, each rank needs {human_bytes(even)}"
    )
    return RankOverflow(rank, needs, limit, diagnosis, advice)


def _piece_too_large(
    plan: Plan, rank: int, needs: int, limit: int, name: str, size: int, room: int
) -> RankOverflow:
    """One table's piece cannot fit next to what every rank holds anyway: cut it finer."""
    table = plan.table(name)
    world = plan.world_size
    factor = state_factor(plan)
    diagnosis = f"table {name!r} alone takes {human_bytes(size)} here"
    if room < limit:
        diagnosis += (
            f", beside {human_bytes(limit - room)} of data-parallel copies and row slices"
        )
    cap = min(world, table.width)
    wanted = 2
    while True:
        count = min(wanted, cap)
        widest = -(-table.width // count)
        if table.rows * widest * table.itemsize * factor <= room:
            threshold = -(-table.elements // wanted)
            return RankOverflow(
                rank,
                needs,
                limit,
                diagnosis,
                f"column-slice it: set column_slice_threshold to {threshold:,} or less (cuts "
                f"it into {count} column slices)",
                ("column_slice_threshold", threshold),
            )
        if wanted >= cap:
            break
        wanted *= 2
    diagnosis += (
        f" and does not fit even cut into {cap} column slices"
        if cap > 1
        else " and cannot be column-sliced (one column, or one rank)"
    )
    per_rank = -(-table.rows // world) * table.width * table.itemsize * factor
    if plan.parameters.dp_input and world > 1 and per_rank <= room:
        return RankOverflow(
            rank,
            needs,
            limit,
            diagnosis,
            f"row-slice it: set row_slice_threshold to {table.elements:,} or less",
            ("row_slice_threshold", table.elements),
        )
    if not plan.parameters.dp_input:  # more ranks cannot cut it finer
        advice = "set dp_input: true to row-slice it, or use devices with more memory"
        return RankOverflow(rank, needs, limit, diagnosis, advice)
    return RankOverflow(rank, needs, limit, diagnosis, "raise --world-size")


def _unbalanced(plan: Plan, rank: int, needs: int, limit: int, even: float) -> RankOverflow:
    """Spread evenly the tables would fit: place them differently, or use more ranks."""
    options = []
    if plan.strategy != "memory_optimized":
        options.append("try strategy memory_optimized")
    threshold = plan.parameters.column_slice_threshold
    options.append(
        "lower column_slice_threshold"
        + (f" (now {threshold:,})" if threshold is not None else " (now off)")
    )
    options.append("raise --world-size")
    return RankOverflow(
        rank,
        needs,
        limit,
        f"balanced evenly the tables would fit ({human_bytes(even)} per rank)",
        ", ".join(options[:-1]) + f" or {options[-1]}",
    )
