"""``planner``: each command parses its arguments, calls the library, and prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from planner.checkpoint.cli import checkpoint
from planner.cli_options import (
    COST_OPTIONS,
    THRESHOLD_OPTIONS,
    FilePath,
    apply_options,
    spec_options,
)
from planner.consistency import load_plan, plan_problems
from planner.errors import PlannerError, shown
from planner.exit_codes import COMMAND_EXIT_CODES, exit_codes_help
from planner.files import check_output, same_file
from planner.plan import Plan, plan_json_schema, read_plan
from planner.planning import make_plan
from planner.reports.capacity import capacity_report
from planner.reports.compare import compare as compare_plans
from planner.reports.compare import parse_strategies, parse_world_sizes
from planner.reports.compare import render as render_comparison
from planner.reports.diff import diff_plans
from planner.reports.diff import render as render_diff
from planner.reports.diff import summary as diff_summary
from planner.reports.html_report import diff_page, plan_page, save_report
from planner.reports.preview import (
    DEFAULT_RANKS,
    DEFAULT_SHARD_LIMIT,
    FORMATS,
    LIST_EVERY_RANK_UP_TO,
    TOP_RANKS,
    parse_ranks,
    render,
)
from planner.saving import plan_text, save_plan
from planner.spec import Spec, load_spec
from planner.spec_notes import unused_in_plan, unused_settings
from planner.validation import spec_problems

MAX_PROBLEMS_SHOWN = 50  # validate lists this many problems, then how many more


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit code 2, nothing written."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def _fail_cleanly(work: Callable[[], Any], spec_path: str | None = None) -> Any:
    """``work``, with a PlannerError as one line (exit 2); ``spec_path`` names the spec
    planned, for errors of the spec found only in planning (``TooManyShards``)."""
    try:
        return work()
    except PlannerError as exc:
        where = f"{shown(spec_path)}: " if spec_path is not None else ""
        raise InputError(f"{where}{exc}") from exc


def _blamed(spec_path: str, overrides: dict[str, Any]) -> str:
    """Where a spec's threshold that planning refuses came from: its option, or the file
    (the one setting planning itself can refuse: too many column slices)."""
    given = overrides.get("column_slice_threshold") is not None
    return "--column-slice-threshold" if given else spec_path


class CapacityExceeded(click.ClickException):
    """The plan does not fit the device memory: one line per rank over, exit code 3."""

    exit_code = 3

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


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


def _check_ranks(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if value != DEFAULT_RANKS:
        try:
            parse_ranks(value)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    return value


def _ranks_option(command: Callable) -> Callable:
    return click.option(
        "--ranks",
        default=DEFAULT_RANKS,
        callback=_check_ranks,
        metavar="all|none|'top N'",
        help=f"Which ranks get a row: every rank up to {LIST_EVERY_RANK_UP_TO} ranks, else the "
        f"{TOP_RANKS} largest and the smallest (JSON: every rank).",
    )(command)


def _shard_limit(list_shards: bool | None) -> int | None:
    if list_shards is None:
        return DEFAULT_SHARD_LIMIT
    return None if list_shards else -1


def _html_option(drawn: str) -> Callable[[Callable], Callable]:
    return click.option(
        "--html",
        type=FilePath(),
        help=f"Also write a self-contained HTML page with charts of {drawn}.",
    )


def _check_report_path(html: str | None, *inputs: str | Path) -> None:
    """Before any work: the report can be written, and overwrites no input."""
    if html is not None:
        _fail_cleanly(lambda: check_output(html, "--html", inputs))


def _write_report(page: str, html: str, to_stderr: bool) -> None:
    _fail_cleanly(lambda: save_report(page, html))
    click.echo(f"wrote {html}", err=to_stderr)


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
        except PlannerError as exc:  # raised late: a sealed plan's rank entry, first read
            raise InputError(str(exc)) from exc


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=exit_codes_help(),
)
def main() -> None:
    """Plan where recommender embedding tables live on N GPUs, once, as a file to commit."""


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["plan"]))
@click.argument("spec_path", metavar="SPEC", type=FilePath())
@click.option(
    "-o",
    "--output",
    type=FilePath(allow_dash=True),
    help="Where to write the plan (default: SPEC's name with .plan.json, in this folder); "
    "- writes it to standard output, alone, with no preview. Never the spec itself.",
)
@spec_options
@_format_option
@_shards_option
@_ranks_option
@_html_option("the plan")
def plan(
    spec_path: str,
    output: str | None,
    fmt: str,
    list_shards: bool | None,
    ranks: str,
    html: str | None,
    **overrides: Any,
) -> None:
    """Plan SPEC (a tables YAML file): print the layout and write the plan JSON.

    A plan that does not fit --device-memory is not written (exit 3); its --html report
    is, to show the ranks over the limit.
    """
    target = _output_path(spec_path, output)
    _check_report_path(html, spec_path, *((target,) if target else ()))
    spec = _load_spec(spec_path, overrides)
    for note in unused_settings(spec):
        click.echo(f"note: {note}", err=True)
    result = _fail_cleanly(lambda: make_plan(spec), _blamed(spec_path, overrides))
    for note in unused_in_plan(result):
        click.echo(f"note: {note}", err=True)
    capacity = capacity_report(result)
    if not capacity.fits:
        if html is not None:
            _write_report(plan_page(result, spec_path, capacity), html, to_stderr=True)
        if fmt == "json" and target is not None:
            click.echo(render(result, fmt, _shard_limit(list_shards), ranks, capacity))
        raise CapacityExceeded("\n".join(capacity.lines()))
    if target is None:  # standard output holds the plan alone
        click.echo(_fail_cleanly(lambda: plan_text(result, "standard output")), nl=False)
        if html is not None:
            _write_report(plan_page(result, spec_path), html, to_stderr=True)
        return
    _fail_cleanly(lambda: save_plan(result, target))
    click.echo(render(result, fmt, _shard_limit(list_shards), ranks, capacity))
    click.echo(f"wrote {shown(str(target))}", err=fmt == "json")
    if html is not None:
        _write_report(plan_page(result, spec_path), html, to_stderr=fmt == "json")


def _output_path(spec_path: str, output: str | None) -> Path | None:
    """Where the plan goes (None: standard output); never over the spec it is made from."""
    if output == "-":
        return None
    default = Path(spec_path).stem + ".plan.json"
    target = _fail_cleanly(lambda: check_output(output or default, "-o"))
    name = shown(str(target))
    if same_file(target, spec_path):
        raise InputError(
            f"{name}: is the spec {shown(spec_path)} itself; write the plan to another file "
            "(-o PLAN.json, or -o - for standard output)"
        )
    return target


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["show"]))
@click.argument("plan_path", metavar="PLAN", type=FilePath())
@_format_option
@_shards_option
@_ranks_option
@_html_option("the plan")
def show(plan_path: str, fmt: str, list_shards: bool | None, ranks: str, html: str | None) -> None:
    """Print the layout of a saved plan (and with --html, draw it); a plan that fails any
    of validate's checks is refused."""
    _check_report_path(html, plan_path)
    saved = _load_sound_plan(plan_path)
    click.echo(render(saved, fmt, _shard_limit(list_shards), ranks))
    if html is not None:
        _write_report(plan_page(saved, plan_path), html, to_stderr=fmt == "json")


def _load_sound_plan(plan_path: str) -> Plan:
    """A saved plan that passes every check validate makes (a sealed one: its schema,
    every rank entry's too, and its references), or one line saying why not."""
    return _fail_cleanly(lambda: load_plan(plan_path, every_rank=True))


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["validate"]))
@click.argument("plan_path", metavar="PLAN", type=FilePath())
@click.option(
    "--spec",
    "spec_path",
    type=FilePath(),
    help="Also check the plan was made from this spec (with the same overrides).",
)
@spec_options
def validate(plan_path: str, spec_path: str | None, **overrides: Any) -> None:
    """Check a plan: schema, every element placed exactly once, parts agree, costs and
    capacity follow, and with --spec that re-planning the spec gives this very plan."""
    saved: Plan = _fail_cleanly(lambda: read_plan(plan_path))
    if spec_path is None and any(value is not None for value in overrides.values()):
        raise InputError("the --world-size/--strategy/threshold options need --spec")
    spec = None if spec_path is None else _load_spec(spec_path, overrides)
    problems = plan_problems(saved)
    if spec_path is not None and spec is not None:
        problems += _fail_cleanly(
            lambda: spec_problems(saved, spec), _blamed(spec_path, overrides)
        )
    name = shown(plan_path)
    if problems:
        for problem in problems[:MAX_PROBLEMS_SHOWN]:
            click.echo(f"{name}: {problem}", err=True)
        if len(problems) > MAX_PROBLEMS_SHOWN:
            more = len(problems) - MAX_PROBLEMS_SHOWN
            click.echo(f"{name}: and {more:,} more problems", err=True)
        raise SystemExit(1)
    click.echo(f"{name}: ok ({saved.world_size} ranks, {len(saved.shards)} shards)")


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["compare"]))
@click.argument("spec_path", metavar="SPEC", type=FilePath())
@click.option(
    "--world-size",
    "world_sizes",
    help="World sizes separated by commas, e.g. 8,16,32, at most 32 of them (default: the spec's).",
)
@click.option(
    "--strategy",
    "strategies",
    default="all",
    show_default=True,
    help="all, or strategies separated by commas.",
)
@apply_options([*THRESHOLD_OPTIONS, *COST_OPTIONS])
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
    whether the plan fits (a report: plans that do not fit are rows, not an error;
    so is a size that would cut the tables into too many pieces to plan). Nothing is
    written.
    """
    try:
        sizes = parse_world_sizes(world_sizes) if world_sizes else None
        names = parse_strategies(strategies)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    overrides["world_size"] = sizes[0] if sizes else None  # then the spec need not set one
    spec = _load_spec(spec_path, overrides)
    options = [key for key, value in overrides.items() if value is not None]
    rows = _fail_cleanly(
        lambda: compare_plans(spec, sizes or [spec.world_size], names, spec_path, options)
    )
    click.echo(render_comparison(rows, fmt))


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["diff"]))
@click.argument("old_path", metavar="OLD", type=FilePath())
@click.argument("new_path", metavar="NEW", type=FilePath())
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when the plans differ (0 when they are the same).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="Output format (markdown: for the review of a plan change).",
)
@_html_option("both plans, side by side")
def diff(old_path: str, new_path: str, exit_code: bool, fmt: str, html: str | None) -> None:
    """What moved from plan OLD to plan NEW: the summary first, then each change.

    Both plans must pass validate's checks; a broken one is refused, not compared."""
    _check_report_path(html, old_path, new_path)
    old, new = _load_sound_plan(old_path), _load_sound_plan(new_path)
    result = diff_plans(old, new)
    click.echo(render_diff(result, old, new, fmt))
    if html is not None:
        page = diff_page(old, new, (old_path, new_path), diff_summary(result, old, new))
        _write_report(page, html, to_stderr=fmt == "json")
    if exit_code and result.changed:
        raise SystemExit(1)


@main.command(epilog=exit_codes_help(COMMAND_EXIT_CODES["schema"]))
def schema() -> None:
    """Print the plan file's JSON Schema."""
    click.echo(json.dumps(plan_json_schema(), indent=2))


checkpoint.epilog = exit_codes_help(COMMAND_EXIT_CODES["checkpoint"])
main.add_command(checkpoint)

if __name__ == "__main__":
    main()
