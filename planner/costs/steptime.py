"""Step time: what a placement costs per training step, lookups and exchanges together.

``costs/comm.py`` counts bytes on the wire. This module turns a placement into time,
the way the runtime executes it (docs/cost_model.md has every formula and constant):

- **Lookups.** A rank holding a table-parallel piece looks up every id of the global
  batch for it: it reads the ids, one row of the piece's width per id and writes one
  pooled output per sample and input, at ``memory_bandwidth`` (a row read moves at least
  ``MIN_ROW_BYTES``, one cache line, however narrow the row); each id also costs
  ``LOOKUP_SECONDS`` (kernel work that is not bandwidth). A column piece pays the ids
  and the per-id cost again, so cutting a hot table multiplies them. A row slice looks
  up only the ids in its rows (the runtime buckets ids by holder) and writes a float32
  partial sum. Data-parallel tables look up the local batch. Backward costs
  ``BACKWARD_FACTOR`` times forward.
- **Row splits**, over all ranks or a group of consecutive ranks (one host's, say):
  each rank holding rows receives from every rank the ids in its rows (its share of
  them) and a count per sample, looks those up, and sends every rank full-width float32
  partial sums for its samples; ranks holding no rows take no part.
- **Exchanges.** Every all-to-all, ring allgather, reduce-scatter and allreduce of the
  runtime, per rank, with a topology: ranks ``0..g-1`` share host 0, and so on
  (``gpus_per_host``). Bytes between ranks of one host move at ``intra_host_bandwidth``,
  bytes to other hosts at ``alltoall_bandwidth`` (all-to-all) or ``allreduce_bandwidth``
  (rings, which cross hosts whenever there is more than one); the two kinds of link work
  at the same time, so a rank's all-to-all takes the longer of the two.
- **Critical path.** Collectives make every rank wait for the slowest, so the step is a
  sequence of stages (ids out; forward lookups; outputs back; output gradients;
  backward lookups; data-parallel gradients), each as long as its slowest rank.

Every byte and id count is an integer summed exactly, so the estimate does not depend
on the order in which a placement lists its pieces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from planner.costs.comm import (
    GIGABYTE,
    ROW_PARTIAL_BYTES,
    host_sum_flows,
    plain_sum,
    ring_allreduce_bytes,
)
from planner.plan import Parameters, Plan, RankStep, StepStats
from planner.spec import InputSpec, Spec, TableSpec
from planner.spec_fields import DTYPE_BYTES, summing_hosts

LOOKUP_SECONDS = 1e-10  # per id looked up, per piece: 10 G ids/s of kernel work
BACKWARD_FACTOR = 2  # backward lookups (gradient scatter and update) over forward
MIN_ROW_BYTES = 128  # a row read moves at least one 128-byte cache line
STAGES: tuple[str, ...] = (
    "ids",
    "forward_lookups",
    "host_sums",
    "outputs",
    "output_gradients",
    "host_sum_gradients",
    "backward_lookups",
    "dp_allreduce",
)
HOST_STAGES = frozenset({"host_sums", "host_sum_gradients"})  # row_reduction host only


@dataclass(frozen=True)
class StepConfig:
    """The batch, the hardware and the topology; bandwidths in bytes per second."""

    global_batch_size: int
    world_size: int
    id_bytes: int = 8
    output_bytes: int = 4
    dp_input: bool = True
    gpus_per_host: int = 8
    intra_bandwidth: float = 200.0 * GIGABYTE
    alltoall_bandwidth: float = 25.0 * GIGABYTE
    ring_bandwidth: float = 25.0 * GIGABYTE
    memory_bandwidth: float = 900.0 * GIGABYTE
    summing_hosts: int = 0  # row_reduction host over several hosts: how many

    @classmethod
    def of(cls, settings: Spec | Parameters, world_size: int, batch: int) -> StepConfig:
        """From a spec's or a plan's settings, at ``batch`` samples over all ranks."""
        return cls(
            global_batch_size=batch,
            world_size=world_size,
            id_bytes=settings.id_bytes,
            output_bytes=DTYPE_BYTES[settings.compute_dtype],
            dp_input=settings.dp_input,
            # a host larger than the world is the world: the search's arrays are per host
            gpus_per_host=min(settings.gpus_per_host, world_size),
            intra_bandwidth=settings.intra_host_bandwidth * GIGABYTE,
            alltoall_bandwidth=settings.alltoall_bandwidth * GIGABYTE,
            ring_bandwidth=settings.allreduce_bandwidth * GIGABYTE,
            memory_bandwidth=settings.memory_bandwidth * GIGABYTE,
            summing_hosts=summing_hosts(
                settings.row_reduction, world_size, settings.gpus_per_host
            ),
        )

    @property
    def local_batch(self) -> int:
        return self.global_batch_size // self.world_size

    def host(self, rank: int) -> int:
        return rank // self.gpus_per_host

    def ring_seconds(self, bytes_each_way: int) -> float:
        """A ring collective: within one host at NVLink speed, else at the network's."""
        one_host = self.world_size <= self.gpus_per_host
        return bytes_each_way / (self.intra_bandwidth if one_host else self.ring_bandwidth)


@dataclass(frozen=True)
class TableLoad:
    """What one table costs per sample: the ids its inputs read and the outputs they give."""

    ids_per_sample: int  # hotness summed over the table's inputs
    outputs_per_sample: int  # inputs reading the table
    rows: int
    width: int
    itemsize: int

    @property
    def bytes(self) -> int:
        return self.rows * self.width * self.itemsize


def row_read(cols: int, itemsize: int) -> int:
    """Bytes one lookup reads: the row's, and never less than a cache line."""
    return max(cols * itemsize, MIN_ROW_BYTES)


def table_loads(tables: Sequence[TableSpec], inputs: Sequence[InputSpec]) -> list[TableLoad]:
    """Per table, the ids and outputs its readers bring each sample: what every piece of
    it looks up and sends, whichever rank holds it."""
    index = {t.name: i for i, t in enumerate(tables)}
    ids, outputs = [0] * len(tables), [0] * len(tables)
    for inp in inputs:
        ids[index[inp.table]] += inp.hotness
        outputs[index[inp.table]] += 1
    return [
        TableLoad(ids[i], outputs[i], t.rows, t.width, t.itemsize) for i, t in enumerate(tables)
    ]


@dataclass(frozen=True)
class Holdings:
    """What each rank holds, by table index: the input of the estimate.

    ``pieces[r]``: (table, columns) of rank r's table-parallel pieces; ``row_rows``: for
    each row-sliced table, the rows every rank holds (in rank order); ``replicas``: every
    data-parallel table.
    """

    pieces: Sequence[Sequence[tuple[int, int]]]
    row_rows: Mapping[int, Sequence[int]]
    replicas: Sequence[int]


@dataclass(frozen=True)
class StepEstimate:
    """Per stage, every rank's seconds; the step is the stages' slowest ranks summed."""

    rank_seconds: dict[str, list[float]]
    stage_seconds: dict[str, float]
    step_seconds: float

    def rank(self, rank: int) -> dict[str, float]:
        return {stage: seconds[rank] for stage, seconds in self.rank_seconds.items()}


def piece_traffic(config: StepConfig, load: TableLoad, cols: int) -> tuple[int, int, int, int]:
    """A table-parallel piece of ``cols`` columns, for its holder: the id bytes it receives
    from each other rank, the output bytes it sends each, the bytes its forward lookups
    move in device memory, and the ids they look up (every id of the table's batch)."""
    b, batch = config.local_batch, config.global_batch_size
    id_size = config.id_bytes if config.dp_input else 0
    ids = batch * load.ids_per_sample
    memory = ids * (config.id_bytes + row_read(cols, load.itemsize))
    memory += batch * load.outputs_per_sample * cols * config.output_bytes
    return (
        b * load.ids_per_sample * id_size,
        b * load.outputs_per_sample * cols * config.output_bytes,
        memory,
        ids,
    )


@dataclass(frozen=True)
class RankTraffic:
    """What each rank moves in a step, the input of the stage times.

    The per-rank arrays may carry leading axes (several placements at once, as ``auto``'s
    search scores them); the host-sum flows and the gradient bytes are shared.
    """

    ids_peer: np.ndarray  # id bytes exchanged with each other rank (its own account)
    outputs_peer: np.ndarray  # output bytes exchanged with each other rank
    memory: np.ndarray  # bytes the forward lookups move in device memory
    lookups: np.ndarray  # ids the forward lookups look up
    within: tuple[np.ndarray, np.ndarray]  # host sums: sent, received within the host
    across: tuple[np.ndarray, np.ndarray]  # host sums: sent, received across hosts
    gradients: int  # bytes each way of the data-parallel gradient allreduce

    def with_pieces(self, pieces: np.ndarray) -> RankTraffic:
        """This traffic plus table-parallel pieces: ``pieces[..., k, r]`` adds the k-th of
        ``piece_traffic``'s four counts to rank r."""
        return replace(
            self,
            ids_peer=self.ids_peer + pieces[..., 0, :],
            outputs_peer=self.outputs_peer + pieces[..., 1, :],
            memory=self.memory + pieces[..., 2, :],
            lookups=self.lookups + pieces[..., 3, :],
        )


def rank_traffic(
    config: StepConfig, loads: Sequence[TableLoad], holdings: Holdings
) -> RankTraffic:
    """Each rank's traffic and lookups for a placement (see the module docstring)."""
    world, b = config.world_size, config.local_batch
    counts = np.zeros((4, world), np.int64)  # the pieces' piece_traffic, per rank
    for rank, pieces in enumerate(holdings.pieces):
        for t, cols in pieces:
            counts[:, rank] += piece_traffic(config, loads[t], cols)
    ids_peer, outputs_peer, memory, lookups = counts
    # Row splits travel in the same two all-to-alls (see _row_split_costs); with
    # row_reduction host their partial sums go through the host first (_host_sum_costs).
    within = (np.zeros(world, np.int64), np.zeros(world, np.int64))  # sent, received
    across = (np.zeros(world, np.int64), np.zeros(world, np.int64))
    for t, held in holdings.row_rows.items():
        ids_part, outputs_part, memory_part, lookups_part = _row_split_costs(
            config, loads[t], held
        )
        ids_peer = ids_peer + ids_part  # not in place: a part may hold Python ints
        memory, lookups = memory + memory_part, lookups + lookups_part
        if config.summing_hosts:
            flows, sums_memory = _host_sum_costs(config, loads[t], held)
            within = (within[0] + flows[0], within[1] + flows[1])
            across = (across[0] + flows[2], across[1] + flows[3])
            memory = memory + sums_memory
        else:
            outputs_peer = outputs_peer + outputs_part
    replica_memory, replica_ids, gradients = 0, 0, 0
    for t in holdings.replicas:
        load = loads[t]
        if not load.outputs_per_sample:
            continue  # no input reads it: no lookup, no gradient
        replica_ids += b * load.ids_per_sample
        replica_memory += (
            b * load.ids_per_sample * (config.id_bytes + row_read(load.width, load.itemsize))
        )
        replica_memory += b * load.outputs_per_sample * load.width * config.output_bytes
        gradients += ring_allreduce_bytes(load.bytes, world)
    return RankTraffic(
        ids_peer=ids_peer,
        outputs_peer=outputs_peer,
        memory=memory + replica_memory,
        lookups=lookups + replica_ids,
        within=within,
        across=across,
        gradients=gradients,
    )


def stage_seconds(config: StepConfig, traffic: RankTraffic) -> dict[str, np.ndarray]:
    """Every rank's seconds in each stage (arrays shaped like the traffic's)."""
    outputs = _all_to_all_seconds(config, traffic.outputs_peer, traffic.across)
    host_sums = np.maximum(*traffic.within) / config.intra_bandwidth
    forward = lookup_seconds(config, traffic.memory, traffic.lookups)
    seconds = {
        "ids": _all_to_all_seconds(config, traffic.ids_peer),
        "forward_lookups": forward,
        "host_sums": np.broadcast_to(host_sums, forward.shape),
        "outputs": outputs,
        "output_gradients": outputs,
        "host_sum_gradients": np.broadcast_to(host_sums, forward.shape),
        "backward_lookups": BACKWARD_FACTOR * forward,
        "dp_allreduce": np.full(forward.shape, config.ring_seconds(traffic.gradients)),
    }
    if not config.summing_hosts:
        seconds = {s: v for s, v in seconds.items() if s not in HOST_STAGES}
    return seconds


def lookup_seconds(config: StepConfig, memory: np.ndarray, lookups: np.ndarray) -> np.ndarray:
    """Forward lookups' time: the bytes they move at memory bandwidth, and the ids."""
    return (memory / config.memory_bandwidth + lookups * LOOKUP_SECONDS).astype(float)


def estimate_step(
    config: StepConfig, loads: Sequence[TableLoad], holdings: Holdings
) -> StepEstimate:
    """The step time of a placement (see the module docstring)."""
    per_rank = stage_seconds(config, rank_traffic(config, loads, holdings))
    rank_seconds = {stage: seconds.tolist() for stage, seconds in per_rank.items()}
    slowest = {stage: max(seconds) for stage, seconds in rank_seconds.items()}
    return StepEstimate(rank_seconds, slowest, plain_sum(slowest.values()))


def _row_split_costs(
    config: StepConfig, load: TableLoad, counts: Sequence[int]
) -> tuple[np.ndarray, ...]:
    """Per rank, for one row-split table: the id and output bytes it exchanges with each
    other rank, the bytes its forward lookups move and the ids they look up.

    Each rank sends each holder, per input, a count per sample and the ids in the
    holder's rows (a share ``R / R_t`` of them, ids taken as spread over the rows like
    the rows themselves); each holder sends every rank full-width float32 partial sums
    for its samples. Ranks holding no rows take no part. Integer arithmetic, exact.
    """
    b, batch, i = config.local_batch, config.global_batch_size, config.id_bytes
    h, n, rows = load.ids_per_sample, load.outputs_per_sample, max(load.rows, 1)
    outputs = n * load.width * ROW_PARTIAL_BYTES
    held = np.asarray(counts, np.int64)
    holders = (held > 0).astype(np.int64)
    if max(batch * h, batch * row_read(load.width, load.itemsize)) * rows < 2**62:
        share = batch * h * held // rows  # ids each holder looks up
        peer = holders * (b * n * i) + (b * h * held // rows) * i
        memory = holders * (batch * n * i + batch * outputs) + share * i
        memory += batch * h * row_read(load.width, load.itemsize) * held // rows
        return peer, holders * (b * outputs), memory, share
    # Too large for int64 at once: the same, per rank, in Python's integers.
    values = [
        (
            (b * n * i + b * h * r // rows * i) if r else 0,
            b * outputs if r else 0,
            (batch * n * i + batch * outputs + batch * h * r // rows * i
             + batch * h * row_read(load.width, load.itemsize) * r // rows) if r else 0,
            batch * h * r // rows,
        )
        for r in held.tolist()
    ]
    return tuple(np.array(column, dtype=object) for column in zip(*values, strict=True))


def _host_sum_costs(
    config: StepConfig, load: TableLoad, counts: Sequence[int]
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """One row-split table's partial sums under ``row_reduction: host``: per rank, the
    bytes sent and received within its host and across hosts (``host_sum_flows``), and
    the bytes a rank moves adding up its host's partial sums for the samples it sums
    (reading each holder's, writing the sum)."""
    b, hosts = config.local_batch, config.summing_hosts
    block = b * load.outputs_per_sample * load.width * ROW_PARTIAL_BYTES
    holder = (np.asarray(counts, np.int64) > 0).astype(np.int64)
    flows = host_sum_flows(holder, hosts, block)
    g = config.world_size // hosts
    on_host = np.repeat(holder.reshape(hosts, g).sum(axis=1), g)
    memory = np.where(on_host > 0, (on_host + 1) * hosts * block, 0)
    return flows, memory


def _all_to_all_seconds(
    config: StepConfig,
    per_peer: np.ndarray,
    across: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Each rank's time in an all-to-all where rank r exchanges ``per_peer[r]`` bytes with
    every other rank (its own account) and ``per_peer[q]`` with each other rank q (theirs),
    plus, with ``across``, the bytes each rank sends and receives across hosts besides.
    ``per_peer`` may carry leading axes (several placements at once)."""
    world, g = config.world_size, config.gpus_per_host
    host_total = np.add.reduceat(per_peer, np.arange(0, world, g), axis=-1)
    total = per_peer.sum(axis=-1, keepdims=True)
    ranks = np.arange(world)
    return exchange_seconds(config, ranks, per_peer, host_total[..., ranks // g], total, across)


def exchange_seconds(
    config: StepConfig,
    ranks: np.ndarray,
    own: np.ndarray,
    host_total: np.ndarray,
    total: np.ndarray,
    across: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The all-to-all time of each of ``ranks``, which exchanges ``own`` bytes with every
    other rank, while its host's ranks exchange ``host_total`` and all ranks ``total`` per
    peer (broadcast against ``own``); ``across`` is indexed by rank.

    Bytes within a host and bytes between hosts use different links at the same time; a
    rank's time is the longer of the two, each the larger of sent and received.
    """
    world, g = config.world_size, config.gpus_per_host
    peers_here = np.minimum(g, world - ranks // g * g) - 1
    own_intra, own_inter = peers_here * own, (world - 1 - peers_here) * own
    theirs_intra, theirs_inter = host_total - own, total - host_total
    if across is not None:
        own_inter, theirs_inter = own_inter + across[0][ranks], theirs_inter + across[1][ranks]
    return np.maximum(
        np.maximum(own_intra, theirs_intra) / config.intra_bandwidth,
        np.maximum(own_inter, theirs_inter) / config.alltoall_bandwidth,
    ).astype(float)


# -- plans -------------------------------------------------------------------------------


def plan_holdings(plan: Plan) -> Holdings:
    """What each rank of a plan holds, by table index."""
    index = {t.name: i for i, t in enumerate(plan.tables)}
    pieces = [
        [
            (index[m.table], m.cols[1] - m.cols[0])
            for weight in rank.table_parallel_weights
            for m in weight.members
        ]
        for rank in plan.ranks
    ]
    row_rows = {index[name]: [0] * plan.world_size for name in plan.groups.row_sliced}
    for split in plan.row_splits:  # whole vectors: not one row slice per rank and table
        if index.get(split.table) in row_rows:
            starts, ends = split.bounds(plan.tables[index[split.table]].rows, plan.world_size)
            row_rows[index[split.table]] = (ends - starts).tolist()
    return Holdings(
        pieces=pieces,
        row_rows=row_rows,
        replicas=[index[name] for name in plan.groups.data_parallel],
    )


def plan_step(plan: Plan) -> list[RankStep] | None:
    """Each rank's stages of the step, when the plan names a global batch size."""
    params = plan.parameters
    if params.global_batch_size is None:
        return None
    config = StepConfig.of(params, plan.world_size, params.global_batch_size)
    estimate = estimate_step(config, table_loads(plan.tables, plan.inputs), plan_holdings(plan))
    steps = []
    for rank in range(plan.world_size):
        stages = estimate.rank(rank)
        steps.append(RankStep(**stages, seconds=plain_sum(stages.values())))
    return steps


def summarize_step(steps: list[RankStep]) -> StepStats:
    """Each stage as long as its slowest rank, stages one after another."""
    stage_seconds = {
        stage: max(getattr(step, stage) for step in steps)
        for stage in STAGES
        if stage not in HOST_STAGES or any(getattr(step, stage) for step in steps)
    }
    slowest = max(range(len(steps)), key=lambda r: (steps[r].seconds, -r))
    return StepStats(
        stage_seconds=stage_seconds,
        step_seconds=plain_sum(stage_seconds.values()),
        slowest_rank=slowest,
    )
