"""Stacked bar charts as inline SVG: one bar per rank, readable from 8 to thousands of bars.

The chart is drawn here, in Python, so a report opens as a picture without any script,
and the same plan always gives the same bytes (a committed report diffs cleanly). Each
bar is a ``<g class="bar" data-rank="r">`` holding a full-height hit area (so a bar one
pixel wide can still be pointed at), its stacked segments, a marker below the axis that
the page's table picker shows, and a ``<title>`` tooltip. With many ranks the chart is
drawn wider than the page, at least one pixel per bar, and its container scrolls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

LEFT, RIGHT, TOP, BOTTOM = 84, 140, 14, 52  # margins: y labels, line labels, x labels
PLOT_HEIGHT = 260
MIN_PLOT_WIDTH = 640
MAX_X_LABELS = 16


@dataclass(frozen=True)
class Series:
    """One kind of segment: its CSS class (colour), and its name in the legend."""

    css: str
    label: str


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the plot (the device limit, the mean), labelled on the right."""

    value: float
    label: str
    css: str


@dataclass(frozen=True)
class BarChart:
    """Bars of stacked ``values`` (one row per bar, one column per series)."""

    title: str
    y_label: str
    series: Sequence[Series]
    values: Sequence[Sequence[float]]
    tips: Sequence[str]  # one tooltip per bar
    tick_label: Callable[[float, float], str]  # (value, scale max) -> axis label
    ticks: Callable[[float], list[float]]  # scale max -> tick values
    rules: Sequence[Rule] = field(default_factory=list)
    y_max: float | None = None  # shared scale, e.g. before and after of a diff


def byte_ticks(top: float) -> list[float]:
    """Round values in the binary unit of ``top``: 0, 2 GiB, 4 GiB, ..."""
    unit = 1024.0 ** _unit_index(top)
    return [tick * unit for tick in _nice_ticks(top / unit)]


def byte_tick_label(value: float, top: float) -> str:
    index = _unit_index(top)
    return "0" if value == 0 else f"{value / 1024**index:g} {BINARY_UNITS[index]}"


def millisecond_ticks(top: float) -> list[float]:
    return [tick / 1000 for tick in _nice_ticks(top * 1000)]


def millisecond_tick_label(value: float, _top: float) -> str:
    return "0" if value == 0 else f"{value * 1000:g} ms"


def _unit_index(top: float) -> int:
    """The largest binary unit that ``top`` is at least one of (0 = bytes)."""
    index = 0
    while index + 1 < len(BINARY_UNITS) and top >= 1024 ** (index + 1):
        index += 1
    return index


def _nice_ticks(top: float, most: int = 6) -> list[float]:
    """0 up to at least ``top`` in steps of 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return [0.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]


def _rank_step(count: int) -> int:
    """Label every rank up to MAX_X_LABELS, else every 2nd, 4th, ... (powers of two)."""
    step = 1
    while count / step > MAX_X_LABELS:
        step *= 2
    return step


def _num(value: float) -> str:
    """Coordinates with two decimals at most, so output is stable and small."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def scale_top(chart: BarChart) -> float:
    """The top of the y axis: the highest bar or rule (or the shared maximum), rounded up
    to the next tick."""
    highest = max([sum(bar) for bar in chart.values] + [r.value for r in chart.rules] + [0.0])
    top = max(highest, chart.y_max or 0.0)
    ticks = chart.ticks(top) if top > 0 else [0.0, 1.0]
    return ticks[-1] or 1.0


def render_svg(chart: BarChart, chart_id: str) -> str:
    """The chart as an ``<svg>`` element, ``chart_id`` its element id."""
    count = len(chart.values)
    plot_width = max(MIN_PLOT_WIDTH, count)
    width, height = LEFT + plot_width + RIGHT, TOP + PLOT_HEIGHT + BOTTOM
    top = scale_top(chart)
    bar_width = plot_width / max(count, 1)
    gap = bar_width * 0.15 if bar_width >= 4 else 0.0
    base = TOP + PLOT_HEIGHT

    def y(value: float) -> float:
        return base - value / top * PLOT_HEIGHT

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_num(width)} {height}" width="{_num(width)}" height="{height}" '
        f'role="img" aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
    ]
    for tick in chart.ticks(top):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{_num(LEFT + plot_width)}" '
            f'y1="{_num(y(tick))}" y2="{_num(y(tick))}"/>'
            f'<text class="ytick" x="{LEFT - 6}" y="{_num(y(tick) + 4)}">'
            f"{escape(chart.tick_label(tick, top))}</text>"
        )
    parts.append('<g class="bars">')
    for index, (stack, tip) in enumerate(zip(chart.values, chart.tips, strict=True)):
        x = LEFT + index * bar_width + gap / 2
        inner = bar_width - gap
        parts.append(
            f'<g class="bar" data-rank="{index}"><title>{escape(tip)}</title>'
            f'<rect class="hit" x="{_num(x)}" y="{TOP}" width="{_num(inner)}" '
            f'height="{PLOT_HEIGHT}"/>'
        )
        level = 0.0
        for series, value in zip(chart.series, stack, strict=True):
            if value > 0:
                parts.append(
                    f'<rect class="seg {series.css}" x="{_num(x)}" y="{_num(y(level + value))}" '
                    f'width="{_num(inner)}" height="{_num(value / top * PLOT_HEIGHT)}"/>'
                )
            level += value
        parts.append(
            f'<rect class="mark" x="{_num(x)}" y="{base + 3}" width="{_num(max(inner, 1))}" '
            'height="7"/></g>'
        )
    parts.append("</g>")
    for rule in chart.rules:
        at = _num(y(rule.value))
        parts.append(
            f'<line class="rule {rule.css}" x1="{LEFT}" x2="{_num(LEFT + plot_width)}" '
            f'y1="{at}" y2="{at}"/><text class="rule-label {rule.css}" '
            f'x="{_num(LEFT + plot_width + 6)}" y="{_num(y(rule.value) + 4)}">'
            f"{escape(rule.label)}</text>"
        )
    step = _rank_step(count)
    for index in range(0, count, step):
        parts.append(
            f'<text class="xtick" x="{_num(LEFT + (index + 0.5) * bar_width)}" '
            f'y="{base + 24}">{index}</text>'
        )
    parts += [
        f'<line class="axis" x1="{LEFT}" x2="{_num(LEFT + plot_width)}" y1="{base}" y2="{base}"/>',
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{base}"/>',
        f'<text class="xlabel" x="{_num(LEFT + plot_width / 2)}" y="{height - 6}">rank</text>',
        f'<text class="ylabel" transform="translate(16 {_num(TOP + PLOT_HEIGHT / 2)}) '
        f'rotate(-90)">{escape(chart.y_label)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def legend_html(series: Sequence[Series]) -> str:
    """The colours of a chart's segments, as an HTML list above it."""
    items = "".join(
        f'<li><span class="swatch {s.css}"></span>{escape(s.label)}</li>' for s in series
    )
    return f'<ul class="legend">{items}</ul>'
