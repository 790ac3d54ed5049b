"""catalog.py: sqlflow's figures as table stats in dbt's catalog."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import agate
import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlflow_testing import Recorder

from dbt.adapters.sqlflow.catalog import (
    STAT_LABELS,
    split_relation,
    stats_by_relation,
    utc_text,
    with_sqlflow_stats,
)
from dbt.adapters.sqlflow.sql import quote_identifier
from dbt.adapters.sqlflow.state import LoadRow, PartitionInfo, StateStore


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- relation names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relation", "expected"),
    [
        ('"db"."main"."events"', ("db", "main", "events")),
        ("memory.main.events", ("memory", "main", "events")),
        ('DB.Main."Events"', ("db", "main", "events")),
        ('"my.db"."s"."t.1"', ("my.db", "s", "t.1")),
        ('"a""b"."Order Lines"', ('a"b', "order lines")),
        ('""."main"', ("", "main")),
        ("events", ("events",)),
    ],
)
def test_split_relation(relation: str, expected: tuple[str, ...]) -> None:
    assert split_relation(relation) == expected


NAMES = st.text(st.characters(exclude_characters="\x00"), max_size=12)


@given(
    st.lists(
        NAMES.filter(lambda n: not n.startswith('"') and not n.endswith('"')),
        min_size=1,
        max_size=4,
    )
)
def test_split_relation_reads_back_quoted_names(names: list[str]) -> None:
    relation = ".".join(quote_identifier(n) for n in names)
    assert split_relation(relation) == tuple(n.lower() for n in names)


@pytest.mark.parametrize("name", ['a"', '"a', '"'])
def test_split_relation_keeps_a_double_quote_at_a_name_edge(name: str) -> None:
    relation = f'"db"."main".{quote_identifier(name)}'
    assert split_relation(relation) == ("db", "main", name)


# -- figures from the state tables -------------------------------------------------------------

EVENTS = '"memory"."main"."events"'
PLAIN = '"memory"."main"."plain"'


def load(relation: str, finished: str, watermark: str | None) -> LoadRow:
    return LoadRow(
        load_id=f"{relation}-{finished}",
        invocation_id="inv-1",
        model="model.proj." + split_relation(relation)[-1],
        relation=relation,
        strategy="append",
        started_at=dt(finished),
        finished_at=dt(finished),
        watermark_after=watermark,
    )


@pytest.fixture
def state() -> StateStore:
    """A real state store in an in-memory DuckDB with loads and partitions of two tables."""
    store = StateStore(Recorder(duckdb.connect()))
    store.ensure()
    store.record_load(load(EVENTS, "2025-01-02T12:00", "2025-01-02T10:00:00"))
    store.record_load(load(EVENTS, "2025-01-03T12:00", "2025-01-03T16:00:00"))
    store.upsert_partitions(
        EVENTS,
        [
            PartitionInfo("2025-01-02", dt("2025-01-02"), dt("2025-01-03"), 3),
            PartitionInfo("2025-01-03", dt("2025-01-03"), dt("2025-01-04"), 4),
            PartitionInfo("2025-01-04", dt("2025-01-04"), dt("2025-01-05"), 0),
        ],
    )
    # A table with loads but neither partitions nor a watermark.
    store.record_load(load(PLAIN, "2025-01-01T08:30", None))
    # Partitions without a load are no catalog figures.
    store.upsert_partitions('"memory"."main"."other"', [PartitionInfo("x", row_count=5)])
    return store


EXPECTED_STATS = {
    ("memory", "main", "events"): {
        "sqlflow_partitions": "3",
        "sqlflow_rows": "7",
        "sqlflow_last_load": "2025-01-03 12:00:00 UTC",
        "sqlflow_watermark": "2025-01-03 16:00:00 UTC",
    },
    ("memory", "main", "plain"): {"sqlflow_last_load": "2025-01-01 08:30:00 UTC"},
}


def test_stats_by_relation_from_the_state_tables(state: StateStore) -> None:
    assert stats_by_relation(state.catalog_stats()) == EXPECTED_STATS


def test_stats_by_relation_keeps_zero_and_drops_none() -> None:
    rows = [('"d"."s"."t"', 0, 0, None, None), ('"d"."s"."u"', None, None, None, None)]
    assert stats_by_relation(rows) == {
        ("d", "s", "t"): {"sqlflow_partitions": "0", "sqlflow_rows": "0"},
        ("d", "s", "u"): {},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A load's finish time as DuckDB returns it, and a watermark as the state keeps it:
        # one format, to the second (fractions cut, never rounded up).
        (datetime(2026, 12, 4, 18, 6, 29, 601407), "2026-12-04 18:06:29 UTC"),
        ("2025-01-15T00:00:00", "2025-01-15 00:00:00 UTC"),
        ("2025-01-15T00:00:00.999999", "2025-01-15 00:00:00 UTC"),
        ("2025-01-15T02:00:00+02:00", "2025-01-15 00:00:00 UTC"),
        (datetime.fromisoformat("2025-01-15T01:00:00+01:00"), "2025-01-15 00:00:00 UTC"),
        ("2025-01-15", "2025-01-15 00:00:00 UTC"),
        ("not a time", "not a time"),
        (None, None),
    ],
)
def test_utc_text(value: Any, expected: str | None) -> None:
    assert utc_text(value) == expected


def test_last_load_and_watermark_share_one_format() -> None:
    rows = [('"d"."s"."t"', 1, 2, datetime(2026, 12, 4, 18, 6, 29, 601407), "2025-01-15T00:00:00")]
    figures = stats_by_relation(rows)[("d", "s", "t")]
    assert figures["sqlflow_last_load"] == "2026-12-04 18:06:29 UTC"
    assert figures["sqlflow_watermark"] == "2025-01-15 00:00:00 UTC"


def test_stats_by_relation_without_state() -> None:
    store = StateStore(Recorder(duckdb.connect()))
    assert store.catalog_stats() == []
    assert stats_by_relation([]) == {}


# -- dbt's catalog table -----------------------------------------------------------------------

CATALOG_COLUMNS = [
    "table_database",
    "table_schema",
    "table_name",
    "table_type",
    "table_comment",
    "column_name",
    "column_index",
    "column_type",
    "column_comment",
    "table_owner",
]
CATALOG_TYPES = [agate.Text()] * 6 + [agate.Number()] + [agate.Text()] * 3


def catalog(rows: list[list[Any]]) -> agate.Table:
    return agate.Table(rows, CATALOG_COLUMNS, CATALOG_TYPES)


def column(schema: str, table: str, name: str, index: int, data_type: str) -> list[Any]:
    """One row of dbt's catalog table (database ``memory``)."""
    return ["memory", schema, table, "BASE TABLE", None, name, index, data_type, None, None]


CATALOG_ROWS = [
    column("main", "Events", "id", 1, "INTEGER"),
    column("main", "Events", "event_ts", 2, "TIMESTAMP"),
    column("main", "plain", "id", 1, "INTEGER"),
    column("other", "events", "id", 1, "INTEGER"),
]


def figures(found: dict[str, str]) -> list[Any]:
    """The four stats columns per figure, as a row shows them."""
    return [
        value
        for stat, (label, description) in STAT_LABELS.items()
        for value in (label, found.get(stat), description, stat in found)
    ]


def test_with_sqlflow_stats(state: StateStore) -> None:
    out = with_sqlflow_stats(catalog(CATALOG_ROWS), state.catalog_stats())

    stats = [
        f"stats:{stat}:{part}"
        for stat in STAT_LABELS
        for part in ("label", "value", "description", "include")
    ]
    assert list(out.column_names) == [*CATALOG_COLUMNS, *stats]
    new_types = [agate.Text, agate.Text, agate.Text, agate.Boolean] * 4
    assert [type(t) for t in out.column_types] == [type(t) for t in CATALOG_TYPES] + new_types
    # Matched by database, schema and name, case-insensitively ("Events" is events).
    events = figures(EXPECTED_STATS[("memory", "main", "events")])
    plain = figures(EXPECTED_STATS[("memory", "main", "plain")])
    expected = [
        [*CATALOG_ROWS[0], *events],
        [*CATALOG_ROWS[1], *events],
        [*CATALOG_ROWS[2], *plain],
        [*CATALOG_ROWS[3], *figures({})],
    ]
    for row in expected:
        row[6] = Decimal(row[6])  # agate's Number
    assert [list(row.values()) for row in out.rows] == expected
    assert events[:4] == ["Partitions", "3", "Partitions recorded by dbt-sqlflow", True]
    assert figures({})[:4] == ["Partitions", None, "Partitions recorded by dbt-sqlflow", False]


def test_with_sqlflow_stats_leaves_a_catalog_without_figures_alone() -> None:
    table = catalog(CATALOG_ROWS)
    assert with_sqlflow_stats(table, []) is table
