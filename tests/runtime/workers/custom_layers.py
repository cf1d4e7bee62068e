"""Custom embedding layers: ``horovodrun -np N python custom_layers.py NAME...``.

``DistributedEmbedding`` built from Keras layers that only have ``input_dim``,
``output_dim`` and ``get_config`` (as upstream accepts them), placed over every group
(data-parallel, table-parallel with column slices, row-sliced), must start each table
from the layer's initializer and compute what a single process computes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from scenarios import check

import runtime
from runtime import DistributedEmbedding

START = 0.25  # the constant the configured layer starts from


class GatherEmbedding(tf.keras.layers.Layer):
    """Only what upstream requires of a custom layer: sizes and a config, no initializer."""

    def __init__(self, input_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim

    def get_config(self) -> dict:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim}


class ConfiguredEmbedding(GatherEmbedding):
    """Names its initializer in its config only, not as an attribute."""

    def get_config(self) -> dict:
        initializer = {"class_name": "Constant", "config": {"value": START}}
        return {**super().get_config(), "embeddings_initializer": initializer}


def custom_tables() -> list[tf.keras.layers.Layer]:
    """Sizes chosen so that on 2 and 3 ranks every group holds a custom layer's table."""
    return [
        GatherEmbedding(6, 3, name="dp_default"),  # 18 elements: data-parallel
        ConfiguredEmbedding(5, 2, name="dp_configured"),  # 10: data-parallel
        GatherEmbedding(30, 8, name="tp_default"),  # 240: column-sliced
        ConfiguredEmbedding(25, 6, name="tp_configured"),  # 150: column-sliced
        ConfiguredEmbedding(200, 4, name="rows_configured"),  # 800: row-sliced
        GatherEmbedding(150, 4, name="rows_default"),  # 600: row-sliced
        runtime.Embedding(20, 4, combiner="sum", name="ours"),  # 80: table-parallel
        tf.keras.layers.Embedding(12, 5, name="keras"),  # 60: table-parallel
    ]


PLACEMENT = {
    "strategy": "memory_balanced",
    "data_parallel_threshold": 20,
    "column_slice_threshold": 100,
    "row_slice_threshold": 500,
}
INPUT_TABLE_MAP = [0, 1, 2, 3, 4, 5, 6, 7, 2, 4]  # tables 2 and 4 read twice


def expect_groups(plan) -> None:
    """The sizes above must keep covering every group, or the scenario tests less."""
    if hvd.size() == 1:
        return  # one rank: every table is table-parallel
    groups = plan.groups
    wanted = {
        "data_parallel": {"dp_default", "dp_configured"},
        "row_sliced": {"rows_configured", "rows_default"},
    }
    for group, names in wanted.items():
        if not names <= set(getattr(groups, group)):
            raise AssertionError(f"{group} is {getattr(groups, group)}, expected {names}")
    sliced = {s.table for s in plan.shards if tuple(s.cols) != (0, plan.table(s.table).width)}
    if "tp_default" not in sliced:  # tp_configured's slices merge on one of 2 ranks
        raise AssertionError(f"column-sliced tables are {sliced}; expected tp_default among them")


def expect_starts(layer: DistributedEmbedding) -> None:
    """Configured tables start at START everywhere; the others from Keras' uniform
    default, RandomUniform(-0.05, 0.05), so spread and within its bounds."""
    for table, weights in zip(layer.plan.tables, layer.get_weights(all_ranks=True), strict=True):
        if "configured" in table.name:
            if not np.all(weights == np.float32(START)):
                raise AssertionError(f"{table.name} does not start at {START}")
        elif np.abs(weights).max() > 0.05 or weights.std() < 0.01:
            raise AssertionError(
                f"{table.name} starts in [{weights.min():.3g}, {weights.max():.3g}], "
                f"std {weights.std():.3g}: not Keras' uniform default"
            )


def constructor():
    """Upstream's constructor with custom layers: plans in process."""
    layer = DistributedEmbedding(
        custom_tables(), input_table_map=INPUT_TABLE_MAP, name="de_custom", **PLACEMENT
    )
    expect_groups(layer.plan)
    expect_starts(layer)
    check("custom_constructor", {}, layer=layer, plan=layer.plan)


def from_plan():
    """A committed plan with custom layers given for the initializers."""
    tables = custom_tables()
    plan = common.plan_for(
        {
            **PLACEMENT,
            "tables": [
                {
                    "name": t.name,
                    "rows": t.input_dim,
                    "width": t.output_dim,
                    "combiner": getattr(t, "combiner", None),
                }
                for t in tables
            ],
            "inputs": [
                {"name": f"in_{i}", "table": tables[t].name}
                for i, t in enumerate(INPUT_TABLE_MAP)
            ],
        }
    )
    layer = DistributedEmbedding.from_plan(plan, embeddings=tables, name="de_custom_plan")
    expect_groups(plan)
    expect_starts(layer)
    check("custom_from_plan", {}, layer=layer, plan=plan, layouts={"in_6": "ragged"})


SCENARIOS = {"constructor": constructor, "from_plan": from_plan}


if __name__ == "__main__":
    hvd.init()
    tf.keras.utils.set_random_seed(1234)
    names = sys.argv[1:] or list(SCENARIOS)
    sys.exit(1 if common.run(SCENARIOS, names) else 0)
