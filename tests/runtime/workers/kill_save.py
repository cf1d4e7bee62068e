"""A save killed part-way: ``[horovodrun -np N] python kill_save.py WORKDIR MODE``.

Trains a step, saves a complete checkpoint, records its contents, trains another step
and saves again to the same directory, but pauses that second save at one point and
waits there to be killed (SIGKILL, from the test). MODE says where:

* ``pieces``: the last rank, after writing three of its pieces;
* ``publish``: rank 0, with every piece and the manifest written, before the staging
  directory is moved into place;
* ``publish_fast``: the same, in a save with ``durable=False`` (nothing fsynced);
* ``rename``: rank 0, where ``renameat2`` is unavailable, between renaming the old
  checkpoint away and renaming the new one in.

Every rank writes its process id to ``WORKDIR/MODE/pid-<rank>`` first; the pausing rank
writes ``WORKDIR/MODE/paused`` when it stops.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
from checkpoints import SPEC, initial_tables, plan_for, train

import planner.checkpoint.directory as directory
import runtime
import runtime.checkpoint
from planner.checkpoint import Checkpoint
from runtime import DistributedEmbedding


def pause(folder: Path) -> None:
    (folder / "paused").write_text("paused")
    time.sleep(600)  # until killed; the test fails long before this ends


def install_pause(mode: str, folder: Path) -> None:
    if mode == "pieces" and hvd.rank() == hvd.size() - 1:
        save_piece = runtime.checkpoint.save_piece
        written = []

        def save_then_maybe_pause(*args, **kwargs):
            written.append(save_piece(*args, **kwargs))
            if len(written) == 3:
                pause(folder)
            return written[-1]

        runtime.checkpoint.save_piece = save_then_maybe_pause
    elif mode in ("publish", "publish_fast") and hvd.rank() == 0:
        publish = runtime.checkpoint.publish

        def pause_then_publish(*args, **kwargs):
            pause(folder)
            publish(*args, **kwargs)

        runtime.checkpoint.publish = pause_then_publish
    elif mode == "rename" and hvd.rank() == 0:
        directory._exchange = lambda a, b: False
        rename = os.rename
        target = folder / "ckpt"

        def rename_then_maybe_pause(src, dst):
            rename(src, dst)
            if Path(src) == target:
                pause(folder)

        directory.os.rename = rename_then_maybe_pause


def main(workdir: Path, mode: str) -> None:
    folder = workdir / mode
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"pid-{hvd.rank()}").write_text(str(os.getpid()))
    plan = plan_for(SPEC, "basic")
    layer = DistributedEmbedding.from_plan(plan, name="kill")
    layer.build(None)
    optimizer = tf.keras.optimizers.Adam(0.05)
    layer.set_weights(initial_tables(plan))
    train(layer, optimizer, plan, range(1))
    runtime.save_checkpoint(folder / "ckpt", layer, optimizer)
    if hvd.rank() == 0:
        saved = Checkpoint.open(folder / "ckpt")
        np.savez(folder / "expected.npz", **{
            f"{t.name}/{slot}": saved.view(t.name, slot)[:, :]
            for t in plan.tables for slot in saved.manifest.slots
        })
    train(layer, optimizer, plan, range(1, 2))
    install_pause(mode, folder)
    runtime.save_checkpoint(folder / "ckpt", layer, optimizer, durable=mode != "publish_fast")
    print("the save was not killed", flush=True)


if __name__ == "__main__":
    hvd.init()
    main(Path(sys.argv[1]), sys.argv[2])
