"""The ranks as a plan file writes them (format 3), and back.

A rank's local weights are written as the tables they stack and each one's first
column, its inputs by name: every other number of a weight (rows, row offsets,
combiner, dtype, initializer) and of an input (its weight, its row offset) follows
from the tables and is worked out on reading. That keeps a plan of 20,000 tables on
4,096 ranks under 10 MB, and reading it fast: the few fields written are schema-checked,
the records worked out from them are built without pydantic's checks (``record``), and
``planner.consistency`` checks that they agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter, model_validator

from planner.plan_parts import (
    Device,
    FusedMember,
    LocalInput,
    LocalWeight,
    RankPlan,
    _Frozen,
    left_out_at,
    record,
)
from planner.spec import InputSpec, TableSpec


class WeightEntry(_Frozen):
    """A local weight as written: its tables' pieces stacked by rows, in this order."""

    width: int = Field(ge=1, description="Columns of every piece.")
    tables: list[str] = Field(min_length=1, description="The tables, one piece each.")
    first_cols: list[int] = Field(
        description="Each piece's first column of its table: it holds first_cols[k] to "
        "first_cols[k] + width."
    )
    device: Device = Field(
        "gpu",
        description="host: the variable, its optimizer state and its lookups live in host "
        "memory (/CPU:0); it then holds one piece. Left out when gpu.",
        exclude_if=left_out_at("gpu"),
    )

    @model_validator(mode="after")
    def _a_column_per_table(self) -> WeightEntry:
        if len(self.first_cols) != len(self.tables):
            raise ValueError(
                f"first_cols gives {len(self.first_cols)} columns for {len(self.tables)} "
                "tables; give one per table"
            )
        return self


class RankEntry(RankPlan):
    """A rank as written: its weights compact, its inputs by name."""

    table_parallel_weights: list[WeightEntry]
    table_parallel_inputs: list[str] = Field(
        description="Inputs this rank serves, in all-to-all order; each is looked up in "
        "the local weight holding its table's piece."
    )


RANK_ENTRIES = TypeAdapter(list[RankEntry])


_WRITTEN_COMPACT = {"table_parallel_weights", "table_parallel_inputs"}


def rank_entry(rank: RankPlan) -> dict[str, Any]:
    """``rank`` as the file writes it (JSON values, fields in declaration order)."""
    entry = rank.model_dump(
        mode="json", exclude={"table_parallel_weights", "table_parallel_inputs"}
    )
    weights = [
        {
            "width": w.width,
            "tables": [m.table for m in w.members],
            "first_cols": [m.cols[0] for m in w.members],
            **({"device": w.device} if w.device != "gpu" else {}),
        }
        for w in rank.table_parallel_weights
    ]
    inputs = [local.input for local in rank.table_parallel_inputs]
    return {
        "rank": entry.pop("rank"),
        "table_parallel_weights": weights,
        "table_parallel_inputs": inputs,
        **entry,
    }


_UNKNOWN = TableSpec.model_construct(name="", rows=0, width=1)  # a name not in tables


def ranks_from_entries(
    entries: list[RankEntry], tables: list[TableSpec], inputs: list[InputSpec]
) -> list[RankPlan]:
    """The ranks in full, from what the file wrote.

    A name that is not in the plan's tables or inputs is kept as written, with no rows
    (and an input whose table the rank does not hold reads weight -1), for
    ``planner.consistency`` to name; nothing here refuses a plan.
    """
    by_name = {t.name: t for t in tables}
    table_of = {i.name: i.table for i in inputs}
    ranks = []
    for entry in entries:
        weights, held = [], {}
        for index, written in enumerate(entry.table_parallel_weights):
            weight, offsets = _weight(written, by_name)
            weights.append(weight)
            held.update((name, (index, offset)) for name, offset in offsets)
        local_inputs = [
            record(LocalInput, input=name, weight=place[0], row_offset=place[1])
            for name in entry.table_parallel_inputs
            for place in [held.get(table_of.get(name, ""), (-1, 0))]
        ]
        values = dict(entry.__dict__)
        values.update(table_parallel_weights=weights, table_parallel_inputs=local_inputs)
        ranks.append(record(RankPlan, **values))
    return ranks


def _weight(
    written: WeightEntry, tables: dict[str, TableSpec]
) -> tuple[LocalWeight, list[tuple[str, int]]]:
    """The weight in full, and each table's row offset in it."""
    members, offsets, offset = [], [], 0
    for name, first in zip(written.tables, written.first_cols, strict=True):
        rows = tables.get(name, _UNKNOWN).rows
        members.append(
            record(
                FusedMember,
                table=name,
                row_offset=offset,
                rows=rows,
                cols=(first, first + written.width),
            )
        )
        offsets.append((name, offset))
        offset += rows
    config = tables.get(written.tables[0], _UNKNOWN)
    weight = record(
        LocalWeight,
        rows=offset,
        width=written.width,
        combiner=config.combiner,
        dtype=config.dtype,
        initializer=config.initializer,
        device=written.device,
        members=members,
    )
    return weight, offsets
