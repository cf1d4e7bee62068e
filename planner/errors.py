"""Errors the planner raises on purpose; each message is one line that says what to change."""

import reprlib


class PlannerError(Exception):
    """Base class: an expected failure with a message meant for the user, not a traceback."""


class SpecError(PlannerError):
    """The table spec (or an option that overrides it) is invalid."""


class PlanFileError(PlannerError):
    """A plan file cannot be read, does not match the schema, or is inconsistent."""


def shown(text: str) -> str:
    """``text`` as it is when every character prints, else its escaped ``repr``.

    Error lines carry paths and names from users; a newline or an escape code in one
    must not forge a second line or reach the terminal raw.
    """
    return text if text.isprintable() else repr(text)


def brief(value: object) -> str:
    """``repr(value)`` with control characters escaped and long parts cut.

    Only the first items of long lists, mappings and strings are shown, so quoting a
    value costs little even when the value is huge.
    """
    return _BRIEF.repr(value)


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = 60
_BRIEF.maxother = 60
_BRIEF.maxlong = 40
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4
_BRIEF.maxlevel = 3
