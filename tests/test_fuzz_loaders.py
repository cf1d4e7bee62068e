"""Fuzzing the loaders and the commands that read files: a valid result or one clean error.

Arbitrary text, arbitrary YAML and JSON documents, and valid specs and plans with one
part deleted, duplicated or altered go into ``load_spec``, ``load_plan`` and the CLI.
Each must give a spec or plan that works downstream (plans, previews, diffs), or raise
the planner's own error with a one-line message, never anything else, within a
deadline per example.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared import RICH

from planner import PlanFileError, PlannerError, load_plan, make_plan, plan_problems
from planner.cli import main
from planner.costs.memory import ranks_over_limit
from planner.plan import parse_plan
from planner.reports.diff import diff_plans
from planner.reports.diff import render as render_diff
from planner.reports.preview import render
from planner.spec import load_spec, spec_from_dict

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SOUND_PLAN = json.loads(make_plan(spec_from_dict(RICH)).to_json())

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["010", "0x10", "1:30", "yes", "no", "~", "2001-12-14", "1e400"])
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def assert_clean(error: PlannerError) -> None:
    message = str(error)
    assert message and "\n" not in message and "\x1b" not in message, repr(message)
    assert len(message) < 2000, len(message)


def read_spec_or_error(path: Path) -> None:
    """load_spec gives a spec that plans, or a clean SpecError."""
    try:
        spec = load_spec(path)
    except PlannerError as error:
        assert_clean(error)
        return
    if spec.world_size <= 64 and len(spec.tables) <= 64:
        plan = make_plan(spec)
        if not ranks_over_limit(plan):  # planner plan writes no plan that does not fit
            assert plan_problems(plan) == []


def read_plan_or_error(path: Path) -> None:
    """load_plan gives a plan that previews and diffs, or a clean PlanFileError."""
    try:
        plan = load_plan(path)
    except PlanFileError as error:
        assert_clean(error)
        return
    render(plan)
    sound = parse_plan(SOUND_PLAN)
    render_diff(diff_plans(sound, plan), sound, plan)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_a_spec(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    read_spec_or_error(path)


@FUZZ
@given(documents)
def test_any_yaml_document_as_a_spec(tmp_path: Path, document: object) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    read_spec_or_error(path)


def _paths(data: object, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested lists and dicts (the root excluded)."""
    found = []
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else []
    )
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def mutate(data: object, draw) -> object:
    """``data`` (a deep copy) with one value deleted, duplicated or replaced."""
    data = json.loads(json.dumps(data))
    paths = _paths(data)
    path = draw(st.sampled_from(paths))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = draw(st.sampled_from(["delete", "duplicate", "replace", "number"]))
    if action == "delete":
        del parent[key]
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(parent[key])))
    elif action == "number" and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + draw(st.sampled_from([-1, 1, -(2**40), 2**64, 10**30]))
    else:
        parent[key] = draw(documents)
    return data


@FUZZ
@given(st.data())
def test_mutated_specs(tmp_path: Path, data) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(mutate(RICH, data.draw)), encoding="utf-8")
    read_spec_or_error(path)


@FUZZ
@given(documents)
def test_any_json_document_as_a_plan(tmp_path: Path, document: object) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    read_plan_or_error(path)


@FUZZ
@given(st.data())
def test_mutated_plans(tmp_path: Path, data) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(mutate(SOUND_PLAN, data.draw)), encoding="utf-8")
    read_plan_or_error(path)


@pytest.mark.parametrize("command", ["show", "validate", "diff"])
@settings(
    max_examples=25,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_commands_on_mutated_plans(tmp_path: Path, command: str, data) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(mutate(SOUND_PLAN, data.draw)), encoding="utf-8")
    (tmp_path / "sound.json").write_text(json.dumps(SOUND_PLAN), encoding="utf-8")
    args = {"diff": ["diff", str(tmp_path / "sound.json"), str(path)]}.get(
        command, [command, str(path)]
    )
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in ({0, 1, 2} if command == "validate" else {0, 2})
    if result.exit_code == 2:
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")
