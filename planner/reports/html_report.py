"""A plan as one self-contained HTML page: bytes and traffic per rank, and where a table is.

The page has no network dependency (inline CSS, inline SVG from ``bar_chart``, a small
inline script for the table picker) and no timestamp, so the same plan always gives the
same file and a committed report diffs cleanly. Every name from a plan is escaped: in
markup by ``html.escape``, in the embedded JSON by escaping ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

from planner.costs.memory import footprint, memory_limit, replica_bytes, state_factor
from planner.errors import PlannerError
from planner.files import write_atomically
from planner.plan import Plan
from planner.reports.bar_chart import (
    BarChart,
    Rule,
    Series,
    byte_tick_label,
    byte_ticks,
    legend_html,
    millisecond_tick_label,
    millisecond_ticks,
    render_svg,
    scale_top,
)
from planner.reports.capacity import CapacityReport
from planner.reports.html_assets import PAGE_SCRIPT, PAGE_STYLE
from planner.reports.preview import PHASE_LABELS, summary_lines
from planner.units import human_bytes, milliseconds

GROUP_SERIES = (
    Series("dp", "data-parallel"),
    Series("tp", "table-parallel"),
    Series("rs", "row-sliced"),
    Series("host", "offloaded to host"),
)
PHASE_CSS = {name: f"p{index}" for index, name in enumerate(PHASE_LABELS)}
GROUP_CODES = {"data_parallel": "dp", "table_parallel": "tp", "row_sliced": "rs"}


class ReportFileError(PlannerError):
    """The report cannot be written where asked."""


def on_host(item: Any) -> bool:
    """Whether a shard, local weight or row slice lives in host memory (CPU offload).

    Plans without offload have no ``device`` field; everything is then on the GPU.
    """
    return getattr(item, "device", None) == "host"


def bytes_by_group(plan: Plan) -> list[tuple[int, int, int, int]]:
    """Per rank: (data-parallel, table-parallel on the device, row-sliced, offloaded to
    host) bytes, optimizer state included."""
    tables = {t.name: t for t in plan.tables}
    factor, replicas = state_factor(plan), replica_bytes(plan)
    found = []
    for rank in plan.ranks:
        weights = rank.table_parallel_weights
        device = footprint([w for w in weights if not on_host(w)], [], [], tables)[1]
        rows = footprint([], [s for s in rank.row_slices if not on_host(s)], [], tables)[1]
        host = footprint(
            [w for w in weights if on_host(w)],
            [s for s in rank.row_slices if on_host(s)],
            [],
            tables,
        )[1]
        found.append((replicas, device * factor, rows * factor, host * factor))
    return found


@dataclass(frozen=True)
class Panel:
    """One plan's charts on the page (a diff has two), and its tables for the picker."""

    heading: str
    summary: list[str]
    memory: BarChart
    comm: BarChart | None
    tables: dict[str, list]  # name -> [group, rows, width, bytes per element, pieces]


def _memory_chart(plan: Plan) -> BarChart:
    held_by_rank = bytes_by_group(plan)
    present = [i for i in range(len(GROUP_SERIES)) if any(held[i] for held in held_by_rank)]
    present = present or [1]  # an empty plan still has a legend
    series = [GROUP_SERIES[i] for i in present]
    parts = [[held[i] for i in present] for held in held_by_rank]
    limit = memory_limit(plan)
    shards = [0] * plan.world_size
    for shard in plan.shards:
        shards[shard.rank] += 1
    tips = []
    for rank, held in zip(plan.ranks, parts, strict=True):
        named = ", ".join(
            f"{s.label} {human_bytes(b)}" for s, b in zip(series, held, strict=True) if b
        )
        tip = f"rank {rank.rank}: {human_bytes(sum(held))}" + (f" ({named})" if named else "")
        tip += f"; {shards[rank.rank]} shards"
        if limit is not None and rank.device_bytes > limit:  # offloaded bytes do not count
            tip += f"; {human_bytes(rank.device_bytes - limit)} over the limit"
        tips.append(tip)
    rules = [
        Rule(plan.stats.mean_rank_bytes, f"mean {human_bytes(plan.stats.mean_rank_bytes)}", "mean")
    ]
    if limit is not None:
        rules.append(Rule(limit, f"device limit {human_bytes(limit)}", "limit"))
    return BarChart(
        title="Bytes per rank by group (weights and optimizer state)",
        y_label="bytes per rank",
        series=series,
        values=parts,
        tips=tips,
        tick_label=byte_tick_label,
        ticks=byte_ticks,
        rules=rules,
    )


def _comm_chart(plan: Plan) -> BarChart | None:
    comms = [rank.comm for rank in plan.ranks if rank.comm is not None]
    if len(comms) < plan.world_size or plan.parameters.global_batch_size is None:
        return None
    phases = [p for p in PHASE_LABELS if any(getattr(c, p).seconds for c in comms)]
    return BarChart(
        title=f"Estimated communication time per step, by phase (global batch "
        f"{plan.parameters.global_batch_size:,})",
        y_label="time per step",
        series=[Series(PHASE_CSS[p], PHASE_LABELS[p]) for p in phases],
        values=[[getattr(c, p).seconds for p in phases] for c in comms],
        tips=[
            f"rank {index}: {milliseconds(c.seconds)}; sends {human_bytes(c.sent_bytes)}, "
            f"receives {human_bytes(c.received_bytes)}"
            for index, c in enumerate(comms)
        ],
        tick_label=millisecond_tick_label,
        ticks=millisecond_ticks,
    )


def _tables(plan: Plan) -> dict[str, list]:
    """Each table's group, shape, bytes per element (optimizer state included) and pieces
    as [rank, first row, end row, first column, end column, 1 when on host]."""
    pieces: dict[str, list] = {t.name: [] for t in plan.tables}
    for s in plan.shards:
        pieces[s.table].append([s.rank, *s.rows, *s.cols, int(on_host(s))])
    group_of = {name: GROUP_CODES[g] for name, g in plan.groups.group_of().items()}
    factor = state_factor(plan)
    return {
        t.name: [group_of.get(t.name, ""), t.rows, t.width, t.itemsize * factor, pieces[t.name]]
        for t in plan.tables
    }


def _panel(plan: Plan, heading: str, extra: Sequence[str]) -> Panel:
    return Panel(
        heading,
        [*summary_lines(plan), *extra],
        _memory_chart(plan),
        _comm_chart(plan),
        _tables(plan),
    )


def plan_page(plan: Plan, source: str, capacity: CapacityReport | None = None) -> str:
    """The page for one plan; ``source`` names it (the spec or plan file) in the heading.
    With ``capacity``, its advice follows the summary (a plan that does not fit)."""
    advice = capacity.lines() if capacity is not None else []
    heading = f"{source}: {plan.world_size:,} ranks, strategy {plan.strategy}"
    return _page(heading, [], [_panel(plan, "", advice)])


def diff_page(old: Plan, new: Plan, names: tuple[str, str], summary: str) -> str:
    """Before and after side by side, each chart on one scale for both so the bars compare."""
    panels = [_panel(old, f"before: {names[0]}", []), _panel(new, f"after: {names[1]}", [])]
    memory_max = max(scale_top(panel.memory) for panel in panels)
    comms = [panel.comm for panel in panels if panel.comm is not None]
    comm_max = max((scale_top(comm) for comm in comms), default=None)
    panels = [
        replace(
            panel,
            memory=replace(panel.memory, y_max=memory_max),
            comm=None if panel.comm is None else replace(panel.comm, y_max=comm_max),
        )
        for panel in panels
    ]
    return _page(f"{names[0]} -> {names[1]}", [summary], panels)


def _page(heading: str, lead: list[str], panels: list[Panel]) -> str:
    names = list(dict.fromkeys(name for panel in panels for name in panel.tables))
    data = {
        "names": names,
        "panels": [[panel.tables.get(name) for name in names] for panel in panels],
    }
    options = "".join(
        f'<option value="{index}">{escape(name)}</option>' for index, name in enumerate(names)
    )
    body = [
        f"<h1>{escape(heading)}</h1>",
        *(f'<p class="lead">{escape(line)}</p>' for line in lead),
        '<div class="picker"><label for="table-picker">Find a table:</label> '
        f'<select id="table-picker"><option value="">(choose a table)</option>{options}'
        "</select></div>",
        f'<div class="panels n{len(panels)}">',
    ]
    for index, panel in enumerate(panels):
        body.append(_panel_html(panel, index))
    body.append("</div>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(heading)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f'\n<script type="application/json" id="report-data">{_script_json(data)}</script>'
        + f"\n<script>{PAGE_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _panel_html(panel: Panel, index: int) -> str:
    """Summary, the bytes chart, the chosen table's pieces, then the traffic chart."""
    parts = [f'<section class="panel" data-panel="{index}">']
    if panel.heading:
        parts.append(f"<h2>{escape(panel.heading)}</h2>")
    parts.append(f'<pre class="summary">{escape(chr(10).join(panel.summary))}</pre>')
    parts.append(_chart_html(panel.memory, f"memory-{index}"))
    parts.append(f'<div class="pieces" id="pieces-{index}"></div>')
    if panel.comm is None:
        parts.append(
            '<p class="note">No communication estimate: the plan was made without a '
            "global batch size (--global-batch-size).</p>"
        )
    else:
        parts.append(_chart_html(panel.comm, f"comm-{index}"))
    parts.append("</section>")
    return "".join(parts)


def _chart_html(chart: BarChart, chart_id: str) -> str:
    return (
        f"<h3>{escape(chart.title)}</h3>{legend_html(chart.series)}"
        f'<div class="scroll">{render_svg(chart, chart_id)}</div>'
    )


def _script_json(data: dict) -> str:
    """JSON that cannot end its script element, whatever the names hold."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def save_report(text: str, path: str | Path) -> None:
    """Write atomically, as plans are: nobody opens half a report."""
    path = Path(path)
    try:
        write_atomically(text, path)
    except OSError as exc:
        raise ReportFileError(f"{path}: cannot write the report ({exc.strerror or exc})") from exc
