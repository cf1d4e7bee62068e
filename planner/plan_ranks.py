"""The ranks as a plan file writes them (format 3), and back.

A rank's local weights are written as the tables they stack and each one's first
column, its inputs by name: every other number of a weight (rows, row offsets,
combiner, dtype, initializer) and of an input (its weight, its row offset) follows
from the tables and is worked out on reading. That keeps a plan of 20,000 tables on
4,096 ranks under 10 MB, and reading it fast: the few fields written are schema-checked,
the records worked out from them are built without pydantic's checks (``record``), and
``planner.consistency`` checks that they agree. ``WrittenRanks`` works each rank out
when it is first asked for, so a worker that takes its own rank builds no other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

from pydantic import Field, ValidationError, model_validator

from planner.errors import PlanFileError
from planner.field_errors import describe_validation_error
from planner.plan_parts import (
    Device,
    FusedMember,
    Int64,
    LocalInput,
    LocalWeight,
    RankPlan,
    RowSplit,
    _Frozen,
    left_out_at,
    record,
)
from planner.spec import InputSpec, TableSpec
from planner.spec_fields import INT64_MAX


class WeightEntry(_Frozen):
    """A local weight as written: its tables' pieces stacked by rows, in this order."""

    width: int = Field(ge=1, le=INT64_MAX, description="Columns of every piece.")
    tables: list[str] = Field(min_length=1, description="The tables, one piece each.")
    first_cols: list[Int64] = Field(
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


_WRITTEN_COMPACT = {"table_parallel_weights", "table_parallel_inputs"}


def rank_entry(rank: RankPlan) -> dict[str, Any]:
    """``rank`` as the file writes it (JSON values, fields in declaration order)."""
    entry = rank.model_dump(mode="json", exclude=_WRITTEN_COMPACT)
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

Linked = list[tuple[RowSplit, int]]  # the row-sliced tables' splits, each with its rows


class WrittenRanks(Sequence[RankPlan]):
    """A plan's ranks as read from its file, each worked out in full when first asked for.

    A worker needs its own rank's weights and inputs in full, and of the other ranks only
    what they serve (``served``); building all 4,096 ranks' records of a 20,000-table plan
    up front took a third of its load, and the garbage collector walking them as much
    again. Entries from a sealed file come as parsed JSON and are schema-checked one by
    one, when first asked for (``check_all`` checks them all now); those of any other
    file were checked with the rest of it.

    A name that is not in the plan's tables or inputs is kept as written, with no rows
    (and an input whose table the rank does not hold reads weight -1), for
    ``planner.consistency`` to name; nothing here refuses a plan.
    """

    def __init__(
        self,
        entries: list[Any],
        tables: list[TableSpec],
        inputs: list[InputSpec],
        row_splits: Linked,
        source: str,
    ):
        self._entries = entries
        self._built: list[RankPlan | None] = [None] * len(entries)
        self._tables = {t.name: t for t in tables}
        self._table_of = {i.name: i.table for i in inputs}
        self._row_splits = row_splits
        self._source = source

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> RankPlan: ...

    @overload
    def __getitem__(self, index: slice) -> list[RankPlan]: ...

    def __getitem__(self, index: int | slice) -> RankPlan | list[RankPlan]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]  # negative indices count from the end; IndexError
        built = self._built[index]
        if built is None:
            built = self._built[index] = self._rank(index)
        return built

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same ranks (``make_plan``'s list among them)."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which do not hash

    def __repr__(self) -> str:
        return f"WrittenRanks({len(self)} ranks)"

    def served(self, index: int) -> list[tuple[str, int]]:
        """``served_by`` the rank at ``index``, from its entry: no weight is built."""
        entry = self._entry(index)
        width_of = {name: w.width for w in entry.table_parallel_weights for name in w.tables}
        return [
            (name, width_of.get(self._table_of.get(name, ""), 0))
            for name in entry.table_parallel_inputs
        ]

    def numbers(self) -> list[int]:
        """Each entry's rank number, in order: no rank is built, and no entry checked but
        one that is not an object with an integer ``rank`` (PlanFileError names it)."""
        return [
            entry["rank"]
            if type(entry) is dict and type(entry.get("rank")) is int
            else self._entry(index).rank
            for index, entry in enumerate(self._entries)
        ]

    def check_all(self) -> None:
        """Schema-check every entry not checked yet; PlanFileError names the first bad one."""
        for index in range(len(self._entries)):
            self._entry(index)

    def _entry(self, index: int) -> RankEntry:
        entry = self._entries[index]
        if isinstance(entry, RankEntry):
            return entry
        try:
            entry = self._entries[index] = RankEntry.model_validate(entry)
        except ValidationError as exc:
            raise PlanFileError(
                f"{self._source}: {describe_validation_error(_under(exc, 'ranks', index))}"
            ) from exc
        return entry

    def _rank(self, index: int) -> RankPlan:
        """The rank at ``index`` in full, linked to the plan's row splits."""
        entry = self._entry(index)
        weights, held = [], {}
        for position, written in enumerate(entry.table_parallel_weights):
            weight = _weight(written, self._tables)
            weights.append(weight)
            held.update((m.table, (position, m.row_offset)) for m in weight.members)
        local_inputs = [
            record(LocalInput, input=name, weight=place[0], row_offset=place[1])
            for name in entry.table_parallel_inputs
            for place in [held.get(self._table_of.get(name, ""), (-1, 0))]
        ]
        values = dict(entry.__dict__)
        values.update(table_parallel_weights=weights, table_parallel_inputs=local_inputs)
        rank = record(RankPlan, **values)
        object.__setattr__(rank, "_row_splits", self._row_splits)
        return rank


def _under(exc: ValidationError, *where: str | int) -> ValidationError:
    """``exc`` with each problem's location under ``where`` (``ranks[5].rank``): an entry
    checked alone reads as it would in a check of the whole file."""
    return ValidationError.from_exception_data(
        exc.title,
        [
            {"type": e["type"], "loc": (*where, *e["loc"]), "input": e["input"]}
            | ({"ctx": e["ctx"]} if "ctx" in e else {})
            for e in exc.errors()
        ],
    )


def linked_row_splits(
    tables: list[TableSpec], row_splits: list[RowSplit], row_sliced: list[str]
) -> Linked:
    """The splits ``RankPlan.row_slices`` works a rank's slices out from, in group order."""
    rows = {t.name: t.rows for t in tables}
    splits = {s.table: s for s in row_splits if s.table in rows}
    return [(splits[name], rows[name]) for name in row_sliced if name in splits]


def _weight(written: WeightEntry, tables: dict[str, TableSpec]) -> LocalWeight:
    """The weight in full: its members stacked by rows, in the order written."""
    members, offset = [], 0
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
        offset += rows
    config = tables.get(written.tables[0], _UNKNOWN)
    return record(
        LocalWeight,
        rows=offset,
        width=written.width,
        combiner=config.combiner,
        dtype=config.dtype,
        initializer=config.initializer,
        device=written.device,
        members=members,
    )
