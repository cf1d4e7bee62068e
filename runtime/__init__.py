"""Run a plan: the distributed embedding layer and its Horovod integration."""

from runtime import keras2  # noqa: F401  (first: fails at once without Keras 2)
from runtime.checkpoint import restore_checkpoint, save_checkpoint
from runtime.checkpoint_callback import CheckpointCallback, latest_checkpoint
from runtime.dense_state import DenseState
from runtime.embedding import ConcatOneHotEmbedding, Embedding
from runtime.horovod_patches import (
    BroadcastGlobalVariablesCallback,
    DistributedGradientTape,
    DistributedOptimizer,
    broadcast_variables,
)
from runtime.layer import DistributedEmbedding

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "CheckpointCallback",
    "ConcatOneHotEmbedding",
    "DenseState",
    "DistributedEmbedding",
    "DistributedGradientTape",
    "DistributedOptimizer",
    "Embedding",
    "broadcast_variables",
    "latest_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]
