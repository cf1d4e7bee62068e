"""What a checkpoint holds, per table and per rank, for ``planner checkpoint inspect``."""

from __future__ import annotations

from collections import defaultdict

from planner.checkpoint.manifest import WEIGHTS
from planner.checkpoint.store import Checkpoint
from planner.reports.text_table import table_lines
from planner.units import human_bytes


def summarize(checkpoint: Checkpoint) -> dict:
    """Plain data (JSON-ready): the plan, the optimizer, bytes per table and per rank."""
    manifest = checkpoint.manifest
    per_table: dict[str, dict] = {
        t.name: {"name": t.name, "group": t.group, "rows": t.rows, "width": t.width,
                 "dtype": t.dtype, "pieces": 0, "weight_bytes": 0, "slot_bytes": 0}
        for t in manifest.tables
    }
    per_rank: dict[int, dict] = defaultdict(lambda: {"pieces": 0, "bytes": 0})
    for piece in manifest.pieces:
        row = per_table.get(piece.table)
        if row is not None:
            row["pieces"] += piece.slot == WEIGHTS
            row["weight_bytes" if piece.slot == WEIGHTS else "slot_bytes"] += piece.bytes
        per_rank[piece.rank]["pieces"] += 1
        per_rank[piece.rank]["bytes"] += piece.bytes
    other = sum(f.bytes for f in manifest.files)
    return {
        "path": str(checkpoint.path),
        "format_version": manifest.format_version,
        "world_size": manifest.world_size,
        "fingerprint": manifest.fingerprint,
        "optimizer": manifest.optimizer.model_dump() if manifest.optimizer else None,
        "files": len(manifest.pieces) + len(manifest.files) + 1,
        "total_bytes": sum(p.bytes for p in manifest.pieces) + other,
        "other_bytes": other,
        "tables": list(per_table.values()),
        "ranks": [{"rank": r, **per_rank[r]} for r in sorted(per_rank)],
    }


def render(summary: dict) -> str:
    """Aligned text: a header, one row per table, one row per rank that wrote pieces."""
    optimizer = summary["optimizer"]
    state = (
        f"{optimizer['name']} (slots {', '.join(optimizer['slots']) or 'none'}), "
        f"{optimizer['iterations']} steps"
        if optimizer
        else "none (weights only)"
    )
    fingerprint = summary["fingerprint"].split(":")[-1]
    lines = [
        f"checkpoint {summary['path']} (format {summary['format_version']})",
        f"plan: {summary['world_size']} ranks, spec fingerprint {fingerprint[:12]}",
        f"optimizer state: {state}",
        f"size: {human_bytes(summary['total_bytes'])} in {summary['files']} files",
        "",
    ]
    header = ["table", "group", "shape", "dtype", "pieces", "weights", "optimizer"]
    rows = [
        [t["name"], t["group"], f"{t['rows']} x {t['width']}", t["dtype"], str(t["pieces"]),
         human_bytes(t["weight_bytes"]), human_bytes(t["slot_bytes"])]
        for t in summary["tables"]
    ]
    lines += table_lines(header, rows)
    lines.append("")
    lines += table_lines(
        ["rank", "files", "bytes"],
        [[str(r["rank"]), str(r["pieces"]), human_bytes(r["bytes"])] for r in summary["ranks"]],
    )
    return "\n".join(lines)
