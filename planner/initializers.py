"""Keras 2.15's built-in initializers: every name Keras accepts and each one's arguments.

The runtime builds each table with ``tf.keras.initializers.get(initializer)`` when
training starts, on every GPU; an unknown name or a bad argument would stop the job
there. So specs and plans are checked against this table when they are read, without
importing TensorFlow. ``tests/runtime/test_initializers.py`` compares the table with
the installed Keras (names, argument names, and that every accepted form builds), so
the two cannot drift apart unnoticed.

An initializer is a name (``uniform``, ``GlorotUniform``, ``glorot_uniform``) or a
mapping ``{class_name: NAME, config: {ARGUMENT: VALUE, ...}}`` as Keras serializes it
(``module: keras.initializers`` and ``registered_name: null``, which Keras 2.15 writes,
may be present).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

INT64_MAX = 2**63 - 1


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    return None


def _positive(value: Any) -> str | None:
    problem = _number(value)
    return problem or (None if value > 0 else "must be a positive number")


def _seed(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT64_MAX:
        return "must be an integer (a 64-bit seed) or null"
    return None


def _one_of(*choices: str, fold_case: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        seen = value.lower() if fold_case and isinstance(value, str) else value
        return None if seen in choices else f"must be one of {', '.join(choices)}"

    return check


Check = Callable[[Any], "str | None"]  # None when the value is fine, else the problem

_SEEDED = {"seed": _seed}
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")

# Keras' initializer classes and their constructors' arguments (keras/src/initializers/
# initializers.py in Keras 2.15): what each accepts, and what makes it fail.
ARGUMENTS: dict[str, dict[str, Check]] = {
    "Zeros": {},
    "Ones": {},
    "Constant": {"value": _number},  # "Only scalar values are allowed."
    "RandomUniform": {"minval": _number, "maxval": _number, **_SEEDED},
    "RandomNormal": {"mean": _number, "stddev": _number, **_SEEDED},
    "TruncatedNormal": {"mean": _number, "stddev": _number, **_SEEDED},
    "VarianceScaling": {
        "scale": _positive,  # Keras raises for scale <= 0
        "mode": _one_of("fan_in", "fan_out", "fan_avg"),
        "distribution": _one_of(*_DISTRIBUTIONS, fold_case=True),  # Keras lowercases it
        **_SEEDED,
    },
    "Orthogonal": {"gain": _number, **_SEEDED},
    "Identity": {"gain": _number},
    "GlorotNormal": _SEEDED,
    "GlorotUniform": _SEEDED,
    "HeNormal": _SEEDED,
    "HeUniform": _SEEDED,
    "LecunNormal": _SEEDED,
    "LecunUniform": _SEEDED,
}


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


# Every name keras.initializers.get() resolves to a built-in: the class names, their
# snake_case forms, the V2 compatibility aliases and four short names.
NAMES: dict[str, str] = {
    **{name: name for name in ARGUMENTS},
    **{_snake_case(name): name for name in ARGUMENTS},
    **{f"{name}V2": name for name in ARGUMENTS},
    **{
        f"{_snake_case(name)}V2": name
        for name in ARGUMENTS
        if name.startswith(("Glorot", "He", "Lecun"))
    },
    "normal": "RandomNormal",
    "uniform": "RandomUniform",
    "one": "Ones",
    "zero": "Zeros",
}

_MAPPING_KEYS = ("class_name", "config", "module", "registered_name")
_EXAMPLE = "a Keras initializer name such as 'uniform', or {class_name: NAME, config: {...}}"


def check_initializer(value: Any) -> Any:
    """``value`` unchanged when Keras 2.15 builds it; else ValueError saying what to fix."""
    if isinstance(value, str):
        _class_of(value)
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected {_EXAMPLE}")
    unknown = [key for key in value if key not in _MAPPING_KEYS]
    if unknown or "class_name" not in value:
        raise ValueError(
            f"expected {_EXAMPLE}" + (f"; {unknown[0]!r} is not one of its keys" if unknown else "")
        )
    if "config" not in value:
        raise ValueError("config is missing; write config: {} for the defaults")
    if value.get("module", "keras.initializers") != "keras.initializers":
        raise ValueError("module must be keras.initializers (or left out)")
    if value.get("registered_name") is not None:
        raise ValueError("registered_name names a custom initializer; leave it null or out")
    name = value["class_name"]
    if not isinstance(name, str):
        raise ValueError(f"class_name must be {_EXAMPLE.removeprefix('a Keras initializer ')}")
    _check_config(_class_of(name), value["config"])
    return value


def _class_of(name: str) -> str:
    if name in NAMES:
        return NAMES[name]
    folded = {known.lower(): known for known in NAMES}
    close = [folded[name.lower()]] if name.lower() in folded else []
    close += difflib.get_close_matches(name, list(NAMES), n=2)
    hint = f"; did you mean {' or '.join(map(repr, dict.fromkeys(close)))}?" if close else ""
    raise ValueError(
        f"{name!r} is not a Keras initializer{hint} (names are case-sensitive: "
        "uniform, normal, zeros, ones, glorot_uniform, he_normal, ...)"
    )


def _check_config(class_name: str, config: Any) -> None:
    if not isinstance(config, dict):
        raise ValueError("config must be a mapping of the initializer's arguments")
    arguments = ARGUMENTS[class_name]
    for key, argument in config.items():
        if key not in arguments:
            takes = ", ".join(arguments) or "no arguments"
            raise ValueError(f"{class_name} has no argument {key!r}; it takes {takes}")
        problem = arguments[key](argument)
        if problem:
            raise ValueError(f"config.{key} of {class_name} {problem}")
