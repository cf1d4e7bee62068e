"""Strategy ``auto``: choose slicing and placement to minimise the largest rank's bytes.

Upstream's strategies only place what its thresholds slice, so with more tables than
ranks one huge table holds a rank at many times the mean. ``auto`` slices for balance
itself, within what the runtime builds:

1. **Replicas.** ``data_parallel_threshold`` is honoured when set (0 = none). When it is
   null, the smallest tables are replicated as long as all replicas together cost at
   most ``REPLICA_BUDGET`` of a rank's share: they then need no all-to-all at all.
2. **Row slicing.** For a tier ``e`` (none, then 1/2, 1/4, ... 1/512 of the mean rank), a
   table one column of which is above ``e`` x the mean rank bytes is row-sliced over all
   ranks: it adds bytes / world to every rank, and its remainder rows go to the ranks
   after the previous table's remainder rows.
3. **Wrap-around placement** (McNaughton's rule with one column as the unit). The other
   tables, in a pour order, fill ranks 0, 1, 2, ...: a rank takes whole columns of the
   current table until the next column would take it over a cap, and the table
   continues on the next rank. When a column does not fit, the space left on the rank is
   filled with columns from the end of the order. Every table thus lies on ascending
   ranks with consecutive column ranges in rank order, one piece per rank, and only
   tables at a rank's edge are cut. The cap is the smallest at which everything fits
   (binary search): close to the mean, within about a column of the tables at the
   ranks' edges.
   Two pour orders are tried. *Widest columns first* leaves the narrowest columns at
   the end of the order, to fill with. *Interleaved* merges tables with more traffic per
   byte than average and tables with less, so that every stretch of a rank's bytes
   carries its share of the all-to-all traffic. Each order is tried on all the tables,
   and again after *dealing* the small ones (at most ``LIGHT`` of a rank's share) whole,
   each to the rank with the least traffic so far. Small tables carry as much traffic
   per lookup as big ones, so a rank holding a run of them would be the slowest in
   every exchange.
4. **Choice.** Tiers are tried in order until a candidate is balanced (its largest rank
   within ``BALANCED`` of the mean). Upstream's three strategies are scored on the same spec.
   A candidate counts as balanced when its largest rank is within ``TOLERANCE`` of the
   best candidate's or within ``BALANCED`` of the mean, and it is never above the best
   upstream strategy's. Among those, the least estimated communication time per step
   wins (then the smaller largest rank, then the earlier candidate). So ``auto`` is
   never worse than upstream's best strategy, and when it takes an upstream placement
   the plan names that strategy (``parameters.requested_strategy`` stays ``auto``).

The communication estimate is planner.costs.comm's model (docs/cost_model.md), computed from
the pieces directly with comm's all-to-all and allreduce arithmetic (no plan is written
per candidate), at the spec's global batch size or ``DEFAULT_BATCH`` samples.

Without data-parallel input (``dp_input: false``) or with one rank there are neither
replicas nor row-sliced tables: only column slicing and placement. The spec's column and
row-slice thresholds are upstream's knobs; ``auto``'s own placements do not use them.

Bytes here are weight bytes (rows x width x dtype size). Optimizer state multiplies every
weight's bytes by the same factor, so the ranking is the same with it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from planner.costs.comm import GIGABYTE, all_to_all, plain_sum, ring_allreduce_bytes
from planner.placement.grouping import (
    EffectiveThresholds,
    TableGroups,
    group_inputs,
    table_of_input,
)
from planner.placement.layout import Piece, inputs_by_table, rank_layout
from planner.placement.result import Placement
from planner.placement.slicing import ranges_from_sizes
from planner.placement.upstream import UPSTREAM_STRATEGIES, upstream_placement
from planner.spec import DTYPE_BYTES, Spec

REPLICA_BUDGET = 1e-3  # all automatic replicas together, as a fraction of a rank's share
ROW_TIERS = (None, *(1 / 2**k for k in range(1, 10)))  # None: no row slicing; 1/2 ... 1/512
TOLERANCE = 0.01  # largest ranks within 1% of the best count as equal; communication decides
BALANCED = 0.03  # and so do all within 3% of the mean rank
CAP_PRECISION = 1e-6  # binary search on the cap stops within this fraction of the mean
DEFAULT_BATCH = 65536  # samples per step for the communication estimate, if the spec has none
LIGHT = 1 / 64  # tables up to this share of a rank are dealt by traffic

PieceList = list[tuple[int, int, int]]  # (table, rank, columns)


@dataclass(frozen=True)
class Candidate:
    """One complete placement, scored; ``build`` makes its Placement."""

    max_bytes: int
    comm_seconds: float
    build: Callable[[], Placement]


def auto_placement(spec: Spec) -> Placement:
    """The ``auto`` placement of a spec (see the module docstring)."""
    spec = spec.normalized()
    model = _Model(spec)
    return choose(model.auto_candidates(), model.upstream_candidates(), model.mean).build()


def choose(ours: list[Candidate], upstream: list[Candidate], mean: float) -> Candidate:
    """Least communication among the balanced candidates; never above the best upstream.

    Balanced: the largest rank within ``TOLERANCE`` of the best candidate's, or within
    ``BALANCED`` of the mean rank.
    """
    everything = ours + upstream
    best = min(c.max_bytes for c in everything)
    balanced = max(best * (1 + TOLERANCE), mean * (1 + BALANCED))
    ceiling = min(balanced, min(c.max_bytes for c in upstream))
    eligible = [
        (c.comm_seconds, c.max_bytes, order)
        for order, c in enumerate(everything)
        if c.max_bytes <= ceiling
    ]
    return everything[min(eligible)[2]]


class _Model:
    """A spec's per-table numbers, the candidate placements, and their scores."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.tables = spec.tables
        self.world = spec.world_size
        self.split_ok = spec.dp_input and self.world > 1
        inputs = spec.resolved_inputs()
        self.table_of_input = table_of_input(self.tables, inputs)
        count = len(self.tables)
        self.hotness, self.readers = [0] * count, [0] * count
        for inp, table in zip(inputs, self.table_of_input, strict=True):
            self.hotness[table] += inp.hotness
            self.readers[table] += 1
        self.column_bytes = [t.rows * t.itemsize for t in self.tables]
        self.bytes = [c * t.width for c, t in zip(self.column_bytes, self.tables, strict=True)]
        self._communication_terms()
        self.replicas, self.replica_threshold = self._replicas()
        replicated = set(self.replicas)
        self.others = [t for t in range(count) if t not in replicated]
        self.replica_bytes = sum(self.bytes[t] for t in self.replicas)
        self.mean = self.replica_bytes + sum(self.bytes[t] for t in self.others) / self.world

    # -- communication ------------------------------------------------------------------

    def _communication_terms(self) -> None:
        """Per table: bytes a holder receives from each other rank (ids), and sends to
        each other rank per column it holds (embeddings), in one step."""
        spec = self.spec
        local = (spec.global_batch_size or DEFAULT_BATCH) / self.world
        id_bytes = spec.id_bytes if spec.dp_input else 0
        out = DTYPE_BYTES[spec.compute_dtype]
        self.id_cost = [local * h * id_bytes for h in self.hotness]
        self.column_cost = [local * n * out for n in self.readers]
        # traffic per sample, for ordering only
        self.traffic = [
            h * id_bytes + n * t.width * out
            for h, n, t in zip(self.hotness, self.readers, self.tables, strict=True)
        ]
        self.alltoall_rate = spec.alltoall_bandwidth * GIGABYTE
        self.allreduce_rate = spec.allreduce_bandwidth * GIGABYTE

    def comm_seconds(self, pieces: PieceList, row_sliced: list[int], replicas: list[int]) -> float:
        """Estimated communication time per step: each phase lasts as long as its busiest
        rank (the larger of its bytes sent and received), phases one after another."""
        world = self.world
        held_ids, sent_columns = [0.0] * world, [0.0] * world
        for t, rank, width in pieces:
            held_ids[rank] += self.id_cost[t]
            sent_columns[rank] += self.column_cost[t] * width
        ids = max(map(max, *all_to_all(held_ids)))
        embeddings = max(map(max, *all_to_all(sent_columns)))
        rows = (world - 1) * plain_sum(
            self.id_cost[t] + 2 * self.column_cost[t] * self.tables[t].width for t in row_sliced
        )
        gradients = sum(
            ring_allreduce_bytes(self.bytes[t], world) for t in replicas if self.readers[t]
        )
        return (ids + 2 * embeddings) / self.alltoall_rate + (
            rows + gradients
        ) / self.allreduce_rate

    # -- replicas -----------------------------------------------------------------------

    def _replicas(self) -> tuple[list[int], int | None]:
        """Data-parallel tables (spec order) and the element threshold that selects them."""
        if not self.split_ok:
            return [], None
        threshold = self.spec.data_parallel_threshold
        if threshold is None:
            threshold = self._automatic_replica_threshold()
        if not threshold:
            return [], None
        return [i for i, t in enumerate(self.tables) if t.elements <= threshold], threshold

    def _automatic_replica_threshold(self) -> int | None:
        """The largest element count such that replicating every table up to it is cheap."""
        budget = REPLICA_BUDGET * sum(self.bytes) / self.world
        order = sorted(range(len(self.tables)), key=lambda t: self.tables[t].elements)
        spent, threshold, k = 0, None, 0
        while k < len(order):
            elements = self.tables[order[k]].elements
            while k < len(order) and self.tables[order[k]].elements == elements:
                spent += self.bytes[order[k]]
                k += 1
            if spent > budget:
                break
            threshold = elements
        return threshold

    # -- upstream's placements ----------------------------------------------------------

    def upstream_candidates(self) -> list[Candidate]:
        names = UPSTREAM_STRATEGIES if self.world > 1 else ("basic",)
        candidates = []
        for name in names:
            placement = upstream_placement(self.spec.model_copy(update={"strategy": name}))
            pieces = [
                (piece.table, rank, piece.width)
                for rank, layout in enumerate(placement.layouts)
                for piece in layout.pieces
            ]
            groups = placement.groups
            candidates.append(
                Candidate(
                    max_bytes=max(self.loads(placement)),
                    comm_seconds=self.comm_seconds(pieces, groups.row_sliced, groups.data_parallel),
                    build=lambda p=placement: p,
                )
            )
        return candidates

    def loads(self, placement: Placement) -> list[int]:
        """Weight bytes per rank of any placement, replicas included."""
        replicas = sum(self.bytes[t] for t in placement.groups.data_parallel)
        loads = [replicas] * self.world
        for rank, layout in enumerate(placement.layouts):
            for piece in layout.pieces:
                loads[rank] += self.column_bytes[piece.table] * piece.width
        for t, ranges in placement.row_ranges.items():
            row_bytes = self.bytes[t] // self.tables[t].rows
            for rank, (start, stop) in enumerate(ranges):
                loads[rank] += (stop - start) * row_bytes
        return loads

    # -- auto's placements --------------------------------------------------------------

    def auto_candidates(self) -> list[Candidate]:
        """The four variants for each row-slicing tier, until one is balanced."""
        candidates, seen = [], set()
        for tier in ROW_TIERS if self.split_ok else (None,):
            row_sliced = tuple(
                t
                for t in self.others
                if tier is not None and self.column_bytes[t] > tier * self.mean
            )
            if row_sliced in seen:
                continue
            seen.add(row_sliced)
            poured = [t for t in self.others if t not in set(row_sliced)]
            light = [t for t in poured if self.bytes[t] <= LIGHT * self.mean]
            heavy = [t for t in poured if self.bytes[t] > LIGHT * self.mean]
            variants = [([], poured)] + ([(light, heavy)] if light else [])
            batch = [
                self._wrap(list(row_sliced), order(rest), dealt)
                for dealt, rest in variants
                for order in (self._interleaved, self._widest_first)
            ]
            candidates += batch
            if min(c.max_bytes for c in batch) <= (1 + BALANCED) * self.mean:
                break
        return candidates

    def _widest_first(self, tables: list[int]) -> list[int]:
        return sorted(tables, key=lambda t: (-self.column_bytes[t], -self.bytes[t], t))

    def _interleaved(self, tables: list[int]) -> list[int]:
        """Tables with more traffic per byte than average merged with those with less, so
        that every prefix of the order carries about its share of the traffic; each kind
        widest columns first."""
        total_traffic = sum(self.traffic[t] for t in tables)
        total_bytes = sum(self.bytes[t] for t in tables)
        heavy, light = [], []
        for t in self._widest_first(tables):
            dense = self.traffic[t] * total_bytes > total_traffic * self.bytes[t]
            (heavy if dense else light).append(t)
        order, traffic, size, i, j = [], 0, 0, 0, 0
        while i < len(heavy) or j < len(light):
            behind = traffic * total_bytes <= total_traffic * size
            if j == len(light) or (i < len(heavy) and behind):
                t, i = heavy[i], i + 1
            else:
                t, j = light[j], j + 1
            order.append(t)
            traffic += self.traffic[t]
            size += self.bytes[t]
        return order

    def _wrap(self, row_sliced: list[int], order: list[int], dealt: list[int] = ()) -> Candidate:
        """Row-slice those tables, deal the ``dealt`` ones whole to the ranks with the least
        traffic, pour the others around the ranks at the smallest cap."""
        base, splits = self._row_slicing(row_sliced)
        whole = self._deal(dealt, base)  # their bytes join base
        poured = self._pour(order, self._smallest_cap(order, base), base)
        assert poured is not None
        loads = list(base)
        for t, rank, width in poured:
            loads[rank] += width * self.column_bytes[t]
        pieces = whole + poured
        return Candidate(
            max_bytes=max(loads),
            comm_seconds=self.comm_seconds(pieces, row_sliced, self.replicas),
            build=lambda: self._placement(row_sliced, splits, pieces),
        )

    def _deal(self, tables: list[int], base: list[int]) -> PieceList:
        """Each table whole to the rank with the least traffic so far (then fewest bytes),
        most traffic first; ``base`` takes their bytes."""
        heap = [(0, base[rank], rank) for rank in range(self.world)]
        pieces = []
        for t in sorted(tables, key=lambda t: (-self.traffic[t], -self.bytes[t], t)):
            traffic, size, rank = heapq.heappop(heap)
            pieces.append((t, rank, self.tables[t].width))
            base[rank] += self.bytes[t]
            heapq.heappush(heap, (traffic + self.traffic[t], size + self.bytes[t], rank))
        return pieces

    def _row_slicing(self, rows: list[int]) -> tuple[list[int], dict[int, tuple[int, int, int]]]:
        """Per-rank bytes of replicas and row slices; per row-sliced table its row split.

        A table's split is (rows per rank, remainder, first rank with one more row): the
        remainder rows go one each to the ranks after the previous table's, so no rank
        collects them all.
        """
        world, start = self.world, 0
        even_bytes = self.replica_bytes
        extra_bytes = [0] * (world + 1)  # difference array of the remainder rows' bytes
        splits = {}
        for t in rows:
            even, extra = divmod(self.tables[t].rows, world)
            splits[t] = (even, extra, start)
            row_bytes = self.bytes[t] // self.tables[t].rows
            even_bytes += even * row_bytes
            stop = start + extra
            extra_bytes[start] += row_bytes
            if stop <= world:
                extra_bytes[stop] -= row_bytes
            else:
                extra_bytes[world] -= row_bytes
                extra_bytes[0] += row_bytes
                extra_bytes[stop - world] -= row_bytes
            start = stop % world
        base, running = [], 0
        for rank in range(world):
            running += extra_bytes[rank]
            base.append(even_bytes + running)
        return base, splits

    @staticmethod
    def _row_ranges(split: tuple[int, int, int], world: int) -> list[tuple[int, int]]:
        even, extra, start = split
        counts = [even] * world
        for k in range(extra):
            counts[(start + k) % world] += 1
        return ranges_from_sizes(counts)

    def _pour(self, order: list[int], cap: int, base: list[int]) -> PieceList | None:
        """Wrap-around at ``cap``: (table, rank, columns) pieces in rank order, or None.

        Ranks fill from the front of ``order``; when the front table's next column does
        not fit, the space left on the rank is filled from the back of ``order``.
        """
        world, rank, load, pieces = self.world, 0, base[0], []
        left = [self.tables[t].width for t in order]
        front, back = 0, len(order) - 1
        while front <= back:
            t = order[front]
            column = self.column_bytes[t]
            fit = (cap - load) // column
            if fit >= left[front]:
                pieces.append((t, rank, left[front]))
                load += left[front] * column
                front += 1
                continue
            if fit > 0:
                pieces.append((t, rank, fit))
                left[front] -= fit
                load += fit * column
            while back > front:
                u = order[back]
                take = min((cap - load) // self.column_bytes[u], left[back])
                if take <= 0:
                    break
                pieces.append((u, rank, take))
                load += take * self.column_bytes[u]
                left[back] -= take
                if left[back]:
                    break
                back -= 1
            rank += 1
            if rank == world:
                return None
            load = base[rank]
        return pieces

    def _smallest_cap(self, order: list[int], base: list[int]) -> int:
        """The smallest cap (to CAP_PRECISION) at which the wrap-around places everything."""
        total = sum(base) + sum(self.bytes[t] for t in order)
        low = max(-(-total // self.world), max(base)) - 1  # below this nothing fits
        widest = max((self.column_bytes[t] for t in order), default=0)
        high = low + 1 + widest
        while self._pour(order, high, base) is None:
            high += high - low
        step = max(1, int(self.mean * CAP_PRECISION))
        while high - low > step:
            middle = (low + high) // 2
            if self._pour(order, middle, base) is not None:
                high = middle
            else:
                low = middle
        return high

    def _placement(self, rows: list[int], splits: dict, pieces: PieceList) -> Placement:
        per_rank: list[list[Piece]] = [[] for _ in range(self.world)]
        widest: dict[int, int] = {}
        count: dict[int, int] = {}
        start: dict[int, int] = {}
        for t, rank, width in sorted(pieces, key=lambda piece: piece[1]):
            first = start.get(t, 0)
            per_rank[rank].append(Piece(table=t, width=width, cols=(first, first + width)))
            start[t] = first + width
            widest[t] = max(widest.get(t, 0), width)
            count[t] = count.get(t, 0) + 1
        cut = [widest[t] * self.tables[t].rows for t in count if count[t] > 1]
        readers = inputs_by_table(
            [i for i, t in enumerate(self.table_of_input) if t in count], self.table_of_input
        )
        layouts = [
            rank_layout(sorted(held, key=lambda p: p.table), self.tables, readers)
            for held in per_rank
        ]
        groups = TableGroups(
            data_parallel=list(self.replicas),
            table_parallel=sorted(count),
            row_sliced=sorted(rows),
        )
        return Placement(
            strategy="auto",
            groups=groups,
            thresholds=EffectiveThresholds(
                data_parallel=self.replica_threshold,
                row_slice=min((self.tables[t].elements for t in rows), default=None),
            ),
            column_threshold=max(cut) if cut else None,
            threshold_source="auto" if cut else "none",
            layouts=layouts,
            row_ranges={t: self._row_ranges(splits[t], self.world) for t in sorted(rows)},
            input_groups=group_inputs(groups, self.table_of_input),
        )
