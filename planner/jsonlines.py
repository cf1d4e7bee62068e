"""JSON written for review: nested structure indented, each small record on one line.

``json.dumps(indent=2)`` spends a line on every number of a range and every key of a
shard, so a plan with tens of thousands of shards runs to tens of megabytes that no one
reads. Here a *record* (an object or array holding only scalars and arrays of scalars,
an object of at most ``RECORD_KEYS`` keys) is written on one line, everything above it
indented: a shard, a table or a fused member is one line in a diff. The output is
deterministic (keys in the given order).
"""

from __future__ import annotations

import json
from typing import Any

_ONE_LINE = {"separators": (", ", ": "), "ensure_ascii": False}


def dumps(value: Any) -> str:
    """``value`` (parsed JSON: dicts, lists, scalars) as indented text with one-line records."""
    parts: list[str] = []
    _write(value, "", parts)
    return "".join(parts)


RECORD_KEYS = 8  # objects with more keys than this get a line per key


def _is_record(value: Any) -> bool:
    if isinstance(value, dict) and len(value) > RECORD_KEYS:
        return False
    items = value.values() if isinstance(value, dict) else value
    return all(
        not isinstance(item, (dict, list))
        or (isinstance(item, list) and not any(isinstance(x, (dict, list)) for x in item))
        for item in items
    )


def _write(value: Any, pad: str, parts: list[str]) -> None:
    if not isinstance(value, (dict, list)) or not value or _is_record(value):
        parts.append(json.dumps(value, **_ONE_LINE))
        return
    inner = pad + "  "
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    parts.append(opening + "\n")
    items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
    for index, (key, item) in enumerate(items):
        parts.append(inner)
        if key is not None:
            parts.append(json.dumps(key, ensure_ascii=False) + ": ")
        _write(item, inner, parts)
        parts.append(",\n" if index < len(items) - 1 else "\n")
    parts.append(pad + closing)
