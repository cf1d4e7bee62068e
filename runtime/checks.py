"""Checks that must fail the same way on every rank, before any rank uses its inputs.

A rank that raises while the others proceed leaves them waiting in a collective
forever. So a check is either computed only from what every rank has identically (the
plan and ``hvd.size()``), or each rank summarizes its inputs in a small record, the
records travel at the head of the layer's first collective, which every rank reaches
whatever its inputs (see :mod:`runtime.agreement`), and every rank then judges all
records with the same code.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from planner.plan import Plan
from planner.reports.folding import rank_ranges
from runtime.lookup import IdProblem

# Status codes of a rank's input record.
OK, WRONG_COUNT, BAD_INPUT, NEEDS_COMBINER = 0, 1, 2, 3


class Record(NamedTuple):
    """One rank's summary of its inputs, sent as int32 words in this field order."""

    status: int  # OK, WRONG_COUNT, BAD_INPUT or NEEDS_COMBINER: static, from the trace
    detail: int  # WRONG_COUNT: inputs passed; BAD_INPUT, NEEDS_COMBINER: input index
    problem: int  # BAD_INPUT: IdProblem.kind
    problem_arg: int  # BAD_INPUT: IdProblem.arg
    bits: int  # id dtype: 32 or 64 (0 when status is not OK)
    batch: int  # batch size of the first input (-1 when status is not OK)
    consistent: int  # 1 when all inputs have that batch size
    layout: int  # signature() of the inputs' hotness
    bad_input: int  # index of the first input with an id outside its table, or -1
    bad_id_high: int  # that id (int64), upper 32 bits
    bad_id_low: int  # and lower 32 bits


RECORD_FIELDS = len(Record._fields)


PlanIdentity = tuple[str, str, int, int]  # digest, strategy, tables, world size


def plan_identity(plan: Plan) -> PlanIdentity:
    """What the ranks compare when the layer is made (``check_same_plan``)."""
    return plan.digest, plan.strategy, len(plan.tables), plan.world_size


def check_same_plan(identities: list[PlanIdentity]) -> None:
    """Every rank must run the same plan; ``identities`` holds every rank's, by rank.

    Ranks that built their layers from different plans (a stale copy of the plan file on
    one host) exchange pieces the others do not expect: wrong embeddings with no error,
    or TensorFlow's error about a split's shape. Every rank gets all identities, so each
    raises this same error, before any rank makes a collective the others would not.
    """
    if len(set(identities)) <= 1:
        return
    ranks_of: dict[PlanIdentity, list[int]] = {}
    for rank, identity in enumerate(identities):
        ranks_of.setdefault(identity, []).append(rank)
    groups = [
        f"{rank_ranges(ranks)}: "
        f"{digest.removeprefix('sha256:')[:12]} ({strategy}, {tables:,} tables, {world:,} ranks)"
        for (digest, strategy, tables, world), ranks in ranks_of.items()
    ]
    raise ValueError(
        f"the ranks were given different plans ({'; '.join(groups)}, by the sha256 of each "
        "plan); give every rank the same plan file (a copy on one host may be stale)"
    )


def check_world(plan: Plan, world_size: int) -> None:
    """The plan must have been made for the world horovodrun started."""
    if plan.world_size != world_size:
        raise ValueError(
            f"the plan places tables on {plan.world_size} ranks but {world_size} are running; "
            f"re-plan with world_size: {world_size} or run with -np {plan.world_size}"
        )
    if len(plan.ranks) != plan.world_size:
        raise ValueError(
            f"the plan lists {len(plan.ranks)} ranks for world_size {plan.world_size}; "
            f"the plan file is inconsistent, re-plan it"
        )


def check_embeddings(plan: Plan, embeddings: list) -> None:
    """Given layers must describe the plan's tables, in spec order."""
    if len(embeddings) != len(plan.tables):
        raise ValueError(
            f"got {len(embeddings)} embedding layers but the plan has {len(plan.tables)} tables; "
            f"pass one layer per plan table, in the plan's table order"
        )
    for index, (layer, table) in enumerate(zip(embeddings, plan.tables, strict=True)):
        shape = (int(layer.input_dim), int(layer.output_dim))
        if shape != (table.rows, table.width):
            raise ValueError(
                f"embedding layer {index} ({layer.name}) is {shape[0]}x{shape[1]} but plan table "
                f"{table.name!r} is {table.rows}x{table.width}; pass the layers the plan was made "
                f"for, or re-plan"
            )
        combiner = getattr(layer, "combiner", None)
        if combiner != table.combiner:
            raise ValueError(
                f"embedding layer {index} ({layer.name}) has combiner {combiner!r} but plan "
                f"table {table.name!r} has {table.combiner!r}; make them agree or re-plan"
            )


@dataclass(frozen=True)
class InputContext:
    """What every rank knows about the inputs it expects: for messages and rules."""

    dp_input: bool
    world_size: int
    expected: list[list[str]]  # input names each rank must feed, in order
    tables: dict[str, tuple[str, int]]  # input name -> (table name, rows)


def signature(hotness: list[int | None]) -> int:
    """A small number that differs when the inputs' layouts (hotness, ragged) differ."""
    return zlib.crc32(repr(hotness).encode()) & 0x7FFFFFFF


def judge(records: np.ndarray, context: InputContext) -> str | None:
    """The one error every rank raises for these gathered records, or None.

    ``records`` is [world_size, RECORD_FIELDS], row r from rank r.
    """
    rows = np.asarray(records, np.int64).reshape(context.world_size, RECORD_FIELDS).tolist()
    records = [Record._make(int(x) for x in row) for row in rows]
    for rank, record in enumerate(records):
        names = context.expected[rank]
        if record.status == WRONG_COUNT:
            return (
                f"rank {rank} passed {record.detail} inputs but the plan expects {len(names)} "
                f"({', '.join(names) or 'none'}), in this order"
            )
        if record.status == BAD_INPUT:
            problem = IdProblem(record.problem, record.problem_arg)
            return f"rank {rank}: input {names[record.detail]!r}: {problem.text()}"
        if record.status == NEEDS_COMBINER:
            return (
                f"rank {rank}: input {names[record.detail]!r} has several ids per sample but "
                f"its table has no combiner; set combiner sum or mean on the table and re-plan"
            )
    feeding = [r for r in range(context.world_size) if context.expected[r]]
    for rank in feeding:
        if not records[rank].consistent:
            return f"rank {rank}: its inputs have different batch sizes; give every input one size"
    batches = sorted({records[r].batch for r in feeding})
    if len(batches) > 1:
        kind = "local" if context.dp_input else "global"
        return (
            f"ranks feed different {kind} batch sizes {batches}; every rank must feed the same "
            f"{kind} batch size"
        )
    if not context.dp_input and batches and batches[0] % context.world_size:
        return indivisible(batches[0], context.world_size)
    if len({records[r].bits for r in feeding}) > 1:
        return "ranks feed ids of different integer types; use int32 or int64 on every rank"
    if context.dp_input and len({records[r].layout for r in feeding}) > 1:
        return (
            "ranks feed inputs of different layouts (hotness, or dense versus ragged); "
            "every rank must feed the same layout for each input"
        )
    for rank in feeding:
        record = records[rank]
        if record.bad_input >= 0:
            name = context.expected[rank][record.bad_input]
            table, rows = context.tables[name]
            bad_id = join_words(record.bad_id_high, record.bad_id_low)
            return (
                f"rank {rank}: input {name!r} has id {bad_id}, outside table {table!r} "
                f"(valid ids are 0..{rows - 1})"
            )
    return None


def indivisible(batch: int, world_size: int) -> str:
    """The error for a global batch (``dp_input=False``) that ranks cannot share equally.

    It starts with upstream's words, "not divisible", which scripts and tests match on.
    """
    return (
        f"not divisible: the global batch size {batch} does not divide by {world_size} ranks; "
        f"with dp_input=False each rank receives an equal share of the global batch, so "
        f"use a multiple of {world_size}"
    )


def static_batch_problem(inputs: list, world_size: int) -> str | None:
    """:func:`indivisible`'s error for a global batch whose size is known while tracing.

    Traced with such a batch, the layer would fail inside TensorFlow on some ranks and
    not others (a reshape by the world size), leaving the others waiting in a
    collective. Every rank feeding the same global batch (as ``dp_input=False``
    requires) finds the same size here, so every rank raises this one error before
    any collective is traced.
    """
    for inp in inputs:
        shape = getattr(inp, "shape", None)
        batch = shape[0] if shape is not None and shape.rank else None
        if batch is not None and batch % world_size:
            return indivisible(batch, world_size)
    return None


def join_words(high: int, low: int) -> int:
    """The int64 whose upper and lower 32 bits are ``high`` and ``low`` (int32 words)."""
    value = ((high & 0xFFFFFFFF) << 32) | (low & 0xFFFFFFFF)
    return value - (1 << 64) if value >= 1 << 63 else value


def judge_or_raise(records: np.ndarray, context: InputContext) -> np.int32:
    """Raise ValueError with :func:`judge`'s message; for eager calls and numpy_function."""
    problem = judge(records, context)
    if problem:
        raise ValueError(problem)
    return np.int32(0)
