"""Step 2: cut tables into column slices (table-parallel) or row slices (row-sliced)."""

from __future__ import annotations

import heapq


def automatic_column_threshold(table_sizes: list[int], world_size: int) -> int | None:
    """The threshold that gives every rank at least one slice, found by halving.

    While there are fewer pieces than ranks, the largest piece is split in two (floor
    halves) and the threshold becomes one element below it. Upstream lets the threshold
    fall below zero for tiny tables (a 1x2 table on 7 ranks), and then slicing never
    stops; the threshold is floored at 0 here, which already means "slice every table as
    far as the world size and its width allow". None when no slicing is needed.
    """
    if world_size <= len(table_sizes):
        return None
    largest_first = [-size for size in table_sizes]  # a heap: one split costs log(pieces)
    heapq.heapify(largest_first)
    threshold = 0
    for _ in range(world_size - len(table_sizes)):
        largest = -heapq.heappop(largest_first)
        threshold = largest - 1
        heapq.heappush(largest_first, -(largest // 2))
        heapq.heappush(largest_first, -(largest // 2))
    return max(threshold, 0)


def column_slice_count(elements: int, width: int, threshold: int | None, world_size: int) -> int:
    """Smallest power of two of slices with each at most ``threshold`` elements.

    Capped at the world size and at the width (a slice is at least one column). A
    threshold of 0 asks for as many slices as the caps allow.
    """
    if threshold is None or elements <= threshold:
        return 1
    if threshold == 0:
        wanted = width
    else:
        wanted = 1
        while elements > threshold * wanted:
            wanted *= 2
    return min(wanted, world_size, width)


def split_evenly(total: int, parts: int) -> list[int]:
    """``parts`` sizes summing to ``total``, the remainder going one each to the first ones."""
    base, remainder = divmod(total, parts)
    return [base + 1 if i < remainder else base for i in range(parts)]


def ranges_from_sizes(sizes: list[int]) -> list[tuple[int, int]]:
    """Consecutive half-open ranges of the given sizes, starting at 0."""
    ranges, start = [], 0
    for size in sizes:
        ranges.append((start, start + size))
        start += size
    return ranges
