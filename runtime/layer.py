"""The distributed embedding Keras layer, built from a plan.

Everything about placement comes from the plan: which tables each rank holds, how
they are fused, the order of the all-to-alls and how outputs are stitched back. The
layer only executes it, with one module per job: :mod:`runtime.construction` creates
this rank's variables, :mod:`runtime.agreement` makes every rank agree on each call's
inputs, :mod:`runtime.pipeline` runs the lookups and the exchange, and
:mod:`runtime.weights` moves global weights in and out.

Gradient convention: the training objective is the mean over ranks of each rank's
loss. A rank's loss is usually the mean over its local batch, and with equal local
batches this is the mean over the global batch, so one step here equals one
single-process step on the global batch. Data-parallel gradients are averaged, and
gradients of local (model-parallel) variables, which the backward collectives already
sum over every rank's loss, are divided by the world size: exactly what Horovod does
for registered local variables by default (``scale_local_gradients=True``), which the
wrappers in :mod:`runtime.horovod_patches` rely on.
"""

from __future__ import annotations

import json
import os

import horovod.tensorflow as hvd
import tensorflow as tf

from planner import Plan, load_plan, plan_from_dict
from runtime import checks, regularization
from runtime.agreement import InputAgreement
from runtime.construction import create_variables, table_initializers
from runtime.pipeline import Pipeline
from runtime.planning import plan_for_layers
from runtime.strategy import PlanStrategy
from runtime.weights import (
    DEFAULT_CHUNK,
    check_global_weights,
    gather_table,
    variable_pieces,
    write_pieces,
)


class DistributedEmbedding(tf.keras.layers.Layer):
    """Embedding tables placed over Horovod ranks as a plan says.

    Call it with a list of id tensors and get a list of [local_batch, width] outputs in
    the plan's input order. With ``dp_input=True`` (the default) every rank passes its
    local batch of every input; with ``dp_input=False`` each rank passes the global
    batch of the inputs it serves (its plan ``table_parallel_inputs``, in that order).

    Build it with :meth:`from_plan` from a plan file, or like the original layer, from
    embedding layers and placement options, which plans in process.
    """

    def __init__(
        self,
        embeddings: list | None = None,
        strategy: str = "basic",
        column_slice_threshold: int | None = None,
        row_slice_threshold: int | None = None,
        dp_input: bool = True,
        input_table_map: list[int] | None = None,
        data_parallel_threshold: int | None = None,
        gpu_embedding_size: int | None = None,
        *,
        plan: Plan | dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not hvd.is_initialized():
            hvd.init()
        self.world_size = hvd.size()
        self.rank = hvd.rank()
        placement = {
            "strategy": strategy,
            "column_slice_threshold": column_slice_threshold,
            "row_slice_threshold": row_slice_threshold,
            "dp_input": dp_input,
            "input_table_map": input_table_map,
            "data_parallel_threshold": data_parallel_threshold,
            "gpu_embedding_size": gpu_embedding_size,
        }
        if plan is None:
            if not embeddings:
                raise ValueError("pass embedding layers, or build the layer with from_plan(plan)")
            plan = plan_for_layers(embeddings, world_size=self.world_size, **placement)
        else:
            _refuse_placement([k for k, v in placement.items() if v != _PLACEMENT_DEFAULTS[k]])
            if isinstance(plan, dict):
                plan = plan_from_dict(plan)
        if self.world_size > 1:  # before any check that would fail on some ranks only
            identities = hvd.allgather_object(checks.plan_identity(plan), name="de_plan_check")
            checks.check_same_plan(identities)
        checks.check_world(plan, self.world_size)
        if embeddings:
            checks.check_embeddings(plan, embeddings)
        self.plan = plan
        parameters = plan.parameters
        # Upstream's attributes: the settings in effect, and its placement lists.
        self.dp_input = parameters.dp_input
        self.column_slice_threshold = parameters.requested_column_slice_threshold
        self.row_slice_threshold = parameters.row_slice_threshold
        self.data_parallel_threshold = parameters.data_parallel_threshold
        self.gpu_embedding_size = parameters.gpu_embedding_size
        self.strategy = PlanStrategy(plan)
        self._initializers = table_initializers(plan, embeddings)
        self._terms = regularization.table_terms(embeddings)
        self._agreement = InputAgreement(plan, self.rank, self.world_size)
        self._variables = None
        self._pipeline = None

    @classmethod
    def from_plan(
        cls, plan_or_path: Plan | dict | str | os.PathLike, embeddings: list | None = None, **kwargs
    ) -> DistributedEmbedding:
        """The layer for this rank, from a plan (object, dict or file); no re-planning.

        With ``embeddings`` (one Keras embedding layer per plan table, in order) their
        shapes and combiners must match the plan, and their initializers are used. Other
        keyword arguments go to the Keras layer (``name``, ``dtype``); placement options
        (``strategy``, ``dp_input``, thresholds, ``input_table_map``,
        ``gpu_embedding_size``) are the plan's and are refused here.
        """
        _refuse_placement([k for k in kwargs if k in _PLACEMENT_DEFAULTS])
        if isinstance(plan_or_path, (str, os.PathLike)):
            plan_or_path = load_plan(plan_or_path)
        return cls(embeddings=embeddings, plan=plan_or_path, **kwargs)

    # --- weights ----------------------------------------------------------------------

    def build(self, input_shape=None):
        self._variables = create_variables(self, self.plan, self.rank, self._initializers)
        if self._terms:
            regularization.attach(self, self.plan, self.rank, self._variables, self._terms)
        self._pipeline = Pipeline(
            self.plan, self.rank, self.name, self._variables, self._agreement, self.compute_dtype
        )
        self.built = True

    def table_variables(self) -> list[tf.Variable]:
        """This rank's table variables in plan order (as ``runtime.weights.variable_pieces``
        describes them), building the layer first if needed; what checkpoints read."""
        if not self.built:
            self.build(None)
        return self._variables.tables_in_order()

    def set_weights(self, weights: list, chunk: int = DEFAULT_CHUNK, use_lock: bool = False):
        """Set every table from its global array (or ``.npy`` path), in plan table order.

        Each rank cuts out exactly the rows and columns its variables hold, by the
        plan's ranges, and writes them at most ``chunk`` elements at a time. Paths are
        memory-mapped so a rank reads only its pieces. With ``use_lock`` ranks write one
        after the other, bounding the host memory used at once.
        """
        arrays = check_global_weights(self.plan, weights)
        if not self.built:
            self.build(None)
        pieces = variable_pieces(self.plan, self.rank)
        for turn in range(self.world_size if use_lock else 1):
            if not use_lock or turn == self.rank:
                write_pieces(self.table_variables(), pieces, arrays, chunk)
            if use_lock:
                hvd.allreduce(tf.zeros([1]), name=f"{self.name}_set_lock_{turn}", op=hvd.Sum)

    def get_weights(self, all_ranks: bool = False, chunk: int = DEFAULT_CHUNK) -> list:
        """The global weights of every table, in plan table order, as NumPy arrays.

        Every rank must call this (sliced tables are all-gathered). The arrays are
        returned on rank 0, or on every rank with ``all_ranks=True``; other ranks get an
        empty list.
        """
        if not self.built:
            self.build(None)
        keep = all_ranks or self.rank == 0
        plan = self.plan
        pieces = variable_pieces(plan, self.rank)
        local = {}
        for var, var_pieces in zip(self.table_variables(), pieces, strict=True):
            for piece in var_pieces:
                local[piece.table] = (piece, var)
        by_rank = [
            {p.table: p for var_pieces in variable_pieces(plan, r) for p in var_pieces}
            for r in range(self.world_size)
        ]
        data_parallel = set(plan.groups.data_parallel)
        dp_tables = {t for t, table in enumerate(plan.tables) if table.name in data_parallel}
        result = []
        for t in range(len(plan.tables)):
            if t in dp_tables:
                if keep:
                    result.append(local[t][1].numpy())
                continue
            result.append(
                gather_table(
                    plan,
                    t,
                    local.get(t),
                    [by_rank[r].get(t) for r in range(self.world_size)],
                    chunk,
                    f"{self.name}_get_{t}",
                    keep,
                )
            )
        return result if keep else []

    # --- config -----------------------------------------------------------------------

    def get_config(self) -> dict:
        config = super().get_config()
        config["plan"] = json.loads(self.plan.model_dump_json())
        return config

    @classmethod
    def from_config(cls, config: dict) -> DistributedEmbedding:
        config = dict(config)
        plan = config.pop("plan")
        return cls.from_plan(plan, **config)

    # --- forward ----------------------------------------------------------------------

    def call(self, inputs):
        return self._run(inputs)

    # AutoGraph would convert all of the layer's Python (about 90% of tracing a step);
    # the layer branches only on Python values from the plan, so there is nothing to
    # convert. Keras inspects ``call``'s signature, so the decorator sits on a helper.
    @tf.autograph.experimental.do_not_convert
    def _run(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not tf.executing_eagerly() and not self.dp_input and self.world_size > 1:
            # Eagerly, the input records catch it on every rank (see runtime.agreement).
            problem = checks.static_batch_problem(inputs, self.world_size)
            if problem:
                raise ValueError(problem)
        outputs = self._pipeline(inputs, self._agreement.inspect(inputs))
        if self._terms:
            for loss in regularization.activity_losses(self.plan, self._terms, outputs):
                self.add_loss(loss)
        return outputs


# The constructor's placement options and their defaults (upstream's).
_PLACEMENT_DEFAULTS = {
    "strategy": "basic",
    "column_slice_threshold": None,
    "row_slice_threshold": None,
    "dp_input": True,
    "input_table_map": None,
    "data_parallel_threshold": None,
    "gpu_embedding_size": None,
}


def _refuse_placement(names: list[str]) -> None:
    """Placement options with a plan would be silently ignored: refuse them instead."""
    if names:
        raise TypeError(
            f"placement options ({', '.join(names)}) cannot be combined with a plan: the "
            f"plan already fixes the placement; change the spec and re-plan instead"
        )
