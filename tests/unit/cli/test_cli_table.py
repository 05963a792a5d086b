"""The shared table printer."""

from __future__ import annotations

import pytest

from reconciler.cli._table import format_table


def test_columns_align_and_numbers_right_align():
    text = format_table(
        ("KIND", "NAMESPACE", "OBJECTS"),
        [("Deployment", "shop", 12), ("Namespace", None, 1)],
    )
    assert text.splitlines() == [
        "KIND         NAMESPACE   OBJECTS",
        "Deployment   shop             12",
        "Namespace    -                 1",
    ]


def test_an_empty_table_is_its_header_without_trailing_spaces():
    assert format_table(("A", "LONGER"), []) == "A   LONGER"


def test_rows_must_fit_the_header():
    with pytest.raises(ValueError, match="2 cells"):
        format_table(("A", "B", "C"), [("x", "y")])
