"""Row splits over groups of ranks, on 4 ranks (two groups and all ranks) and on 3 ranks
(a group of two, a group of one and all ranks), against the single-process reference."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

import launching
from launching import WORKERS, check

pytestmark = pytest.mark.runtime

SCENARIOS = [
    "groups", "groups_function", "traffic",
    "host_sums", "host_sums_function", "host_sums_half", "host_sums_traffic",
    "host_sums_one_host_holds",
]


@pytest.fixture(scope="module", params=[3, 4])
def ranks(request):
    results = launching.launch(WORKERS / "row_groups.py", request.param, SCENARIOS, 300)
    return request.param, results


@pytest.mark.parametrize("name", SCENARIOS)
def test_row_groups(ranks, name):
    world, results = ranks
    check(results, name, world)
