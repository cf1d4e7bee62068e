"""Scenario worker for row splits over groups of ranks: ``horovodrun -np 3|4 python
row_groups.py NAME...``.

Each row-sliced table's rows lie on the ranks its ``row_splits`` entry names, a group
of consecutive ranks or all of them. Outputs and tables after one SGD step must equal
the single-process reference, and the layer's two forward all-to-alls must carry to
each rank holding a table's rows only the ids in its rows (and a count per sample),
and partial sums only from those ranks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from common import plan_for
from scenarios import _seed, check, inp, table

from planner.costs.comm import CommConfig, estimate_comm
from planner.plan import Plan, parse_plan
from planner.spec_fields import summing_hosts
from runtime import exchange
from runtime.checks import RECORD_FIELDS

# Three row-sliced tables (elements >= 400), two table-parallel ones, one replica.
SPEC = {
    "data_parallel_threshold": 40,
    "row_slice_threshold": 400,
    "tables": [
        table("small", 8, 4, "sum"),
        table("t1", 20, 4, "sum"),
        table("t2", 25, 6, "mean"),
        table("ga", 101, 4, "mean"),
        table("gb", 90, 8, "sum"),
        table("everywhere", 120, 4, "sum"),
    ],
    "inputs": [
        inp("s", "small", 2),
        inp("t1", "t1", 3),
        inp("t2", "t2", 2),
        inp("a", "ga", 3),
        inp("b", "gb", 2),
        inp("w", "everywhere"),
        inp("a2", "ga"),
        inp("b2", "gb", 3),
    ],
}
LAYOUTS = {"a": "ragged", "b2": "ragged", "w": "1d", "t2": "ragged"}
# The ranks [first, stop) holding each table's rows, by world size.
GROUPS = {
    4: {"ga": (0, 2), "gb": (2, 4), "everywhere": (0, 4)},
    3: {"ga": (1, 3), "gb": (2, 3), "everywhere": (0, 3)},
}
# Every row on the first host (of two on 4 ranks): the other host's ranks hold none and
# add nothing up, but still take part in the host sums' exchange and its gradient.
ONE_HOST_HOLDS = {
    4: {"ga": (0, 2), "gb": (0, 2), "everywhere": (0, 2)},
    3: {"ga": (0, 1), "gb": (0, 1), "everywhere": (0, 1)},
}


# row_reduction host: 4 ranks as two hosts of 2, 3 ranks as three hosts of 1
def host_spec() -> dict:
    """SPEC with row_reduction host, and the traffic scenario's batch for the estimate;
    on 3 ranks, hosts of one rank, which have nothing to add up (the direct exchange)."""
    return {
        **SPEC, "row_reduction": "host", "global_batch_size": 3 * hvd.size(),
        "gpus_per_host": 2 if hvd.size() == 4 else 1,
    }


def grouped_plan(spec: dict = SPEC, groups: dict = GROUPS) -> Plan:
    """The planner's plan for ``spec``, its row splits moved onto ``groups``' ranks."""
    plan = plan_for(spec)
    groups = groups[hvd.size()]
    if sorted(plan.groups.row_sliced) != sorted(groups):
        raise AssertionError(f"row-sliced tables {plan.groups.row_sliced}; fix SPEC")
    raw = plan.model_dump(mode="json", by_alias=True)
    for split in raw["row_splits"]:
        split["ranks"], split["remainder_start"] = list(groups[split["table"]]), 0
    return parse_plan(raw)


class SplitsSeen:
    """The received split sizes of the layer's id and embedding all-to-alls (eager)."""

    def __init__(self):
        self.ids, self.embeddings = [], []
        self._originals = exchange.alltoall, exchange.differentiable_alltoall

    def __enter__(self):
        def ids(payload, splits, name):
            received, received_splits = self._originals[0](payload, splits, name)
            self.ids.append(received_splits.numpy().tolist())
            return received, received_splits

        def embeddings(payload, splits, name):
            received, received_splits = self._originals[1](payload, splits, name)
            self.embeddings.append(received_splits.numpy().tolist())
            return received, received_splits

        exchange.alltoall, exchange.differentiable_alltoall = ids, embeddings
        return self

    def __exit__(self, *exc):
        exchange.alltoall, exchange.differentiable_alltoall = self._originals


def expected_splits(plan: Plan, data, local_batch: int) -> tuple[list[int], list[int]]:
    """What this rank receives from each rank, dense int32 ids, float32 outputs: in the
    id all-to-all, a record, the ids of the inputs it serves, and for each input of a
    table it holds rows of, a count per sample and the sender's ids in its rows; in the
    embedding all-to-all, each sender's served outputs and its partial sums."""
    rank, hotness = hvd.rank(), {i.name: i.hotness for i in plan.inputs}
    table_of = {i.name: plan.table(i.table) for i in plan.inputs}
    bounds = {
        s.table: s.row_ranges(plan.table(s.table).rows, plan.world_size) for s in plan.row_splits
    }
    spans = {s.table: s.ranks for s in plan.row_splits}

    def holds(r: int, name: str) -> bool:
        return spans[table_of[name].name][0] <= r < spans[table_of[name].name][1]

    row_inputs = plan.input_groups.row_sliced
    served = [local.input for local in plan.ranks[rank].table_parallel_inputs]
    ids = []
    for source in range(hvd.size()):
        count = RECORD_FIELDS + local_batch * sum(hotness[n] for n in served)
        for name in (n for n in row_inputs if holds(rank, n)):
            start, stop = bounds[table_of[name].name][rank]
            sent = np.asarray(data.ids[name])[source * local_batch : (source + 1) * local_batch]
            count += local_batch + int(np.sum((sent >= start) & (sent < stop)))
        ids.append(count)
    outputs = []
    for r, rank_plan in enumerate(plan.ranks):
        widths = [rank_plan.table_parallel_weights[x.weight].width
                  for x in rank_plan.table_parallel_inputs]
        widths += [table_of[n].width for n in row_inputs if holds(r, n)]
        outputs.append(local_batch * sum(widths))
    return ids, outputs


def traffic():
    """Dense ids, eager: each all-to-all carries exactly what the holders need."""
    plan, local_batch = grouped_plan(), 3
    dense = {name: "dense" for name in LAYOUTS if name != "w"}
    with SplitsSeen() as seen:
        check("traffic", SPEC, layouts=dense, local_batch=local_batch, plan=plan)
    data = common.make_data(plan, local_batch, seed=_seed("traffic"), layouts=dense)
    ids, outputs = expected_splits(plan, data, local_batch)
    if seen.ids != [ids]:
        raise AssertionError(f"id all-to-all received {seen.ids}, expected [{ids}]")
    if seen.embeddings != [outputs]:
        raise AssertionError(f"embedding all-to-all received {seen.embeddings}, not [{outputs}]")


def host_sums_traffic():
    """Eager, dense ids: under row_reduction host the embedding all-to-all carries each
    rank's partial sums only from the rank at its position on each host with rows, and
    the exchange within the host only the holders' rows for the ranks each one sums."""
    plan, local_batch = grouped_plan(host_spec()), 3
    dense = {name: "dense" for name in LAYOUTS if name != "w"}
    with SplitsSeen() as seen:
        check("host_sums_traffic", SPEC, layouts=dense, local_batch=local_batch, plan=plan)
    world, g = plan.world_size, plan.parameters.gpus_per_host
    hosts, rank = summing_hosts("host", world, g), hvd.rank()
    if not hosts:
        data = common.make_data(plan, local_batch, seed=_seed("host_sums_traffic"), layouts=dense)
        _, outputs = expected_splits(plan, data, local_batch)
        if seen.embeddings != [outputs]:
            raise AssertionError(f"embeddings received {seen.embeddings}, not [{outputs}]")
        return
    table_of = {i.name: plan.table(i.table) for i in plan.inputs}
    spans = {s.table: s.ranks for s in plan.row_splits}

    def held(r: int) -> list[str]:
        return [n for n in plan.input_groups.row_sliced
                if spans[table_of[n].name][0] <= r < spans[table_of[n].name][1]]

    def on_host(h: int) -> list[str]:
        return [n for n in plan.input_groups.row_sliced
                if any(held(r).count(n) for r in range(h * g, h * g + g))]

    sums = [
        local_batch * hosts * sum(table_of[n].width for n in held(s))
        if s // g == rank // g else 0
        for s in range(world)
    ]
    outputs = []
    for s, rank_plan in enumerate(plan.ranks):
        widths = [rank_plan.table_parallel_weights[x.weight].width
                  for x in rank_plan.table_parallel_inputs]
        if s % g == rank % g:
            widths += [table_of[n].width for n in on_host(s // g)]
        outputs.append(local_batch * sum(widths))
    if seen.embeddings != [sums, outputs]:
        raise AssertionError(
            f"host sums and embeddings received {seen.embeddings}, expected {[sums, outputs]}"
        )
    # float32 throughout, so 4 bytes an element: against the planner's estimate (made
    # anew: grouped_plan moved the row splits after planning)
    comm = estimate_comm(plan, CommConfig.from_parameters(plan.parameters))[rank]
    within = 4 * (sum(sums) - sums[rank])
    across = 4 * (sum(outputs) - outputs[rank])
    estimated = (comm.row_host_sums.received,
                 comm.embedding_alltoall.received + comm.row_reduce_scatter.received)
    if (within, across) != estimated:
        raise AssertionError(f"received {(within, across)} bytes, the plan says {estimated}")


SCENARIOS = {
    "groups": lambda: check("groups", SPEC, layouts=LAYOUTS, plan=grouped_plan()),
    "groups_function": lambda: check(
        "groups_function", SPEC, layouts=LAYOUTS, plan=grouped_plan(), function=True,
        dtype=tf.int64,
    ),
    "traffic": traffic,
    "host_sums": lambda: check("host_sums", SPEC, layouts=LAYOUTS, plan=grouped_plan(host_spec())),
    "host_sums_function": lambda: check(
        "host_sums_function", SPEC, layouts=LAYOUTS, plan=grouped_plan(host_spec()),
        function=True, dtype=tf.int64,
    ),
    "host_sums_half": lambda: check(
        "host_sums_half", SPEC, layouts=LAYOUTS, plan=grouped_plan(host_spec()),
        policy="mixed_float16", atol=2e-2,
    ),
    "host_sums_traffic": host_sums_traffic,
    "host_sums_one_host_holds": lambda: check(
        "host_sums_one_host_holds", SPEC, layouts=LAYOUTS,
        plan=grouped_plan(host_spec(), ONE_HOST_HOLDS), function=True,
    ),
}


if __name__ == "__main__":
    common.main(SCENARIOS)
