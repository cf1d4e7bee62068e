"""Sharded checkpoints under horovodrun: resume on other world sizes, kills, bad input.

The scenarios are in ``workers/checkpoints.py`` (every rank prints ``OK name`` or
``FAIL name: reason``); saves are killed by ``workers/kill_save.py``.

* A chain of jobs, 2 -> 3 -> 2 -> 1 ranks, each under another strategy: every job
  restores the previous job's checkpoint, trains on, and must equal one process that
  took all the steps (tables and optimizer slots), for Keras 2.15 and legacy Adagrad
  and Adam. ``model.fit`` with the checkpoint callback resumes on 3 ranks likewise.
* Saves killed with SIGKILL at three points (and one of them in a save with
  ``durable=False``); a new job restores the previous checkpoint exactly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from launching import check, finish, scenario_results, start

pytestmark = pytest.mark.runtime

WORKERS = Path(__file__).parent / "workers"
TIMEOUT = 400

# (ranks, scenarios) per job, run in this order on one working directory.
CHAIN = [
    (2, ["stage0", "fit_save", "dtypes", "errors"]),
    (3, ["stage1", "fit_resume", "errors"]),
    (2, ["stage2"]),
    (1, ["stage3", "fit_epochs", "errors"]),
]
# (ranks, where the save is killed)
KILLS = [(2, "pieces"), (1, "publish"), (1, "publish_fast"), (1, "rename")]


def run_scenarios(ranks: int, workdir: Path, names: list[str]) -> dict[str, list[str]]:
    job = start(ranks, WORKERS / "checkpoints.py", str(workdir), *names)
    return scenario_results(finish(job, TIMEOUT), names)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chain")
    return [run_scenarios(ranks, workdir, names) for ranks, names in CHAIN]


@pytest.mark.parametrize(
    ("job", "name"), [(j, name) for j, (_, names) in enumerate(CHAIN) for name in names]
)
def test_chain(chain, job, name):
    check(chain[job], name, CHAIN[job][0])


def kill_while_saving(ranks: int, mode: str, workdir: Path) -> None:
    """Start kill_save.py, wait until it pauses inside the save, SIGKILL every rank."""
    job = start(ranks, WORKERS / "kill_save.py", str(workdir), mode)
    folder = workdir / mode
    deadline = time.monotonic() + TIMEOUT
    while not (folder / "paused").exists():  # waiting for an event, not papering over one
        if job.poll() is not None or time.monotonic() > deadline:
            output = finish(job, 10)
            raise AssertionError(f"{mode}: the save never paused:\n{output[-3000:]}")
        time.sleep(0.2)
    pids = [int(p.read_text()) for p in folder.glob("pid-*")]
    assert len(pids) == ranks
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    output = finish(job, 60)
    assert "the save was not killed" not in output


@pytest.fixture(scope="module")
def after_kills(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kills")
    for ranks, mode in KILLS:
        kill_while_saving(ranks, mode, workdir)
    leftovers = {mode: sorted(p.name for p in (workdir / mode).iterdir()) for _, mode in KILLS}
    return leftovers, run_scenarios(3, workdir, ["after_kill"])


def test_a_killed_save_leaves_its_staging_directory_beside_the_old_checkpoint(after_kills):
    leftovers, _ = after_kills
    staged = {mode: [n.split("-")[0] for n in names if n.startswith("ckpt")]
              for mode, names in leftovers.items()}
    assert staged["pieces"] == ["ckpt", "ckpt.partial"]
    assert staged["publish"] == ["ckpt", "ckpt.partial"]
    assert staged["publish_fast"] == ["ckpt", "ckpt.partial"]
    assert staged["rename"] == ["ckpt.old", "ckpt.partial"]  # cut between the two renames


def test_the_previous_checkpoint_restores_exactly_after_a_kill(after_kills):
    check(after_kills[1], "after_kill", 3)
