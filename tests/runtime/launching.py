"""How the runtime tests start Horovod jobs: the launcher, its environment, the repo root,
and the scenario workers' ``OK name`` / ``FAIL name: reason`` lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).parent / "workers"


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


def command(ranks: int, script: Path, *args: str) -> list[str]:
    """``script`` with ``args`` on ``ranks`` ranks; one rank needs no launcher (``hvd.init()``
    then makes a one-rank world)."""
    plain = [sys.executable, str(script), *args]
    if ranks == 1:
        return plain
    return [horovodrun(), "-np", str(ranks), "--gloo", "-H", f"localhost:{ranks}", *plain]


def start(ranks: int, script: Path, *args: str) -> subprocess.Popen:
    """Start a job in a session of its own, so that it can be killed whole."""
    return subprocess.Popen(
        command(ranks, script, *args), cwd=ROOT, env=launch_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float) -> str:
    """The job's output once it ends; killed whole (and said so) after ``timeout`` s."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n(timed out after {timeout} s)"
    return output


def scenario_results(output: str, names: list[str]) -> dict[str, list[str]]:
    """Per scenario, the lines every rank printed; ``__output__``: the output's tail;
    ``__lines__``: every line rank 0 printed, without the launcher's prefix."""
    results: dict[str, list[str]] = {name: [] for name in names}
    line = r"^(?:\[(\d+)\]<stdout>:)?((?:OK|FAIL) (\S+?)(?::.*)?)$"  # one rank: no prefix
    for match in re.finditer(line, output, re.M):
        name = match.group(3)
        if name in results:
            results[name].append(f"rank {match.group(1) or 0}: {match.group(2)}")
    results["__output__"] = [output[-4000:]]
    results["__lines__"] = re.findall(r"^(?:\[0\]<stdout>:)?(.*)$", output, re.M)
    return results


def launch(worker: Path, ranks: int, scenarios: list[str], timeout: int) -> dict[str, list[str]]:
    """Run a scenario worker on ``ranks`` ranks; per scenario, the lines every rank printed."""
    return scenario_results(finish(start(ranks, worker, *scenarios), timeout), scenarios)


def check(results: dict, name: str, ranks: int) -> None:
    """Every rank printed OK for the scenario."""
    lines = results[name]
    ok = [line for line in lines if ": OK " in line]
    assert len(ok) == ranks, "\n".join(lines) or results["__output__"][0]
