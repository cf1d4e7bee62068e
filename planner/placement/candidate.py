"""A scored placement that ``auto`` may choose, and the shapes its pieces come in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.placement.result import Placement

PieceList = list[tuple[int, int, int]]  # (table, rank, columns)
Split = tuple[int, int, int]  # rows per rank, remainder rows, first rank with one more


@dataclass(frozen=True)
class Candidate:
    """One complete placement, scored; ``build`` makes its Placement.

    ``max_bytes`` is the largest rank's weight bytes (replicas included), ``step_seconds``
    the estimated step (planner.costs.steptime), computed from the pieces without
    writing a plan.
    """

    max_bytes: int
    step_seconds: float
    build: Callable[[], Placement]


def split_counts(split: Split, world: int) -> np.ndarray:
    """Rows per rank of an even row split whose remainder starts at ``split[2]``."""
    even, extra, start = split
    counts = np.full(world, even, np.int64)
    counts[(start + np.arange(extra)) % world] += 1
    return counts
