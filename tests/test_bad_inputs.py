"""A campaign of bad inputs, one row each: command, input, exit code, what the error says.

Every row runs one command on one bad input in a fresh folder holding a sound spec
(``spec.yaml``) and its plan (``plan.json``), and expects:

- the documented exit code (2 for bad input, 1 for ``validate``'s problem list);
- one ``Error:`` line on stderr naming the file and every phrase of the row (or, for
  ``validate``, one line per problem, each starting with the plan's name), nothing on
  stdout, no traceback, no control character that a terminal would act on;
- every file in the folder unchanged and nothing new written;
- an end within seconds and within a memory cap (``guarded``).

The rows cover each class of bad input an outside campaign found (writing over the
input, resource exhaustion, values nobody can mean, names, initializers, commands that
trusted a broken plan, wording) and more of our own.
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from shared import RICH, snapshot, time_limit

from planner import load_spec, make_plan, spec_from_dict
from planner.cli import main
from planner.saving import plan_text

Content = str | bytes | Callable[[dict], str]


@dataclass(frozen=True)
class Case:
    """One command on one bad input, and what it must answer."""

    args: tuple[str, ...]
    code: int
    phrases: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # symlink name -> target
    hardlinks: dict[str, str] = field(default_factory=dict)


def spec(**changes: object) -> str:
    """RICH with top-level keys replaced, as YAML (JSON is YAML)."""
    return json.dumps({**RICH, **changes})


def table(index: int = 1, **changes: object) -> str:
    """RICH with one table's keys replaced."""
    tables = [dict(t) for t in RICH["tables"]]
    tables[index].update(changes)
    return spec(tables=tables)


def an_input(index: int = 1, **changes: object) -> str:
    inputs = [dict(i) for i in RICH["inputs"]]
    inputs[index].update(changes)
    return spec(inputs=inputs)


def edited(change: Callable[[dict], object]) -> Callable[[dict], str]:
    """The sound plan with ``change`` applied to its JSON data."""

    def build(plan: dict) -> str:
        data = json.loads(json.dumps(plan))
        change(data)
        return json.dumps(data, indent=2)

    return build


def _set(path: str, value: object) -> Callable[[dict], None]:
    """Set a dotted path (list indices as numbers) in the plan's data."""

    def change(data: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _drop_shard(index: int) -> Callable[[dict], None]:
    return lambda data: data["shards"].pop(index)


def _duplicate_shard(index: int) -> Callable[[dict], None]:
    return lambda data: data["shards"].insert(index, dict(data["shards"][index]))


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

# Aliases inside an initializer's config: a few hundred bytes that once became a plan of
# hundreds of megabytes (every table and every fused weight repeats the initializer).
INITIALIZER_BOMB = """\
world_size: 2
tables:
  - name: a
    rows: 10
    width: 4
    initializer:
      class_name: RandomUniform
      config:
        x0: &x0 [1, 2, 3, 4, 5, 6, 7, 8]
        x1: &x1 [*x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0]
        x2: &x2 [*x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1]
        x3: &x3 [*x2, *x2, *x2, *x2, *x2, *x2, *x2, *x2]
        x4: &x4 [*x3, *x3, *x3, *x3, *x3, *x3, *x3, *x3]
        x5: &x5 [*x4, *x4, *x4, *x4, *x4, *x4, *x4, *x4]
        x6: &x6 [*x5, *x5, *x5, *x5, *x5, *x5, *x5, *x5]
        x7: [*x6, *x6, *x6, *x6, *x6, *x6, *x6, *x6]
  - {name: b, rows: 10, width: 4, initializer: *x0}
"""


def plan_rows(bad: Content, validate_code: int, phrases: tuple[str, ...]) -> dict[str, Case]:
    """A broken plan given to show, to diff (as old and as new) and to validate.

    ``validate_code``: 1 when validate lists the problem, 2 when the file is not a plan
    at all (the schema refuses it) and there is nothing to list.
    """
    files = {"bad.json": bad}
    expected = ("bad.json", *phrases)
    return {
        "show": Case(("show", "bad.json"), 2, expected, files),
        "diff-new": Case(("diff", "plan.json", "bad.json"), 2, expected, files),
        "diff-old": Case(("diff", "bad.json", "plan.json"), 2, expected, files),
        "validate": Case(("validate", "bad.json"), validate_code, expected, files),
    }


CASES: dict[str, Case] = {
    # --- writing over what the user gave ----------------------------------------------
    "plan -o the spec itself": Case(
        ("plan", "spec.yaml", "-o", "spec.yaml"), 2, ("spec.yaml", "is the spec")
    ),
    "plan -o a path that resolves to the spec": Case(
        ("plan", "spec.yaml", "-o", "./sub/../spec.yaml"),
        2,
        ("is the spec",),
        {"sub/keep": "x"},
    ),
    "plan -o a symlink to the spec": Case(
        ("plan", "spec.yaml", "-o", "link.yaml"),
        2,
        ("link.yaml", "is the spec"),
        links={"link.yaml": "spec.yaml"},
    ),
    "plan -o a hard link to the spec": Case(
        ("plan", "spec.yaml", "-o", "hard.yaml"),
        2,
        ("hard.yaml", "is the spec"),
        hardlinks={"hard.yaml": "spec.yaml"},
    ),
    "plan of a symlinked spec -o its target": Case(
        ("plan", "link.yaml", "-o", "spec.yaml"),
        2,
        ("spec.yaml", "is the spec"),
        links={"link.yaml": "spec.yaml"},
    ),
    "plan --html a hard link to the spec": Case(
        ("plan", "spec.yaml", "-o", "p.json", "--html", "hard.html"),
        2,
        ("hard.html", "--html would overwrite spec.yaml"),
        hardlinks={"hard.html": "spec.yaml"},
    ),
    "show --html a symlink to the plan": Case(
        ("show", "plan.json", "--html", "link.html"),
        2,
        ("link.html", "--html would overwrite plan.json"),
        links={"link.html": "plan.json"},
    ),
    "diff --html a hard link to the new plan": Case(
        ("diff", "plan.json", "new.json", "--html", "hard.html"),
        2,
        ("hard.html", "--html would overwrite new.json"),
        {"new.json": lambda plan: json.dumps(plan)},
        hardlinks={"hard.html": "new.json"},
    ),
    "plan -o an existing folder": Case(
        ("plan", "spec.yaml", "-o", "sub"), 2, ("sub",), {"sub/keep": "x"}
    ),
    # --- resource exhaustion ----------------------------------------------------------
    "billion laughs": Case(
        ("plan", "bad.yaml"), 2, ("bad.yaml", "aliases"), {"bad.yaml": BILLION_LAUGHS}
    ),
    "aliases inside an initializer": Case(
        ("plan", "bad.yaml"), 2, ("bad.yaml",), {"bad.yaml": INITIALIZER_BOMB}
    ),
    "an alias to the node holding it": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "line 2", "contains it"),
        {"bad.yaml": "world_size: 2\ntables: &t [*t]\n"},
    ),
    "spec is /dev/zero": Case(
        ("plan", "/dev/zero", "-o", "p.json"), 2, ("/dev/zero", "not a YAML spec")
    ),
    "spec is /dev/urandom": Case(
        ("plan", "/dev/urandom", "-o", "p.json"), 2, ("/dev/urandom", "not a YAML spec")
    ),
    "spec nested 200,000 deep": Case(
        ("plan", "bad.yaml"), 2, ("bad.yaml", "nest"), {"bad.yaml": "[" * 200_000}
    ),
    "spec nested 100 deep in block style": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "nested"),
        {"bad.yaml": "".join("  " * i + "- \n" for i in range(100))},
    ),
    "spec larger than the limit": Case(("plan", "big.yaml"), 2, ("big.yaml", "larger than")),
    "--world-size 10000000": Case(
        ("plan", "spec.yaml", "--world-size", "10000000"), 2, ("--world-size", "16,384")
    ),
    "world_size 10000000 in the file": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "world_size", "16,384"),
        {"bad.yaml": spec(world_size=10_000_000, global_batch_size=None)},
    ),
    "compare at a thousand world sizes": Case(
        ("compare", "spec.yaml", "--world-size", ",".join(str(n) for n in range(1, 1001))),
        2,
        ("--world-size", "1,000 world sizes", "at most 32"),
    ),
    "compare --world-size 10000000": Case(
        ("compare", "spec.yaml", "--world-size", "2,10000000"), 2, ("--world-size", "16,384")
    ),
    "validate --spec --world-size 10000000": Case(
        ("validate", "plan.json", "--spec", "spec.yaml", "--world-size", "10000000"),
        2,
        ("--world-size", "16,384"),
    ),
    "an integer of 5,000 digits in a spec": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "line 1"),
        {"bad.yaml": "world_size: " + "9" * 5000 + "\ntables: []\n"},
    ),
    # --- values nobody can mean -------------------------------------------------------
    "rows 10**30": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[1].rows", "int64"),
        {"bad.yaml": table(rows=10**30)},
    ),
    "rows x width beyond int64": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[1]", "64-bit"),
        {"bad.yaml": table(rows=2**62, width=4)},
    ),
    "width beyond int32": Case(
        ("plan", "bad.yaml"), 2, ("bad.yaml", "tables[1].width"), {"bad.yaml": table(width=2**31)}
    ),
    "hotness 10**9": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "inputs[4].hotness", "65,536"),
        {"bad.yaml": an_input(4, hotness=10**9)},
    ),
    "hotness x global batch past int32": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "hotness", "global_batch_size"),
        {
            "bad.yaml": spec(
                global_batch_size=2**20,
                inputs=[*RICH["inputs"][:4], {"name": "d2", "table": "d", "hotness": 4096}],
            )
        },
    ),
    "global batch 10**12": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "global_batch_size"),
        {"bad.yaml": spec(global_batch_size=10**12)},
    ),
    "device memory 10**30 bytes": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "device_memory"),
        {"bad.yaml": spec(device_memory=10**30)},
    ),
    "device memory 10**20 TiB": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "device_memory"),
        {"bad.yaml": spec(device_memory="100000000000000000000TiB")},
    ),
    "threshold 10**30": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "row_slice_threshold"),
        {"bad.yaml": spec(row_slice_threshold=10**30)},
    ),
    "bandwidth 1e-300": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "alltoall_bandwidth"),
        {"bad.yaml": spec(alltoall_bandwidth=1e-300)},
    ),
    "world_size 010 (octal in YAML 1.1)": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "world_size", "'010'", "decimal"),
        {"bad.yaml": "world_size: 010\ntables:\n  - {name: a, rows: 10, width: 4}\n"},
    ),
    "rows 0x10": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[0].rows", "'0x10'", "decimal"),
        {"bad.yaml": "world_size: 2\ntables:\n  - {name: a, rows: 0x10, width: 4}\n"},
    ),
    "rows 1:30 (base 60 in YAML 1.1)": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[0].rows", "'1:30'", "decimal"),
        {"bad.yaml": "world_size: 2\ntables:\n  - {name: a, rows: 1:30, width: 4}\n"},
    ),
    "rows 1_000": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[0].rows", "'1_000'"),
        {"bad.yaml": "world_size: 2\ntables:\n  - {name: a, rows: 1_000, width: 4}\n"},
    ),
    "dp_input yes": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "dp_input", "'yes'", "true or false"),
        {"bad.yaml": "world_size: 2\ndp_input: yes\ntables:\n  - {name: a, rows: 9, width: 4}\n"},
    ),
    "a key given twice": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "line 2", "'world_size'", "twice"),
        {"bad.yaml": "world_size: 2\nworld_size: 4\ntables:\n  - {name: a, rows: 9, width: 4}\n"},
    ),
    "a table key given twice": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "line 3", "'rows'", "twice"),
        {"bad.yaml": "world_size: 2\ntables:\n  - {name: a, rows: 9, width: 4, rows: 90}\n"},
    ),
    "inputs []": Case(
        ("plan", "bad.yaml"), 2, ("bad.yaml", "inputs"), {"bad.yaml": spec(inputs=[])}
    ),
    "memory_reserve NaN": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "memory_reserve"),
        {
            "bad.yaml": "world_size: 2\nmemory_reserve: .nan\n"
            "tables:\n  - {name: a, rows: 9, width: 4}\n"
        },
    ),
    "tables as a mapping": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables"),
        {"bad.yaml": "world_size: 2\ntables: {a: 1}\n"},
    ),
    "two YAML documents": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml",),
        {"bad.yaml": "world_size: 2\n---\nworld_size: 3\n"},
    ),
    "a Python object tag": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml",),
        {"bad.yaml": "world_size: !!python/object/apply:os.system ['true']\n"},
    ),
    "a plan given to plan": Case(
        ("plan", "plan.json", "-o", "p2.json"),
        2,
        ("plan.json", "planner show"),
    ),
    # --- names ------------------------------------------------------------------------
    "table name with a newline": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[1].name", "'b\\nError: forged'", "printable"),
        {"bad.yaml": table(name="b\nError: forged")},
    ),
    "table name with NUL": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].name", "printable"), {"bad.yaml": table(name="b\x00")}
    ),
    "table name with a tab": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].name", "printable"), {"bad.yaml": table(name="b\tc")}
    ),
    "table name with ANSI escapes": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].name", "\\x1b[31m", "printable"),
        {"bad.yaml": table(name="\x1b[31mred\x1b[0m")},
    ),
    "table name of spaces only": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].name", "space"), {"bad.yaml": table(name="   ")}
    ),
    "table name with a trailing space": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].name", "space"), {"bad.yaml": table(name="b ")}
    ),
    "table name of 1,000 characters": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].name", "256"), {"bad.yaml": table(name="b" * 1000)}
    ),
    "input name with a newline": Case(
        ("plan", "bad.yaml"),
        2,
        ("inputs[1].name", "printable"),
        {"bad.yaml": an_input(name="b\nx")},
    ),
    "input table with a newline": Case(
        ("plan", "bad.yaml"),
        2,
        ("inputs[1].table", "printable"),
        {"bad.yaml": an_input(table="b\n")},
    ),
    "unknown key with a newline": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "'x\\nError: forged'", "unknown key"),
        {"bad.yaml": spec(**{"x\nError: forged": 1})},
    ),
    "spec path with a newline": Case(
        ("plan", "bad\nname.yaml"), 2, ("'bad\\nname.yaml'",), {"bad\nname.yaml": "[1]"}
    ),
    # --- initializers -----------------------------------------------------------------
    "initializer {foo: 1}": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[1].initializer", "class_name"),
        {"bad.yaml": table(initializer={"foo": 1})},
    ),
    "initializer with an unknown name": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[1].initializer", "'glorot'", "glorot_uniform"),
        {"bad.yaml": table(initializer="glorot")},
    ),
    "initializer named in capitals": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "'ZEROS'"),
        {"bad.yaml": table(initializer="ZEROS")},
    ),
    "initializer base class": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "'Initializer'"),
        {"bad.yaml": table(initializer="Initializer")},
    ),
    "initializer stddev NaN": Case(
        ("plan", "bad.yaml"),
        2,
        ("bad.yaml", "tables[0].initializer", "stddev", "finite"),
        {
            "bad.yaml": "world_size: 2\ntables:\n  - name: a\n    rows: 9\n    width: 4\n"
            "    initializer: {class_name: RandomNormal, config: {stddev: .nan}}\n"
        },
    ),
    "initializer argument misspelt": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "'stdev'", "stddev"),
        {"bad.yaml": table(initializer={"class_name": "RandomNormal", "config": {"stdev": 1}})},
    ),
    "initializer argument of the wrong type": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "stddev", "number"),
        {"bad.yaml": table(initializer={"class_name": "RandomNormal", "config": {"stddev": "x"}})},
    ),
    "initializer seed 1.5": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "seed", "integer"),
        {"bad.yaml": table(initializer={"class_name": "RandomNormal", "config": {"seed": 1.5}})},
    ),
    "initializer mode not Keras'": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "mode", "fan_avg"),
        {"bad.yaml": table(initializer={"class_name": "VarianceScaling", "config": {"mode": "x"}})},
    ),
    "initializer scale 0": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "scale", "positive"),
        {"bad.yaml": table(initializer={"class_name": "VarianceScaling", "config": {"scale": 0}})},
    ),
    "initializer without config": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "config"),
        {"bad.yaml": table(initializer={"class_name": "Zeros"})},
    ),
    "initializer Constant of a list": Case(
        ("plan", "bad.yaml"),
        2,
        ("tables[1].initializer", "value"),
        {"bad.yaml": table(initializer={"class_name": "Constant", "config": {"value": [1, 2]}})},
    ),
    "initializer a number": Case(
        ("plan", "bad.yaml"), 2, ("tables[1].initializer",), {"bad.yaml": table(initializer=5)}
    ),
    # --- wording ----------------------------------------------------------------------
    "plan file holding JSON null": Case(
        ("show", "bad.json"), 2, ("bad.json", "JSON null"), {"bad.json": "null"}
    ),
    "plan file holding a JSON list": Case(
        ("show", "bad.json"), 2, ("bad.json", "JSON array"), {"bad.json": "[1]"}
    ),
    "format_version as a string": Case(
        ("show", "bad.json"),
        2,
        ("bad.json", "format_version", "the number 3"),
        {"bad.json": edited(_set("format_version", "3"))},
    ),
    "fingerprint mismatch names the setting": Case(
        ("validate", "plan.json", "--spec", "spec.yaml", "--world-size", "4"),
        1,
        ("plan.json", "world_size", "2 in the plan", "4 in the spec"),
    ),
    "fingerprint mismatch names the table field": Case(
        ("validate", "plan.json", "--spec", "bad.yaml"),
        1,
        ("plan.json", "tables", "'b'", "rows", "10 in the plan", "11 in the spec"),
        {"bad.yaml": table(rows=11)},
    ),
    "plan file with a key given twice": Case(
        ("show", "bad.json"),
        2,
        ("bad.json", "'world_size'", "twice"),
        {"bad.json": lambda plan: json.dumps(plan)[:-1] + ', "world_size": 2}'},
    ),
    "plan file with NaN": Case(
        ("show", "bad.json"),
        2,
        ("bad.json", "NaN"),
        {
            "bad.json": lambda plan: json.dumps(plan).replace(
                '"memory_reserve": 0.0', '"memory_reserve": NaN'
            )
        },
    ),
    "plan file with a 5,000-digit number": Case(
        ("show", "bad.json"),
        2,
        ("bad.json",),
        {
            "bad.json": lambda plan: json.dumps(plan).replace(
                '"world_size": 2', '"world_size": ' + "9" * 5000, 1
            )
        },
    ),
    "plan file nested 200,000 deep": Case(
        ("show", "bad.json"), 2, ("bad.json", "nested"), {"bad.json": "[" * 200_000}
    ),
    "plan is /dev/zero": Case(("show", "/dev/zero"), 2, ("/dev/zero", "not a plan file")),
    "plan is /dev/urandom": Case(
        ("validate", "/dev/urandom"), 2, ("/dev/urandom", "not a plan file")
    ),
    "diff of /dev/zero": Case(
        ("diff", "plan.json", "/dev/zero"), 2, ("/dev/zero", "not a plan file")
    ),
    "plan larger than the limit": Case(("show", "big.json"), 2, ("big.json", "larger than")),
    "plan world_size 10**9": Case(
        ("show", "bad.json"),
        2,
        ("bad.json", "world_size", "16,384"),
        {"bad.json": edited(_set("world_size", 10**9))},
    ),
    "a spec given to show": Case(("show", "spec.yaml"), 2, ("spec.yaml", "planner plan")),
}

# --- commands that trusted a broken plan: show and diff refuse it as validate does ---------
BROKEN_PLANS: dict[str, tuple[Content, tuple[str, ...]]] = {
    # plan format 2: the file's shards are b's (0) and d's (1); a's rows are row_splits.0
    "shard with edited columns": (edited(_set("shards.0.cols", [0, 3])), ("'b'",)),
    "a row split past its ranks": (edited(_set("row_splits.0.remainder_start", 5)), ("'a'",)),
    "a reversed shard": (edited(_set("shards.0.cols", [4, 0])), ("'b'",)),
    "a deleted shard": (edited(_drop_shard(1)), ("'d'",)),
    "a duplicated shard": (edited(_duplicate_shard(0)), ("'b'",)),
    "an absurdly large shard": (
        edited(_set("shards.0.rows", [0, 10**30])),
        ("shards[0].rows[1]", "9223372036854775807"),
    ),
    "a shard on rank 7 of 2": (edited(_set("shards.1.rank", 7)), ("rank 7",)),
    "edited rank bytes": (edited(_set("ranks.0.bytes", 1)), ("ranks[0]",)),
    "edited rank elements": (edited(_set("ranks.1.elements", 10**30)), ("ranks[1]",)),
    "edited stats": (edited(_set("stats.max_rank_bytes", 5)), ("stats",)),
    "edited traffic": (edited(_set("ranks.0.comm.sent_bytes", 5)), ("traffic",)),
    "fingerprint 'hello'": (edited(_set("fingerprint", "hello")), ("fingerprint", "sha256:")),
    "fingerprint of another spec": (
        edited(_set("fingerprint", "sha256:" + "0" * 64)),
        ("fingerprint", "tables and parameters"),
    ),
    "recorded device memory no longer fits": (
        edited(_set("parameters.device_memory", 1000)),
        ("ranks[0]", "device memory"),
    ),
    "a global batch of 2**64": (
        edited(_set("parameters.global_batch_size", 2**64)),
        ("parameters.global_batch_size", "2147483647"),
    ),
    "device memory of 2**64 bytes": (
        edited(_set("parameters.device_memory", 2**64)),
        ("parameters.device_memory",),
    ),
    "a table edited by hand": (edited(_set("tables.1.rows", 11)), ("'b'",)),
    "a table name with a newline": (edited(_set("tables.1.name", "b\nError: x")), ("printable",)),
    "an unknown initializer": (edited(_set("tables.1.initializer", "glorot")), ("initializer",)),
    "no ranks": (edited(_set("ranks", [])), ("ranks",)),
    "a missing group": (edited(_set("groups.table_parallel", ["b"])), ("group",)),
}

# What the plan's schema refuses is not a plan at all: exit 2 from validate too.
SCHEMA_ERRORS = {
    "fingerprint 'hello'",
    "a table name with a newline",
    "an unknown initializer",
    "an absurdly large shard",
    "edited rank elements",
    "a global batch of 2**64",
    "device memory of 2**64 bytes",
}

for name, (bad, phrases) in BROKEN_PLANS.items():
    code = 2 if name in SCHEMA_ERRORS else 1
    for command, case in plan_rows(bad, code, phrases).items():
        CASES[f"{command}: {name}"] = case

SIZED_FILES = {"big.yaml": 40 * 2**20, "big.json": 2 * 2**30}


@contextmanager
def guarded(seconds: int = 30, extra_bytes: int = 3 * 2**30) -> Iterator[None]:
    """Fail a row that runs past ``seconds`` or grows the address space by ``extra_bytes``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    cap = current + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))
    try:
        with time_limit(seconds):
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def sound_plan() -> dict:
    return json.loads(make_plan(spec_from_dict(RICH)).to_json())


def prepare(folder: Path, case: Case, sound_plan: dict) -> None:
    (folder / "spec.yaml").write_text(json.dumps(RICH))
    (folder / "plan.json").write_text(json.dumps(sound_plan, indent=2))
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content = content(sound_plan)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name, size in SIZED_FILES.items():
        if name in case.args:
            with open(folder / name, "wb") as handle:  # sparse: no disk, no time
                handle.truncate(size)
    for name, target in case.links.items():
        (folder / name).symlink_to(target)
    for name, target in case.hardlinks.items():
        os.link(folder / target, folder / name)


def check_answer(result: Result, case: Case) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "no error message"
    assert not any(ch in result.stderr for ch in "\x00\x1b\r\t"), repr(result.stderr)
    if case.code == 1:  # validate's problem list: one line per problem, each naming the plan
        plan_name = case.args[1]
        assert all(line.startswith(f"{plan_name}: ") for line in lines), lines
        text = "\n".join(lines)
        for phrase in case.phrases:
            assert phrase in text, (phrase, lines)
        return
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: "), lines[0]
    for phrase in case.phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sound_plan) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path, case, sound_plan)
    before = snapshot(tmp_path)
    with guarded():
        result = CliRunner().invoke(main, list(case.args))
    check_answer(result, case)
    assert snapshot(tmp_path) == before


# --- what the rows above do not cover: good answers that replaced bad ones ----------------


def test_output_dash_writes_the_plan_to_stdout_and_nothing_else(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(json.dumps(RICH))
    result = CliRunner().invoke(main, ["plan", "spec.yaml", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout == plan_text(make_plan(spec_from_dict(RICH)))  # checked and sealed
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_a_names_escape_codes_never_reach_the_terminal(tmp_path: Path, monkeypatch) -> None:
    """The error names the entry with the name escaped, so nothing can forge a line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(table(name="b\nError: all good\x1b[2J"))
    result = CliRunner().invoke(main, ["plan", "bad.yaml"])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize("output", ["plan.json", "-"])
def test_a_plan_too_large_to_read_back_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """What no loader would read is not written (auto's plan of 1,000 tables on 16,384
    ranks passes 1 GiB); here the limit is 1 MiB and the plan larger."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("planner.saving.MAX_PLAN_BYTES", 2**20)
    tables = "".join(f"  - {{name: t{i}, rows: {i + 1}, width: 2}}\n" for i in range(6000))
    (tmp_path / "many.yaml").write_text(f"world_size: 1\ntables:\n{tables}")
    result = CliRunner().invoke(main, ["plan", "many.yaml", "-o", output])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    target = "standard output" if output == "-" else output
    size = len(make_plan(load_spec(tmp_path / "many.yaml")).to_json()) / 2**20
    assert size > 1
    assert result.stderr == (
        f"Error: {target}: the plan would be {size:.1f} MiB, more than the 1 MiB a plan may "
        "be; plan with fewer ranks, or fewer row-sliced tables (each lists a shard on every "
        "rank)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.yaml"]
