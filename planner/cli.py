"""``planner``: each command parses its arguments, calls the library, and prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click

from planner.checkpoint.cli import checkpoint
from planner.compare import compare as compare_plans
from planner.compare import parse_strategies, parse_world_sizes
from planner.compare import render as render_comparison
from planner.diff import diff_plans
from planner.diff import render as render_diff
from planner.errors import PlannerError
from planner.memory import OPTIMIZERS, capacity_lines
from planner.plan import Plan, load_plan, plan_json_schema, save_plan
from planner.planning import make_plan
from planner.preview import DEFAULT_SHARD_LIMIT, FORMATS, render
from planner.spec import STRATEGIES, DType, Spec, load_spec
from planner.validation import plan_problems, reference_problems, spec_problems


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit code 2, nothing written."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def _fail_cleanly(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except PlannerError as exc:
        raise InputError(str(exc)) from exc


class CapacityExceeded(click.ClickException):
    """The plan does not fit the device memory: one line per rank over, exit code 3."""

    exit_code = 3

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


def _apply(options: list[Callable[[Callable], Callable]], command: Callable) -> Callable:
    for option in reversed(options):
        command = option(command)
    return command


def _apply_options(options: list[Callable[[Callable], Callable]]) -> Callable:
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
        help="Memory per GPU, e.g. 80GiB or 80GB; a plan that does not fit exits with code 3.",
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
        click.option("--strategy", type=click.Choice(STRATEGIES), help="Placement strategy."),
        *THRESHOLD_OPTIONS,
        *COST_OPTIONS,
    ]
    return _apply(options, command)


def _load_spec(spec_path: str, overrides: dict[str, Any]) -> Spec:
    return _fail_cleanly(lambda: load_spec(spec_path, overrides))


def _format_option(command: Callable) -> Callable:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Preview format.",
    )(command)


def _shards_option(command: Callable) -> Callable:
    return click.option(
        "--shards/--no-shards",
        "list_shards",
        default=None,
        help=f"List every shard (default: only when there are at most {DEFAULT_SHARD_LIMIT}).",
    )(command)


def _shard_limit(list_shards: bool | None) -> int | None:
    if list_shards is None:
        return DEFAULT_SHARD_LIMIT
    return None if list_shards else -1


class OneLineErrors(click.Group):
    """A usage error (bad option value, unknown command) is one line, like every other error.

    Click's default prints the usage and a hint around it; scripts and CI logs read better
    when every bad input is a single ``Error: ...`` line with exit code 2.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise InputError(exc.format_message()) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise InputError(exc.format_message()) from exc


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Plan where recommender embedding tables live on N GPUs, once, as a file to commit."""


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Where to write the plan (default: SPEC's name with .plan.json, in this folder).",
)
@spec_options
@_format_option
@_shards_option
def plan(
    spec_path: str, output: str | None, fmt: str, list_shards: bool | None, **overrides: Any
) -> None:
    """Plan SPEC (a tables YAML file): print the layout and write the plan JSON."""
    spec = _load_spec(spec_path, overrides)
    result = _fail_cleanly(lambda: make_plan(spec))
    target = Path(output) if output else Path(Path(spec_path).stem + ".plan.json")
    if not target.parent.is_dir():
        raise InputError(f"{target}: folder {target.parent} does not exist; create it first")
    overflow = capacity_lines(result)
    if overflow:
        raise CapacityExceeded("\n".join(overflow))
    _fail_cleanly(lambda: save_plan(result, target))
    click.echo(render(result, fmt, _shard_limit(list_shards)))
    click.echo(f"wrote {target}", err=fmt == "json")


@main.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@_format_option
@_shards_option
def show(plan_path: str, fmt: str, list_shards: bool | None) -> None:
    """Print the layout of a saved plan."""
    saved = _load_whole_plan(plan_path)
    click.echo(render(saved, fmt, _shard_limit(list_shards)))


def _load_whole_plan(plan_path: str) -> Plan:
    """A saved plan whose ranks, names and indices all refer to something that exists."""
    saved: Plan = _fail_cleanly(lambda: load_plan(plan_path))
    broken = reference_problems(saved)
    if broken:
        raise InputError(f"{plan_path}: {broken[0]}; run planner validate for every problem")
    return saved


@main.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Also check the plan was made from this spec (with the same overrides).",
)
@spec_options
def validate(plan_path: str, spec_path: str | None, **overrides: Any) -> None:
    """Check a plan: schema, every element placed exactly once, parts agree, spec matches."""
    saved: Plan = _fail_cleanly(lambda: load_plan(plan_path))
    problems = plan_problems(saved)
    if spec_path is not None:
        problems += spec_problems(saved, _load_spec(spec_path, overrides))
    elif any(value is not None for value in overrides.values()):
        raise InputError("the --world-size/--strategy/threshold options need --spec")
    if problems:
        for problem in problems:
            click.echo(f"{plan_path}: {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"{plan_path}: ok ({saved.world_size} ranks, {len(saved.shards)} shards)")


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--world-size",
    "world_sizes",
    help="World sizes separated by commas, e.g. 8,16,32 (default: the spec's).",
)
@click.option(
    "--strategy",
    "strategies",
    default="all",
    show_default=True,
    help="all, or strategies separated by commas.",
)
@_apply_options([*THRESHOLD_OPTIONS, *COST_OPTIONS])
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
def compare(
    spec_path: str, world_sizes: str | None, strategies: str, fmt: str, **overrides: Any
) -> None:
    """Plan SPEC for each world size and strategy; print one row per combination.

    Rows show the largest and mean rank bytes, imbalance, shards, and with
    --global-batch-size the traffic per rank and step time, with --device-memory
    whether the plan fits. Nothing is written.
    """
    spec = _load_spec(spec_path, overrides)
    try:
        sizes = parse_world_sizes(world_sizes) if world_sizes else [spec.world_size]
        names = parse_strategies(strategies)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    rows = _fail_cleanly(lambda: compare_plans(spec, sizes, names, source=spec_path))
    click.echo(render_comparison(rows, fmt))


@main.command()
@click.argument("old_path", metavar="OLD", type=click.Path(dir_okay=False))
@click.argument("new_path", metavar="NEW", type=click.Path(dir_okay=False))
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when the plans differ (0 when they are the same).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def diff(old_path: str, new_path: str, exit_code: bool, fmt: str) -> None:
    """What moved from plan OLD to plan NEW: the summary first, then each change."""
    old, new = _load_whole_plan(old_path), _load_whole_plan(new_path)
    result = diff_plans(old, new)
    click.echo(render_diff(result, old, new, fmt))
    if exit_code and result.changed:
        raise SystemExit(1)


@main.command()
def schema() -> None:
    """Print the plan file's JSON Schema."""
    click.echo(json.dumps(plan_json_schema(), indent=2))


main.add_command(checkpoint)

if __name__ == "__main__":
    main()
