"""The options and argument types ``planner``'s commands share: the spec overrides (each
a spec field as an option) and file paths that refuse an empty name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import click

from planner.placement.registry import STRATEGY_NAMES
from planner.spec_fields import DType, Objective, Offload, RowReduction
from planner.units import OPTIMIZERS


class FilePath(click.Path):
    """A file to read or write; an empty name (which would read as the current folder)
    is refused by name."""

    def __init__(self, allow_dash: bool = False) -> None:
        super().__init__(dir_okay=False, allow_dash=allow_dash)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("an empty file name; name the file", param, ctx)
        return super().convert(value, param, ctx)


def _apply(options: list[Callable[[Callable], Callable]], command: Callable) -> Callable:
    for option in reversed(options):
        command = option(command)
    return command


def apply_options(options: list[Callable[[Callable], Callable]]) -> Callable:
    """A decorator applying ``options`` in the order listed (as ``--help`` shows them)."""
    return lambda command: _apply(options, command)


def _id_bytes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


COST_OPTIONS = [
    click.option(
        "--optimizer",
        type=click.Choice(OPTIMIZERS),
        help="Training optimizer; its state counts in each rank's bytes (default sgd).",
    ),
    click.option(
        "--device-memory",
        help="Memory per GPU, e.g. 80GiB or 80GB; a rank holding more on its GPU (less the "
        "reserve) does not fit.",
    ),
    click.option(
        "--memory-reserve",
        type=float,
        help="Fraction of --device-memory kept for activations and workspace (default 0).",
    ),
    click.option(
        "--global-batch-size",
        type=int,
        help="Samples per step over all ranks; adds the communication estimate.",
    ),
    click.option(
        "--id-bytes",
        type=click.Choice(["4", "8"]),
        callback=_id_bytes,
        help="Bytes per id sent: 8 (int64, default) or 4 (int32).",
    ),
    click.option(
        "--compute-dtype",
        type=click.Choice(get_args(DType)),
        help="Type of the embeddings exchanged (default float32).",
    ),
    click.option(
        "--alltoall-bandwidth",
        type=float,
        help="GB/s per rank in an all-to-all (default 25).",
    ),
    click.option(
        "--allreduce-bandwidth",
        type=float,
        help="GB/s per rank in allreduce, allgather, reduce-scatter (default 25).",
    ),
    click.option(
        "--objective",
        type=click.Choice(get_args(Objective)),
        help="What auto optimises: time (default with --device-memory) or memory.",
    ),
    click.option("--gpus-per-host", type=int, help="Ranks per host (default 8)."),
    click.option("--intra-host-bandwidth", type=float, help="GB/s within a host (default 200)."),
    click.option("--memory-bandwidth", type=float, help="GB/s of GPU memory (default 900)."),
    click.option("--column-multiple", type=int, help="auto's column pieces (default 4)."),
    click.option(
        "--row-reduction",
        type=click.Choice([*get_args(RowReduction), "auto"]),
        help="Row-sliced partial sums sent by each holder (direct) or summed within each "
        "host first (host); auto (or unset): direct, or host where auto estimates it faster.",
    ),
    click.option(
        "--gpu-embedding-size",
        type=int,
        help="Elements of table-parallel pieces kept per GPU; the largest beyond it go to "
        "host memory (upstream's rule; implies --offload upstream).",
    ),
    click.option(
        "--offload",
        type=click.Choice(get_args(Offload)),
        help="Pieces in host memory: none, upstream (with --gpu-embedding-size), or auto "
        "(the fewest bytes that fit --device-memory).",
    ),
    click.option(
        "--host-memory",
        help="Host memory per rank for offloaded pieces, e.g. 128GiB; a rank offloading more "
        "does not fit.",
    ),
]


THRESHOLD_OPTIONS = [
    click.option(
        "--column-slice-threshold",
        type=int,
        help="Elements per column slice at most (0 = slice as far as possible).",
    ),
    click.option("--row-slice-threshold", type=int, help="Row-slice tables this large (0 = off)."),
    click.option(
        "--data-parallel-threshold",
        type=int,
        help="Replicate tables this small on every rank (0 = off).",
    ),
]


def spec_options(command: Callable) -> Callable:
    """Options that override the spec file: placement, then memory and communication."""
    options = [
        click.option("--world-size", type=int, help="Number of ranks (GPUs)."),
        click.option("--strategy", type=click.Choice(STRATEGY_NAMES), help="Placement strategy."),
        *THRESHOLD_OPTIONS,
        *COST_OPTIONS,
    ]
    return _apply(options, command)
