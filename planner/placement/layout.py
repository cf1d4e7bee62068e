"""Step 4: turn each rank's slices into local weights and a local input order.

Slices of one table that land on one rank are merged into one piece. Pieces of equal
width, combiner, dtype and initializer are then fused into one local weight, stacked
by rows, so one lookup serves several tables. A piece in host memory (CPU offload,
``planner.placement.offload``) is a weight of its own, as upstream keeps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from planner.spec import TableSpec


@dataclass
class Piece:
    """A table's columns held by one rank after merging its slices."""

    table: int
    width: int
    cols: tuple[int, int] = (0, 0)
    on_host: bool = False


@dataclass
class FusedWeight:
    """Pieces stacked by rows into one weight; ``offsets[i]`` is member i's first row."""

    key: tuple
    width: int
    members: list[Piece] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    rows: int = 0
    on_host: bool = False


@dataclass
class RankLayout:
    """One rank's table-parallel part."""

    pieces: list[Piece]
    weights: list[FusedWeight]
    inputs: list[tuple[int, int, int]]  # (input index, weight index, row offset)


def merge_slices(
    assignment: list[list[int]], slice_widths: dict[int, list[int]]
) -> list[list[Piece]]:
    """Hand out each table's slices in rank order, merging repeats on one rank.

    The j-th time a table appears (rank 0's list first) it receives its j-th slice. A
    table's pieces then cover consecutive column ranges in rank order, each as wide as
    the slices merged into it.
    """
    next_slice = dict.fromkeys(slice_widths, 0)
    per_rank: list[list[Piece]] = []
    for owners in assignment:
        pieces: dict[int, Piece] = {}
        for table in owners:
            width = slice_widths[table][next_slice[table]]
            next_slice[table] += 1
            if table in pieces:
                pieces[table].width += width
            else:
                pieces[table] = Piece(table=table, width=width)
        per_rank.append(list(pieces.values()))
    start = dict.fromkeys(slice_widths, 0)
    for held in per_rank:
        for piece in held:
            piece.cols = (start[piece.table], start[piece.table] + piece.width)
            start[piece.table] += piece.width
    return per_rank


def fusion_key(table: TableSpec, width: int) -> tuple:
    """Pieces fuse only when one weight variable can hold them all exactly.

    Upstream compares width and combiner only, and so fuses tables whose initializers
    or dtypes differ; both are part of the key here.
    """
    return weight_key(width, table.combiner, table.dtype, table.initializer)


def weight_key(width: int, combiner: str | None, dtype: str, initializer: object) -> tuple:
    """What makes two weights interchangeable; initializers compare by canonical JSON."""
    return (width, combiner, dtype, json.dumps(initializer, sort_keys=True))


def fuse(pieces: list[Piece], tables: list[TableSpec]) -> list[FusedWeight]:
    """Each piece joins the first earlier weight with its key, else starts a new one.

    Pieces in host memory join none and none joins them (upstream's rule): a weight lives
    on one device, and each offloaded piece is its own variable.
    """
    weights: list[FusedWeight] = []
    for piece in pieces:
        table = tables[piece.table]
        key = fusion_key(table, piece.width)
        target = (
            None
            if piece.on_host
            else next((w for w in weights if w.key == key and not w.on_host), None)
        )
        if target is None:
            target = FusedWeight(key=key, width=piece.width, on_host=piece.on_host)
            weights.append(target)
        target.members.append(piece)
        target.offsets.append(target.rows)
        target.rows += table.rows
    return weights


def inputs_by_table(input_ids: list[int], input_tables: list[int]) -> dict[int, list[int]]:
    """Table index -> the indices of ``input_ids`` that read it, ascending."""
    readers: dict[int, list[int]] = {}
    for input_index in input_ids:
        readers.setdefault(input_tables[input_index], []).append(input_index)
    return readers


def rank_layout(
    pieces: list[Piece], tables: list[TableSpec], readers: dict[int, list[int]]
) -> RankLayout:
    """Fuse a rank's pieces and list its inputs: by local piece order, then input order.

    ``readers`` maps a table index to its table-parallel input indices, ascending
    (``inputs_by_table``).
    """
    weights = fuse(pieces, tables)
    location = {
        member.table: (w_index, weight.offsets[m_index])
        for w_index, weight in enumerate(weights)
        for m_index, member in enumerate(weight.members)
    }
    inputs = [
        (input_index, *location[piece.table])
        for piece in pieces
        for input_index in readers.get(piece.table, ())
    ]
    return RankLayout(pieces=pieces, weights=weights, inputs=inputs)
