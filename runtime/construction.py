"""This rank's variables, created from the plan: what the layer's ``build`` does.

The layer holds three groups of variables, always in this order (the order
:func:`runtime.weights.variable_pieces` describes): a full copy of every
data-parallel table, this rank's table-parallel weights (several tables fused by rows
where the plan says so), and this rank's rows of every row-sliced table. Variables
that hold this rank's own pieces are marked local, so Horovod neither broadcasts nor
averages them. A table-parallel weight the plan offloads (``"device": "host"``) is
created on the host's CPU; everything else on the rank's default device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import tensorflow as tf

from planner.plan import LocalWeight, Plan
from runtime.anchor import create_anchor
from runtime.planning import layer_initializer
from runtime.slots import mark_local

# Where offloaded weights, their optimizer slots and their lookups live.
HOST_DEVICE = "/CPU:0"


@dataclass(frozen=True)
class LayerVariables:
    """The variables a layer built on one rank, by group, in plan order."""

    data_parallel: list[tf.Variable]
    table_parallel: list[tf.Variable]
    row_slices: list[tf.Variable]
    # Empty, local and hidden from Keras; read by the exchange so that every rank's
    # gradient tape records it (see runtime.anchor). None when nothing is exchanged.
    anchor: tf.Variable | None

    def tables_in_order(self) -> list[tf.Variable]:
        """The variables holding table pieces, in the order of ``variable_pieces``."""
        return self.data_parallel + self.table_parallel + self.row_slices

    def trainable(self) -> list[tf.Variable]:
        """Every variable the layer trains, the anchor included."""
        return self.tables_in_order() + ([] if self.anchor is None else [self.anchor])


def table_initializers(plan: Plan, embeddings: list | None) -> list:
    """One Keras initializer per plan table: the given layers', or the plan's own."""
    if embeddings:
        return [layer_initializer(layer) for layer in embeddings]
    return [tf.keras.initializers.get(_initializer_identifier(t.initializer)) for t in plan.tables]


def create_variables(
    layer: tf.keras.layers.Layer, plan: Plan, rank: int, initializers: list
) -> LayerVariables:
    """Add this rank's variables to ``layer`` (with ``add_weight``), as the plan places them."""
    index = {t.name: i for i, t in enumerate(plan.tables)}
    rank_plan = plan.ranks[rank]
    data_parallel = []
    for i, name in enumerate(plan.groups.data_parallel):
        table = plan.tables[index[name]]
        data_parallel.append(
            _add_table_weight(
                layer,
                f"data_parallel_{i}",
                [table.rows, table.width],
                table.dtype,
                initializers[index[name]],
            )
        )
    table_parallel = []
    for i, weight in enumerate(rank_plan.table_parallel_weights):
        parts = [(initializers[index[m.table]], m.rows) for m in weight.members]
        with on_planned_device(weight):
            var = _add_table_weight(
                layer,
                f"table_parallel_{i}",
                [weight.rows, weight.width],
                weight.dtype,
                _StackedInitializer(parts),
            )
        mark_local(var)
        if weight.device == "host":
            var.de_device = HOST_DEVICE  # its optimizer slots go there too (runtime.slots)
        table_parallel.append(var)
    row_slices = []
    for i, row_slice in enumerate(rank_plan.row_slices):
        table = plan.tables[index[row_slice.table]]
        var = _add_table_weight(
            layer,
            f"row_slice_{i}",
            [row_slice.rows[1] - row_slice.rows[0], table.width],
            table.dtype,
            initializers[index[row_slice.table]],
        )
        mark_local(var)
        row_slices.append(var)
    anchor = None
    groups = plan.input_groups
    if plan.world_size > 1 and (groups.table_parallel or groups.row_sliced):
        anchor = create_anchor(f"{layer.name}/exchange_anchor")
    return LayerVariables(data_parallel, table_parallel, row_slices, anchor)


def on_planned_device(weight: LocalWeight):
    """The device scope of a table-parallel weight: the host's CPU for a weight the plan
    offloads (``"device": "host"``), else none, so the rank's default device (its GPU
    when it has one) holds it."""
    return tf.device(HOST_DEVICE) if weight.device == "host" else contextlib.nullcontext()


def _add_table_weight(layer, name, shape, dtype, initializer) -> tf.Variable:
    # No autocast: lookups read the stored dtype and cast the (small) outputs instead.
    return layer.add_weight(
        name=name,
        shape=shape,
        dtype=dtype,
        initializer=initializer,
        trainable=True,
        experimental_autocast=False,
    )


def _initializer_identifier(initializer):
    """Plan initializers are Keras identifiers: a name or {class_name, config}."""
    return dict(initializer) if isinstance(initializer, dict) else initializer


class _StackedInitializer(tf.keras.initializers.Initializer):
    """Initialize a fused weight member by member, each with its own table's initializer.

    Each member is initialized with its own shape ([table rows, piece width]).
    """

    def __init__(self, parts: list[tuple[tf.keras.initializers.Initializer, int]]):
        self.parts = parts

    def __call__(self, shape, dtype=None, **kwargs):
        blocks = [init([rows, shape[1]], dtype=dtype) for init, rows in self.parts]
        return tf.concat(blocks, axis=0)
