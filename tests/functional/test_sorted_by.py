"""sorted_by: the order sqlflow writes every batch and build of a model in (on a DuckDB
file as on a DuckLake), read back in storage order (rowid)."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, now, raw_sources_yml, rows

# One transaction per batch: each day is one write (a group loaded at once is one write,
# sorted as a whole).
WINDOWED = "event_time='event_ts', batch_size='day', begin='2025-01-01', commit_every=1"
DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"


def stored(project, name: str) -> list[tuple]:
    """The table's (day, v) in storage order."""
    return rows(project, f"select event_ts::date::varchar, v from {{schema}}.{name} order by rowid")


class TestSortedBy:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("events"),
            # Day batches in one partition each: without sorted_by, written as they come.
            "plain.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, {WINDOWED}"
            ),
            "sorted.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, {WINDOWED}, sorted_by=['v desc']"
            ),
            "keyed.sql": events_model(
                f"incremental_strategy='merge', unique_key='id', {WINDOWED}, sorted_by='id'"
            ),
            # A change feed: the rows its batch writes from its change table.
            "changes.sql": events_model(
                "incremental_strategy='cdc', unique_key='id', sorted_by='v desc',"
                " cdc={'sequence_by': 'event_ts', 'operation': {'column': 'op'}}",
                "select id, event_ts, v, 'u' as op from {{ source('raw', 'events') }}",
            ),
        }

    def test_every_batch_is_written_in_sorted_by_order(self, project) -> None:
        create_events(project)
        # Per day, in time order: ids and values out of both orders.
        project.run_sql(
            "insert into {schema}.events values"
            " (5, '2025-01-01 01:00', 'b'), (3, '2025-01-01 02:00', 'c'),"
            " (4, '2025-01-01 03:00', 'a'), (9, '2025-01-02 01:00', 'x'),"
            " (7, '2025-01-02 02:00', 'z'), (8, '2025-01-02 03:00', 'y')"
        )
        run_dbt(["run", *now("2025-01-03T00:00:00")])
        assert stored(project, "plain") == [
            ("2025-01-01", "b"), ("2025-01-01", "c"), ("2025-01-01", "a"),
            ("2025-01-02", "x"), ("2025-01-02", "z"), ("2025-01-02", "y"),
        ]  # fmt: skip
        assert stored(project, "sorted") == [
            ("2025-01-01", "c"), ("2025-01-01", "b"), ("2025-01-01", "a"),
            ("2025-01-02", "z"), ("2025-01-02", "y"), ("2025-01-02", "x"),
        ]  # fmt: skip
        assert rows(project, "select id from {schema}.keyed order by rowid") == [
            (3,), (4,), (5,), (7,), (8,), (9,),
        ]  # fmt: skip
        assert rows(project, "select v from {schema}.changes order by rowid") == [
            ("z",), ("y",), ("x",), ("c",), ("b",), ("a",),
        ]  # fmt: skip
        # An incremental day: its batch in the same order, after the others.
        project.run_sql(
            "insert into {schema}.events values"
            " (2, '2025-01-03 01:00', 'm'), (1, '2025-01-03 02:00', 'n')"
        )
        run_dbt(["run", *now("2025-01-04T00:00:00")])
        assert stored(project, "sorted")[-2:] == [("2025-01-03", "n"), ("2025-01-03", "m")]
        assert rows(project, "select id from {schema}.keyed order by rowid")[-2:] == [(1,), (2,)]
