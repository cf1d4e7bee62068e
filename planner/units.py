"""Units the spec and plan speak in: sizes in bytes, and optimizer state per weight.

Sizes are written as ``80GiB`` or ``80GB`` in specs and options and printed as
``1.50 GiB`` in previews; an optimizer is named in a spec and counted in a plan by the
state values it keeps per weight element. Nothing here reads a spec or a plan, so
every layer of the planner may use it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

Optimizer = Literal[
    "sgd",
    "momentum",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "lazy_adam",
    "nadam",
    "adamax",
    "lamb",
    "ftrl",
    "adadelta",
]

# State values kept per weight element. rmsprop counts its mean square only (momentum or
# centered=True would add one slot each); momentum covers Nesterov momentum too.
OPTIMIZER_SLOTS: dict[str, int] = {
    "sgd": 0,
    "momentum": 1,
    "adagrad": 1,
    "rmsprop": 1,
    "adam": 2,
    "adamw": 2,
    "lazy_adam": 2,
    "nadam": 2,
    "adamax": 2,
    "lamb": 2,
    "ftrl": 2,
    "adadelta": 2,
}
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
assert set(OPTIMIZERS) == set(OPTIMIZER_SLOTS)

_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
# A size's number, point and decimals included: 2^63 - 1 bytes has 19 digits, so
# more is a slip, and turning it into bytes would take long or overflow.
MAX_SIZE_DIGITS = 40
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def optimizer_slots(optimizer: str) -> int:
    return OPTIMIZER_SLOTS[optimizer]


def parse_size(value: str | int) -> int:
    """Bytes from a size: an integer, or a number with a unit (80GiB, 80GB, 512MiB, 1.5TiB).

    GB is 10**9 bytes, GiB is 2**30; units are case-insensitive. Fractions of a byte are
    dropped. Raises ValueError with the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size such as 80GiB, 80GB, 512MiB or a byte count")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive number of bytes")
        return value
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in {"", *_UNITS}:
        raise ValueError(
            "cannot read this as a size; write a byte count or a number with one of the "
            "units B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), "
            "e.g. 80GiB"
        )
    if len(match.group(1)) > MAX_SIZE_DIGITS:
        raise ValueError(
            f"a number of more than {MAX_SIZE_DIGITS} digits, where a size is at most "
            "2^63 - 1 bytes (19 digits); check it, or write it with a unit, e.g. 80GiB"
        )
    try:
        count = Decimal(match.group(1)) * _UNITS[unit or "b"]
    except InvalidOperation as exc:  # pragma: no cover - the pattern only lets numbers in
        raise ValueError("cannot read the number") from exc
    if int(count) <= 0:
        raise ValueError("must be at least one byte")
    return int(count)


def exact_size(count: int) -> str:
    """A positive byte count in the largest unit that writes it exactly (600KiB, 80GB,
    1234B): readable where a rounded ``human_bytes`` could hide a difference, and read
    back by ``parse_size``, so it can be given as an option's value."""
    for unit in ("TiB", "TB", "GiB", "GB", "MiB", "MB", "KiB", "KB"):
        if count % _UNITS[unit.lower()] == 0:
            return f"{count // _UNITS[unit.lower()]}{unit}"
    return f"{count}B"


def missing_unit_hint(count: int) -> str:
    """For a memory size no device has (under 1 MiB) that is not a whole number of KiB,
    most likely a bare number meant in GiB or MiB: a hint for the message that shows it;
    '' for any other size. A bare number stays bytes, as documented: this only
    names the likely slip."""
    if count >= 2**20 or count % 2**10 == 0:
        return ""
    meant = f"{count}GiB" if count < 2**10 else f"{count}MiB"
    return f"a bare number is bytes: did you mean {meant}?"


def milliseconds(seconds: float) -> str:
    """A time estimate as every report shows one: 1.234 ms (steps are milliseconds, and
    a microsecond is the finest difference the estimate can tell)."""
    return f"{seconds * 1000:.3f} ms"


def human_bytes(count: float) -> str:
    """Binary units, two decimals: 1.50 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
