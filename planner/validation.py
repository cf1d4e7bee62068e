"""Check a plan on its own terms: every element placed once, and every part agreeing.

These checks do not re-run placement: they hold for any correct plan, hand-edited or
made by another version, and they are what a worker relies on when it builds its part.
"""

from __future__ import annotations

from collections import defaultdict

from planner.plan import Plan
from planner.planning import make_plan, rank_footprint, summarize
from planner.spec import Spec


def plan_problems(plan: Plan) -> list[str]:
    """Every inconsistency found, one line each; empty for a sound plan."""
    problems: list[str] = []
    for check in (
        _check_ranks,
        _check_groups,
        _check_coverage,
        _check_rank_contents,
        _check_exchange,
        _check_totals,
    ):
        problems += check(plan)
    return problems


def spec_problems(plan: Plan, spec: Spec) -> list[str]:
    """Does ``plan`` belong to ``spec``? Fingerprint first, then a re-plan for equality."""
    if spec.fingerprint() != plan.fingerprint:
        return [
            f"fingerprint {plan.fingerprint} does not match the spec ({spec.fingerprint()}); "
            "re-run planner plan on the spec and commit the new plan"
        ]
    if make_plan(spec) != plan:
        return ["the plan differs from what this planner makes for the spec; re-run planner plan"]
    return []


def _check_ranks(plan: Plan) -> list[str]:
    numbers = [r.rank for r in plan.ranks]
    if numbers != list(range(plan.world_size)):
        return [f"ranks: expected ranks 0..{plan.world_size - 1} in order, found {numbers}"]
    return [
        f"shards: shard of {s.table!r} names rank {s.rank}, outside 0..{plan.world_size - 1}"
        for s in plan.shards
        if not 0 <= s.rank < plan.world_size
    ]


def _check_groups(plan: Plan) -> list[str]:
    problems = []
    tables = [t.name for t in plan.tables]
    grouped = plan.groups.data_parallel + plan.groups.table_parallel + plan.groups.row_sliced
    if sorted(grouped) != sorted(tables):
        problems.append("groups: every table must be in exactly one group")
    group_of = {name: g for g, names in plan.groups for name in names}
    for group, names in plan.input_groups:
        for name in names:
            table = next((i.table for i in plan.inputs if i.name == name), None)
            if table is None or group_of.get(table) != group:
                problems.append(
                    f"input_groups.{group}: input {name!r} reads a table not in {group}"
                )
    counted = sum(len(names) for _, names in plan.input_groups)
    if counted != len(plan.inputs):
        problems.append("input_groups: every input must be in exactly one group")
    return problems


def _check_coverage(plan: Plan) -> list[str]:
    """Each table-parallel or row-sliced table is tiled exactly once by its shards."""
    by_table = defaultdict(list)
    for shard in plan.shards:
        by_table[shard.table].append(shard)
    problems = []
    for table in plan.tables:
        shards = by_table.pop(table.name, [])
        if table.name in plan.groups.data_parallel:
            if shards:
                problems.append(f"shards: data-parallel table {table.name!r} must have no shards")
            continue
        whole_rows = all(s.rows == (0, table.rows) for s in shards)
        whole_cols = all(s.cols == (0, table.width) for s in shards)
        if whole_rows and _tiles([s.cols for s in shards], table.width):
            continue
        if whole_cols and _tiles([s.rows for s in shards], table.rows):
            continue
        problems.append(
            f"shards: the shards of {table.name!r} do not cover its {table.rows} x "
            f"{table.width} elements exactly once"
        )
    problems += [f"shards: table {name!r} is not in the plan" for name in by_table]
    return problems


def _tiles(spans: list[tuple[int, int]], length: int) -> bool:
    end = 0
    for start, stop in sorted(spans):
        if start != end or stop <= start:
            return False
        end = stop
    return end == length


def _check_rank_contents(plan: Plan) -> list[str]:
    """Local weights, inputs and row slices agree with the shards and the tables."""
    problems = []
    tables = {t.name: t for t in plan.tables}
    shard_at = {(s.table, s.rank): s for s in plan.shards}
    tp_inputs = {i.name: i.table for i in plan.inputs if i.name in plan.input_groups.table_parallel}
    for rank in plan.ranks:
        where = f"ranks[{rank.rank}]"
        held = {}
        for w_index, weight in enumerate(rank.table_parallel_weights):
            offset = 0
            for member in weight.members:
                table = tables[member.table]
                shard = shard_at.get((member.table, rank.rank))
                if shard is None or shard.cols != member.cols:
                    problems.append(f"{where}: {member.table!r} columns disagree with its shard")
                if (member.row_offset, member.rows) != (offset, table.rows):
                    problems.append(f"{where}: {member.table!r} row offset or rows are wrong")
                if member.cols[1] - member.cols[0] != weight.width:
                    problems.append(f"{where}: {member.table!r} width differs from its weight")
                if (table.combiner, table.dtype) != (weight.combiner, weight.dtype):
                    problems.append(f"{where}: {member.table!r} fused with a different config")
                held[member.table] = (w_index, member.row_offset)
                offset += member.rows
            if offset != weight.rows:
                problems.append(f"{where}: weight {w_index} rows are not its members' sum")
        served = [(i.input, i.weight, i.row_offset) for i in rank.table_parallel_inputs]
        wanted = sorted((name, *held[t]) for name, t in tp_inputs.items() if t in held)
        if sorted(served) != wanted:
            problems.append(f"{where}: table_parallel_inputs do not match the tables it holds")
        if [s.table for s in rank.row_slices] != plan.groups.row_sliced:
            problems.append(f"{where}: row_slices must list the row-sliced tables in group order")
        for s in rank.row_slices:
            shard = shard_at.get((s.table, rank.rank))
            if (shard.rows if shard else (s.rows[0], s.rows[0])) != s.rows:
                problems.append(f"{where}: row slice of {s.table!r} disagrees with its shard")
    return problems


def _check_exchange(plan: Plan) -> list[str]:
    flat = [
        (i.input, rank.table_parallel_weights[i.weight].width)
        for rank in plan.ranks
        for i in rank.table_parallel_inputs
    ]
    problems = []
    if [width for _, width in flat] != plan.exchange.output_widths:
        problems.append("exchange.output_widths: do not follow the ranks' inputs")
    inputs = {i.name: i.table for i in plan.inputs}
    assembled = [o.input for o in plan.exchange.outputs]
    if assembled != plan.input_groups.table_parallel:
        problems.append("exchange.outputs: must list the table-parallel inputs in group order")
    for output in plan.exchange.outputs:
        positions = [k for k, (name, _) in enumerate(flat) if name == output.input]
        width = sum(flat[k][1] for k in output.pieces if k < len(flat))
        if output.pieces != positions or width != plan.table(inputs[output.input]).width:
            problems.append(f"exchange.outputs: pieces of {output.input!r} do not rebuild it")
    return problems


def _check_totals(plan: Plan) -> list[str]:
    problems = [
        f"ranks[{rank.rank}]: elements or bytes do not match what it holds"
        for rank in plan.ranks
        if rank_footprint(plan, rank) != (rank.elements, rank.bytes)
    ]
    if summarize(plan.ranks, plan.tables) != plan.stats:
        problems.append("stats: do not match the ranks")
    return problems
