"""The distributed embedding Keras layer, built from a plan.

Everything about placement comes from the plan: which tables each rank holds, how
they are fused, the order of the all-to-alls and how outputs are stitched back. The
layer only executes it. Three groups run side by side:

* data-parallel tables: a local lookup on every rank (gradients averaged by Horovod);
* table-parallel tables: ids go to the ranks holding the tables with one all-to-all,
  embeddings come back with another; column slices are concatenated per input;
* row-sliced tables: ids are all-gathered, each rank looks up the rows it holds and a
  reduce-scatter sums the partial results back to the rank that owns each sample.

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

import functools
import json
import os

import horovod.tensorflow as hvd
import tensorflow as tf

from planner import Plan, load_plan, plan_from_dict
from runtime import checks, exchange
from runtime.lookup import IdProblem, Ids, describe_input, id_bounds, lookup, to_ids
from runtime.planning import layer_initializer, plan_for_layers
from runtime.slots import mark_local
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
        }
        if plan is None:
            if not embeddings:
                raise ValueError("pass embedding layers, or build the layer with from_plan(plan)")
            plan = plan_for_layers(embeddings, world_size=self.world_size, **placement)
        else:
            _refuse_placement([k for k, v in placement.items() if v != _PLACEMENT_DEFAULTS[k]])
            if isinstance(plan, dict):
                plan = plan_from_dict(plan)
        checks.check_world(plan, self.world_size)
        if embeddings:
            checks.check_embeddings(plan, embeddings)
        self.plan = plan
        self.dp_input = plan.parameters.dp_input
        self._initializers = [
            layer_initializer(embeddings[i])
            if embeddings
            else tf.keras.initializers.get(_initializer_identifier(t.initializer))
            for i, t in enumerate(plan.tables)
        ]
        self._table_index = {t.name: i for i, t in enumerate(plan.tables)}
        rank_plan = plan.ranks[self.rank]
        self._expected = [
            [i.name for i in plan.inputs]
            if self.dp_input
            else [local.input for local in rank.table_parallel_inputs]
            for rank in plan.ranks
        ]
        self._input_table = {i.name: self._table_index[i.table] for i in plan.inputs}
        self._context = checks.InputContext(
            self.dp_input,
            self.world_size,
            self._expected,
            {i.name: (i.table, plan.tables[self._input_table[i.name]].rows) for i in plan.inputs},
        )
        self._rank_plan = rank_plan

    @classmethod
    def from_plan(
        cls, plan_or_path: Plan | dict | str | os.PathLike, embeddings: list | None = None, **kwargs
    ) -> DistributedEmbedding:
        """The layer for this rank, from a plan (object, dict or file); no re-planning.

        With ``embeddings`` (one Keras embedding layer per plan table, in order) their
        shapes and combiners must match the plan, and their initializers are used. Other
        keyword arguments go to the Keras layer (``name``, ``dtype``); placement options
        (``strategy``, ``dp_input``, thresholds, ``input_table_map``) are the plan's and
        are refused here.
        """
        _refuse_placement([k for k in kwargs if k in _PLACEMENT_DEFAULTS])
        if isinstance(plan_or_path, (str, os.PathLike)):
            plan_or_path = load_plan(plan_or_path)
        return cls(embeddings=embeddings, plan=plan_or_path, **kwargs)

    # --- weights ----------------------------------------------------------------------

    def build(self, input_shape=None):
        plan, rank_plan = self.plan, self._rank_plan
        self._dp_vars = []
        for i, name in enumerate(plan.groups.data_parallel):
            table = plan.tables[self._table_index[name]]
            self._dp_vars.append(
                self._add_table_weight(
                    f"data_parallel_{i}",
                    [table.rows, table.width],
                    table.dtype,
                    self._initializers[self._table_index[name]],
                )
            )
        self._tp_vars = []
        for i, weight in enumerate(rank_plan.table_parallel_weights):
            parts = [
                (self._initializers[self._table_index[m.table]], m.rows)
                for m in weight.members
            ]
            var = self._add_table_weight(
                f"table_parallel_{i}",
                [weight.rows, weight.width],
                weight.dtype,
                _StackedInitializer(parts),
            )
            mark_local(var)
            self._tp_vars.append(var)
        self._row_vars = []
        for i, row_slice in enumerate(rank_plan.row_slices):
            table = plan.tables[self._table_index[row_slice.table]]
            var = self._add_table_weight(
                f"row_slice_{i}",
                [row_slice.rows[1] - row_slice.rows[0], table.width],
                table.dtype,
                self._initializers[self._table_index[row_slice.table]],
            )
            mark_local(var)
            self._row_vars.append(var)
        self._anchor = None
        groups = plan.input_groups
        if self.world_size > 1 and (groups.table_parallel or groups.row_sliced):
            # Empty and local: lets every rank's tape record the embedding exchange
            # (see exchange.return_embeddings).
            self._anchor = self.add_weight(
                name="exchange_anchor", shape=[0], dtype=tf.float32, initializer="zeros",
                trainable=True, experimental_autocast=False,
            )
            mark_local(self._anchor)
        self.built = True

    def _add_table_weight(self, name, shape, dtype, initializer) -> tf.Variable:
        # No autocast: lookups read the stored dtype and cast the (small) outputs instead.
        return self.add_weight(
            name=name,
            shape=shape,
            dtype=dtype,
            initializer=initializer,
            trainable=True,
            experimental_autocast=False,
        )

    def _variables_in_order(self) -> list[tf.Variable]:
        return self._dp_vars + self._tp_vars + self._row_vars

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
                write_pieces(self._variables_in_order(), pieces, arrays, chunk)
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
        for var, var_pieces in zip(self._variables_in_order(), pieces, strict=True):
            for piece in var_pieces:
                local[piece.table] = (piece, var)
        by_rank = [
            {p.table: p for var_pieces in variable_pieces(plan, r) for p in var_pieces}
            for r in range(self.world_size)
        ]
        dp_tables = {self._table_index[name] for name in plan.groups.data_parallel}
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
        expected = self._expected[self.rank]
        status, detail, problem, hotness = self._inspect(inputs, expected)
        ok = self._agree(inputs, status, detail, problem, hotness)
        if status != checks.OK:
            return self._placeholders(ok)
        ids = {}
        for name, inp in zip(expected, inputs, strict=True):
            flat = to_ids(inp)
            if ok is not None:
                with tf.control_dependencies([ok]):
                    flat = Ids(
                        tf.identity(flat.values),
                        None if flat.lengths is None else tf.identity(flat.lengths),
                        flat.hotness,
                    )
            ids[name] = flat
        comm_dtype = tf.int64 if any(i.dtype == tf.int64 for i in inputs) else tf.int32
        outputs = self._call_data_parallel(ids)
        # Results of the layer's collectives so far: each next one waits for them.
        collectives = [] if ok is None else [ok]
        lookups = self._lookup_table_parallel(ids, hotness, comm_dtype, collectives)
        row_parts = self._lookup_row_sliced(ids, comm_dtype, collectives)
        if self.world_size > 1:
            packed = None
            if lookups is not None:
                packed = exchange.pack_outputs(lookups, self.world_size, self.compute_dtype)
            received, row_outputs = exchange.return_embeddings(
                packed,
                row_parts,
                self.world_size,
                f"{self.name}_out",
                anchor=tf.reduce_sum(self._anchor) if self._anchor is not None else 0.0,
                after=collectives,
            )
            if received is not None:
                lookups = exchange.unpack_outputs(received, self.plan.exchange.output_widths)
        else:
            row_outputs = row_parts
        if lookups is not None:
            outputs.update(self._assemble_table_parallel(lookups))
        for name, out in zip(self.plan.input_groups.row_sliced, row_outputs, strict=True):
            outputs[name] = tf.cast(out, self.compute_dtype)
        return [outputs[name] for name in self._outputs()]

    def _outputs(self) -> list[str]:
        """Output names in plan input order (with dp_input=False: all inputs are table-parallel)."""
        return [i.name for i in self.plan.inputs]

    def _table_of(self, input_name: str):
        return self.plan.tables[self._input_table[input_name]]

    def _placeholders(self, ok: tf.Tensor) -> list[tf.Tensor]:
        """Outputs for a call whose inputs failed a static check; only built while tracing.

        Eagerly the check has already raised. Traced, it fails on every rank when run,
        so these are never computed. They must only let the code after the layer trace
        here as on the ranks whose inputs passed, or this rank alone would fail while
        the others wait in the check's all-gather:

        * their batch dimension comes from the check's result, so it is unknown when
          tracing, as on the other ranks (a concat with a static batch traces);
        * they read (no rows of) every trainable weight, so gradients of the layer's
          weights exist, as on the other ranks (an optimizer given no gradient at all
          raises when traced).
        """
        unknown = tf.reshape(ok, []) * 0  # not zeros_like: that folds to a constant
        tie = tf.zeros([], self.compute_dtype)
        for weight in self.trainable_weights:
            none = tf.gather(weight, tf.zeros([0], tf.int32))
            tie += tf.cast(tf.reduce_sum(none), self.compute_dtype)
        return [
            tf.zeros(tf.stack([unknown, self._table_of(name).width]), self.compute_dtype) + tie
            for name in self._outputs()
        ]

    def _inspect(self, inputs, expected) -> tuple[int, int, IdProblem | None, dict]:
        """Static checks of this rank's inputs: (status, detail, problem, hotness by name)."""
        if len(inputs) != len(expected):
            return checks.WRONG_COUNT, len(inputs), None, {}
        hotness = {}
        for index, (name, inp) in enumerate(zip(expected, inputs, strict=True)):
            problem, k = describe_input(inp)
            if problem:
                return checks.BAD_INPUT, index, problem, {}
            if self._table_of(name).combiner is None and k != 1:
                return checks.NEEDS_COMBINER, index, None, {}
            hotness[name] = k
        return checks.OK, 0, None, hotness

    def _agree(self, inputs, status, detail, problem, hotness) -> tf.Tensor | None:
        """Exchange and judge every rank's input record; raises the same error everywhere."""
        record = {
            "status": status,
            "detail": detail,
            "problem": problem.kind if problem else 0,
            "problem_arg": problem.arg if problem else 0,
            "bits": 0,
            "batch": -1,
            "consistent": 1,
            "layout": checks.signature([hotness.get(n) for n in self._expected[self.rank]]),
            "bad_input": -1,
            "bad_id": 0,
        }
        if status == checks.OK and inputs:
            batches = tf.stack([_batch_size(inp) for inp in inputs])
            bad_input, bad_id = self._out_of_range(inputs)
            record.update(
                bits=64 if any(i.dtype == tf.int64 for i in inputs) else 32,
                batch=batches[0],
                consistent=tf.reduce_all(tf.equal(batches, batches[0])),
                bad_input=bad_input,
                bad_id=bad_id,
            )
        record = tf.stack([tf.cast(record[field], tf.int64) for field in checks.Record._fields])
        if self.world_size > 1:
            record = exchange.allgather(record, name=f"{self.name}_input_check")
        judge = functools.partial(checks.judge_or_raise, context=self._context)
        if tf.executing_eagerly():
            judge(record.numpy())
            return None
        return tf.numpy_function(judge, [record], tf.int32, stateful=True)

    def _out_of_range(self, inputs) -> tuple[tf.Tensor, tf.Tensor]:
        """The index of the first input with an id outside its table (-1: none), and the id.

        Unchecked, such an id would read another table of a fused weight, be dropped by
        a row slice, or make ``tf.gather`` raise on the rank serving it alone.
        """
        bounds = [id_bounds(inp) for inp in inputs]
        low = tf.stack([b[0] for b in bounds])
        high = tf.stack([b[1] for b in bounds])
        rows = tf.constant([self._table_of(n).rows for n in self._expected[self.rank]], tf.int64)
        bad = tf.logical_or(low < 0, high >= rows)
        first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
        index = tf.where(tf.reduce_any(bad), first, -1)
        return index, tf.where(low[first] < 0, low[first], high[first])

    def _call_data_parallel(self, ids: dict[str, Ids]) -> dict[str, tf.Tensor]:
        outputs = {}
        for name in self.plan.input_groups.data_parallel:
            table = self._input_table[name]
            var = self._dp_vars[self.plan.groups.data_parallel.index(self.plan.tables[table].name)]
            out = lookup(var, ids[name], self.plan.tables[table].combiner)
            outputs[name] = tf.cast(out, self.compute_dtype)
        return outputs

    def _lookup_table_parallel(
        self, ids, hotness, comm_dtype, collectives: list
    ) -> list[tf.Tensor] | None:
        """This rank's lookups for the inputs it serves, over the global batch."""
        plan = self.plan
        if not plan.input_groups.table_parallel:
            return None
        mine = self._rank_plan.table_parallel_inputs
        if self.dp_input and self.world_size > 1:
            per_destination = [
                [ids[local.input] for local in rank.table_parallel_inputs] for rank in plan.ranks
            ]
            send, splits = exchange.pack_ids(per_destination, comm_dtype)
            received, received_splits = exchange.alltoall(
                send, splits, f"{self.name}_ids", collectives
            )
            any_input = ids[self._expected[self.rank][0]]
            local_ids = exchange.unpack_ids(
                received,
                received_splits,
                [hotness[local.input] for local in mine],
                any_input.batch_size(),
                self.world_size,
            )
        else:
            local_ids = [ids[local.input] for local in mine]
        lookups = [
            lookup(
                self._tp_vars[local.weight],
                flat,
                self._rank_plan.table_parallel_weights[local.weight].combiner,
                offset=local.row_offset,
            )
            for local, flat in zip(mine, local_ids, strict=True)
        ]
        return [tf.cast(out, self.compute_dtype) for out in lookups]

    def _assemble_table_parallel(self, pieces: list[tf.Tensor]) -> dict[str, tf.Tensor]:
        """Concatenate each input's column pieces (worker order indices from the plan)."""
        outputs = {}
        for assembly in self.plan.exchange.outputs:
            parts = [pieces[i] for i in assembly.pieces]
            outputs[assembly.input] = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
        return outputs

    def _lookup_row_sliced(self, ids, comm_dtype, collectives: list) -> list[tf.Tensor]:
        """Partial lookups [global_batch, width] into this rank's rows of each row-sliced
        table, in float32 so that summing the partial results over ranks loses nothing."""
        plan = self.plan
        parts = []
        for i, name in enumerate(plan.input_groups.row_sliced):
            local = ids[name]
            values = exchange.allgather(
                tf.cast(local.values, comm_dtype), f"{self.name}_row_ids_{i}", collectives
            )
            lengths = None
            if local.lengths is not None:
                lengths = exchange.allgather(
                    tf.cast(local.lengths, comm_dtype), f"{self.name}_row_lengths_{i}", collectives
                )
            global_ids = Ids(values, lengths, local.hotness)
            table = plan.tables[self._input_table[name]]
            slot = plan.groups.row_sliced.index(table.name)
            start, stop = self._rank_plan.row_slices[slot].rows
            if stop > start:
                part = lookup(
                    self._row_vars[slot], global_ids, table.combiner, valid_rows=(start, stop)
                )
                parts.append(tf.cast(part, tf.float32))
            else:
                # Nothing held here: contribute zeros, and do not touch the empty variable.
                parts.append(tf.zeros([global_ids.batch_size(), table.width], tf.float32))
        return parts


# The constructor's placement options and their defaults (upstream's).
_PLACEMENT_DEFAULTS = {
    "strategy": "basic",
    "column_slice_threshold": None,
    "row_slice_threshold": None,
    "dp_input": True,
    "input_table_map": None,
    "data_parallel_threshold": None,
}


def _refuse_placement(names: list[str]) -> None:
    """Placement options with a plan would be silently ignored: refuse them instead."""
    if names:
        raise TypeError(
            f"placement options ({', '.join(names)}) cannot be combined with a plan: the "
            f"plan already fixes the placement; change the spec and re-plan instead"
        )


def _batch_size(inp) -> tf.Tensor:
    if isinstance(inp, tf.RaggedTensor):
        return tf.cast(inp.nrows(), tf.int32)
    return tf.shape(inp, out_type=tf.int32)[0]


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
