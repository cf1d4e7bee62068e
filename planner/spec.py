"""The table spec: what a user writes in ``tables.yaml``.

The pydantic models here are the schema: they validate the file, fill defaults and
give the normalized form whose fingerprint a plan records.
"""

from __future__ import annotations

import hashlib
import json
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

from planner.errors import SpecError
from planner.units import Optimizer, parse_size

Strategy = Literal["basic", "memory_balanced", "memory_optimized", "auto"]
Combiner = Literal["sum", "mean"] | None
DType = Literal["float32", "float16", "bfloat16"]
Initializer = str | dict[str, Any]
Offload = Literal["none", "upstream", "auto"]

# libyaml's loader when available: ten times faster on specs with thousands of tables.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STRATEGIES: tuple[str, ...] = get_args(Strategy)
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TableSpec(_Frozen):
    """One embedding table: ``rows`` ids, each looked up as a ``width``-wide vector."""

    name: str = Field(min_length=1)
    rows: int = Field(gt=0, strict=True, description="Number of rows (the vocabulary size).")
    width: int = Field(gt=0, strict=True, description="Embedding width (columns).")
    combiner: Combiner = Field(
        None, description="null: one id per sample; sum or mean: reduce multi-hot ids."
    )
    dtype: DType = Field("float32", description="Storage type of the weights.")
    initializer: Initializer = Field(
        "uniform",
        description="Keras initializer identifier or {class_name, config}; tables are only "
        "fused with tables of the same initializer.",
    )

    @property
    def elements(self) -> int:
        return self.rows * self.width

    @property
    def itemsize(self) -> int:
        """Bytes per weight element."""
        return DTYPE_BYTES[self.dtype]


class InputSpec(_Frozen):
    """One input feature: a column of ids read from ``table``."""

    name: str = Field(min_length=1)
    table: str = Field(min_length=1)
    hotness: int = Field(1, gt=0, strict=True, description="Ids per sample (1 = one-hot).")


class Spec(_Frozen):
    """A whole model: the tables, their inputs, and how to place them."""

    world_size: int = Field(ge=1, strict=True, description="Number of ranks (GPUs).")
    strategy: Strategy = "basic"
    column_slice_threshold: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="Largest elements per column slice; null = automatic when there are "
        "fewer table-parallel tables than ranks.",
    )
    row_slice_threshold: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="Tables with at least this many elements are row-sliced; null or 0 = off.",
    )
    data_parallel_threshold: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="Tables with at most this many elements are data-parallel; null or 0 = off.",
    )
    dp_input: bool = Field(True, description="false = inputs arrive model-parallel.")
    optimizer: Optimizer = Field(
        "sgd", description="Training optimizer; its state per weight counts in each rank's bytes."
    )
    device_memory: int | None = Field(
        None,
        gt=0,
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
        strict=True,
        description="Samples per step over all ranks; enables the communication estimate.",
    )
    id_bytes: Literal[4, 8] = Field(8, description="Bytes per id sent: 8 (int64) or 4 (int32).")
    compute_dtype: DType = Field("float32", description="Type of the embeddings exchanged.")
    alltoall_bandwidth: float = Field(
        25.0, gt=0, description="GB/s a rank sends (and receives) in an all-to-all."
    )
    allreduce_bandwidth: float = Field(
        25.0,
        gt=0,
        description="GB/s a rank sends (and receives) in a ring allreduce, allgather or "
        "reduce-scatter.",
    )
    gpu_embedding_size: int | None = Field(
        None,
        ge=0,
        strict=True,
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
        description="Host memory per rank for offloaded pieces, in bytes or a size such as "
        "128GiB; a plan with a rank over it is refused. null = not checked.",
    )
    tables: list[TableSpec] = Field(min_length=1)
    inputs: list[InputSpec] | None = Field(
        None, description="Default: one input per table, named after it."
    )

    @field_validator("device_memory", "host_memory", mode="before")
    @classmethod
    def _parse_memory_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

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
    def _check_batch(self) -> Spec:
        if self.global_batch_size is not None and self.global_batch_size % self.world_size:
            raise ValueError(
                f"global_batch_size: {self.global_batch_size} samples do not split evenly "
                f"over {self.world_size} ranks; use a multiple of world_size"
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
    # CPU offload (README, "CPU offload")
    "gpu_embedding_size",
    "offload",
    "host_memory",
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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a YAML spec (not UTF-8 text)") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from exc
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: expected a mapping with world_size, strategy and tables at the top"
        )
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    raw.update(given)
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        field = exc.errors()[0]["loc"][:1]
        if field and field[0] in given:  # the value came from an option, not the file
            text = describe_validation_error(exc).removeprefix(f"{field[0]}: ")
            raise SpecError(f"--{str(field[0]).replace('_', '-')}: {text}") from exc
        raise SpecError(f"{path}: {describe_validation_error(exc)}") from exc


def spec_from_dict(raw: dict[str, Any], source: str = "<spec>") -> Spec:
    """Validate an already-parsed spec, reporting errors against ``source``."""
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first problem pydantic found: field path, what is wrong, value seen."""
    errors = exc.errors()
    first = errors[0]
    field = _format_location(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error" and not field:
        text = message
    elif first["type"] == "missing":
        text = f"{field}: required field is missing; add it"
    elif first["type"] == "extra_forbidden":
        text = f"{field}: unknown key; remove it or check its spelling"
    else:
        text = f"{field}: {message} (got {first['input']!r})"
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _format_location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text
