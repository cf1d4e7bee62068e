"""The plan's smaller records: shards, local weights and inputs, row splits and slices,
step estimates, the exchange.

Split from ``planner.plan`` (which re-exports them) to keep each module short; these
records know nothing of the plan that holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.spec_fields import INT64_MAX, Combiner, DType, Initializer

# Every integer a plan holds fits 64 bits: larger ones (a file edited by hand) would turn
# numpy's arithmetic in the checks and estimates into Python objects and fail there.
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
Range = tuple[Int64, Int64]
Device = Literal["gpu", "host"]


def record(cls: type[BaseModel], **values: Any) -> Any:
    """A model from values known valid (every field given), without pydantic's checks.

    What ``model_construct`` does, without its per-call bookkeeping: plans derive
    millions of row shards and slices from their row splits, and this makes them ten
    times faster. Only for values the plan itself computed.
    """
    made = object.__new__(cls)
    object.__setattr__(made, "__dict__", values)
    object.__setattr__(made, "__pydantic_fields_set__", set(values))
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


def left_out_at(default: Any) -> Callable[[Any], bool]:
    """For fields added after plans were first written: left out of the file at their
    default, so plans that do not use them keep their bytes (and their pins)."""
    return lambda value: value == default


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Shard(_Frozen):
    """One piece of a table on one rank (half-open row and column ranges)."""

    table: str
    rank: Int64
    rows: Range
    cols: Range
    device: Device = Field(
        "gpu",
        description="host: the piece lives in host memory (CPU offload; table-parallel "
        "pieces only). Left out when gpu, the rank's GPU.",
        exclude_if=left_out_at("gpu"),
    )


class FusedMember(_Frozen):
    """A table piece stored inside a fused local weight, at ``row_offset``."""

    table: str
    row_offset: Int64
    rows: Int64
    cols: Range = Field(description="Columns of the table this piece holds.")


class LocalWeight(_Frozen):
    """One weight variable on a rank: table pieces of equal width and config stacked by rows."""

    rows: Int64
    width: Int64
    combiner: Combiner
    dtype: DType
    initializer: Initializer
    device: Device = Field(
        "gpu",
        description="host: the variable, its optimizer state and its lookups live in host "
        "memory (/CPU:0); it then holds one piece, fused with no other. Left out when gpu.",
        exclude_if=left_out_at("gpu"),
    )
    members: list[FusedMember]


class LocalInput(_Frozen):
    """An input looked up on this rank: which local weight, at which row offset."""

    input: str
    weight: Int64 = Field(description="Index into this rank's table_parallel_weights.")
    row_offset: Int64


class RowSlice(_Frozen):
    """This rank's rows of a row-sliced table (may be empty); ids are looked up at id - rows[0]."""

    table: str
    rows: Range


def even_split_counts(
    rows: int, first: int, stop: int, remainder_start: int, world_size: int
) -> np.ndarray:
    """Rows per rank of ``rows`` spread over ranks [first, stop) as ``RowSplit`` says:
    ``rows // count`` each, one more for ``rows % count`` of them from position
    ``remainder_start`` on, wrapping; none elsewhere. Ranks outside the world (a plan
    edited by hand, for its checks to refuse) are left out, not an IndexError."""
    count = max(stop - first, 1)
    even, extra = divmod(rows, count)
    held = np.zeros(world_size, np.int64)
    group = held[max(first, 0) : max(min(stop, world_size), 0)]
    group += even
    longer = (remainder_start + np.arange(extra)) % count
    group[longer[longer < len(group)]] += 1
    return held


class RowSplit(_Frozen):
    """A row-sliced table's rows spread over consecutive ranks as evenly as they go.

    The ``ranks[1] - ranks[0]`` ranks hold ``rows // count`` rows each, in rank order
    (consecutive ranges from row 0); ``rows % count`` of them hold one more: those from
    position ``remainder_start`` in the group on, wrapping around. Other ranks hold none.
    Written once per table instead of once per rank (plan format 2).
    """

    table: str
    ranks: Range = Field(description="Ranks [first, stop) holding the table's rows.")
    remainder_start: int = Field(
        0,
        ge=0,
        le=INT64_MAX,
        description="Position in the group of the first rank with one row more.",
    )

    def bounds(self, rows: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's first and last-plus-one row, in rank order (empty outside)."""
        held = even_split_counts(rows, *self.ranks, self.remainder_start, world_size)
        ends = np.cumsum(held)
        return ends - held, ends

    def row_ranges(self, rows: int, world_size: int) -> list[Range]:
        """Every rank's rows (half-open), in rank order."""
        starts, ends = self.bounds(rows, world_size)
        return list(zip(starts.tolist(), ends.tolist(), strict=True))

    def runs(self, rows: int) -> list[tuple[int, int, int]]:
        """The split as runs of ranks ``(first, stop, rows each)`` whose rows add up to
        every rank's: all its ranks hold the even share, the remainder's one or two runs
        (two when it wraps around) one more."""
        first, stop = self.ranks
        count = stop - first
        if count <= 0:
            return []
        even, extra = divmod(rows, count)
        start, end = first + self.remainder_start, first + self.remainder_start + extra
        found = [(first, stop, even), (start, min(end, stop), 1), (first, end - count, 1)]
        return [(a, b, n) for a, b, n in found if a < b and n]

    def rank_rows(self, rows: int, rank: int) -> Range:
        """``rank``'s rows alone, as ``bounds`` gives them, without every other rank's (what
        a worker asks for): the rows of the ranks before it, then its own. For a split
        over ranks that exist (the plan's checks refuse any other)."""
        before = held = 0
        for first, stop, each in self.runs(rows):
            before += max(0, min(stop, rank) - first) * each
            held += each if first <= rank < stop else 0
        return before, before + held


class RankStep(_Frozen):
    """One rank's estimated step, by stage, in seconds (see docs/cost_model.md)."""

    ids: float = Field(description="The id all-to-all, row-sliced ids included.")
    forward_lookups: float = Field(description="Its lookups, forward.")
    host_sums: float = Field(
        0.0,
        description="row_reduction host: row-sliced partial sums summed within each host.",
        exclude_if=left_out_at(0.0),
    )
    outputs: float = Field(description="The embedding all-to-all, row-sliced partial sums in it.")
    output_gradients: float = Field(description="Their gradients back (backward).")
    host_sum_gradients: float = Field(
        0.0,
        description="row_reduction host: their gradients back to the host's holders.",
        exclude_if=left_out_at(0.0),
    )
    backward_lookups: float = Field(description="Its lookups, backward.")
    dp_allreduce: float = Field(description="Data-parallel table gradients, averaged.")
    seconds: float = Field(description="This rank's stages, one after another.")


class Traffic(_Frozen):
    """Bytes one rank sends to and receives from other ranks in one collective phase."""

    sent: Int64
    received: Int64
    seconds: float = Field(description="max(sent, received) over the phase's bandwidth.")


NO_TRAFFIC = Traffic(sent=0, received=0, seconds=0.0)


class RankComm(_Frozen):
    """One rank's estimated traffic per training step, by phase (see docs/cost_model.md)."""

    id_alltoall: Traffic = Field(description="Ids of table-parallel inputs to their tables.")
    embedding_alltoall: Traffic = Field(description="Looked-up embeddings back (forward).")
    embedding_grad_alltoall: Traffic = Field(description="Their gradients (backward).")
    # The three row_* names are format 1's, when these phases were collectives of their
    # own; the runtime now carries them inside the three all-to-alls above.
    row_id_allgather: Traffic = Field(description="Row-sliced ids, to the ranks holding rows.")
    row_reduce_scatter: Traffic = Field(description="Row-sliced partial sums, to every rank.")
    row_grad_allgather: Traffic = Field(description="Their gradients, back to the holders.")
    row_host_sums: Traffic = Field(
        NO_TRAFFIC,
        description="row_reduction host: partial sums to the host's ranks that add them up.",
        exclude_if=left_out_at(NO_TRAFFIC),
    )
    row_host_sum_grads: Traffic = Field(
        NO_TRAFFIC,
        description="row_reduction host: their gradients back to the host's holders.",
        exclude_if=left_out_at(NO_TRAFFIC),
    )
    dp_allreduce: Traffic = Field(description="Data-parallel table gradients, averaged.")
    sent_bytes: Int64
    received_bytes: Int64
    seconds: float = Field(description="This rank's phases, one after another.")


class RankPlan(_Frozen):
    """What one rank holds and looks up."""

    rank: Int64
    table_parallel_weights: list[LocalWeight]
    table_parallel_inputs: list[LocalInput] = Field(
        description="Inputs this rank serves, in all-to-all order."
    )
    elements: Int64 = Field(description="Weight elements held, data-parallel replicas included.")
    bytes: Int64 = Field(
        description="Bytes held: weights and their optimizer state, data-parallel replicas "
        "included."
    )
    optimizer_bytes: Int64 = Field(0, description="Of bytes, the optimizer state.")
    host_bytes: Int64 = Field(
        0,
        description="Of bytes, those in host memory: offloaded pieces and their optimizer "
        "state. Left out when 0.",
        exclude_if=left_out_at(0),
    )
    comm: RankComm | None = Field(
        None, description="Estimated traffic per step (null without a global batch size)."
    )
    step: RankStep | None = Field(
        None, description="Estimated step time by stage (null without a global batch size)."
    )

    @cached_property
    def row_slices(self) -> list[RowSlice]:
        """One per row-sliced table, in group order: from the plan's ``row_splits``, worked
        out for this rank when first asked (a worker asks for its own rank only)."""
        return [
            record(RowSlice, table=split.table, rows=split.rank_rows(rows, self.rank))
            for split, rows in self.__dict__.get("_row_splits", ())
        ]

    @property
    def device_bytes(self) -> int:
        """Bytes on the rank's GPU: everything it holds but the offloaded pieces."""
        return self.bytes - self.host_bytes


class OutputAssembly(_Frozen):
    """How a table-parallel input's output is rebuilt after the output all-to-all."""

    input: str
    pieces: list[Int64] = Field(
        description="Indices into the worker-order received outputs, concatenated in this "
        "order along the width."
    )


class Exchange(_Frozen):
    """The table-parallel all-to-all, flattened in worker order (rank 0's inputs first)."""

    output_widths: list[Int64]
    outputs: list[OutputAssembly] = Field(
        description="One per table-parallel input, in group order."
    )


class StepStats(_Frozen):
    """The step's critical path; derived from ``ranks[].step``."""

    stage_seconds: dict[str, float] = Field(
        description="Per stage, the slowest rank's time (stages as in ranks[].step)."
    )
    step_seconds: float = Field(description="The stages' times summed: the estimated step.")
    slowest_rank: Int64 = Field(description="The rank whose own stages take longest.")


def served_by(rank: RankPlan) -> list[tuple[str, int]]:
    """The inputs ``rank`` serves, in all-to-all order, each with the width of its lookups.
    A weight index out of range (a broken plan; validation names it) counts as width 0."""
    weights = rank.table_parallel_weights
    return [
        (local.input, weights[local.weight].width if 0 <= local.weight < len(weights) else 0)
        for local in rank.table_parallel_inputs
    ]


def exchange_of(
    served: Iterable[list[tuple[str, int]]], table_parallel_inputs: list[str]
) -> Exchange:
    """Output widths in worker order (every rank's served inputs in turn, as ``served_by``
    gives them), and which received outputs rebuild each input."""
    flat = [pair for rank in served for pair in rank]
    positions: dict[str, list[int]] = {}
    for position, (name, _) in enumerate(flat):
        positions.setdefault(name, []).append(position)
    return Exchange.model_construct(
        output_widths=[width for _, width in flat],
        outputs=[
            OutputAssembly.model_construct(input=name, pieces=positions.get(name, []))
            for name in table_parallel_inputs
        ],
    )
