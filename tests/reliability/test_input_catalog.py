"""docs/reliability.md states the figures of the hostile-input and security suites as counted by
tests/reliability/input_catalog.py: fail when the two differ, so the document cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.input_catalog import CATALOG_FILE, ROWS, markdown

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"


def test_every_row_names_an_existing_test_and_a_count() -> None:
    for row in ROWS:
        assert (ROOT / row.test).is_file(), row.test
        assert row.tried > 0, row


def test_the_document_states_the_catalog_figures() -> None:
    text = DOC.read_text()  # the document is part of the repository: its absence is a failure
    assert CATALOG_FILE in text, "the document names the file that holds the counts"
    lines = [line for line in text.splitlines() if line.startswith("|")]
    problems: list[str] = []
    for row in ROWS:
        found = [line for line in lines if row.input_class in line and row.test in line]
        cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in found]
        if not any(f"{row.tried:,}" in line_cells for line_cells in cells):
            problems.append(f"{row.input_class[:60]}…: expected {row.tried:,} ({row.test})")
    assert problems == [], (
        "docs/reliability.md drifted; print the tables with python -m tests.reliability.input_catalog"
    )


def test_the_rendered_tables_carry_every_row() -> None:
    text = markdown()
    assert all(f"| {row.tried:,} |" in text for row in ROWS)
