"""Render a plan for people: per-rank load and the shard layout, as text, Markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

from planner.plan import Plan

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


def human_bytes(count: float) -> str:
    """Binary units, two decimals: 1.50 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


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
    ]


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
    lines += [*tabulate(*_rank_table(plan)), "", _footer(plan)]
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
        "ranks": [vars(row) for row in rank_rows(plan)],
        "stats": plan.stats.model_dump(),
        "data_parallel": list(plan.groups.data_parallel),
        "shards": [s.model_dump(mode="json") for s in plan.shards],
    }
