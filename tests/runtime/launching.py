"""How the runtime tests start Horovod jobs: the launcher, its environment, the repo root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
