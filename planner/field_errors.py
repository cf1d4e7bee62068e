"""One line for a pydantic validation error: the field's path, what is wrong, the value.

Spec, plan, plan rank and checkpoint manifest errors all read this way, so that bad
input gets a line that names the field and the fix, never a pydantic dump.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from planner.errors import and_more, brief, shown


def describe_validation_error(
    exc: ValidationError, from_yaml: bool = False, model: type[BaseModel] | None = None
) -> str:
    """One line for the likeliest cause among the problems pydantic found (``first_problem``):
    field path, what is wrong, value seen; then how many more problems there are.

    ``from_yaml``: the data was read from YAML (a spec), whose number forms get a hint.
    ``model``: the model validated, whose keys an unknown key may be a misspelling of.
    """
    errors = exc.errors()
    first = first_problem(errors)
    field = _format_location(first["loc"])
    message = shown(first["msg"].removeprefix("Value error, "))
    if first["type"] == "value_error" and not field:
        text = message
    elif first["type"] == "missing":
        text = f"{field}: required field is missing; add it"
    elif first["type"] == "extra_forbidden":
        text = f"{field}: unknown key; {_spelling(first['loc'], errors, model)}"
    elif first["type"] == "invalid_key":  # a key that is no name (``1: x``), last in loc
        parent = _format_location(first["loc"][:-1])
        key = f"{parent}.{brief(first['input'])}" if parent else brief(first["input"])
        text = f"{key}: unknown key; remove it or check its spelling"
    elif first["type"] == "model_type":  # pydantic's text names the class of the part
        mapping = "a mapping of keys to values" if from_yaml else "a JSON object"
        text = f"{field}: expected {mapping} (got {brief(first['input'])})"
    else:
        value = first["input"]
        hint = _hint(first["type"], value, from_yaml)
        text = f"{field}: {message}{hint} (got {brief(value)})"
    return text + and_more(len(errors), "problem")


def first_problem(errors: list[ErrorDetails]) -> ErrorDetails:
    """The problem to show: an unknown key when there is one, since a misspelt key also
    makes the key it was meant to be missing, and the missing key alone hides the typo;
    otherwise pydantic's first."""
    return next((e for e in errors if e["type"] in _UNKNOWN_KEY), errors[0])


_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")  # a key no field has; a key that is no name


def problem_line(
    exc: ValidationError,
    source: str,
    options: Collection[str] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """For a spec: ``source: <the problem>``, or ``--option: <the problem>`` when the
    value at fault came from a command-line option (``options``: the top-level keys
    options set): the file named would not hold it."""
    text = describe_validation_error(exc, from_yaml=True, model=model)
    field = _top_field(exc)
    if field is not None and field in options:
        return f"{option_name(field)}: {text.removeprefix(f'{field}: ')}"
    return f"{source}: {text}"


def option_name(field: str) -> str:
    """The command-line option that sets a top-level field: ``--global-batch-size``."""
    return "--" + field.replace("_", "-")


def _top_field(exc: ValidationError) -> str | None:
    """The top-level key of the problem ``describe_validation_error`` shows: the first part
    of its location, or for a check of the whole model the key its message begins with
    (``global_batch_size: 1001 samples do not split ...``); None when there is neither."""
    first = first_problem(exc.errors())
    if first["loc"]:
        return str(first["loc"][0])
    head = first["msg"].removeprefix("Value error, ").split(":", 1)[0]
    return head if head.isidentifier() else None


def _spelling(
    loc: tuple[Any, ...], errors: list[ErrorDetails], model: type[BaseModel] | None
) -> str:
    """``did you mean width?`` when a key of the model at that place (or, without the
    model, a key missing beside the unknown one) is spelt like it."""
    keys = _keys_at(model, loc[:-1]) if model is not None else []
    keys = keys or [
        str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == loc[:-1]
    ]
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    return f"did you mean {close[0]}?" if close else "remove it or check its spelling"


def _keys_at(model: type[BaseModel] | None, path: tuple[Any, ...]) -> list[str]:
    """The keys of the model found by following ``path`` (field names; list positions
    are passed over) down from ``model``; empty where the path leads to no model."""
    for part in path:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or in a list or an optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


# What YAML 1.1 reads as a number and YAML 1.2 does not (or reads as another number).
_NUMBER_LIKE = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?::[0-9_]+)*|0[xXoObB][0-9a-fA-F_]+)$")


def _hint(kind: str, value: Any, from_yaml: bool) -> str:
    """How to write a value the field refused, when its form is the likely mistake."""
    number_like = isinstance(value, str) and _NUMBER_LIKE.match(value.strip())
    if kind == "int_type" and from_yaml and number_like:
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
