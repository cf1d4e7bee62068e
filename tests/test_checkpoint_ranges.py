"""Which pieces a plan saves, and which stored pieces a range overlaps (hand-worked)."""

from __future__ import annotations

from checkpoint_data import MIXED, plan_of
from shared import SMALL

from planner import make_plan, spec_from_dict
from planner.checkpoint.blocks import Block, OverlapIndex, plan_blocks


def test_ranges_are_half_open():
    index = OverlapIndex([(0, 10)], [(0, 4)])
    assert index.query((10, 20), (0, 4)) == []  # touching is not overlapping
    assert index.query((0, 0), (0, 4)) == []  # an empty range overlaps nothing
    assert index.query((3, 4), (0, 100)) == [(0, (3, 4), (0, 4))]
    assert index.query((5, 15), (3, 9)) == [(0, (5, 10), (3, 4))]


def test_query_returns_the_shared_rectangle_of_each_piece():
    # A: rows 0-10 x cols 0-4, B: rows 0-10 x cols 4-8, C: rows 10-20 x cols 0-8, D far away.
    index = OverlapIndex(
        [(0, 10), (0, 10), (10, 20), (20, 30)], [(0, 4), (4, 8), (0, 8), (0, 8)]
    )
    hits = index.query((5, 15), (2, 6))
    assert hits == [(0, (5, 10), (2, 4)), (1, (5, 10), (4, 6)), (2, (10, 15), (2, 6))]
    # 5x2 + 5x2 + 5x4 = 40 = the query's 10 rows x 4 columns
    assert sum((r[1] - r[0]) * (c[1] - c[0]) for _, r, c in hits) == 40
    assert index.query((30, 40), (0, 8)) == []
    assert index.query((9, 10), (3, 5)) == [(0, (9, 10), (3, 4)), (1, (9, 10), (4, 5))]


def test_overlapping_pairs_finds_duplicates_only():
    index = OverlapIndex([(0, 10), (0, 10), (5, 6), (10, 12)], [(0, 4), (4, 8), (3, 4), (0, 8)])
    assert index.overlapping_pairs() == [(0, 2)]  # (5,6)x(3,4) lies inside the first piece
    assert OverlapIndex([], []).overlapping_pairs() == []


def test_blocks_of_the_small_plan():
    # SMALL on 2 ranks, basic: a and c on rank 0, b and d on rank 1, each whole.
    blocks = plan_blocks(make_plan(spec_from_dict(SMALL)))
    assert sorted(blocks, key=lambda b: b.table) == [
        Block("a", (0, 100), (0, 8), 0),
        Block("b", (0, 50), (0, 8), 1),
        Block("c", (0, 10), (0, 4), 0),
        Block("d", (0, 20), (0, 8), 1),
    ]


def test_blocks_of_mixed_groups_on_three_ranks():
    plan = plan_of({**MIXED, "tables": MIXED["tables"] + [
        {"name": "dp2", "rows": 2, "width": 4, "combiner": "sum"},
    ]}, 3, "memory_optimized")
    blocks = plan_blocks(plan)
    by_table = {}
    for b in blocks:
        by_table.setdefault(b.table, []).append(b)
    # data-parallel tables once each, by rank 0, then rank 1 (the i-th by rank i mod 3)
    assert by_table["dp"] == [Block("dp", (0, 6), (0, 4), 0)]
    assert by_table["dp2"] == [Block("dp2", (0, 2), (0, 4), 1)]
    # big row-sliced: 60 rows over 3 ranks
    assert sorted(by_table["big"], key=lambda b: b.rank) == [
        Block("big", (0, 20), (0, 4), 0),
        Block("big", (20, 40), (0, 4), 1),
        Block("big", (40, 60), (0, 4), 2),
    ]
    # every element of every table exactly once
    for t in plan.tables:
        assert sum(b.elements for b in by_table[t.name]) == t.rows * t.width
