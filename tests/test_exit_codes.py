"""Exit codes: one table, printed by `planner --help`, each command's help and the README,
and true: every code a command lists is one it returns, and it returns no other.

Each command runs in situations chosen to reach each of its codes; the set of codes seen
must equal the set its help lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checkpoint_data import MIXED, global_arrays, plan_of, write
from click.testing import CliRunner
from shared import RICH

from planner.cli import main
from planner.exit_codes import COMMAND_EXIT_CODES, EXIT_CODES

README = Path(__file__).resolve().parent.parent / "README.md"


def run(*args: str) -> int:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """spec.yaml, its plan, a plan of another world size, a broken plan, a bad spec, and a
    checkpoint that verifies and one with a file missing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(json.dumps(RICH))
    assert run("plan", "spec.yaml", "-o", "plan.json") == 0
    assert run("plan", "spec.yaml", "-o", "four.json", "--world-size", "4") == 0
    data = json.loads((tmp_path / "plan.json").read_text())
    data["ranks"][0]["bytes"] += 1
    (tmp_path / "broken.json").write_text(json.dumps(data))
    (tmp_path / "bad.yaml").write_text("world_size: 0\n")
    (tmp_path / "text.txt").write_text("not a plan\n")
    plan = plan_of(MIXED, 2)
    for name in ("ckpt", "torn"):
        write(tmp_path / name, plan, global_arrays(plan))
    next((tmp_path / "torn").rglob("*.npy")).unlink()
    return tmp_path


# Each command's runs: the arguments, and the code that run must give.
RUNS: dict[str, list[tuple[tuple[str, ...], int]]] = {
    "plan": [
        (("spec.yaml", "-o", "out.json"), 0),
        (("bad.yaml",), 2),
        (("spec.yaml", "--device-memory", "100B"), 3),
    ],
    "show": [(("plan.json",), 0), (("broken.json",), 2), (("text.txt",), 2)],
    "validate": [
        (("plan.json",), 0),
        (("plan.json", "--spec", "spec.yaml"), 0),
        (("broken.json",), 1),
        (("four.json", "--spec", "spec.yaml"), 1),
        (("text.txt",), 2),
        (("plan.json", "--spec", "bad.yaml"), 2),
    ],
    "schema": [((), 0)],
    "compare": [
        (("spec.yaml", "--world-size", "2,4"), 0),
        (("spec.yaml", "--device-memory", "100B"), 0),  # a report: rows that do not fit
        (("bad.yaml",), 2),
    ],
    "checkpoint": [
        (("verify", "ckpt"), 0),
        (("verify", "torn"), 1),
        (("verify", "nowhere"), 2),
        (("inspect", "ckpt"), 0),
        (("reshard", "ckpt", "--plan", "broken.json", "-o", "out"), 2),
    ],
    "diff": [
        (("plan.json", "four.json"), 0),
        (("plan.json", "plan.json", "--exit-code"), 0),
        (("plan.json", "four.json", "--exit-code"), 1),
        (("plan.json", "broken.json"), 2),
    ],
}


@pytest.mark.parametrize("command", list(COMMAND_EXIT_CODES))
def test_each_command_returns_exactly_the_codes_it_lists(folder: Path, command: str) -> None:
    seen = set()
    for args, code in RUNS[command]:
        assert run(command, *args) == code, (command, args)
        seen.add(code)
    assert seen == set(COMMAND_EXIT_CODES[command])


def test_every_command_is_covered() -> None:
    assert set(RUNS) == set(COMMAND_EXIT_CODES) == set(main.commands)


@pytest.mark.parametrize("command", list(COMMAND_EXIT_CODES))
def test_each_commands_help_lists_its_codes(command: str) -> None:
    text = CliRunner().invoke(main, [command, "--help"]).stdout
    listed = _codes_in(text)
    assert listed == {code: EXIT_CODES[code] for code in COMMAND_EXIT_CODES[command]}


def test_planner_help_lists_the_whole_table() -> None:
    assert _codes_in(CliRunner().invoke(main, ["--help"]).stdout) == EXIT_CODES


def test_readme_has_the_same_table() -> None:
    text = README.read_text(encoding="utf-8")
    for code, meaning in EXIT_CODES.items():
        commands = ", ".join(c for c, codes in COMMAND_EXIT_CODES.items() if code in codes)
        assert f"| {code} | {meaning} | {commands} |" in text, code


def test_no_shared_option_promises_an_exit_code() -> None:
    """An option several commands share (--device-memory once said "exits with code 3" in
    validate's and compare's help too) leaves exit codes to each command's table."""
    users: dict[str, set[str]] = {}
    for name, command in main.commands.items():
        for param in command.params:
            users.setdefault(param.name, set()).add(name)
    for command in main.commands.values():
        for param in command.params:
            if len(users[param.name]) > 1:
                assert "exit" not in (getattr(param, "help", None) or "").lower(), param.name


def _codes_in(help_text: str) -> dict[int, str]:
    """The `Exit codes:` block of a help text, code -> meaning (lines unwrapped by click)."""
    lines = help_text.split("Exit codes:", 1)[1].splitlines()
    found = {}
    for line in lines:
        code, _, meaning = line.strip().partition("  ")
        if code.isdigit():
            found[int(code)] = meaning.strip()
    return found
