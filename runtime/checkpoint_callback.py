"""Checkpoints during ``model.fit``: every N steps or epochs, the last K kept.

Each save is a complete checkpoint in ``DIRECTORY/step-<optimizer step>``: the
distributed embedding's pieces and optimizer slots, and the rest of the model with its
optimizer state (:class:`runtime.DenseState`). A save killed half-way leaves only a
staging directory, which is never taken for a checkpoint and is deleted by the next
save; :func:`latest_checkpoint` names the newest complete one to resume from.
"""

from __future__ import annotations

from pathlib import Path

import horovod.tensorflow as hvd
import tensorflow as tf

from planner.checkpoint.directory import keep_last, latest_checkpoint, step_path
from runtime.checkpoint import save_checkpoint
from runtime.dense_state import DenseState
from runtime.layer import DistributedEmbedding

__all__ = ["CheckpointCallback", "latest_checkpoint"]


class CheckpointCallback(tf.keras.callbacks.Callback):
    """Save the whole training state every ``every_steps`` steps and/or ``every_epochs``
    epochs into ``directory/step-N``, keeping the newest ``keep``.

    ``layer`` is the model's distributed embedding (found in the model when it has
    exactly one). Use it on every rank, like the other Horovod callbacks. ``durable``
    is :func:`runtime.save_checkpoint`'s: False trades safety against a lost machine
    for not waiting on the disk.
    """

    def __init__(
        self,
        directory,
        every_steps: int | None = None,
        every_epochs: int | None = 1,
        keep: int = 3,
        layer: DistributedEmbedding | None = None,
        durable: bool = True,
    ):
        super().__init__()
        if not every_steps and not every_epochs:
            raise ValueError("pass every_steps, every_epochs or both")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.every_steps = every_steps
        self.every_epochs = every_epochs
        self.keep = keep
        self.layer = layer
        self.durable = durable
        self._dense: DenseState | None = None
        self._last_step: int | None = None
        self._seen = 0

    def on_train_begin(self, logs=None):
        self._seen = self._step()

    def on_train_batch_end(self, batch, logs=None):
        # Steps multiple of every_steps, also when a batch end covers several steps
        # (steps_per_execution) or training resumed at any step.
        step = self._step()
        if self.every_steps and step // self.every_steps > self._seen // self.every_steps:
            self.save(step)
        self._seen = step

    def on_epoch_end(self, epoch, logs=None):
        if self.every_epochs and (epoch + 1) % self.every_epochs == 0:
            self.save(self._step())

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def save(self, step: int) -> Path | None:
        """Save now as ``step-<step>`` (once per step), then delete the oldest beyond K."""
        if step == self._last_step:
            return None
        optimizer = self.model.optimizer
        if self._dense is None:
            self._dense = DenseState(self.model, optimizer)
        path = save_checkpoint(
            step_path(self.directory, step),
            self._embedding(),
            optimizer,
            dense=self._dense,
            durable=self.durable,
        )
        self._last_step = step
        if hvd.rank() == 0:
            keep_last(self.directory, self.keep)
        return path

    def _embedding(self) -> DistributedEmbedding:
        if self.layer is None:
            found = [m for m in self.model.submodules if isinstance(m, DistributedEmbedding)]
            if len(found) != 1:
                raise ValueError(
                    f"the model has {len(found)} distributed embedding layers; pass the one "
                    f"to save as layer="
                )
            self.layer = found[0]
        return self.layer
