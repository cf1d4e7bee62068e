"""Save and restore the distributed embedding as a sharded checkpoint, on every rank.

Each rank writes only the pieces it holds (and their optimizer slots); nothing is
gathered. Restoring, each rank reads only the rows and columns its own plan gives it,
from whichever pieces hold them, so a job resumes under any plan of the same tables:
another world size, strategy or thresholds. The format and its guarantees are in
``docs/checkpoint.md``; reading and writing files is :mod:`planner.checkpoint`'s, this
module adds the variables, the optimizer and the agreement between ranks.

Agreement: every rank checks what it can alone (the checkpoint's tables against its
plan, the files and checksums it will read, its optimizer), then the ranks exchange
their findings in one small all-gather, and either all go on or all raise the same
error. Nothing is assigned before that, so a bad checkpoint never leaves a half
restored layer, and no rank waits forever for another that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from planner.checkpoint.blocks import Block, plan_blocks
from planner.checkpoint.directory import (
    check_target,
    new_token,
    publish,
    remove,
    remove_leftovers,
    resolve,
    staging_path,
)
from planner.checkpoint.errors import CheckpointError, raise_first, tables_listed_by
from planner.checkpoint.manifest import (
    CHECKSUM_BLOCK_BYTES,
    STORAGE_DTYPES,
    WEIGHTS,
    FileEntry,
    Manifest,
    OptimizerEntry,
    PieceEntry,
)
from planner.checkpoint.npyfile import crc_problem, fsync_files
from planner.checkpoint.reshard import open_for_reading
from planner.checkpoint.store import Checkpoint, read_problems
from planner.checkpoint.verify import table_problems
from planner.checkpoint.writing import (
    CHUNK_BYTES,
    file_entry,
    save_piece,
    save_plan_file,
    write_manifest,
)
from planner.plan import Plan
from runtime import slots
from runtime.dense_state import DENSE_DIR, DENSE_PREFIX, DenseState
from runtime.weights import Piece, host_view, variable_pieces, variable_rows, write_pieces

T = TypeVar("T")


def save_checkpoint(directory, layer, optimizer=None, *, dense=None, durable=True) -> Path:
    """Save the layer's tables (and ``optimizer``'s state for them) to ``directory``.

    Call it on every rank, eagerly (not inside ``tf.function``). Each rank writes its
    own pieces; rank 0 writes the plan, ``dense`` (a :class:`runtime.DenseState` or a
    ``tf.train.Checkpoint`` of the rest of the model) and, last, the manifest, then
    moves the directory into place. An existing checkpoint at ``directory`` is
    replaced atomically; anything else there is refused. Returns the directory.

    ``durable`` (the default) fsyncs every file and directory before the checkpoint is
    published, so it survives a lost machine (power, kernel). ``durable=False`` returns
    once the bytes are in the page cache: the save is as atomic for a killed process,
    but a machine lost before the kernel writes the bytes back (about 30 s on Linux)
    may lose this checkpoint and the one it replaced.
    """
    target = Path(directory)
    _require_eager("save_checkpoint")
    if not layer.built:
        layer.build(None)
    plan, rank = layer.plan, hvd.rank()

    def prepare() -> str:
        check_target(target)
        token = new_token()
        staging_path(target, token).mkdir(parents=True)
        return token

    token, problem = _attempt(prepare) if rank == 0 else (None, None)
    token, problem = hvd.broadcast_object((token, problem), 0, name="de_checkpoint_prepare")
    _raise(problem)
    staging = staging_path(target, token)
    variables = layer.table_variables()

    def write_mine() -> tuple[list[PieceEntry], OptimizerEntry | None]:
        entry, per_variable = _optimizer_state(optimizer, variables)
        pieces = _write_pieces(staging, plan, rank, variables, per_variable)
        if durable:
            fsync_files(staging / piece.file for piece in pieces)
        return pieces, entry

    written, problem = _attempt(write_mine)
    results = hvd.allgather_object((written, problem), name="de_checkpoint_pieces")
    problem = _first_problem([p for _, p in results]) or _optimizer_disagreement(results)

    def finish() -> None:
        _raise(problem)
        pieces = [piece for done, _ in results for piece in done[0]]
        entry = next((done[1] for done, _ in results if done[1] is not None), None)
        files = [save_plan_file(staging, plan, CHECKSUM_BLOCK_BYTES, durable)]
        if dense is not None:
            files += _write_dense(staging, dense, durable)
        write_manifest(staging, plan, entry, pieces, files, CHECKSUM_BLOCK_BYTES, durable)
        publish(staging, target, sync=durable)
        remove_leftovers(target)

    if rank == 0:
        _, final = _attempt(finish)
        if final:
            remove(staging)
    else:
        final = None
    _raise(hvd.broadcast_object(final, 0, name="de_checkpoint_publish"))
    return target


def restore_checkpoint(directory, layer, optimizer=None, *, dense=None, verify=True):
    """Restore the layer's tables (and ``optimizer``'s state) from ``directory``.

    Call it on every rank, eagerly. The checkpoint may come from any plan of the same
    tables: each rank reads the rows and columns it holds now. With ``optimizer``, its
    slots for the layer's variables and its step count are restored too; slots it has
    not created yet (a Keras 2.15 optimizer before its first step) are filled when it
    creates them. ``dense`` is read from the checkpoint as saved. With ``verify`` (the
    default) every file block read is checked against its checksum first. Returns the
    step count stored in the checkpoint, restoring the optimizer or not (the input
    pipeline continues from it either way); None when it was saved without one.
    """
    _require_eager("restore_checkpoint")
    if not layer.built:
        layer.build(None)
    plan, rank = layer.plan, hvd.rank()
    variables = layer.table_variables()
    pieces = variable_pieces(plan, rank)

    def check() -> Checkpoint:
        checkpoint = open_for_reading(resolve(Path(directory)))
        manifest = checkpoint.manifest
        raise_first(table_problems(manifest, plan, str(checkpoint.path)),
                    others=tables_listed_by(checkpoint.path))
        names = _slot_names(manifest, optimizer, variables, checkpoint.path)
        requests = [
            (plan.tables[p.table].name, name, p.rows, p.cols)
            for var_pieces in pieces
            for p in var_pieces
            if p.shape[0] and p.shape[1]
            for name in (WEIGHTS, *names)
        ]
        raise_first(read_problems(checkpoint, requests, checksums=verify))
        if dense is not None:
            raise_first(_dense_problems(checkpoint, dense), others="")  # each says why
        return checkpoint

    checkpoint, problem = _attempt(check)
    _raise(_first_problem(hvd.allgather_object(problem, name="de_checkpoint_check")))
    manifest = checkpoint.manifest
    write_pieces(variables, pieces, _Views(checkpoint, plan, WEIGHTS), _chunk())
    step = None if manifest.optimizer is None else manifest.optimizer.iterations
    if optimizer is not None:
        _restore_slots(checkpoint, plan, optimizer, variables, pieces)
        optimizer.iterations.assign(step)
    if dense is not None:
        dense.read(str(checkpoint.path / DENSE_PREFIX))
    return step


# --- shared by both ----------------------------------------------------------------


def _require_eager(what: str) -> None:
    if not tf.executing_eagerly():
        raise RuntimeError(f"{what} runs eagerly, not inside tf.function; call it between steps")


def _attempt(work: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a rank's local part; an exception becomes a message for the agreement.

    Every exception is caught on purpose: a rank that raised alone would leave the
    others waiting in the next collective forever.
    """
    try:
        return work(), None
    except CheckpointError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"rank {hvd.rank()}: {type(exc).__name__}: {exc}"


def _raise(problem: str | None) -> None:
    if problem:
        raise CheckpointError(problem)


def _first_problem(problems: list[str | None]) -> str | None:
    """The first rank's problem: every rank raises this same message."""
    return next((p for p in problems if p), None)


def _chunk() -> int:
    """Elements per variable update: a chunk's bytes for the widest (4-byte) dtype."""
    return CHUNK_BYTES // 4


# --- saving ------------------------------------------------------------------------


def _optimizer_state(
    optimizer, variables: list[tf.Variable]
) -> tuple[OptimizerEntry | None, list[dict[str, tf.Variable]]]:
    """The optimizer's name, slot names and step count, and each variable's slots."""
    if optimizer is None:
        return None, [{} for _ in variables]
    if slots.is_legacy(optimizer):
        slots.create_slots(optimizer, variables)  # for variables without a gradient yet
    elif not slots.is_built(optimizer):
        raise CheckpointError(
            "the optimizer has not taken a step, so its state does not exist yet; save "
            "after the first step, or without the optimizer"
        )
    per_variable = [slots.slots_of(optimizer, var) for var in variables]
    names = list(per_variable[0]) if per_variable else []
    for var, found in zip(variables, per_variable, strict=True):
        if set(found) != set(names):
            raise CheckpointError(
                f"the optimizer holds slots {sorted(found)} for {var.name} but {names} for "
                f"{variables[0].name}; build it with all the model's trainable variables"
            )
        for name, slot in found.items():
            if slot.shape != var.shape:
                raise CheckpointError(
                    f"slot {name!r} of {var.name} is shaped {slot.shape}, not like its "
                    f"variable {var.shape}; only such slots can be cut by the plan"
                )
    if WEIGHTS in names:
        raise CheckpointError(f"the optimizer has a slot named {WEIGHTS!r}, a reserved name")
    entry = OptimizerEntry(
        name=type(slots.unwrap(optimizer)).__name__,
        slots=names,
        iterations=int(optimizer.iterations.numpy()),
    )
    return (entry if variables else None), per_variable


def _optimizer_disagreement(results: list) -> str | None:
    """Ranks whose variables have different slot names cannot make one manifest."""
    entries = {
        (e.name, tuple(e.slots), e.iterations)
        for done, _ in results
        if done is not None and (e := done[1]) is not None
    }
    if len(entries) > 1:
        return f"the ranks' optimizers differ: {sorted(entries)}; use the same one everywhere"
    return None


def _write_pieces(
    staging: Path,
    plan: Plan,
    rank: int,
    variables: list[tf.Variable],
    per_variable: list[dict[str, tf.Variable]],
) -> list[PieceEntry]:
    """Write the pieces this rank saves (plan_blocks decides which), and their slots;
    the caller fsyncs them all at the end, so the kernel writes one back while the
    next is made."""
    mine = {(b.table, b.rows, b.cols) for b in plan_blocks(plan) if b.rank == rank}
    written = []
    for var, found, var_pieces in zip(
        variables, per_variable, variable_pieces(plan, rank), strict=True
    ):
        for piece in var_pieces:
            table = plan.tables[piece.table]
            if (table.name, piece.rows, piece.cols) not in mine:
                continue
            block = Block(table.name, piece.rows, piece.cols, rank)
            storage = np.dtype(STORAGE_DTYPES[table.dtype])
            for name, source in [(WEIGHTS, var), *found.items()]:
                chunks = _variable_rows(source, piece, storage)
                written.append(save_piece(
                    staging, plan, block, name, chunks, CHECKSUM_BLOCK_BYTES, sync=False
                ))
    return written


def _variable_rows(var: tf.Variable, piece: Piece, storage: np.dtype) -> Iterator[np.ndarray]:
    """The piece's rows of ``var`` in chunks, as stored (bfloat16 as its raw bits).

    In host memory each chunk is a slice of the variable's own buffer
    (:func:`runtime.weights.host_view`): checksummed and written with no copy made
    first. On a GPU each chunk is one gather of its rows
    (:func:`runtime.weights.variable_rows`), never a read of the whole variable.
    """
    rows, cols = piece.shape
    step = max(1, CHUNK_BYTES // (cols * storage.itemsize))
    view = host_view(var)
    for start in range(0, rows, step):
        first, last = piece.var_row + start, piece.var_row + min(start + step, rows)
        chunk = view[first:last] if view is not None else variable_rows(var, first, last)
        yield np.asarray(chunk).view(storage)


def _write_dense(staging: Path, dense, sync: bool) -> list[FileEntry]:
    dense.write(str(staging / DENSE_PREFIX))
    return [
        file_entry(staging, path.relative_to(staging).as_posix(), CHECKSUM_BLOCK_BYTES, sync)
        for path in sorted((staging / DENSE_DIR).rglob("*"))
        if path.is_file()
    ]


# --- restoring ---------------------------------------------------------------------


def _slot_names(manifest: Manifest, optimizer, variables, path: Path) -> list[str]:
    """The slots to restore: the checkpoint's, if the optimizer is of the same kind."""
    if optimizer is None:
        return []
    saved = manifest.optimizer
    if saved is None:
        raise CheckpointError(
            f"{path}: holds no optimizer state (saved without an optimizer); restore with "
            f"optimizer=None"
        )
    name = type(slots.unwrap(optimizer)).__name__
    if slots.is_legacy(optimizer):
        slots.create_slots(optimizer, variables)  # what its first step would create
    if name != saved.name:
        raise CheckpointError(
            f"{path}: holds {saved.name} state but the optimizer is {name}; restore with "
            f"{saved.name} as the optimizer, or with optimizer=None for the weights alone"
        )
    for var in variables:
        have = slots.slots_of(optimizer, var)
        if have and set(have) != set(saved.slots):
            raise CheckpointError(
                f"{path}: holds slots {saved.slots} but the optimizer has {sorted(have)} "
                f"for {var.name}; configure it as when it was saved"
            )
    return saved.slots


def _dense_problems(checkpoint: Checkpoint, dense) -> list[str]:
    files = [f for f in checkpoint.manifest.files if f.file.startswith(DENSE_DIR + "/")]
    if not files:
        return [f"{checkpoint.path}: holds no dense model state (saved without dense=)"]
    block = checkpoint.manifest.checksum_block_bytes
    problems = [
        p for f in files
        if (p := crc_problem(checkpoint.path / f.file, f.bytes, f.crc32, block))
    ]
    if not problems and isinstance(dense, DenseState):
        problems = dense.problems(str(checkpoint.path / DENSE_PREFIX))
    return problems


class _Views:
    """Table index -> a view of that table's ``slot`` in the checkpoint, made on demand,
    shaped like the global arrays ``write_pieces`` cuts from."""

    def __init__(self, checkpoint: Checkpoint, plan: Plan, slot: str):
        self.checkpoint, self.plan, self.slot = checkpoint, plan, slot
        self._views = {}

    def __getitem__(self, table: int):
        if table not in self._views:
            spec = self.plan.tables[table]
            view_as = tf.as_dtype(spec.dtype).as_numpy_dtype
            self._views[table] = self.checkpoint.view(spec.name, self.slot, view_as)
        return self._views[table]


@dataclass
class _PendingSlots:
    """Slots of one variable to fill from a checkpoint when the optimizer creates them."""

    checkpoint: Checkpoint
    plan: Plan
    pieces: list[Piece]
    remaining: set[str]


# (id of the slot-owning optimizer, variable reference) -> slots still to fill.
_PENDING: dict[tuple[int, object], _PendingSlots] = {}


def _restore_slots(checkpoint, plan, optimizer, variables, pieces) -> None:
    """Fill the slots that exist now; the others when the optimizer creates them."""
    names = checkpoint.manifest.optimizer.slots
    owner = id(slots.unwrap(optimizer))
    for var, var_pieces in zip(variables, pieces, strict=True):
        have = slots.slots_of(optimizer, var)
        if have:
            for name in names:
                write_pieces([have[name]], [var_pieces], _Views(checkpoint, plan, name), _chunk())
        elif names:
            _PENDING[owner, var.ref()] = _PendingSlots(checkpoint, plan, var_pieces, set(names))


def _fill_created_slot(optimizer, var, name, slot) -> None:
    key = (id(optimizer), var.ref())
    pending = _PENDING.get(key)
    if pending is None:
        return
    if name not in pending.remaining:
        raise CheckpointError(
            f"{pending.checkpoint.path}: the optimizer creates slot {name!r} for {var.name}, "
            f"which the checkpoint does not hold ({pending.checkpoint.manifest.slots[1:]})"
        )
    write_pieces([slot], [pending.pieces], _Views(pending.checkpoint, pending.plan, name), _chunk())
    pending.remaining.discard(name)
    if not pending.remaining:
        del _PENDING[key]


slots.add_listener(_fill_created_slot)
