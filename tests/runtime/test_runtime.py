"""Runtime tests: scenario workers launched with ``horovodrun --gloo`` on this machine.

Each launch runs many scenarios in one job (TensorFlow takes seconds to import per
rank), and every rank prints ``OK name`` or ``FAIL name: reason`` per scenario.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

import launching
from launching import WORKERS, check

pytestmark = pytest.mark.runtime

WORKER = WORKERS / "scenarios.py"
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
    return launching.launch(WORKER, ranks, scenarios, TIMEOUT)


@pytest.fixture(scope="module")
def one_rank():
    return launch(1, ONE_RANK)


@pytest.fixture(scope="module")
def two_ranks():
    return launch(2, TWO_RANKS)


@pytest.fixture(scope="module")
def three_ranks():
    return launch(3, THREE_RANKS)


@pytest.mark.parametrize("name", ONE_RANK)
def test_one_rank(one_rank, name):
    check(one_rank, name, 1)


@pytest.mark.parametrize("name", TWO_RANKS)
def test_two_ranks(two_ranks, name):
    check(two_ranks, name, 2)


@pytest.mark.parametrize("name", THREE_RANKS)
def test_three_ranks(three_ranks, name):
    check(three_ranks, name, 3)
