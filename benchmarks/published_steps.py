"""The step estimate beside upstream's published DGX-A100 step times for its synthetic models.

Upstream (NVIDIA-Merlin/distributed-embeddings, examples/benchmarks/synthetic_models/
README.md, "Preliminary Benchmark Results") measured whole training steps on DGX-A100
(8 A100s per host) at a global batch of 65,536 with Adagrad, placed by its
``memory_balanced`` strategy with its benchmark's defaults (``dp_input`` false; the
large model with ``column_slice_threshold`` 1280 x 2^20). Those times include the dense
layers, the data pipeline and everything else a step does; the estimate counts the
embedding lookups and exchanges only, so it should come out below them. The ratio says
by how much.

    .venv/bin/python benchmarks/published_steps.py [--markdown]
"""

from __future__ import annotations

import argparse

from _report import ROOT, render

from planner import load_spec, make_plan

PUBLISHED_MS = {  # model: {GPUs: ms}
    "tiny": {8: 5.537, 16: 4.867},
    "small": {8: 17.203, 16: 12.461, 32: 11.839},
    "medium": {8: 63.393, 16: 46.636, 32: 37.732, 128: 27.329},
    "large": {32: 67.57, 128: 37.934},
    "jumbo": {128: 124.3},
}
THRESHOLDS = {"large": 1280 * 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    head = ["model", "GPUs", "published ms", "estimate ms", "estimate/published", "stages ms"]
    rows = []
    for model, times in PUBLISHED_MS.items():
        for world, published in times.items():
            spec = load_spec(
                ROOT / "configs" / f"synthetic_{model}.yaml",
                {
                    "world_size": world,
                    "strategy": "memory_balanced",
                    "dp_input": False,
                    "optimizer": "adagrad",
                    "global_batch_size": 65536,
                    "column_slice_threshold": THRESHOLDS.get(model),
                },
            )
            step = make_plan(spec).stats.step
            stages = ", ".join(
                f"{name} {seconds * 1000:.2f}"
                for name, seconds in step.stage_seconds.items()
                if seconds
            )
            estimate = step.step_seconds * 1000
            rows.append(
                [
                    model,
                    str(world),
                    f"{published:.3f}",
                    f"{estimate:.3f}",
                    f"{estimate / published:.2f}",
                    stages,
                ]
            )
    print(render(head, rows, args.markdown))


if __name__ == "__main__":
    main()
