"""Sharded checkpoints of distributed embedding tables: format, checks and offline tools.

Numpy only. The training runtime writes and reads checkpoints through this package;
the ``planner checkpoint`` commands verify, describe, reshard and export them. The
format is described in ``docs/checkpoint.md``.
"""

from planner.checkpoint.blocks import Block, plan_blocks
from planner.checkpoint.directory import latest_checkpoint
from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.manifest import FORMAT_VERSION, WEIGHTS, Manifest
from planner.checkpoint.reshard import export_table, reshard, write_checkpoint
from planner.checkpoint.store import Checkpoint, TableView
from planner.checkpoint.verify import verify

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS",
    "Block",
    "Checkpoint",
    "CheckpointError",
    "Manifest",
    "TableView",
    "export_table",
    "latest_checkpoint",
    "plan_blocks",
    "reshard",
    "verify",
    "write_checkpoint",
]
