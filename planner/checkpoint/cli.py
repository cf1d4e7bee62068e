"""``planner checkpoint``: verify, inspect, reshard and export checkpoints offline.

Numpy only: these run where the training job does not, on a laptop or in CI.
Commands parse and print; the work is in the modules they call.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.reshard import export_table, reshard
from planner.checkpoint.store import Checkpoint
from planner.checkpoint.summary import render, summarize
from planner.checkpoint.verify import verify as verify_checkpoint
from planner.consistency import load_plan
from planner.errors import PlannerError, shown


def _input_error(exc: PlannerError) -> click.UsageError:
    """Bad input is one ``Error: ...`` line and exit code 2, like every planner command."""
    return click.UsageError(str(exc))


def _named(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A path given as an empty string would read as the current folder: refused."""
    if value == "":
        raise click.BadParameter("an empty path; name it", param=param)
    return value


def _output_path(output: str) -> Path:
    """``-o``, refused before any work when its folder is missing, as ``planner plan -o``
    refuses it: a mistyped folder is more likely than one meant to be made. ``-`` is
    not standard output here (a checkpoint or an array is no stream to pipe): refused."""
    if output == "-":
        raise click.UsageError("-o -: these commands write files, not standard output; name one")
    target = Path(output)
    if not target.parent.is_dir():
        raise click.UsageError(
            f"{shown(output)}: folder {shown(str(target.parent))} does not exist; "
            "create it first"
        )
    return target


@click.group()
def checkpoint() -> None:
    """Check, describe, reshard and export sharded embedding checkpoints."""


@checkpoint.command()
@click.argument("path", metavar="CKPT", type=click.Path(file_okay=False), callback=_named)
def verify(path: str) -> None:
    """Check CKPT: complete, every file as recorded, every element of every table once.

    Exit 1 with one line per problem; exit 2 when CKPT has no readable manifest.
    """
    try:
        problems = verify_checkpoint(path)
        manifest = Checkpoint.open(path).manifest
    except CheckpointError as exc:
        raise _input_error(exc) from exc
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise SystemExit(1)
    size = sum(p.bytes for p in manifest.pieces) + sum(f.bytes for f in manifest.files)
    click.echo(
        f"{path}: ok ({len(manifest.tables)} tables, {len(manifest.pieces)} pieces, "
        f"{size} bytes, checksums match)"
    )


@checkpoint.command()
@click.argument("path", metavar="CKPT", type=click.Path(file_okay=False), callback=_named)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Output format.",
)
def inspect(path: str, fmt: str) -> None:
    """What CKPT holds: plan, optimizer state, bytes per table and per rank."""
    try:
        summary = summarize(Checkpoint.open(path))
    except CheckpointError as exc:
        raise _input_error(exc) from exc
    click.echo(json.dumps(summary, indent=2) if fmt == "json" else render(summary))


@checkpoint.command(name="reshard")
@click.argument("path", metavar="CKPT", type=click.Path(file_okay=False), callback=_named)
@click.option(
    "--plan", "plan_path", required=True, type=click.Path(dir_okay=False), callback=_named,
    help="The plan to cut the checkpoint for (same tables, any world size or strategy).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(), callback=_named,
    help="The new checkpoint directory: not yet there, in a folder that is, outside CKPT.",
)
def reshard_command(path: str, plan_path: str, output: str) -> None:
    """Rewrite CKPT for another plan of the same tables, with bounded memory."""
    target = _output_path(output)
    try:
        plan = load_plan(plan_path)
        manifest = reshard(path, plan, target, plan_source=plan_path)
    except PlannerError as exc:
        raise _input_error(exc) from exc
    click.echo(
        f"wrote {output}: {len(manifest.pieces)} pieces for {plan.world_size} ranks "
        f"({plan.strategy})"
    )


@checkpoint.command(name="export")
@click.argument("path", metavar="CKPT", type=click.Path(file_okay=False), callback=_named)
@click.option("--table", required=True, help="The table to export.")
@click.option(
    "--slot", default="weights", show_default=True,
    help="weights, or an optimizer slot (e.g. m, v, accumulator).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_named,
    help="The .npy file to write ([rows, width]; bfloat16 tables as float32), outside CKPT.",
)
def export_command(path: str, table: str, slot: str, output: str) -> None:
    """Write one table of CKPT as a plain .npy array, for serving or analysis."""
    target = _output_path(output)
    try:
        shape, dtype = export_table(path, table, target, slot=slot)
    except CheckpointError as exc:
        raise _input_error(exc) from exc
    click.echo(f"wrote {output}: {table} {slot}, {shape[0]} x {shape[1]} {dtype.name}")
