"""Plans are pinned byte for byte: every bundled spec, every strategy, a few settings.

``tests/data/plan_pins.json`` holds the sha256 of the file ``save_plan`` writes for each
combination of

- a spec in ``configs/`` or ``examples/`` (each file is one test, named after it),
- a strategy: ``basic``, ``memory_balanced``, ``memory_optimized``, ``auto``,
- a setting: the spec as written (its own world size); world sizes 1, 8 and 64;
  ``dp_input: false``; and training costs (``adam``, ``device_memory``, a reserve,
  ``global_batch_size``, 4-byte ids, float16 embeddings), so the optimizer, capacity
  and traffic fields are pinned as well.

Code that only moves or reorganises the planner must leave every pin as it is. The 204
combinations take under ten seconds of CPU time together, so none is skipped.

When a change alters plans on purpose (a new plan field, a better placement), check
the new plans (``planner diff``), then rewrite the pins deliberately and commit them
with the change that explains them::

    PYTHONPATH=$PWD .venv/bin/python tests/test_plan_pins.py

The script prints every combination whose hash changed, appeared or disappeared.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from planner import Spec, load_spec, make_plan, save_plan

ROOT = Path(__file__).resolve().parent.parent
PINS = Path(__file__).resolve().parent / "data" / "plan_pins.json"
STRATEGY_NAMES = ("basic", "memory_balanced", "memory_optimized", "auto")
WORLD_SIZES = (1, 8, 64)
COSTS = {
    "optimizer": "adam",
    "device_memory": "16GiB",
    "memory_reserve": 0.1,
    "global_batch_size": 65536,
    "id_bytes": 4,
    "compute_dtype": "float16",
}


def spec_files() -> list[str]:
    """Every bundled spec, as a path relative to the repository root."""
    found = [*ROOT.glob("configs/*.yaml"), *ROOT.glob("examples/*.yaml")]
    return sorted(str(path.relative_to(ROOT)) for path in found)


def settings(spec: Spec) -> dict[str, dict[str, Any]]:
    """Each setting's name and the overrides that make it, the spec as written first."""
    result: dict[str, dict[str, Any]] = {"as written": {}}
    for world in WORLD_SIZES:
        if world != spec.world_size:
            result[f"world_size={world}"] = {"world_size": world}
    result["dp_input=false"] = {"dp_input": False}
    result["costs"] = COSTS
    return result


@cache
def _spec(path: str) -> Spec:
    return load_spec(ROOT / path)


def plan_hashes(path: str, folder: Path) -> dict[str, str]:
    """``"strategy | setting"`` -> sha256 of the saved plan, for one spec file."""
    spec = _spec(path)
    hashes = {}
    for setting, overrides in settings(spec).items():
        for strategy in STRATEGY_NAMES:
            variant = Spec.model_validate({**spec.model_dump(), **overrides, "strategy": strategy})
            target = folder / "plan.json"
            save_plan(make_plan(variant), target)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            hashes[f"{strategy} | {setting}"] = digest
    return hashes


def read_pins() -> dict[str, dict[str, str]]:
    return json.loads(PINS.read_text(encoding="utf-8"))


def changes(pinned: dict[str, str], now: dict[str, str]) -> list[str]:
    """One line per combination whose hash changed, appeared or disappeared."""
    lines = [f"changed: {key}" for key in pinned if key in now and now[key] != pinned[key]]
    lines += [f"new: {key}" for key in now if key not in pinned]
    lines += [f"gone: {key}" for key in pinned if key not in now]
    return lines


def test_every_bundled_spec_is_pinned() -> None:
    assert sorted(read_pins()) == spec_files(), (
        "bundled specs and pinned specs differ; regenerate the pins (see this module)"
    )


@pytest.mark.parametrize("path", spec_files())
def test_plans_are_byte_identical_to_the_pins(path: str, tmp_path: Path) -> None:
    pinned = read_pins().get(path, {})
    different = changes(pinned, plan_hashes(path, tmp_path))
    assert not different, f"{path}: plans differ from the pins:\n" + "\n".join(different)


def regenerate() -> None:
    """Rewrite the pins from the current code and print what changed."""
    old = read_pins() if PINS.exists() else {}
    with tempfile.TemporaryDirectory() as folder:
        new = {path: plan_hashes(path, Path(folder)) for path in spec_files()}
    for path in sorted({*old, *new}):
        for line in changes(old.get(path, {}), new.get(path, {})):
            print(f"{path}: {line}")
    PINS.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {PINS.relative_to(ROOT)}")


if __name__ == "__main__":
    regenerate()
