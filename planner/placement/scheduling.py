"""List scheduling of pieces onto ranks, for ``auto``'s fast placements.

Each piece in turn goes to a rank with room that holds no other piece of its table:
without a bound on the load, the least loaded; with one, the rank with the fewest bytes
among those the piece keeps within the bound, or the least loaded when there is none.

A heap of ranks finds that rank quickly when few are passed over. With a bound and
thousands of ranks whose loads all sit near it, a heap by bytes passes over most ranks
for every piece (20,000 tables on 4,096 ranks took minutes), so from ``WIDE`` ranks the
bounded schedule looks at all ranks at once with numpy instead. Both make the same
choices, ties included.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from planner.placement.candidate import PieceList

WIDE = 256  # from this many ranks a bounded schedule scans all ranks at once (numpy)

Sized = Sequence[tuple[int, int, int, float]]  # (table, columns, bytes, seconds) per piece


def schedule(
    pieces: Sized, held: Sequence[int], load: Sequence[float], limit: float, bound: float
) -> PieceList | None:
    """Place ``pieces`` in order onto ranks that hold ``held`` bytes and ``load`` seconds
    before them; None when a piece finds no rank with room."""
    if bound != math.inf and len(held) >= WIDE:
        return _schedule_wide(pieces, held, load, limit, bound)
    return _schedule_heap(pieces, held, load, limit, bound)


def _schedule_heap(
    pieces: Sized, base: Sequence[int], start: Sequence[float], limit: float, bound: float
) -> PieceList | None:
    """Ranks popped from a heap (by load, or by bytes with a bound) until one takes the
    piece; the rest are pushed back."""
    by_bytes = bound != math.inf
    held, load = list(base), list(start)

    def key(rank: int) -> tuple:
        return (held[rank], load[rank], rank) if by_bytes else (load[rank], held[rank], rank)

    heap = [key(rank) for rank in range(len(held))]
    heapq.heapify(heap)
    placement: PieceList = []
    holds: list[set[int]] = [set() for _ in held]
    for t, width, size, seconds in pieces:
        popped, chosen = [], None
        while heap:
            rank = heapq.heappop(heap)[2]
            popped.append(rank)
            if held[rank] + size > limit or t in holds[rank]:
                continue
            if load[rank] + seconds <= bound:
                chosen = rank
                break
            if chosen is None or load[rank] < load[chosen]:
                chosen = rank  # over the bound: the least loaded so far, if none is within
        if chosen is None:
            return None
        placement.append((t, chosen, width))
        holds[chosen].add(t)
        held[chosen] += size
        load[chosen] += seconds
        for rank in popped:
            heapq.heappush(heap, key(rank))
    return placement


def _schedule_wide(
    pieces: Sized, base: Sequence[int], start: Sequence[float], limit: float, bound: float
) -> PieceList | None:
    """The bounded schedule with every rank looked at per piece, as arrays."""
    held = np.array(base, np.int64)
    load = np.array(start, np.float64)
    holders: dict[int, list[int]] = {}
    placement: PieceList = []
    for t, width, size, seconds in pieces:
        fits = held + size <= limit
        fits[holders.get(t, [])] = False
        within = np.flatnonzero(fits & (load + seconds <= bound))
        if within.size:
            chosen = _least(within, held, load)
        elif (room := np.flatnonzero(fits)).size:
            chosen = _least(room, load, held)
        else:
            return None
        placement.append((t, chosen, width))
        holders.setdefault(t, []).append(chosen)
        held[chosen] += size
        load[chosen] += seconds
    return placement


def _least(ranks: np.ndarray, first: np.ndarray, second: np.ndarray) -> int:
    """Of ``ranks``, the one with the least ``first``, then ``second``, then index."""
    ranks = ranks[first[ranks] == first[ranks].min()]
    return int(ranks[second[ranks] == second[ranks].min()][0])
