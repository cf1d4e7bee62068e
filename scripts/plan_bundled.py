"""Plan every bundled spec a few ways and write the plans into one folder.

``scripts/test_planner.sh`` runs this under two environments (the runtime's, with numpy
1, and a light one with numpy 2 on the newest Python) and compares the two folders byte
for byte: a committed plan must not change with the environment that made it.

Usage: python scripts/plan_bundled.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from planner import load_spec, make_plan, save_plan

ROOT = Path(__file__).resolve().parents[1]
SPECS = [*sorted((ROOT / "configs").glob("*.yaml")), ROOT / "examples" / "dlrm_tiny.yaml"]
# Each variant exercises other code: upstream's rules as the spec asks, strategy auto
# with each objective, and the memory and traffic estimates (floats in the plan) on
# another world size.
VARIANTS: dict[str, dict] = {
    "spec": {},
    "auto": {"strategy": "auto"},
    # auto's time objective: its stage search draws random moves, which must not change
    "auto time": {"strategy": "auto", "device_memory": "80GiB", "global_batch_size": 65536},
    "estimates": {
        "strategy": "memory_optimized",
        "world_size": 16,
        "optimizer": "adam",
        "global_batch_size": 65536,
        "id_bytes": 4,
    },
}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for spec_path in SPECS:
        for variant, overrides in VARIANTS.items():
            plan = make_plan(load_spec(spec_path, overrides))
            save_plan(plan, out / f"{spec_path.stem}.{variant.replace(' ', '_')}.plan.json")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
