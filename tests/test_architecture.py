"""The planner's stages depend downward only, and the strategy names agree everywhere.

docs/architecture.md describes the layers; these tests keep the code to them. Imports
are read with ``ast`` at any depth, so an import inside a function counts as much as
one at the top of a module.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import click
import pytest
from shared import SMALL

from planner import spec_from_dict
from planner.cli import main
from planner.placement.registry import PLACEMENTS, STRATEGY_NAMES
from planner.reports.compare import parse_strategies
from planner.spec_fields import STRATEGIES

PACKAGE = Path(__file__).resolve().parent.parent / "planner"

# Bottom first. A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, ...]] = [
    # vocabulary: what users write and the planner writes, and how such files are read
    (
        "planner.errors",
        "planner.units",
        "planner.files",
        "planner.parsing",
        "planner.initializers",
        "planner.jsonlines",
        "planner.field_errors",
        "planner.spec_fields",
        "planner.spec",
        "planner.spec_notes",
        "planner.plan_parts",
        "planner.plan_parameters",
        "planner.plan_ranks",
        "planner.seal",
        "planner.plan",
    ),
    ("planner.costs",),
    ("planner.placement",),
    ("planner.describe", "planner.planning"),  # a Placement written as a Plan
    ("planner.consistency", "planner.memory_checks"),  # a plan's checks and the checked loader
    ("planner.saving",),  # plans written checked and sealed
    ("planner.reports", "planner.checkpoint"),  # read plans (compare and capacity re-plan)
    ("planner.validation",),
    ("planner.cli", "planner.cli_options", "planner.exit_codes"),
    ("planner",),  # the public names, planner/__init__.py
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The index of the layer whose most specific prefix names ``module``."""
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found is not None, f"{module} is in no layer; add it to LAYERS"
    return found


def planner_imports(path: Path, modules: set[str]) -> set[str]:
    """The planner modules ``path`` imports, lazily or not (``from planner import x`` is
    an import of ``planner.x`` when that is a module, else of the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        module: planner_imports(path, modules) - {module} - _enclosing(module)
        for module, path in paths.items()
    }


def _enclosing(module: str) -> set[str]:
    """The packages above a module: importing one's own package is not an edge."""
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts))}


def test_no_module_imports_a_stage_above_its_own() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the module that imports it; reversed, each imports
        # the next
        pytest.fail(f"import cycle, each importing the next: {' -> '.join(exc.args[1][::-1])}")


def test_no_module_is_over_500_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}: {lines} lines"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := path.read_text(encoding="utf-8").count("\n")) > 500
    ]
    assert long == []


def test_the_registry_names_the_strategies_a_spec_accepts() -> None:
    # the spec's names are vocabulary (plans record them); the registry maps them to code
    assert STRATEGY_NAMES == STRATEGIES
    assert tuple(PLACEMENTS) == STRATEGIES


def test_the_cli_and_compare_offer_the_registry_strategies() -> None:
    choice = next(p for p in main.commands["plan"].params if p.name == "strategy")
    assert isinstance(choice.type, click.Choice)
    assert tuple(choice.type.choices) == STRATEGY_NAMES
    assert parse_strategies("all") == list(STRATEGY_NAMES)


@pytest.mark.parametrize("name", ["basic", "memory_balanced", "memory_optimized"])
def test_each_upstream_name_places_with_its_own_rule(name: str) -> None:
    spec = spec_from_dict({**SMALL, "strategy": name}).normalized()
    assert PLACEMENTS[name](spec).strategy == name
