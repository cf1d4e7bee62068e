"""The plan's smaller records: row splits and slices, step estimates, the exchange.

Split from ``planner.plan`` (which re-exports them) to keep each module short; these
models and the exchange's derivation know nothing of the plan that holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Range = tuple[int, int]


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


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RowSlice(_Frozen):
    """This rank's rows of a row-sliced table (may be empty); ids are looked up at id - rows[0]."""

    table: str
    rows: Range


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
        0, ge=0, description="Position in the group of the first rank with one row more."
    )

    def bounds(self, rows: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's first and last-plus-one row, in rank order (empty outside)."""
        first, stop = self.ranks
        count = max(stop - first, 1)
        even, extra = divmod(rows, count)
        held = np.zeros(world_size, np.int64)
        group = held[max(first, 0) : max(min(stop, world_size), 0)]
        group += even
        longer = (self.remainder_start + np.arange(extra)) % count
        group[longer[longer < len(group)]] += 1
        ends = np.cumsum(held)
        return ends - held, ends

    def row_ranges(self, rows: int, world_size: int) -> list[Range]:
        """Every rank's rows (half-open), in rank order."""
        starts, ends = self.bounds(rows, world_size)
        return list(zip(starts.tolist(), ends.tolist(), strict=True))


class RankStep(_Frozen):
    """One rank's estimated step, by stage, in seconds (see docs/cost_model.md)."""

    ids: float = Field(description="Id all-to-all and row-slice id allgather.")
    forward_lookups: float = Field(description="Its lookups, forward.")
    outputs: float = Field(description="Output all-to-all and row-slice reduce-scatter.")
    output_gradients: float = Field(description="Their gradients back (backward).")
    backward_lookups: float = Field(description="Its lookups, backward.")
    dp_allreduce: float = Field(description="Data-parallel table gradients, averaged.")
    seconds: float = Field(description="This rank's stages, one after another.")


class OutputAssembly(_Frozen):
    """How a table-parallel input's output is rebuilt after the output all-to-all."""

    input: str
    pieces: list[int] = Field(
        description="Indices into the worker-order received outputs, concatenated in this "
        "order along the width."
    )


class Exchange(_Frozen):
    """The table-parallel all-to-all, flattened in worker order (rank 0's inputs first)."""

    output_widths: list[int]
    outputs: list[OutputAssembly] = Field(
        description="One per table-parallel input, in group order."
    )


class StepStats(_Frozen):
    """The step's critical path; derived from ``ranks[].step``."""

    stage_seconds: dict[str, float] = Field(
        description="Per stage, the slowest rank's time (stages as in ranks[].step)."
    )
    step_seconds: float = Field(description="The stages' times summed: the estimated step.")
    slowest_rank: int = Field(description="The rank whose own stages take longest.")


def exchange_of(ranks: Sequence[Any], table_parallel_inputs: list[str]) -> Exchange:
    """Output widths in worker order (every rank's inputs in turn), and which received
    outputs rebuild each input. A weight index out of range (a broken plan; validation
    names it) counts as width 0."""
    flat = []
    for rank in ranks:
        weights = rank.table_parallel_weights
        for local in rank.table_parallel_inputs:
            width = weights[local.weight].width if 0 <= local.weight < len(weights) else 0
            flat.append((local.input, width))
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
