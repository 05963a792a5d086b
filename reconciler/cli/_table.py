"""Aligned text tables for the CLI's human output (``validate``, ``status``, ``get``, ``history``).

Columns are left-aligned and separated by three spaces, as kubectl prints
them; numbers are right-aligned so they can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["format_table"]

_GAP = "   "


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The table as text: a header line, then one line per row, no trailing spaces."""
    cells = [[str(header) for header in headers]]
    numeric = [True] * len(headers)
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns")
        cells.append(["-" if value is None else str(value) for value in row])
        for index, value in enumerate(row):
            if not isinstance(value, int) or isinstance(value, bool):
                numeric[index] = False
    if len(cells) == 1:
        numeric = [False] * len(headers)
    widths = [max(len(line[index]) for line in cells) for index in range(len(headers))]
    lines = []
    for line in cells:
        parts = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(line, widths, numeric, strict=True)
        ]
        lines.append(_GAP.join(parts).rstrip())
    return "\n".join(lines)
