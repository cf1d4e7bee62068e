"""The plan file: everything a worker needs to build its part, with no placement logic.

These models are the published JSON Schema (``planner schema``). A plan is written
pretty-printed with fields in declaration order, so the same spec always gives the
same bytes and a plan diff in review reads top to bottom.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)

from planner import jsonlines
from planner.errors import PlanFileError, brief, shown
from planner.field_errors import describe_validation_error
from planner.files import MAX_LIST_ITEMS, MAX_PLAN_BYTES, MAX_SHARDS, MAX_SPEC_BYTES, read_text
from planner.parsing import JsonRefused, gc_paused, json_syntax_problem, parse_json, parse_yaml
from planner.plan_parameters import Parameters as Parameters  # re-exported
from planner.plan_parts import Device as Device  # re-exported
from planner.plan_parts import (
    Exchange,
    Int64,
    RankPlan,
    RowSplit,
    Shard,
    StepStats,
    _Frozen,
    exchange_of,
    record,
    served_by,
)
from planner.plan_parts import FusedMember as FusedMember  # re-exported
from planner.plan_parts import LocalInput as LocalInput  # re-exported
from planner.plan_parts import LocalWeight as LocalWeight  # re-exported
from planner.plan_parts import Range as Range  # re-exported
from planner.plan_parts import RankComm as RankComm  # re-exported
from planner.plan_parts import RankStep as RankStep  # re-exported
from planner.plan_parts import RowSlice as RowSlice  # re-exported
from planner.plan_parts import Traffic as Traffic  # re-exported
from planner.plan_ranks import RankEntry, WrittenRanks, linked_row_splits, rank_entry
from planner.seal import seal_holds, text_digest
from planner.spec import InputSpec, Spec, TableSpec
from planner.spec_fields import MAX_WORLD_SIZE, Strategy, WorldSize, summing_hosts

FORMAT_VERSION = 3
READ_VERSIONS = (2, 3)  # format 2 wrote every rank's weights and inputs in full


GroupName = Literal["data_parallel", "table_parallel", "row_sliced"]
GROUP_NAMES: tuple[GroupName, ...] = get_args(GroupName)


class Groups(_Frozen):
    """Names by execution group, each in spec order."""

    data_parallel: list[str]
    table_parallel: list[str]
    row_sliced: list[str]

    def group_of(self) -> dict[str, GroupName]:
        """Each name's group: the lookup the checks, diff, reports and checkpoints need."""
        return {name: group for group in GROUP_NAMES for name in getattr(self, group)}


class CommStats(_Frozen):
    """Traffic per step over all ranks; derived from ``ranks[].comm``."""

    total_bytes: Int64 = Field(description="Bytes sent by all ranks (equal to bytes received).")
    mean_rank_bytes: float = Field(description="total_bytes over the world size.")
    max_rank_sent_bytes: Int64
    max_rank_received_bytes: Int64
    phase_seconds: dict[str, float] = Field(
        description="Per phase, the slowest rank's time (phases as in ranks[].comm)."
    )
    step_seconds: float = Field(description="The phases' times summed: no overlap assumed.")


class Stats(_Frozen):
    """Summary numbers for review; derived from ``ranks``."""

    total_elements: Int64
    total_bytes: Int64
    max_rank_bytes: Int64
    mean_rank_bytes: float
    imbalance: float = Field(description="Largest rank's bytes over the mean (1.0 = even).")
    comm: CommStats | None = Field(
        None, description="Traffic summary per step (null without a global batch size)."
    )
    step: StepStats | None = Field(
        None, description="Step-time estimate (null without a global batch size)."
    )


class Plan(_Frozen):
    """A complete, versioned placement of a spec's tables over ``world_size`` ranks."""

    model_config = ConfigDict(
        **_Frozen.model_config, validate_by_name=True, serialize_by_alias=True
    )

    format_version: Literal[3] = FORMAT_VERSION
    fingerprint: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256 of the normalized spec this plan was made from.",
    )
    world_size: WorldSize
    strategy: Strategy = Field(description="Strategy used (one rank always uses basic).")
    parameters: Parameters
    tables: list[TableSpec]
    inputs: list[InputSpec]
    groups: Groups
    input_groups: Groups
    row_splits: list[RowSplit] = Field(
        default_factory=list, description="One per row-sliced table, in group order."
    )
    table_parallel_shards: list[Shard] = Field(
        alias="shards",
        description="Every table-parallel piece, by table (spec order), then rank.",
    )
    ranks: Sequence[RankPlan] = Field(
        description="In rank order; a plan read from its file works each out when first "
        "asked for (``planner.plan_ranks.WrittenRanks``)."
    )
    stats: Stats

    @field_serializer("ranks")
    def _ranks_as_written(self, ranks: Sequence[RankPlan]) -> list[dict[str, Any]]:
        """Each rank's weights and inputs compact (plan format 3; ``planner.plan_ranks``)."""
        return [rank_entry(rank) for rank in ranks]

    @model_validator(mode="after")
    def link_row_splits(self) -> Plan:
        """Let each rank work out its row slices from ``row_splits`` when asked."""
        linked = linked_row_splits(self.tables, self.row_splits, self.groups.row_sliced)
        for rank in self.ranks:
            object.__setattr__(rank, "_row_splits", linked)
            rank.__dict__.pop("row_slices", None)
        return self

    @cached_property
    def shards(self) -> list[Shard]:
        """Every piece, by table (spec order), then rank: the table-parallel ones and the
        row-sliced tables' (from ``row_splits``)."""
        tables = {t.name: t for t in self.tables}
        found = list(self.table_parallel_shards)
        for s in (s for s in self.row_splits if s.table in tables):
            t = tables[s.table]
            found += [
                record(Shard, table=t.name, rank=rank, rows=rows, cols=(0, t.width), device="gpu")
                for rank, rows in enumerate(s.row_ranges(t.rows, self.world_size))
                if rows[1] > rows[0]
            ]
        index = {name: i for i, name in enumerate(tables)}
        found.sort(key=lambda s: (index.get(s.table, len(index)), s.rank))
        return found

    @cached_property
    def exchange(self) -> Exchange:
        """Follows from the ranks: their inputs in order, and each input's pieces."""
        served = (self.served(index) for index in range(len(self.ranks)))
        return exchange_of(served, self.input_groups.table_parallel)

    def served(self, index: int) -> list[tuple[str, int]]:
        """The inputs the rank at ``index`` serves, in all-to-all order, each with the
        width of its lookups: all a worker needs of the other ranks, which a plan read
        from its file gives without building their weights."""
        if isinstance(self.ranks, WrittenRanks):
            return self.ranks.served(index)
        return served_by(self.ranks[index])

    def rank_numbers(self) -> list[int]:
        """Each rank's number, in order; a plan read from its file gives them without
        building any rank."""
        if isinstance(self.ranks, WrittenRanks):
            return self.ranks.numbers()
        return [rank.rank for rank in self.ranks]

    def check_ranks(self) -> None:
        """Schema-check now every rank entry of a sealed file not checked yet (else each
        is when first asked for); PlanFileError names the first bad one."""
        if isinstance(self.ranks, WrittenRanks):
            self.ranks.check_all()

    @property
    def sums_within_hosts(self) -> bool:
        """Whether the layer adds row slices' partial sums up within hosts: ``host`` asked
        for (or chosen), over several hosts, with a table row-sliced."""
        params = self.parameters
        hosts = summing_hosts(params.row_reduction, self.world_size, params.gpus_per_host)
        return hosts > 0 and bool(self.groups.row_sliced)

    def table(self, name: str) -> TableSpec:
        """The table called ``name``: a search, so code looking up many builds a dict."""
        return next(t for t in self.tables if t.name == name)

    def to_json(self) -> str:
        return jsonlines.dumps(self.model_dump(mode="json")) + "\n"

    @cached_property
    def digest(self) -> str:
        """The sha256 of the plan as ``to_json`` writes it, which is its seal: the same
        plan has the same digest built, read from a dict, or read from a sealed file (whose
        seal is taken as it is, no rank worked out). What the ranks of a training job
        compare to know they run one plan."""
        return text_digest(self.to_json())

    def spec(self) -> Spec:
        """The normalized spec this plan was made from."""
        params = self.parameters
        return Spec(
            world_size=self.world_size,
            strategy=params.requested_strategy,
            column_slice_threshold=params.requested_column_slice_threshold,
            row_slice_threshold=params.requested_row_slice_threshold,
            data_parallel_threshold=params.requested_data_parallel_threshold,
            dp_input=params.dp_input,
            optimizer=params.optimizer,
            device_memory=params.device_memory,
            memory_reserve=params.memory_reserve,
            global_batch_size=params.global_batch_size,
            id_bytes=params.id_bytes,
            compute_dtype=params.compute_dtype,
            alltoall_bandwidth=params.alltoall_bandwidth,
            allreduce_bandwidth=params.allreduce_bandwidth,
            objective=params.objective,
            gpus_per_host=params.gpus_per_host,
            intra_host_bandwidth=params.intra_host_bandwidth,
            memory_bandwidth=params.memory_bandwidth,
            column_multiple=params.column_multiple,
            row_reduction=params.requested_row_reduction,
            gpu_embedding_size=params.gpu_embedding_size,
            offload=params.offload,
            host_memory=params.host_memory,
            tables=self.tables,
            inputs=self.inputs,
        )


class PlanFile(Plan):
    """A plan as its file holds it: the ranks compact. What ``planner schema`` publishes
    and what reading a file checks; ``parse_plan`` then works the ranks out in full."""

    model_config = ConfigDict(title="Plan")

    ranks: list[RankEntry]  # type: ignore[assignment]
    seal: str | None = Field(
        None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="Written second, after format_version: the sha256 of the file without "
        "this line, when the plan passed its checks as it was written. Loaders finding the "
        "rest unchanged do not check it again; planner validate always does.",
    )

    @model_validator(mode="after")
    def link_row_splits(self) -> PlanFile:
        """Nothing to link: the ranks are linked once worked out in full."""
        return self

    @field_serializer("ranks")
    def _ranks_as_written(self, ranks: list[RankEntry]) -> list[RankEntry]:
        """Written as they are (this declares the file's layout to the schema)."""
        return ranks


def plan_json_schema() -> dict:
    """The schema of plan files (what is written; derived parts are left out)."""
    schema = PlanFile.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def read_plan(path: str | Path) -> Plan:
    """Read and schema-check a plan file, nothing more; PlanFileError with a one-line reason.

    ``planner.load_plan`` also checks that the plan's parts agree; this is what
    ``planner validate`` reads to list every problem of a plan that may not, so it
    trusts no seal: the file is parsed as strictly as one without.
    """
    return read_plan_file(path, trust_seal=False)[0]


def read_plan_file(path: str | Path, trust_seal: bool = True) -> tuple[Plan, bool]:
    """``read_plan``, and whether the file's seal holds (``planner.seal``), which with
    ``trust_seal`` lets the plain JSON parser read it (what the planner sealed holds no
    key twice and no NaN) and leaves each rank entry to be schema-checked when first
    asked for (``parse_plan``)."""
    path = Path(path)
    name = shown(str(path))
    text = read_text(path, MAX_PLAN_BYTES, "a plan file", "plan", PlanFileError)
    sealed = trust_seal and seal_holds(text)
    with gc_paused():  # once over parsing and the schema: the collector walks their objects once
        try:
            raw = json.loads(text) if sealed else parse_json(text)
        except json.JSONDecodeError as exc:
            raise PlanFileError(f"{name}: {_not_json(text, exc, name)}") from exc
        except JsonRefused as exc:
            raise PlanFileError(f"{name}: not a plan file ({exc})") from exc
        plan = parse_plan(raw, source=name, sealed=sealed)
        del raw  # what the plan does not keep goes before the collector is back
    return plan, sealed


def _not_json(text: str, exc: json.JSONDecodeError, name: str) -> str:
    """Why ``text`` is no plan: a YAML spec (JSON stops at its first character), the file
    most often given where a plan belongs; else where the JSON breaks off."""
    if exc.pos == len(text) - len(text.lstrip()) and len(text) <= MAX_SPEC_BYTES:
        try:
            raw = parse_yaml(text)
        except yaml.YAMLError:
            raw = None
        if isinstance(raw, dict) and "tables" in raw:
            return f"this is a spec, not a plan; make its plan with planner plan {name}"
    return (
        f"{json_syntax_problem(exc)}; the file is truncated or damaged: re-plan the spec "
        "(planner plan SPEC)"
    )


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


_LIST_LIMITS = {
    "tables": MAX_LIST_ITEMS,
    "inputs": MAX_LIST_ITEMS,
    "row_splits": MAX_LIST_ITEMS,
    "shards": MAX_SHARDS,
    "ranks": MAX_WORLD_SIZE,
}


def _check_list_lengths(raw: dict, source: str) -> None:
    """Lists longer than any plan holds are refused before the schema: checking millions
    of entries, each wrong, would take gigabytes to say so."""
    for key, limit in _LIST_LIMITS.items():
        found = raw.get(key)
        if isinstance(found, list) and len(found) > limit:
            raise PlanFileError(
                f"{source}: {key}: {len(found):,} entries, more than the {limit:,} a plan "
                f"holds; re-plan the spec (planner plan SPEC)"
            )


def parse_plan(raw: object, source: str = "<plan>", sealed: bool = False) -> Plan:
    """Schema-check parsed JSON; what is not a plan at all is said so before any field.

    ``sealed``: the text ``raw`` was parsed from carries a seal that holds, so the
    planner checked it as it wrote it; every field but the rank entries is checked here,
    and each entry when it is first asked for (``WrittenRanks``: a worker checks its own
    rank, not 4,096), raising PlanFileError naming ``ranks[i]``. Otherwise every field
    is checked here. The ranks are worked out in full one by one, as first asked for.
    """
    if not isinstance(raw, dict) or "format_version" not in raw:
        found = (
            "no format_version"
            if isinstance(raw, dict)
            else "JSON null"
            if raw is None
            else f"JSON {str(raw).lower()}"
            if isinstance(raw, bool)
            else f"a JSON {_JSON_TYPES.get(type(raw), type(raw).__name__)}"
        )
        raise PlanFileError(f"{source}: not a plan file ({found}); make one with planner plan")
    _check_list_lengths(raw, source)
    version = raw["format_version"]
    if isinstance(version, str) and version.strip() == str(FORMAT_VERSION):
        raise PlanFileError(
            f"{source}: format_version must be the number {FORMAT_VERSION}, not the string "
            f"{brief(version)}; write it without quotes"
        )
    if type(version) is not int:  # not true (which == 1), nor 3.0 (which == 3)
        raise PlanFileError(
            f"{source}: format_version must be an integer ({FORMAT_VERSION} for this "
            f"planner's plans), not {brief(version)}; re-plan the spec (planner plan SPEC)"
        )
    if version == 1:
        raise PlanFileError(
            f"{source}: format_version 1 (a plan from an older planner) is not read by this "
            f"one; re-plan the spec with this version (planner plan SPEC)"
        )
    if version not in READ_VERSIONS:
        raise PlanFileError(
            f"{source}: format_version {brief(version)} is not supported (this planner reads "
            f"format versions 2 and {FORMAT_VERSION}); re-plan with this version"
        )
    try:
        if version == 2:  # the ranks in full: checked as they are
            return Plan.model_validate({**raw, "format_version": FORMAT_VERSION})
        lazy = sealed and isinstance(raw.get("ranks"), list)
        written = PlanFile.model_validate({**raw, "ranks": []} if lazy else raw)
    except ValidationError as exc:
        model = Plan if version == 2 else PlanFile
        raise PlanFileError(f"{source}: {describe_validation_error(exc, model=model)}") from exc
    values = dict(written.__dict__)
    del values["seal"]
    values["ranks"] = WrittenRanks(
        list(raw["ranks"]) if lazy else written.ranks,
        written.tables,
        written.inputs,
        linked_row_splits(written.tables, written.row_splits, written.groups.row_sliced),
        source,
    )
    plan = record(Plan, **values)
    if sealed and written.seal is not None:
        plan.__dict__["digest"] = written.seal  # the cached_property, known without work
    return plan
