"""Run a plan: the distributed embedding layer and its Horovod integration."""

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
    "ConcatOneHotEmbedding",
    "DistributedEmbedding",
    "DistributedGradientTape",
    "DistributedOptimizer",
    "Embedding",
    "broadcast_variables",
]
