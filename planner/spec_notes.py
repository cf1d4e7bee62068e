"""Settings a spec gives that change nothing in its plan.

A spec is valid with them, and refusing it would break specs that keep, say, an
``objective`` for the day they switch to ``auto``. But a setting that silently does
nothing is usually a slip (the wrong strategy, a forgotten ``offload``), so
``planner plan`` names each on standard error, once, with what would make it count.
"""

from __future__ import annotations

from typing import Any

from planner.spec import Spec

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
    if spec.world_size == 1:
        return _one_rank_notes(spec)
    notes = []
    if spec.strategy != "auto":
        notes += [
            f"{key}: only strategy auto reads it; {spec.strategy} places by its own rule "
            f"(use --strategy auto)"
            for key in AUTO_FIELDS
            if _set(spec, key)
        ]
        if spec.global_batch_size is None:
            notes += [
                f"{key}: only the step estimate uses it, and there is none without "
                f"global_batch_size"
                for key in ESTIMATE_FIELDS
                if _set(spec, key)
            ]
    if spec.memory_reserve and spec.device_memory is None:
        notes.append("memory_reserve: a share of device_memory, which is not set")
    if spec.host_memory is not None and spec.offload == "none":
        notes.append(
            "host_memory: only offloaded pieces live in host memory, and offload is none "
            "(set offload: auto or upstream)"
        )
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
        for key in (*AUTO_FIELDS, *SPLIT_FIELDS, "column_slice_threshold", "row_reduction")
        if _set(spec, key)
    ]
    return notes


def _set(spec: Spec, key: str) -> bool:
    """Whether ``key`` differs from its default (an objective or a threshold given)."""
    value: Any = getattr(spec, key)
    return value != Spec.model_fields[key].default
