"""Step 3: assign column slices to ranks, by upstream's three rules (its strategies).

Each strategy takes the slices in table order (``owners[i]`` is the table of slice i,
``sizes[i]`` its element count) and returns, for each rank, the owners of the slices it
receives, in the order it receives them. That order matters: the first slice of a table
handed out goes to the first rank (in rank order) that lists the table, and a rank's
local tables and inputs follow its list. Ties are broken exactly as upstream breaks
them, so plans match upstream placement slice for slice.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

Assign = Callable[[Sequence[int], Sequence[int], int], list[list[int]]]


def basic(sizes: Sequence[int], owners: Sequence[int], world_size: int) -> list[list[int]]:
    """Round-robin in table order: slice i goes to rank i mod world_size."""
    return [list(owners[rank::world_size]) for rank in range(world_size)]


def memory_balanced(
    sizes: Sequence[int], owners: Sequence[int], world_size: int
) -> list[list[int]]:
    """Largest first, dealt in a snake over 2 x world_size positions.

    Rank r takes positions r and 2W-1-r of every run of 2W slices, pairing a large slice
    with a small one so that slice counts stay even. Equal sizes order by table, higher
    index first.
    """
    order = [owner for _, owner in sorted(zip(sizes, owners, strict=True), reverse=True)]
    span = 2 * world_size
    return [order[rank::span] + order[span - 1 - rank :: span] for rank in range(world_size)]


def memory_optimized(
    sizes: Sequence[int], owners: Sequence[int], world_size: int
) -> list[list[int]]:
    """Largest first, each onto the least-loaded rank; ranks end ordered by load.

    A rank is keyed by (load, owners held so far); the smallest key takes the next slice,
    and the final rank order is the ascending order of those keys. Slices leave the sorted
    list from its end: largest size first, equal sizes higher table index first.
    """
    pending = sorted(zip(sizes, owners, strict=True))
    ranks: list[tuple[int, list[int]]] = [(0, []) for _ in range(world_size)]
    while pending:
        size, owner = pending.pop()
        load, held = heapq.heappop(ranks)
        heapq.heappush(ranks, (load + size, [*held, owner]))
    return [held for _, held in sorted(ranks)]


# Upstream's strategies by name: the rule each deals column slices to ranks with.
ASSIGNMENTS: dict[str, Assign] = {
    "basic": basic,
    "memory_balanced": memory_balanced,
    "memory_optimized": memory_optimized,
}
