"""Settings a spec gives that change nothing in its plan.

A spec is valid with them, and refusing it would break specs that keep, say, an
``objective`` for the day they switch to ``auto``. But a setting that silently does
nothing is usually a slip (the wrong strategy, a forgotten ``offload``), so
``planner plan`` names each on standard error, once, with what would make it count.
"""

from __future__ import annotations

from typing import Any

from planner.plan import Plan
from planner.spec import Spec
from planner.spec_fields import summing_hosts

# Used only by the step estimate (and by auto, which estimates even without a batch);
# gpus_per_host is not among them: host sums and capacity advice read it too
ESTIMATE_FIELDS = (
    "id_bytes",
    "compute_dtype",
    "alltoall_bandwidth",
    "allreduce_bandwidth",
    "intra_host_bandwidth",
    "memory_bandwidth",
)
AUTO_FIELDS = ("objective", "column_multiple")  # what only auto reads
SPLIT_FIELDS = ("data_parallel_threshold", "row_slice_threshold")  # need dp_input, 2+ ranks


def unused_settings(spec: Spec) -> list[str]:
    """One line per setting of ``spec`` that its plan will not use, and why."""
    placing = _one_rank_notes(spec) if spec.world_size == 1 else _placement_notes(spec)
    return placing + _estimate_notes(spec) + _memory_notes(spec)


def unused_in_plan(plan: Plan) -> list[str]:
    """What only the plan shows: ``row_reduction: host`` asked for where no table came
    out row-sliced (the spec alone cannot say; its thresholds and the sizes decide)."""
    params = plan.parameters
    asked = params.requested_row_reduction == "host"
    hosts = summing_hosts("host", plan.world_size, params.gpus_per_host)
    if asked and hosts and params.dp_input and not plan.groups.row_sliced:
        return [
            "row_reduction: no table is row-sliced in this plan, so there are no partial "
            "sums to add up (row_slice_threshold sets which tables are)"
        ]
    return []


def _placement_notes(spec: Spec) -> list[str]:
    """On several ranks: what the strategy, ``dp_input`` or the hosts leave unread."""
    notes = []
    if spec.strategy != "auto":
        notes += [
            f"{key}: only strategy auto reads it; {spec.strategy} places by its own rule "
            f"(use --strategy auto)"
            for key in AUTO_FIELDS
            if _set(spec, key)
        ]
    if spec.row_reduction == "host":
        if not spec.dp_input:
            notes.append("row_reduction: without dp_input no table is row-sliced")
        elif spec.world_size <= spec.gpus_per_host or spec.gpus_per_host == 1:
            where = "one rank per host" if spec.gpus_per_host == 1 else "every rank on one host"
            notes.append(
                f"row_reduction: host has nothing to add up with {where}; the layer makes "
                f"the direct exchange"
            )
    if not spec.dp_input:
        notes += [
            f"{key}: no replicas or row slices without dp_input (data-parallel input)"
            for key in SPLIT_FIELDS
            if getattr(spec, key) is not None
        ]
    return notes


def _one_rank_notes(spec: Spec) -> list[str]:
    """On one rank there is nothing to balance or split: basic places every table whole."""
    why = "with one rank, basic places every table whole"
    notes = []
    if spec.strategy != "basic":
        notes.append(f"strategy: {why} ({spec.strategy} is recorded as requested)")
    notes += [
        f"{key}: {why}"
        for key in (*AUTO_FIELDS, *SPLIT_FIELDS, "column_slice_threshold")
        if _set(spec, key)
    ]
    if _set(spec, "row_reduction"):
        notes.append("row_reduction: with one rank no table is row-sliced")
    return notes


def _estimate_notes(spec: Spec) -> list[str]:
    """The estimate's settings where there is no estimate: no batch, and no ``auto``
    (which estimates anyway) placing over several ranks."""
    if spec.global_batch_size is not None or (spec.strategy == "auto" and spec.world_size > 1):
        return []
    return [
        f"{key}: only the step estimate uses it, and there is none without global_batch_size"
        for key in ESTIMATE_FIELDS
        if _set(spec, key)
    ]


def _memory_notes(spec: Spec) -> list[str]:
    """Memory settings that have nothing to limit."""
    notes = []
    if spec.memory_reserve and spec.device_memory is None:
        notes.append("memory_reserve: a share of device_memory, which is not set")
    if spec.host_memory is not None and spec.offload == "none":
        notes.append(
            "host_memory: only offloaded pieces live in host memory, and offload is none "
            "(set offload: auto or upstream)"
        )
    return notes


def _set(spec: Spec, key: str) -> bool:
    """Whether ``key`` differs from its default (an objective or a threshold given)."""
    value: Any = getattr(spec, key)
    return value != Spec.model_fields[key].default
