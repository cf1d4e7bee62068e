"""examples/train.py trains under horovodrun with the committed plan: the README's flow."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("horovod.tensorflow")

from launching import ROOT, horovodrun, launch_environment

pytestmark = pytest.mark.runtime


def test_example_trains_on_two_ranks() -> None:
    command = [
        horovodrun(), "-np", "2", "--gloo", "-H", "localhost:2",
        sys.executable, "examples/train.py",
        "--plan", "examples/dlrm_tiny.plan.json", "--steps", "30",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=launch_environment(), capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"\[0\]<stdout>:step +\d+ +loss ([\d.]+)", done.stdout)]
    assert len(losses) == 4, done.stdout[-3000:]
    assert losses[-1] < losses[0] - 0.1  # it learns the hidden click rule
