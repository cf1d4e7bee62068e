"""The manifest: what a checkpoint holds, written last, so its presence means complete.

A checkpoint directory holds ``plan.json`` (the plan it was written under),
``pieces/`` (one ``.npy`` file per piece of a table or of an optimizer slot) and
``manifest.json``. Pieces are addressed by table name, row range and column range,
never by a rank's variables, so any plan of the same tables can find the values it
needs. The pydantic models here are the manifest's schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.checkpoint.errors import CheckpointError
from planner.field_errors import describe_validation_error
from planner.files import read_text
from planner.parsing import JsonRefused, json_syntax_problem, parse_json
from planner.plan import GroupName
from planner.spec_fields import DTYPE_BYTES, DType

FORMAT = "embedding-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PLAN = "plan.json"
PIECES = "pieces"
# The slot name of the weights themselves; optimizer slots use the optimizer's names.
WEIGHTS = "weights"
# Files are checksummed in blocks of this size, so a reader of a row range checks only
# the blocks it reads.
CHECKSUM_BLOCK_BYTES = 64 * 2**20
# The most a manifest may be, read or written. Every restoring rank parses the whole
# manifest, as it does the plan, so it has the plan's cap: about 270 bytes a piece
# makes room for some 4 million pieces, and a file past it (a damaged or substituted
# one, a link to a device) is refused before it is read.
MAX_MANIFEST_BYTES = 2**30

# numpy has no bfloat16: its pieces are stored as the raw 16 bits (uint16).
STORAGE_DTYPES: dict[str, str] = {"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}

Range = tuple[int, int]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FileEntry(_Frozen):
    """A file of the checkpoint: its size, and a crc32 per checksum block."""

    file: str = Field(description="Path relative to the checkpoint directory, '/'-separated.")
    bytes: int = Field(ge=0)
    crc32: list[int] = Field(description="crc32 of each checksum block of the file, in order.")

    @model_validator(mode="after")
    def _relative(self) -> FileEntry:
        parts = self.file.split("/")
        if self.file.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"file {self.file!r} must be a plain relative path")
        return self


class PieceEntry(FileEntry):
    """Rows [r0, r1) and columns [c0, c1) of one table's weights or optimizer slot."""

    table: str
    slot: str = Field(description=f"'{WEIGHTS}', or the optimizer's name for the slot.")
    rows: Range
    cols: Range
    rank: int = Field(ge=0, description="The rank that wrote it (informational).")

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]


class TableEntry(_Frozen):
    name: str
    rows: int = Field(gt=0)
    width: int = Field(gt=0)
    dtype: DType
    group: GroupName

    @property
    def itemsize(self) -> int:
        return DTYPE_BYTES[self.dtype]


class OptimizerEntry(_Frozen):
    """The optimizer whose state the checkpoint holds."""

    name: str = Field(description="Class name, e.g. Adam or Adagrad (legacy or not).")
    slots: list[str] = Field(description="Slot names per table element, e.g. ['m', 'v'].")
    iterations: int = Field(ge=0, description="Steps taken; restored so schedules continue.")


class Manifest(_Frozen):
    """Everything a reader needs; the file is written last."""

    format: Literal["embedding-checkpoint"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    world_size: int = Field(ge=1, description="Ranks of the plan the pieces were written under.")
    fingerprint: str = Field(description="The plan's spec fingerprint.")
    checksum: Literal["crc32"] = "crc32"
    checksum_block_bytes: int = Field(CHECKSUM_BLOCK_BYTES, gt=0)
    optimizer: OptimizerEntry | None = None
    tables: list[TableEntry]
    pieces: list[PieceEntry]
    files: list[FileEntry] = Field(description=f"Other files: {PLAN}, dense model state.")

    @property
    def slots(self) -> list[str]:
        """Every slot the pieces cover: the weights, then the optimizer's."""
        return [WEIGHTS, *(self.optimizer.slots if self.optimizer else [])]

    def table(self, name: str) -> TableEntry:
        return next(t for t in self.tables if t.name == name)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"


def piece_file(table_index: int, table: str, slot: str, rows: Range, cols: Range) -> str:
    """A piece's file name: readable, unique per (table, slot, rows, cols), safe anywhere."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", table)[:60]
    return (
        f"{PIECES}/{table_index:05d}-{safe}/"
        f"{_safe(slot)}.r{rows[0]}-{rows[1]}.c{cols[0]}-{cols[1]}.npy"
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def read_manifest(directory: Path) -> Manifest:
    """Parse and schema-check ``directory/manifest.json``; one-line errors naming it.

    Read as plans are (``planner.files``): at most ``MAX_MANIFEST_BYTES``, text only, no
    key twice, no nesting past what the parser can take, so that a damaged manifest is
    one line rather than a crash or a process that fills its memory.
    """
    path = directory / MANIFEST
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise CheckpointError(f"{directory}: {what}; pass a checkpoint directory")
    if not path.exists():
        raise CheckpointError(
            f"{path}: missing: not a complete checkpoint (a save that did not finish, or "
            f"not a checkpoint at all)"
        )
    text = read_text(path, MAX_MANIFEST_BYTES, "a checkpoint manifest", "manifest",
                     CheckpointError)
    try:
        raw = parse_json(text, "a checkpoint manifest")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: {json_syntax_problem(exc)}; the file is damaged") from exc
    except JsonRefused as exc:
        raise CheckpointError(f"{path}: not a checkpoint manifest ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint manifest (no format {FORMAT!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {raw.get('format_version')!r} is not supported (this "
            f"version reads {FORMAT_VERSION})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise CheckpointError(f"{path}: {describe_validation_error(exc)}") from exc
