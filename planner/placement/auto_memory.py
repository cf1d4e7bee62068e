"""``auto``'s balanced placements: row slicing by tiers, then the wrap-around pour.

See ``planner.placement.auto`` for the whole strategy; this is its memory half, the
candidates that bring the largest rank as close to the mean as the tables allow.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from planner.costs.comm import plain_sum
from planner.placement.candidate import Candidate, PieceList, Split

ROW_TIERS = (None, *(1 / 2**k for k in range(1, 10)))  # None: no row slicing; 1/2 ... 1/512
BALANCED = 0.02  # a candidate within 2% of the mean rank ends the search over tiers
LIGHT = 1 / 64  # tables up to this share of a rank are dealt by traffic
CAP_PRECISION = 1e-4  # binary search on the cap stops within this fraction of the mean


class WrapAround:
    """Mixin of ``auto``'s model: the balanced candidates (memory objective).

    Uses the model's per-table numbers (``bytes``, ``column_bytes``, ``unit_bytes``,
    ``traffic``), its ``others`` (tables not replicated), ``mean`` and ``candidate``.
    """

    def auto_candidates(self, also: Sequence[WrapAround] = ()) -> list[Candidate]:
        """The four variants for each row-slicing tier, until one is balanced or a tier
        does no better than the one before. Models in ``also`` (another row reduction)
        score each of them with row-sliced tables too: the placements are theirs as well,
        and making them is most of the work."""
        candidates, seen, best = [], set(), None
        for tier in ROW_TIERS if self.split_ok else (None,):
            row_sliced = tuple(
                t for t in self.others if tier is not None and self.unit_bytes[t] > tier * self.mean
            )
            if row_sliced in seen:
                continue
            seen.add(row_sliced)
            poured = [t for t in self.others if t not in set(row_sliced)]
            light = [t for t in poured if self.bytes[t] <= LIGHT * self.mean]
            heavy = [t for t in poured if self.bytes[t] > LIGHT * self.mean]
            variants = [([], poured)] + ([(light, heavy)] if light else [])
            made = [
                self._wrap(list(row_sliced), order(rest), dealt)
                for dealt, rest in variants
                for order in (self._interleaved, self._widest_first)
            ]
            batch = [self.candidate(*args) for args in made]
            candidates += batch
            candidates += [model.candidate(*args) for model in also if row_sliced for args in made]
            largest = min(c.max_bytes for c in batch)
            if largest <= (1 + BALANCED) * self.mean or (best is not None and largest >= best):
                break
            best = largest
        return candidates

    def _widest_first(self, tables: list[int]) -> list[int]:
        return sorted(tables, key=lambda t: (-self.column_bytes[t], -self.bytes[t], t))

    def _interleaved(self, tables: list[int]) -> list[int]:
        """Tables with more traffic per byte than average merged with those with less, so
        that every prefix of the order carries about its share of the traffic; each kind
        widest columns first."""
        total_traffic = plain_sum(self.traffic[t] for t in tables)
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

    def _wrap(
        self, row_sliced: list[int], order: list[int], dealt: Sequence[int] = ()
    ) -> tuple:
        """Row-slice those tables, deal the ``dealt`` ones whole to the ranks with the least
        traffic, pour the others around the ranks at the smallest cap: ``candidate``'s
        arguments."""
        base, splits = self._row_slicing(row_sliced)
        whole = self._deal(dealt, base)  # their bytes join base
        poured = self._pour(order, self._smallest_cap(order, base), base)
        assert poured is not None
        loads = list(base)
        for t, rank, width in poured:
            loads[rank] += width * self.column_bytes[t]
        pieces = whole + poured
        return loads, pieces, row_sliced, splits, self.replicas, self.replica_threshold

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

    def _row_slicing(self, rows: list[int]) -> tuple[list[int], dict[int, Split]]:
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

    def _pour(self, order: list[int], cap: int, base: list[int]) -> PieceList | None:
        """Wrap-around at ``cap``: (table, rank, columns) pieces in rank order, or None.

        Ranks fill from the front of ``order``; when the front table's next column does
        not fit, the space left on the rank is filled from the back of ``order``.
        """
        world, rank, load, pieces = self.world, 0, base[0], []
        left = [self.tables[t].width for t in order]
        front, back = 0, len(order) - 1
        multiple, column_bytes = self.multiple, self.column_bytes
        while front <= back:
            t = order[front]
            column = column_bytes[t]
            fit = (cap - load) // column
            if fit >= left[front]:
                pieces.append((t, rank, left[front]))
                load += left[front] * column
                front += 1
                continue
            fit -= fit % multiple  # cut only on a multiple of the column multiple
            if fit > 0:
                pieces.append((t, rank, fit))
                left[front] -= fit
                load += fit * column
            while back > front:
                u = order[back]
                take = min((cap - load) // column_bytes[u], left[back])
                if take < left[back]:
                    take -= take % multiple
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
        widest = max((self.unit_bytes[t] for t in order), default=0)
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
