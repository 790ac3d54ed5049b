"""Runs that must not change what is loaded: --empty, failed batches, renamed models, model SQL
that a naive wrapper or a whole-range census would get wrong.

Every run pins "now" with --vars sqlflow_now; each test asserts the target's rows and
sqlflow's state tables, before and after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture, write_file
from sqlflow_testing import (
    EVENTS_BODY,
    events_model,
    events_source,
    events_target,
    now,
    raw_sources_yml,
    rows,
    run_results,
)

sources_yml = raw_sources_yml("events")

DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"


def create_events(project, days: tuple[int, ...] = (1, 2, 3)) -> None:
    project.run_sql(
        "create or replace table {schema}.events (id integer, event_ts timestamp, v varchar)"
    )
    values = ", ".join(
        f"({d * 10 + i}, timestamp '2025-01-0{d} 0{i}:00:00', 'd{d}e{i}')"
        for d in days
        for i in (1, 2)
    )
    project.run_sql(f"insert into {{schema}}.events values {values}")


def state(project, name: str) -> dict[str, list[tuple]]:
    """Every state row of one model (loads without their timestamps and ids)."""
    model_id = f"'model.test.{name}'"
    return {
        "loads": rows(
            project,
            "select window_start::varchar, window_end::varchar, strategy, status, rows_inserted,"
            f" rows_deleted from sqlflow_meta.loads where model = {model_id}"
            " order by window_start nulls first, started_at",
        ),
        "intervals": rows(
            project,
            "select interval_start::varchar, interval_end::varchar from sqlflow_meta.intervals"
            f" where model = {model_id} order by interval_start",
        ),
        "partitions": rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            f" where relation like '%\"{name}\"' order by partition_key",
        ),
    }


class TestEmptyFlag:
    """dbt run --empty reads no rows: it must neither delete nor record anything."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "daily.sql": events_model(f"incremental_strategy='insert_overwrite', {DAY}"),
            "keyed.sql": events_model("unique_key='id', event_time='event_ts', batch_size='day'"),
            "history.sql": events_model(
                "unique_key='id', incremental_strategy='snapshot',"
                " snapshot={'strategy': 'check', 'check_cols': ['v'], 'hard_deletes':"
                " 'new_record'}"
            ),
        }

    def test_empty_run_changes_nothing(self, project) -> None:
        create_events(project)
        run_dbt(["run", "-s", "daily", "keyed", "history", *now("2025-01-03T12:00:00")])
        names = ("daily", "keyed", "history")
        tables = {n: rows(project, f"select * from {{schema}}.{n} order by all") for n in names}
        states = {n: state(project, n) for n in names}
        assert events_target(project, "daily") == events_source(project)
        assert len(states["daily"]["loads"]) == 3

        # A day later, --empty: every window would be empty and every key missing.
        run_dbt(["run", "--empty", *now("2025-01-04T12:00:00")])
        for n in names:
            assert rows(project, f"select * from {{schema}}.{n} order by all") == tables[n], n
            assert state(project, n) == states[n], n
        response = run_results(project)["daily"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_deleted"], response["batches"]) == (
            0,
            0,
            0,
        )


class TestEmptyFlagOnAFirstBuild:
    """--empty on a model's first build creates its empty table and records no window."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "fresh.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, begin='2025-01-01'"
            ),
        }

    def test_first_build_then_real_run(self, project) -> None:
        create_events(project)
        run_dbt(["run", "--empty", *now("2025-01-03T12:00:00")])
        assert events_target(project, "fresh") == []
        assert state(project, "fresh") == {"loads": [], "intervals": [], "partitions": []}
        # The next real run loads everything from begin.
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        assert events_target(project, "fresh") == events_source(project)
        assert state(project, "fresh")["intervals"] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00"),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-03 12:00:00"),
        ]


class TestFailedRunRecordsNothing:
    """Empty windows commit with the first loaded batch: a run whose first batch fails
    leaves the state exactly as it was."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "strict.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, on_schema_change='fail'"
            ),
        }

    def test_schema_change_failure(self, project) -> None:
        create_events(project)
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        before_rows = events_target(project, "strict")
        before_state = state(project, "strict")
        # The model gains a column; days 4-6 have no rows (empty windows), days 2-3 do.
        write_file(
            events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, on_schema_change='fail'",
                "select id, event_ts, v, 1 as extra from {{ source('raw', 'events') }}",
            ),
            project.project_root,
            "models",
            "strict.sql",
        )
        run_dbt(["run", *now("2025-01-06T12:00:00")], expect_pass=False)
        assert events_target(project, "strict") == before_rows
        assert state(project, "strict") == before_state


class TestModelSqlShapes:
    """A model ending in a line comment; a model whose event_time is its window's start."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "commented.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}",
                EVENTS_BODY + " -- the raw events, as they are",
            ),
            "commented_keyed.sql": events_model("unique_key='id'", EVENTS_BODY + " -- by id"),
            "daily_counts.sql": events_model(
                "incremental_strategy='insert_overwrite',"
                " partition_by={'field': 'day', 'granularity': 'day'}, begin='2025-01-01'",
                "select {{ sqlflow_window_start() }} as day, count(*) as events"
                " from {{ source('raw', 'events') }}"
                " where event_ts >= {{ sqlflow_window_start() }}"
                " and event_ts < {{ sqlflow_window_end() }}",
            ),
        }

    def test_runs(self, project) -> None:
        create_events(project, days=(1, 3))
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        assert events_target(project, "commented") == events_source(project)
        assert events_target(project, "commented_keyed") == events_source(project)
        # One row per window, day 2 included (no events): the windows are not judged by
        # running the model once over the whole range (where every row would be day 1).
        counts = "select day::varchar, events from {schema}.daily_counts order by day"
        assert rows(project, counts) == [
            ("2025-01-01 00:00:00", 2),
            ("2025-01-02 00:00:00", 0),
            ("2025-01-03 00:00:00", 2),
        ]
        run_dbt(["run", *now("2025-01-04T12:00:00")])
        assert rows(project, counts) == [
            ("2025-01-01 00:00:00", 2),
            ("2025-01-02 00:00:00", 0),
            ("2025-01-03 00:00:00", 2),
            ("2025-01-04 00:00:00", 0),
        ]


class TestWindowMacrosInAnotherTimeZone:
    """A TIMESTAMPTZ event_time read through the window macros in a non-UTC session: the
    plain comparison shifts the window (warned about), timezone('UTC', ...) does not."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        path = tmp_path_factory.mktemp("duckdb") / "sqlflow.duckdb"
        return {
            "type": "sqlflow",
            "path": str(path),
            "threads": 1,
            "settings": {"TimeZone": "America/New_York"},
        }

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        config = (
            "incremental_strategy='insert_overwrite',"
            " partition_by={'field': 'ts', 'granularity': 'day'}, begin='2025-01-01'"
        )
        body = "select id, ts from {{ source('raw', 'tz_events') }} where ts >= %s and ts < %s"
        return {
            "sources.yml": raw_sources_yml("tz_events"),
            "shifted.sql": events_model(
                config, body % ("{{ sqlflow_window_start() }}", "{{ sqlflow_window_end() }}")
            ),
            "exact.sql": events_model(
                config,
                body
                % (
                    "timezone('UTC', {{ sqlflow_window_start() }})",
                    "timezone('UTC', {{ sqlflow_window_end() }})",
                ),
            ),
        }

    def test_warning_and_workaround(self, project) -> None:
        project.run_sql("create or replace table {schema}.tz_events (id integer, ts timestamptz)")
        # One event every 3 hours of 2025-01-01 and 2025-01-02, UTC.
        project.run_sql(
            "insert into {schema}.tz_events select i, timestamptz '2025-01-01 00:00:00+00'"
            " + i * interval 3 hour from range(16) t(i)"
        )
        _, output = run_dbt_and_capture(["run", *now("2025-01-03T00:00:00")])
        ids = "select id from {schema}.%s order by id"
        assert rows(project, ids % "exact") == [(i,) for i in range(16)]
        # New York is 5 hours behind UTC: each day's window misses its first 5 hours
        # of UTC time (00:00 and 03:00 of each day).
        assert rows(project, ids % "shifted") == [(i,) for i in range(16) if i not in (0, 1, 8, 9)]
        warned = [line for line in output.splitlines() if "TimeZone is America/New_York" in line]
        # Only the model that compares the literals as they are.
        assert len(warned) == 1, output
        assert "model.test.shifted" in warned[0]
        assert "timezone('UTC', {{ sqlflow_window_start() }})" in warned[0]


class TestNullKeyValuePartition:
    """A text value '__null__' shares the NULL value partition; replacing it replaces both."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "regions.sql": events_model(
                "incremental_strategy='insert_overwrite', partition_by={'field': 'region'}",
                "select * from (values (1, 'eu'), (2, null), (3, '__null__')) t(id, region)",
            )
        }

    def test_three_runs(self, project) -> None:
        for _ in range(3):
            run_dbt(["run"])
        got = rows(project, "select id, region from {schema}.regions order by id")
        assert got == [(1, "eu"), (2, None), (3, "__null__")]
        assert state(project, "regions")["partitions"] == [("__null__", 2), ("eu", 1)]


class TestFailedBatchLeavesLaterWindowsUnloaded:
    """Empty windows after a failing batch are not recorded: late rows for them load later."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "checked.sql": events_model(
                f"incremental_strategy='insert_overwrite', {DAY}, begin='2025-01-01',"
                " quality_checks=[{'expression': \"v <> 'bad'\"}]"
            ),
        }

    def test_failure_then_late_rows(self, project) -> None:
        create_events(project, days=(1, 2))
        run_dbt(["run", *now("2025-01-03T00:00:00")])
        # Day 3 brings a bad row; days 4-6 have no rows yet (empty windows after it).
        project.run_sql("insert into {schema}.events values (31, '2025-01-03 01:00', 'bad')")
        run_dbt(["run", *now("2025-01-07T00:00:00")], expect_pass=False)
        intervals = state(project, "checked")["intervals"]
        # Day 2 (lookback) committed before the failing day 3; nothing after it.
        assert max(end for _, end in intervals) == "2025-01-03 00:00:00"
        # The bad row is fixed and rows for days 4 and 5 arrive late: the next run loads them.
        project.run_sql("update {schema}.events set v = 'fixed' where id = 31")
        project.run_sql(
            "insert into {schema}.events values (41, '2025-01-04 01:00', 'late'),"
            " (51, '2025-01-05 01:00', 'late')"
        )
        run_dbt(["run", *now("2025-01-07T00:00:00")])
        assert events_target(project, "checked") == events_source(project)
        assert max(end for _, end in state(project, "checked")["intervals"]) == (
            "2025-01-07 00:00:00"
        )


class TestRenamedModel:
    """A model renamed onto the same table does not load its windows a second time."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "appended.sql": events_model("incremental_strategy='append', event_time='event_ts'"),
        }

    def test_rename_is_refused_until_full_refresh(self, project) -> None:
        create_events(project)
        run_dbt(["run", *now("2025-01-04T00:00:00")])
        assert events_target(project, "appended") == events_source(project)
        models = Path(project.project_root) / "models"
        (models / "appended.sql").unlink()
        write_file(
            events_model("incremental_strategy='append', event_time='event_ts', alias='appended'"),
            models,
            "renamed.sql",
        )
        result = run_dbt(["run", *now("2025-01-04T00:00:00")], expect_pass=False)
        assert "model.test.appended" in result.results[0].message
        assert "--full-refresh" in result.results[0].message
        # Nothing was appended twice.
        assert events_target(project, "appended") == events_source(project)
        run_dbt(["run", "--full-refresh", *now("2025-01-04T00:00:00")])
        run_dbt(["run", *now("2025-01-05T00:00:00")])
        assert events_target(project, "appended") == events_source(project)
        recorded = rows(project, "select distinct model from sqlflow_meta.intervals")
        assert recorded == [("model.test.renamed",)]
