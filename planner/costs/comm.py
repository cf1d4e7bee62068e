"""Communication per training step, estimated from a plan: bytes per rank and phase.

The model (docs/cost_model.md has it in full): every rank holds a local batch
``b = global_batch_size / world_size`` of every input.

- Table-parallel inputs: one all-to-all sends each input's ``b x hotness`` ids to every
  rank holding a piece of its table (none with ``dp_input: false``, where ids arrive
  model-parallel); each holder sends ``b x piece width`` embeddings back to every rank
  (forward), and the gradients travel the same way back (backward).
- Row-sliced inputs, in the same two all-to-alls: each rank sends every rank holding
  rows of the table (all ranks, or the group its row split names) the ids in its rows
  and a count per sample; each holder sends every rank its samples' float32 partial
  sums (added up by the receiver: a reduce-scatter), and the output gradients go back
  to the holders (an allgather within the group).
- Data-parallel tables: dense gradients averaged with a ring allreduce.

Bytes a rank would send to itself do not count. A phase takes, on a rank,
``max(sent, received) / bandwidth``; the step is the sum over phases of the slowest
rank's time. Latency, overlap with compute and the lookups themselves are not modelled.
"""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from planner.plan import CommStats, Parameters, Plan, RankComm, Traffic
from planner.spec_fields import DTYPE_BYTES, summing_hosts

PHASES: tuple[str, ...] = (
    "id_alltoall",
    "embedding_alltoall",
    "embedding_grad_alltoall",
    "row_id_allgather",
    "row_reduce_scatter",
    "row_grad_allgather",
    "dp_allreduce",
    "row_host_sums",
    "row_host_sum_grads",
)
ALLTOALL_PHASES = frozenset(PHASES[:6])  # the row phases ride in the all-to-alls
# row_reduction host's exchanges within a host: listed in a plan's phase times only when
# it has them, so plans without keep their bytes
HOST_PHASES = frozenset(PHASES[7:])
GIGABYTE = 10**9
ROW_PARTIAL_BYTES = 4  # row-slice partial outputs and their gradients travel in float32
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class CommConfig:
    """What the estimate needs besides the plan. Bandwidths in GB/s (10**9 bytes/s)."""

    global_batch_size: int
    id_bytes: int = 8
    compute_dtype: str = "float32"
    alltoall_bandwidth: float = 25.0
    allreduce_bandwidth: float = 25.0
    intra_host_bandwidth: float = 200.0

    @classmethod
    def from_parameters(cls, params: Parameters) -> CommConfig | None:
        """The plan's own settings; None when it names no global batch size."""
        if params.global_batch_size is None:
            return None
        return cls(
            global_batch_size=params.global_batch_size,
            id_bytes=params.id_bytes,
            compute_dtype=params.compute_dtype,
            alltoall_bandwidth=params.alltoall_bandwidth,
            allreduce_bandwidth=params.allreduce_bandwidth,
            intra_host_bandwidth=params.intra_host_bandwidth,
        )

    def bytes_per_second(self, phase: str) -> float:
        if phase in HOST_PHASES:
            return self.intra_host_bandwidth * GIGABYTE
        gbps = self.alltoall_bandwidth if phase in ALLTOALL_PHASES else self.allreduce_bandwidth
        return gbps * GIGABYTE


@dataclass
class _Phase:
    sent: list[int]
    received: list[int]


def phase_bytes(plan: Plan, config: CommConfig) -> dict[str, _Phase]:
    """Per phase, the bytes each rank sends to and receives from other ranks."""
    world = plan.world_size
    if config.global_batch_size % world:
        raise ValueError(
            f"global batch size {config.global_batch_size} does not split over {world} ranks"
        )
    b = config.global_batch_size // world
    out = DTYPE_BYTES[config.compute_dtype]
    phases = {
        name: _Phase([0] * world, [0] * world) for name in PHASES if name not in HOST_PHASES
    }
    tables = {t.name: t for t in plan.tables}
    table_of = {i.name: i.table for i in plan.inputs}
    hotness = {i.name: i.hotness for i in plan.inputs}

    table_parallel = set(plan.groups.table_parallel)
    holders: dict[str, list[tuple[int, int]]] = defaultdict(list)  # table: (rank, width)
    for s in plan.table_parallel_shards:
        if s.table in table_parallel:
            holders[s.table].append((s.rank, s.cols[1] - s.cols[0]))

    held_ids, held_outputs = [0] * world, [0] * world  # per rank, per other rank
    for name in plan.input_groups.table_parallel:
        table = tables[table_of[name]]
        id_block = b * hotness[name] * config.id_bytes if plan.parameters.dp_input else 0
        for rank, width in holders[table.name]:
            held_ids[rank] += id_block
            held_outputs[rank] += b * width * out
    ids_received, ids_sent = all_to_all(held_ids)
    outputs_sent, outputs_received = all_to_all(held_outputs)
    phases["id_alltoall"] = _Phase(ids_sent, ids_received)
    phases["embedding_alltoall"] = _Phase(outputs_sent, outputs_received)
    phases["embedding_grad_alltoall"] = _Phase(outputs_received, outputs_sent)

    _row_split_phases(plan, b, config.id_bytes, phases)

    read = {table_of[name] for name in plan.input_groups.data_parallel}
    _everyone(
        phases["dp_allreduce"],
        sum(
            ring_allreduce_bytes(tables[name].elements * tables[name].itemsize, world)
            for name in plan.groups.data_parallel
            if name in read
        ),
    )
    return phases


def plain_sum(values: Iterable[Number]) -> Number:
    """Left-to-right sum, which gives the same float on every Python version.

    Python 3.12 made the built-in ``sum`` of floats compensated, which changes the last
    digit of some totals. Plans made on Python 3.10 and 3.11 add plainly, and a plan must
    be byte-identical (and pass ``planner validate``) whichever Python makes it.
    """
    return functools.reduce(operator.add, values, 0)


def all_to_all(per_peer: list[int] | list[float]) -> tuple[list, list]:
    """Rank r exchanges ``per_peer[r]`` bytes with each other rank, in one direction.

    Returns, per rank, the bytes between it and all other ranks on its own account
    (``(world - 1) x per_peer[r]``), and on theirs (the others' ``per_peer`` summed). A
    holder of ids receives the first and sends the second; a holder of outputs sends the
    first and receives the second.
    """
    world, total = len(per_peer), plain_sum(per_peer)
    return [(world - 1) * x for x in per_peer], [total - x for x in per_peer]


def ring_allreduce_bytes(size: int, world: int) -> int:
    """Bytes each rank sends (and receives) to allreduce ``size`` bytes over a ring."""
    return -(-2 * (world - 1) * size // world)


def _row_split_phases(plan: Plan, b: int, id_bytes: int, phases: dict[str, _Phase]) -> None:
    """Row-split traffic between each rank and each rank holding rows of the table: to
    the holder, per input, a count per sample and the ids in its rows (its share of the
    table's rows, ids taken as spread like the rows); from it, full-width float32
    partial sums; the gradients back to it. Ranks holding no rows take no part. With
    ``row_reduction: host`` the partial sums go through the host first
    (:func:`host_sum_flows`)."""
    world = plan.world_size
    params = plan.parameters
    hosts = summing_hosts(params.row_reduction, world, params.gpus_per_host)
    tables = {t.name: t for t in plan.tables}
    row_sliced = set(plan.input_groups.row_sliced)
    per_sample: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # inputs, ids, width
    for inp in plan.inputs:
        if inp.name in row_sliced:
            per_sample[inp.table][0] += 1
            per_sample[inp.table][1] += inp.hotness
            per_sample[inp.table][2] += tables[inp.table].width
    totals = {key: np.zeros(world, np.int64) for key in ("ids_in", "ids_out", "out_in", "out_out")}
    for split in plan.row_splits:
        if split.table not in per_sample:
            continue  # no input reads it
        inputs, hotness, width = per_sample[split.table]
        rows = tables[split.table].rows
        starts, ends = split.bounds(rows, world)
        held = ends - starts
        holder = (held > 0).astype(np.int64)
        ids = holder * (b * inputs * id_bytes) + (b * hotness * held // rows) * id_bytes
        totals["ids_out"] += int(ids.sum()) - ids  # to every holder but itself
        totals["ids_in"] += (world - 1) * ids
        if hosts:
            flows = host_sum_flows(holder, hosts, b * width * ROW_PARTIAL_BYTES)
            for key, flow in zip(("host_out", "host_in", "out_out", "out_in"), flows, strict=True):
                totals[key] = totals.get(key, 0) + flow
            continue
        outputs = holder * (b * width * ROW_PARTIAL_BYTES)
        totals["out_out"] += (world - 1) * outputs
        totals["out_in"] += int(outputs.sum()) - outputs
    names = [
        ("row_id_allgather", "ids_out", "ids_in"),
        ("row_reduce_scatter", "out_out", "out_in"),
        ("row_grad_allgather", "out_in", "out_out"),
    ]
    if "host_out" in totals:
        names += [("row_host_sums", "host_out", "host_in"),
                  ("row_host_sum_grads", "host_in", "host_out")]
    for name, sent, received in names:
        phases[name] = _Phase(totals[sent].tolist(), totals[received].tolist())


def host_sum_flows(
    holder: np.ndarray, hosts: int, block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row-split table's partial sums under ``row_reduction: host``, per rank: bytes
    sent and received within the host (each holder sends each other rank of its host the
    partial sums of the samples that rank sums: those of the ranks at its position on
    every host), then sent and received across hosts (each rank of a host holding rows
    sends its sum to the ranks at its position on the other hosts). ``holder``: 1 where
    a rank holds rows; ``block``: one rank's samples' partial sums, in bytes."""
    world = len(holder)
    g = world // hosts
    on_host = holder.reshape(hosts, g).sum(axis=1)  # holders per host
    host_holds = np.repeat((on_host > 0).astype(np.int64), g)
    mates = np.repeat(on_host, g) - holder  # other holders on the rank's host
    within_sent = holder * ((g - 1) * hosts * block)
    within_received = mates * (hosts * block)
    across_sent = host_holds * ((hosts - 1) * block)
    across_received = (int((on_host > 0).sum()) - host_holds) * block
    return within_sent, within_received, across_sent, across_received


def _everyone(phase: _Phase, count: int) -> None:
    for rank in range(len(phase.sent)):
        phase.sent[rank] += count
        phase.received[rank] += count


def estimate_comm(plan: Plan, config: CommConfig) -> list[RankComm]:
    """Each rank's traffic per step, by phase, with its time at the configured bandwidths."""
    phases = phase_bytes(plan, config)
    result = []
    for rank in range(plan.world_size):
        traffic = {
            name: Traffic(
                sent=phase.sent[rank],
                received=phase.received[rank],
                seconds=max(phase.sent[rank], phase.received[rank]) / config.bytes_per_second(name),
            )
            for name, phase in phases.items()
        }
        result.append(
            RankComm(
                **traffic,
                sent_bytes=sum(t.sent for t in traffic.values()),
                received_bytes=sum(t.received for t in traffic.values()),
                seconds=plain_sum(t.seconds for t in traffic.values()),
            )
        )
    return result


def summarize_comm(comms: list[RankComm]) -> CommStats:
    """Totals over ranks; a phase lasts as long as its slowest rank, phases one after another."""
    phase_seconds = {
        name: max(getattr(comm, name).seconds for comm in comms)
        for name in PHASES
        if name not in HOST_PHASES or any(getattr(comm, name).sent for comm in comms)
    }
    total = sum(comm.sent_bytes for comm in comms)
    return CommStats(
        total_bytes=total,
        mean_rank_bytes=total / len(comms),
        max_rank_sent_bytes=max(comm.sent_bytes for comm in comms),
        max_rank_received_bytes=max(comm.received_bytes for comm in comms),
        phase_seconds=phase_seconds,
        step_seconds=plain_sum(phase_seconds.values()),
    )
