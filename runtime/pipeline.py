"""One call of the layer: agree on the inputs, look up, exchange.

Three groups run side by side, as the plan places them:

* data-parallel tables: a local lookup on every rank;
* table-parallel tables: ids go to the ranks holding the tables, embeddings come back;
  column pieces are concatenated per input;
* row-sliced tables: each rank holding some of a table's rows (all ranks, or a group
  of them, as its row split says) receives from every rank the ids of its inputs that
  fall in its rows (:mod:`runtime.row_buckets`), looks them up, and sends each rank its
  samples' partial sums, which that rank adds up. Ranks holding none of its rows
  neither receive its ids nor send anything for it. With ``row_reduction: host`` the
  ranks of each host first add up their partial sums among themselves, and each sends
  its sum on to the ranks at its position on every host.

With more than one rank a call makes two all-to-alls (ids, then embeddings) and its
gradient one more, whatever the number of tables (see :mod:`runtime.exchange`); the
host sums add one each way. Every
rank's input record travels at the head of the first of them; nothing received is used
before all records are judged (:mod:`runtime.agreement`).
"""

from __future__ import annotations

import tensorflow as tf

from planner.plan import Plan
from planner.spec_fields import summing_hosts
from runtime import checks, exchange, row_buckets
from runtime.agreement import InputAgreement, Inspection, placeholders
from runtime.construction import LayerVariables, on_planned_device
from runtime.lookup import Ids, lookup, to_ids

RECORD = checks.RECORD_FIELDS
INT32_MAX = 2**31 - 1


class Pipeline:
    """The forward computation of one rank's layer, built once its variables exist."""

    def __init__(
        self,
        plan: Plan,
        rank: int,
        name: str,
        variables: LayerVariables,
        agreement: InputAgreement,
        compute_dtype: tf.DType,
    ):
        self.plan = plan
        self.rank = rank
        self.world_size = plan.world_size
        self.name = name
        self.variables = variables
        self.agreement = agreement
        self.expected = agreement.expected[rank]  # the input names this rank feeds, in order
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.dp_input = plan.parameters.dp_input
        self._rank_plan = plan.ranks[rank]
        tables = {t.name: t for t in plan.tables}  # not plan.table: 20,000 searches
        self._table_of = {i.name: tables[i.table] for i in plan.inputs}
        self._row_inputs = list(plan.input_groups.row_sliced)
        # The rows each rank holds of each row-sliced table (holders only), and the
        # row-sliced inputs each rank holds rows for, in group order.
        held = row_holders(plan)
        self._rows_of = {name: held[self._table_of[name].name] for name in self._row_inputs}
        self._row_inputs_of = [
            [name for name in self._row_inputs if r in self._rows_of[name]]
            for r in range(plan.world_size)
        ]
        params = plan.parameters
        self._hosts = 0
        if self._row_inputs:
            self._hosts = summing_hosts(params.row_reduction, self.world_size, params.gpus_per_host)
        # The row-sliced inputs whose partial sums each rank sends this one in the
        # embedding exchange: those it holds rows of, or with row_reduction host, its
        # host's, summed, when it sums for this rank's position on the hosts.
        self._row_senders = self._row_inputs_of
        if self._hosts:
            g = self.world_size // self._hosts
            self._host_inputs = [
                [n for n in self._row_inputs if any(r // g == h for r in self._rows_of[n])]
                for h in range(self._hosts)
            ]
            self._row_senders = [
                self._host_inputs[s // g] if s % g == rank % g else []
                for s in range(self.world_size)
            ]
        # The table-parallel inputs each rank serves, in its serving order, and the widths
        # of the lookups it sends back (``Plan.served``: no other rank's weights are built).
        served = [plan.served(r) for r in range(len(plan.ranks))]
        self._served_inputs = [[name for name, _ in inputs] for inputs in served]
        self._served_widths = [[width for _, width in inputs] for inputs in served]
        self._exchanges = bool(plan.input_groups.table_parallel or self._row_inputs)
        travelling = [self._table_of[name].rows for name in plan.input_groups.table_parallel]
        travelling += [self._table_of[name].rows for name in self._row_inputs]
        # Ids in range fit the tables, so int32 carries them unless a table is that big.
        self.id_dtype = tf.int64 if max(travelling, default=0) > INT32_MAX else tf.int32

    def outputs(self) -> list[str]:
        """Output names in plan input order (with dp_input=False: all inputs are table-parallel)."""
        return [i.name for i in self.plan.inputs]

    def output_widths(self) -> list[int]:
        return [self._table_of[name].width for name in self.outputs()]

    def __call__(self, inputs: list, inspection: Inspection) -> list[tf.Tensor]:
        record = self.agreement.record(inputs, inspection)
        usable = inspection.status == checks.OK
        ids = {}
        if usable:
            ids = {name: to_ids(inp) for name, inp in zip(self.expected, inputs, strict=True)}
        if self.world_size == 1:
            ok = self.agreement.judge(record[None])
            if not usable:
                return self._placeholders(ok)
            ids = {name: _gated(flat, ok) for name, flat in ids.items()}
            return self._assemble(ids, self._lookup_table_parallel(ids), [])
        if self.dp_input:
            return self._call_data_parallel_input(ids, inspection.hotness, record, usable)
        return self._call_model_parallel_input(ids, record, usable)

    # --- the two input modes ----------------------------------------------------------

    def _call_data_parallel_input(self, ids, hotness, record, usable) -> list[tf.Tensor]:
        """Every rank feeds its local batch of every input."""
        bucketed = {}  # row-sliced input: {holder: its bucket of ids}
        if usable:
            for name in self._row_inputs:
                holders = sorted(self._rows_of[name])
                starts = [self._rows_of[name][r][0] for r in holders]
                found = row_buckets.buckets(ids[name], starts)
                bucketed[name] = dict(zip(holders, found, strict=True))
        blocks = []
        for r, served in enumerate(self._served_inputs):
            parts = []
            if usable:
                parts = [ids[name] for name in served]
                parts += [bucketed[name][r] for name in self._row_inputs_of[r]]
            blocks.append([record, *exchange.id_parts(parts)])
        payload, splits = exchange.pack(blocks, self.id_dtype)
        received, received_splits = exchange.alltoall(payload, splits, f"{self.name}_ids")
        ok = self.agreement.judge(exchange.heads(received, received_splits, RECORD, tf.int32))
        if not usable:
            return self._placeholders(ok)
        sources = exchange.by_source(received, received_splits, self.world_size)
        batch = ids[self.expected[0]].batch_size()
        own_rows = {name: _gated(ids[name], ok) for name in self._row_inputs}
        ids = {name: _gated(ids[name], ok) for name in self.plan.input_groups.data_parallel}
        served = [local.input for local in self._rank_plan.table_parallel_inputs]
        buckets = self._row_inputs_of[self.rank]
        global_ids = exchange.unpack_ids(
            [exchange.skip_head(_gated_tensor(s, ok), RECORD, tf.int32) for s in sources],
            [hotness[name] for name in served] + [None] * len(buckets),  # buckets: ragged
            batch,
        )
        received_ids = dict(zip(served + buckets, global_ids, strict=True))
        lookups = self._lookup_table_parallel(received_ids)
        row_parts = self._lookup_row_sliced(received_ids)
        if not self._exchanges:
            return self._assemble(ids, [], [])
        after = [received, ok]
        if self._hosts:
            row_parts, after = self._sum_within_host(row_parts, batch, after)
        received, received_splits = self._send_embeddings(
            lookups, row_parts, batch, None, after=after
        )
        sources = exchange.by_source(received, received_splits, self.world_size)
        pieces, row_sums = self._receive_embeddings(sources, batch)
        row_outputs = [
            tf.cast(
                row_buckets.finish(sums, own_rows[name], self._table_of[name].combiner),
                self.compute_dtype,
            )
            for name, sums in zip(self._row_inputs, row_sums, strict=True)
        ]
        return self._assemble(ids, pieces, row_outputs)

    def _call_model_parallel_input(self, ids, record, usable) -> list[tf.Tensor]:
        """Each rank feeds the global batch of the inputs it serves (``dp_input=False``).

        The first all-to-all carries embeddings, so the lookups come before the
        judgement: they read ids clamped into their tables, so that no rank fails alone
        on an id the judgement is about to report on every rank.
        """
        lookups, batch = [], 0
        if usable:
            lookups = self._lookup_table_parallel(
                {name: self._clamped(name, flat) for name, flat in ids.items()}
            )
        if lookups:
            batch = tf.shape(lookups[0], out_type=tf.int32)[0] // self.world_size
        received, received_splits = self._send_embeddings(lookups, [], batch, record, after=[])
        ok = self.agreement.judge(exchange.heads(received, received_splits, RECORD, tf.int32))
        if not usable:
            return self._placeholders(ok)
        sources = [
            exchange.skip_head(_gated_tensor(source, ok), RECORD, tf.int32)
            for source in exchange.by_source(received, received_splits, self.world_size)
        ]
        return self._assemble({}, *self._receive_embeddings(sources, None))

    # --- lookups ------------------------------------------------------------------------

    def _lookup_data_parallel(self, ids: dict[str, Ids]) -> dict[str, tf.Tensor]:
        outputs = {}
        data_parallel = self.plan.groups.data_parallel
        for name in self.plan.input_groups.data_parallel:
            table = self._table_of[name]
            var = self.variables.data_parallel[data_parallel.index(table.name)]
            outputs[name] = tf.cast(lookup(var, ids[name], table.combiner), self.compute_dtype)
        return outputs

    def _lookup_table_parallel(self, ids: dict[str, Ids]) -> list[tf.Tensor]:
        """This rank's lookups for the inputs it serves (over the global batch), in order."""
        weights = self._rank_plan.table_parallel_weights
        outputs = []
        for local in self._rank_plan.table_parallel_inputs:
            weight = weights[local.weight]
            with on_planned_device(weight):  # an offloaded weight is looked up on the host
                found = lookup(
                    self.variables.table_parallel[local.weight],
                    ids[local.input],
                    weight.combiner,
                    offset=local.row_offset,
                )
            outputs.append(tf.cast(found, self.compute_dtype))
        return outputs

    def _lookup_row_sliced(self, ids: dict[str, Ids]) -> list[tf.Tensor]:
        """Partial sums [global_batch, width] of the ids received for this rank's rows of
        each row-sliced table it holds rows of (all in its rows: the senders bucketed
        them), in float32 so that adding them up over the holders loses nothing."""
        parts = []
        for name in self._row_inputs_of[self.rank]:
            table = self._table_of[name]
            slot = self.plan.groups.row_sliced.index(table.name)
            start = self._rank_plan.row_slices[slot].rows[0]
            part = lookup(self.variables.row_slices[slot], ids[name], "sum", offset=-start)
            parts.append(tf.cast(part, tf.float32))
        return parts

    def _clamped(self, name: str, ids: Ids) -> Ids:
        """``ids`` with every id moved into its table (see _call_model_parallel_input)."""
        rows = self._table_of[name].rows
        values = tf.clip_by_value(ids.values, 0, tf.cast(rows - 1, ids.values.dtype))
        return Ids(values, ids.lengths, ids.hotness)

    # --- the embedding exchange -----------------------------------------------------------

    def _send_embeddings(self, lookups, row_parts, batch, record, after):
        """Send each rank its samples' embeddings in one differentiable all-to-all.

        Rank r gets rows ``r * batch`` to ``(r + 1) * batch`` of every table-parallel
        lookup, and of this rank's row-sliced partial results side by side. ``record``, when
        given (the call's first collective, inputs not agreed on yet), travels at the
        head of every block, and each lookup is cut on its own, so that inputs of
        unequal sizes cannot fail here; it comes with dp_input=False only, which has no
        row-sliced inputs. Returns (received, received splits).
        """
        # The anchor (empty: no bytes) makes every rank's tape record this exchange, and
        # carries the dependencies that order it after the layer's earlier collective.
        # No arithmetic on the payload itself: a bit-cast record would not survive it.
        world = self.world_size
        if self._hosts and record is None:
            tie = after[0][:0]  # the host sums' exchange: its gradient joins every tape
        else:
            tie = exchange.depending_on(self.variables.anchor, after)
        if record is None:
            parts = [tf.reshape(out, [world, -1]) for out in lookups]
            if row_parts and not self._hosts:
                parts.append(tf.reshape(tf.concat(row_parts, axis=1), [world, -1]))
            parts.append(tf.reshape(tie, [world, 0]))
            if self._hosts and row_parts:
                payload, splits = self._pack_with_host_sums(parts, row_parts)
            else:
                payload, splits = exchange.pack_rows(parts, self.compute_dtype)
        else:
            blocks = [
                [record] + [exchange.rows_for(out, rank, batch) for out in lookups]
                for rank in range(world)
            ]
            blocks[0].append(tie)
            payload, splits = exchange.pack(blocks, self.compute_dtype)
        return exchange.differentiable_alltoall(payload, splits, f"{self.name}_out")

    def _receive_embeddings(self, sources: list[tf.Tensor], batch):
        """(table-parallel pieces in worker order, row-sliced sums) from every rank's
        block; ``batch`` None: learnt from the blocks (a rank feeding nothing has none).
        Each row-sliced input's sum adds its table's holders' partial sums, in float32."""
        if batch is None:
            total = sum(sum(widths) for widths in self._served_widths)
            batch = tf.size(tf.concat(sources, 0), out_type=tf.int32) // total
        pieces = []
        row_parts: dict[str, list[tf.Tensor]] = {name: [] for name in self._row_inputs}
        for source, widths, held in zip(
            sources, self._served_widths, self._row_senders, strict=True
        ):
            layout = [(self.compute_dtype, batch * width) for width in widths]
            held_widths = [self._table_of[name].width for name in held]
            if held:
                layout.append((tf.float32, batch * sum(held_widths)))
            if not layout:
                continue
            parts = exchange.unpack(source, layout)
            pieces += [tf.reshape(p, [batch, w]) for p, w in zip(parts, widths, strict=False)]
            if held:
                block = tf.reshape(parts[-1], [batch, sum(held_widths)])
                for name, part in zip(held, tf.split(block, held_widths, axis=1), strict=True):
                    row_parts[name].append(part)
        return pieces, [tf.add_n(row_parts[name]) for name in self._row_inputs]

    # --- row_reduction host -----------------------------------------------------------

    def _sum_within_host(self, row_parts, batch, after):
        """Add up this host's partial sums before they leave it (``row_reduction: host``).

        Rank ``l`` of a host of ``g`` ranks sums, for every row-sliced input with rows on
        the host, the samples of the ranks at position ``l`` on every host: each holder
        sends it those rows of its partial sums in one all-to-all within the host (the
        other ranks get nothing). Returns the sums (one ``[hosts, batch, width]``
        tensor per input with rows on this host, in group order) and, in a list, the
        exchange's output, which the embedding exchange takes its anchor from.
        """
        world, hosts = self.world_size, self._hosts
        g = world // hosts
        host = self.rank // g
        tie = exchange.depending_on(self.variables.anchor, after)
        mine = self._row_inputs_of[self.rank]
        width = sum(self._table_of[name].width for name in mine)
        size = tf.constant(0, tf.int32)
        flat = tf.zeros([0], tf.float32)
        if mine:
            # rows of source rank h * g + l: [hosts, g, batch * width], then per position l
            block = tf.reshape(tf.concat(row_parts, axis=1), [hosts, g, -1])
            flat = tf.reshape(tf.transpose(block, [1, 0, 2]), [-1])
            size = hosts * batch * width
        payload = tf.concat([tie, flat], 0)
        splits = tf.concat(
            [tf.zeros([host * g], tf.int32), tf.fill([g], size),
             tf.zeros([world - host * g - g], tf.int32)],
            0,
        )
        received, received_splits = exchange.differentiable_alltoall(
            payload, splits, f"{self.name}_host_sums"
        )
        sources = exchange.by_source(received, received_splits, world)
        parts: dict[str, list[tf.Tensor]] = {name: [] for name in self._host_inputs[host]}
        for source in range(host * g, host * g + g):
            held = self._row_inputs_of[source]
            if not held:
                continue
            widths = [self._table_of[name].width for name in held]
            block = tf.reshape(sources[source], [hosts, batch, sum(widths)])
            for name, part in zip(held, tf.split(block, widths, axis=2), strict=True):
                parts[name].append(part)
        sums = [tf.add_n(parts[name]) for name in self._host_inputs[host]]
        return sums, [received]

    def _pack_with_host_sums(self, parts, sums):
        """The embedding exchange's payload with this host's sums: rank ``h * g + l`` gets
        the sums of its samples from rank ``l`` of every host with rows; ``parts`` (the
        table-parallel lookups, ``[world, n]`` each) go to every rank as usual."""
        world, hosts = self.world_size, self._hosts
        g = world // hosts
        rows = tf.concat([exchange.encode(part, self.compute_dtype) for part in parts], axis=1)
        share = tf.shape(rows, out_type=tf.int32)[1]
        summed = tf.reshape(tf.concat(sums, axis=2), [hosts, -1])
        summed = exchange.encode(summed, self.compute_dtype)
        mine = [h * g + self.rank % g for h in range(hosts)]
        spread = tf.scatter_nd(
            tf.constant(mine, tf.int32)[:, None], summed,
            tf.stack([world, tf.shape(summed, out_type=tf.int32)[1]]),
        )
        to = tf.constant([r in mine for r in range(world)])
        columns = tf.shape(spread, out_type=tf.int32)[1]
        keep = tf.logical_or(
            tf.range(share + columns)[None, :] < share, to[:, None]
        )
        payload = tf.boolean_mask(
            tf.reshape(tf.concat([rows, spread], axis=1), [-1]), tf.reshape(keep, [-1])
        )
        return payload, share + columns * tf.cast(to, tf.int32)

    # --- outputs ------------------------------------------------------------------------

    def _assemble(self, ids, pieces: list[tf.Tensor], row_outputs) -> list[tf.Tensor]:
        """Every output in plan input order: local lookups, pieces concatenated per input
        (worker order indices from the plan), row-sliced sums."""
        outputs = self._lookup_data_parallel(ids)
        for assembly in self.plan.exchange.outputs:
            parts = [pieces[i] for i in assembly.pieces]
            outputs[assembly.input] = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
        outputs.update(zip(self._row_inputs, row_outputs, strict=True))
        return [outputs[name] for name in self.outputs()]

    def _placeholders(self, ok) -> list[tf.Tensor]:
        weights = self.variables.trainable()
        return placeholders(ok, self.output_widths(), weights, self.compute_dtype)


def row_holders(plan: Plan) -> dict[str, dict[int, tuple[int, int]]]:
    """Per row-sliced table, the rows each rank holding some holds (none: an empty slice)."""
    rows = {t.name: t.rows for t in plan.tables}
    holders = {}
    for split in plan.row_splits:
        starts, ends = split.bounds(rows[split.table], plan.world_size)
        holders[split.table] = {
            int(r): (int(starts[r]), int(ends[r])) for r in (ends > starts).nonzero()[0]
        }
    return holders


def _gated_tensor(tensor: tf.Tensor, ok: tf.Tensor | None) -> tf.Tensor:
    """``tensor``, computed only after the judgement ``ok`` passed (traced)."""
    if ok is None:
        return tensor
    with tf.control_dependencies([ok]):
        return tf.identity(tensor)


def _gated(ids: Ids, ok: tf.Tensor | None) -> Ids:
    lengths = None if ids.lengths is None else _gated_tensor(ids.lengths, ok)
    return Ids(_gated_tensor(ids.values, ok), lengths, ids.hotness)
