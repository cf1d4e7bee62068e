"""Runtime tests: scenario workers launched with ``horovodrun --gloo`` on this machine.

Each launch runs many scenarios in one job (TensorFlow takes seconds to import per
rank), and every rank prints ``OK name`` or ``FAIL name: reason`` per scenario. A world
of one rank needs no launcher: the worker runs as a plain process (``hvd.init()`` then
makes a one-rank world).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from launching import ROOT, horovodrun, launch_environment

pytestmark = pytest.mark.runtime

WORKER = Path(__file__).parent / "workers" / "scenarios.py"
TIMEOUT = 300

ONE_RANK = [
    "mixed_groups",
    "mixed_groups_function",
    "model_parallel_input_function",
    "round_trips",
    "errors",
    "empty_batch",
    "fit",
]
TWO_RANKS = [
    "data_parallel",
    "table_parallel",
    "fused",
    "column_slices",
    "mixed_groups",
    "mixed_groups_int64",
    "mixed_groups_function",
    "mixed_precision",
    "model_parallel_input",
    "model_parallel_input_function",
    "merge_optimized",
    "empty_batch",
    "constructor",
    "plan_file",
    "round_trips",
    "errors",
    "fit",
]
THREE_RANKS = [
    "merge_balanced",
    "merge_optimized",
    "no_table_parallel",
    "empty_rank",
    "empty_rank_function",
    "empty_rank_mp",
    "empty_rank_mp_function",
    "empty_batch",
    "round_trips",
    "errors",
    "fit",
]


def launch(ranks: int, scenarios: list[str]) -> dict[str, list[str]]:
    """Run the worker on ``ranks`` ranks; per scenario, the lines every rank printed."""
    env = launch_environment()
    command = [sys.executable, str(WORKER), *scenarios]
    if ranks > 1:
        command = [horovodrun(), "-np", str(ranks), "--gloo", "-H", f"localhost:{ranks}", *command]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n(timed out after {TIMEOUT} s)"
    results: dict[str, list[str]] = {name: [] for name in scenarios}
    line = r"^(?:\[(\d+)\]<stdout>:)?((?:OK|FAIL) (\S+?)(?::.*)?)$"  # one rank: no prefix
    for match in re.finditer(line, output, re.M):
        name = match.group(3)
        if name in results:
            results[name].append(f"rank {match.group(1) or 0}: {match.group(2)}")
    results["__output__"] = [output[-4000:]]
    return results


@pytest.fixture(scope="module")
def one_rank():
    return launch(1, ONE_RANK)


@pytest.fixture(scope="module")
def two_ranks():
    return launch(2, TWO_RANKS)


@pytest.fixture(scope="module")
def three_ranks():
    return launch(3, THREE_RANKS)


def check(results: dict, name: str, ranks: int) -> None:
    lines = results[name]
    ok = [line for line in lines if ": OK " in line]
    assert len(ok) == ranks, "\n".join(lines) or results["__output__"][0]


@pytest.mark.parametrize("name", ONE_RANK)
def test_one_rank(one_rank, name):
    check(one_rank, name, 1)


@pytest.mark.parametrize("name", TWO_RANKS)
def test_two_ranks(two_ranks, name):
    check(two_ranks, name, 2)


@pytest.mark.parametrize("name", THREE_RANKS)
def test_three_ranks(three_ranks, name):
    check(three_ranks, name, 3)
