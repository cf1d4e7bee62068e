"""A plan's parameters: the settings its placement was made with, as resolved and as the
spec wrote them. Part of the plan file's schema (``planner.plan``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from planner.plan_parts import Int64, _Frozen, left_out_at
from planner.spec_fields import (
    INT32_MAX,
    INT64_MAX,
    Bandwidth,
    DType,
    Objective,
    Offload,
    RowReduction,
    Strategy,
)
from planner.units import Optimizer


def _no_default(schema: dict[str, Any]) -> None:
    """A field whose absence means something other than its default (see its text)."""
    schema.pop("default", None)


class Parameters(_Frozen):
    """The placement parameters as resolved: what the planner actually used."""

    requested_strategy: Strategy
    column_slice_threshold: Int64 | None = Field(
        description="Elements per column slice at most; 0 slices every table as far as "
        "the world size and width allow; null = no column slicing."
    )
    column_slice_threshold_source: Literal["spec", "automatic", "auto", "none"]
    row_slice_threshold: Int64 | None = Field(description="In effect (null = off).")
    data_parallel_threshold: Int64 | None = Field(description="In effect (null = off).")
    requested_column_slice_threshold: Int64 | None = Field(
        None, description="As written in the spec (null = automatic)."
    )
    requested_row_slice_threshold: Int64 | None = Field(
        None, description="As written in the spec (off with one rank or dp_input false)."
    )
    requested_data_parallel_threshold: Int64 | None = Field(
        None, description="As written in the spec (off with one rank or dp_input false)."
    )
    dp_input: bool
    optimizer: Optimizer = "sgd"
    optimizer_slots: Int64 = Field(0, description="Optimizer state values per weight element.")
    device_memory: int | None = Field(
        None, gt=0, le=INT64_MAX, description="Bytes per GPU (null = not checked)."
    )
    memory_reserve: float = Field(
        0.0, ge=0, lt=1, description="Fraction of device_memory kept free."
    )
    global_batch_size: int | None = Field(
        None,
        gt=0,
        le=INT32_MAX,
        description="Samples per step over all ranks (null = no communication estimate); "
        "bounded as in the spec, so that the estimates' counts fit 64 bits.",
    )
    id_bytes: Literal[4, 8] = Field(8, description="Bytes per id sent.")
    compute_dtype: DType = Field("float32", description="Type of the embeddings exchanged.")
    alltoall_bandwidth: Bandwidth = Field(25.0, description="GB/s per rank in an all-to-all.")
    allreduce_bandwidth: Bandwidth = Field(
        25.0, description="GB/s per rank in ring allreduce, allgather and reduce-scatter."
    )
    objective: Objective | None = Field(None, description="As written (null = automatic).")
    gpus_per_host: int = Field(8, ge=1, le=INT64_MAX, description="Ranks per host.")
    intra_host_bandwidth: Bandwidth = Field(200.0, description="GB/s per rank within a host.")
    memory_bandwidth: Bandwidth = Field(900.0, description="GB/s of device memory.")
    column_multiple: int = Field(
        4, ge=1, le=INT64_MAX, description="auto's column pieces: multiples of this."
    )
    row_reduction: RowReduction = Field(
        "direct",
        description="Row-sliced partial sums: sent by each holder to every rank (direct), "
        "or summed within each host first (host). What the runtime does.",
        exclude_if=left_out_at("direct"),
    )
    requested_row_reduction: RowReduction | None = Field(
        None,
        description="As written in the spec (null = left to the planner: direct, or host "
        "where auto estimates it faster). Left out of the file where "
        "row_reduction implies it: host written as host, direct not written at all.",
        json_schema_extra=_no_default,
    )
    gpu_embedding_size: int | None = Field(
        None,
        ge=0, le=INT64_MAX,
        description="Elements of table-parallel pieces a rank keeps on its GPU under "
        "upstream's offload rule (null = not used).",
        exclude_if=left_out_at(None),
    )
    offload: Offload = Field(
        "none",
        description="Rule that chose the pieces in host memory: none, upstream or auto.",
        exclude_if=left_out_at("none"),
    )
    host_memory: int | None = Field(
        None,
        gt=0, le=INT64_MAX,
        description="Host bytes per rank for offloaded pieces (null = not checked).",
        exclude_if=left_out_at(None),
    )


    @model_validator(mode="before")
    @classmethod
    def _request_left_out(cls, data: Any) -> Any:
        """A file without ``requested_row_reduction`` (every plan before ``auto`` could
        choose the reduction, and every plan since where the choice was the spec's)."""
        if isinstance(data, dict) and "requested_row_reduction" not in data:
            written = data.get("row_reduction", "direct")
            return {**data, "requested_row_reduction": _implied_request(written)}
        return data

    @model_serializer(mode="wrap")
    def _leave_out_implied_request(self, handler: SerializerFunctionWrapHandler):
        """Plans keep their bytes unless ``auto`` chose the reduction, or the spec wrote
        ``direct``: only then does the file say what the spec asked. (No return
        annotation: pydantic would publish it as the schema of the parameters.)"""
        data = handler(self)
        if self.requested_row_reduction == _implied_request(self.row_reduction):
            data.pop("requested_row_reduction", None)
        return data


def _implied_request(row_reduction: object) -> RowReduction | None:
    """The spec's ``row_reduction`` a plan implies when it does not record it."""
    return "host" if row_reduction == "host" else None
