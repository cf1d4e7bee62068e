"""A plan file's seal: the sha256 of the rest of the file, written when the plan passed
its checks.

``load_plan`` runs every consistency check a plan has, which for 20,000 tables on
4,096 ranks takes seconds, on every rank of a training job. A plan the planner wrote
was checked as it was written; its seal says so, and a loader that finds the rest of
the file unchanged (one hash of the text) need not check it again. A file edited by
hand, or written without the seal, is checked in full: every rank reads the same bytes,
so every rank decides alike.
"""

from __future__ import annotations

import hashlib
import re

_SEALED = re.compile(r'\A(\{\n  "format_version": \d+,\n)(  "seal": "sha256:([0-9a-f]{64})",\n)')


def sealed(text: str) -> str:
    """``text``, a plan as ``Plan.to_json`` writes it, with its seal after format_version."""
    start = text.index("\n", text.index("\n") + 1) + 1
    return f'{text[:start]}  "seal": "{text_digest(text)}",\n{text[start:]}'


def seal_holds(text: str) -> bool:
    """Whether ``text`` carries a seal and the rest of it is what was sealed."""
    found = _SEALED.match(text)
    if found is None:
        return False
    return text_digest(found.group(1) + text[found.end() :]) == f"sha256:{found.group(3)}"


def text_digest(text: str) -> str:
    """``sha256:`` and the hex sha256 of ``text``: a seal, and ``Plan.digest``."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
