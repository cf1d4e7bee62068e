"""Custom embedding layers in DistributedEmbedding, on 1, 2 and 3 ranks (see the worker)."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from launching import WORKERS, check, launch

pytestmark = pytest.mark.runtime

SCENARIOS = ["constructor", "from_plan"]


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda n: f"{n}_ranks")
def world(request):
    return request.param, launch(WORKERS / "custom_layers.py", request.param, SCENARIOS, 300)


@pytest.mark.parametrize("name", SCENARIOS)
def test_custom_layers(world, name):
    ranks, results = world
    check(results, name, ranks)
