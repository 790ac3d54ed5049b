"""The README documents every column of sqlflow's state tables, in their order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dbt.adapters.sqlflow.state import _DDL

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_columns(table: str) -> list[tuple[str, str]]:
    """(column, type) rows of the README's table that follows the line starting `table`:."""
    text = README.read_text()
    found = re.search(
        rf"^`{table}`: .*?\n\n\| column \| type \| meaning \|\n"
        r"\|---\|---\|---\|\n((?:\|[^\n]*\n)+)",
        text,
        re.M | re.S,
    )
    assert found, f"README.md has no column table for {table}"
    return [
        (cells[0].strip("` "), cells[1].strip())
        for line in found.group(1).splitlines()
        for cells in [line.strip("|").split("|")]
    ]


@pytest.mark.parametrize("table", sorted(_DDL))
def test_readme_documents_each_state_column(table: str) -> None:
    ddl = [
        (parts[0], parts[1])
        for line in _DDL[table].strip().splitlines()
        for parts in [line.strip().rstrip(",").split()]
    ]
    assert documented_columns(table) == ddl
