"""The plan file: everything a worker needs to build its part, with no placement logic.

These models are the published JSON Schema (``planner schema``). A plan is written
pretty-printed with fields in declaration order, so the same spec always gives the
same bytes and a plan diff in review reads top to bottom.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from planner import jsonlines
from planner.errors import PlanFileError
from planner.spec import (
    Combiner,
    DType,
    Initializer,
    InputSpec,
    Objective,
    Spec,
    Strategy,
    TableSpec,
    describe_validation_error,
)
from planner.units import Optimizer

FORMAT_VERSION = 2

Range = tuple[int, int]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Parameters(_Frozen):
    """The placement parameters as resolved: what the planner actually used."""

    requested_strategy: Strategy
    column_slice_threshold: int | None = Field(
        description="Elements per column slice at most; 0 slices every table as far as "
        "the world size and width allow; null = no column slicing."
    )
    column_slice_threshold_source: Literal["spec", "automatic", "auto", "none"]
    row_slice_threshold: int | None = Field(description="In effect (null = off).")
    data_parallel_threshold: int | None = Field(description="In effect (null = off).")
    requested_column_slice_threshold: int | None = Field(
        None, description="As written in the spec (null = automatic)."
    )
    requested_row_slice_threshold: int | None = Field(
        None, description="As written in the spec (off with one rank or dp_input false)."
    )
    requested_data_parallel_threshold: int | None = Field(
        None, description="As written in the spec (off with one rank or dp_input false)."
    )
    dp_input: bool
    optimizer: Optimizer = "sgd"
    optimizer_slots: int = Field(0, description="Optimizer state values per weight element.")
    device_memory: int | None = Field(None, gt=0, description="Bytes per GPU (null = not checked).")
    memory_reserve: float = Field(
        0.0, ge=0, lt=1, description="Fraction of device_memory kept free."
    )
    global_batch_size: int | None = Field(
        None, description="Samples per step over all ranks (null = no communication estimate)."
    )
    id_bytes: Literal[4, 8] = Field(8, description="Bytes per id sent.")
    compute_dtype: DType = Field("float32", description="Type of the embeddings exchanged.")
    alltoall_bandwidth: float = Field(25.0, gt=0, description="GB/s per rank in an all-to-all.")
    allreduce_bandwidth: float = Field(
        25.0, gt=0, description="GB/s per rank in ring allreduce, allgather and reduce-scatter."
    )
    objective: Objective | None = Field(None, description="As written (null = automatic).")
    gpus_per_host: int = Field(8, ge=1, description="Ranks per host.")
    intra_host_bandwidth: float = Field(200.0, gt=0, description="GB/s per rank within a host.")
    memory_bandwidth: float = Field(900.0, gt=0, description="GB/s of device memory.")
    column_multiple: int = Field(4, ge=1, description="auto's column pieces: multiples of this.")


class Groups(_Frozen):
    """Names by execution group, each in spec order."""

    data_parallel: list[str]
    table_parallel: list[str]
    row_sliced: list[str]


class Shard(_Frozen):
    """One piece of a table on one rank (half-open row and column ranges)."""

    table: str
    rank: int
    rows: Range
    cols: Range


class FusedMember(_Frozen):
    """A table piece stored inside a fused local weight, at ``row_offset``."""

    table: str
    row_offset: int
    rows: int
    cols: Range = Field(description="Columns of the table this piece holds.")


class LocalWeight(_Frozen):
    """One weight variable on a rank: table pieces of equal width and config stacked by rows."""

    rows: int
    width: int
    combiner: Combiner
    dtype: DType
    initializer: Initializer
    members: list[FusedMember]


class LocalInput(_Frozen):
    """An input looked up on this rank: which local weight, at which row offset."""

    input: str
    weight: int = Field(description="Index into this rank's table_parallel_weights.")
    row_offset: int


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


class Traffic(_Frozen):
    """Bytes one rank sends to and receives from other ranks in one collective phase."""

    sent: int
    received: int
    seconds: float = Field(description="max(sent, received) over the phase's bandwidth.")


class RankComm(_Frozen):
    """One rank's estimated traffic per training step, by phase (see docs/cost_model.md)."""

    id_alltoall: Traffic = Field(description="Ids of table-parallel inputs to their tables.")
    embedding_alltoall: Traffic = Field(description="Looked-up embeddings back (forward).")
    embedding_grad_alltoall: Traffic = Field(description="Their gradients (backward).")
    row_id_allgather: Traffic = Field(description="Ids of row-sliced inputs, from every rank.")
    row_reduce_scatter: Traffic = Field(description="Partial row-sliced outputs, summed.")
    row_grad_allgather: Traffic = Field(description="Row-sliced output gradients (backward).")
    dp_allreduce: Traffic = Field(description="Data-parallel table gradients, averaged.")
    sent_bytes: int
    received_bytes: int
    seconds: float = Field(description="This rank's phases, one after another.")


class RankStep(_Frozen):
    """One rank's estimated step, by stage, in seconds (see docs/cost_model.md)."""

    ids: float = Field(description="Id all-to-all and row-slice id allgather.")
    forward_lookups: float = Field(description="Its lookups, forward.")
    outputs: float = Field(description="Output all-to-all and row-slice reduce-scatter.")
    output_gradients: float = Field(description="Their gradients back (backward).")
    backward_lookups: float = Field(description="Its lookups, backward.")
    dp_allreduce: float = Field(description="Data-parallel table gradients, averaged.")
    seconds: float = Field(description="This rank's stages, one after another.")


class RankPlan(_Frozen):
    """What one rank holds and looks up."""

    rank: int
    table_parallel_weights: list[LocalWeight]
    table_parallel_inputs: list[LocalInput] = Field(
        description="Inputs this rank serves, in all-to-all order."
    )
    elements: int = Field(description="Weight elements held, data-parallel replicas included.")
    bytes: int = Field(
        description="Bytes held: weights and their optimizer state, data-parallel replicas "
        "included."
    )
    optimizer_bytes: int = Field(0, description="Of bytes, the optimizer state.")
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
        r = self.rank
        return [
            RowSlice.model_construct(table=t, rows=(int(starts[r]), int(ends[r])))
            for t, (starts, ends) in self.__dict__.get("_row_splits", ())
        ]


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


class CommStats(_Frozen):
    """Traffic per step over all ranks; derived from ``ranks[].comm``."""

    total_bytes: int = Field(description="Bytes sent by all ranks (equal to bytes received).")
    mean_rank_bytes: float = Field(description="total_bytes over the world size.")
    max_rank_sent_bytes: int
    max_rank_received_bytes: int
    phase_seconds: dict[str, float] = Field(
        description="Per phase, the slowest rank's time (phases as in ranks[].comm)."
    )
    step_seconds: float = Field(description="The phases' times summed: no overlap assumed.")


class StepStats(_Frozen):
    """The step's critical path; derived from ``ranks[].step``."""

    stage_seconds: dict[str, float] = Field(
        description="Per stage, the slowest rank's time (stages as in ranks[].step)."
    )
    step_seconds: float = Field(description="The stages' times summed: the estimated step.")
    slowest_rank: int = Field(description="The rank whose own stages take longest.")


class Stats(_Frozen):
    """Summary numbers for review; derived from ``ranks``."""

    total_elements: int
    total_bytes: int
    max_rank_bytes: int
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

    format_version: Literal[2] = FORMAT_VERSION
    fingerprint: str = Field(description="sha256 of the normalized spec this plan was made from.")
    world_size: int = Field(ge=1)
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
    ranks: list[RankPlan]
    stats: Stats

    @model_validator(mode="after")
    def _link_row_splits(self) -> Plan:
        """Let each rank work out its row slices from ``row_splits`` when asked."""
        rows = {t.name: t.rows for t in self.tables}
        splits = {s.table: s for s in self.row_splits if s.table in rows}
        linked = [
            (name, splits[name].bounds(rows[name], self.world_size))
            for name in self.groups.row_sliced
            if name in splits
        ]
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
                Shard.model_construct(table=t.name, rank=rank, rows=rows, cols=(0, t.width))
                for rank, rows in enumerate(s.row_ranges(t.rows, self.world_size))
                if rows[1] > rows[0]
            ]
        index = {name: i for i, name in enumerate(tables)}
        found.sort(key=lambda s: (index.get(s.table, len(index)), s.rank))
        return found

    @cached_property
    def exchange(self) -> Exchange:
        """Follows from the ranks: their inputs in order, and each input's pieces. A weight
        index out of range (a broken plan; validation names it) counts as width 0."""
        flat = []
        for rank in self.ranks:
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
                for name in self.input_groups.table_parallel
            ],
        )

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)

    def to_json(self) -> str:
        return jsonlines.dumps(self.model_dump(mode="json")) + "\n"

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
            tables=self.tables,
            inputs=self.inputs,
        )


def plan_json_schema() -> dict:
    """The schema of plan files (what is written; derived parts are left out)."""
    schema = Plan.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write atomically: a temp file in the same folder, then rename over ``path``.

    Readers (CI, a training job starting) never see half a plan.
    """
    path = Path(path)
    text = plan.to_json()
    try:
        write_atomically(text, path)
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot write the plan ({exc.strerror or exc})") from exc


def write_atomically(text: str, path: Path) -> None:
    """A temp file in ``path``'s folder renamed over it, removed if anything fails; or
    straight into ``path`` when it is a device or FIFO (/dev/stdout: nothing to rename)."""
    if path.exists() and not path.is_file():
        path.write_text(text)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes it private; plans are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_plan(path: str | Path) -> Plan:
    """Read and schema-check a plan file; raises PlanFileError with a one-line reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return Plan.model_validate_json(text)  # the fast path: a sound plan of this format
    except ValidationError:
        pass  # say what is wrong below, the slow way
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path}: not a plan file (not UTF-8 text)") from exc
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read the plan ({exc.strerror})") from exc
    try:
        raw = json.loads(text)
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path}: not a plan file (not UTF-8 text)") from exc
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read the plan ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from exc
    return plan_from_dict(raw, source=str(path))


def plan_from_dict(raw: object, source: str = "<plan>") -> Plan:
    """Schema-check parsed JSON; what is not a plan at all is said so before any field."""
    if not isinstance(raw, dict) or "format_version" not in raw:
        found = f"a JSON {type(raw).__name__}" if not isinstance(raw, dict) else "no format_version"
        raise PlanFileError(f"{source}: not a plan file ({found}); make one with planner plan")
    if raw["format_version"] == 1:
        raise PlanFileError(
            f"{source}: format_version 1 (a plan from an older planner) is not read by this "
            f"one; re-plan the spec with this version (planner plan SPEC)"
        )
    if raw["format_version"] != FORMAT_VERSION:
        raise PlanFileError(
            f"{source}: format_version {raw['format_version']!r} is not supported "
            f"(this planner reads {FORMAT_VERSION}); re-plan with this version"
        )
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise PlanFileError(f"{source}: {describe_validation_error(exc)}") from exc
