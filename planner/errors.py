"""Errors the planner raises on purpose; each message is one line that says what to change."""

import reprlib
import sys


class PlannerError(Exception):
    """Base class: an expected failure with a message meant for the user, not a traceback."""


class SpecError(PlannerError):
    """The table spec (or an option that overrides it) is invalid."""


class PlanFileError(PlannerError):
    """A plan file cannot be read, does not match the schema, or is inconsistent."""


class TooManyShards(SpecError):
    """The spec asks for more pieces than a plan may hold: what, and what to change, kept
    apart so capacity advice can name it as the reason a world size does not fit."""

    def __init__(self, diagnosis: str, advice: str):
        super().__init__(f"{diagnosis}; {advice}")
        self.diagnosis, self.advice = diagnosis, advice


class OutputPathError(PlannerError):
    """A path given to write a plan or a report to cannot be written there."""


def and_more(total: int, noun: str = "", then: str = "") -> str:
    """What follows the first of ``total`` problems when one line shows only it:
    `` (and 2 more problems; run planner validate)``, or nothing when it is the only one.
    One wording everywhere a loader stops at its first problem."""
    more = total - 1
    if more <= 0:
        return ""
    word = f" {noun}{'s' if more > 1 else ''}" if noun else ""
    return f" (and {more:,} more{word}{'; ' + then if then else ''})"


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


class _Brief(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        """An integer past Python's limit on converting to text (4,300 digits) has no
        ``repr``; a value quoted in an error line may be one, so say how long it is."""
        try:
            return super().repr_int(x, level)
        except ValueError:
            return f"an integer of more than {sys.get_int_max_str_digits():,} digits"


_BRIEF = _Brief()
_BRIEF.maxstring = 60
_BRIEF.maxother = 60
_BRIEF.maxlong = 40
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4
_BRIEF.maxlevel = 3
