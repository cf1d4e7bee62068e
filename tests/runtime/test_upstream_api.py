"""Upstream's interface of DistributedEmbedding on 2 and 3 ranks (see the worker):
its arguments and ``strategy`` lists, offload to the host, the hidden exchange anchor
under the tape and ``model.fit``, the "not divisible" error, and
regularizers and constraints."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from launching import WORKERS, check, launch

pytestmark = pytest.mark.runtime

SCENARIOS = ["arguments", "offload", "indivisible", "idle_fit", "regularized"]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}_ranks")
def world(request):
    return request.param, launch(WORKERS / "upstream_api.py", request.param, SCENARIOS, 400)


@pytest.mark.parametrize("name", SCENARIOS)
def test_upstream_api(world, name):
    ranks, results = world
    check(results, name, ranks)
