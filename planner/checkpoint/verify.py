"""What is wrong with a checkpoint, in words: structure, files, and the plan it names.

``structure_problems`` needs only the manifest (every element of every table and slot
held exactly once, every piece inside its table); ``file_problems`` reads the files
(present, sizes, headers, checksums). ``verify`` runs everything, as
``planner checkpoint verify`` does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from planner.checkpoint.blocks import OverlapIndex, plan_blocks
from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.manifest import MANIFEST, WEIGHTS, Manifest, PieceEntry, TableEntry
from planner.checkpoint.npyfile import crc_problem
from planner.checkpoint.store import Checkpoint
from planner.plan import Plan
from planner.reports.folding import fold_names


def structure_problems(manifest: Manifest) -> list[str]:
    """Problems of the manifest alone: unknown tables or slots, ranges outside a table,
    files named twice, elements held twice or by no piece."""
    problems = []
    tables = {t.name: t for t in manifest.tables}
    if len(tables) != len(manifest.tables):
        problems.append("tables: a table name appears twice")
    slots = manifest.slots
    if len(set(slots)) != len(slots):
        problems.append(f"optimizer.slots: {slots[1:]} repeat a name or use {WEIGHTS!r}")
    files = [f.file for f in (*manifest.pieces, *manifest.files)]
    if len(set(files)) != len(files):
        problems.append("pieces: a file is listed twice")
    groups: dict[tuple[str, str], list[PieceEntry]] = defaultdict(list)
    for n, piece in enumerate(manifest.pieces):
        table = tables.get(piece.table)
        where = f"pieces[{n}] ({piece.file})"
        if table is None:
            problems.append(f"{where}: table {piece.table!r} is not in the manifest's tables")
        elif piece.slot not in slots:
            problems.append(f"{where}: slot {piece.slot!r} is not one of {slots}")
        elif not _inside(piece, table):
            problems.append(
                f"{where}: rows {piece.rows} x columns {piece.cols} are empty or outside "
                f"table {table.name!r} ({table.rows} x {table.width})"
            )
        else:
            groups[piece.table, piece.slot].append(piece)
    for table in manifest.tables:
        for slot in slots:
            problems += _coverage_problems(table, slot, groups.get((table.name, slot), []))
    return problems


def _inside(piece: PieceEntry, table: TableEntry) -> bool:
    (r0, r1), (c0, c1) = piece.rows, piece.cols
    return 0 <= r0 < r1 <= table.rows and 0 <= c0 < c1 <= table.width


def _coverage_problems(table: TableEntry, slot: str, pieces: list[PieceEntry]) -> list[str]:
    """Disjoint pieces whose areas add up to the table's hold each element exactly once."""
    what = f"table {table.name!r} {slot}"
    index = OverlapIndex([p.rows for p in pieces], [p.cols for p in pieces])
    problems = [
        f"{what}: {pieces[i].file} and {pieces[j].file} hold the same elements "
        f"(a duplicated piece)"
        for i, j in index.overlapping_pairs()
    ]
    total = table.rows * table.width
    held = sum((p.rows[1] - p.rows[0]) * (p.cols[1] - p.cols[0]) for p in pieces)
    if not problems and held != total:
        problems.append(f"{what}: {total - held} of {total} elements are in no piece (missing)")
    return problems


def file_problems(checkpoint: Checkpoint) -> list[str]:
    """Every listed file present, of the recorded size and checksums; piece headers right;
    no file the manifest does not list."""
    manifest = checkpoint.manifest
    block = manifest.checksum_block_bytes
    known = {t.name for t in manifest.tables}
    views = {}
    problems = []
    for entry in (*manifest.files, *manifest.pieces):
        problem = crc_problem(checkpoint.path / entry.file, entry.bytes, entry.crc32, block)
        if problem is None and isinstance(entry, PieceEntry) and entry.table in known:
            key = entry.table, entry.slot
            views.setdefault(key, checkpoint.view(*key))
            try:
                views[key].offset(entry)
            except CheckpointError as exc:
                problem = str(exc)
        if problem:
            problems.append(problem)
    listed = {f.file for f in (*manifest.files, *manifest.pieces)} | {MANIFEST}
    for folder, _, names in os.walk(checkpoint.path):
        for name in names:
            relative = Path(folder, name).relative_to(checkpoint.path).as_posix()
            if relative not in listed:
                problems.append(f"{checkpoint.path / relative}: not listed in the manifest")
    return problems


def table_problems(manifest: Manifest, plan: Plan, source: str) -> list[str]:
    """How the plan's tables differ from the checkpoint's (names, shapes, dtypes)."""
    saved = {t.name: t for t in manifest.tables}
    planned = {t.name: t for t in plan.tables}
    problems = []
    missing = [name for name in planned if name not in saved]
    extra = [name for name in saved if name not in planned]
    if missing:
        problems.append(f"{source}: tables not in the checkpoint: {fold_names(missing)}")
    if extra:
        problems.append(f"{source}: the checkpoint's tables not in the plan: {fold_names(extra)}")
    for name in planned.keys() & saved.keys():
        want, have = planned[name], saved[name]
        if (want.rows, want.width) != (have.rows, have.width):
            problems.append(
                f"{source}: table {name!r} is {want.rows} x {want.width} in the plan but "
                f"{have.rows} x {have.width} in the checkpoint"
            )
        if want.dtype != have.dtype:
            problems.append(
                f"{source}: table {name!r} is {want.dtype} in the plan but {have.dtype} in "
                f"the checkpoint"
            )
    return problems


def plan_file_problems(checkpoint: Checkpoint) -> list[str]:
    """plan.json readable, with the manifest's tables, and placing exactly its pieces."""
    try:
        plan = checkpoint.plan()
    except CheckpointError as exc:
        return [str(exc)]
    manifest = checkpoint.manifest
    source = str(checkpoint.path / "plan.json")
    problems = table_problems(manifest, plan, source)
    if plan.fingerprint != manifest.fingerprint or plan.world_size != manifest.world_size:
        problems.append(f"{source}: not the plan the manifest was written under")
    placed = {(b.table, b.rows, b.cols) for b in plan_blocks(plan)}
    stored = {(p.table, tuple(p.rows), tuple(p.cols)) for p in manifest.pieces if p.slot == WEIGHTS}
    if not problems and placed != stored:
        problems.append(
            f"{source}: the weight pieces are not the plan's pieces ({len(stored - placed)} "
            f"not in the plan, {len(placed - stored)} of the plan's missing)"
        )
    return problems


def verify(path: str | Path) -> list[str]:
    """Every problem of the checkpoint at ``path``; raises CheckpointError when it has no
    readable manifest (nothing else can be checked)."""
    checkpoint = Checkpoint.open(path)
    return (
        structure_problems(checkpoint.manifest)
        + file_problems(checkpoint)
        + plan_file_problems(checkpoint)
    )
