"""Fold long lists for people: names with a count, rank numbers as ranges.

A plan of 20,000 tables or 1,024 ranks would otherwise print lines of tens of thousands
of characters; a reader wants the first few names and how many there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NAME_BUDGET = 80  # characters of names shown before folding the rest into a count
RANGE_BUDGET = 6  # rank ranges shown before folding the rest into a count


def fold_names(names: Sequence[str], noun: str = "tables", budget: int = NAME_BUDGET) -> str:
    """``a, b, c`` when they fit in ``budget`` characters, else
    ``18,211 tables: a, b, c, ... and 18,208 more`` with as many names as fit."""
    whole = ", ".join(names)
    if len(whole) <= budget:
        return whole
    shown: list[str] = []
    used = 0
    for name in names:
        used += len(name) + 2
        if shown and used > budget:
            break
        shown.append(name)
    return f"{len(names):,} {noun}: {', '.join(shown)}, ... and {len(names) - len(shown):,} more"


def runs(ranks: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive numbers as (first, last) pairs: 0 1 2 5 -> (0, 2), (5, 5)."""
    found: list[tuple[int, int]] = []
    for rank in sorted(set(ranks)):
        if found and rank == found[-1][1] + 1:
            found[-1] = (found[-1][0], rank)
        else:
            found.append((rank, rank))
    return found


def rank_ranges(ranks: Iterable[int], budget: int = RANGE_BUDGET) -> str:
    """``rank 3``, ``ranks 0-63`` or ``ranks 0-3, 7, 9-12``; past ``budget`` ranges,
    ``ranks 0, 2, 4, ... (512 ranks)``."""
    numbers = sorted(set(ranks))
    spans = [str(a) if a == b else f"{a}-{b}" for a, b in runs(numbers)]
    if len(numbers) == 1:
        return f"rank {numbers[0]}"
    if len(spans) <= budget:
        return "ranks " + ", ".join(spans)
    return "ranks " + ", ".join(spans[: budget - 1]) + f", ... ({len(numbers):,} ranks)"
