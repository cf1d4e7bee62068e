"""Rows of cells as an aligned text table or as Markdown: every report's tables.

Numbers are right-aligned so their digits line up; a column is a number column when
each of its cells starts with a digit or a minus (a dash for "none" included).
"""

from __future__ import annotations


def table_lines(head: list[str], body: list[list[str]], fmt: str = "table") -> list[str]:
    """Rows as an aligned text table (numbers right-aligned) or as Markdown."""
    return (_markdown if fmt == "markdown" else _aligned)(head, body)


def _aligned(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(head, *body, strict=True)]
    numeric = [all(_is_numeric(row[i]) for row in body) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [line(head), line(["-" * w for w in widths]), *[line(row) for row in body]]


def _markdown(head: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def _is_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] == "-")
