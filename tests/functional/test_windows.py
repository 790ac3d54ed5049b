"""Time-window loads: interval state, lookback, backfill, invalidation, value partitions.

Every run pins "now" with --vars sqlflow_now, and asserts the whole target (or the rows
outside a replaced range) against the expected rows.
"""

from __future__ import annotations

import json
import re

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import (
    create_events,
    events_model,
    events_source,
    events_target,
    now,
    raw_sources_yml,
    rows,
    run_results,
)

sources_yml = raw_sources_yml("events")


def add_events(project, values: str) -> None:
    project.run_sql(f"insert into {{schema}}.events values {values}")


def loads(project, model_name: str) -> list[tuple]:
    return rows(
        project,
        "select window_start::varchar, window_end::varchar, strategy, rows_inserted,"
        " rows_deleted from sqlflow_meta.loads"
        f" where model = 'model.test.{model_name}' order by started_at, window_start",
    )


class TestLookbackBackfillInvalidate:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "daily.sql": events_model(
                "incremental_strategy='insert_overwrite',"
                " partition_by={'field': 'event_ts', 'granularity': 'day'}, lookback=1"
            ),
            "daily_merge.sql": events_model(
                "unique_key='id', event_time='event_ts', batch_size='day', lookback=2"
            ),
        }

    def test_windows(self, project) -> None:
        create_events(project)
        # Days 1..3 of January, two events a day.
        add_events(
            project,
            ", ".join(
                f"({d * 10 + i}, timestamp '2025-01-0{d} 0{i}:00:00', 'd{d}e{i}')"
                for d in (1, 2, 3)
                for i in (1, 2)
            ),
        )
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        assert events_target(project, "daily") == events_source(project)
        assert events_target(project, "daily_merge") == events_source(project)
        # The first build ran one batch per day, from the data's first day.
        assert [r[:2] for r in loads(project, "daily")] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00"),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-04 00:00:00"),
        ]
        res = run_results(project)["daily"]["adapter_response"]
        assert res["batches"] == 3
        assert res["rows_inserted"] == 6
        assert res["partitions_touched"] == 3

        # Day 4 arrives, with late events for day 3 (inside lookback) and day 1 (outside).
        add_events(
            project,
            "(41, timestamp '2025-01-04 01:00:00', 'd4e1'),"
            " (33, timestamp '2025-01-03 05:00:00', 'late3'),"
            " (13, timestamp '2025-01-01 05:00:00', 'late1')",
        )
        run_dbt(["run", *now("2025-01-04T12:00:00")])
        # Loaded up to 2025-01-03 12:00: lookback 1 re-reads the day before the 3rd too
        # (rows up to a day late may be from the 2nd's afternoon), not day 1.
        assert events_target(project, "daily") == events_source(project, "id <> 13")
        assert [r[:2] for r in loads(project, "daily")][3:] == [
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-04 00:00:00"),
            ("2025-01-04 00:00:00", "2025-01-05 00:00:00"),
        ]
        # daily_merge has lookback 2: it re-reads days 1 to 3, so it has day 1's late row.
        assert events_target(project, "daily_merge") == events_source(project)
        assert [r[0] for r in loads(project, "daily_merge")][3:] == [
            "2025-01-01 00:00:00",
            "2025-01-02 00:00:00",
            "2025-01-03 00:00:00",
            "2025-01-04 00:00:00",
        ]

        # Invalidate day 1: the next run reloads it, picking up the late row.
        run_dbt(
            [
                "run-operation",
                "sqlflow_invalidate",
                "--args",
                "{model: daily, start: '2025-01-01', end: '2025-01-02'}",
            ]
        )
        run_dbt(["run", "-s", "daily", *now("2025-01-04T12:00:00")])
        assert events_target(project, "daily") == events_source(project)
        windows = [r[0] for r in loads(project, "daily")][6:]
        # The gap, then lookback from the last loaded end (2025-01-04 12:00): the 3rd, the 4th.
        assert windows == ["2025-01-01 00:00:00", "2025-01-03 00:00:00", "2025-01-04 00:00:00"]

        # An explicit range replaces exactly that range; rows outside stay identical.
        outside = rows(
            project,
            "select id, event_ts, v from {schema}.daily"
            " where event_ts < '2025-01-02' or event_ts >= '2025-01-03' order by id",
        )
        project.run_sql("update {schema}.events set v = v || '!'")
        project.run_sql("delete from {schema}.events where id = 21")
        run_dbt(
            [
                "run",
                "-s",
                "daily",
                "--vars",
                json.dumps({"sqlflow_start": "2025-01-02", "sqlflow_end": "2025-01-03"}),
            ]
        )
        assert (
            rows(
                project,
                "select id, event_ts, v from {schema}.daily"
                " where event_ts < '2025-01-02' or event_ts >= '2025-01-03' order by id",
            )
            == outside
        )
        assert rows(
            project,
            "select id, v from {schema}.daily where event_ts >= '2025-01-02'"
            " and event_ts < '2025-01-03' order by id",
        ) == [(22, "d2e2!")]
        res = run_results(project)["daily"]["adapter_response"]
        assert (res["rows_deleted"], res["rows_inserted"], res["batches"]) == (2, 1, 1)

        # The partition table mirrors the data.
        parts = rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            " where relation like '%\"daily\"' order by partition_key",
        )
        assert parts == [("2025-01-01", 3), ("2025-01-02", 1), ("2025-01-03", 3), ("2025-01-04", 1)]


class TestWeeklyBackfillAndConsistency:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "weekly.sql": events_model(
                "incremental_strategy='insert_overwrite', begin='2025-01-01', batch_size='week',"
                " partition_by={'field': 'event_ts', 'granularity': 'day'}, unique_key='id'"
            ),
        }

    def test_sixty_days_in_nine_weekly_loads(self, project) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select range, timestamp '2025-01-01'"
            " + to_hours(range * 12), 'v' || range from range(120)"
        )
        _, log = run_dbt_and_capture(["--debug", "run", *now("2025-03-01T12:00:00")])
        assert events_target(project, "weekly") == events_source(project)
        windows = loads(project, "weekly")
        assert len(windows) == 9
        # Every batch is in the log (the eight after the first at debug level, grouped).
        for start, end, *_ in windows:
            assert f"insert_overwrite [{start}, {end}): " in log, (start, end)
        assert windows[0][:2] == ("2025-01-01 00:00:00", "2025-01-06 00:00:00")
        assert windows[-1][:2] == ("2025-02-24 00:00:00", "2025-03-03 00:00:00")
        assert sum(w[3] for w in windows) == 120
        assert run_dbt(["run-operation", "sqlflow_check_partitions", "--args", "{model: weekly}"])

        # A row inserted by hand breaks the recorded counts: the check fails, naming it.
        project.run_sql(
            "insert into {schema}.weekly values (999, timestamp '2025-01-10 10:00:00', 'x')"
        )
        _, log = run_dbt_and_capture(
            ["run-operation", "sqlflow_check_partitions", "--args", "{model: weekly}"],
            expect_pass=False,
        )
        assert "count_mismatch [2025-01-10]" in log
        assert "recorded 2 rows, found 3" in log


class TestValuePartitions:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        body = "select id, region, v from {{ source('raw', 'events') }}"
        return {
            "sources.yml": sources_yml,
            "by_region.sql": events_model(
                "incremental_strategy='insert_overwrite', partition_by={'field': 'region'}", body
            ),
        }

    def test_replaces_present_partitions(self, project) -> None:
        project.run_sql("create table {schema}.events (id integer, region varchar, v varchar)")
        project.run_sql(
            "insert into {schema}.events values (1, 'eu', 'a'), (2, 'eu', 'b'), (3, 'us', 'c'),"
            " (4, 'apac', 'd')"
        )
        _, log = run_dbt_and_capture(["run"])
        # dbt-duckdb's own partition_by handling (DuckLake only) never sees our models.
        assert "only supported for DuckLake" not in log
        # The next batch holds only 'eu' (one row fewer) and a new region.
        project.run_sql("delete from {schema}.events")
        project.run_sql("insert into {schema}.events values (5, 'eu', 'e'), (6, 'latam', 'f')")
        run_dbt(["run"])
        assert rows(project, "select id, region, v from {schema}.by_region order by id") == [
            (3, "us", "c"),
            (4, "apac", "d"),
            (5, "eu", "e"),
            (6, "latam", "f"),
        ]
        res = run_results(project)["by_region"]["adapter_response"]
        assert (res["rows_deleted"], res["rows_inserted"], res["partitions_touched"]) == (2, 2, 2)
        assert rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            " where relation like '%by_region%' order by 1",
        ) == [("apac", 1), ("eu", 1), ("latam", 1), ("us", 1)]


class TestPruning:
    """A load touching 1 day of a 365-day table reads a small fraction of it."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "year.sql": events_model(
                "unique_key='id', incremental_strategy='merge', batch_size='year',"
                " partition_by={'field': 'event_ts', 'granularity': 'day'}"
            ),
        }

    def test_target_scan_is_pruned(self, project) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select range, timestamp '2025-01-01'"
            " + to_milliseconds(range * 10512), 'v' from range(3000000)"
        )
        run_dbt(["run"])
        total = rows(project, "select count(*) from {schema}.year")[0][0]
        # Update the rows of one day.
        project.run_sql(
            "delete from {schema}.events where event_ts < '2025-06-01' or event_ts >= '2025-06-02'"
        )
        project.run_sql("update {schema}.events set v = 'new'")
        day = {"sqlflow_start": "2025-06-01", "sqlflow_end": "2025-06-02"}
        _, log = run_dbt_and_capture(["--debug", "run", "--vars", json.dumps(day)])
        res = run_results(project)["year"]["adapter_response"]
        changed = rows(project, "select count(*) from {schema}.year where v = 'new'")[0][0]
        assert res["rows_updated"] == changed > 0
        # Re-run the merge's target-side statement (the keyed DELETE of the matched rows)
        # that dbt ran, under EXPLAIN ANALYZE, and read the target scan.
        statement = r"(delete from \S+year\S* as DBT_INTERNAL_DEST.*?)\n\S*\d\d:\d\d:\d\d"
        deletes = re.findall(statement, log, re.S)
        assert deletes, "the merge's DELETE statement is in dbt's log"
        stage = re.search(r"using (\S+) as DBT_INTERNAL_SOURCE", deletes[-1]).group(1)
        replay_sql = deletes[-1].replace(stage, "{schema}.replay_stage")
        project.run_sql("create table {schema}.replay_stage as select * from {schema}.events")
        plan = rows(project, f"explain (analyze, format json) {replay_sql}")[0][1]
        scans = [
            op
            for op in _operators(json.loads(plan))
            if op.get("type") == "TABLE_SCAN"
            and op["extra_info"].get("Table", "").replace('"', "").endswith(".year")
        ]
        assert scans, [
            (o.get("type"), o.get("extra_info", {}).get("Table"))
            for o in _operators(json.loads(plan))
        ]
        scanned = sum(op["rows_scanned"] for op in scans)
        # One day is 1/365 of the rows; DuckDB skips by row group (122,880 rows), so the
        # merge reads the one or two row groups holding that day out of ~25.
        assert scanned <= 2 * 122_880 < total / 10, (scanned, total)


def _operators(node: dict) -> list[dict]:
    found = []
    for child in node.get("operator", []) + node.get("children", []):
        found.append(child)
        found.extend(_operators(child))
    return found


class TestCurrentUnitStaysOwed:
    """With lookback=0, rows arriving later in the current day are still loaded."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "no_lookback.sql": events_model(
                "incremental_strategy='insert_overwrite', lookback=0,"
                " partition_by={'field': 'event_ts', 'granularity': 'day'}"
            ),
        }

    def test_later_rows_of_today(self, project) -> None:
        create_events(project)
        add_events(project, "(1, timestamp '2025-01-03 01:00:00', 'a')")
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        add_events(project, "(2, timestamp '2025-01-03 15:00:00', 'b')")
        run_dbt(["run", *now("2025-01-03T18:00:00")])
        assert events_target(project, "no_lookback") == events_source(project)
        assert rows(
            project,
            "select interval_start::varchar, interval_end::varchar from sqlflow_meta.intervals"
            " order by 1",
        )[-1] == ("2025-01-03 12:00:00", "2025-01-03 18:00:00")
