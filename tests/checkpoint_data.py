"""Plans and global arrays for the checkpoint tests, and a writer of checkpoints from them.

MIXED (hand-worked, as the planner places it; see the tests that pin it):
  dp    6 x 4   data-parallel (24 elements <= 30)
  big  60 x 4   row-sliced (240 >= 200)
  wide 12 x 16  column-sliced (192 > 64)
  f1, f2, f3    10/11/9 x 4, table-parallel, fused where they meet
  half  8 x 8   float16, table-parallel
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from planner import make_plan, spec_from_dict
from planner.checkpoint import write_checkpoint
from planner.checkpoint.manifest import STORAGE_DTYPES, OptimizerEntry


def table(name, rows, width, combiner="sum", **extra):
    return {"name": name, "rows": rows, "width": width, "combiner": combiner, **extra}


MIXED = {
    "data_parallel_threshold": 30,
    "row_slice_threshold": 200,
    "column_slice_threshold": 64,
    "tables": [
        table("dp", 6, 4),
        table("big", 60, 4, "mean"),
        table("wide", 12, 16),
        table("f1", 10, 4),
        table("f2", 11, 4, "mean"),
        table("f3", 9, 4, "mean"),
        table("half", 8, 8, dtype="float16"),
    ],
}

ADAM = OptimizerEntry(name="Adam", slots=["m", "v"], iterations=7)


def plan_of(spec: dict, world_size: int, strategy: str = "basic"):
    return make_plan(spec_from_dict({**spec, "world_size": world_size, "strategy": strategy}))


def global_arrays(plan, slots=("weights", "m", "v"), seed=0) -> dict[tuple[str, str], np.ndarray]:
    """Distinct random values for every table and slot, in the tables' storage dtypes."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for t in plan.tables:
        for slot in slots:
            values = rng.normal(size=(t.rows, t.width))
            if t.dtype == "bfloat16":  # stored as raw bits: any distinct uint16 values do
                values = rng.integers(0, 2**16, size=(t.rows, t.width))
            arrays[t.name, slot] = values.astype(STORAGE_DTYPES[t.dtype])
    return arrays


def write(path: Path, plan, arrays, optimizer: OptimizerEntry | None = ADAM, **kwargs):
    return write_checkpoint(path, plan, lambda t, s: arrays[t, s], optimizer, **kwargs)
