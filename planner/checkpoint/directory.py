"""Checkpoint directories appear whole or not at all.

Writers fill a staging directory next to the target (``CKPT.partial-<token>``); the
manifest goes in last, and only then is the staging directory renamed into place. A
directory without a manifest is never read as a checkpoint, so a save killed at any
moment leaves the previous checkpoint as it was. Replacing an existing checkpoint
swaps the two directories in one ``renameat2(RENAME_EXCHANGE)`` where the filesystem
supports it; elsewhere the old one is renamed away first, and a reader that finds the
target missing in between takes the old one (``resolve``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import uuid
from pathlib import Path

from planner.checkpoint.errors import CheckpointError
from planner.checkpoint.manifest import MANIFEST, read_manifest

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
STEP_NAME = re.compile(r"^step-(\d+)$")
_LEFTOVER = re.compile(r"^(?P<target>.+)\.(?:partial|old|deleting)-[0-9a-f]+$")


def new_token() -> str:
    return uuid.uuid4().hex[:12]


def staging_path(target: Path, token: str) -> Path:
    return target.with_name(f"{target.name}.partial-{token}")


def check_target(target: Path) -> None:
    """Refuse to replace anything but a checkpoint (or an empty directory)."""
    if not target.exists():
        if not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        return
    if not target.is_dir():
        raise CheckpointError(f"{target}: exists and is not a directory; choose another path")
    if not (target / MANIFEST).exists() and any(target.iterdir()):
        raise CheckpointError(
            f"{target}: exists and is not a checkpoint (no {MANIFEST}); refusing to replace "
            f"it: remove it or choose another path"
        )


def fsync_tree(root: Path) -> None:
    """fsync every directory under ``root`` (files are fsynced by their writers)."""
    for folder, _, _ in os.walk(root):
        _fsync_directory(Path(folder))


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: Path, target: Path, exchange: bool = True, sync: bool = True) -> None:
    """Move a complete staging directory to ``target``, replacing a checkpoint there.

    With ``sync`` the directories are fsynced so the move survives a lost machine; the
    renames alone already make it atomic for every process that reads afterwards.
    """
    check_target(target)

    def settle() -> None:
        """Make the renames so far durable before anything old is deleted."""
        if sync:
            _fsync_directory(target.parent)

    if sync:
        fsync_tree(staging)
    if not target.exists():
        os.rename(staging, target)
    elif exchange and _exchange(staging, target):
        settle()
        remove(staging)  # now holds the replaced checkpoint
    else:
        old = target.with_name(f"{target.name}.old-{new_token()}")
        os.rename(target, old)
        os.rename(staging, target)
        settle()
        remove(old)
    settle()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system or filesystem cannot."""
    try:
        rename = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def remove(path: Path) -> None:
    """Delete a directory so that no reader can take it for complete meanwhile.

    It is renamed first (a name no reader looks for) so a crash half-way through the
    deletion leaves no directory with a manifest and missing pieces under a
    checkpoint's name.
    """
    doomed = path.with_name(f"{path.name}.deleting-{new_token()}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def remove_leftovers(target: Path) -> None:
    """Delete staging and replaced directories that interrupted saves left next to target."""
    for sibling in target.parent.glob(f"{target.name}.*"):
        match = _LEFTOVER.match(sibling.name)
        if match and match["target"] == target.name and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)


def resolve(target: Path) -> Path:
    """The directory to read for ``target``: itself, or, when a replace was interrupted
    between its two renames, the complete checkpoint it had renamed away."""
    if target.exists():
        return target
    for old in sorted(target.parent.glob(f"{target.name}.old-*")):
        if (old / MANIFEST).is_file():
            return old
    return target


def step_path(base: Path, step: int) -> Path:
    return base / f"step-{step:09d}"


def complete_steps(base: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete ``step-N`` checkpoint under ``base``, oldest first."""
    found = []
    if base.is_dir():
        for child in base.iterdir():
            match = STEP_NAME.match(child.name)
            if match and child.is_dir():
                try:
                    read_manifest(child)
                except CheckpointError:
                    continue
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(base: str | Path) -> Path | None:
    """The newest complete checkpoint a :func:`keep_last` series holds, or None."""
    steps = complete_steps(Path(base))
    return steps[-1][1] if steps else None


def keep_last(base: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and interrupted saves."""
    steps = complete_steps(base)
    for _, path in steps[: max(0, len(steps) - keep)]:
        remove(path)
    for child in base.iterdir():
        match = _LEFTOVER.match(child.name)
        if match and STEP_NAME.match(match["target"]) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
