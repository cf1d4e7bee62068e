"""Errors the planner raises on purpose; each message is one line that says what to change."""


class PlannerError(Exception):
    """Base class: an expected failure with a message meant for the user, not a traceback."""


class SpecError(PlannerError):
    """The table spec (or an option that overrides it) is invalid."""


class PlanFileError(PlannerError):
    """A plan file cannot be read, does not match the schema, or is inconsistent."""

