"""Settings a spec gives that change nothing in its plan.

A spec is valid with them, and refusing it would break specs that keep, say, an
``objective`` for the day they switch to ``auto``. But a setting that silently does
nothing is usually a slip (the wrong strategy, a forgotten ``offload``), so
``planner plan`` names each on standard error, once, with what would make it count.
"""

from __future__ import annotations

from planner.spec import Spec

DEFAULT_COLUMN_MULTIPLE = Spec.model_fields["column_multiple"].default


def unused_settings(spec: Spec) -> list[str]:
    """One line per setting of ``spec`` that its plan will not use, and why."""
    notes = []
    if spec.world_size == 1 and spec.strategy != "basic":
        notes.append(
            f"strategy: with one rank there is nothing to balance, and basic places the "
            f"tables whatever is asked ({spec.strategy} is recorded as requested)"
        )
    elif spec.strategy != "auto":
        if spec.objective is not None:
            notes.append(
                f"objective: only strategy auto optimises one; {spec.strategy} places by "
                f"its own rule (use --strategy auto)"
            )
        if spec.column_multiple != DEFAULT_COLUMN_MULTIPLE:
            notes.append(
                f"column_multiple: only strategy auto cuts columns in multiples; "
                f"{spec.strategy} slices by column_slice_threshold (use --strategy auto)"
            )
    if spec.host_memory is not None and spec.offload == "none":
        notes.append(
            "host_memory: only offloaded pieces live in host memory, and offload is none "
            "(set offload: auto or upstream)"
        )
    one_host = spec.world_size <= spec.gpus_per_host or spec.gpus_per_host == 1
    if spec.row_reduction == "host" and one_host:
        notes.append(
            "row_reduction: host has nothing to add up with "
            + ("one rank per host" if spec.gpus_per_host == 1 else "every rank on one host")
            + "; the layer makes the direct exchange"
        )
    if not spec.dp_input and spec.world_size > 1:
        notes += [
            f"{key}: no replicas or row slices without dp_input (data-parallel input)"
            for key in ("data_parallel_threshold", "row_slice_threshold")
            if getattr(spec, key) is not None
        ]
    return notes
