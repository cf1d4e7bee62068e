"""Bytes on each rank: weights, their optimizer state, data-parallel copies, and the limits.

A rank holds, for every weight element it stores, the element itself plus one value
per optimizer slot (Adam's two moments, Adagrad's accumulator, ...), each of the
weight's dtype, as TensorFlow's optimizers create their slots like the variable.
Data-parallel tables are held, with their optimizer state, by every rank.

With CPU offload some table-parallel weights live in host memory, their optimizer state
beside them (slots are placed with their variable): a rank's ``bytes`` are still all it
holds, ``host_bytes`` the part in host memory, and only the rest (``device_bytes``)
counts against ``device_memory``; ``host_bytes`` counts against ``host_memory``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from planner.plan import LocalWeight, Plan, RankPlan, RowSlice, RowSplit
from planner.spec import TableSpec
from planner.spec_fields import DTYPE_BYTES
from planner.units import optimizer_slots


def usable_memory(device_memory: int, reserve: float) -> int:
    """Bytes a rank may fill with weights and optimizer state: the device less the reserve."""
    return math.floor(device_memory * (1 - reserve))


def memory_limit(plan: Plan) -> int | None:
    """The plan's usable bytes per rank; None when it was made without ``device_memory``."""
    params = plan.parameters
    if params.device_memory is None:
        return None
    return usable_memory(params.device_memory, params.memory_reserve)


def ranks_over_limit(plan: Plan) -> list[RankPlan]:
    """The ranks holding more than the plan's usable memory on their GPU, in rank order.

    A plan made without ``device_memory`` has no limit, and no rank is over it.
    """
    limit = memory_limit(plan)
    return [] if limit is None else [rank for rank in plan.ranks if rank.device_bytes > limit]


def ranks_over_host_limit(plan: Plan) -> list[RankPlan]:
    """The ranks whose offloaded pieces take more than ``host_memory``, in rank order."""
    limit = plan.parameters.host_memory
    return [] if limit is None else [rank for rank in plan.ranks if rank.host_bytes > limit]


def footprint(
    weights: list[LocalWeight],
    row_slices: list[RowSlice],
    data_parallel: list[TableSpec],
    tables: dict[str, TableSpec],
) -> tuple[int, int]:
    """(elements, bytes) of weights a rank holds, data-parallel replicas included.

    The bytes are the weights' alone; optimizer state adds ``optimizer_slots`` times as
    much (see rank_footprints).
    """
    held = [(w.rows * w.width, DTYPE_BYTES[w.dtype]) for w in weights]
    held += [
        ((s.rows[1] - s.rows[0]) * tables[s.table].width, tables[s.table].itemsize)
        for s in row_slices
    ]
    held += [(t.elements, t.itemsize) for t in data_parallel]
    return sum(n for n, _ in held), sum(n * size for n, size in held)


def offloaded_bytes(weights: list[LocalWeight]) -> int:
    """Bytes of the weights in host memory, without their optimizer state."""
    return sum(w.rows * w.width * DTYPE_BYTES[w.dtype] for w in weights if w.device == "host")


def row_split_footprints(
    splits: Iterable[RowSplit], tables: dict[str, TableSpec], world_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per rank, the elements and bytes (weights only) of its row slices.

    From the splits, one vector per table: a plan of hundreds of row-sliced tables on
    thousands of ranks would otherwise count a million row slices one by one.
    """
    elements, size = np.zeros(world_size, np.int64), np.zeros(world_size, np.int64)
    for split in splits:
        table = tables[split.table]
        starts, ends = split.bounds(table.rows, world_size)
        elements += (ends - starts) * table.width
        size += (ends - starts) * table.width * table.itemsize
    return elements, size


def rank_footprints(plan: Plan, ranks: list[RankPlan] | None = None) -> list[tuple[int, int, int]]:
    """(elements, bytes, optimizer bytes) each rank holds, recounted from what it lists.

    ``bytes`` includes the optimizer state, as ``RankPlan.bytes`` does. Row slices are
    counted from the plan's row splits.
    """
    tables = {t.name: t for t in plan.tables}
    replicas = [tables[name] for name in plan.groups.data_parallel]
    slots = optimizer_slots(plan.parameters.optimizer)
    everywhere = footprint([], [], replicas, tables)  # counted once, not once per rank
    splits = [s for s in plan.row_splits if s.table in tables]
    row_elements, row_bytes = row_split_footprints(splits, tables, plan.world_size)
    counts = []
    for rank in plan.ranks if ranks is None else ranks:
        elements, size = footprint(rank.table_parallel_weights, [], [], tables)
        elements += everywhere[0] + int(row_elements[rank.rank])
        size += everywhere[1] + int(row_bytes[rank.rank])
        counts.append((elements, size * (1 + slots), size * slots))
    return counts


def host_bytes(plan: Plan, rank: RankPlan) -> int:
    """Bytes ``rank`` holds in host memory, recounted: offloaded weights and their state."""
    return offloaded_bytes(rank.table_parallel_weights) * state_factor(plan)


@dataclass(frozen=True)
class Holdings:
    """What one rank holds, in bytes including optimizer state."""

    replicas: int
    row_slices: int
    pieces: list[tuple[str, int]]  # (table, bytes) of table-parallel pieces on the GPU
    host: int = 0  # bytes of the pieces in host memory


def state_factor(plan: Plan) -> int:
    """Bytes held per weight byte: the weight and its optimizer slots."""
    return 1 + plan.parameters.optimizer_slots


def replica_bytes(plan: Plan) -> int:
    """Bytes every rank holds for the data-parallel tables, optimizer state included."""
    tables = {t.name: t for t in plan.tables}
    replicas = sum(tables[n].elements * tables[n].itemsize for n in plan.groups.data_parallel)
    return replicas * state_factor(plan)


def rank_holdings(plan: Plan) -> list[Holdings]:
    """What each rank holds, from one pass over the shards (not one pass per rank)."""
    factor = state_factor(plan)
    tables = {t.name: t for t in plan.tables}
    host = [0] * plan.world_size
    pieces: list[list[tuple[str, int]]] = [[] for _ in range(plan.world_size)]
    for s in plan.table_parallel_shards:
        size = (s.rows[1] - s.rows[0]) * (s.cols[1] - s.cols[0]) * tables[s.table].itemsize
        if s.device == "host":
            host[s.rank] += size * factor
        else:
            pieces[s.rank].append((s.table, size * factor))
    rows = row_split_footprints(plan.row_splits, tables, plan.world_size)[1] * factor
    replicas = replica_bytes(plan)
    return [Holdings(replicas, int(rows[r]), pieces[r], host[r]) for r in range(plan.world_size)]


def spread_bytes(plan: Plan) -> int:
    """Bytes the GPUs share between them, optimizer state included: every table that is
    not data-parallel, or with offload only the row-sliced ones (table-parallel pieces
    may go to host memory)."""
    shared = set(plan.groups.row_sliced)
    if plan.parameters.offload == "none":
        shared.update(plan.groups.table_parallel)
    spread = sum(t.elements * t.itemsize for t in plan.tables if t.name in shared)
    return spread * state_factor(plan)
