"""One call of the layer, once the inputs are agreed: lookups and the exchange.

Three groups run side by side, as the plan places them:

* data-parallel tables: a local lookup on every rank;
* table-parallel tables: ids go to the ranks holding the tables with one all-to-all,
  embeddings come back with another; column pieces are concatenated per input;
* row-sliced tables: ids are all-gathered, each rank looks up the rows it holds and a
  reduce-scatter sums the partial results back to the rank that owns each sample.
"""

from __future__ import annotations

import tensorflow as tf

from planner.plan import Plan
from runtime import exchange
from runtime.construction import LayerVariables
from runtime.lookup import Ids, lookup, to_ids


class Pipeline:
    """The forward computation of one rank's layer, built once its variables exist."""

    def __init__(
        self,
        plan: Plan,
        rank: int,
        name: str,
        variables: LayerVariables,
        expected: list[str],
        compute_dtype: tf.DType,
    ):
        self.plan = plan
        self.rank = rank
        self.world_size = plan.world_size
        self.name = name
        self.variables = variables
        self.expected = expected  # the input names this rank feeds, in order
        self.compute_dtype = compute_dtype
        self.dp_input = plan.parameters.dp_input
        self._rank_plan = plan.ranks[rank]
        self._table_of = {i.name: plan.table(i.table) for i in plan.inputs}

    def outputs(self) -> list[str]:
        """Output names in plan input order (with dp_input=False: all inputs are table-parallel)."""
        return [i.name for i in self.plan.inputs]

    def output_widths(self) -> list[int]:
        return [self._table_of[name].width for name in self.outputs()]

    def __call__(
        self, inputs: list, hotness: dict[str, int | None], ok: tf.Tensor | None
    ) -> list[tf.Tensor]:
        """The outputs for agreed inputs; ``ok`` (traced) is the agreement every op waits for."""
        ids = {}
        for name, inp in zip(self.expected, inputs, strict=True):
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
            anchor = self.variables.anchor
            received, row_outputs = exchange.return_embeddings(
                packed,
                row_parts,
                self.world_size,
                f"{self.name}_out",
                anchor=tf.reduce_sum(anchor) if anchor is not None else 0.0,
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
        return [outputs[name] for name in self.outputs()]

    def _call_data_parallel(self, ids: dict[str, Ids]) -> dict[str, tf.Tensor]:
        outputs = {}
        data_parallel = self.plan.groups.data_parallel
        for name in self.plan.input_groups.data_parallel:
            table = self._table_of[name]
            var = self.variables.data_parallel[data_parallel.index(table.name)]
            out = lookup(var, ids[name], table.combiner)
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
            any_input = ids[self.expected[0]]
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
                self.variables.table_parallel[local.weight],
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
            table = self._table_of[name]
            slot = plan.groups.row_sliced.index(table.name)
            start, stop = self._rank_plan.row_slices[slot].rows
            if stop > start:
                part = lookup(
                    self.variables.row_slices[slot], global_ids, table.combiner,
                    valid_rows=(start, stop),
                )
                parts.append(tf.cast(part, tf.float32))
            else:
                # Nothing held here: contribute zeros, and do not touch the empty variable.
                parts.append(tf.zeros([global_ids.batch_size(), table.width], tf.float32))
        return parts
