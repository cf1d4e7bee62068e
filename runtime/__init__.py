"""Run a plan: the distributed embedding layer and its Horovod integration."""

from runtime import keras2  # noqa: F401  (first: fails at once without Keras 2)
from runtime.embedding import Embedding
from runtime.horovod_patches import (
    BroadcastGlobalVariablesCallback,
    DistributedGradientTape,
    DistributedOptimizer,
    broadcast_variables,
)
from runtime.layer import DistributedEmbedding

__all__ = [
    "BroadcastGlobalVariablesCallback",
    "DistributedEmbedding",
    "DistributedGradientTape",
    "DistributedOptimizer",
    "Embedding",
    "broadcast_variables",
]
