"""A plan on its own terms: every element placed once, every part agreeing, and the one
way plans are read outside ``planner validate``.

These checks do not re-run placement: they hold for any correct plan, hand-edited or
made by another version, and they are what a worker relies on when it builds its part.
They run whenever a plan is loaded (``load_plan``, ``plan_from_dict``: the CLI's
``show`` and ``diff``, the runtime, the checkpoint tools), so each is linear in the
plan's size: tables, shards and inputs are indexed once, never searched per rank or per
output. ``planner.validation`` adds the check against a spec, which re-plans.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from planner.costs.comm import CommConfig, estimate_comm
from planner.costs.memory import host_bytes, rank_footprints
from planner.costs.steptime import plan_step
from planner.costs.summary import summarize
from planner.errors import PlanFileError, and_more, brief, shown
from planner.field_errors import describe_validation_error
from planner.memory_checks import limit_problems, offload_problems
from planner.placement.layout import fusion_key, weight_key
from planner.plan import Plan, Shard, parse_plan, read_plan_file
from planner.spec_fields import summing_hosts
from planner.units import optimizer_slots


def load_plan(path: str | Path, every_rank: bool = False) -> Plan:
    """Read a plan file and check that its parts agree; PlanFileError names the first
    problem. What every reader of plans (``show``, ``diff``, the runtime) should use.

    A file whose seal holds (``planner.seal``: checked as written, unchanged since) gets
    the schema and ``index_problems`` only, each rank entry schema-checked and worked out
    when first asked for (``planner.plan_ranks``; PlanFileError names ``ranks[i]``): a
    worker checks and builds only its own. ``every_rank``: every entry now (``show``,
    ``diff``). A seal is a checksum, not a signature: a file edited and sealed again may
    load with parts that disagree (``validate``, trusting no seal, lists them)."""
    plan, sealed = read_plan_file(path)
    if every_rank:
        plan.check_ranks()
    return _checked(plan, shown(str(path)), index_problems if sealed else plan_problems)


def plan_from_dict(raw: object, source: str = "<plan>") -> Plan:
    """``load_plan`` for JSON already parsed: the schema, then the same checks."""
    return _checked(parse_plan(raw, source), source, plan_problems)


def _checked(plan: Plan, source: str, checks: Callable[[Plan], list[str]]) -> Plan:
    problems = checks(plan)
    if problems:
        raise PlanFileError(
            f"{source}: {problems[0]}{and_more(len(problems))}; run planner validate for "
            "every problem"
        )
    return plan


def plan_problems(plan: Plan) -> list[str]:
    """Every inconsistency found, one line each; empty for a sound plan.

    Dangling references (an unknown table, an index out of range) are reported alone:
    the deeper checks follow those references and would have nothing to compare.
    """
    problems = reference_problems(plan)
    if problems:
        return problems
    shards_by_rank: list[list[Shard]] = [[] for _ in range(plan.world_size)]
    for shard in plan.table_parallel_shards:
        shards_by_rank[shard.rank].append(shard)
    problems += _check_groups(plan)
    problems += _check_coverage(plan)
    problems += _row_split_problems(plan)
    problems += _check_rank_contents(plan, shards_by_rank)
    problems += _check_exchange(plan)
    problems += _check_totals(plan)
    problems += offload_problems(plan)
    problems += limit_problems(plan)
    problems += _check_row_reduction(plan)
    problems += _check_fingerprint(plan)
    return problems


def index_problems(plan: Plan) -> list[str]:
    """Ranks numbered 0..N-1, every name outside the ranks pointing at something that
    exists, and row splits over ranks that exist: what previews and reports index by.
    Checked on every load, a sealed file's too (``load_plan``): these build and check
    no rank entry, and a file edited and sealed again must not crash a command."""
    return _numbering_problems(plan) or _listed_name_problems(plan) + _row_split_problems(plan)


def _numbering_problems(plan: Plan) -> list[str]:
    numbers = plan.rank_numbers()
    if numbers != list(range(plan.world_size)):
        return [f"ranks: expected ranks 0..{plan.world_size - 1} in order, found {brief(numbers)}"]
    return []


def _listed_name_problems(plan: Plan) -> list[str]:
    """Every table, input and rank named outside the ranks (inputs, groups, row splits,
    shards) exists."""
    tables = {t.name for t in plan.tables}
    inputs = {i.name for i in plan.inputs}
    problems = []
    if len(tables) < len(plan.tables) or len(inputs) < len(plan.inputs):
        problems.append("tables, inputs: a name is used twice; names must be unique")
    problems += [
        f"inputs: input {i.name!r} reads table {i.table!r}, which is not in tables"
        for i in plan.inputs
        if i.table not in tables
    ]
    for _, names in plan.groups:
        problems += [f"groups: {name!r} is not in tables" for name in names if name not in tables]
    for _, names in plan.input_groups:
        problems += [
            f"input_groups: {name!r} is not in inputs" for name in names if name not in inputs
        ]
    problems += [
        f"row_splits: table {split.table!r} is not in tables"
        for split in plan.row_splits
        if split.table not in tables
    ]
    for shard in plan.table_parallel_shards:
        if shard.table not in tables:
            problems.append(f"shards: table {shard.table!r} is not in tables")
        if not 0 <= shard.rank < plan.world_size:
            problems.append(
                f"shards: shard of {shard.table!r} names rank {brief(shard.rank)}, "
                f"outside 0..{plan.world_size - 1}"
            )
    return problems


def reference_problems(plan: Plan) -> list[str]:
    """Ranks numbered 0..N-1, and every name and index pointing at something that exists.

    A plan that passes this can be previewed and built from without a crash.
    """
    numbering = _numbering_problems(plan)
    if numbering:
        return numbering
    problems = _listed_name_problems(plan)
    tables = {t.name for t in plan.tables}
    inputs = {i.name for i in plan.inputs}
    for rank in plan.ranks:
        where = f"ranks[{rank.rank}]"
        for weight in rank.table_parallel_weights:
            problems += [
                f"{where}: weight member {m.table!r} is not in tables"
                for m in weight.members
                if m.table not in tables
            ]
        for local in rank.table_parallel_inputs:
            if local.input not in inputs:
                problems.append(f"{where}: input {local.input!r} is not in inputs")
            if local.weight == -1:  # format 3 names inputs; this one's table is not here
                problems.append(f"{where}: input {local.input!r} reads a table with no piece here")
            elif not 0 <= local.weight < len(rank.table_parallel_weights):
                problems.append(
                    f"{where}: input {local.input!r} reads weight {brief(local.weight)}, "
                    f"which the rank does not have"
                )
    outputs = len(plan.exchange.output_widths)
    for output in plan.exchange.outputs:
        if output.input not in inputs:
            problems.append(f"exchange.outputs: {output.input!r} is not in inputs")
        if any(not 0 <= k < outputs for k in output.pieces):
            problems.append(f"exchange.outputs: a piece of {output.input!r} is out of range")
    return problems


def _row_split_problems(plan: Plan) -> list[str]:
    """One row split per row-sliced table, over ranks that exist."""
    problems = []
    if sorted(s.table for s in plan.row_splits) != sorted(plan.groups.row_sliced):
        problems.append("row_splits: must hold one split per row-sliced table, and no other")
    for split in plan.row_splits:
        first, stop = split.ranks
        if not 0 <= first < stop <= plan.world_size:
            problems.append(
                f"row_splits: {split.table!r} names ranks {first}..{stop - 1}, "
                f"outside 0..{plan.world_size - 1}"
            )
        elif split.remainder_start >= stop - first:
            problems.append(
                f"row_splits: {split.table!r} starts its remainder at position "
                f"{split.remainder_start} of {stop - first} ranks"
            )
    return problems


def _check_groups(plan: Plan) -> list[str]:
    problems = []
    tables = [t.name for t in plan.tables]
    grouped = plan.groups.data_parallel + plan.groups.table_parallel + plan.groups.row_sliced
    if sorted(grouped) != sorted(tables):
        problems.append("groups: every table must be in exactly one group")
    group_of = plan.groups.group_of()
    table_of = _table_of_inputs(plan)
    for group, names in plan.input_groups:
        problems += [
            f"input_groups.{group}: input {name!r} reads a table not in {group}"
            for name in names
            if group_of.get(table_of[name]) != group
        ]
    grouped_inputs = [name for _, names in plan.input_groups for name in names]
    if sorted(grouped_inputs) != sorted(table_of):
        problems.append("input_groups: every input must be in exactly one group")
    if (plan.world_size == 1 or not plan.parameters.dp_input) and (
        plan.groups.data_parallel or plan.groups.row_sliced
    ):
        problems.append(
            "groups: with one rank or dp_input false every table must be table-parallel"
        )
    return problems


def _check_coverage(plan: Plan) -> list[str]:
    """Each table is tiled exactly once, the way its group cuts it.

    Table-parallel tables are cut by columns (every shard holds all rows); row-sliced
    tables by rows, written as a row split whose ranges tile the table by construction
    (``_row_split_problems`` checks the split), so they have no shards of their own;
    data-parallel tables have none either.
    """
    by_table = defaultdict(list)
    for shard in plan.table_parallel_shards:
        by_table[shard.table].append(shard)
    data_parallel, row_sliced = set(plan.groups.data_parallel), set(plan.groups.row_sliced)
    problems = []
    for table in plan.tables:
        shards = by_table.pop(table.name, [])
        if table.name in data_parallel or table.name in row_sliced:
            if shards:
                kind = "data-parallel" if table.name in data_parallel else "row-sliced"
                problems.append(
                    f"shards: {kind} table {table.name!r} must have no shards"
                    + ("" if kind == "data-parallel" else " (its rows are in row_splits)")
                )
            continue
        if not all(s.rows == (0, table.rows) for s in shards):
            problems.append(f"shards: {table.name!r} must be cut into whole-row column ranges")
        elif not _tiles([s.cols for s in shards], table.width):
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


def _check_rank_contents(plan: Plan, shards_by_rank: list[list[Shard]]) -> list[str]:
    """Local weights and inputs agree with the shards and the tables (row slices follow
    from the row splits, checked on their own)."""
    problems = []
    tables = {t.name: t for t in plan.tables}
    table_parallel = set(plan.groups.table_parallel)
    table_of = _table_of_inputs(plan)
    served_by_table: dict[str, list[str]] = defaultdict(list)
    for name in plan.input_groups.table_parallel:
        served_by_table[table_of[name]].append(name)
    for rank, shards in zip(plan.ranks, shards_by_rank, strict=True):
        where = f"ranks[{rank.rank}]"
        shard_at = {s.table: s for s in shards}
        held = {}
        for w_index, weight in enumerate(rank.table_parallel_weights):
            offset = 0
            key = weight_key(weight.width, weight.combiner, weight.dtype, weight.initializer)
            for member in weight.members:
                table = tables[member.table]
                shard = shard_at.get(member.table)
                if shard is None:
                    problems.append(f"{where}: holds {member.table!r} but no shard says so")
                elif shard.cols != member.cols:
                    problems.append(f"{where}: {member.table!r} columns disagree with its shard")
                if (member.row_offset, member.rows) != (offset, table.rows):
                    problems.append(f"{where}: {member.table!r} row offset or rows are wrong")
                if member.cols[1] - member.cols[0] != weight.width:
                    problems.append(f"{where}: {member.table!r} width differs from its weight")
                if fusion_key(table, weight.width) != key:
                    problems.append(f"{where}: {member.table!r} fused with a different config")
                held[member.table] = (w_index, member.row_offset)
                offset += member.rows
            if offset != weight.rows:
                problems.append(f"{where}: weight {w_index} rows are not its members' sum")
        served = [(i.input, i.weight, i.row_offset) for i in rank.table_parallel_inputs]
        wanted = [(name, *place) for t, place in held.items() for name in served_by_table[t]]
        if sorted(served) != sorted(wanted):
            problems.append(f"{where}: table_parallel_inputs do not match the tables it holds")
        problems += [
            f"{where}: a shard of {s.table!r} is here but no local weight holds it"
            for s in shards
            if s.table in table_parallel and s.table not in held
        ]
    return problems


def _table_of_inputs(plan: Plan) -> dict[str, str]:
    """The table each input reads, by input name."""
    return {i.name: i.table for i in plan.inputs}


def _check_exchange(plan: Plan) -> list[str]:
    flat = [
        (i.input, rank.table_parallel_weights[i.weight].width)
        for rank in plan.ranks
        for i in rank.table_parallel_inputs
    ]
    problems = []
    if [width for _, width in flat] != plan.exchange.output_widths:
        problems.append("exchange.output_widths: do not follow the ranks' inputs")
    table_of = _table_of_inputs(plan)
    widths = {t.name: t.width for t in plan.tables}
    assembled = [o.input for o in plan.exchange.outputs]
    if assembled != plan.input_groups.table_parallel:
        problems.append("exchange.outputs: must list the table-parallel inputs in group order")
    positions: dict[str, list[int]] = defaultdict(list)
    for position, (name, _) in enumerate(flat):
        positions[name].append(position)
    for output in plan.exchange.outputs:
        width = sum(flat[k][1] for k in output.pieces if k < len(flat))
        expected = widths[table_of[output.input]]
        if output.pieces != positions.get(output.input, []) or width != expected:
            problems.append(f"exchange.outputs: pieces of {output.input!r} do not rebuild it")
    return problems


def _check_totals(plan: Plan) -> list[str]:
    params = plan.parameters
    problems = []
    if params.optimizer_slots != optimizer_slots(params.optimizer):
        problems.append(
            f"parameters.optimizer_slots: {params.optimizer} keeps "
            f"{optimizer_slots(params.optimizer)} values per weight, not {params.optimizer_slots}"
        )
    problems += [
        f"ranks[{rank.rank}]: elements or bytes do not match what it holds"
        for rank, counted in zip(plan.ranks, rank_footprints(plan), strict=True)
        if counted != (rank.elements, rank.bytes, rank.optimizer_bytes)
    ]
    problems += [
        f"ranks[{rank.rank}]: host_bytes do not match its weights in host memory"
        for rank in plan.ranks
        if host_bytes(plan, rank) != rank.host_bytes
    ]
    config = CommConfig.from_parameters(params)
    if config is not None and config.global_batch_size % plan.world_size:
        return [*problems, "parameters.global_batch_size: does not split over the ranks"]
    estimate = [None] * len(plan.ranks) if config is None else estimate_comm(plan, config)
    if [rank.comm for rank in plan.ranks] != estimate:
        problems.append(
            "ranks: the traffic estimates do not follow from the plan and its parameters; "
            "re-run planner plan"
        )
    steps = plan_step(plan) if config is not None else None
    if [rank.step for rank in plan.ranks] != (steps or [None] * len(plan.ranks)):
        problems.append(
            "ranks: the step-time estimates do not follow from the plan and its parameters; "
            "re-run planner plan"
        )
    if summarize(plan.ranks, plan.tables) != plan.stats:
        problems.append("stats: do not match the ranks")
    return problems


def _check_row_reduction(plan: Plan) -> list[str]:
    """The reduction the runtime makes is the one the spec asked for, if it asked, and
    host sums chosen by ``auto`` have whole hosts to add up within (a spec that asked for
    them is held to its own rule in ``_check_fingerprint``)."""
    params = plan.parameters
    asked, made, hosts = params.requested_row_reduction, params.row_reduction, params.gpus_per_host
    if asked is not None and asked != made:
        return [
            f"parameters.row_reduction: {made}, where the spec asked for {asked} "
            f"(requested_row_reduction); re-run planner plan"
        ]
    if asked is not None or made != "host":
        return []
    if plan.world_size > hosts and plan.world_size % hosts:
        return [
            f"parameters.row_reduction: host sums within hosts of gpus_per_host ({hosts}) "
            f"ranks, which {plan.world_size} ranks do not fill evenly; re-run planner plan"
        ]
    why_not = _why_auto_would_not_choose_host(plan)
    if why_not:
        return [
            f"parameters.row_reduction: host, left to the planner (requested_row_reduction "
            f"null), but {why_not}; re-run planner plan"
        ]
    return []


def _why_auto_would_not_choose_host(plan: Plan) -> str:
    """Why host sums in ``plan`` cannot be ``auto``'s choice (empty when they can be)."""
    params = plan.parameters
    if params.requested_strategy != "auto":
        return f"only strategy auto chooses it, and this plan asked for {params.requested_strategy}"
    if not params.dp_input:
        return "without dp_input there are no row-sliced tables"
    if summing_hosts("host", plan.world_size, params.gpus_per_host) == 0:
        return "there are not several hosts of several ranks to add partial sums up within"
    if not plan.groups.row_sliced:
        return "no table is row-sliced, so the two reductions are the same exchange"
    return ""


def _check_fingerprint(plan: Plan) -> list[str]:
    """The recorded fingerprint is that of the plan's own tables and settings."""
    try:
        own = plan.spec().fingerprint()
    except ValidationError as exc:
        return [f"parameters: {describe_validation_error(exc)}"]
    if own != plan.fingerprint:
        return [
            "fingerprint: not that of the plan's own tables and parameters, so the plan was "
            "edited after planning; re-run planner plan"
        ]
    return []
