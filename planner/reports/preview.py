"""Render a plan for people: per-rank load and the shard layout, as text, Markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from planner.costs.memory import (
    ranks_over_host_limit,
    ranks_over_limit,
    replica_bytes,
    usable_memory,
)
from planner.errors import brief
from planner.plan import Plan
from planner.reports.capacity import CapacityReport, capacity_report
from planner.reports.folding import fold_names, rank_ranges
from planner.reports.text_table import table_lines
from planner.spec_fields import MAX_WORLD_SIZE
from planner.units import human_bytes, milliseconds

DEFAULT_SHARD_LIMIT = 200
FORMATS = ("table", "json", "markdown")

# Which ranks get a row: None every rank, 0 none, N the N largest by bytes and the smallest.
RankChoice = int | None
DEFAULT_RANKS = "auto"  # every rank up to LIST_EVERY_RANK_UP_TO, else TOP_RANKS (JSON: all)
LIST_EVERY_RANK_UP_TO = 64
TOP_RANKS = 10


def parse_ranks(text: str) -> RankChoice:
    """``all``, ``none`` or ``top N`` (also ``topN``); ValueError says what is accepted."""
    word = text.strip().lower()
    if word in ("all", "none"):
        return None if word == "all" else 0
    count = word.removeprefix("top").strip().lstrip("0")
    plain = count.isascii() and count.isdigit() and len(count) <= len(str(MAX_WORLD_SIZE))
    if word.startswith("top") and plain and int(count) <= MAX_WORLD_SIZE:
        return int(count)
    raise ValueError(
        f"--ranks: expected all, none or 'top N' with N from 1 to {MAX_WORLD_SIZE:,} "
        f"(got {brief(text)})"
    )


def resolve_ranks(ranks: RankChoice | str, fmt: str, world_size: int) -> RankChoice:
    """DEFAULT_RANKS as a choice: tools (JSON) get every rank, people the first
    LIST_EVERY_RANK_UP_TO ranks in full and beyond that the TOP_RANKS largest."""
    if ranks != DEFAULT_RANKS:
        return parse_ranks(ranks) if isinstance(ranks, str) else ranks
    return None if fmt == "json" or world_size <= LIST_EVERY_RANK_UP_TO else TOP_RANKS


def choose_ranks(plan: Plan, choice: RankChoice) -> list[int]:
    """The ranks to list, in listing order: every rank in rank order, none, or the
    ``choice`` largest by bytes (ties by rank) and then the smallest."""
    if choice is None or choice >= plan.world_size:
        return list(range(plan.world_size))
    if choice == 0:
        return []
    by_size = sorted(plan.ranks, key=lambda r: (-r.bytes, r.rank))
    chosen = [r.rank for r in by_size[:choice]]
    smallest = min(plan.ranks, key=lambda r: (r.bytes, r.rank)).rank
    return chosen if smallest in chosen else [*chosen, smallest]


@dataclass(frozen=True)
class RankRow:
    rank: int
    shards: int
    weights: int
    elements: int
    bytes: int
    share: float  # of the largest rank's bytes


def rank_rows(plan: Plan) -> list[RankRow]:
    """Each rank's row of the preview's rank table (shards, weights, bytes, share of the
    largest), also the JSON preview's per-rank entries."""
    shards_on = [0] * plan.world_size
    for shard in plan.shards:
        shards_on[shard.rank] += 1
    largest = plan.stats.max_rank_bytes or 1
    return [
        RankRow(
            rank=r.rank,
            shards=shards_on[r.rank],
            weights=len(r.table_parallel_weights) + len(r.row_slices),
            elements=r.elements,
            bytes=r.bytes,
            share=r.bytes / largest,
        )
        for r in plan.ranks
    ]


def _header_lines(plan: Plan) -> list[str]:
    p = plan.parameters
    slicing = (
        "no column slicing"
        if p.column_slice_threshold is None
        else f"column slice threshold {p.column_slice_threshold:,} "
        f"({p.column_slice_threshold_source})"
    )
    return [
        f"world size {plan.world_size}, strategy {plan.strategy}, "
        f"{len(plan.tables)} tables, {len(plan.inputs)} inputs, "
        f"{human_bytes(plan.stats.total_bytes)} of weights",
        f"groups: {len(plan.groups.data_parallel)} data-parallel, "
        f"{len(plan.groups.table_parallel)} table-parallel, "
        f"{len(plan.groups.row_sliced)} row-sliced; {slicing}",
        _footer(plan),
        *_memory_lines(plan),
        *_offload_lines(plan),
    ]


def summary_lines(plan: Plan) -> list[str]:
    """What a reader needs first: sizes, groups, the largest rank against the mean, the
    device limit, the traffic, and the tables every rank holds."""
    return [
        *_header_lines(plan),
        *_comm_lines(plan),
        *_step_lines(plan),
        *_data_parallel_line(plan),
        *_idle_line(plan),
    ]


def _memory_lines(plan: Plan) -> list[str]:
    """The optimizer and the device limit, when the plan names them."""
    p = plan.parameters
    lines = []
    if p.optimizer_slots:
        values = "value" if p.optimizer_slots == 1 else "values"
        lines.append(
            f"optimizer {p.optimizer}: {p.optimizer_slots} state {values} per weight, "
            "included in bytes"
        )
    if p.device_memory is not None:
        limit = usable_memory(p.device_memory, p.memory_reserve)
        verdict = _verdict(
            plan, len(ranks_over_limit(plan)), max(r.device_bytes for r in plan.ranks), limit
        )
        lines.append(
            f"device memory {human_bytes(p.device_memory)} less {p.memory_reserve * 100:g}% "
            f"reserve = {human_bytes(limit)} per rank: {verdict}"
        )
    return lines


def _verdict(plan: Plan, over: int, largest: int, limit: int) -> str:
    if over:
        return f"DOES NOT FIT: {over} of {plan.world_size} ranks over"
    return f"fits, largest rank at {largest / limit:.1%}" if limit else "fits"


def has_offload(plan: Plan) -> bool:
    """Whether the plan offloads, or may: then bytes on the GPU and in host memory differ."""
    return plan.parameters.offload != "none" or any(r.host_bytes for r in plan.ranks)


def _offload_lines(plan: Plan) -> list[str]:
    """What is in host memory, by which rule, and the host limit, when the plan offloads."""
    if not has_offload(plan):
        return []
    p = plan.parameters
    rule = (
        f"upstream's rule, at most {p.gpu_embedding_size:,} elements of pieces per GPU"
        if p.offload == "upstream"
        else "auto, the fewest bytes that make each rank fit its GPU"
        if p.offload == "auto"
        else p.offload
    )
    pieces = [s for s in plan.shards if s.device == "host"]
    total = sum(r.host_bytes for r in plan.ranks)
    lines = [
        f"CPU offload ({rule}): {len(pieces)} table-parallel "
        f"piece{'' if len(pieces) == 1 else 's'}, {human_bytes(total)} with their optimizer "
        f"state, in host memory; largest rank on its GPU "
        f"{human_bytes(max(r.device_bytes for r in plan.ranks))}"
    ]
    if p.host_memory is not None:
        verdict = _verdict(
            plan,
            len(ranks_over_host_limit(plan)),
            max(r.host_bytes for r in plan.ranks),
            p.host_memory,
        )
        lines.append(f"host memory {human_bytes(p.host_memory)} per rank: {verdict}")
    return lines


PHASE_LABELS: dict[str, str] = {
    "id_alltoall": "ids",
    "embedding_alltoall": "embeddings",
    "embedding_grad_alltoall": "embedding gradients",
    "row_id_allgather": "row-slice ids",
    "row_reduce_scatter": "row-slice outputs",
    "row_grad_allgather": "row-slice gradients",
    "dp_allreduce": "data-parallel gradients",
    "row_host_sums": "row-slice sums within hosts",
    "row_host_sum_grads": "their gradients within hosts",
}


def _comm_lines(plan: Plan) -> list[str]:
    """The traffic summary, when the plan carries an estimate."""
    comm, p = plan.stats.comm, plan.parameters
    if comm is None or p.global_batch_size is None:
        return []
    local = p.global_batch_size // plan.world_size
    phases = ", ".join(
        f"{PHASE_LABELS.get(name, name)} {milliseconds(seconds)}"
        for name, seconds in comm.phase_seconds.items()
        if seconds
    )
    return [
        f"communication per step at global batch {p.global_batch_size:,} ({local:,} per rank, "
        f"{p.id_bytes}-byte ids, {p.compute_dtype} embeddings): largest rank sends "
        f"{human_bytes(comm.max_rank_sent_bytes)}, receives "
        f"{human_bytes(comm.max_rank_received_bytes)}; {human_bytes(comm.total_bytes)} in all",
        f"estimated communication time {milliseconds(comm.step_seconds)} per step"
        + (f" ({phases})" if phases else "")
        + f" at {p.alltoall_bandwidth:g} GB/s all-to-all, {p.allreduce_bandwidth:g} GB/s ring"
        + _within_hosts(plan)
        + " as if it crossed hosts, no latency, overlap or compute modelled (the estimated "
        "step counts hosts and lookups)",
    ]


def _within_hosts(plan: Plan) -> str:
    """Which bytes the traffic estimate times as crossing hosts: all but host sums."""
    if not plan.sums_within_hosts:
        return "; every byte"
    bandwidth = plan.parameters.intra_host_bandwidth
    return f", row-slice sums within hosts at {bandwidth:g} GB/s; every other byte"


STAGE_LABELS: dict[str, str] = {
    "ids": "ids",
    "forward_lookups": "lookups",
    "host_sums": "sums within hosts",
    "outputs": "outputs",
    "output_gradients": "output gradients",
    "host_sum_gradients": "their gradients within hosts",
    "backward_lookups": "backward lookups",
    "dp_allreduce": "data-parallel gradients",
}


def _step_lines(plan: Plan) -> list[str]:
    """The step-time estimate, when the plan carries one."""
    step, p = plan.stats.step, plan.parameters
    if step is None:
        return []
    stages = ", ".join(
        f"{STAGE_LABELS.get(name, name)} {milliseconds(seconds)}"
        for name, seconds in step.stage_seconds.items()
        if seconds
    )
    return [
        f"estimated step {milliseconds(step.step_seconds)} ({stages}); "
        f"slowest rank {step.slowest_rank}; "
        f"{p.gpus_per_host} GPUs per host, {p.intra_host_bandwidth:g} GB/s within a host, "
        f"{p.memory_bandwidth:g} GB/s memory"
        + _reduction_note(plan)
    ]


def _reduction_note(plan: Plan) -> str:
    """Host sums where they run, and whether ``auto`` chose them (the spec left
    ``row_reduction`` open)."""
    if not plan.sums_within_hosts:
        return ""
    chosen = " (chosen by auto: faster by the estimate)"
    return "; row-sliced sums added up within hosts" + (
        chosen if plan.parameters.requested_row_reduction is None else ""
    )


def _footer(plan: Plan) -> str:
    return (
        f"largest rank {human_bytes(plan.stats.max_rank_bytes)}, "
        f"mean {human_bytes(plan.stats.mean_rank_bytes)}, "
        f"imbalance (max/mean) {plan.stats.imbalance:.3f}"
    )


def _rank_table(plan: Plan, ranks: list[int]) -> tuple[list[str], list[list[str]]]:
    """Rows for ``ranks``, in that order; optimizer, free memory and traffic columns when
    the plan has them."""
    rows = rank_rows(plan)
    head = ["rank", "shards", "weights", "elements", "bytes", "of largest"]
    p = plan.parameters
    limit = None if p.device_memory is None else usable_memory(p.device_memory, p.memory_reserve)
    has_comm = all(r.comm is not None for r in plan.ranks)
    offload = has_offload(plan)
    head += ["optimizer"] if p.optimizer_slots else []
    head += ["on GPU", "in host"] if offload else []
    head += ["free"] if limit is not None else []
    head += ["sent", "received", "comm time"] if has_comm else []
    has_step = all(r.step is not None for r in plan.ranks)
    head += ["step"] if has_step else []
    body = []
    for index in ranks:
        row, rank = rows[index], plan.ranks[index]
        cells = [
            str(row.rank),
            str(row.shards),
            str(row.weights),
            f"{row.elements:,}",
            human_bytes(row.bytes),
            f"{row.share:.1%}",
        ]
        cells += [human_bytes(rank.optimizer_bytes)] if p.optimizer_slots else []
        cells += [human_bytes(rank.device_bytes), human_bytes(rank.host_bytes)] if offload else []
        cells += [human_bytes(limit - rank.device_bytes)] if limit is not None else []
        if has_comm and rank.comm is not None:
            comm = rank.comm
            cells += [human_bytes(comm.sent_bytes), human_bytes(comm.received_bytes)]
            cells += [milliseconds(comm.seconds)]
        if has_step and rank.step is not None:
            cells += [milliseconds(rank.step.seconds)]
        body.append(cells)
    return head, body


def _shard_table(plan: Plan) -> tuple[list[str], list[list[str]]]:
    head = ["table", "rank", "rows", "cols", "shape", "bytes"]
    offloads = any(s.device == "host" for s in plan.shards)
    if offloads:
        head.append("device")
    itemsize = {t.name: t.itemsize for t in plan.tables}
    body = []
    for s in plan.shards:
        rows, cols = s.rows[1] - s.rows[0], s.cols[1] - s.cols[0]
        body.append(
            [
                s.table,
                str(s.rank),
                f"{s.rows[0]}:{s.rows[1]}",
                f"{s.cols[0]}:{s.cols[1]}",
                f"{rows:,} x {cols}",
                human_bytes(rows * cols * itemsize[s.table]),
                *([s.device] if offloads else []),
            ]
        )
    return head, body


def _data_parallel_line(plan: Plan) -> list[str]:
    """The replicated tables and what they take on every rank (optimizer state included),
    a part of each rank's bytes the table below does not break out."""
    names = plan.groups.data_parallel
    if not names:
        return []
    each = human_bytes(replica_bytes(plan))
    return [f"data-parallel on every rank ({each} each): {fold_names(names)}"]


def _idle_line(plan: Plan) -> list[str]:
    """Ranks that hold no table-parallel or row-sliced piece: with more ranks than pieces
    they sit out the embedding lookups, which a reader of a long rank table may miss."""
    held = np.zeros(plan.world_size, bool)
    held[[s.rank for s in plan.table_parallel_shards]] = True
    rows = {t.name: t.rows for t in plan.tables}
    for split in plan.row_splits:
        first, stop = split.bounds(rows[split.table], plan.world_size)
        held |= stop > first
    idle = np.flatnonzero(~held)
    if not len(idle) or len(idle) == plan.world_size:
        return []
    return [
        f"{len(idle):,} of {plan.world_size:,} ranks hold no table-parallel or row-sliced "
        f"piece: {rank_ranges(idle.tolist())}"
    ]


def render(
    plan: Plan,
    fmt: str = "table",
    shard_limit: int | None = DEFAULT_SHARD_LIMIT,
    ranks: RankChoice | str = DEFAULT_RANKS,
    capacity: CapacityReport | None = None,
) -> str:
    """The preview ``planner plan`` and ``planner show`` print: the summary first, then the
    ranks (see choose_ranks), then the shards.

    ``shard_limit``: list shards only when there are at most this many (None = always);
    a plan over 1,000 ranks would otherwise print pages nobody reads. ``capacity``: the
    capacity advice when already worked out (JSON carries it; see capacity_report).
    """
    choice = resolve_ranks(ranks, fmt, plan.world_size)
    shown = choose_ranks(plan, choice)
    if fmt == "json":
        return json.dumps(_as_json(plan, shown, capacity), indent=2)
    show_shards = shard_limit is None or len(plan.shards) <= shard_limit
    markdown = fmt == "markdown"
    # Markdown joins lines into paragraphs: the summary as a list, a table after a blank
    lines = [f"- {line}" if markdown else line for line in summary_lines(plan)] + [""]
    lines += _folded_ranks_line(plan.world_size, len(shown), choice)
    if markdown and shown and len(shown) < plan.world_size:
        lines.append("")
    if shown:
        lines += table_lines(*_rank_table(plan, shown), fmt)
    if show_shards:
        lines += ["", *table_lines(*_shard_table(plan), fmt)]
    else:
        lines += ["", f"{len(plan.shards)} shards (pass --shards to list them)"]
    return "\n".join(lines)


def _folded_ranks_line(world_size: int, listed: int, choice: RankChoice) -> list[str]:
    if listed == world_size:
        return []
    if not listed:
        return [f"{world_size:,} ranks not listed (--ranks all or --ranks 'top N' lists them)"]
    return [
        f"the {choice:,} largest ranks by bytes and the smallest; {world_size - listed:,} of "
        f"{world_size:,} ranks not listed (--ranks all lists every rank):"
    ]


def _as_json(plan: Plan, shown: list[int], capacity: CapacityReport | None) -> dict:
    rows = rank_rows(plan)
    listed = []
    for index in shown:
        rank = plan.ranks[index]
        entry = {**vars(rows[index]), "optimizer_bytes": rank.optimizer_bytes}
        if has_offload(plan):
            entry |= {"device_bytes": rank.device_bytes, "host_bytes": rank.host_bytes}
        if rank.comm is not None:
            entry["comm"] = rank.comm.model_dump()
        if rank.step is not None:
            entry["step"] = rank.step.model_dump()
        listed.append(entry)
    folded = plan.world_size - len(shown)
    return {
        "world_size": plan.world_size,
        "strategy": plan.strategy,
        "row_reduction": plan.parameters.row_reduction,
        "ranks": listed,
        **({"ranks_not_listed": folded} if folded else {}),
        "stats": plan.stats.model_dump(),
        **_capacity_json(plan, capacity),
        "data_parallel": list(plan.groups.data_parallel),
        "shards": [s.model_dump(mode="json") for s in plan.shards],
    }


def _capacity_json(plan: Plan, capacity: CapacityReport | None) -> dict:
    p = plan.parameters
    found = {}
    if p.device_memory is not None or p.host_memory is not None:
        found["capacity"] = (capacity or capacity_report(plan)).as_json()
    if has_offload(plan):
        found["offload"] = {
            "rule": p.offload,
            "gpu_embedding_size": p.gpu_embedding_size,
            "host_memory": p.host_memory,
            "pieces_in_host_memory": sum(s.device == "host" for s in plan.shards),
            "ranks_over_host_memory": [r.rank for r in ranks_over_host_limit(plan)],
        }
    return found
