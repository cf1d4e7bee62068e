"""``auto``'s fast placements: replicas where they pay, whole tables on the least busy rank.

See ``planner.placement.auto`` for the whole strategy; this is its time half. A table's
*load* is what holding it costs its rank per step in the step-time model
(``planner.costs.steptime``): receiving its ids, sending its outputs and their
gradients, and its lookups forward and backward. Tables are placed largest load first,
each on the rank with the least load so far that has room for it (a list-scheduling
rule, within 4/3 of the best balance of loads), so no rank becomes the step's critical
path by much.

- **Replicas.** A table is replicated when the allreduce of its gradient and its local
  lookups cost less than its share of the step whole on one rank (its load over the
  world size), most gain per byte first, while the replicas fit in half of what a rank
  has left beyond its share of the rest. A spec's ``data_parallel_threshold`` is
  honoured instead when set.
- **Column cuts.** Each column piece receives every id of its table and pays the
  per-id lookup cost again, so a cut adds load. One variant never cuts; another cuts
  a table whose load is above the mean rank's into pieces (multiples of
  ``column_multiple`` columns) only when its largest piece then costs less than the
  whole table. The estimate of the complete placement decides between them.
- **Spreading.** A variant also cuts every table larger than the mean rank's bytes into
  pieces no larger than that, then deals all pieces by bytes within ``SLACK`` of the
  busiest rank's load: a large, lightly read table's pieces cost little each (their ids
  once more), so ranks with time to spare take them, and the largest rank shrinks at
  the same step (``auto`` keeps it only within its tie of the fastest).
- **Row splits over a host.** With ``dp_input`` and several hosts of
  ``gpus_per_host`` ranks (the world a multiple of it), a variant splits the rows of
  each table whose whole load is above the mean rank's over one host's ranks, where
  that lowers its holders' load (each receives and looks up its share of the ids, but
  sends full-width partial sums, or with ``row_reduction: host`` the host's sums for
  its position): each on the least loaded host with room.
- **Memory.** A rank takes a piece only when it fits next to what it holds. Every
  variant keeps its pieces within half a rank's room, which packs easily; where a table
  is larger than that, it runs again with pieces up to a whole rank's room, so that
  such a table is cut into fewer pieces (each receives all its ids). A table that needs
  more than the largest piece even cut as far as its width allows is row-sliced over
  all ranks (``dp_input`` only).
- **Stage search.** Every distinct candidate that fits within ``SEARCH_RANGE`` of the
  fastest is then improved by ``placement.stage_search`` (moves and swaps of pieces
  that shorten the stages the summed-load balance leaves long); the improved ones join
  the candidates, and the fastest of them is searched again with ``KICKS`` random
  restarts (only it: each restart costs about a descent).
- **Row reduction.** Where ``auto`` weighs both row reductions (``placement.auto``), each
  has a model of its own; their candidates are searched as one list, so the kicks go to
  the fastest of either.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property

from planner.costs.comm import ROW_PARTIAL_BYTES, plain_sum, ring_allreduce_bytes
from planner.costs.steptime import (
    BACKWARD_FACTOR,
    LOOKUP_SECONDS,
    Holdings,
    rank_traffic,
    row_read,
)
from planner.placement.candidate import Candidate, PieceList, Split, split_counts
from planner.placement.scheduling import schedule
from planner.placement.slicing import split_evenly
from planner.placement.stage_search import KICKS, StageSearch

MEMORY_SHARE = 0.5  # no piece above this share of a rank's room; replicas in this much
PIECE_SHARES = (MEMORY_SHARE, 1.0)  # largest piece of each greedy run, share of a rank's room
# (cut, balance, spread) of each greedy variant; spreading only makes sense re-dealt by bytes
VARIANTS = [(cut, balance, False) for cut in (False, True) for balance in (False, True)]
VARIANTS.append((True, True, True))
SLACK = 0.02  # balancing bytes may raise a rank's load to this much over the busiest's
SEARCH_RANGE = 0.05  # the stage search starts from every candidate this close to the fastest


def fast_candidates(models: Sequence[FastPlacements]) -> list[Candidate]:
    """The greedy placements of every model (one per row reduction ``auto`` weighs), and
    the stage search's improvements of those worth it: each distinct one that fits
    within ``SEARCH_RANGE`` of the fastest that does, then the fastest of those again
    with ``KICKS`` random restarts (only it: each restart costs about a descent)."""
    found = [c for model in models for c in model.greedy_candidates()]
    searched = [c.shorten(0) for c in _worth_searching(found, models[0].fits)]
    if not searched:
        return found
    fastest = min(searched, key=lambda c: (c.step_seconds, c.max_bytes))
    return found + searched + [fastest.shorten(KICKS)]


def _worth_searching(found: list[Candidate], fits: Callable[[Candidate], bool]) -> list[Candidate]:
    """The candidates the stage search shortens: each distinct one that fits within
    ``SEARCH_RANGE`` of the fastest that does (a search from a slower start often ends
    faster and smaller: it has more room to move pieces into)."""
    fitting = [c for c in found if fits(c) and c.shorten is not None]
    if not fitting:
        return []
    ceiling = min(c.step_seconds for c in fitting) * (1 + SEARCH_RANGE)
    distinct = {(c.step_seconds, c.max_bytes): c for c in fitting if c.step_seconds <= ceiling}
    return [distinct[key] for key in sorted(distinct)]


class FastPlacements:
    """Mixin of ``auto``'s model: the fast candidates (time objective).

    Uses the model's ``loads``, ``step_config``, ``bytes``, ``column_bytes``,
    ``unit_bytes``, ``weight_limit``, ``multiple``, ``fits``, ``candidate`` and
    ``row_sliced_only`` (a model that weighs ``row_reduction: host`` beside another that
    weighs direct: its placements without row-sliced tables would repeat the other's).
    """

    def greedy_candidates(self) -> list[Candidate]:
        """Greedy placements with and without the replicas that pay, with and without cuts."""
        if self.world == 1:
            return []
        choices = [self._paying_replicas()]
        if choices[0][0]:
            choices.append(([], None))
        found = []
        for replicas, threshold in choices:
            for hosts in (False, True) if self._host_size() else (False,):
                for (cut, balance, spread), share in itertools.product(VARIANTS, PIECE_SHARES):
                    candidate = self._greedy(
                        replicas, threshold, cut, balance, hosts, spread, share
                    )
                    if candidate is not None:
                        found.append(candidate)
        return found

    # -- loads ----------------------------------------------------------------------------

    def piece_seconds(self, t: int, cols: int) -> float:
        """What holding ``cols`` columns of table ``t`` costs its rank per step (kept once
        worked out: the greedy asks for the same pieces' loads again and again, over a
        million times for 20,000 tables on 4,096 ranks)."""
        known = self.__dict__.setdefault("_piece_seconds", {})
        if (t, cols) not in known:
            known[t, cols] = self._worked_out_piece_seconds(t, cols)
        return known[t, cols]

    def _worked_out_piece_seconds(self, t: int, cols: int) -> float:
        config, load = self.step_config, self.loads[t]
        b, batch = config.local_batch, config.global_batch_size
        id_size = config.id_bytes if config.dp_input else 0
        per_peer = b * load.ids_per_sample * id_size
        per_peer += 2 * b * load.outputs_per_sample * cols * config.output_bytes
        ids = batch * load.ids_per_sample
        memory = ids * (config.id_bytes + row_read(cols, load.itemsize))
        memory += batch * load.outputs_per_sample * cols * config.output_bytes
        forward = memory / config.memory_bandwidth + ids * LOOKUP_SECONDS
        return per_peer * self._seconds_per_peer_byte + (1 + BACKWARD_FACTOR) * forward

    def host_split_seconds(self, t: int, holders: int) -> float:
        """What each of ``holders`` ranks splitting table ``t``'s rows evenly costs per
        step: its share of the ids (and a count per sample and input) in, full-width
        float32 partial sums out, its share of the lookups. With ``row_reduction: host``
        the partial sums go to the host's other ranks, and each rank sends the host's
        sum for its position to the other hosts (forward and backward)."""
        config, load = self.step_config, self.loads[t]
        b, batch = config.local_batch, config.global_batch_size
        outputs = load.outputs_per_sample * load.width * ROW_PARTIAL_BYTES
        counts = load.outputs_per_sample * config.id_bytes
        ids = load.ids_per_sample / holders
        per_peer = b * (counts + ids * config.id_bytes)
        memory = batch * (counts + outputs)
        memory += batch * ids * (config.id_bytes + row_read(load.width, load.itemsize))
        sums = 0.0
        if hosts := config.summing_hosts:
            g = self.world // hosts
            memory += (g + 1) * hosts * b * outputs
            sums = 2 * b * outputs * (
                (g - 1) * hosts / config.intra_bandwidth
                + (hosts - 1) / config.alltoall_bandwidth
            )
        else:
            per_peer += 2 * b * outputs
        forward = memory / config.memory_bandwidth + batch * ids * LOOKUP_SECONDS
        return (
            per_peer * self._seconds_per_peer_byte + sums + (1 + BACKWARD_FACTOR) * forward
        )

    def _host_size(self) -> int:
        """Ranks per host when rows can be split over a host: 0 when they cannot (no
        ``dp_input``, one GPU per host, one host, or the world not a multiple)."""
        g = self.step_config.gpus_per_host
        if not self.split_ok or g < 2 or g > self.world or self.world % g:
            return 0
        return g

    @cached_property
    def _seconds_per_peer_byte(self) -> float:
        """A holder's all-to-all time per byte it exchanges with each other rank."""
        config = self.step_config
        here = min(config.gpus_per_host, self.world) - 1
        return max(
            here / config.intra_bandwidth, (self.world - 1 - here) / config.alltoall_bandwidth
        )

    def replica_seconds(self, t: int) -> float:
        """What replicating table ``t`` costs the step: its gradient allreduce and the
        local lookups every rank then makes."""
        config, load = self.step_config, self.loads[t]
        b = config.local_batch
        ids = b * load.ids_per_sample
        memory = ids * (config.id_bytes + row_read(load.width, load.itemsize))
        memory += b * load.outputs_per_sample * load.width * config.output_bytes
        forward = memory / config.memory_bandwidth + ids * LOOKUP_SECONDS
        gradient = config.ring_seconds(ring_allreduce_bytes(load.bytes, self.world))
        return gradient + (1 + BACKWARD_FACTOR) * forward

    # -- replicas -------------------------------------------------------------------------

    def _paying_replicas(self) -> tuple[list[int], int | None]:
        """Tables whose replication saves time, within the memory share; and the largest
        one's elements (the plan's data_parallel_threshold)."""
        if not self.split_ok:
            return [], None
        if self.spec.data_parallel_threshold is not None:
            return list(self.replicas), self.replica_threshold
        gains = []
        for t in range(len(self.tables)):
            if not self.loads[t].outputs_per_sample:
                continue
            gain = self.piece_seconds(t, self.tables[t].width) / self.world
            gain -= self.replica_seconds(t)
            if gain > 0:
                gains.append((-gain / max(self.bytes[t], 1), t))
        budget = math.inf
        if self.weight_limit is not None:
            share = sum(self.bytes) / self.world
            budget = MEMORY_SHARE * (self.weight_limit - share)
        chosen, spent = [], 0
        for _, t in sorted(gains):
            if spent + self.bytes[t] <= budget:
                chosen.append(t)
                spent += self.bytes[t]
        chosen.sort()
        threshold = max((self.tables[t].elements for t in chosen), default=None)
        return chosen, threshold

    # -- placement ------------------------------------------------------------------------

    def _greedy(
        self, replicas: list[int], threshold: int | None, cut: bool, balance: bool,
        hosts: bool = False, spread: bool = False, share: float = MEMORY_SHARE,
    ) -> Candidate | None:
        """List scheduling of the non-replicated tables by load, within memory; with
        ``hosts``, the heaviest tables' rows split over a host first; with ``balance``,
        the pieces are then dealt again, largest first, each to the rank with the fewest
        bytes among those it keeps within ``SLACK`` of the busiest rank's load; with
        ``spread``, tables larger than the mean rank are first cut into pieces no larger
        than it (as far as their width allows), so that a rank with time to spare can take
        a piece of a large, lightly read table where it would otherwise hold all of it.
        No piece exceeds ``share`` of a rank's room; a share above ``MEMORY_SHARE`` gives
        None where no table is larger than that (the run would repeat the default's)."""
        replicated = set(replicas)
        rest = [t for t in range(len(self.tables)) if t not in replicated]
        replica_bytes = sum(self.bytes[t] for t in replicas)
        room = math.inf if self.weight_limit is None else self.weight_limit - replica_bytes
        if room <= 0:
            return None
        largest_piece = share * room
        if share > MEMORY_SHARE and all(self.bytes[t] <= MEMORY_SHARE * room for t in rest):
            return None
        row_sliced = [
            t
            for t in rest
            if self.split_ok
            and self._pieces_for_memory(t, largest_piece) > min(self._units(t), self.world)
        ]
        g = self._host_size() if hosts else 0
        on_host = [t for t in row_sliced if g and self.bytes[t] / g <= largest_piece]
        base, splits = self._row_slicing([t for t in row_sliced if t not in set(on_host)])
        base = [x - self.replica_bytes + replica_bytes for x in base]
        sliced = set(row_sliced)
        placed = [t for t in rest if t not in sliced]
        target = plain_sum(self.piece_seconds(t, self.tables[t].width) for t in placed) / self.world
        limit = room + replica_bytes
        start = [0.0] * self.world
        if hosts:
            grouped = self._split_over_hosts(on_host, placed, target, base, start, limit)
            if set(on_host) - set(grouped):
                return None  # a table too large for a rank found no host with room
            splits.update(grouped)
            row_sliced = sorted(sliced | set(grouped))
            placed = [t for t in placed if t not in grouped]
        if self.row_sliced_only and not row_sliced:
            return None
        even = (sum(base) + sum(self.bytes[t] for t in placed)) / self.world
        pieces = []
        for t in placed:
            count = max(self._pieces_for_memory(t, largest_piece), 1)
            if cut:
                count = max(count, self._pieces_for_time(t, target))
            if spread:
                count = max(count, self._pieces_for_memory(t, even))
            pieces += [(t, width) for width in self._widths(t, count)]
        pieces.sort(key=lambda p: (-self.piece_seconds(*p), -p[1] * self.column_bytes[p[0]], p))
        placement = self._schedule(pieces, base, limit, math.inf, start)
        if placement is not None and balance:
            busiest = list(start)
            for t, rank, width in placement:
                busiest[rank] += self.piece_seconds(t, width)
            by_bytes = sorted(pieces, key=lambda p: (-p[1] * self.column_bytes[p[0]], p))
            placement = self._schedule(by_bytes, base, limit, max(busiest) * (1 + SLACK), start)
        if placement is None:
            return None
        loads = list(base)
        for t, rank, width in placement:
            loads[rank] += width * self.column_bytes[t]
        return self._searchable(loads, placement, row_sliced, splits, replicas, threshold, limit)

    def _searchable(
        self,
        loads: list[int],
        placement: PieceList,
        row_sliced: list[int],
        splits: dict[int, Split],
        replicas: list[int],
        threshold: int | None,
        limit: float,
    ) -> Candidate:
        """The candidate of ``placement``, which the stage search can shorten later (only
        the fastest few are worth its time)."""
        candidate = self.candidate(loads, placement, row_sliced, splits, replicas, threshold)
        return replace(
            candidate,
            shorten=lambda kicks: self._shortened(
                loads, placement, row_sliced, splits, replicas, threshold, limit, kicks
            ),
        )

    def _shortened(
        self,
        loads: list[int],
        placement: PieceList,
        row_sliced: list[int],
        splits: dict[int, Split],
        replicas: list[int],
        threshold: int | None,
        limit: float,
        kicks: int,
    ) -> Candidate:
        """A greedy candidate after the stage search with ``kicks`` random restarts (same
        row splits and replicas); it may be searched again, with kicks."""
        rows = {t: split_counts(splits[t], self.world) for t in row_sliced}
        fixed = Holdings([[]] * self.world, rows, replicas)
        search = StageSearch(
            self.step_config,
            self.loads,
            rank_traffic(self.step_config, self.loads, fixed),
            self.column_bytes,
            limit,
        )
        placement, loads = search.shorten(placement, loads, kicks)
        return self._searchable(loads, placement, row_sliced, splits, replicas, threshold, limit)

    def _split_over_hosts(
        self,
        forced: list[int],
        tables: list[int],
        target: float,
        base: list[int],
        load: list[float],
        limit: float,
    ) -> dict[int, Split]:
        """Row splits over one host: the ``forced`` tables (too large for one rank), then
        those of ``tables`` whose whole load is above ``target`` and whose holders' load
        is then lower; heaviest first, each on the least loaded host with room. ``base``
        (bytes) and ``load`` (seconds) take their shares."""
        g = self._host_size()
        busiest = [max(load[first : first + g]) for first in range(0, self.world, g)]
        chosen: dict[int, Split] = {}
        heavy = [t for t in tables if self.piece_seconds(t, self.tables[t].width) > target]
        order = sorted(heavy, key=lambda t: (-self.piece_seconds(t, self.tables[t].width), t))
        for t in sorted(forced, key=lambda t: (-self.bytes[t], t)) + order:
            rows = self.tables[t].rows
            seconds = self.host_split_seconds(t, g)
            whole = self.piece_seconds(t, self.tables[t].width)
            if t not in forced and (rows < g or seconds >= whole):
                continue
            share = -(-rows // g) * (self.bytes[t] // rows)
            for host in sorted(range(len(busiest)), key=busiest.__getitem__):  # ties: first
                first = host * g
                if max(base[first : first + g]) + share > limit:
                    continue
                counts = [rows // g + (j < rows % g) for j in range(g)]
                for j, held in enumerate(counts):
                    base[first + j] += held * (self.bytes[t] // rows)
                    load[first + j] += seconds
                busiest[host] = max(load[first : first + g])
                chosen[t] = (rows // g, rows % g, 0, first, first + g)
                break
        return chosen

    def _schedule(
        self,
        pieces: list[tuple[int, int]],
        base: list[int],
        limit: float,
        bound: float,
        start: list[float],
    ) -> PieceList | None:
        """Each piece in turn to a rank with room that holds no other piece of its table:
        without a ``bound`` the least loaded; with one, the one with the fewest bytes among
        those it keeps within the bound (the least loaded when there are none). ``base``
        and ``start``: the ranks' bytes and load before the pieces."""
        sized = [
            (t, width, width * self.column_bytes[t], self.piece_seconds(t, width))
            for t, width in pieces
        ]
        return schedule(sized, list(base), list(start), limit, bound)

    def _units(self, t: int) -> int:
        """Pieces a table can be cut into: one per ``column_multiple`` columns."""
        return -(-self.tables[t].width // self.multiple)

    def _pieces_for_memory(self, t: int, largest: float) -> int:
        """The fewest pieces that keep each within ``largest`` bytes."""
        if largest == math.inf:
            return 1
        return max(1, math.ceil(self.bytes[t] / max(largest, 1)))

    def _pieces_for_time(self, t: int, target: float) -> int:
        """Pieces that bring the table's load to the mean rank's, if cutting lowers its
        largest piece's load at all; else 1."""
        width, limit = self.tables[t].width, min(self._units(t), self.world)
        whole = self.piece_seconds(t, width)
        if whole <= target or limit < 2:
            return 1
        best, best_seconds = 1, whole
        for count in range(2, limit + 1):
            seconds = self.piece_seconds(t, max(self._widths(t, count)))
            if seconds < best_seconds:
                best, best_seconds = count, seconds
            if seconds <= target:
                break
        return best

    def _widths(self, t: int, count: int) -> list[int]:
        """``count`` piece widths, each a multiple of ``column_multiple`` but the last."""
        width = self.tables[t].width
        count = min(count, self._units(t), self.world)
        widths = [units * self.multiple for units in split_evenly(self._units(t), count)]
        widths[-1] -= sum(widths) - width
        return [w for w in widths if w > 0]
