"""Capacity advice: which ranks do not fit their GPU (or their host memory, with CPU
offload), grouped by reason, and what to change so they do.

The bytes come from ``planner.costs.memory``, each rank's reason and advice from
``planner.reports.overflow``. To name only changes that work, each candidate change
(another strategy, a threshold, more ranks) is planned again, so this report, like
compare, sits above ``make_plan``.

This module knows nothing of click; the CLI turns its results into messages.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from planner.costs.memory import (
    memory_limit,
    ranks_over_host_limit,
    replica_bytes,
    spread_bytes,
    usable_memory,
)
from planner.errors import TooManyShards
from planner.placement.registry import STRATEGY_NAMES
from planner.plan import Plan
from planner.planning import make_plan
from planner.reports.folding import rank_ranges
from planner.reports.overflow import (
    RankOverflow,
    largest_world_to_try,
    over_capacity,
    whole_hosts,
)
from planner.spec import Spec
from planner.spec_fields import MAX_WORLD_SIZE
from planner.units import human_bytes, missing_unit_hint

BISECTIONS = 4  # plans made to find a smaller world size that fits than the first found
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
        elif human_bytes(low) == human_bytes(high):  # equal as shown: say it once
            about, up_to = ("", "") if low == high else ("about ", "up to ")
            amount = f"{rank_ranges(self.ranks)} need {about}{human_bytes(high)} each, "
            amount += f"{up_to}{human_bytes(high - self.limit)} over"
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


def _advice(overflow: RankOverflow, unfit: tuple[int, RankOverflow] | str | None) -> str:
    """The plan's own advice, unless it is to add ranks and even the most tried did not fit:
    then what the plan at that many ranks advises; or no size could be tried (``unfit``
    says why)."""
    if unfit is None or "--world-size" not in overflow.advice:
        return overflow.advice
    if isinstance(unfit, str):
        return unfit
    size, there = unfit
    return f"even {size:,} ranks do not fit (at {size:,}, {there.diagnosis}); {there.advice}"


def fixes_that_fit(
    plan: Plan, overflows: list[RankOverflow]
) -> tuple[list[str], tuple[int, RankOverflow] | str | None]:
    """CLI options, each of which alone makes the plan fit; checked by planning again.

    Also, when larger world sizes were tried and none fits: the largest tried and the
    first overflow of the plan made with it; when none could be tried (none splits the
    global batch), why; None otherwise.
    """
    # the batch stays: auto's placement depends on it (which replicas pay), and a world
    # size must split it (sizes are tried among those that do)
    spec = plan.spec()
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
        try:
            made = make_plan(candidate)
        except TooManyShards as exc:  # no plan at all: as good as one that does not fit
            return [RankOverflow(0, 0, 0, exc.diagnosis, exc.advice)]
        return over_capacity(made) or _over_host_memory(made)

    found = [option for option, update in candidates.items() if not overflows_with(update)]
    largest = largest_world_to_try(plan.world_size)
    lowest = max(plan.world_size + 1, _world_lower_bound(plan))
    if lowest > largest:  # even perfectly balanced, the largest size would not fit
        return found, None
    per_host, batch = plan.parameters.gpus_per_host, plan.parameters.global_batch_size
    sizes = _world_sizes_to_try(lowest, largest, per_host, batch)
    if not sizes and batch is not None and _world_sizes_to_try(lowest, largest, per_host):
        hosts = f" in whole hosts of {per_host}" if per_host > 1 else ""
        return found, (
            f"no world size from {lowest:,} to {largest:,}{hosts} splits global_batch_size "
            f"{batch:,} evenly; change global_batch_size"
        )

    def world_that_fits(
        base: dict, below: int = MAX_WORLD_SIZE + 1
    ) -> tuple[int | None, tuple[int, RankOverflow] | None]:
        """The smallest size under ``below`` found that fits with ``base``; else the
        largest size tried and its first overflow."""
        unfit = None
        for size in (size for size in sizes if size < below):
            over = overflows_with({**base, "world_size": size})
            if not over:
                under = unfit[0] if unfit else lowest - 1  # below the bound nothing fits
                return _smaller_that_fits(
                    under, size, per_host, lambda update: overflows_with({**base, **update}), batch
                ), None
            unfit = (size, over[0])
        return None, unfit

    size, unfit = world_that_fits({})
    fixes = found if size is None else [*found, f"--world-size {size}"]
    if not found and "auto" not in (spec.strategy, plan.strategy):
        # auto with more ranks: where nothing else fits, or in fewer ranks than the
        # strategy as it is (colossal at 80 GiB: 280 against 2,048). Planned with the
        # memory objective, fast at thousands of ranks (colossal at 2,800: 3.7 s, against
        # 67 to 160 s for time); where its balanced plan fits, auto under time fits too
        # (it falls back to those very candidates when nothing faster fits)
        fewer, _ = world_that_fits({"strategy": "auto", "objective": "memory"}, size or largest + 1)
        if fewer is not None:
            return [*fixes, f"--strategy auto --world-size {fewer}"], None
    return fixes, None if size is not None else unfit


def _over_host_memory(plan: Plan) -> list[RankOverflow]:
    """The ranks whose offloaded pieces overflow ``host_memory``: a plan that fits its GPUs
    but not its hosts does not fit either (offload moved the overflow, not removed it)."""
    limit = plan.parameters.host_memory or 0
    return [
        RankOverflow(
            rank.rank,
            rank.host_bytes,
            limit,
            f"rank {rank.rank}'s offloaded pieces take {human_bytes(rank.host_bytes)}, over "
            f"the {human_bytes(limit)} host_memory limit",
            "raise --host-memory",
        )
        for rank in ranks_over_host_limit(plan)
    ]


def _smaller_that_fits(
    unfit: int,
    fits: int,
    per_host: int,
    overflows_with: Callable[[dict], list],
    batch: int | None = None,
) -> int:
    """Between a size that does not fit and a larger one that does (powers of two apart
    beyond the first few), a smaller one that fits, by bisection over the sizes a job can
    run at (``_runs_at``) in at most ``BISECTIONS`` more plans: 104 ranks rather than 128
    saves a quarter of them. Not always the smallest: fitting need not get easier with
    every rank added (basic deals tables round-robin), and four halvings leave a
    sixteenth of the gap."""
    between = [size for size in range(unfit + 1, fits) if _runs_at(size, per_host, batch)]
    low, high = -1, len(between)  # between[high] fits (fits itself past the end)
    for _ in range(BISECTIONS):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        if overflows_with({"world_size": between[middle]}):
            low = middle
        else:
            high = middle
    return between[high] if high < len(between) else fits


def _world_sizes_to_try(
    lowest: int, highest: int, per_host: int = 1, batch: int | None = None
) -> list[int]:
    """A few sizes from the lower bound up, then powers of two up to eight times it,
    none above ``highest``; the last is the largest size under ``highest`` when eight
    times ``lowest`` passes it. Each is a size a job can run at (``_runs_at``), rounded
    up to the next such size (the largest one rounded down)."""
    runs = [size for size in range(lowest, highest + 1) if _runs_at(size, per_host, batch)]
    if not runs:
        return []
    wanted = set(range(lowest, lowest + 4))
    power = 1
    while power <= 8 * lowest:
        if power > lowest + 3:
            wanted.add(power)
        power *= 2
    found = {runs[i] for i in (bisect_left(runs, size) for size in wanted) if i < len(runs)}
    if 8 * lowest > runs[-1]:
        found.add(runs[-1])
    return sorted(found)


def _runs_at(size: int, per_host: int, batch: int | None) -> bool:
    """Whether a job of ``size`` ranks can run the plan: whole hosts of ``per_host`` once
    past one (jobs are launched host by host, and ``row_reduction: host`` needs them),
    and a global batch that splits evenly over the ranks (else the spec is refused)."""
    whole = size <= per_host or size % per_host == 0
    return whole and (batch is None or batch % size == 0)


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
