"""How the runtime tests start Horovod jobs: the launcher, its environment, the repo root.

A worker runs many scenarios in one job (TensorFlow takes seconds to import per rank),
and every rank prints ``OK name`` or ``FAIL name: reason`` per scenario. A world of one
rank needs no launcher: the worker runs as a plain process (``hvd.init()`` then makes a
one-rank world).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).parent / "workers"
TIMEOUT = 300


def horovodrun() -> str:
    candidate = Path(sys.executable).parent / "horovodrun"
    return str(candidate) if candidate.exists() else "horovodrun"


def launch_environment() -> dict[str, str]:
    """Quiet TensorFlow, one thread per rank (2 cores here), this checkout importable."""
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def launch(
    worker: str, ranks: int, scenarios: list[str], timeout: float = TIMEOUT
) -> dict[str, list[str]]:
    """Run ``workers/<worker>`` on ``ranks`` ranks; per scenario, the lines every rank
    printed about it; under ``__output__`` the output's tail, under ``__lines__`` all of
    rank 0's output lines (without the launcher's prefix)."""
    env = launch_environment()
    command = [sys.executable, str(WORKERS / worker), *scenarios]
    if ranks > 1:
        command = [horovodrun(), "-np", str(ranks), "--gloo", "-H", f"localhost:{ranks}", *command]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n(timed out after {timeout} s)"
    results: dict[str, list[str]] = {name: [] for name in scenarios}
    line = r"^(?:\[(\d+)\]<stdout>:)?((?:OK|FAIL) (\S+?)(?::.*)?)$"  # one rank: no prefix
    for match in re.finditer(line, output, re.M):
        name = match.group(3)
        if name in results:
            results[name].append(f"rank {match.group(1) or 0}: {match.group(2)}")
    results["__output__"] = [output[-4000:]]
    results["__lines__"] = re.findall(r"^(?:\[0\]<stdout>:)?(.*)$", output, re.M)
    return results


def check(results: dict, name: str, ranks: int) -> None:
    """Every rank reported ``OK name``."""
    lines = results[name]
    ok = [line for line in lines if ": OK " in line]
    assert len(ok) == ranks, "\n".join(lines) or results["__output__"][0]
