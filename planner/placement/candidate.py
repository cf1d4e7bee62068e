"""A scored placement that ``auto`` may choose, and the shapes its pieces come in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.placement.result import Placement
from planner.plan_parts import even_split_counts

PieceList = list[tuple[int, int, int]]  # (table, rank, columns)
# Rows per rank, remainder rows, position of the first rank with one more; then, for a
# split over a group of ranks only, the group's first rank and its stop.
Split = tuple[int, ...]
TIE = 0.01  # time objective: steps within 1% of the least are equal; memory balance decides


@dataclass(frozen=True)
class Candidate:
    """One complete placement, scored; ``build`` makes its Placement.

    ``max_bytes`` is the largest rank's weight bytes (replicas included), ``step_seconds``
    the estimated step (planner.costs.steptime), computed from the pieces without
    writing a plan. ``shorten(kicks)``, where given, makes the same placement after
    ``auto``'s stage search (``placement.stage_search``) with that many random restarts:
    worth its time only for the few fastest.
    """

    max_bytes: int
    step_seconds: float
    build: Callable[[], Placement]
    shorten: Callable[[int], Candidate] | None = None


def split_counts(split: Split, world: int) -> np.ndarray:
    """Rows per rank of an even row split (over all ranks, or over the ranks
    [first, stop) a group split names) whose remainder starts at ``split[2]``."""
    even, extra, start, *group = split
    first, stop = group or (0, world)
    return even_split_counts(even * (stop - first) + extra, first, stop, start, world)
