"""Regularizers and constraints of the embedding layers, applied to the placed tables.

Upstream rebuilds each embedding layer from its config for every piece, so a layer's
``embeddings_regularizer``, ``activity_regularizer`` and ``embeddings_constraint`` act
on the pieces. Here the tables are the runtime's own variables, so they are applied
here, with the single-process meaning of the model as the goal:

* **Weight regularizers** add a loss per table piece, each member of a fused weight by
  its own table's regularizer. A piece held by one rank only (table-parallel, row
  slice) is counted ``world_size`` times in that rank's loss: the objective is the mean
  of the ranks' losses, and a local variable's gradient is divided by the world size
  (see :mod:`runtime.layer`), so the step equals one process's step with the whole
  table's regularization, for regularizers that add up over elements (L1, L2). A copy
  held by every rank (data-parallel) is counted once on each.
* **Activity regularizers** act on each input's output over the local batch, divided
  by its size as Keras does, so the mean over ranks is the global batch's.
* **Constraints** are set on each variable (Keras optimizers apply them after each
  update), member by member on a fused weight. Element-wise constraints (``NonNeg``)
  give the whole table's result; norm constraints see the piece, not the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from planner.plan import Plan


@dataclass(frozen=True)
class TableTerms:
    """A table's regularizers and constraint, from its embedding layer (None: none)."""

    regularizer: object = None
    activity: object = None
    constraint: object = None


def table_terms(embeddings: list | None) -> list[TableTerms] | None:
    """One entry per table from the given layers; None when no layer has any term."""
    if not embeddings:
        return None
    terms = [
        TableTerms(
            tf.keras.regularizers.get(_setting(layer, "embeddings_regularizer")),
            tf.keras.regularizers.get(
                getattr(layer, "activity_regularizer", None)
                or _setting(layer, "activity_regularizer")
            ),
            tf.keras.constraints.get(_setting(layer, "embeddings_constraint")),
        )
        for layer in embeddings
    ]
    return terms if any(t != TableTerms() for t in terms) else None


def _setting(layer, name: str):
    """A layer's attribute, or its config entry (a custom layer may keep it only there)."""
    value = getattr(layer, name, None)
    return value if value is not None else layer.get_config().get(name)


def attach(layer, plan: Plan, rank: int, variables, terms: list[TableTerms]) -> None:
    """Add the weight regularization losses to ``layer`` and set the constraints."""
    index = {t.name: i for i, t in enumerate(plan.tables)}
    rank_plan = plan.ranks[rank]
    placed = [
        (var, [(index[name], 0, plan.table(name).rows)], 1)
        for var, name in zip(variables.data_parallel, plan.groups.data_parallel, strict=True)
    ]
    for var, weight in zip(variables.table_parallel, rank_plan.table_parallel_weights, strict=True):
        members = [(index[m.table], m.row_offset, m.rows) for m in weight.members]
        placed.append((var, members, plan.world_size))
    for var, row_slice in zip(variables.row_slices, rank_plan.row_slices, strict=True):
        rows = row_slice.rows[1] - row_slice.rows[0]
        placed.append((var, [(index[row_slice.table], 0, rows)], plan.world_size))
    for var, members, count in placed:
        regularized = [(terms[t].regularizer, start, rows) for t, start, rows in members]
        regularized = [item for item in regularized if item[0] is not None and item[2] > 0]
        if regularized:
            layer.add_loss(_weight_loss(var, regularized, count))
        constraints = [(terms[t].constraint, start, rows) for t, start, rows in members]
        if any(c is not None for c, _, _ in constraints):
            var._constraint = _member_constraint(constraints)


def _weight_loss(var, regularized, count: int):
    def loss():
        parts = [reg(var[start : start + rows]) for reg, start, rows in regularized]
        return tf.cast(count, parts[0].dtype) * tf.add_n(parts)

    return loss


def _member_constraint(constraints):
    if len(constraints) == 1:
        return constraints[0][0]

    def constrain(value):
        blocks = [
            value[start : start + rows] if c is None else c(value[start : start + rows])
            for c, start, rows in constraints
        ]
        return tf.concat(blocks, axis=0)

    return constrain


def activity_losses(plan: Plan, terms: list[TableTerms], outputs: list[tf.Tensor]) -> list:
    """Each output's activity regularization over its (local) batch, as Keras divides it."""
    index = {t.name: i for i, t in enumerate(plan.tables)}
    losses = []
    for inp, out in zip(plan.inputs, outputs, strict=True):
        activity = terms[index[inp.table]].activity
        if activity is not None:
            batch = tf.cast(tf.shape(out)[0], out.dtype)
            losses.append(activity(out) / batch)
    return losses
