"""Rectangles of tables: the pieces a plan places, and which stored pieces overlap a range.

A plan cuts each table into rectangles (row range x column range). Restoring under
another plan, or resharding offline, needs for each new rectangle the old ones that
overlap it and the part they share: an intersection of half-open intervals on rows and
on columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.plan import Plan

Range = tuple[int, int]


@dataclass(frozen=True)
class Block:
    """Rows [r0, r1) and columns [c0, c1) of table ``table``, written by ``rank``."""

    table: str
    rows: Range
    cols: Range
    rank: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]

    @property
    def elements(self) -> int:
        rows, cols = self.shape
        return rows * cols


def plan_blocks(plan: Plan) -> list[Block]:
    """Every non-empty piece the plan places, each once, with the rank that saves it.

    Table-parallel and row-sliced pieces are saved by the rank holding them. A
    data-parallel table is identical on every rank and saved once, the i-th such table
    by rank i modulo the world size, so the writing is spread over the ranks.
    """
    blocks = []
    for i, name in enumerate(plan.groups.data_parallel):
        table = plan.table(name)
        blocks.append(Block(name, (0, table.rows), (0, table.width), i % plan.world_size))
    for shard in plan.shards:
        block = Block(shard.table, tuple(shard.rows), tuple(shard.cols), shard.rank)
        if block.elements:
            blocks.append(block)
    return blocks


class OverlapIndex:
    """The pieces of one table, queried for those overlapping a rectangle.

    Bounds are kept as arrays so one query is a vectorised comparison over all pieces:
    a table row-sliced over a thousand ranks is queried a thousand times when it is
    resharded, and a Python loop over every pair would dominate.
    """

    def __init__(self, rows: Sequence[Range], cols: Sequence[Range]):
        self._bounds = np.array(
            [(r[0], r[1], c[0], c[1]) for r, c in zip(rows, cols, strict=True)], np.int64
        ).reshape(-1, 4)

    def query(self, rows: Range, cols: Range) -> list[tuple[int, Range, Range]]:
        """(piece index, shared rows, shared columns) for every piece overlapping the range."""
        b = self._bounds
        hit = (b[:, 0] < rows[1]) & (b[:, 1] > rows[0]) & (b[:, 2] < cols[1]) & (b[:, 3] > cols[0])
        result = []
        for i in np.flatnonzero(hit):
            r0, r1, c0, c1 = (int(x) for x in b[i])
            result.append(
                (int(i), (max(r0, rows[0]), min(r1, rows[1])), (max(c0, cols[0]), min(c1, cols[1])))
            )
        return result

    def overlapping_pairs(self) -> list[tuple[int, int]]:
        """Pairs (i, j), i < j, of pieces that share at least one element."""
        b = self._bounds
        pairs = []
        for i in range(len(b) - 1):
            rest = b[i + 1 :]
            hit = (
                (rest[:, 0] < b[i, 1]) & (rest[:, 1] > b[i, 0])
                & (rest[:, 2] < b[i, 3]) & (rest[:, 3] > b[i, 2])
            )
            pairs.extend((i, i + 1 + int(j)) for j in np.flatnonzero(hit))
        return pairs
