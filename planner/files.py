"""Reading and writing the files people hand the planner: bounded, and never a traceback.

A spec or a plan may be anything: a typo, a binary, ``/dev/zero``, a plan edited by
hand. Everything here reads within fixed limits and turns what it refuses into one
sentence, so the loaders in ``spec.py`` and ``plan.py`` can name the file and stop
(what is read is then parsed by ``parsing.py``, within limits of its own):

- **size**: at most ``limit`` bytes are read, whatever the file claims to be (a device
  or a pipe has no size to check in advance); a NUL byte or bytes that are not UTF-8
  stop the reading at the first chunk that holds them;
- **writing**: through a temporary name renamed over the target, so no reader sees
  part of a file and a failed write leaves the old one;
- **outputs**: the paths given to write to are checked before any work
  (``check_output``).
"""

from __future__ import annotations

import codecs
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from planner.errors import OutputPathError, PlannerError, shown

MAX_SPEC_BYTES = 32 * 2**20
MAX_PLAN_BYTES = 1 * 2**30
MAX_LIST_ITEMS = 200_000  # entries of one YAML list (a spec's tables or inputs) or a plan's
MAX_SHARDS = 500_000  # table-parallel pieces a plan may hold (each a shard in its file)
_CHUNK = 2**20


def read_text(path: Path, limit: int, kind: str, noun: str, error: type[PlannerError]) -> str:
    """The file's text, read ``_CHUNK`` bytes at a time and never more than ``limit``.

    ``kind`` names what the file should be ("a YAML spec"), ``noun`` what to call it
    ("spec"); problems raise ``error`` with one line naming the file.
    """
    name = shown(str(path))
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise error(_too_large(name, noun, limit))
            return _read_capped(handle, limit, name, kind, noun, error)
    except OSError as exc:
        raise error(f"{name}: cannot read the {noun} ({exc.strerror or exc})") from exc


def _read_capped(
    handle: Any, limit: int, name: str, kind: str, noun: str, error: type[PlannerError]
) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, total = [], 0
    while chunk := handle.read(min(_CHUNK, limit + 1 - total)):
        try:
            parts.append(decoder.decode(chunk))
        except UnicodeDecodeError as exc:
            raise error(f"{name}: not {kind} (not UTF-8 text)") from exc
        if (nul := chunk.find(b"\0")) >= 0:
            raise error(f"{name}: not {kind} (binary data: a NUL byte at byte {total + nul})")
        total += len(chunk)
        if total > limit:
            raise error(_too_large(name, noun, limit))
    try:
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not {kind} (not UTF-8 text)") from exc
    return "".join(parts)


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes in UTF-8, counted without encoding it when it is ASCII (a
    plan or manifest of thousands of ranks nearly always is: only names may not be)."""
    return len(text) if text.isascii() else len(text.encode())


def too_large_to_write(text: str, limit: int, noun: str) -> str | None:
    """Why ``text`` is not written as a ``noun`` of at most ``limit`` bytes, or None.

    Files are capped on reading (``read_text``); one over its reader's cap is refused
    before it is written, so nothing is left for nobody to read back.
    """
    size = utf8_size(text)
    if size <= limit:
        return None
    return (
        f"the {noun} would be {size / 2**20:,.1f} MiB, more than the {limit // 2**20:,} MiB "
        f"a {noun} may be"
    )


def write_atomically(text: str, path: Path, sync: bool = False) -> None:
    """A temp file in ``path``'s folder renamed over it, removed if anything fails; or
    straight into ``path`` when it is a device or FIFO (/dev/stdout: nothing to rename).

    ``sync`` makes the file durable before the rename (a checkpoint's manifest, whose
    presence says the checkpoint is complete); a plan is rewritten from its spec.
    """
    if path.exists() and not path.is_file():
        path.write_text(text, encoding="utf-8")
        return
    # the temporary name stays short: any name the folder takes leaves room for it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes it private; files are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _too_large(name: str, noun: str, limit: int) -> str:
    return (
        f"{name}: larger than {limit // 2**20:,} MiB, the most a {noun} may be; "
        f"check that this is the {noun} you meant"
    )


# --- where outputs go ------------------------------------------------------------------


def same_file(one: str | Path, other: str | Path) -> bool:
    """Whether two paths name one file: through symlinks and hard links when both exist
    (same device and inode), by their resolved paths when one is still to be written.
    ``os.path.realpath`` stops at a symlink loop (``Path.resolve`` raises on one): such
    a path is no input's, and its reader or writer says why it cannot be used."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (or cannot be read: its reader says so)
        return os.path.realpath(one) == os.path.realpath(other)


def check_output(path: str | Path, option: str, inputs: Iterable[str | Path] = ()) -> Path:
    """``path`` as a Path, once a file can be written there without touching ``inputs``;
    OutputPathError naming it (or ``option``) and the fix otherwise.

    Commands write their files last, a plan and then its report; a path that cannot be
    written, found only when its turn comes, would leave the first file written where
    exit code 2 promises nothing was. So every path is checked before any work: its
    folder is a folder and takes new files, and the path is not a folder, a symlink
    loop or a name too long.
    """
    text = str(path)
    if text == "":
        raise OutputPathError(f"{option}: an empty file name; name the file to write")
    if text == "-":
        raise OutputPathError(
            f"{option} -: this file would mix with what the command prints on standard "
            f"output; name a file ({option} ./- for one called -)"
        )
    target, name = Path(text), shown(text)
    folder = shown(str(target.parent))
    try:
        if not stat.S_ISDIR(os.stat(target.parent).st_mode):
            raise OutputPathError(
                f"{name}: {folder} is a file, not a folder; name a file in a folder"
            )
    except FileNotFoundError as exc:
        raise OutputPathError(f"{name}: folder {folder} does not exist; create it first") from exc
    except OSError as exc:
        raise OutputPathError(
            f"{name}: cannot use folder {folder} ({exc.strerror}); name another folder"
        ) from exc
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG  # to be created, as a file is replaced: in its folder
    except OSError as exc:
        raise OutputPathError(
            f"{name}: cannot write there ({exc.strerror}); name another file"
        ) from exc
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"{name}: is a folder; name a file in it")
    if stat.S_ISREG(mode) and not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{name}: cannot write in folder {folder} (permission denied)")
    for other in inputs:
        if same_file(target, other):
            raise OutputPathError(
                f"{name}: {option} would overwrite {shown(str(other))}; name another file"
            )
    return target
