"""Whole plans for small specs, worked out by hand, one placement rule at a time.

Element counts are rows x width; bytes are elements x 4 for float32 and x 2 for
float16. The working for each expected value is in the comments.
"""

from __future__ import annotations

import pytest
from shared import time_limit

from planner.plan import Plan
from planner.planning import make_plan
from planner.spec import spec_from_dict
from planner.validation import plan_problems


def plan_for(tables, world_size, inputs=None, **params) -> Plan:
    raw = {"world_size": world_size, "tables": tables, **params}
    if inputs is not None:
        raw["inputs"] = [{"name": name, "table": table} for name, table in inputs]
    plan = make_plan(spec_from_dict(raw))
    assert plan_problems(plan) == []
    return plan


def t(name, rows, width, **kw):
    return {"name": name, "rows": rows, "width": width, **kw}


def shards(plan):
    return [(s.table, s.rank, s.rows, s.cols) for s in plan.shards]


def weights(plan, rank):
    """Each local weight as (rows, width, [(table, row_offset, rows, cols), ...])."""
    return [
        (w.rows, w.width, [(m.table, m.row_offset, m.rows, m.cols) for m in w.members])
        for w in plan.ranks[rank].table_parallel_weights
    ]


def inputs(plan, rank):
    return [(i.input, i.weight, i.row_offset) for i in plan.ranks[rank].table_parallel_inputs]


def groups(plan):
    g = plan.groups
    return g.data_parallel, g.table_parallel, g.row_sliced


def input_groups(plan):
    g = plan.input_groups
    return g.data_parallel, g.table_parallel, g.row_sliced


def per_rank(plan):
    return [(r.elements, r.bytes) for r in plan.ranks]


def outputs(plan):
    return {o.input: o.pieces for o in plan.exchange.outputs}


def check_stats(plan, per_rank_bytes, total_elements, total_bytes):
    assert [r.bytes for r in plan.ranks] == per_rank_bytes
    mean = sum(per_rank_bytes) / len(per_rank_bytes)
    assert plan.stats.total_elements == total_elements
    assert plan.stats.total_bytes == total_bytes
    assert plan.stats.max_rank_bytes == max(per_rank_bytes)
    assert plan.stats.mean_rank_bytes == pytest.approx(mean)
    assert plan.stats.imbalance == pytest.approx(max(per_rank_bytes) / mean)


def rebuilt_columns(plan, input_name):
    """Columns each received output of ``input_name`` carries, in assembly order."""
    flat = []
    for rank in plan.ranks:
        for local in rank.table_parallel_inputs:
            weight = rank.table_parallel_weights[local.weight]
            member = next(m for m in weight.members if m.row_offset == local.row_offset)
            flat.append((local.input, member.table, member.cols))
    pieces = outputs(plan)[input_name]
    assert all(flat[k][0] == input_name for k in pieces)
    return [flat[k][2] for k in pieces]




# --- strategies, no slicing -----------------------------------------------------------

FOUR = [t("a", 100, 8), t("b", 50, 8), t("c", 30, 4), t("d", 20, 8)]


def test_basic_round_robin_and_fusing():
    # 4 tables on 2 ranks: no automatic slicing (2 <= 4). Round-robin: a, c | b, d.
    # rank 0: a (8 wide) and c (4 wide) stay apart; rank 1: b and d (both 8) fuse, d at 50.
    plan = plan_for(FOUR, 2)
    assert plan.strategy == "basic"
    assert plan.parameters.column_slice_threshold is None
    assert plan.parameters.column_slice_threshold_source == "none"
    assert groups(plan) == ([], ["a", "b", "c", "d"], [])
    assert shards(plan) == [
        ("a", 0, (0, 100), (0, 8)),
        ("b", 1, (0, 50), (0, 8)),
        ("c", 0, (0, 30), (0, 4)),
        ("d", 1, (0, 20), (0, 8)),
    ]
    assert weights(plan, 0) == [
        (100, 8, [("a", 0, 100, (0, 8))]),
        (30, 4, [("c", 0, 30, (0, 4))]),
    ]
    assert weights(plan, 1) == [(70, 8, [("b", 0, 50, (0, 8)), ("d", 50, 20, (0, 8))])]
    assert inputs(plan, 0) == [("a", 0, 0), ("c", 1, 0)]
    assert inputs(plan, 1) == [("b", 0, 0), ("d", 0, 50)]
    # worker order: a, c, b, d
    assert plan.exchange.output_widths == [8, 4, 8, 8]
    assert outputs(plan) == {"a": [0], "b": [2], "c": [1], "d": [3]}
    # rank 0: 800 + 120 = 920; rank 1: 70 * 8 = 560
    assert per_rank(plan) == [(920, 3680), (560, 2240)]
    check_stats(plan, [3680, 2240], 1480, 5920)
    assert plan.stats.imbalance == pytest.approx(3680 / 2960)


FIVE = [t("a", 100, 8), t("b", 10, 8), t("c", 50, 8), t("d", 30, 8), t("e", 5, 8)]
# sizes: a 800, b 80, c 400, d 240, e 40


def test_basic_five_tables():
    # round-robin: a, c, e | b, d; all 8 wide so each rank fuses everything.
    plan = plan_for(FIVE, 2)
    assert weights(plan, 0) == [
        (155, 8, [("a", 0, 100, (0, 8)), ("c", 100, 50, (0, 8)), ("e", 150, 5, (0, 8))])
    ]
    assert weights(plan, 1) == [(40, 8, [("b", 0, 10, (0, 8)), ("d", 10, 30, (0, 8))])]
    assert per_rank(plan) == [(1240, 4960), (320, 1280)]


def test_memory_balanced():
    # (size, table) descending: a800 c400 d240 b80 e40; span 4:
    #   rank 0: positions 0, 4, then 3 -> a, e, b
    #   rank 1: positions 1, then 2    -> c, d
    plan = plan_for(FIVE, 2, strategy="memory_balanced")
    assert plan.strategy == "memory_balanced"
    assert weights(plan, 0) == [
        (115, 8, [("a", 0, 100, (0, 8)), ("e", 100, 5, (0, 8)), ("b", 105, 10, (0, 8))])
    ]
    assert weights(plan, 1) == [(80, 8, [("c", 0, 50, (0, 8)), ("d", 50, 30, (0, 8))])]
    assert inputs(plan, 0) == [("a", 0, 0), ("e", 0, 100), ("b", 0, 105)]
    assert inputs(plan, 1) == [("c", 0, 0), ("d", 0, 50)]
    assert outputs(plan) == {"a": [0], "b": [2], "c": [3], "d": [4], "e": [1]}
    # rank 0: 115 * 8 = 920; rank 1: 80 * 8 = 640
    assert per_rank(plan) == [(920, 3680), (640, 2560)]
    check_stats(plan, [3680, 2560], 1560, 6240)


def test_memory_optimized_and_input_order_with_a_shared_table():
    # largest first onto the lighter (load, owners) key:
    #   a800 -> A (800,[a]); c400 -> B (400,[c]); d240 -> B 640; b80 -> B 720; e40 -> B 760
    # ascending keys: B (760) is rank 0 with c, d, b, e; A (800) is rank 1 with a.
    # Inputs in spec order: in_e, in_b1, in_c, in_b2 (b shared), in_d, in_a. On rank 0 they
    # follow the pieces c, d, b, e and, for b, input order: in_c, in_d, in_b1, in_b2, in_e.
    ins = [
        ("in_e", "e"),
        ("in_b1", "b"),
        ("in_c", "c"),
        ("in_b2", "b"),
        ("in_d", "d"),
        ("in_a", "a"),
    ]
    plan = plan_for(FIVE, 2, inputs=ins, strategy="memory_optimized")
    assert plan.strategy == "memory_optimized"
    assert weights(plan, 0) == [
        (
            95,
            8,
            [
                ("c", 0, 50, (0, 8)),
                ("d", 50, 30, (0, 8)),
                ("b", 80, 10, (0, 8)),
                ("e", 90, 5, (0, 8)),
            ],
        )
    ]
    assert weights(plan, 1) == [(100, 8, [("a", 0, 100, (0, 8))])]
    assert inputs(plan, 0) == [
        ("in_c", 0, 0),
        ("in_d", 0, 50),
        ("in_b1", 0, 80),
        ("in_b2", 0, 80),
        ("in_e", 0, 90),
    ]
    assert inputs(plan, 1) == [("in_a", 0, 0)]
    # worker order: in_c in_d in_b1 in_b2 in_e | in_a
    assert outputs(plan) == {
        "in_e": [4],
        "in_b1": [2],
        "in_c": [0],
        "in_b2": [3],
        "in_d": [1],
        "in_a": [5],
    }
    assert input_groups(plan) == ([], [name for name, _ in ins], [])
    # rank 0: 95 * 8 = 760; rank 1: 800. mean bytes (3040 + 3200) / 2 = 3120.
    assert per_rank(plan) == [(760, 3040), (800, 3200)]
    check_stats(plan, [3040, 3200], 1560, 6240)
    assert plan.stats.imbalance == pytest.approx(3200 / 3120)


# --- column slicing -------------------------------------------------------------------

TWO = [t("a", 100, 8), t("b", 50, 4)]  # a 800 elements, b 200


def test_automatic_column_slicing_basic():
    # 2 table-parallel tables < 4 ranks: sizes [200, 800]
    #   pop 800 -> thr 799, [200, 400, 400]; pop 400 -> thr 399, [200, 200, 200, 400]
    # a: 800 > 399, > 798, <= 1596 -> 4 slices of 2 columns (200 each); b: 200 <= 399 -> 1.
    # slices a a a a b, round-robin: rank 0 a0 b | rank 1 a1 | rank 2 a2 | rank 3 a3
    plan = plan_for(TWO, 4)
    assert plan.parameters.column_slice_threshold == 399
    assert plan.parameters.column_slice_threshold_source == "automatic"
    assert shards(plan) == [
        ("a", 0, (0, 100), (0, 2)),
        ("a", 1, (0, 100), (2, 4)),
        ("a", 2, (0, 100), (4, 6)),
        ("a", 3, (0, 100), (6, 8)),
        ("b", 0, (0, 50), (0, 4)),
    ]
    assert weights(plan, 0) == [
        (100, 2, [("a", 0, 100, (0, 2))]),
        (50, 4, [("b", 0, 50, (0, 4))]),
    ]
    assert inputs(plan, 0) == [("a", 0, 0), ("b", 1, 0)]
    assert plan.exchange.output_widths == [2, 4, 2, 2, 2]
    assert outputs(plan) == {"a": [0, 2, 3, 4], "b": [1]}
    assert rebuilt_columns(plan, "a") == [(0, 2), (2, 4), (4, 6), (6, 8)]
    # rank 0: 200 + 200; others 200
    assert per_rank(plan) == [(400, 1600), (200, 800), (200, 800), (200, 800)]
    check_stats(plan, [1600, 800, 800, 800], 1000, 4000)
    assert plan.stats.imbalance == pytest.approx(1.6)


def test_automatic_column_slicing_memory_balanced_merges_two_slices():
    # same slicing (threshold 399): five slices of 200 elements.
    # (size, table) descending: b first (higher index), then a a a a -> [b, a, a, a, a]
    # span 8: rank r takes positions r and 7 - r: rank 0 {0}, 1 {1}, 2 {2}, 3 {3, 4}.
    # rank 3 gets a's slices 2 and 3: one 4-wide piece, columns (4, 8).
    plan = plan_for(TWO, 4, strategy="memory_balanced")
    assert plan.parameters.column_slice_threshold == 399
    assert shards(plan) == [
        ("a", 1, (0, 100), (0, 2)),
        ("a", 2, (0, 100), (2, 4)),
        ("a", 3, (0, 100), (4, 8)),
        ("b", 0, (0, 50), (0, 4)),
    ]
    assert weights(plan, 3) == [(100, 4, [("a", 0, 100, (4, 8))])]
    assert plan.exchange.output_widths == [4, 2, 2, 4]
    assert outputs(plan) == {"a": [1, 2, 3], "b": [0]}
    assert rebuilt_columns(plan, "a") == [(0, 2), (2, 4), (4, 8)]
    assert per_rank(plan) == [(200, 800), (200, 800), (200, 800), (400, 1600)]


def test_explicit_column_threshold_zero_slices_as_far_as_possible():
    # threshold 0: slices = min(world, width): a 3x6 -> 4 slices [2, 2, 1, 1];
    # b 5x2 -> 2 slices [1, 1]. Round-robin over a a a a b b:
    #   rank 0: a0 b0 | rank 1: a1 b1 | rank 2: a2 | rank 3: a3
    plan = plan_for([t("a", 3, 6), t("b", 5, 2)], 4, column_slice_threshold=0)
    assert plan.parameters.column_slice_threshold == 0
    assert plan.parameters.column_slice_threshold_source == "spec"
    assert shards(plan) == [
        ("a", 0, (0, 3), (0, 2)),
        ("a", 1, (0, 3), (2, 4)),
        ("a", 2, (0, 3), (4, 5)),
        ("a", 3, (0, 3), (5, 6)),
        ("b", 0, (0, 5), (0, 1)),
        ("b", 1, (0, 5), (1, 2)),
    ]
    assert outputs(plan) == {"a": [0, 2, 4, 5], "b": [1, 3]}
    # rank 0: 3*2 + 5*1 = 11; rank 1: 11; rank 2: 3; rank 3: 3
    assert per_rank(plan) == [(11, 44), (11, 44), (3, 12), (3, 12)]


def test_explicit_column_threshold_with_more_tables_than_ranks():
    # threshold 100 on 2 ranks (no automatic slicing would happen: 3 tables >= 2 ranks):
    #   a 20x8 = 160 > 100, <= 200 -> 2 slices [4, 4] (80 each)
    #   b 10x6 = 60 -> 1;  c 30x4 = 120 > 100 -> 2 slices [2, 2] (60 each)
    # round-robin over a0 a1 b c0 c1: rank 0 gets a0 b c0' | rank 1 gets a1 c1'.
    # c is listed first on rank 0, so rank 0 takes c's first slice (0, 2) and rank 1 its
    # second (2, 4): columns follow rank order.
    plan = plan_for([t("a", 20, 8), t("b", 10, 6), t("c", 30, 4)], 2, column_slice_threshold=100)
    assert plan.parameters.column_slice_threshold == 100
    assert plan.parameters.column_slice_threshold_source == "spec"
    assert shards(plan) == [
        ("a", 0, (0, 20), (0, 4)),
        ("a", 1, (0, 20), (4, 8)),
        ("b", 0, (0, 10), (0, 6)),
        ("c", 0, (0, 30), (0, 2)),
        ("c", 1, (0, 30), (2, 4)),
    ]
    assert weights(plan, 0) == [
        (20, 4, [("a", 0, 20, (0, 4))]),
        (10, 6, [("b", 0, 10, (0, 6))]),
        (30, 2, [("c", 0, 30, (0, 2))]),
    ]
    assert weights(plan, 1) == [
        (20, 4, [("a", 0, 20, (4, 8))]),
        (30, 2, [("c", 0, 30, (2, 4))]),
    ]
    assert plan.exchange.output_widths == [4, 6, 2, 4, 2]
    assert outputs(plan) == {"a": [0, 3], "b": [1], "c": [2, 4]}
    # rank 0: 80 + 60 + 60 = 200; rank 1: 80 + 60 = 140
    assert per_rank(plan) == [(200, 800), (140, 560)]
    check_stats(plan, [800, 560], 340, 1360)


def test_merged_slices_of_a_shared_table_rebuild_each_input():
    # world 3, threshold 50:
    #   a 10x12 = 120 > 50, > 100, <= 200 -> 4 wanted, capped at 3 ranks: [4, 4, 4] (40 each)
    #   b 10x5 = 50 <= 50 -> 1; c 5x2 = 10 -> 1; d 3x2 = 6 -> 1
    # memory_balanced: (50,b) (40,a) (40,a) (40,a) (10,c) (6,d) -> [b, a, a, a, c, d]
    # span 6: rank 0 positions 0, 5 -> b, d; rank 1 positions 1, 4 -> a, c;
    #         rank 2 positions 2, 3 -> a, a (merged: 8 columns).
    # a's columns: rank 1 (0, 4), rank 2 (4, 12).
    # inputs: x and z both read a. Upstream records concat ranges [0, 3] for x and [2, 5]
    # for z (3 slices each) and, on merging, shrinks only the range starting at a's table
    # index 0: x gets [0, 2] but z keeps 3 pieces although it has 2.
    ins = [("x", "a"), ("y", "b"), ("z", "a"), ("u", "c"), ("v", "d")]
    tables = [t("a", 10, 12), t("b", 10, 5), t("c", 5, 2), t("d", 3, 2)]
    plan = plan_for(tables, 3, inputs=ins, strategy="memory_balanced", column_slice_threshold=50)
    assert shards(plan) == [
        ("a", 1, (0, 10), (0, 4)),
        ("a", 2, (0, 10), (4, 12)),
        ("b", 0, (0, 10), (0, 5)),
        ("c", 1, (0, 5), (0, 2)),
        ("d", 0, (0, 3), (0, 2)),
    ]
    assert inputs(plan, 0) == [("y", 0, 0), ("v", 1, 0)]
    assert inputs(plan, 1) == [("x", 0, 0), ("z", 0, 0), ("u", 1, 0)]
    assert inputs(plan, 2) == [("x", 0, 0), ("z", 0, 0)]
    # worker order: y(5) v(2) | x(4) z(4) u(2) | x(8) z(8)
    assert plan.exchange.output_widths == [5, 2, 4, 4, 2, 8, 8]
    assert outputs(plan) == {"x": [2, 5], "y": [0], "z": [3, 6], "u": [4], "v": [1]}
    assert [len(outputs(plan)[name]) for name in ("x", "z")] == [2, 2]
    for name in ("x", "z"):
        assert rebuilt_columns(plan, name) == [(0, 4), (4, 12)]
        assert sum(plan.exchange.output_widths[k] for k in outputs(plan)[name]) == 12
    # rank 0: 50 + 6 = 56; rank 1: 40 + 10 = 50; rank 2: 80
    assert per_rank(plan) == [(56, 224), (50, 200), (80, 320)]
    check_stats(plan, [224, 200, 320], 186, 744)


def test_merged_slices_make_one_piece_under_both_balancing_strategies():
    # world 2, threshold 60, tables in spec order b, a, c, e:
    #   b 10x5 = 50 -> 1; a 10x8 = 80 > 60, <= 120 -> 2 slices [4, 4] (40 each)
    #   c 10x3 = 30 -> 1; e 4x8 = 32 -> 1
    # memory_balanced: (50,b) (40,a) (40,a) (32,e) (30,c) -> [b, a, a, e, c]
    # span 4: rank 0 positions 0, 4, 3 -> b, c, e; rank 1 positions 1, 2 -> a, a.
    # rank 1 merges a into one 8-wide piece holding the whole table. e (8 wide) is on rank 0
    # so nothing fuses there with a; on rank 0, b (5), c (3), e (8) all differ.
    tables = [t("b", 10, 5), t("a", 10, 8), t("c", 10, 3), t("e", 4, 8)]
    plan = plan_for(tables, 2, strategy="memory_balanced", column_slice_threshold=60)
    assert shards(plan) == [
        ("b", 0, (0, 10), (0, 5)),
        ("a", 1, (0, 10), (0, 8)),
        ("c", 0, (0, 10), (0, 3)),
        ("e", 0, (0, 4), (0, 8)),
    ]
    assert weights(plan, 1) == [(10, 8, [("a", 0, 10, (0, 8))])]
    assert outputs(plan) == {"b": [0], "a": [3], "c": [1], "e": [2]}
    # rank 0: 50 + 30 + 32 = 112; rank 1: 80
    assert per_rank(plan) == [(112, 448), (80, 320)]

    # memory_optimized on the same slices: (50,b) -> A; (40,a) -> B; (40,a) -> B (80);
    # (32,e) -> A (82); (30,c) -> B (110). Keys (82, [b, e]) < (110, [a, a, c]):
    # rank 0 = b, e; rank 1 = a (merged, 8 wide), c.
    plan = plan_for(tables, 2, strategy="memory_optimized", column_slice_threshold=60)
    assert weights(plan, 0) == [
        (10, 5, [("b", 0, 10, (0, 5))]),
        (4, 8, [("e", 0, 4, (0, 8))]),
    ]
    assert weights(plan, 1) == [
        (10, 8, [("a", 0, 10, (0, 8))]),
        (10, 3, [("c", 0, 10, (0, 3))]),
    ]
    assert per_rank(plan) == [(82, 328), (110, 440)]


def test_merged_piece_fuses_with_an_equal_width_table_on_its_rank():
    # world 2, threshold 60, tables b 10x5 = 50, a 10x8 = 80 (> 60, <= 120: slices [4, 4] of
    # 40 each), c 3x10 = 30, d 2x12 = 24, w 2x8 = 16; all but a fit in one slice.
    # memory_balanced: (50,b) (40,a) (40,a) (30,c) (24,d) (16,w) -> [b, a, a, c, d, w]
    # span 4: rank 0 positions 0, 4, 3 -> b, d, c; rank 1 positions 1, 5, 2 -> a, w, a.
    # Rank 1 holds both of a's slices, apart in its list: merged into one 8-wide piece at
    # a's first position; w (8 wide) then fuses with it at row 10.
    tables = [t("b", 10, 5), t("a", 10, 8), t("c", 3, 10), t("d", 2, 12), t("w", 2, 8)]
    plan = plan_for(tables, 2, strategy="memory_balanced", column_slice_threshold=60)
    assert weights(plan, 0) == [
        (10, 5, [("b", 0, 10, (0, 5))]),
        (2, 12, [("d", 0, 2, (0, 12))]),
        (3, 10, [("c", 0, 3, (0, 10))]),
    ]
    assert weights(plan, 1) == [(12, 8, [("a", 0, 10, (0, 8)), ("w", 10, 2, (0, 8))])]
    assert inputs(plan, 0) == [("b", 0, 0), ("d", 1, 0), ("c", 2, 0)]
    assert inputs(plan, 1) == [("a", 0, 0), ("w", 0, 10)]
    assert plan.exchange.output_widths == [5, 12, 10, 8, 8]
    assert outputs(plan) == {"b": [0], "a": [3], "c": [2], "d": [1], "w": [4]}
    # rank 0: 50 + 24 + 30 = 104; rank 1: 12 * 8 = 96
    assert per_rank(plan) == [(104, 416), (96, 384)]
    check_stats(plan, [416, 384], 200, 800)


# --- one rank, fusing by dtype and initializer ----------------------------------------


def test_one_rank_fuses_only_equal_dtype_and_initializer():
    # one rank: strategy falls back to basic; row and data-parallel thresholds are off, so
    # every table is table-parallel; automatic slicing is not needed (1 rank <= 5 tables).
    # All 4 wide, all combiner null. Fusing keys: a, b float32 uniform -> one weight;
    # c, e float16 uniform -> one weight; d float32 zeros -> alone.
    tables = [
        t("a", 10, 4),
        t("b", 20, 4),
        t("c", 30, 4, dtype="float16"),
        t("d", 40, 4, initializer="zeros"),
        t("e", 50, 4, dtype="float16"),
    ]
    plan = plan_for(
        tables,
        1,
        strategy="memory_optimized",
        row_slice_threshold=100,
        data_parallel_threshold=100,
    )
    assert plan.strategy == "basic"
    assert plan.parameters.requested_strategy == "memory_optimized"
    assert plan.parameters.row_slice_threshold is None
    assert plan.parameters.data_parallel_threshold is None
    assert plan.parameters.column_slice_threshold is None
    assert groups(plan) == ([], ["a", "b", "c", "d", "e"], [])
    assert weights(plan, 0) == [
        (30, 4, [("a", 0, 10, (0, 4)), ("b", 10, 20, (0, 4))]),
        (80, 4, [("c", 0, 30, (0, 4)), ("e", 30, 50, (0, 4))]),
        (40, 4, [("d", 0, 40, (0, 4))]),
    ]
    dtypes = [(w.dtype, w.initializer) for w in plan.ranks[0].table_parallel_weights]
    assert dtypes == [("float32", "uniform"), ("float16", "uniform"), ("float32", "zeros")]
    assert inputs(plan, 0) == [("a", 0, 0), ("b", 0, 10), ("c", 1, 0), ("d", 2, 0), ("e", 1, 30)]
    # float32: (30 + 40) * 4 = 280 elements -> 1120 B; float16: 80 * 4 = 320 -> 640 B
    assert per_rank(plan) == [(600, 1760)]
    check_stats(plan, [1760], 600, 1760)
    assert plan.stats.imbalance == 1.0


def test_one_rank_explicit_threshold_cannot_slice():
    # a 10x8 = 80 > 10 would want 8 slices, capped at the single rank: 1 slice.
    plan = plan_for([t("a", 10, 8)], 1, column_slice_threshold=10)
    assert plan.parameters.column_slice_threshold == 10
    assert shards(plan) == [("a", 0, (0, 10), (0, 8))]


def test_fusing_keeps_combiners_apart():
    # basic over 3 ranks with 6 tables: rank 0 gets s1, s2; rank 1 m1, n1; rank 2 s3, m2
    # (tables in order s1 m1 s3 s2 n1 m2). Only rank 0 has two 4-wide tables with one combiner.
    tables = [
        t("s1", 5, 4, combiner="sum"),
        t("m1", 6, 4, combiner="mean"),
        t("s3", 7, 4, combiner="sum"),
        t("s2", 8, 4, combiner="sum"),
        t("n1", 9, 4),
        t("m2", 3, 4, combiner="mean"),
    ]
    plan = plan_for(tables, 3)
    assert weights(plan, 0) == [(13, 4, [("s1", 0, 5, (0, 4)), ("s2", 5, 8, (0, 4))])]
    assert weights(plan, 1) == [(6, 4, [("m1", 0, 6, (0, 4))]), (9, 4, [("n1", 0, 9, (0, 4))])]
    assert weights(plan, 2) == [(7, 4, [("s3", 0, 7, (0, 4))]), (3, 4, [("m2", 0, 3, (0, 4))])]
    combiners = [[w.combiner for w in r.table_parallel_weights] for r in plan.ranks]
    assert combiners == [["sum"], ["mean", None], ["sum", "mean"]]


# --- row slicing and data-parallel ----------------------------------------------------

MIXED = [t("s", 10, 5), t("r2", 2, 600), t("mid", 50, 10), t("big", 1003, 2)]
# elements: s 50, r2 1200, mid 500, big 2006


def test_row_slicing_data_parallel_and_automatic_threshold_together():
    # thresholds: data-parallel <= 100 -> s; row >= 1000 -> r2, big; mid table-parallel.
    # Row slices over 4 ranks, remainder first:
    #   r2: 2 rows -> [1, 1, 0, 0]: (0,1) (1,2) (2,2) (2,2); ranks 2, 3 get no shard.
    #   big: 1003 rows -> [251, 251, 251, 250]: (0,251) (251,502) (502,753) (753,1003)
    # mid alone in the table-parallel group, 1 < 4 ranks: automatic threshold from [500]:
    #   pop 500 -> 499, [250, 250]; pop 250 -> 249, [125, 125, 250]; pop 250 -> 249, 4 pieces
    #   mid: 500 > 249, > 498, <= 996 -> 4 slices [3, 3, 2, 2] of 150, 150, 100, 100
    #   basic: slice r -> rank r.
    plan = plan_for(MIXED, 4, data_parallel_threshold=100, row_slice_threshold=1000)
    assert groups(plan) == (["s"], ["mid"], ["r2", "big"])
    assert input_groups(plan) == (["s"], ["mid"], ["r2", "big"])
    assert plan.parameters.data_parallel_threshold == 100
    assert plan.parameters.row_slice_threshold == 1000
    assert plan.parameters.column_slice_threshold == 249
    assert plan.parameters.column_slice_threshold_source == "automatic"
    assert shards(plan) == [
        ("r2", 0, (0, 1), (0, 600)),
        ("r2", 1, (1, 2), (0, 600)),
        ("mid", 0, (0, 50), (0, 3)),
        ("mid", 1, (0, 50), (3, 6)),
        ("mid", 2, (0, 50), (6, 8)),
        ("mid", 3, (0, 50), (8, 10)),
        ("big", 0, (0, 251), (0, 2)),
        ("big", 1, (251, 502), (0, 2)),
        ("big", 2, (502, 753), (0, 2)),
        ("big", 3, (753, 1003), (0, 2)),
    ]
    row_slices = [[(s.table, s.rows) for s in r.row_slices] for r in plan.ranks]
    assert row_slices == [
        [("r2", (0, 1)), ("big", (0, 251))],
        [("r2", (1, 2)), ("big", (251, 502))],
        [("r2", (2, 2)), ("big", (502, 753))],
        [("r2", (2, 2)), ("big", (753, 1003))],
    ]
    assert plan.exchange.output_widths == [3, 3, 2, 2]
    assert outputs(plan) == {"mid": [0, 1, 2, 3]}
    # per rank: s 50 (replica) + r2 rows * 600 + big rows * 2 + mid slice
    #   rank 0: 50 + 600 + 502 + 150 = 1302; rank 1: 1302
    #   rank 2: 50 + 0 + 502 + 100 = 652;    rank 3: 50 + 0 + 500 + 100 = 650
    assert per_rank(plan) == [(1302, 5208), (1302, 5208), (652, 2608), (650, 2600)]
    # totals count each table once: 50 + 1200 + 500 + 2006 = 3756
    check_stats(plan, [5208, 5208, 2608, 2600], 3756, 15024)
    assert plan.stats.imbalance == pytest.approx(4 / 3)  # 5208 / 3906


def test_data_parallel_tables_count_on_every_rank_in_their_dtype():
    # two ranks, data-parallel <= 64: h 8x8 float16 (64) and f 4x4 float32 (16) are replicated;
    # z 100x4 is table-parallel and alone on 2 ranks: automatic threshold from [400]
    #   pop 400 -> 399, [200, 200]; z: 400 > 399, <= 798 -> 2 slices [2, 2].
    tables = [t("h", 8, 8, dtype="float16"), t("z", 100, 4), t("f", 4, 4)]
    plan = plan_for(tables, 2, data_parallel_threshold=64)
    assert groups(plan) == (["h", "f"], ["z"], [])
    assert plan.parameters.column_slice_threshold == 399
    assert shards(plan) == [("z", 0, (0, 100), (0, 2)), ("z", 1, (0, 100), (2, 4))]
    # each rank: h 64 el * 2 B = 128 B, f 16 el * 4 B = 64 B, z half 200 el * 4 B = 800 B
    assert per_rank(plan) == [(280, 992), (280, 992)]
    # totals: 64 * 2 + 16 * 4 + 400 * 4 = 1792 B over 480 elements
    check_stats(plan, [992, 992], 480, 1792)
    assert plan.stats.imbalance == 1.0


def test_only_data_parallel_and_row_sliced_tables():
    # no table-parallel table: no slicing threshold, no local weights, empty exchange.
    tables = [t("s", 3, 3), t("huge", 5, 4)]
    plan = plan_for(tables, 2, data_parallel_threshold=9, row_slice_threshold=20)
    assert groups(plan) == (["s"], [], ["huge"])
    assert plan.parameters.column_slice_threshold is None
    assert plan.parameters.column_slice_threshold_source == "none"
    assert plan.exchange.output_widths == []
    assert plan.exchange.outputs == []
    assert all(not r.table_parallel_weights for r in plan.ranks)
    # huge: 5 rows over 2 ranks -> (0,3) (3,5)
    assert shards(plan) == [("huge", 0, (0, 3), (0, 4)), ("huge", 1, (3, 5), (0, 4))]
    # rank 0: 9 + 12 = 21; rank 1: 9 + 8 = 17
    assert per_rank(plan) == [(21, 84), (17, 68)]


def test_thresholds_at_the_boundary_are_inclusive():
    # data-parallel takes elements <= threshold, row slicing elements >= threshold.
    tables = [t("dp", 10, 10), t("tp", 10, 11), t("row", 10, 20), t("tp2", 10, 19)]
    plan = plan_for(tables, 2, data_parallel_threshold=100, row_slice_threshold=200)
    assert groups(plan) == (["dp"], ["tp", "tp2"], ["row"])


def test_zero_thresholds_are_off():
    # 0 for data-parallel and row thresholds means off (not "every table").
    plan = plan_for(MIXED, 4, data_parallel_threshold=0, row_slice_threshold=0)
    assert groups(plan) == ([], ["s", "r2", "mid", "big"], [])
    assert plan.parameters.data_parallel_threshold is None
    assert plan.parameters.row_slice_threshold is None
    # 4 tables on 4 ranks: no automatic slicing; round-robin puts table r on rank r.
    assert plan.parameters.column_slice_threshold is None
    assert [s.rank for s in plan.shards] == [0, 1, 2, 3]


def test_dp_input_false_turns_off_data_parallel_and_row_slicing():
    # same thresholds as the mixed example, but model-parallel input: all table-parallel;
    # 4 tables on 4 ranks: no slicing; round-robin s, r2, mid, big.
    plan = plan_for(MIXED, 4, dp_input=False, data_parallel_threshold=100, row_slice_threshold=1000)
    assert groups(plan) == ([], ["s", "r2", "mid", "big"], [])
    assert plan.parameters.dp_input is False
    assert plan.parameters.data_parallel_threshold is None
    assert plan.parameters.row_slice_threshold is None
    assert shards(plan) == [
        ("s", 0, (0, 10), (0, 5)),
        ("r2", 1, (0, 2), (0, 600)),
        ("mid", 2, (0, 50), (0, 10)),
        ("big", 3, (0, 1003), (0, 2)),
    ]
    assert all(r.row_slices == [] for r in plan.ranks)
    assert per_rank(plan) == [(50, 200), (1200, 4800), (500, 2000), (2006, 8024)]


def test_dp_input_false_keeps_explicit_column_slicing():
    # column slicing is not switched off by model-parallel input: a 10x4 = 40 > 20, <= 40
    # -> 2 slices of 2 columns.
    plan = plan_for([t("a", 10, 4), t("b", 1, 1)], 2, dp_input=False, column_slice_threshold=20)
    assert shards(plan) == [
        ("a", 0, (0, 10), (0, 2)),
        ("a", 1, (0, 10), (2, 4)),
        ("b", 0, (0, 1), (0, 1)),
    ]


def test_row_sliced_table_with_fewer_rows_than_ranks():
    # 3 rows over 5 ranks: [1, 1, 1, 0, 0]. Ranks 3 and 4 hold an empty range at row 3 and
    # get no shard (upstream builds zero-row layers there).
    # r 3x7 = 21 >= 21 is row-sliced; x 10x2 = 20 is table-parallel, alone on 5 ranks:
    #   [20]: pop 20 -> 19, [10, 10]; pop 10 -> 9, [5, 5, 10]; pop 10 -> 9, [5, 5, 5, 5];
    #   pop 5 -> 4, 5 pieces. x: 20 > 4, 8, 16 -> 8 wanted, capped at 2 columns: [1, 1].
    plan = plan_for([t("r", 3, 7), t("x", 10, 2)], 5, row_slice_threshold=21)
    assert groups(plan) == ([], ["x"], ["r"])
    assert plan.parameters.column_slice_threshold == 4
    assert shards(plan) == [
        ("r", 0, (0, 1), (0, 7)),
        ("r", 1, (1, 2), (0, 7)),
        ("r", 2, (2, 3), (0, 7)),
        ("x", 0, (0, 10), (0, 1)),
        ("x", 1, (0, 10), (1, 2)),
    ]
    assert [[s.rows for s in r.row_slices] for r in plan.ranks] == [
        [(0, 1)],
        [(1, 2)],
        [(2, 3)],
        [(3, 3)],
        [(3, 3)],
    ]
    # rank 0, 1: 7 + 10; rank 2: 7; ranks 3, 4: nothing at all
    assert per_rank(plan) == [(17, 68), (17, 68), (7, 28), (0, 0), (0, 0)]
    check_stats(plan, [68, 68, 28, 0, 0], 41, 164)


# --- shared tables --------------------------------------------------------------------


def test_shared_table_inputs_and_unread_table():
    # inputs q, p read a; r reads c; nobody reads b (still placed).
    # 3 tables on 3 ranks, basic: a | b | c.
    ins = [("q", "a"), ("r", "c"), ("p", "a")]
    plan = plan_for([t("a", 4, 2), t("b", 5, 2), t("c", 6, 3)], 3, inputs=ins)
    assert input_groups(plan) == ([], ["q", "r", "p"], [])
    assert inputs(plan, 0) == [("q", 0, 0), ("p", 0, 0)]
    assert inputs(plan, 1) == []
    assert weights(plan, 1) == [(5, 2, [("b", 0, 5, (0, 2))])]
    assert inputs(plan, 2) == [("r", 0, 0)]
    assert plan.exchange.output_widths == [2, 2, 3]
    assert outputs(plan) == {"q": [0], "r": [2], "p": [1]}


def test_shared_row_sliced_and_data_parallel_inputs_are_grouped_by_table():
    ins = [("i0", "big"), ("i1", "small"), ("i2", "mid"), ("i3", "big"), ("i4", "small")]
    tables = [t("small", 2, 2), t("mid", 10, 10), t("big", 100, 10)]
    plan = plan_for(tables, 2, inputs=ins, data_parallel_threshold=4, row_slice_threshold=1000)
    assert groups(plan) == (["small"], ["mid"], ["big"])
    assert input_groups(plan) == (["i1", "i4"], ["i2"], ["i0", "i3"])


# --- ranks without a table-parallel piece ---------------------------------------------


def test_rank_without_table_parallel_piece_is_allowed():
    # explicit threshold 1000 never slices; 2 tables round-robin over 3 ranks: rank 2 empty.
    # upstream refuses this ("Not enough table after slicing").
    plan = plan_for([t("a", 10, 4), t("b", 10, 4)], 3, column_slice_threshold=1000)
    assert [len(r.table_parallel_weights) for r in plan.ranks] == [1, 1, 0]
    assert inputs(plan, 2) == []
    assert per_rank(plan) == [(40, 160), (40, 160), (0, 0)]
    # mean bytes 320 / 3; imbalance 160 / (320 / 3) = 1.5
    check_stats(plan, [160, 160, 0], 80, 320)
    assert plan.stats.imbalance == pytest.approx(1.5)


def test_width_one_table_leaves_ranks_empty_under_automatic_slicing():
    # [100] on 3 ranks: pop 100 -> 99, [50, 50]; pop 50 -> 49, [25, 25, 50].
    # 100 > 49, > 98 -> 4 slices wanted, capped at the single column: 1 slice.
    plan = plan_for([t("x", 100, 1)], 3)
    assert plan.parameters.column_slice_threshold == 49
    assert shards(plan) == [("x", 0, (0, 100), (0, 1))]
    assert per_rank(plan) == [(100, 400), (0, 0), (0, 0)]


def test_tiny_table_on_many_ranks_terminates():
    # one 1x2 table on 7 ranks: the automatic threshold halves down to -1 upstream (which then
    # loops forever); floored at 0 it means "slice as far as possible": min(7, 2) = 2 slices.
    with time_limit(10):
        plan = plan_for([t("tiny", 1, 2)], 7)
    assert plan.parameters.column_slice_threshold == 0
    assert plan.parameters.column_slice_threshold_source == "automatic"
    assert shards(plan) == [("tiny", 0, (0, 1), (0, 1)), ("tiny", 1, (0, 1), (1, 2))]
    assert outputs(plan) == {"tiny": [0, 1]}
    assert per_rank(plan) == [(1, 4), (1, 4)] + [(0, 0)] * 5
    check_stats(plan, [4, 4, 0, 0, 0, 0, 0], 2, 8)


def test_tiny_tables_with_a_large_one_on_many_ranks_terminate():
    # [1, 1, 64] on 8 ranks (1x1, 1x1, 1x64):
    #   pop 64 -> 63, [1, 1, 32, 32]; pop 32 -> 31, [1, 1, 16, 16, 32];
    #   pop 32 -> 31, [1, 1, 16, 16, 16, 16]; pop 16 -> 15, 7 pieces; pop 16 -> 15, 8 pieces
    # big: 64 > 15, 30, 60; <= 120 -> 8 slices of 8 columns; the 1x1 tables stay whole.
    with time_limit(10):
        plan = plan_for([t("u", 1, 1), t("v", 1, 1), t("big", 1, 64)], 8)
    assert plan.parameters.column_slice_threshold == 15
    assert [s.cols for s in plan.shards if s.table == "big"] == [
        (8 * k, 8 * k + 8) for k in range(8)
    ]
    # round-robin over u v b b b b b b b b: rank 0 [u, big], rank 1 [v, big], rank r [big];
    # the j-th appearance of big in rank order takes slice j, so rank r holds columns 8r..8r+8.
    assert [s.rank for s in plan.shards if s.table == "big"] == list(range(8))
    assert [(s.table, s.rank) for s in plan.shards if s.table != "big"] == [("u", 0), ("v", 1)]
    assert plan.exchange.output_widths == [1, 8, 1, 8, 8, 8, 8, 8, 8, 8]
    assert outputs(plan) == {"u": [0], "v": [2], "big": [1, 3, 4, 5, 6, 7, 8, 9]}
