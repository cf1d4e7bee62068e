"""One line for a pydantic validation error: the field's path, what is wrong, the value.

Spec, plan, plan rank and checkpoint manifest errors all read this way, so that bad
input gets a line that names the field and the fix, never a pydantic dump.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from planner.errors import brief, shown


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first problem pydantic found: field path, what is wrong, value seen."""
    errors = exc.errors()
    first = errors[0]
    field = _format_location(first["loc"])
    message = shown(first["msg"].removeprefix("Value error, "))
    if first["type"] == "value_error" and not field:
        text = message
    elif first["type"] == "missing":
        text = f"{field}: required field is missing; add it"
    elif first["type"] == "extra_forbidden":
        text = f"{field}: unknown key; remove it or check its spelling"
    else:
        value = first["input"]
        text = f"{field}: {message}{_hint(first['type'], value)} (got {brief(value)})"
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


# What YAML 1.1 reads as a number and YAML 1.2 does not (or reads as another number).
_NUMBER_LIKE = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?::[0-9_]+)*|0[xXoObB][0-9a-fA-F_]+)$")


def _hint(kind: str, value: Any) -> str:
    """How to write a value the field refused, when its form is the likely mistake."""
    if kind == "int_type" and isinstance(value, str) and _NUMBER_LIKE.match(value.strip()):
        return (
            "; write a plain decimal integer (010, 0x10, 1_000 and 1:30 are refused: "
            "YAML 1.1 and 1.2 read them as different numbers)"
        )
    if kind == "bool_type" and isinstance(value, str):
        return "; write true or false"
    return ""


def _format_location(loc: tuple[Any, ...]) -> str:
    """``tables[1].rows``; a key that is not a plain word is shown quoted and escaped."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            word = str(part)
            word = word if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", word) else brief(word)
            text += ("." if text else "") + word
    return text
