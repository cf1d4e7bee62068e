"""Slicing, strategies, merging and fusing, one hand-worked example at a time.

Every expected value below is worked out by hand from the placement rules (the
working is in the comments), not produced by running the planner.
"""

from __future__ import annotations

import pytest

from planner.placement.assignment import ASSIGNMENTS, basic, memory_balanced, memory_optimized
from planner.placement.layout import Piece, fuse, fusion_key, merge_slices, rank_layout
from planner.placement.slicing import (
    automatic_column_threshold,
    column_slice_count,
    ranges_from_sizes,
    split_evenly,
)
from planner.spec import TableSpec

# --- automatic_column_threshold -------------------------------------------------------


def test_automatic_threshold_one_1x2_table_on_7_ranks_is_floored_at_zero():
    # sizes [2], 7 ranks; each step pops the largest piece p, threshold = p - 1, adds p//2 twice:
    #   [2]         -> pop 2, thr 1,  [1, 1]
    #   [1, 1]      -> pop 1, thr 0,  [0, 0, 1]
    #   [0, 0, 1]   -> pop 1, thr 0,  [0, 0, 0, 0]
    #   [0, 0, 0, 0] -> pop 0, thr -1, 5 pieces; -1 again for 6 and 7 pieces.
    # Upstream keeps -1, and "while size > -1: size /= 2" never ends. Floored: 0.
    assert automatic_column_threshold([2], 7) == 0


def test_automatic_threshold_one_table_two_ranks():
    # [10] -> pop 10, thr 9, [5, 5]: 2 pieces for 2 ranks.
    assert automatic_column_threshold([10], 2) == 9


def test_automatic_threshold_several_tables():
    # sorted [30, 40, 100], 5 ranks:
    #   pop 100 -> thr 99, [30, 40, 50, 50]      (4 pieces)
    #   pop 50  -> thr 49, [25, 25, 30, 40, 50]  (5 pieces, stop)
    assert automatic_column_threshold([100, 40, 30], 5) == 49


def test_automatic_threshold_odd_sizes_use_floor_halves():
    # [7] on 3 ranks: pop 7 -> thr 6, [3, 3]; pop 3 -> thr 2, [1, 1, 3]: 3 pieces.
    assert automatic_column_threshold([7], 3) == 2


def test_automatic_threshold_keeps_halving_the_current_largest_piece():
    # [8, 3] on 4 ranks: pop 8 -> thr 7, [3, 4, 4]; pop 4 -> thr 3, [2, 2, 3, 4].
    assert automatic_column_threshold([3, 8], 4) == 3


@pytest.mark.parametrize(("sizes", "world"), [([5, 6, 7], 3), ([5, 6, 7], 2), ([9], 1)])
def test_automatic_threshold_none_when_tables_cover_the_ranks(sizes, world):
    assert automatic_column_threshold(sizes, world) is None


def test_automatic_threshold_does_not_modify_its_argument():
    sizes = [100, 40, 30]
    automatic_column_threshold(sizes, 5)
    assert sizes == [100, 40, 30]


# --- column_slice_count ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elements", "width", "threshold", "world", "expected"),
    [
        # 100 > 30, > 60, <= 120: 4 slices; caps 8 ranks and 10 columns do not bite.
        (100, 10, 30, 8, 4),
        # 100 > 50, <= 100: 2 slices (a slice of exactly the threshold is fine).
        (100, 10, 50, 8, 2),
        # 100 <= 100: one slice, the table is not cut.
        (100, 10, 100, 8, 1),
        # 100 > 12, 24, 48, 96; <= 192: 16 wanted, capped at the 8 ranks.
        (100, 10, 12, 8, 8),
        # 1000 / 10 needs 128 slices; capped at 64 ranks, then at the 3 columns.
        (1000, 3, 10, 64, 3),
        # 4 slices wanted (100 > 30, 60), but only 3 ranks: not rounded to a power of two.
        (100, 10, 30, 3, 3),
        # no threshold: never sliced.
        (10**9, 256, None, 64, 1),
        # threshold 0: as many slices as the ranks and columns allow.
        (100, 10, 0, 4, 4),
        (100, 10, 0, 64, 10),
        (1, 1, 0, 64, 1),
        # one rank: never more than one slice.
        (100, 10, 0, 1, 1),
        (100, 10, 7, 1, 1),
    ],
)
def test_column_slice_count(elements, width, threshold, world, expected):
    assert column_slice_count(elements, width, threshold, world) == expected


def test_column_slice_count_is_the_smallest_power_of_two_when_uncapped():
    # 2**20 elements, threshold 1000: 2**20 / 2**10 = 1024 > 1000, / 2**11 = 512 <= 1000.
    assert column_slice_count(2**20, 4096, 1000, 4096) == 2**11


# --- split_evenly / ranges_from_sizes --------------------------------------------------


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        (10, 3, [4, 3, 3]),  # 10 = 3*3 + 1: the first part takes the remainder
        (11, 4, [3, 3, 3, 2]),  # 11 = 4*2 + 3
        (9, 3, [3, 3, 3]),
        (2, 5, [1, 1, 0, 0, 0]),  # fewer than parts: trailing parts empty
        (7, 1, [7]),
    ],
)
def test_split_evenly(total, parts, expected):
    assert split_evenly(total, parts) == expected
    assert sum(expected) == total


def test_ranges_from_sizes():
    assert ranges_from_sizes([4, 3, 3]) == [(0, 4), (4, 7), (7, 10)]
    assert ranges_from_sizes([1, 1, 0, 0]) == [(0, 1), (1, 2), (2, 2), (2, 2)]


# --- strategies ------------------------------------------------------------------------

# Six slices: table 0 was cut in two (60 and 10 elements), tables 2 and 1 tie at 30.
SIZES = [60, 10, 30, 30, 50, 20]
OWNERS = [0, 0, 1, 2, 3, 4]


def test_basic_round_robin_in_table_order():
    # slice i -> rank i mod 2: ranks get slices 0,2,4 and 1,3,5.
    assert basic(SIZES, OWNERS, 2) == [[0, 1, 3], [0, 2, 4]]
    # 3 ranks: slices 0,3 / 1,4 / 2,5.
    assert basic(SIZES, OWNERS, 3) == [[0, 2], [0, 3], [1, 4]]


def test_basic_more_ranks_than_slices_leaves_ranks_empty():
    assert basic([5, 5], [0, 1], 4) == [[0], [1], [], []]


def test_memory_balanced_snake_with_tie():
    # (size, table) descending: (60,0) (50,3) (30,2) (30,1) (20,4) (10,0)
    # -> order [0, 3, 2, 1, 4, 0]; the 30s tie and table 2 (higher index) goes first.
    # span 2W = 4: rank 0 takes positions 0, 4 and then 3: [0, 4] + [1]
    #              rank 1 takes positions 1, 5 and then 2: [3, 0] + [2]
    assert memory_balanced(SIZES, OWNERS, 2) == [[0, 4, 1], [3, 0, 2]]


def test_memory_balanced_three_ranks():
    # sizes 7..1 for tables 0..6: order [0..6]; span 6.
    # rank 0: positions 0, 6 then 5 -> [0, 6, 5]; rank 1: 1 then 4; rank 2: 2 then 3.
    sizes = [7, 6, 5, 4, 3, 2, 1]
    owners = list(range(7))
    assert memory_balanced(sizes, owners, 3) == [[0, 6, 5], [1, 4], [2, 3]]


def test_memory_balanced_equal_sizes_order_by_table_descending():
    # all 5: order [3, 2, 1, 0]; span 4: rank 0 = pos 0 + pos 3, rank 1 = pos 1 + pos 2.
    assert memory_balanced([5, 5, 5, 5], [0, 1, 2, 3], 2) == [[3, 0], [2, 1]]


def test_memory_optimized_with_equal_final_loads():
    # slices leave largest first: (60,0) (50,3) (30,2) (30,1) (20,4) (10,0).
    # keys (load, owners):   A = (0, [])          B = (0, [])
    #   (60,0) -> A (60, [0])       B (0, [])
    #   (50,3) -> B (50, [3])
    #   (30,2) -> B (80, [3, 2])    (50 < 60)
    #   (30,1) -> A (90, [0, 1])    (60 < 80)
    #   (20,4) -> B (100, [3, 2, 4])
    #   (10,0) -> A (100, [0, 1, 0])
    # both end at 100; [0, 1, 0] < [3, 2, 4] so A is rank 0.
    assert memory_optimized(SIZES, OWNERS, 2) == [[0, 1, 0], [3, 2, 4]]


def test_memory_optimized_ties_on_load_go_by_owner_list():
    # four slices of 5; pop order (5,3) (5,2) (5,1) (5,0).
    #   (5,3) -> (5, [3]); (5,2) -> the other empty rank: (5, [2])
    #   (5,1) -> smallest key (5, [2]) -> (10, [2, 1])
    #   (5,0) -> (5, [3]) -> (10, [3, 0])
    # final ascending keys: (10, [2, 1]) then (10, [3, 0]).
    assert memory_optimized([5, 5, 5, 5], [0, 1, 2, 3], 2) == [[2, 1], [3, 0]]


def test_memory_optimized_ranks_end_ordered_by_load():
    # (9,0) -> A; (4,1) -> B (4); (3,2) -> B (7); (1,3) -> B (8).
    # keys (9, [0]) and (8, [1, 2, 3]): the lighter rank comes first.
    assert memory_optimized([9, 4, 3, 1], [0, 1, 2, 3], 2) == [[1, 2, 3], [0]]


def test_memory_optimized_more_ranks_than_slices():
    # (3,1) -> empty rank; (2,0) -> another empty rank; third rank stays (0, []).
    assert memory_optimized([2, 3], [0, 1], 3) == [[], [0], [1]]


def test_strategy_registry():
    names = ("basic", "memory_balanced", "memory_optimized")
    assert [ASSIGNMENTS[name] for name in names] == [basic, memory_balanced, memory_optimized]
    assert len(ASSIGNMENTS) == 3


# --- merge_slices ----------------------------------------------------------------------


def _pieces(per_rank):
    return [[(p.table, p.width, p.cols) for p in pieces] for pieces in per_rank]


def test_merge_slices_non_adjacent_repeats_on_one_rank():
    # The memory_optimized result above: rank 0 holds table 0 twice, apart.
    # widths: table 0 slices [3, 2]; tables 1..4 one slice each.
    widths = {0: [3, 2], 1: [4], 2: [1], 3: [5], 4: [2]}
    merged = merge_slices([[0, 1, 0], [3, 2, 4]], widths)
    # rank 0: table 0 first gets slice 0 (3 cols), then slice 1 (2 cols): one 5-wide piece,
    # kept at the position of its first appearance.
    assert _pieces(merged) == [
        [(0, 5, (0, 5)), (1, 4, (0, 4))],
        [(3, 5, (0, 5)), (2, 1, (0, 1)), (4, 2, (0, 2))],
    ]


def test_merge_slices_uneven_merge_and_column_ranges_in_rank_order():
    # table 0: 6 columns in 4 slices [2, 2, 1, 1]; table 1: 5 columns in [3, 2].
    # appearances in rank-major order:
    #   rank 0 [0, 1, 0]: table 0 slices 0 and 1 (2 + 2 = 4 cols), table 1 slice 0 (3)
    #   rank 1 [1, 0]:    table 1 slice 1 (2), table 0 slice 2 (1)
    #   rank 2 [0]:       table 0 slice 3 (1)
    # columns follow rank order: table 0 -> (0,4) (4,5) (5,6); table 1 -> (0,3) (3,5).
    widths = {0: [2, 2, 1, 1], 1: [3, 2]}
    merged = merge_slices([[0, 1, 0], [1, 0], [0]], widths)
    assert _pieces(merged) == [
        [(0, 4, (0, 4)), (1, 3, (0, 3))],
        [(1, 2, (3, 5)), (0, 1, (4, 5))],
        [(0, 1, (5, 6))],
    ]


def test_merge_slices_merged_width_differs_from_any_single_slice():
    # 8 columns in 3 slices [3, 3, 2]; rank 1 gets slices 1 and 2: 5 columns (3, 8).
    merged = merge_slices([[0], [0, 0]], {0: [3, 3, 2]})
    assert _pieces(merged) == [[(0, 3, (0, 3))], [(0, 5, (3, 8))]]


def test_merge_slices_later_rank_gets_earlier_columns_when_listed_first():
    # rank order decides columns, not the order slices were dealt: rank 0 lists table 0
    # last but still gets its first slice.
    merged = merge_slices([[1, 0], [0]], {0: [2, 2], 1: [7]})
    assert _pieces(merged) == [[(1, 7, (0, 7)), (0, 2, (0, 2))], [(0, 2, (2, 4))]]


def test_merge_slices_empty_rank():
    merged = merge_slices([[0], []], {0: [4]})
    assert _pieces(merged) == [[(0, 4, (0, 4))], []]


# --- fuse ------------------------------------------------------------------------------


def _table(name, rows, width=4, **kw):
    return TableSpec(name=name, rows=rows, width=width, **kw)


FUSE_TABLES = [
    _table("t0", 10, combiner="sum"),
    _table("t1", 20, combiner="sum"),  # same key as t0: fuses at row 10
    _table("t2", 5, combiner="mean"),  # other combiner
    _table("t3", 7, combiner="sum", dtype="float16"),  # other dtype
    _table("t4", 3, combiner="sum", initializer="zeros"),  # other initializer
    _table("t5", 6, width=2, combiner="sum"),  # other width
    _table("t6", 8, combiner="sum"),  # joins t0's weight again, at row 30
    _table("t7", 9, combiner="sum", dtype="float16"),  # joins t3's weight at row 7
]


def _fused(weights):
    return [([m.table for m in w.members], w.offsets, w.rows, w.width) for w in weights]


def test_fuse_groups_by_width_combiner_dtype_and_initializer():
    pieces = [Piece(table=i, width=t.width) for i, t in enumerate(FUSE_TABLES)]
    weights = fuse(pieces, FUSE_TABLES)
    assert _fused(weights) == [
        ([0, 1, 6], [0, 10, 30], 38, 4),  # 10 + 20 + 8 rows
        ([2], [0], 5, 4),
        ([3, 7], [0, 7], 16, 4),  # 7 + 9 rows
        ([4], [0], 3, 4),
        ([5], [0], 6, 2),
    ]


def test_fuse_does_not_fuse_different_dtypes():
    tables = [_table("a", 10), _table("b", 20, dtype="bfloat16"), _table("c", 30)]
    weights = fuse([Piece(0, 4), Piece(1, 4), Piece(2, 4)], tables)
    # upstream compares width and combiner only and would stack all three
    assert _fused(weights) == [([0, 2], [0, 10], 40, 4), ([1], [0], 20, 4)]


def test_fuse_does_not_fuse_different_initializers():
    normal = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}
    tables = [_table("a", 10), _table("b", 20, initializer=normal), _table("c", 30)]
    weights = fuse([Piece(0, 4), Piece(1, 4), Piece(2, 4)], tables)
    assert _fused(weights) == [([0, 2], [0, 10], 40, 4), ([1], [0], 20, 4)]


def test_fuse_same_initializer_written_in_another_key_order():
    one = {"class_name": "RandomNormal", "config": {"stddev": 0.01, "mean": 0.0}}
    two = {"config": {"mean": 0.0, "stddev": 0.01}, "class_name": "RandomNormal"}
    tables = [_table("a", 10, initializer=one), _table("b", 20, initializer=two)]
    assert _fused(fuse([Piece(0, 4), Piece(1, 4)], tables)) == [([0, 1], [0, 10], 30, 4)]
    assert fusion_key(tables[0], 4) == fusion_key(tables[1], 4)


def test_fuse_uses_the_piece_width_not_the_table_width():
    # a 3-column piece of an 8-wide table fuses with a 3-wide table; the other 5-column
    # piece of a 5-wide-sliced table stays apart.
    tables = [_table("wide", 10, width=8), _table("narrow", 20, width=3)]
    weights = fuse([Piece(0, 3, (0, 3)), Piece(1, 3, (0, 3))], tables)
    assert _fused(weights) == [([0, 1], [0, 10], 30, 3)]
    weights = fuse([Piece(0, 5, (3, 8)), Piece(1, 3, (0, 3))], tables)
    assert _fused(weights) == [([0], [0], 10, 5), ([1], [0], 20, 3)]


def test_fuse_none_combiner_fuses_with_none_only():
    tables = [_table("a", 1), _table("b", 2, combiner="sum"), _table("c", 3)]
    weights = fuse([Piece(0, 4), Piece(1, 4), Piece(2, 4)], tables)
    assert _fused(weights) == [([0, 2], [0, 1], 4, 4), ([1], [0], 2, 4)]


def test_rank_layout_inputs_by_piece_order_then_input_order():
    # pieces in order t2, t0, t1 (t0 and t1 fuse: t0 at row 0, t1 at row 10).
    # inputs: 0 and 3 read t0 (shared), 1 reads t2, 2 reads t1, 4 reads nothing here.
    tables = [_table("t0", 10), _table("t1", 20), _table("t2", 5, combiner="mean")]
    pieces = [Piece(2, 4), Piece(0, 4), Piece(1, 4)]
    layout = rank_layout(pieces, tables, {0: [0, 3], 1: [2], 2: [1]})
    # weights: [t2] (index 0), [t0, t1] (index 1)
    assert _fused(layout.weights) == [([2], [0], 5, 4), ([0, 1], [0, 10], 30, 4)]
    # (input, weight, row offset): t2's input 1, then t0's inputs 0 and 3, then t1's input 2
    assert layout.inputs == [(1, 0, 0), (0, 1, 0), (3, 1, 0), (2, 1, 10)]


def test_rank_layout_table_without_inputs_still_gets_a_weight():
    tables = [_table("t0", 10), _table("t1", 20, width=2)]
    layout = rank_layout([Piece(0, 4), Piece(1, 2)], tables, {1: [0]})
    assert _fused(layout.weights) == [([0], [0], 10, 4), ([1], [0], 20, 2)]
    assert layout.inputs == [(0, 1, 0)]
