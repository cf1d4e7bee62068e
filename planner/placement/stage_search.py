"""``auto``'s last pass over a fast placement: shorten the stages the greedy leaves long.

The greedy placements (``placement.auto_time``) balance each rank's summed load, but
the step estimate takes every stage (ids, lookups, outputs) at its slowest rank, and
the slowest rank of one stage need not be that of another: a rank can be light overall
yet the longest in the lookups. This local search takes the pieces on each stage's
slowest rank and scores every move of one to the least busy ranks and every swap with
a piece there (``ChangeScorer``: the estimate's own formulas, re-timing only the two
hosts a change touches). It makes the change that shortens the step most; when none
does, the one that most lowers the spread (the sum of every rank's stage seconds
squared) without lengthening it, since where several ranks tie as a stage's slowest no
single change can shorten it. This descent stops when nothing helps, or after ``ROUNDS``
changes. Many alike tables make many placements that one change cannot improve, so
``auto`` then kicks its fastest result: a few random moves, a descent from there, kept
when it ends faster, ``KICKS`` times (an iterated local search, seeded: the same spec
always gets the same plan). Memory limits and the one-piece-of-a-table-per-rank rule
hold throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.costs.steptime import (
    BACKWARD_FACTOR,
    RankTraffic,
    StepConfig,
    TableLoad,
    exchange_seconds,
    lookup_seconds,
    piece_traffic,
    stage_seconds,
)
from planner.placement.candidate import PieceList

ROUNDS = 100  # at most this many changes per search
PARTNERS = 16  # ranks a piece may move to: the least busy ones
SWAP_PARTNERS = 4  # ranks whose pieces it may swap with: the least busy ones
CHUNK = 1 << 21  # counts scored at once (changes x 4 x ranks touched), to bound memory
LONGEST = ("ids", "forward_lookups", "outputs")  # the stages whose slowest rank gives pieces
_ECHOES = ("output_gradients", "backward_lookups")  # copies (or multiples) of two of them
GAIN = 1e-9  # a change must shorten the step (or, as short, the spread) by this fraction
KICKS = 40  # random restarts of the descent from the best placement found (one candidate)
KICK_MOVES = 8  # random moves in each
KICK_ROUNDS = 20  # changes in the descent after a kick (a short way back down)
SEED = 0  # of the kicks' random choices: the same spec always gets the same plan


class ChangeScorer:
    """Scores changes to one placement (a piece, or the difference of two swapped, going
    from one rank to another) by the step and the spread they leave: the sum over stages
    and ranks of each rank's stage seconds squared. Where several ranks are the slowest
    of a stage, no one change shortens it, but the spread falls as soon as one of them
    sheds load, so the search can go on.

    A change touches the times of its two ranks' hosts only (their ranks' host totals
    change; the sum over all ranks does not), so only those are timed again, with the
    estimate's own formulas (``exchange_seconds``, ``lookup_seconds``); every other
    rank keeps its time, and each stage's slowest among them comes from the three
    hosts whose slowest ranks are the slowest.
    """

    def __init__(self, config: StepConfig, fixed: RankTraffic, state: np.ndarray):
        self.config, self.fixed, self.state = config, fixed, state
        world, g = config.world_size, config.gpus_per_host
        self.stages = stage_seconds(config, fixed.with_pieces(state))
        starts = np.arange(0, world, g)
        self.ids_peer = fixed.ids_peer + state[0]
        self.outputs_peer = fixed.outputs_peer + state[1]
        self.host_ids = np.add.reduceat(self.ids_peer, starts)
        self.host_outputs = np.add.reduceat(self.outputs_peer, starts)
        # each host's ranks, a short last host padded with its first rank (not counted)
        members = starts[:, None] + np.arange(g)[None, :]
        self.counted = members < world
        self.members = np.where(self.counted, members, starts[:, None])
        times = {name: self.stages[name] for name in LONGEST}
        self.slowest_hosts = {}
        for name, seconds in times.items():
            per_host = np.maximum.reduceat(seconds, starts)
            top = np.argsort(-per_host, kind="stable")[:3]
            self.slowest_hosts[name] = (top, per_host[top])
        others = [v for k, v in self.stages.items() if k not in times and k not in _ECHOES]
        self.fixed_step = sum(float(v.max()) for v in others)
        self.fixed_spread = sum(float((v**2).sum()) for v in others)
        self.spread_now = {name: seconds**2 for name, seconds in times.items()}
        self.step, self.spread = self._total(
            {name: np.array([seconds.max()]) for name, seconds in times.items()},
            {name: np.array([squares.sum()]) for name, squares in self.spread_now.items()},
        )

    def _total(
        self, slowest: dict[str, np.ndarray], squares: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The step and the spread from the three stages that pieces change (the others,
        and the echoes of these, are constants and multiples)."""
        step = self.fixed_step + slowest["ids"] + 2 * slowest["outputs"]
        step = step + (1 + BACKWARD_FACTOR) * slowest["forward_lookups"]
        spread = self.fixed_spread + squares["ids"] + 2 * squares["outputs"]
        spread = spread + (1 + BACKWARD_FACTOR**2) * squares["forward_lookups"]
        return step, spread

    def score(
        self, source: np.ndarray, target: np.ndarray, delta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Step and spread after each change ``delta[i]`` (``piece_traffic`` counts) moves
        from rank ``source[i]`` to rank ``target[i]``."""
        config, fixed, g = self.config, self.fixed, self.config.gpus_per_host
        from_host, to_host = source // g, target // g
        touched = np.concatenate([self.members[from_host], self.members[to_host]], axis=1)
        counted = np.concatenate(
            [self.counted[from_host], self.counted[to_host] & (to_host != from_host)[:, None]],
            axis=1,
        )
        sign = (touched == target[:, None]).astype(np.int64)
        sign -= touched == source[:, None]
        counts = self.state[:, touched] + delta.T[:, :, None] * sign[None]  # (4, n, 2g)
        host = touched // g
        host_sign = (host == to_host[:, None]).astype(np.int64) - (host == from_host[:, None])
        ids_total = self.host_ids[host] + delta[:, :1] * host_sign
        outputs_total = self.host_outputs[host] + delta[:, 1:2] * host_sign
        times = {
            "ids": exchange_seconds(
                config, touched, fixed.ids_peer[touched] + counts[0], ids_total,
                self.ids_peer.sum(),
            ),
            "forward_lookups": lookup_seconds(
                config, fixed.memory[touched] + counts[2], fixed.lookups[touched] + counts[3]
            ),
            "outputs": exchange_seconds(
                config, touched, fixed.outputs_peer[touched] + counts[1], outputs_total,
                self.outputs_peer.sum(), fixed.across,
            ),
        }
        slowest, squares = {}, {}
        for name, seconds in times.items():
            top, top_seconds = self.slowest_hosts[name]
            untouched = (top[None] != from_host[:, None]) & (top[None] != to_host[:, None])
            rest = np.where(untouched, top_seconds[None], 0.0).max(axis=1)
            slowest[name] = np.maximum(rest, np.where(counted, seconds, 0.0).max(axis=1))
            before = np.where(counted, self.spread_now[name][touched], 0.0).sum(axis=1)
            after = np.where(counted, seconds**2, 0.0).sum(axis=1)
            squares[name] = self.spread_now[name].sum() - before + after
        return self._total(slowest, squares)


@dataclass
class _Pieces:
    """A placement being searched: per piece its table, rank, bytes and
    ``piece_traffic`` counts; per rank the counts summed (``state``) and its bytes."""

    tables: np.ndarray
    ranks: np.ndarray
    sizes: np.ndarray
    counts: np.ndarray  # (pieces, 4)
    state: np.ndarray  # (4, world)
    held: np.ndarray

    def move(self, piece: int, rank: int) -> None:
        old = self.ranks[piece]
        self.state[:, old] -= self.counts[piece]
        self.held[old] -= self.sizes[piece]
        self.state[:, rank] += self.counts[piece]
        self.held[rank] += self.sizes[piece]
        self.ranks[piece] = rank

    def copy(self) -> _Pieces:
        return _Pieces(*(np.copy(v) for v in vars(self).values()))


@dataclass
class _Changes:
    """Candidate changes: piece ``piece`` goes to rank ``to``; for a swap, piece
    ``other`` (else -1) goes to ``back``. With the step and spread after each."""

    piece: np.ndarray
    to: np.ndarray
    other: np.ndarray
    back: np.ndarray
    steps: np.ndarray
    spreads: np.ndarray


class StageSearch:
    """Moves and swaps of table-parallel pieces that shorten the estimated step."""

    def __init__(
        self,
        config: StepConfig,
        loads: Sequence[TableLoad],
        fixed: RankTraffic,
        column_bytes: Sequence[int],
        limit: float,
    ):
        self.config, self.loads, self.fixed = config, loads, fixed
        self.column_bytes, self.limit = column_bytes, limit

    def shorten(
        self, placement: PieceList, held: Sequence[int], kicks: int = 0
    ) -> tuple[PieceList, list[int]]:
        """A placement no slower than ``placement`` by the estimate, and its ranks' bytes
        (``held``: the bytes each rank holds, row slices and replicas included).

        A descent (``_descend``), then ``kicks`` times: a few random moves of the best
        placement found (a kick) and a descent from there, kept when it ends faster. The
        result may hold more on its largest rank: it joins ``auto``'s candidates beside
        the placement it came from, and a tie goes to the smaller largest rank.
        """
        world = self.config.world_size
        ranks = np.array([rank for _, rank, _ in placement], np.int64)
        counts = np.array(
            [piece_traffic(self.config, self.loads[t], w) for t, _, w in placement], np.int64
        ).reshape(len(placement), 4)
        state = np.zeros((4, world), np.int64)
        np.add.at(state.T, ranks, counts)
        best = _Pieces(
            tables=np.array([t for t, _, _ in placement], np.int64),
            ranks=ranks,
            sizes=np.array([w * self.column_bytes[t] for t, _, w in placement], np.int64),
            counts=counts,
            state=state,
            held=np.array(held, np.int64),
        )
        best_step = self._descend(best, ROUNDS)
        bits = np.random.PCG64(SEED)  # a bit generator's stream stays the same across numpy
        for _ in range(kicks if placement else 0):
            kicked = best.copy()
            self._kick(kicked, bits.random_raw(2 * KICK_MOVES))
            step = self._descend(kicked, KICK_ROUNDS)
            if step < best_step * (1 - GAIN):
                best, best_step = kicked, step
        shortened = [
            (t, int(rank), w) for (t, _, w), rank in zip(placement, best.ranks, strict=True)
        ]
        return shortened, best.held.tolist()

    def _descend(self, pieces: _Pieces, rounds: int) -> float:
        """Changes ``pieces`` until none helps (or ``rounds`` changes); its step after.

        Each round takes the change with the shortest step; when none shortens it, the
        one with the least spread among those as short."""
        for _ in range(rounds):
            scorer = ChangeScorer(self.config, self.fixed, pieces.state)
            step, spread = scorer.step[0], scorer.spread[0]
            changes = self._changes(pieces, scorer)
            if changes is None:
                return step
            if changes.steps.min() < step * (1 - GAIN):
                best = int(np.argmin(changes.steps))
            else:
                level = (changes.steps <= step) & (changes.spreads < spread * (1 - GAIN))
                if not level.any():
                    return step
                best = int(np.argmin(np.where(level, changes.spreads, np.inf)))
            other, back = int(changes.other[best]), int(changes.back[best])
            pieces.move(int(changes.piece[best]), int(changes.to[best]))
            if other >= 0:
                pieces.move(other, back)
        return ChangeScorer(self.config, self.fixed, pieces.state).step[0]

    def _kick(self, pieces: _Pieces, bits: np.ndarray) -> None:
        """Up to ``KICK_MOVES`` moves of random pieces to random ranks (those that are
        legal), drawn from ``bits``: ``2 * KICK_MOVES`` random 64-bit integers."""
        moved, to = np.split(bits, 2)
        for piece, rank in zip(moved % len(pieces.ranks), to % self.config.world_size, strict=True):
            table = pieces.tables[piece]
            there = np.any((pieces.tables == table) & (pieces.ranks == rank))
            if not there and pieces.held[rank] + pieces.sizes[piece] <= self.limit:
                pieces.move(int(piece), int(rank))

    def _changes(self, p: _Pieces, scorer: ChangeScorer) -> _Changes | None:
        """Every legal move of a piece on a stage's slowest rank to one of the
        ``PARTNERS`` least busy ranks, and every legal swap of it with a piece of one of
        the ``SWAP_PARTNERS`` least busy that costs less in some count (one costing as
        much in every count cannot shorten a stage its rank is the slowest in); scored.
        None when there is none."""
        world = self.config.world_size
        per_rank = scorer.stages
        busiest = np.unique([np.argmax(per_rank[stage]) for stage in LONGEST])
        partners = np.argsort(sum(per_rank.values()), kind="stable")
        holding = np.unique(p.tables * world + p.ranks)

        def holds(table: np.ndarray, rank: np.ndarray) -> np.ndarray:
            return np.isin(table * world + rank, holding)

        given = np.flatnonzero(np.isin(p.ranks, busiest))
        k, to = (x.ravel() for x in np.meshgrid(given, partners[:PARTNERS], indexing="ij"))
        ok = (to != p.ranks[k]) & ~holds(p.tables[k], to) & (p.held[to] + p.sizes[k] <= self.limit)
        k, to = k[ok], to[ok]
        taken = np.flatnonzero(np.isin(p.ranks, partners[:SWAP_PARTNERS]))
        sk, j = (x.ravel() for x in np.meshgrid(given, taken, indexing="ij"))
        a, b = p.ranks[sk], p.ranks[j]
        ok = (a != b) & (p.tables[sk] != p.tables[j]) & (p.counts[j] < p.counts[sk]).any(axis=1)
        ok &= ~holds(p.tables[sk], b) & ~holds(p.tables[j], a)
        into_a, into_b = p.held[a] - p.sizes[sk] + p.sizes[j], p.held[b] - p.sizes[j] + p.sizes[sk]
        ok &= (into_a <= self.limit) & (into_b <= self.limit)
        if not len(k) + np.count_nonzero(ok):
            return None
        piece = np.concatenate([k, sk[ok]])
        other = np.concatenate([np.full(len(k), -1), j[ok]])
        moved_from = p.ranks[piece]
        to = np.concatenate([to, b[ok]])
        delta = p.counts[piece] - np.where((other >= 0)[:, None], p.counts[other], 0)
        steps, spreads = np.empty(len(piece)), np.empty(len(piece))
        chunk = max(1, CHUNK // (8 * self.config.gpus_per_host))
        for start in range(0, len(piece), chunk):
            part = slice(start, start + chunk)
            steps[part], spreads[part] = scorer.score(moved_from[part], to[part], delta[part])
        return _Changes(
            piece=piece,
            to=to,
            other=other,
            back=moved_from,
            steps=steps,
            spreads=spreads,
        )
