"""The cdc strategy end to end: real dbt runs on a DuckDB file, the target and sqlflow's
ledger checked row by row after each run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import raw_sources_yml, rows, run_results

FEED_DDL = (
    "create or replace table {schema}.feed (id int, name varchar, email varchar,"
    " lsn bigint, op varchar, changed_at timestamp)"
)
BODY = "select id, name, email, lsn, op, changed_at from {{ source('raw', 'feed') }}\n"


def model(cdc: str, extra: str = "") -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', incremental_strategy='cdc',"
        f" unique_key='id', cdc={cdc}{extra}) }}}}\n" + BODY
    )


def feed(project: Any, *events: tuple) -> None:
    """Replace the feed's rows with ``(id, name, email, lsn, op, changed_at)`` events."""
    project.run_sql(FEED_DDL)
    if events:
        values = ", ".join(
            "(" + ", ".join("null" if v is None else repr(v) for v in e) + ")" for e in events
        )
        project.run_sql(f"insert into {{schema}}.feed values {values}")


def target(project: Any, name: str, columns: str = "id, name, email") -> list[tuple]:
    return rows(project, f"select {columns} from {{schema}}.{name} order by all")


def ledger(project: Any, name: str) -> list[tuple]:
    """The model's ledger rows: (id, sequence, operation, changed_at as text)."""
    table = rows(
        project,
        "select table_name from duckdb_tables() where schema_name = 'sqlflow_meta'"
        f" and table_name like 'cdc_{name}_%'",
    )
    assert len(table) == 1
    return rows(
        project,
        f"select id, sqlflow_seq, sqlflow_op, strftime(sqlflow_changed_at, '%Y-%m-%d')"
        f' from sqlflow_meta."{table[0][0]}" order by all',
    )


def counts(project: Any, name: str) -> tuple[int, int, int, int]:
    r = run_results(project)[name]["adapter_response"]
    return (r["rows_inserted"], r["rows_updated"], r["rows_deleted"], r["rows_ignored"])


def at(day: int) -> list[str]:
    return ["--vars", json.dumps({"sqlflow_now": f"2025-01-{day:02d}T00:00:00"})]


T = "2025-01-01 00:00:00"
# The scd1 truncate's delete, as logged (whitespace collapsed).
TRUNCATE_DELETE = "where sqlflow_op = 'truncate') and not exists ("


class TestScd1AcrossRuns:
    """Stale events, tombstones and their expiry, counts in run_results."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "cust.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op', 'tombstone_retention': '2 days'}"
            ),
        }

    def test_stale_events_tombstones_and_expiry(self, project: Any) -> None:
        feed(
            project,
            (1, "ann", "a@x", 10, "c", T),
            (2, "bob", "b@x", 11, "c", T),
            (1, "ann", "ann@x", 12, "u", T),
            (2, None, None, 13, "d", T),
            (3, "cy", "c@x", 14, "r", T),
        )
        run_dbt(["run", *at(1)])
        assert target(project, "cust") == [(1, "ann", "ann@x"), (3, "cy", "c@x")]
        assert counts(project, "cust") == (2, 0, 0, 0)
        assert ledger(project, "cust") == [
            (1, 12, "upsert", "2025-01-01"),
            (2, 13, "delete", "2025-01-01"),
            (3, 14, "upsert", "2025-01-01"),
        ]
        # Late events: an update of 1 older than the applied one, an upsert of the deleted
        # key 2 older than its delete (the tombstone keeps it deleted), a re-read of an
        # applied event, a snapshot read of 3 older than its state; a newer update of 3.
        feed(
            project,
            (1, "ann", "old@x", 11, "u", T),
            (2, "bob", "bob@x", 12, "u", T),
            (1, "ann", "ann@x", 12, "u", T),
            (3, "cy", "c0@x", 9, "r", T),
            (3, "cy", "cy@x", 15, "u", T),
        )
        run_dbt(["run", *at(2)])
        assert target(project, "cust") == [(1, "ann", "ann@x"), (3, "cy", "cy@x")]
        assert counts(project, "cust") == (0, 1, 0, 4)
        # Four days later the tombstone of 2 is past its retention of two days: an old
        # upsert of 2 now brings it back (the README says so), and 1 is deleted.
        feed(project, (1, None, None, 20, "d", T))
        run_dbt(["run", *at(5)])
        assert counts(project, "cust") == (0, 0, 1, 0)
        assert ledger(project, "cust") == [
            (1, 20, "delete", "2025-01-05"),
            (3, 15, "upsert", "2025-01-02"),
        ]
        feed(project, (2, "bob", "late@x", 12, "u", T), (1, "ann", "late@x", 19, "u", T))
        _, log = run_dbt_and_capture(["--debug", "run", *at(6)])
        # Without a truncate in the batch its delete does not run (its `when` is false).
        assert "select count(*) > 0 from" in log
        assert TRUNCATE_DELETE not in " ".join(log.split())
        assert target(project, "cust") == [(2, "bob", "late@x"), (3, "cy", "cy@x")]
        assert counts(project, "cust") == (1, 0, 0, 1)
        message = run_results(project)["cust"]["adapter_response"]["_message"]
        assert message == "cdc: 1 inserted, 0 updated, 0 deleted, 1 ignored"
        # A truncate removes every row applied before it, and is remembered.
        feed(project, (None, None, None, 30, "t", T), (3, "cy", "new@x", 31, "u", T))
        _, log = run_dbt_and_capture(["--debug", "run", *at(7)])
        assert TRUNCATE_DELETE in " ".join(log.split())
        assert target(project, "cust") == [(3, "cy", "new@x")]
        assert counts(project, "cust") == (1, 0, 2, 0)
        feed(project, (2, "bob", "again@x", 25, "u", T))
        run_dbt(["run", *at(8)])
        assert target(project, "cust") == [(3, "cy", "new@x")]
        assert counts(project, "cust") == (0, 0, 0, 1)
        # --full-refresh applies the whole feed anew, with a new ledger.
        feed(project, (5, "eve", "e@x", 1, "c", T))
        run_dbt(["run", "--full-refresh", *at(9)])
        assert target(project, "cust") == [(5, "eve", "e@x")]
        assert ledger(project, "cust") == [(5, 1, "upsert", "2025-01-09")]


class TestRefusedAndFailedBatches:
    """A refused or failed batch leaves the target and the ledger as they were."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "checked.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op'}",
                ", quality_checks=[{'not_null': ['email']}]",
            ),
        }

    def test_nothing_changes(self, project: Any) -> None:
        feed(project, (1, "ann", "a@x", 1, "c", T), (2, "bob", "b@x", 2, "c", T))
        run_dbt(["run", *at(1)])
        before = (target(project, "checked"), ledger(project, "checked"))
        # The quality check fails after the changes were applied: all rolled back.
        feed(project, (1, None, None, 3, "d", T), (3, "cy", None, 4, "c", T))
        failed = run_dbt(["run", *at(2)], expect_pass=False)
        assert "not_null" in failed.results[0].message
        assert (target(project, "checked"), ledger(project, "checked")) == before
        # Two different changes of one key at one sequence: refused, naming the key.
        feed(project, (1, "ann", "x@x", 5, "u", T), (1, "ann", "y@x", 5, "u", T))
        failed = run_dbt(["run", *at(2)], expect_pass=False)
        assert "1 key(s) have different changes with the same sequence (lsn), e.g. id=1 at" in (
            failed.results[0].message
        )
        assert (target(project, "checked"), ledger(project, "checked")) == before
        # NULL sequences and operation values the config does not name.
        feed(project, (2, "bob", "b2@x", None, "u", T), (2, "bob", "b3@x", 6, "x", T))
        failed = run_dbt(["run", *at(2)], expect_pass=False)
        message = failed.results[0].message
        assert "1 event(s) have a NULL in cdc.sequence_by (lsn), e.g. of the key(s) id=2" in (
            message
        )
        assert "holds value(s) the config does not name: 'x' (1 rows)" in message
        assert (target(project, "checked"), ledger(project, "checked")) == before
        # Identical duplicates are applied once and counted as ignored.
        feed(project, (2, "bob", "b4@x", 7, "u", T), (2, "bob", "b4@x", 7, "u", T))
        run_dbt(["run", *at(3)])
        assert target(project, "checked") == [(1, "ann", "a@x"), (2, "bob", "b4@x")]
        assert counts(project, "checked") == (0, 1, 0, 1)


class TestColumnsNullsAndConditions:
    """ignore_null_updates, column lists, apply_as_deletes."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "nulls.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op', 'ignore_null_updates': ['email'],"
                " 'except_columns': ['changed_at']}"
            ),
            "conds.sql": model(
                "{'sequence_by': 'lsn', 'apply_as_deletes': \"op = 'd'\", 'columns': ['name']}"
            ),
        }

    def test_nulls_keep_values_and_conditions_delete(self, project: Any) -> None:
        feed(project, (1, "ann", "a@x", 1, "c", T), (2, "bob", "b@x", 2, "c", T))
        run_dbt(["run", *at(1)])
        feed(
            project,
            (1, None, None, 3, "u", T),
            (2, None, None, 4, "d", T),
            (2, "bob", None, 5, "c", T),
        )
        run_dbt(["run", *at(2)])
        # email keeps its value in an update; name (not listed) takes the NULL; after a
        # delete there is nothing to keep.
        assert target(project, "nulls") == [(1, None, "a@x"), (2, "bob", None)]
        columns = rows(
            project,
            "select column_name from information_schema.columns where table_name = 'nulls'"
            " order by ordinal_position",
        )
        assert columns == [("id",), ("name",), ("email",)]
        assert target(project, "conds", "*") == [(1, None), (2, "bob")]
        assert counts(project, "conds") == (0, 2, 0, 0)


class TestScd2:
    """History with late events, truncates and track_history_columns."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "hist.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op', 'stored_as': 'scd2',"
                " 'except_columns': ['changed_at']}"
            ),
            "tracked.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op', 'stored_as': 'scd2',"
                " 'track_history_columns': ['name'], 'columns': ['name', 'email']}"
            ),
        }

    def test_history_is_rewritten(self, project: Any) -> None:
        cols = "id, name, email, dbt_valid_from, dbt_valid_to"
        feed(
            project,
            (1, "ann", "a@x", 10, "c", T),
            (1, "ann", "a2@x", 20, "u", T),
            (2, "bob", "b@x", 11, "c", T),
            (2, None, None, 15, "d", T),
        )
        run_dbt(["run", *at(1)])
        assert target(project, "hist", cols) == [
            (1, "ann", "a2@x", 20, None),
            (1, "ann", "a@x", 10, 20),
            (2, "bob", "b@x", 11, 15),
        ]
        assert target(project, "tracked", cols) == [
            (1, "ann", "a2@x", 10, None),
            (2, "bob", "b@x", 11, 15),
        ]
        # Late: an update of 1 between its versions, an update of 2 before its delete, a
        # re-read of an applied event; a truncate at 30 and a re-insert of 2 after it.
        feed(
            project,
            (1, "anne", "a@x", 15, "u", T),
            (2, "bobby", "b@x", 13, "u", T),
            (1, "ann", "a2@x", 20, "u", T),
            (None, None, None, 30, "t", T),
            (2, "bob", "b3@x", 31, "c", T),
        )
        run_dbt(["run", *at(2)])
        assert target(project, "hist", cols) == [
            (1, "ann", "a2@x", 20, 30),
            (1, "ann", "a@x", 10, 15),
            (1, "anne", "a@x", 15, 20),
            (2, "bob", "b3@x", 31, None),
            (2, "bob", "b@x", 11, 13),
            (2, "bobby", "b@x", 13, 15),
        ]
        # inserted: 1@15, 2@13, 2@31; updated: 1@10 and 2@11 shortened, 1@20 closed.
        assert counts(project, "hist") == (3, 3, 0, 1)
        # track_history_columns=['name']: an email change updated the version in place.
        # The late rename at 15 splits that version; the part before it keeps the email
        # the version held (a2@x), not the one it had before the in-place update (the
        # README's limit of in-place updates).
        assert target(project, "tracked", cols) == [
            (1, "ann", "a2@x", 10, 15),
            (1, "ann", "a2@x", 20, 30),
            (1, "anne", "a@x", 15, 20),
            (2, "bob", "b3@x", 31, None),
            (2, "bob", "b@x", 11, 13),
            (2, "bobby", "b@x", 13, 15),
        ]
        current = rows(
            project, "select id, count(*) from {schema}.hist where dbt_valid_to is null group by 1"
        )
        assert current == [(2, 1)]


class TestWindowedCdc:
    """Daily windows on changed_at with a lookback: re-read events are ignored."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "daily.sql": model(
                "{'sequence_by': 'lsn', 'operation': 'op'}",
                ", event_time='changed_at', batch_size='day', lookback=1, begin='2025-01-01'",
            ),
        }

    def test_daily_batches(self, project: Any) -> None:
        feed(
            project,
            (1, "ann", "a@x", 1, "c", "2025-01-01 10:00:00"),
            (2, "bob", "b@x", 2, "c", "2025-01-01 11:00:00"),
            (1, "ann", "a2@x", 3, "u", "2025-01-02 09:00:00"),
        )
        run_dbt(["run", *at(3)])
        assert target(project, "daily") == [(1, "ann", "a2@x"), (2, "bob", "b@x")]
        windows = rows(
            project,
            "select window_start::varchar from sqlflow_meta.loads"
            " where rows_inserted + rows_updated > 0"
            " order by 1",
        )
        assert windows == [("2025-01-01 00:00:00",), ("2025-01-02 00:00:00",)]
        # Day 3 arrives; the lookback re-reads day 2, whose event is stale now.
        project.run_sql(
            "insert into {schema}.feed values (2, null, null, 4, 'd', '2025-01-03 08:00:00')"
        )
        run_dbt(["run", *at(4)])
        assert target(project, "daily") == [(1, "ann", "a2@x")]
        assert counts(project, "daily") == (0, 0, 1, 1)
