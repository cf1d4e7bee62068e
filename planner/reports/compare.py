"""What-if: one spec planned over several world sizes and strategies, side by side."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass

from planner.costs.memory import ranks_over_limit
from planner.errors import TooManyShards, brief
from planner.placement.registry import STRATEGY_NAMES
from planner.plan import Plan
from planner.planning import make_plan
from planner.reports.text_table import table_lines
from planner.spec import Spec, spec_from_dict
from planner.spec_fields import MAX_WORLD_SIZE
from planner.units import human_bytes, milliseconds


@dataclass(frozen=True)
class Row:
    """One (world size, strategy) planned: memory, balance, traffic and whether it fits."""

    world_size: int
    strategy: str  # as asked for
    used: str  # as planned (basic on one rank)
    max_rank_bytes: int
    mean_rank_bytes: float
    imbalance: float
    shards: int
    comm_max_rank_bytes: int | None  # most bytes any rank sends or receives per step
    comm_total_bytes: int | None
    comm_seconds: float | None  # the traffic's time alone (stats.comm), the "comm time" column
    step_seconds: float | None  # lookups and exchanges (stats.step), the "step" column
    fits: bool | None  # None without a device memory
    ranks_over: int
    max_rank_device_bytes: int = 0  # with CPU offload, the largest rank's GPU part
    max_rank_host_bytes: int = 0  # and the largest rank's host part
    row_reduction: str = "direct"  # as the plan runs it (auto may choose host)


@dataclass(frozen=True)
class Unplanned:
    """One (world size, strategy) that makes no plan at all: the spec would cut its
    tables into more pieces there than a plan may hold. A row like one that does not
    fit, so that one such size does not hide the others."""

    world_size: int
    strategy: str
    no_plan: str  # why, and what to change


# Each world size is a plan per strategy: a bound keeps one command within seconds.
MAX_COMPARED_WORLD_SIZES = 32


def parse_world_sizes(text: str) -> list[int]:
    """``"8,16,32"`` -> [8, 16, 32]; ValueError naming the accepted form."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(
            f"--world-size: expected positive integers separated by commas, such as 8,16,32 "
            f"(got {brief(text)})"
        )
    if max(sizes) > MAX_WORLD_SIZE:
        raise ValueError(
            f"--world-size: {max(sizes):,} is more than {MAX_WORLD_SIZE:,} ranks, the most "
            "this planner plans"
        )
    distinct = list(dict.fromkeys(sizes))
    if len(distinct) > MAX_COMPARED_WORLD_SIZES:
        raise ValueError(
            f"--world-size: {len(distinct):,} world sizes given; compare at most "
            f"{MAX_COMPARED_WORLD_SIZES} at once (run compare again for the others)"
        )
    return distinct


def parse_strategies(text: str) -> list[str]:
    """``"all"`` (every strategy this planner knows) or names separated by commas."""
    known = STRATEGY_NAMES
    if text.strip() == "all":
        return list(known)
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(
            f"--strategy: {brief(unknown[0] if unknown else text)} is not a strategy; use all or "
            f"some of {', '.join(known)} separated by commas"
        )
    return list(dict.fromkeys(names))


def compare(
    spec: Spec,
    world_sizes: list[int],
    strategies: list[str],
    source: str = "<spec>",
    options: Collection[str] = (),
) -> list[Row | Unplanned]:
    """A row per (world size, strategy), world sizes outermost, in the order given.

    Each combination is validated as a spec of its own (a global batch size must split
    over every world size); SpecError names the first that does not, and the option
    among ``options`` (the settings given as options) whose value is at fault, if any.
    A combination that would cut the tables into too many pieces is an ``Unplanned``
    row instead: the world size, not the spec, is what is wrong with it.
    """
    base = spec.model_dump()
    rows = []
    for world in world_sizes:
        for strategy in strategies:
            where = f"{source} (world size {world}, strategy {strategy})"
            variant = spec_from_dict(
                {**base, "world_size": world, "strategy": strategy},
                source=where,
                options=options,
            )
            try:
                rows.append(row_of(make_plan(variant), strategy))
            except TooManyShards as exc:
                rows.append(Unplanned(world, strategy, str(exc)))
    return rows


def row_of(plan: Plan, strategy: str) -> Row:
    """The comparison's row of ``plan``, made for ``strategy`` as asked (``used`` says what
    ran: with one rank, basic)."""
    comm = plan.stats.comm
    over = ranks_over_limit(plan)
    return Row(
        world_size=plan.world_size,
        strategy=strategy,
        used=plan.strategy,
        max_rank_bytes=plan.stats.max_rank_bytes,
        mean_rank_bytes=plan.stats.mean_rank_bytes,
        imbalance=plan.stats.imbalance,
        shards=len(plan.shards),
        comm_max_rank_bytes=(
            None if comm is None else max(comm.max_rank_sent_bytes, comm.max_rank_received_bytes)
        ),
        comm_total_bytes=None if comm is None else comm.total_bytes,
        comm_seconds=None if comm is None else comm.step_seconds,
        step_seconds=None if plan.stats.step is None else plan.stats.step.step_seconds,
        fits=None if plan.parameters.device_memory is None else not over,
        ranks_over=len(over),
        max_rank_device_bytes=max(r.device_bytes for r in plan.ranks),
        max_rank_host_bytes=max(r.host_bytes for r in plan.ranks),
        row_reduction=plan.parameters.row_reduction,
    )


def render(rows: list[Row | Unplanned], fmt: str = "table") -> str:
    """The rows as an aligned table, Markdown, or JSON (a list of objects).

    A combination with no plan is a row of dashes, its reason said under the table; in
    JSON an object of its world size, strategy and ``no_plan``.
    """
    if fmt == "json":
        return json.dumps([asdict(row) for row in rows], indent=2)
    planned = [row for row in rows if isinstance(row, Row)]
    with_comm = any(row.comm_seconds is not None for row in planned)
    with_fit = any(row.fits is not None for row in planned)
    with_host = any(row.max_rank_host_bytes for row in planned)
    head = ["world", "strategy", "max/rank", "mean/rank", "imbalance", "shards"]
    if with_host:
        head += ["GPU/rank", "host/rank"]
    if with_comm:
        head += ["comm/rank", "comm time", "step"]
    if with_fit:
        head += ["fits"]
    body = []
    for row in rows:
        if isinstance(row, Unplanned):
            dashes = ["-"] * (len(head) - 2)
            body.append([str(row.world_size), row.strategy, *dashes[:-1], _NO_PLAN[with_fit]])
            continue
        cells = [
            str(row.world_size),
            _strategy_cell(row),
            human_bytes(row.max_rank_bytes),
            human_bytes(row.mean_rank_bytes),
            f"{row.imbalance:.3f}",
            str(row.shards),
        ]
        if with_host:
            cells += [human_bytes(row.max_rank_device_bytes), human_bytes(row.max_rank_host_bytes)]
        if with_comm:
            cells += [
                human_bytes(row.comm_max_rank_bytes or 0),
                milliseconds(row.comm_seconds or 0),
                milliseconds(row.step_seconds or 0),
            ]
        if with_fit:
            cells += ["yes" if row.fits else f"no ({row.ranks_over} over)"]
        body.append(cells)
    strategies_by_reason: dict[tuple[int, str], list[str]] = {}
    for row in rows:
        if isinstance(row, Unplanned):
            strategies_by_reason.setdefault((row.world_size, row.no_plan), []).append(row.strategy)
    bullet = "- " if fmt == "markdown" else ""  # else Markdown runs the lines together
    reasons = [
        f"{bullet}no plan at world size {world} ({', '.join(strategies)}): {reason}"
        for (world, reason), strategies in strategies_by_reason.items()
    ]
    return "\n".join([*table_lines(head, body, fmt), *(["", *reasons] if reasons else [])])


_NO_PLAN = {True: "no plan", False: "-"}  # in the fits column, when there is one


def _strategy_cell(row: Row) -> str:
    """The strategy asked for, with what was used when it differs and host sums when the
    plan adds row-sliced sums up within hosts: ``auto (host sums)``, ``auto (basic)``."""
    notes = [row.used] if row.used != row.strategy else []
    if row.row_reduction == "host":
        notes.append("host sums")
    return f"{row.strategy} ({', '.join(notes)})" if notes else row.strategy
