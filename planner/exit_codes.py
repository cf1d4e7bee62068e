"""The planner's exit codes: one table that `planner --help`, each command's help and the
README print, and that tests/test_exit_codes.py holds every command to."""

from __future__ import annotations

EXIT_CODES: dict[int, str] = {
    0: "success (diff: also when the plans differ, unless --exit-code)",
    1: "validate, checkpoint verify: problems found, one line each; diff --exit-code: the "
    "plans differ",
    2: "bad input or usage: one line on stderr, nothing written",
    3: "plan: a rank does not fit --device-memory or --host-memory; the plan is not written",
}
COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "plan": (0, 2, 3),
    "show": (0, 2),
    "validate": (0, 1, 2),
    "schema": (0,),
    "compare": (0, 2),
    "diff": (0, 1, 2),
    "checkpoint": (0, 1, 2),
}


def exit_codes_help(codes: tuple[int, ...] = tuple(EXIT_CODES)) -> str:
    """The exit codes as a help epilog (click keeps a paragraph starting with \\b as is)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {EXIT_CODES[code]}" for code in codes)
