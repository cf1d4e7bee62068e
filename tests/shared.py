"""Test inputs and helpers several test modules use.

SMALL, placed by hand (two ranks, round-robin "basic"):
  a 100 x 8 float32 =  800 elements, 3200 B
  b  50 x 8 float32 =  400 elements, 1600 B
  c  10 x 4 float16 =   40 elements,   80 B
  d  20 x 8 float32 =  160 elements,  640 B
rank 0 gets a and c (widths differ: 2 weights), 840 elements, 3280 B;
rank 1 gets b and d (same width and config: fused into 1 weight), 560 elements, 2240 B.
Total 5520 B (5.39 KiB), mean 2760 B (2.70 KiB), imbalance 3280 / 2760 = 1.188;
rank 1 holds 2240 / 3280 = 68.3% of the largest rank.

RICH has every group: a row-sliced table, table-parallel ones, a data-parallel one, a
table read by two inputs, a global batch size and a device memory.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner, Result

from planner.cli import main

SMALL_YAML = """\
world_size: 2
strategy: basic
tables:
  - {name: a, rows: 100, width: 8}
  - {name: b, rows: 50, width: 8}
  - {name: c, rows: 10, width: 4, dtype: float16}
  - {name: d, rows: 20, width: 8}
"""

SMALL = {
    "world_size": 2,
    "strategy": "basic",
    "tables": [
        {"name": "a", "rows": 100, "width": 8},
        {"name": "b", "rows": 50, "width": 8},
        {"name": "c", "rows": 10, "width": 4, "dtype": "float16"},
        {"name": "d", "rows": 20, "width": 8},
    ],
}

# Two ranks (basic): s (10 x 1, 40 B) is data-parallel, r (100 x 2, 800 B) row-sliced
# (400 B per rank), a (50 x 2, 400 B) on rank 0 and b (25 x 2, 200 B) on rank 1. Every
# rank holds 440 B that CPU offload cannot move.
ROWS_AND_REPLICAS = {
    "world_size": 2,
    "data_parallel_threshold": 10,
    "row_slice_threshold": 200,
    "tables": [
        {"name": "s", "rows": 10, "width": 1},
        {"name": "r", "rows": 100, "width": 2},
        {"name": "a", "rows": 50, "width": 2},
        {"name": "b", "rows": 25, "width": 2},
    ],
}


@contextmanager
def time_limit(seconds: int):
    """Fail instead of hanging (upstream's slicing loops forever on negative thresholds)."""

    def fail(signum, frame):
        raise TimeoutError(f"planning took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(*args: object) -> Result:
    """Run the ``planner`` command line in this process, as a user would type it."""
    return CliRunner().invoke(main, [str(arg) for arg in args])


def rank_lines(text: str) -> list[list[str]]:
    """The rows of the per-rank table in the text preview, split on whitespace."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "shards"])
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


# a (1000 x 4) is row-sliced over both ranks: rank 0 rows 0:500, rank 1 rows 500:1000;
# b (10 x 4) is table-parallel on rank 0, d (20 x 4) on rank 1; c (2 x 4) is
# data-parallel; d is read by two inputs. 1 MiB of device memory is plenty.
RICH = {
    "world_size": 2,
    "row_slice_threshold": 3000,
    "data_parallel_threshold": 8,
    "global_batch_size": 8,
    "device_memory": "1MiB",
    "tables": [
        {"name": "a", "rows": 1000, "width": 4, "combiner": "sum"},
        {"name": "b", "rows": 10, "width": 4},
        {"name": "c", "rows": 2, "width": 4},
        {"name": "d", "rows": 20, "width": 4, "combiner": "sum"},
    ],
    "inputs": [
        {"name": "a", "table": "a"},
        {"name": "b", "table": "b"},
        {"name": "c", "table": "c"},
        {"name": "d1", "table": "d"},
        {"name": "d2", "table": "d", "hotness": 3},
    ],
}


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: a file's bytes (its size, past 1 MiB), a symlink's
    target, or a folder; equal before and after, nothing there was written."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            size = path.stat().st_size
            found[key] = ("big", size) if size > 2**20 else path.read_bytes()
        else:
            found[key] = "dir"
    return found
