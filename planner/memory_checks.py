"""A plan's memory on its own terms: each rank within its device and host memory, and
the pieces in host memory the ones its offload rule picks (README, "CPU offload").

Part of ``planner.consistency``'s checks, which run whenever a plan is loaded.
"""

from __future__ import annotations

from planner.costs.memory import memory_limit, ranks_over_host_limit, ranks_over_limit
from planner.plan import LocalWeight, Plan, RankPlan
from planner.spec_fields import DTYPE_BYTES
from planner.units import human_bytes


def offload_problems(plan: Plan) -> list[str]:
    """Pieces in host memory: only table-parallel ones, each a weight of its own, its shard
    saying so too, and chosen by the plan's rule (README, "CPU offload")."""
    problems = []
    table_parallel = set(plan.groups.table_parallel)
    problems += [
        f"shards: the shard of {s.table!r} on rank {s.rank} is in host memory, but only "
        "table-parallel pieces can be offloaded"
        for s in plan.table_parallel_shards
        if s.device == "host" and s.table not in table_parallel
    ]
    device_of = {(s.table, s.rank): s.device for s in plan.table_parallel_shards}
    offload = plan.parameters.offload
    for rank in plan.ranks:
        where = f"ranks[{rank.rank}]"
        for w_index, weight in enumerate(rank.table_parallel_weights):
            problems += [
                f"{where}: weight {w_index} is on {weight.device} but the shard of "
                f"{m.table!r} says {device_of[(m.table, rank.rank)]}"
                for m in weight.members
                if device_of.get((m.table, rank.rank), weight.device) != weight.device
            ]
            if weight.device == "host" and len(weight.members) > 1:
                problems.append(
                    f"{where}: weight {w_index} is in host memory but fuses "
                    f"{len(weight.members)} pieces; an offloaded piece is a weight of its own"
                )
        host = [w for w in rank.table_parallel_weights if w.device == "host"]
        if host and offload == "none":
            problems.append(
                f"{where}: {len(host)} weights are in host memory but parameters.offload is none"
            )
        elif offload == "upstream":
            problems += _upstream_rule_problems(plan, rank)
        elif offload == "auto":
            problems += _auto_rule_problems(plan, rank)
    return problems


def _piece_elements(rank: RankPlan, device: str) -> list[int]:
    """Elements of each piece on ``device`` (a fused weight holds several)."""
    return [
        m.rows * (m.cols[1] - m.cols[0])
        for w in rank.table_parallel_weights
        if w.device == device
        for m in w.members
    ]


def _upstream_rule_problems(plan: Plan, rank: RankPlan) -> list[str]:
    """Upstream's rule, in terms the plan holds: the kept pieces' elements are within
    gpu_embedding_size, every offloaded piece is at least as large as every kept one, and
    the smallest offloaded piece would have passed the limit."""
    budget = plan.parameters.gpu_embedding_size
    if budget is None:
        return ["parameters: offload upstream needs gpu_embedding_size"]
    kept, gone = _piece_elements(rank, "gpu"), _piece_elements(rank, "host")
    where = f"ranks[{rank.rank}]"
    if sum(kept) > budget:
        return [
            f"{where}: keeps {sum(kept):,} elements on the GPU, over gpu_embedding_size {budget:,}"
        ]
    if gone and (max(kept, default=0) > min(gone) or sum(kept) + min(gone) <= budget):
        return [f"{where}: the pieces in host memory are not the largest beyond gpu_embedding_size"]
    return []


def _auto_rule_problems(plan: Plan, rank: RankPlan) -> list[str]:
    """offload auto moves pieces only as far as the rank must: no offloaded piece would
    fit in the device memory the rank leaves free."""
    limit = memory_limit(plan)
    if limit is None:
        return ["parameters: offload auto needs device_memory"]
    factor = 1 + plan.parameters.optimizer_slots
    free = limit - rank.device_bytes
    return [
        f"ranks[{rank.rank}]: the piece of {w.members[0].table!r} is in host memory but fits "
        f"in the {human_bytes(free)} of device memory left"
        for w in rank.table_parallel_weights
        if w.device == "host" and w.members and _weight_bytes(w) * factor <= free
    ]


def _weight_bytes(weight: LocalWeight) -> int:
    return weight.rows * weight.width * DTYPE_BYTES[weight.dtype]


def limit_problems(plan: Plan) -> list[str]:
    """Each rank within its usable device memory and, with offload, its host memory."""
    problems = []
    limit = memory_limit(plan)
    if limit is not None:
        problems += [
            f"ranks[{r.rank}]: {human_bytes(r.device_bytes)} on the GPU, over the "
            f"{human_bytes(limit)} usable device memory"
            for r in ranks_over_limit(plan)
        ]
    problems += [
        f"ranks[{r.rank}]: {human_bytes(r.host_bytes)} in host memory, over host_memory "
        f"{human_bytes(plan.parameters.host_memory or 0)}"
        for r in ranks_over_host_limit(plan)
    ]
    return problems
