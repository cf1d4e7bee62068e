"""The words a spec's and a plan's fields are made of: bounds, names, strategies,
dtypes, bandwidths, with what each accepts.

Kept apart from the spec's models (``spec.py``) because the plan's models, the costs
and the runtime use them too, without needing a spec.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field

from planner.initializers import check_initializer

# Bounds with a meaning: ids and byte counts are 64-bit, and the lookup kernels address a
# step's ids and a row's columns with 32-bit offsets. The world size bound keeps planning
# and the plan file within seconds and megabytes (README, "Limits").
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_WORLD_SIZE = 16_384
MAX_HOTNESS = 65_536
MAX_NAME_LENGTH = 256


def _printable_name(name: str) -> str:
    """Names reach previews, error lines and variable names: printable, not padded."""
    if not name.isprintable():
        at, char = next((i, c) for i, c in enumerate(name) if not c.isprintable())
        raise ValueError(
            f"has a character that does not print ({char!r} at position {at}); "
            "use printable characters only"
        )
    if name != name.strip():
        raise ValueError("begins or ends with a space; remove it")
    return name


def _world_size_bound(world_size: int) -> int:
    if world_size > MAX_WORLD_SIZE:
        raise ValueError(
            f"more than {MAX_WORLD_SIZE:,} ranks, the most this planner plans "
            "(see Limits in the README)"
        )
    return world_size


WorldSize = Annotated[
    int,
    Field(ge=1, strict=True, description=f"Number of ranks (GPUs), at most {MAX_WORLD_SIZE:,}."),
    AfterValidator(_world_size_bound),
]
Name = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_printable_name)
]
Strategy = Literal["basic", "memory_balanced", "memory_optimized", "auto"]
Combiner = Literal["sum", "mean"] | None
DType = Literal["float32", "float16", "bfloat16"]
Initializer = Annotated[str | dict[str, Any], BeforeValidator(check_initializer)]
Offload = Literal["none", "upstream", "auto"]
Elements = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]
Bandwidth = Annotated[float, Field(ge=1e-9, le=1e9)]  # a byte to an exabyte per second
Objective = Literal["time", "memory"]
RowReduction = Literal["direct", "host"]

STRATEGIES: tuple[str, ...] = get_args(Strategy)
SIZE_FIELDS = ("device_memory", "host_memory")  # bytes, or a size such as 80GiB


def summing_hosts(row_reduction: str | None, world_size: int, gpus_per_host: int) -> int:
    """Hosts whose ranks add up row-sliced partial sums among themselves before sending
    them on (``row_reduction: host`` over several hosts); 0 when each holder sends its
    own to every rank. On one host the two are the same exchange, and a host of one
    rank has nothing to add up. Hosts that do not fill evenly are refused in specs and
    plans (0 here)."""
    if row_reduction != "host" or world_size <= gpus_per_host or gpus_per_host == 1:
        return 0
    if world_size % gpus_per_host:
        return 0
    return world_size // gpus_per_host


DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}
