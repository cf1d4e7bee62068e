"""Strategy ``auto``: the fastest plan that fits, or the most even one.

Upstream's strategies only place what their thresholds slice, and never ask what a
placement costs per step. ``auto`` builds several complete placements (candidates),
scores each by its largest rank's bytes and its estimated step time
(``planner.costs.steptime``, computed from the pieces, no plan written), and keeps
one. Upstream's three placements are always among the candidates, so ``auto`` is never
worse than the best of them by the objective's own measure; when one of them wins, the
plan names it (``parameters.requested_strategy`` stays ``auto``).

**Objective** (``objective``; null = ``time`` when ``device_memory`` is set, else
``memory``):

- ``time``: among candidates that fit the device (weights and optimizer state at most
  ``device_memory`` less the reserve), the least estimated step; steps within ``TIE``
  of the least are ties, which the smaller largest rank breaks (never above the
  fastest fitting upstream strategy's step). When none fits, the memory objective's
  choice.
- ``memory``: the smallest largest rank. A candidate counts as balanced when its
  largest rank is within ``BALANCED`` of the mean, or, when none is, within
  ``TOLERANCE`` of the best candidate's; never above the best upstream strategy's.
  Among balanced ones the least estimated step wins.

**Candidates.** ``placement.auto_memory`` makes the balanced ones (row slicing by
tiers, then a wrap-around pour of columns); ``placement.auto_time`` the fast ones
(replicas where the gradient allreduce costs less than the lookups and exchange it
saves, tables whole on the least busy rank with room, column cuts only where they
shorten the busiest rank; then ``placement.stage_search`` moves and swaps pieces of
the fastest to shorten each stage's slowest rank). Both cut tables only into pieces a multiple of
``column_multiple`` columns wide but one, which takes what is left (its columns come
where its rank puts them: a table's columns follow its pieces' ranks).

**Row reduction.** Where the spec leaves ``row_reduction`` open, over several whole
hosts, ``auto`` weighs both reductions under either objective: the candidates with
row-sliced tables are made and scored once more under ``host`` (partial sums added up
within each host first), and the plan records the reduction of the one it keeps
(``direct`` when it has no row-sliced table, where the two are the same exchange).

Without data-parallel input (``dp_input: false``) or with one rank there are neither
replicas nor row-sliced tables: only column slicing and placement. The spec's column and
row-slice thresholds are upstream's knobs; ``auto``'s own placements do not use them.

Bytes here are weight bytes (rows x width x dtype size). Optimizer state multiplies every
weight's bytes by the same factor, so the ranking is the same with it; the fit is
checked with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from planner.costs.memory import usable_memory
from planner.costs.steptime import Holdings, StepConfig, estimate_step, table_loads
from planner.placement.auto_memory import BALANCED, WrapAround
from planner.placement.auto_time import FastPlacements, fast_candidates
from planner.placement.candidate import TIE, Candidate, PieceList, Split, split_counts
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
from planner.spec import Spec
from planner.spec_fields import DTYPE_BYTES, summing_hosts
from planner.units import optimizer_slots

REPLICA_BUDGET = 1e-3  # memory objective: automatic replicas, as a fraction of a rank's share
TOLERANCE = 0.01  # memory objective: within 1% of the best counts as equal when none is balanced
DEFAULT_BATCH = 65536  # samples per step for the estimates, if the spec names none


def auto_placement(spec: Spec) -> Placement:
    """The ``auto`` placement of a spec (see the module docstring).

    Under ``time`` the balanced candidates join only when no fast or upstream one fits:
    they are the slowest to make, and they fit wherever a placement of the model can.
    When nothing fits, the plan is the memory objective's.
    """
    spec = spec.normalized()
    models = reduction_models(spec)
    model, placements = models[0], upstream_runs(spec)
    upstream = [c for m in models for c in m.scored(placements)]
    if spec.resolved_objective() != "time":
        return choose(model.auto_candidates(models[1:]), upstream, model.mean).build()
    fast = fast_candidates(models)
    if any(model.fits(c) for c in fast + upstream):
        return choose_fastest(fast, upstream, model.weight_limit).build()
    balanced = model.auto_candidates(models[1:])  # they fit where anything can
    if any(model.fits(c) for c in balanced):
        return choose_fastest(fast + balanced, upstream, model.weight_limit).build()
    return choose(balanced, upstream, model.mean).build()


def reduction_models(spec: Spec) -> list[_Model]:
    """The models ``auto`` weighs: the spec's own, then, where the row reduction is open,
    one with ``row_reduction: host``."""
    models = [_Model(spec)]
    if reduction_open(spec):
        models.append(_Model(spec.model_copy(update={"row_reduction": "host"}), True))
    return models


def upstream_runs(spec: Spec) -> list[Placement]:
    """Upstream's placements of the spec's tables, which ``auto`` counts among its
    candidates (with one rank only ``basic``: nothing to balance)."""
    names = UPSTREAM_STRATEGIES if spec.world_size > 1 else ("basic",)
    return [upstream_placement(spec.model_copy(update={"strategy": name})) for name in names]


def reduction_open(spec: Spec) -> bool:
    """Whether ``auto`` may choose the row reduction: the spec leaves it open, and there
    are several whole hosts of several ranks to add partial sums up within."""
    return (
        spec.row_reduction is None
        and spec.dp_input
        and summing_hosts("host", spec.world_size, spec.gpus_per_host) > 0
    )


def choose(ours: list[Candidate], upstream: list[Candidate], mean: float) -> Candidate:
    """Least step among the balanced candidates; never above the best upstream.

    Balanced: the largest rank within ``BALANCED`` of the mean rank, or, when no
    candidate is, within ``TOLERANCE`` of the best candidate's.
    """
    everything = ours + upstream
    best = min(c.max_bytes for c in everything)
    even = mean * (1 + BALANCED)
    balanced = even if best <= even else best * (1 + TOLERANCE)
    ceiling = min(balanced, min(c.max_bytes for c in upstream))
    eligible = [
        (c.step_seconds, c.max_bytes, order)
        for order, c in enumerate(everything)
        if c.max_bytes <= ceiling
    ]
    return everything[min(eligible)[2]]


def choose_fastest(
    ours: list[Candidate], upstream: list[Candidate], limit: int | None
) -> Candidate:
    """Among those whose largest rank fits ``limit`` weight bytes (None: all), the fewest
    bytes on the largest rank among those within ``TIE`` of the least step (and never
    above the fastest fitting upstream candidate's); when none fits, the least largest
    rank."""
    everything = ours + upstream
    fits = [limit is None or c.max_bytes <= limit for c in everything]
    if not any(fits):
        return min(everything, key=lambda c: (c.max_bytes, c.step_seconds))
    fastest = min(c.step_seconds for c, fit in zip(everything, fits, strict=True) if fit)
    ceiling = fastest * (1 + TIE)
    upstream_fits = fits[len(ours) :]
    ceiling = min(
        [ceiling] + [c.step_seconds for c, fit in zip(upstream, upstream_fits, strict=True) if fit]
    )
    eligible = [
        (c.max_bytes, c.step_seconds, order)
        for order, (c, fit) in enumerate(zip(everything, fits, strict=True))
        if fit and c.step_seconds <= ceiling
    ]
    return everything[min(eligible)[2]]


class _Model(WrapAround, FastPlacements):
    """A spec's per-table numbers, the candidate placements, and their scores."""

    def __init__(self, spec: Spec, row_sliced_only: bool = False):
        """``row_sliced_only``: this model weighs ``spec.row_reduction`` beside a model
        of the spec's own, so only its placements with row-sliced tables are new, and
        they record the reduction."""
        self.spec = spec
        self.row_sliced_only = row_sliced_only
        self.row_reduction = spec.row_reduction if row_sliced_only else None
        self.tables = spec.tables
        self.world = spec.world_size
        self.split_ok = spec.dp_input and self.world > 1
        self.multiple = spec.column_multiple
        inputs = spec.resolved_inputs()
        self.table_of_input = table_of_input(self.tables, inputs)
        self.column_bytes = [t.rows * t.itemsize for t in self.tables]
        self.bytes = [c * t.width for c, t in zip(self.column_bytes, self.tables, strict=True)]
        self.unit_bytes = [
            c * min(self.multiple, t.width)
            for c, t in zip(self.column_bytes, self.tables, strict=True)
        ]
        self.loads = table_loads(self.tables, inputs)
        self.step_config = StepConfig.of(spec, self.world, spec.global_batch_size or DEFAULT_BATCH)
        out = DTYPE_BYTES[spec.compute_dtype]
        id_bytes = spec.id_bytes if spec.dp_input else 0
        # traffic per sample, for ordering only
        self.traffic = [
            load.ids_per_sample * id_bytes + load.outputs_per_sample * load.width * out
            for load in self.loads
        ]
        self.weight_limit = None
        if spec.device_memory is not None:
            usable = usable_memory(spec.device_memory, spec.memory_reserve)
            self.weight_limit = usable // (1 + optimizer_slots(spec.optimizer))
        self.replicas, self.replica_threshold = self._replicas()
        replicated = set(self.replicas)
        self.others = [t for t in range(len(self.tables)) if t not in replicated]
        self.replica_bytes = sum(self.bytes[t] for t in self.replicas)
        self.mean = self.replica_bytes + sum(self.bytes[t] for t in self.others) / self.world

    # -- scores -------------------------------------------------------------------------

    def fits(self, candidate: Candidate) -> bool:
        return self.weight_limit is None or candidate.max_bytes <= self.weight_limit

    def step_seconds(
        self,
        pieces: PieceList,
        row_rows: dict[int, Sequence[int]],
        replicas: list[int],
    ) -> float:
        """Estimated step of a placement given by its pieces (table, rank, columns), the
        rows each rank holds of each row-sliced table, and the replicas."""
        per_rank: list[list[tuple[int, int]]] = [[] for _ in range(self.world)]
        for t, rank, width in pieces:
            per_rank[rank].append((t, width))
        holdings = Holdings(per_rank, row_rows, replicas)
        return estimate_step(self.step_config, self.loads, holdings).step_seconds

    def candidate(
        self,
        loads: list[int],
        pieces: PieceList,
        row_sliced: list[int],
        splits: dict[int, Split],
        replicas: list[int],
        replica_threshold: int | None,
    ) -> Candidate:
        """A candidate from its pieces, row splits and replicas; ``loads`` its rank bytes."""
        rows = {t: split_counts(splits[t], self.world) for t in row_sliced}
        return Candidate(
            max_bytes=max(loads),
            step_seconds=self.step_seconds(pieces, rows, replicas),
            build=lambda: self._placement(row_sliced, splits, pieces, replicas, replica_threshold),
        )

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

    def scored(self, placements: list[Placement]) -> list[Candidate]:
        """Upstream's placements as candidates, scored by this model (one with
        ``row_sliced_only`` takes only those with row-sliced tables)."""
        candidates = []
        for placement in placements:
            if self.row_sliced_only and not placement.row_ranges:
                continue
            pieces = [
                (piece.table, rank, piece.width)
                for rank, layout in enumerate(placement.layouts)
                for piece in layout.pieces
            ]
            rows = {
                t: [stop - start for start, stop in ranges]
                for t, ranges in placement.row_ranges.items()
            }
            kept = replace(placement, row_reduction=self.row_reduction)
            candidates.append(
                Candidate(
                    max_bytes=max(self.rank_bytes(placement)),
                    step_seconds=self.step_seconds(pieces, rows, placement.groups.data_parallel),
                    build=lambda p=kept: p,
                )
            )
        return candidates

    def rank_bytes(self, placement: Placement) -> list[int]:
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

    # -- writing a candidate out --------------------------------------------------------

    def _placement(
        self,
        rows: list[int],
        splits: dict[int, Split],
        pieces: PieceList,
        replicas: list[int],
        replica_threshold: int | None,
    ) -> Placement:
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
            data_parallel=sorted(replicas),
            table_parallel=sorted(count),
            row_sliced=sorted(rows),
        )
        return Placement(
            strategy="auto",
            groups=groups,
            thresholds=EffectiveThresholds(
                data_parallel=replica_threshold,
                row_slice=min((self.tables[t].elements for t in rows), default=None),
            ),
            column_threshold=max(cut) if cut else None,
            threshold_source="auto" if cut else "none",
            layouts=layouts,
            row_ranges={
                t: ranges_from_sizes(split_counts(splits[t], self.world).tolist())
                for t in sorted(rows)
            },
            input_groups=group_inputs(groups, self.table_of_input),
            row_reduction=self.row_reduction if rows else None,
        )
