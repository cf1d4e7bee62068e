"""What moved between two plans, for reviewing a committed plan's change.

The summary comes first; then settings, tables and inputs added, removed or changed,
tables that moved, per-rank bytes, and the step and communication estimates. A table
moved when its group or the ranks holding it changed, or a piece went to or from host
memory (CPU offload), or a shard's column ranges changed while the table's width
stayed, or its row ranges while its row count stayed: resizing a table changes its
ranges by itself, so a resize alone is a table change, not a move.
Anything else that differs (fused weight order, exchange order) is named by its field so
that no difference goes unreported.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from planner.plan import Plan, Shard
from planner.reports.folding import rank_ranges
from planner.spec import TableSpec
from planner.units import human_bytes, milliseconds


@dataclass(frozen=True)
class Change:
    """``what`` went from ``old`` to ``new`` (None: absent on that side)."""

    what: str
    old: Any
    new: Any


@dataclass
class PlanDiff:
    settings: list[Change] = field(default_factory=list)
    tables_added: list[str] = field(default_factory=list)
    tables_removed: list[str] = field(default_factory=list)
    table_changes: list[Change] = field(default_factory=list)
    inputs_added: list[str] = field(default_factory=list)
    inputs_removed: list[str] = field(default_factory=list)
    input_changes: list[Change] = field(default_factory=list)
    moved: list[Change] = field(default_factory=list)  # table: old layout -> new layout
    rank_bytes: list[Change] = field(default_factory=list)
    rank_host_bytes: list[Change] = field(default_factory=list)  # of rank_bytes, in host memory
    step: Change | None = None  # the step estimate, seconds (stats.step)
    comm: Change | None = None  # its communication alone, seconds (stats.comm)
    other: list[str] = field(default_factory=list)
    identical: bool = True

    @property
    def changed(self) -> bool:
        return not self.identical


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """Every difference between two sound plans (``load_plan`` checks), grouped for a
    reviewer."""
    result = PlanDiff(identical=old == new)
    if result.identical:
        return result
    for name in ("world_size", "strategy"):
        if getattr(old, name) != getattr(new, name):
            result.settings.append(Change(name, getattr(old, name), getattr(new, name)))
    old_params, new_params = dict(old.parameters), dict(new.parameters)  # defaults included
    moved = [
        key
        for key in dict.fromkeys([*old_params, *new_params])
        if old_params.get(key) != new_params.get(key)
    ]
    result.settings += [  # a requested value is news only when the one in effect stayed
        Change(f"parameters.{key}", old_params.get(key), new_params.get(key))
        for key in moved
        if key.removeprefix("requested_") == key or key.removeprefix("requested_") not in moved
    ]

    result.tables_added, result.tables_removed, result.table_changes = _named_changes(
        old.tables, new.tables
    )
    result.inputs_added, result.inputs_removed, result.input_changes = _named_changes(
        old.inputs, new.inputs
    )

    old_layout, new_layout = _layouts(old), _layouts(new)
    old_tables = {t.name: t for t in old.tables}
    for table in new.tables:
        before, after = old_layout.get(table.name), new_layout[table.name]
        if before is not None and _moved(before, after, old_tables[table.name], table):
            result.moved.append(Change(table.name, _describe(before), _describe(after)))

    result.rank_bytes = _rank_changes(old, new, "bytes")
    result.rank_host_bytes = _rank_changes(old, new, "host_bytes", absent=0)
    result.step = _estimate_change(old, new, "step")
    result.comm = _estimate_change(old, new, "comm")

    if not _explained(result):
        old_data, new_data = old.model_dump(mode="json"), new.model_dump(mode="json")
        result.other = [key for key in old_data if old_data[key] != new_data[key]]
    return result


def _estimate_change(old: Plan, new: Plan, stats_name: str) -> Change | None:
    """``stats.<stats_name>.step_seconds`` before and after, if it changed (None: the plan
    has no such estimate)."""
    before, after = getattr(old.stats, stats_name), getattr(new.stats, stats_name)
    old_seconds = before.step_seconds if before else None
    new_seconds = after.step_seconds if after else None
    if old_seconds == new_seconds:
        return None
    return Change(f"stats.{stats_name}.step_seconds", old_seconds, new_seconds)


def _rank_changes(old: Plan, new: Plan, field_name: str, absent: int | None = None) -> list[Change]:
    """Ranks whose ``field_name`` differs (None: the rank is not in that plan), a rank in
    one plan only counting as ``absent`` there: with ``absent=0`` a new rank holding no
    host bytes is no host-memory change."""
    before = {r.rank: getattr(r, field_name) for r in old.ranks}
    after = {r.rank: getattr(r, field_name) for r in new.ranks}
    return [
        Change(f"rank {rank}", before.get(rank), after.get(rank))
        for rank in range(max(old.world_size, new.world_size))
        if before.get(rank, absent) != after.get(rank, absent)
    ]


def _named_changes(old: list, new: list) -> tuple[list[str], list[str], list[Change]]:
    """Names added, names removed, and field changes of the rest (tables or inputs)."""
    before, after = {item.name: item for item in old}, {item.name: item for item in new}
    changes = [
        change
        for name, item in after.items()
        if name in before
        for change in _field_changes(name, before[name], item)
    ]
    added = [name for name in after if name not in before]
    return added, [name for name in before if name not in after], changes


def _field_changes(name: str, old: Any, new: Any) -> list[Change]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [
        Change(f"{name}.{key}", before[key], after[key])
        for key in before
        if before[key] != after[key]
    ]


def _layouts(plan: Plan) -> dict[str, tuple]:
    """Per table: its group and its shards as (rank, rows, cols, device)."""
    group_of = plan.groups.group_of()
    shards: dict[str, list[Shard]] = {}
    for shard in plan.shards:
        shards.setdefault(shard.table, []).append(shard)
    return {
        t.name: (
            group_of.get(t.name),
            tuple((s.rank, s.rows, s.cols, s.device) for s in shards.get(t.name, [])),
        )
        for t in plan.tables
    }


def _moved(before: tuple, after: tuple, old: TableSpec, new: TableSpec) -> bool:
    """Group, ranks or devices changed, or ranges changed along a dimension whose size
    stayed."""

    def placement(shards: tuple) -> list[tuple]:
        return [
            (
                rank,
                rows if old.rows == new.rows else None,
                cols if old.width == new.width else None,
                device,
            )
            for rank, rows, cols, device in shards
        ]

    return before[0] != after[0] or placement(before[1]) != placement(after[1])


def _describe(layout: tuple) -> str:
    """A table's placement in a few words: 'rank 3', 'cols 0:8 on rank 0, 8:16 on rank 5';
    a piece in host memory is marked '(host)'."""
    group, shards = layout
    if group == "data_parallel":
        return "data-parallel"
    if group == "row_sliced":
        span = rank_ranges(rank for rank, _, _, _ in shards)  # gaps where ranks hold no rows
        return f"row-sliced over {span} ({_rows_each(shards)} rows each)"
    if len(shards) == 1:
        return f"rank {shards[0][0]}{_on(shards[0][3])}"
    pieces = ", ".join(
        f"{cols[0]}:{cols[1]} on rank {rank}{_on(device)}" for rank, _, cols, device in shards
    )
    return f"cols {pieces}"


def _on(device: str) -> str:
    return " (host)" if device == "host" else ""


def _rows_each(shards: tuple) -> str:
    counts = sorted({rows[1] - rows[0] for _, rows, _, _ in shards})
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"


def _explained(diff: PlanDiff) -> bool:
    return any(
        (
            diff.settings,
            diff.tables_added,
            diff.tables_removed,
            diff.table_changes,
            diff.inputs_added,
            diff.inputs_removed,
            diff.input_changes,
            diff.moved,
            diff.rank_bytes,
            diff.rank_host_bytes,
            diff.step,
            diff.comm,
        )
    )


# --- rendering ------------------------------------------------------------------------


def summary(diff: PlanDiff, old: Plan, new: Plan) -> str:
    """One line: what changed, in order of consequence."""
    if diff.identical:
        return "no differences"
    parts = []
    for change in diff.settings:
        if change.what in ("world_size", "strategy", "parameters.row_reduction"):
            name = change.what.removeprefix("parameters.").replace("_", " ")
            parts.append(f"{name} {change.old} -> {change.new}")
    common = len([t for t in new.tables if t.name not in diff.tables_added])
    if diff.moved:
        parts.append(f"{len(diff.moved)} of {common} tables moved")
    if diff.tables_added:
        parts.append(f"{len(diff.tables_added)} added")
    if diff.tables_removed:
        parts.append(f"{len(diff.tables_removed)} removed")
    if diff.table_changes:
        changed = len({c.what.split(".")[0] for c in diff.table_changes})
        parts.append(f"{changed} table{'s' if changed > 1 else ''} changed")
    if old.stats.max_rank_bytes != new.stats.max_rank_bytes:
        parts.append(
            f"largest rank {human_bytes(old.stats.max_rank_bytes)} -> "
            f"{human_bytes(new.stats.max_rank_bytes)}"
        )
    if diff.step is not None:
        parts.append(f"step estimate {_seconds(diff.step.old)} -> {_seconds(diff.step.new)}")
    elif diff.comm is not None:  # the step is the headline; its communication when it stayed
        parts.append(f"communication time {_seconds(diff.comm.old)} -> {_seconds(diff.comm.new)}")
    if not parts:
        parts.append("plans differ in " + ", ".join(diff.other or ["settings"]))
    return "; ".join(parts)


MARKDOWN_OPEN = 20  # entries a Markdown section shows before it is folded


def render(diff: PlanDiff, old: Plan, new: Plan, fmt: str = "text") -> str:
    """The summary first, then one section per kind of change: text, JSON, or Markdown
    (to paste into the review of a plan change: bold summary, a list per section, long
    sections folded)."""
    if fmt == "json":
        return json.dumps({"summary": summary(diff, old, new), **asdict(diff)}, indent=2)
    headline = summary(diff, old, new)
    lines = [f"**{headline}**" if fmt == "markdown" else headline]
    if diff.identical:
        return lines[0]

    def section(title: str, entries: list[str]) -> None:
        if not entries:
            return
        if fmt != "markdown":
            lines.extend(["", f"{title}:", *(f"  {entry}" for entry in entries)])
            return
        items = [f"- {_code(entry)}" for entry in entries]
        if len(items) <= MARKDOWN_OPEN:
            lines.extend(["", f"**{title}**", "", *items])
        else:
            summary_line = f"<summary>{title} ({len(items):,})</summary>"
            lines.extend(["", "<details>", summary_line, "", *items, "", "</details>"])

    def names(found: list[str]) -> list[str]:
        """Text: one line of names; Markdown: a name per item (long lists fold)."""
        return found if fmt == "markdown" or not found else [", ".join(found)]

    def placed(added: list[str]) -> list[str]:
        """New tables with where they went, a line each; as names alone when many."""
        if fmt != "markdown" and len(added) > MARKDOWN_OPEN:
            return names(added)
        layout = _layouts(new)
        return [f"{name}: {_describe(layout[name])}" for name in added]

    section("settings", [_change(c) for c in diff.settings])
    section("tables added", placed(diff.tables_added))
    section("tables removed", names(diff.tables_removed))
    section("tables changed", [_change(c) for c in diff.table_changes])
    section("inputs added", names(diff.inputs_added))
    section("inputs removed", names(diff.inputs_removed))
    section("inputs changed", [_change(c) for c in diff.input_changes])
    section("moved", [f"{c.what}: {c.old} -> {c.new}" for c in diff.moved])
    section("rank bytes", [_bytes_change(c) for c in diff.rank_bytes])
    section("rank bytes in host memory", [_bytes_change(c) for c in diff.rank_host_bytes])
    estimates = [("step", diff.step), ("communication time", diff.comm)]
    section(
        "estimates per step",
        [f"{name}: {_seconds(c.old)} -> {_seconds(c.new)}" for name, c in estimates if c],
    )
    section("also differs", diff.other)
    return "\n".join(lines)


def _code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks a table name holds: fenced by
    one more backtick than its longest run, padded where it starts or ends with one."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _change(change: Change) -> str:
    return f"{change.what}: {_value(change.old)} -> {_value(change.new)}"


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _bytes_change(change: Change) -> str:
    old, new = change.old, change.new
    text = f"{change.what}: {_size(old)} -> {_size(new)}"
    if old is not None and new is not None:
        delta = new - old
        text += f" ({'+' if delta > 0 else '-'}{human_bytes(abs(delta))})"
    return text


def _size(count: int | None) -> str:
    return "none" if count is None else human_bytes(count)


def _seconds(value: float | None) -> str:
    return "none" if value is None else milliseconds(value)
