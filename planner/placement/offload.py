"""Step 5: which table-parallel pieces live in host memory instead of on the GPU.

Runs on any strategy's placement, after a table's slices on a rank are merged into one
piece and before pieces are fused: an offloaded piece becomes a weight of its own, fused
with no other (``layout.fuse``), so every weight lives wholly on one device. Row slices
and data-parallel tables always stay on the GPU, as upstream keeps them.

``Spec.offload`` names the rule:

- ``upstream`` (``gpu_embedding_size``): upstream's rule, rank by rank. The rank's pieces,
  smallest first by elements (rows x columns; pieces of equal size in the rank's order),
  stay on the GPU while the running total of their elements is at most
  ``gpu_embedding_size``; the first piece past it goes to host memory, and so does every
  piece after it. So the largest pieces go, and the elements kept are at most the limit.
  Elements, not bytes: dtypes and optimizer state do not enter.
- ``auto`` (``device_memory``): on each rank that does not fit its usable device memory,
  the fewest bytes (weights and their optimizer state) go to host memory that make it
  fit; see ``offload_search``. A rank whose replicas and row slices alone overflow
  offloads every piece, and the capacity check then reports it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from planner.costs.memory import usable_memory
from planner.placement.grouping import table_of_input
from planner.placement.layout import inputs_by_table, rank_layout
from planner.placement.result import Placement
from planner.spec import Spec
from planner.units import optimizer_slots

# Steps (totals extended) the exact search may take on one rank: 2^18 covers every set of
# up to 18 pieces; beyond, the search stops and the rest is filled in largest first.
EXACT_WORK = 1 << 18


def with_offload(spec: Spec, placement: Placement) -> Placement:
    """The placement with the spec's offload rule applied (unchanged for ``none``)."""
    if spec.offload == "none":
        return placement
    tables = spec.tables
    if spec.offload == "upstream":
        assert spec.gpu_embedding_size is not None  # the spec requires it
        flags = [
            upstream_rule(
                [tables[p.table].rows * p.width for p in layout.pieces], spec.gpu_embedding_size
            )
            for layout in placement.layouts
        ]
    else:
        flags = _auto_flags(spec, placement)
    readers = inputs_by_table(
        placement.input_groups.table_parallel, table_of_input(tables, spec.resolved_inputs())
    )
    layouts = [
        rank_layout(
            [
                replace(piece, on_host=on_host)
                for piece, on_host in zip(layout.pieces, rank_flags, strict=True)
            ],
            tables,
            readers,
        )
        for layout, rank_flags in zip(placement.layouts, flags, strict=True)
    ]
    return replace(placement, layouts=layouts)


def upstream_rule(elements: list[int], budget: int) -> list[bool]:
    """Offloaded or not, per piece: smallest first, kept while the running total fits.

    ``sorted`` is stable, so of pieces of equal size the earlier one on the rank is kept.
    """
    offloaded = [False] * len(elements)
    running = 0
    for index in sorted(range(len(elements)), key=lambda i: elements[i]):
        running += elements[index]
        offloaded[index] = running > budget
    return offloaded


class Search(NamedTuple):
    """Per piece, offloaded or not; and whether that is the fewest bytes possible (else
    it is within the smallest offloaded piece of it)."""

    offloaded: list[bool]
    exact: bool


def offload_search(sizes: list[int], room: int) -> Search:
    """Which pieces to offload so the kept ones fit ``room``, offloading the fewest bytes
    (keeping the most: a subset-sum problem).

    Exact search: the distinct totals the kept pieces can reach, at most ``room``, each
    with the first set found to reach it, pieces taken largest first (then in the rank's
    order). It ends early when a total equals ``room``, and is exact whenever it
    considers every piece within ``EXACT_WORK`` steps (always for up to 18 pieces). Past
    that it stops, and the pieces left out are then kept largest first wherever they
    still fit. After that fill every offloaded piece is larger than the room left, so
    the bytes offloaded exceed the least possible (the pieces' total less ``room``) by
    less than the smallest offloaded piece.
    """
    count = len(sizes)
    if sum(sizes) <= room:
        return Search([False] * count, exact=True)
    if room < 0:
        return Search([True] * count, exact=True)
    order = sorted(range(count), key=lambda i: (-sizes[i], i))
    reach = {0: 0}  # kept total -> bit mask of the positions in ``order`` kept
    work, exact = 0, True
    for position, index in enumerate(order):
        work += len(reach)
        if room in reach:
            break
        if work > EXACT_WORK:
            exact = False
            break
        grown: dict[int, int] = {}
        for total, kept in reach.items():
            larger = total + sizes[index]
            if larger <= room and larger not in reach and larger not in grown:
                grown[larger] = kept | 1 << position
        reach.update(grown)
    best = max(reach)
    kept_mask, left = reach[best], room - best
    offloaded = [True] * count
    for position, index in enumerate(order):
        if kept_mask >> position & 1:
            offloaded[index] = False
        elif sizes[index] <= left:
            offloaded[index] = False
            left -= sizes[index]
    return Search(offloaded, exact or left == 0)


def _auto_flags(spec: Spec, placement: Placement) -> list[list[bool]]:
    """Per rank, ``offload_search`` in bytes with optimizer state, against the room
    its replicas and row slices leave in the usable device memory."""
    assert spec.device_memory is not None  # the spec requires it
    tables, factor = spec.tables, 1 + optimizer_slots(spec.optimizer)
    limit = usable_memory(spec.device_memory, spec.memory_reserve)
    replicas = sum(tables[t].elements * tables[t].itemsize for t in placement.groups.data_parallel)
    flags = []
    for rank, layout in enumerate(placement.layouts):
        rows = sum(
            (ranges[rank][1] - ranges[rank][0]) * tables[t].width * tables[t].itemsize
            for t, ranges in placement.row_ranges.items()
        )
        sizes = [tables[p.table].rows * p.width * tables[p.table].itemsize for p in layout.pieces]
        room = limit - (replicas + rows) * factor
        flags.append(offload_search([size * factor for size in sizes], room).offloaded)
    return flags
