"""``auto``'s list scheduling: the heap and the all-ranks-at-once paths choose alike."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.placement import scheduling
from planner.placement.scheduling import schedule


def test_a_bound_sends_pieces_to_the_emptiest_rank_it_keeps_within() -> None:
    # Three ranks: bytes 10, 0, 5 and loads 1.0, 3.0, 1.5; bound 3.5. A 4-byte piece of
    # 1.0 s: rank 1 (fewest bytes) would reach 4.0, over; rank 2 (5 bytes, 2.5) is within.
    # The next, of 2.0 s, keeps no rank within (3.0, 5.0, 4.5): the least loaded, rank 0.
    # Without a bound the first goes to the least loaded rank, 0.
    pieces = [(0, 4, 4, 1.0), (1, 4, 4, 2.0)]
    assert schedule(pieces, [10, 0, 5], [1.0, 3.0, 1.5], math.inf, 3.5) == [
        (0, 2, 4),
        (1, 0, 4),
    ]
    assert schedule(pieces[:1], [10, 0, 5], [1.0, 3.0, 1.5], math.inf, math.inf) == [(0, 0, 4)]


def test_a_table_never_gets_two_pieces_on_one_rank_and_room_is_respected() -> None:
    # Two pieces of table 0 and two ranks; rank 0 has room for one piece only.
    pieces = [(0, 2, 8, 1.0), (0, 2, 8, 1.0), (1, 2, 8, 0.1)]
    assert schedule(pieces, [0, 0], [0.0, 0.0], 8, 10.0) is None  # the third has no room
    assert schedule(pieces[:2], [0, 0], [0.0, 0.0], 16, 10.0) == [(0, 0, 2), (0, 1, 2)]


@st.composite
def _cases(draw):
    world = draw(st.integers(1, 12))
    held = draw(st.lists(st.integers(0, 40), min_size=world, max_size=world))
    load = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5]), min_size=world, max_size=world))
    pieces = draw(
        st.lists(
            st.tuples(
                st.integers(0, 5), st.integers(1, 8), st.integers(1, 20),
                st.sampled_from([0.25, 0.5, 1.0]),
            ),
            max_size=30,
        )
    )
    limit = draw(st.sampled_from([math.inf, 60, 100]))
    bound = draw(st.sampled_from([1.0, 2.0, 4.0]))
    return pieces, held, load, limit, bound


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_cases())
def test_the_wide_path_chooses_as_the_heap_does(case) -> None:
    # Few distinct bytes and loads, so that ties are common.
    pieces, held, load, limit, bound = case
    heap = scheduling._schedule_heap(pieces, held, load, limit, bound)
    wide = scheduling._schedule_wide(pieces, held, load, limit, bound)
    assert wide == heap


@pytest.mark.parametrize("wide", [1, 10**9])
def test_schedule_takes_the_wide_path_from_wide_ranks(monkeypatch, wide) -> None:
    calls = []
    monkeypatch.setattr(scheduling, "WIDE", wide)
    monkeypatch.setattr(
        scheduling, "_schedule_wide", lambda *args: calls.append("wide") or []
    )
    schedule([], [0, 0], [0.0, 0.0], math.inf, 1.0)
    schedule([], [0, 0], [0.0, 0.0], math.inf, math.inf)  # unbounded: always the heap
    assert calls == (["wide"] if wide == 1 else [])
