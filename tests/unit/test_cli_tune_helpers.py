"""cli_tune's pure helpers: relation names as dbt renders them."""

from __future__ import annotations

import pytest

from dbt.adapters.sqlflow.cli_tune import _relation_parts


@pytest.mark.parametrize(
    ("relation", "parts"),
    [
        ('"lake"."raw"."events"', ["lake", "raw", "events"]),
        ("lake.raw.events", ["lake", "raw", "events"]),
        ('"lake"."my.schema"."a ""quoted"" name"', ["lake", "my.schema", 'a "quoted" name']),
        ('"main"."t"', ["main", "t"]),
    ],
)
def test_relation_parts(relation: str, parts: list[str]) -> None:
    assert _relation_parts(relation) == parts
