"""Render a plan for people: per-rank load and the shard layout, as text, Markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

from planner.costs.memory import ranks_over_limit, usable_memory
from planner.plan import Plan
from planner.units import human_bytes

DEFAULT_SHARD_LIMIT = 200
FORMATS = ("table", "json", "markdown")


@dataclass(frozen=True)
class RankRow:
    rank: int
    shards: int
    weights: int
    elements: int
    bytes: int
    share: float  # of the largest rank's bytes


def rank_rows(plan: Plan) -> list[RankRow]:
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
        *_memory_lines(plan),
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
        over = ranks_over_limit(plan)
        verdict = (
            f"DOES NOT FIT: {len(over)} of {plan.world_size} ranks over"
            if over
            else f"fits, largest rank at {plan.stats.max_rank_bytes / limit:.1%}"
            if limit
            else "fits"
        )
        lines.append(
            f"device memory {human_bytes(p.device_memory)} less {p.memory_reserve * 100:g}% "
            f"reserve = {human_bytes(limit)} per rank: {verdict}"
        )
    return lines


PHASE_LABELS: dict[str, str] = {
    "id_alltoall": "ids",
    "embedding_alltoall": "embeddings",
    "embedding_grad_alltoall": "embedding gradients",
    "row_id_allgather": "row-slice ids",
    "row_reduce_scatter": "row-slice outputs",
    "row_grad_allgather": "row-slice gradients",
    "dp_allreduce": "data-parallel gradients",
}


def _comm_lines(plan: Plan) -> list[str]:
    """The traffic summary, when the plan carries an estimate."""
    comm, p = plan.stats.comm, plan.parameters
    if comm is None or p.global_batch_size is None:
        return []
    local = p.global_batch_size // plan.world_size
    phases = ", ".join(
        f"{PHASE_LABELS.get(name, name)} {_ms(seconds)}"
        for name, seconds in comm.phase_seconds.items()
        if seconds
    )
    return [
        f"communication per step at global batch {p.global_batch_size:,} ({local:,} per rank, "
        f"{p.id_bytes}-byte ids, {p.compute_dtype} embeddings): largest rank sends "
        f"{human_bytes(comm.max_rank_sent_bytes)}, receives "
        f"{human_bytes(comm.max_rank_received_bytes)}; {human_bytes(comm.total_bytes)} in all",
        f"estimated communication time {_ms(comm.step_seconds)} per step"
        + (f" ({phases})" if phases else "")
        + f" at {p.alltoall_bandwidth:g} GB/s all-to-all, {p.allreduce_bandwidth:g} GB/s ring; "
        "no latency, overlap or compute modelled",
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _footer(plan: Plan) -> str:
    return (
        f"largest rank {human_bytes(plan.stats.max_rank_bytes)}, "
        f"mean {human_bytes(plan.stats.mean_rank_bytes)}, "
        f"imbalance (max/mean) {plan.stats.imbalance:.3f}"
    )


def _rank_table(plan: Plan) -> tuple[list[str], list[list[str]]]:
    head = ["rank", "shards", "weights", "elements", "bytes", "of largest"]
    body = [
        [
            str(row.rank),
            str(row.shards),
            str(row.weights),
            f"{row.elements:,}",
            human_bytes(row.bytes),
            f"{row.share:.1%}",
        ]
        for row in rank_rows(plan)
    ]
    p = plan.parameters
    extra: list[tuple[str, list[str]]] = []
    if p.optimizer_slots:
        extra.append(("optimizer", [human_bytes(r.optimizer_bytes) for r in plan.ranks]))
    if p.device_memory is not None:
        limit = usable_memory(p.device_memory, p.memory_reserve)
        extra.append(("free", [human_bytes(limit - r.bytes) for r in plan.ranks]))
    if all(r.comm is not None for r in plan.ranks):
        comms = [r.comm for r in plan.ranks if r.comm is not None]
        extra.append(("sent", [human_bytes(c.sent_bytes) for c in comms]))
        extra.append(("received", [human_bytes(c.received_bytes) for c in comms]))
        extra.append(("comm time", [_ms(c.seconds) for c in comms]))
    for name, cells in extra:
        head.append(name)
        for row, cell in zip(body, cells, strict=True):
            row.append(cell)
    return head, body


def _shard_table(plan: Plan) -> tuple[list[str], list[list[str]]]:
    head = ["table", "rank", "rows", "cols", "shape", "bytes"]
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
            ]
        )
    return head, body


def _align(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(head, *body, strict=True)]
    numeric = [all(_is_numeric(row[i]) for row in body) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [line(head), line(["-" * w for w in widths]), *[line(row) for row in body]]


def _markdown(head: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def table_lines(head: list[str], body: list[list[str]], fmt: str = "table") -> list[str]:
    """Rows as an aligned text table (numbers right-aligned) or as Markdown."""
    return (_markdown if fmt == "markdown" else _align)(head, body)


def _is_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] == "-")


def _data_parallel_line(plan: Plan) -> list[str]:
    names = plan.groups.data_parallel
    if not names:
        return []
    return [f"data-parallel on every rank: {', '.join(names)}"]


def render(plan: Plan, fmt: str = "table", shard_limit: int | None = DEFAULT_SHARD_LIMIT) -> str:
    """The preview ``planner plan`` and ``planner show`` print.

    ``shard_limit``: list shards only when there are at most this many (None = always);
    a plan over 1,000 ranks would otherwise print pages nobody reads.
    """
    if fmt == "json":
        return json.dumps(_as_json(plan), indent=2)
    show_shards = shard_limit is None or len(plan.shards) <= shard_limit
    tabulate = _markdown if fmt == "markdown" else _align
    lines = [*_header_lines(plan), ""]
    lines += [*tabulate(*_rank_table(plan)), "", _footer(plan), *_comm_lines(plan)]
    lines += _data_parallel_line(plan)
    if show_shards:
        lines += ["", *tabulate(*_shard_table(plan))]
    else:
        lines += [f"{len(plan.shards)} shards (pass --shards to list them)"]
    return "\n".join(lines)


def _as_json(plan: Plan) -> dict:
    return {
        "world_size": plan.world_size,
        "strategy": plan.strategy,
        "ranks": [
            {
                **vars(row),
                "optimizer_bytes": rank.optimizer_bytes,
                **({"comm": rank.comm.model_dump()} if rank.comm is not None else {}),
            }
            for row, rank in zip(rank_rows(plan), plan.ranks, strict=True)
        ],
        "stats": plan.stats.model_dump(),
        **_capacity_json(plan),
        "data_parallel": list(plan.groups.data_parallel),
        "shards": [s.model_dump(mode="json") for s in plan.shards],
    }


def _capacity_json(plan: Plan) -> dict:
    p = plan.parameters
    if p.device_memory is None:
        return {}
    return {
        "capacity": {
            "device_memory": p.device_memory,
            "memory_reserve": p.memory_reserve,
            "usable_bytes": usable_memory(p.device_memory, p.memory_reserve),
            "ranks_over": [r.rank for r in ranks_over_limit(plan)],
        }
    }
