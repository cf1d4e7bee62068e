"""More rows of the bad-input campaign (``test_bad_inputs``), with its rules: one
``Error:`` line naming the file or option, the documented exit code, nothing on
stdout, nothing written or changed.

These rows cover a later review: bandwidths and integers past their bounds, numbers
too long to print, symlink loops, plans sealed again after an edit, output paths that
cannot be written, and wording.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from shared import RICH
from test_bad_inputs import (
    Case,
    _set,
    check_answer,
    edited,
    guarded,
    plan_rows,
    prepare,
    snapshot,
    spec,
)

from planner import PlanFileError, load_plan, make_plan, spec_from_dict
from planner.cli import main
from planner.errors import SpecError, brief
from planner.parsing import JsonRefused, parse_json
from planner.seal import sealed

ROOT = Path(__file__).resolve().parent.parent
YAML_SPEC = (ROOT / "examples" / "dlrm_tiny.yaml").read_text()
PAST_INT64 = str(2**63)
DIGITS_5000 = "9" * 5000
TOO_LONG_NAME = "x" * 300 + ".html"


def resealed(change: Callable[[dict], object]) -> Callable[[dict], str]:
    """The sound plan edited, then sealed again so that its seal holds."""
    return lambda plan: sealed(edited(change)(plan) + "\n")


def cut_in_a_string(plan: dict) -> str:
    text = json.dumps(plan, indent=2)
    return text[: text.index('"strategy"') + 5]


def twice_world_size(plan: dict) -> str:
    """The sound plan with a key given twice, sealed so that its seal holds."""
    text = json.dumps(plan, indent=2) + "\n"
    return sealed(text.replace('"world_size": 2,', '"world_size": 2,\n  "world_size": 2,', 1))


CASES: dict[str, Case] = {
    # --- bandwidths: one rule for all four ---------------------------------------------
    "--memory-bandwidth 5e-324": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--memory-bandwidth", "5e-324"),
        2,
        ("--memory-bandwidth", "0.000000001", "5e-324"),
    ),
    "--intra-host-bandwidth 5e-324 over hosts": Case(
        (
            *("plan", "spec.yaml", "-o", "o.json", "--intra-host-bandwidth", "5e-324"),
            *("--world-size", "4", "--gpus-per-host", "2", "--row-reduction", "host"),
        ),
        2,
        ("--intra-host-bandwidth", "0.000000001"),
    ),
    "memory_bandwidth 1e-320 in the file": Case(
        ("plan", "bad.yaml", "-o", "o.json"),
        2,
        ("bad.yaml", "memory_bandwidth", "1e-320"),
        {"bad.yaml": spec(memory_bandwidth=1e-320)},
    ),
    "compare --memory-bandwidth 5e-324": Case(
        ("compare", "spec.yaml", "--memory-bandwidth", "5e-324"), 2, ("--memory-bandwidth",)
    ),
    # --- integers the plan bounds, bounded in the spec too ------------------------------
    "--gpus-per-host 2**63": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--gpus-per-host", PAST_INT64),
        2,
        ("--gpus-per-host", "9223372036854775807"),
    ),
    "--column-multiple 2**63 with auto": Case(
        ("plan", "spec.yaml", "--column-multiple", PAST_INT64, "--strategy", "auto"),
        2,
        ("--column-multiple", "9223372036854775807"),
    ),
    "compare --gpus-per-host 2**63": Case(
        ("compare", "spec.yaml", "--gpus-per-host", PAST_INT64), 2, ("--gpus-per-host",)
    ),
    "column_multiple 2**63 in the file": Case(
        ("plan", "bad.yaml", "-o", "o.json"),
        2,
        ("bad.yaml", "column_multiple"),
        {"bad.yaml": spec(column_multiple=2**63)},
    ),
    # --- numbers too long to print --------------------------------------------------------
    "--device-memory of 5,000 digits": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--device-memory", DIGITS_5000),
        2,
        ("--device-memory", "more than 40 digits"),
    ),
    "--host-memory of 5,000 digits": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--host-memory", DIGITS_5000),
        2,
        ("--host-memory", "more than 40 digits"),
    ),
    "compare --device-memory of 5,000 digits": Case(
        ("compare", "spec.yaml", "--device-memory", DIGITS_5000), 2, ("--device-memory",)
    ),
    "device_memory of 2,000,000 digits in the file": Case(
        ("plan", "bad.yaml", "-o", "o.json"),
        2,
        ("bad.yaml", "device_memory", "more than 40 digits"),
        {"bad.yaml": spec(device_memory="9" * 2_000_000 + "GiB")},
    ),
    "--ranks 'top 5' and 4,400 zeros": Case(
        ("show", "plan.json", "--ranks", "top 5" + "0" * 4400), 2, ("--ranks", "top N")
    ),
    "--ranks 'top' and a superscript two": Case(
        ("show", "plan.json", "--ranks", "top \u00b2"), 2, ("--ranks", "top N")
    ),
    # --- symlink loops ------------------------------------------------------------------
    "plan -o a symlink loop": Case(
        ("plan", "spec.yaml", "-o", "loop.json"),
        2,
        ("loop.json", "symbolic links"),
        links={"loop.json": "loop.json"},
    ),
    "show --html a symlink loop": Case(
        ("show", "plan.json", "--html", "loop.html"),
        2,
        ("loop.html", "symbolic links"),
        links={"loop.html": "loop.html"},
    ),
    "plan a spec that is a symlink loop": Case(
        ("plan", "loopy.yaml"),
        2,
        ("loopy.yaml", "cannot read the spec", "symbolic links"),
        links={"loopy.yaml": "loopy.yaml"},
    ),
    # --- output paths checked before anything is written -----------------------------------
    "plan --html ''": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--html", ""), 2, ("--html", "empty file name")
    ),
    "plan --html a name too long": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--html", TOO_LONG_NAME),
        2,
        ("File name too long",),
    ),
    "plan --html in a folder that is a file": Case(
        ("plan", "spec.yaml", "-o", "o.json", "--html", "spec.yaml/r.html"),
        2,
        ("spec.yaml/r.html", "spec.yaml is a file, not a folder"),
    ),
    "plan -o in a folder that is a file": Case(
        ("plan", "spec.yaml", "-o", "spec.yaml/x.json"),
        2,
        ("spec.yaml/x.json", "spec.yaml is a file, not a folder"),
    ),
    "plan -o - --html -": Case(
        ("plan", "spec.yaml", "-o", "-", "--html", "-"), 2, ("--html -", "standard output")
    ),
    "show --html -": Case(("show", "plan.json", "--html", "-"), 2, ("--html -",)),
    # --- wording ------------------------------------------------------------------------
    "show a YAML spec": Case(
        ("show", "tiny.yaml"),
        2,
        ("tiny.yaml: this is a spec", "planner plan tiny.yaml"),
        {"tiny.yaml": YAML_SPEC},
    ),
    "validate a YAML spec": Case(
        ("validate", "tiny.yaml"), 2, ("this is a spec",), {"tiny.yaml": YAML_SPEC}
    ),
    "diff with a YAML spec": Case(
        ("diff", "plan.json", "tiny.yaml"), 2, ("this is a spec",), {"tiny.yaml": YAML_SPEC}
    ),
    "a key that is a number": Case(
        ("plan", "bad.yaml", "-o", "o.json"),
        2,
        ("bad.yaml: 1: unknown key",),
        {"bad.yaml": "1: x\n" + yaml.safe_dump(RICH)},
    ),
    "an input that is a number": Case(
        ("plan", "bad.yaml", "-o", "o.json"),
        2,
        ("bad.yaml: inputs[0]: expected a mapping of keys to values (got 5)",),
        {"bad.yaml": spec(inputs=[5])},
    ),
}

# Plans broken after they were sealed, and wording about plans: for show, diff and validate
# (validate's exit code; None where it listed the problem of a sealed file before).
BROKEN_PLANS: dict[str, tuple[Callable[[dict], str], int | None, tuple[str, ...]]] = {
    "sealed again: a rank that is a string": (
        resealed(_set("ranks.1", "oops")),
        2,
        ("ranks[1]", "expected a JSON object", "'oops'"),
    ),
    "sealed again: a shard on rank 5 of 2": (
        resealed(_set("shards.0.rank", 5)),
        None,
        ("rank 5, outside 0..1",),
    ),
    "sealed again: a row split over no rank": (
        resealed(_set("row_splits.0.ranks", [0, 0])),
        None,
        ("row_splits",),
    ),
    "memory_bandwidth 5e-324": (
        edited(_set("parameters.memory_bandwidth", 5e-324)),
        2,
        ("parameters.memory_bandwidth", "0.000000001"),
    ),
    "cut short inside a string": (
        cut_in_a_string,
        2,
        ("Unterminated string starting there", "truncated or damaged"),
    ),
    "format_version true": (
        edited(_set("format_version", True)),
        2,
        ("format_version must be an integer", "True"),
    ),
    "format_version 3.0": (
        edited(_set("format_version", 3.0)),
        2,
        ("format_version must be an integer", "3.0"),
    ),
}

for name, (bad, code, phrases) in BROKEN_PLANS.items():
    for command, case in plan_rows(bad, code or 1, phrases).items():
        if command != "validate" or code is not None:
            CASES[f"{command}: {name}"] = case

# Words the answer must not hold: an internal name, or a hint for the other file format.
NOT_SAID = {
    "an input that is a number": "InputSpec",
    "show: sealed again: a rank that is a string": "RankEntry",
}


@pytest.fixture(scope="module")
def sound_plan() -> dict:
    return json.loads(make_plan(spec_from_dict(RICH)).to_json())


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sound_plan) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path, case, sound_plan)
    before = snapshot(tmp_path)
    with guarded():
        result = CliRunner().invoke(main, list(case.args))
    check_answer(result, case)
    if name in NOT_SAID:
        assert NOT_SAID[name] not in result.stderr
    assert snapshot(tmp_path) == before


def test_a_plan_field_written_as_a_string_gets_no_yaml_hint(tmp_path: Path, sound_plan) -> None:
    path = tmp_path / "plan.json"
    path.write_text(edited(_set("world_size", "2"))(sound_plan))
    with pytest.raises(PlanFileError) as raised:
        load_plan(path)
    assert str(raised.value) == f"{path}: world_size: Input should be a valid integer (got '2')"


def test_validate_trusts_no_seal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sound_plan):
    """A seal is a checksum: a file edited and sealed again holds it. validate parses it as
    strictly as any file and checks every part; show, which trusts the seal for the
    checks that parts agree, previews what such a file says (README, "the plan file")."""
    monkeypatch.chdir(tmp_path)
    Path("twice.json").write_text(twice_world_size(sound_plan))
    result = CliRunner().invoke(main, ["validate", "twice.json"])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: twice.json: not a plan file (key 'world_size' given twice in one object; "
        "keep one)\n"
    )
    Path("rows.json").write_text(resealed(_set("tables.0.rows", 1))(sound_plan))
    assert CliRunner().invoke(main, ["show", "rows.json"]).exit_code == 0
    result = CliRunner().invoke(main, ["validate", "rows.json"])
    assert result.exit_code == 1
    assert "rows.json: fingerprint: not that of the plan's own tables" in result.stderr


def test_an_integer_too_long_to_print_is_described() -> None:
    assert brief(10**5000) == "an integer of more than 4,300 digits"
    assert brief([1, 10**5000]) == "[1, an integer of more than 4,300 digits]"
    with pytest.raises(SpecError, match=r"tables\[0\]\.rows: .*\(got an integer of more than"):
        spec_from_dict({"world_size": 1, "tables": [{"name": "a", "rows": 10**5000, "width": 1}]})


@pytest.mark.parametrize(
    ("text", "said"),
    [("[" * 200_000, "nested too deeply to read; a checkpoint manifest"), ("[NaN]", "NaN is not")],
)
def test_the_json_reader_names_the_kind_of_file(text: str, said: str) -> None:
    with pytest.raises(JsonRefused, match="a checkpoint manifest") as raised:
        parse_json(text, "a checkpoint manifest")
    assert said in str(raised.value)
    with pytest.raises(JsonRefused, match="a plan"):
        parse_json(text)
