"""Capacity advice: why a rank does not fit its GPU (or its host memory, with CPU
offload), and what to change so it does.

The bytes come from ``planner.costs.memory``. The advice is worked out from the plan;
to name only changes that work, each candidate change is planned again, so this report,
like compare, sits above ``make_plan``.

This module knows nothing of click; the CLI turns its results into messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.costs.memory import (
    Holdings,
    memory_limit,
    rank_holdings,
    ranks_over_host_limit,
    ranks_over_limit,
    replica_bytes,
    spread_bytes,
    state_factor,
    usable_memory,
)
from planner.placement.registry import STRATEGY_NAMES
from planner.plan import Plan
from planner.planning import make_plan
from planner.reports.folding import rank_ranges
from planner.spec import MAX_WORLD_SIZE, Spec
from planner.units import human_bytes, missing_unit_hint


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


MAX_ADVICE_LINES = 20  # groups of ranks with their own advice printed before folding the rest


@dataclass(frozen=True)
class AdviceGroup:
    """Ranks over the limit for the same reason, with the same advice: said once."""

    ranks: list[int]
    needs: list[int]  # bytes, per rank in ``ranks``
    limit: int
    diagnosis: str
    advice: str

    def line(self, limit_text: str) -> str:
        """``rank 0 needs ...`` or ``ranks 0-63 need ...``; the advice once."""
        low, high = min(self.needs), max(self.needs)
        if len(self.ranks) == 1:
            amount = f"{rank_ranges(self.ranks)} needs {human_bytes(high)}, "
            amount += f"{human_bytes(high - self.limit)} over"
        elif low == high:
            amount = f"{rank_ranges(self.ranks)} need {human_bytes(high)} each, "
            amount += f"{human_bytes(high - self.limit)} over"
        else:
            amount = f"{rank_ranges(self.ranks)} need {human_bytes(low)} to {human_bytes(high)}, "
            amount += f"up to {human_bytes(high - self.limit)} over"
        return f"{amount} {limit_text}; {self.diagnosis}; {self.advice}"


def host_lines(plan: Plan) -> list[str]:
    """A line for the ranks whose offloaded pieces overflow ``host_memory`` (empty when
    none do): how much, and what to change."""
    limit = plan.parameters.host_memory
    over = ranks_over_host_limit(plan)
    if limit is None or not over:
        return []
    keep_more = (
        "lower the offloaded share (raise gpu_embedding_size, or use offload: auto with "
        "device_memory)"
        if plan.parameters.offload == "upstream"
        else "give the GPUs more memory (--device-memory)"
    )
    group = AdviceGroup(
        [r.rank for r in over],
        [r.host_bytes for r in over],
        limit,
        "offloaded pieces and their optimizer state take that in host memory",
        f"raise --host-memory, raise --world-size, or {keep_more}",
    )
    hint = missing_unit_hint(limit)
    return [group.line(f"the {human_bytes(limit)} host_memory limit{f' ({hint})' if hint else ''}")]


@dataclass(frozen=True)
class CapacityReport:
    """Whether a plan fits its device memory (and, with CPU offload, its host memory), and
    if not, why and what to change."""

    device_memory: int | None
    memory_reserve: float
    limit: int | None  # usable bytes per rank; None without device_memory
    overflows: list[RankOverflow]  # one per rank over, in rank order
    fixes: list[str]  # CLI options each of which alone makes the plan fit (re-planned)
    groups: list[AdviceGroup]  # the overflows grouped by identical diagnosis and advice
    offload: str = "none"  # the plan's rule: with offload, only the GPU part must fit
    host: list[str] = field(default_factory=list)  # a line per rank over host_memory

    @property
    def fits(self) -> bool:
        return not self.overflows and not self.host

    def lines(self) -> list[str]:
        """One line per group of ranks with the same advice, in order of their first rank;
        then one per rank over ``host_memory``."""
        if not self.overflows or self.device_memory is None:
            return list(self.host)
        what = "limit" if self.offload == "none" else "GPU limit"
        hint = missing_unit_hint(self.device_memory)
        limit_text = (
            f"the {human_bytes(self.overflows[0].limit)} {what} "
            f"({human_bytes(self.device_memory)} less {self.memory_reserve * 100:g}% reserve"
            f"{'; ' + hint if hint else ''})"
        )
        shown = self.groups[:MAX_ADVICE_LINES]
        lines = [group.line(limit_text) for group in shown]
        rest = [rank for group in self.groups[MAX_ADVICE_LINES:] for rank in group.ranks]
        if rest:
            lines.append(
                f"and {rank_ranges(rest)} over with other advice ({len(rest):,} ranks; "
                "--format json lists the advice for every rank)"
            )
        return lines + self.host

    def as_json(self) -> dict:
        """The same, for tools: the limit, every rank over with its bytes, the options that
        were re-planned and fit, and the advice by group of ranks."""
        return {
            "device_memory": self.device_memory,
            "memory_reserve": self.memory_reserve,
            "usable_bytes": self.limit,
            "fits": self.fits,
            "ranks_over": [o.rank for o in self.overflows],
            "overflows": [
                {"rank": o.rank, "bytes": o.needs, "over": o.over} for o in self.overflows
            ],
            "fixes": self.fixes,
            "advice": [
                {"ranks": g.ranks, "diagnosis": g.diagnosis, "advice": g.advice}
                for g in self.groups
            ],
            **({"host_memory_advice": self.host} if self.host else {}),
        }


def capacity_report(plan: Plan, verify: bool = True) -> CapacityReport:
    """The ranks over the limit, grouped by what to change.

    With ``verify``, single changes (another strategy, the thresholds the diagnosis
    suggests, a larger world size up to ``largest_world_to_try``) are re-planned and those
    that make every rank fit are named; otherwise, or when none does, the advice is
    worked out from this plan (and, when no world size up to the bound fits, from the
    plan at the largest one tried).
    """
    params = plan.parameters
    overflows = over_capacity(plan)
    fixes, unfit = fixes_that_fit(plan, overflows) if verify and overflows else ([], None)
    verified = (
        None
        if not fixes
        else f"it fits with {fixes[0]}"
        if len(fixes) == 1
        else "it fits with any one of: " + "; ".join(fixes)
    )
    grouped: dict[tuple[str, str], list[RankOverflow]] = {}
    for o in overflows:
        grouped.setdefault((o.diagnosis, verified or _advice(o, unfit)), []).append(o)
    groups = [
        AdviceGroup([o.rank for o in members], [o.needs for o in members], members[0].limit, *key)
        for key, members in grouped.items()
    ]
    return CapacityReport(
        params.device_memory,
        params.memory_reserve,
        memory_limit(plan),
        overflows,
        fixes,
        groups,
        params.offload,
        host_lines(plan),
    )


def capacity_lines(plan: Plan, verify: bool = True) -> list[str]:
    """What ``planner plan`` prints when a plan does not fit: the advice, once per group
    of ranks it applies to (see capacity_report); empty when the plan fits."""
    return capacity_report(plan, verify).lines()


def _advice(overflow: RankOverflow, unfit: tuple[int, RankOverflow] | None) -> str:
    """The plan's own advice, unless it is to add ranks and even the most tried did not fit:
    then what the plan at that many ranks advises."""
    if unfit is None or "--world-size" not in overflow.advice:
        return overflow.advice
    size, there = unfit
    return f"even {size:,} ranks do not fit (at {size:,}, {there.diagnosis}); {there.advice}"


def fixes_that_fit(
    plan: Plan, overflows: list[RankOverflow]
) -> tuple[list[str], tuple[int, RankOverflow] | None]:
    """CLI options, each of which alone makes the plan fit; checked by planning again.

    Also, when larger world sizes were tried and none fits: the largest tried and the
    first overflow of the plan made with it (None otherwise).
    """
    spec = plan.spec().model_copy(update={"global_batch_size": None})  # memory only
    candidates: dict[str, dict] = {}
    for o in overflows:
        if o.option is not None:
            option, value = o.option
            candidates.setdefault(f"--{option.replace('_', '-')} {value}", {option: value})
    if plan.world_size > 1:
        for strategy in STRATEGY_NAMES:
            if strategy not in (spec.strategy, plan.strategy):
                candidates[f"--strategy {strategy}"] = {"strategy": strategy}

    def overflows_with(update: dict) -> list[RankOverflow]:
        candidate = Spec.model_validate({**spec.model_dump(), **update})
        return over_capacity(make_plan(candidate))

    found = [option for option, update in candidates.items() if not overflows_with(update)]
    largest = largest_world_to_try(plan.world_size)
    lowest = max(plan.world_size + 1, _world_lower_bound(plan))
    if lowest > largest:  # even perfectly balanced, the largest size would not fit
        return found, None
    unfit = None
    for size in _world_sizes_to_try(lowest, largest, plan.parameters.gpus_per_host):
        over = overflows_with({"world_size": size})
        if not over:
            return [*found, f"--world-size {size}"], None
        unfit = (size, over[0])
    return found, unfit


def largest_world_to_try(world_size: int) -> int:
    """Capacity advice re-plans at most this many ranks: 8x the plan's, or 4,096, and never
    more than a spec may ask for (MAX_WORLD_SIZE)."""
    return min(max(8 * world_size, 4096), MAX_WORLD_SIZE)


def _world_sizes_to_try(lowest: int, highest: int, per_host: int = 1) -> list[int]:
    """A few sizes from the lower bound up, then powers of two up to eight times it,
    none above ``highest``; the last is ``highest`` when eight times ``lowest`` passes it.
    Beyond one host of ``per_host`` ranks, whole hosts only (each size rounded up, the
    highest down): jobs are launched host by host, and ``row_reduction: host`` needs
    whole hosts."""
    top = highest if highest <= per_host else highest - highest % per_host
    sizes = set(range(lowest, lowest + 4))
    power = 1
    while power <= 8 * lowest:
        if power > lowest + 3:
            sizes.add(power)
        power *= 2
    if 8 * lowest > top >= lowest:
        sizes.add(top)
    return sorted(size for size in {whole_hosts(size, per_host) for size in sizes} if size <= top)


def whole_hosts(size: int, per_host: int) -> int:
    """``size`` ranks rounded up to whole hosts of ``per_host`` once it passes one host
    (up to one host any count runs)."""
    return size if size <= per_host else -(-size // per_host) * per_host


# --- why a rank overflows, and what would help ---------------------------------------


def _world_lower_bound(plan: Plan) -> int:
    """Fewest ranks that could hold the tables perfectly balanced, data-parallel ones kept,
    in whole hosts beyond one (as world sizes are tried)."""
    params = plan.parameters
    if params.device_memory is None:
        return plan.world_size
    limit = usable_memory(params.device_memory, params.memory_reserve)
    replicas = replica_bytes(plan)
    if replicas >= limit:
        return plan.world_size
    needed = max(1, math.ceil(spread_bytes(plan) / (limit - replicas)))
    return whole_hosts(needed, params.gpus_per_host)


def _rounded_to_hosts(ranks: int, whole: int, per_host: int) -> str:
    """Says so where ``ranks`` became ``whole`` by rounding up to whole hosts."""
    return f", {ranks:,} rounded up to whole hosts of {per_host}" if whole != ranks else ""


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
    dp = sorted(
        (t.elements, t.elements * t.itemsize * factor)
        for t in plan.tables
        if t.name in plan.groups.data_parallel
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
        f"{needed:,}{_rounded_to_hosts(ranks, needed, per_host)}); use devices with more "
        f"memory{more_ranks}"
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
    diagnosis += f" and does not fit even cut into {cap} column slices"
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
    why = "" if plan.parameters.dp_input else " (row slicing needs dp_input: true)"
    return RankOverflow(rank, needs, limit, diagnosis + why, "raise --world-size")


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
