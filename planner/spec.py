"""The table spec: what a user writes in ``tables.yaml``.

The pydantic models here are the schema: they validate the file, fill defaults and
give the normalized form whose fingerprint a plan records. The types and bounds of the
fields are ``spec_fields.py``'s; the names code outside the package imports from here
are re-exported, so their paths stay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from planner.errors import SpecError, shown
from planner.field_errors import problem_line
from planner.files import MAX_SPEC_BYTES, read_text
from planner.parsing import YamlRefused, gc_paused, parse_yaml
from planner.spec_fields import (
    DTYPE_BYTES,
    INT32_MAX,
    INT64_MAX,
    MAX_HOTNESS,
    SIZE_FIELDS,
    Bandwidth,
    Combiner,
    DType,
    Elements,
    Initializer,
    Name,
    Objective,
    Offload,
    RowReduction,
    Strategy,
    WorldSize,
)
from planner.spec_fields import MAX_NAME_LENGTH as MAX_NAME_LENGTH  # re-exported
from planner.spec_fields import MAX_WORLD_SIZE as MAX_WORLD_SIZE  # re-exported
from planner.spec_fields import STRATEGIES as STRATEGIES  # re-exported
from planner.spec_fields import summing_hosts as summing_hosts  # re-exported
from planner.units import OPTIMIZER_SLOTS, Optimizer, parse_size


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TableSpec(_Frozen):
    """One embedding table: ``rows`` ids, each looked up as a ``width``-wide vector."""

    name: Name
    rows: int = Field(
        gt=0,
        strict=True,
        description="Number of rows (the vocabulary size); ids are int64, so at most 2^63 - 1.",
    )
    width: int = Field(
        gt=0, strict=True, description="Embedding width (columns); at most 2^31 - 1."
    )
    combiner: Combiner = Field(
        None, description="null: one id per sample; sum or mean: reduce multi-hot ids."
    )
    dtype: DType = Field("float32", description="Storage type of the weights.")
    initializer: Initializer = Field(
        "uniform",
        description="Keras initializer identifier or {class_name, config}; tables are only "
        "fused with tables of the same initializer.",
    )

    @field_validator("rows")
    @classmethod
    def _rows_are_int64_ids(cls, rows: int) -> int:
        if rows > INT64_MAX:
            raise ValueError("more rows than int64 ids can number (2^63 - 1)")
        return rows

    @field_validator("width")
    @classmethod
    def _width_fits_int32(cls, width: int) -> int:
        if width > INT32_MAX:
            raise ValueError("wider than 2^31 - 1 columns, more than 32-bit offsets address")
        return width

    @model_validator(mode="after")
    def _bytes_fit_int64(self) -> TableSpec:
        if self.elements * self.itemsize > INT64_MAX:
            raise ValueError(
                f"{self.rows:,} rows x {self.width:,} columns x {self.itemsize} bytes do not fit "
                "a 64-bit byte count; check rows and width"
            )
        return self

    @property
    def elements(self) -> int:
        return self.rows * self.width

    @property
    def itemsize(self) -> int:
        """Bytes per weight element."""
        return DTYPE_BYTES[self.dtype]


class InputSpec(_Frozen):
    """One input feature: a column of ids read from ``table``."""

    name: Name
    table: Name
    hotness: int = Field(
        1, gt=0, strict=True, description="Ids per sample (1 = one-hot); at most 65,536."
    )

    @field_validator("hotness")
    @classmethod
    def _hotness_bound(cls, hotness: int) -> int:
        if hotness > MAX_HOTNESS:
            raise ValueError(
                f"more than {MAX_HOTNESS:,} ids per sample; a step's ids (hotness x batch) "
                "must stay below 2^31 for the lookup kernels' 32-bit offsets"
            )
        return hotness


class Spec(_Frozen):
    """A whole model: the tables, their inputs, and how to place them."""

    world_size: WorldSize
    strategy: Strategy = "basic"
    column_slice_threshold: Elements | None = Field(
        None,
        description="Largest elements per column slice; null = automatic when there are "
        "fewer table-parallel tables than ranks.",
    )
    row_slice_threshold: Elements | None = Field(
        None,
        description="Tables with at least this many elements are row-sliced; null or 0 = off.",
    )
    data_parallel_threshold: Elements | None = Field(
        None,
        description="Tables with at most this many elements are data-parallel; null or 0 = off.",
    )
    dp_input: bool = Field(True, strict=True, description="false = inputs arrive model-parallel.")
    optimizer: Optimizer = Field(
        "sgd", description="Training optimizer; its state per weight counts in each rank's bytes."
    )
    device_memory: int | None = Field(
        None,
        gt=0,
        le=INT64_MAX,
        description="Memory per GPU in bytes, or a size such as 80GiB or 80GB; a plan with a "
        "rank over it (less the reserve) is refused.",
    )
    memory_reserve: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Fraction of device_memory kept for everything but weights and optimizer "
        "state (activations, gradients, workspace).",
    )
    global_batch_size: int | None = Field(
        None,
        gt=0,
        le=INT32_MAX,
        strict=True,
        description="Samples per step over all ranks; enables the communication estimate.",
    )
    id_bytes: Literal[4, 8] = Field(8, description="Bytes per id sent: 8 (int64) or 4 (int32).")
    compute_dtype: DType = Field("float32", description="Type of the embeddings exchanged.")
    alltoall_bandwidth: Bandwidth = Field(
        25.0, description="GB/s a rank sends (and receives) in an all-to-all."
    )
    allreduce_bandwidth: Bandwidth = Field(
        25.0,
        description="GB/s a rank sends (and receives) in a ring allreduce, allgather or "
        "reduce-scatter.",
    )
    objective: Objective | None = Field(None, description="What auto optimises.")
    gpus_per_host: int = Field(8, ge=1, le=INT64_MAX, strict=True, description="Ranks per host.")
    intra_host_bandwidth: Bandwidth = Field(200.0, description="GB/s within a host.")
    memory_bandwidth: Bandwidth = Field(900.0, description="GB/s of device memory.")
    row_reduction: RowReduction | None = Field(
        None,
        description="Row-sliced partial sums: sent by each holder to every rank (direct), or "
        "summed within each host of gpus_per_host ranks first (host). null or auto = direct, "
        "except that auto takes host where its estimate is faster.",
    )
    column_multiple: int = Field(4, ge=1, le=INT64_MAX, strict=True, description="auto's cut unit.")
    gpu_embedding_size: Elements | None = Field(
        None,
        description="Elements of table-parallel pieces each rank keeps on its GPU; the "
        "largest pieces beyond it live in host memory (upstream's rule; implies offload: "
        "upstream). null = no such limit.",
    )
    offload: Offload = Field(
        "none",
        description="Which table-parallel pieces live in host memory: none; upstream "
        "(upstream's rule with gpu_embedding_size); auto (the fewest bytes that make each "
        "rank fit device_memory). Default: upstream when gpu_embedding_size is set, else none.",
    )
    host_memory: int | None = Field(
        None,
        gt=0,
        le=INT64_MAX,
        description="Host memory per rank for offloaded pieces, in bytes or a size such as "
        "128GiB; a plan with a rank over it is refused. null = not checked.",
    )
    tables: list[TableSpec] = Field(min_length=1)
    inputs: list[InputSpec] | None = Field(
        None,
        min_length=1,
        description="Default: one input per table, named after it; at least one when given.",
    )

    @field_validator(*SIZE_FIELDS, mode="before")
    @classmethod
    def _parse_memory_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, (str, bool)) else value

    @field_validator("row_reduction", mode="before")
    @classmethod
    def _left_to_auto(cls, value: Any) -> Any:
        """``auto`` means what leaving the key out means (an option can undo a spec's)."""
        if value is None or value == "auto" or value in get_args(RowReduction):
            return None if value == "auto" else value
        raise ValueError("Input should be 'direct', 'host' or 'auto'")

    @model_validator(mode="before")
    @classmethod
    def _default_offload(cls, data: Any) -> Any:
        """``gpu_embedding_size`` alone asks for upstream's rule, as it does upstream."""
        if isinstance(data, dict) and data.get("offload") is None:
            upstream = data.get("gpu_embedding_size") is not None
            data = {**data, "offload": "upstream" if upstream else "none"}
        return data

    @model_validator(mode="after")
    def _check_offload(self) -> Spec:
        if self.offload == "upstream" and self.gpu_embedding_size is None:
            raise ValueError(
                "offload: upstream keeps gpu_embedding_size elements per rank on the GPU; "
                "set gpu_embedding_size, or use offload: auto with device_memory"
            )
        if self.offload != "upstream" and self.gpu_embedding_size is not None:
            raise ValueError(
                f"gpu_embedding_size: it is upstream's offload rule, but offload is "
                f"{self.offload}; remove gpu_embedding_size or set offload: upstream"
            )
        if self.offload == "auto" and self.device_memory is None:
            raise ValueError(
                "offload: auto moves to host memory what does not fit device_memory; "
                "set device_memory"
            )
        return self

    @model_validator(mode="after")
    def _check_hosts(self) -> Spec:
        several = self.world_size > self.gpus_per_host
        if self.row_reduction == "host" and several and self.world_size % self.gpus_per_host:
            raise ValueError(
                f"row_reduction: host sums within hosts of gpus_per_host "
                f"({self.gpus_per_host}) ranks, which {self.world_size} ranks do not fill "
                f"evenly; use a world_size that is a multiple of gpus_per_host, or "
                f"row_reduction: direct"
            )
        return self

    @model_validator(mode="after")
    def _check_batch(self) -> Spec:
        if self.global_batch_size is not None and self.global_batch_size % self.world_size:
            raise ValueError(
                f"global_batch_size: {self.global_batch_size} samples do not split evenly "
                f"over {self.world_size} ranks; use a multiple of world_size"
            )
        return self

    @model_validator(mode="after")
    def _check_sizes(self) -> Spec:
        """Every count a plan records fits 64 bits, and a step's ids 32-bit offsets."""
        state = 1 + OPTIMIZER_SLOTS[self.optimizer]
        held = sum(t.elements * t.itemsize for t in self.tables) * state
        if held > INT64_MAX:
            raise ValueError(
                f"tables: {held:,} bytes with optimizer state, more than a 64-bit count; "
                "check the tables' rows and widths"
            )
        batch = self.global_batch_size
        if batch is None:
            return self
        hotness = (
            [1] * len(self.tables) if self.inputs is None else [i.hotness for i in self.inputs]
        )
        for index, ids in enumerate(hotness):
            if ids * batch > INT32_MAX:
                raise ValueError(
                    f"inputs[{index}].hotness: {ids:,} ids per sample x "
                    f"global_batch_size {batch:,} is {ids * batch:,} ids a step, past "
                    "the lookup kernels' 32-bit offsets (2^31 - 1); lower one of them"
                )
        # a bound on any rank's bytes per step, times the ranks: ids (8 bytes at most) and
        # embeddings out, back and their gradients (4 bytes at most), replicas' gradients
        widest = max(t.width for t in self.tables)
        per_sample = 8 * sum(hotness) + 12 * widest * len(hotness)
        traffic = self.world_size * (batch * per_sample + 2 * held)
        if traffic > INT64_MAX:
            raise ValueError(
                "global_batch_size: the estimated traffic per step does not fit a 64-bit "
                "byte count; lower global_batch_size"
            )
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Spec:
        _reject_duplicates("tables", [t.name for t in self.tables])
        if self.inputs is None:
            return self
        _reject_duplicates("inputs", [i.name for i in self.inputs])
        tables = {t.name: t for t in self.tables}
        for index, inp in enumerate(self.inputs):
            table = tables.get(inp.table)
            if table is None:
                raise ValueError(
                    f"inputs[{index}].table: no table named {inp.table!r}; "
                    f"declare it under tables or fix the name"
                )
            if inp.hotness > 1 and table.combiner is None:
                raise ValueError(
                    f"inputs[{index}].hotness: {inp.hotness} ids per sample need a combiner; "
                    f"set combiner: sum or mean on table {table.name!r}"
                )
        return self

    def resolved_inputs(self) -> list[InputSpec]:
        """The inputs, with the default of one one-hot input per table filled in."""
        if self.inputs is not None:
            return list(self.inputs)
        return [InputSpec(name=t.name, table=t.name) for t in self.tables]

    def resolved_objective(self) -> Objective:
        """The objective in effect: time when a device memory bounds the plans, else memory."""
        return self.objective or ("time" if self.device_memory is not None else "memory")

    def normalized(self) -> Spec:
        """The same spec with every default written out, so equal specs compare equal."""
        return self.model_copy(update={"inputs": self.resolved_inputs()})

    def fingerprint(self) -> str:
        """sha256 of the normalized spec's canonical JSON."""
        data = self.normalized().model_dump(mode="json")
        for key in COST_FIELDS:  # at their defaults they leave older fingerprints unchanged
            if data[key] == Spec.model_fields[key].default:
                del data[key]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# Fields that describe training, the cluster and CPU offload; they were added after the
# first plans, so they enter the fingerprint only when not at their default. A plan
# records each in its parameters.
COST_FIELDS: tuple[str, ...] = (
    "optimizer",
    "device_memory",
    "memory_reserve",
    "global_batch_size",
    "id_bytes",
    "compute_dtype",
    "alltoall_bandwidth",
    "allreduce_bandwidth",
    *("objective", "gpus_per_host", "intra_host_bandwidth", "memory_bandwidth"),
    "column_multiple",
    "row_reduction",
    # CPU offload (README, "CPU offload")
    "gpu_embedding_size",
    "offload",
    "host_memory",
)


# The settings ``planner plan``, ``validate`` and ``compare`` also take as options.
OPTION_FIELDS: tuple[str, ...] = (
    *("world_size", "strategy", "column_slice_threshold", "row_slice_threshold"),
    *("data_parallel_threshold", *COST_FIELDS),
)


def _reject_duplicates(field: str, names: list[str]) -> None:
    first_use: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first_use:
            raise ValueError(
                f"{field}[{index}].name: {name!r} is already used by "
                f"{field}[{first_use[name]}]; names must be unique"
            )
        first_use[name] = index


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a YAML spec; ``overrides`` (e.g. from the CLI) replace file values.

    Raises SpecError with a one-line message naming the file, the field and the fix.
    """
    path = Path(path)
    name = shown(str(path))
    text = read_text(path, MAX_SPEC_BYTES, "a YAML spec", "spec", SpecError)
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: {_yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise SpecError(
            f"{name}: expected a mapping with world_size, strategy and tables at the top"
        )
    if "format_version" in raw and "shards" in raw:
        raise SpecError(
            f"{name}: this is a plan, not a spec; planner plan reads a tables YAML file "
            "(see the plan with planner show)"
        )
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    raw.update(given)
    try:
        with gc_paused():
            return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problem_line(exc, name, given, Spec)) from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML (or our limits) found, and the line it was on."""
    mark = getattr(exc, "problem_mark", None)
    problem = shown(str(getattr(exc, "problem", None) or "not valid YAML"))
    if isinstance(exc, YamlRefused):
        return f"line {mark.line + 1}: {problem}" if mark is not None else problem
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def spec_from_dict(
    raw: dict[str, Any], source: str = "<spec>", options: Collection[str] = ()
) -> Spec:
    """Validate an already-parsed spec, reporting errors against ``source``, or against the
    option for a value among ``options`` (the keys whose values came from options)."""
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problem_line(exc, source, options, Spec)) from exc
