"""Time-window loads: interval state, lookback, backfill, invalidation, partition checks.

Every run pins "now" with --vars sqlflow_now, and asserts the whole target (or the rows
outside a replaced range) against the expected rows.
"""

from __future__ import annotations

import json
import re

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import (
    Scenario,
    create_daily_events,
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


def first_build(project) -> dict:
    create_daily_events(project)  # days 1..3 of January, two events a day
    run_dbt(["run", *now("2025-01-03T12:00:00")])
    return {
        "source": events_source(project),
        "daily": events_target(project, "daily"),
        "daily_merge": events_target(project, "daily_merge"),
        "loads": loads(project, "daily"),
        "response": run_results(project)["daily"]["adapter_response"],
    }


def late_rows_run(project) -> dict:
    # Day 4 arrives, with late events for day 3 (inside lookback) and day 1 (outside).
    add_events(
        project,
        "(41, timestamp '2025-01-04 01:00:00', 'd4e1'),"
        " (33, timestamp '2025-01-03 05:00:00', 'late3'),"
        " (13, timestamp '2025-01-01 05:00:00', 'late1')",
    )
    run_dbt(["run", *now("2025-01-04T12:00:00")])
    return {
        "source": events_source(project),
        "source_without_13": events_source(project, "id <> 13"),
        "daily": events_target(project, "daily"),
        "daily_merge": events_target(project, "daily_merge"),
        "loads": loads(project, "daily"),
        "merge_loads": loads(project, "daily_merge"),
    }


def invalidated_run(project) -> dict:
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
    return {
        "source": events_source(project),
        "daily": events_target(project, "daily"),
        "loads": loads(project, "daily"),
    }


OUTSIDE_DAY_2 = (
    "select id, event_ts, v from {schema}.daily"
    " where event_ts < '2025-01-02' or event_ts >= '2025-01-03' order by id"
)


def explicit_range_run(project) -> dict:
    outside = rows(project, OUTSIDE_DAY_2)
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
    return {
        "outside_before": outside,
        "outside_after": rows(project, OUTSIDE_DAY_2),
        "inside": rows(
            project,
            "select id, v from {schema}.daily where event_ts >= '2025-01-02'"
            " and event_ts < '2025-01-03' order by id",
        ),
        "response": run_results(project)["daily"]["adapter_response"],
        "partitions": rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            " where relation like '%\"daily\"' order by partition_key",
        ),
    }


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

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_build, late_rows_run, invalidated_run, explicit_range_run)

    def test_first_build_runs_one_batch_per_day_from_the_first_day(self, scenario) -> None:
        first = scenario.after(first_build)
        assert first["daily"] == first["source"]
        assert first["daily_merge"] == first["source"]
        # The first build ran one batch per day, from the data's first day.
        assert [r[:2] for r in first["loads"]] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00"),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-04 00:00:00"),
        ]
        res = first["response"]
        assert res["batches"] == 3
        assert res["rows_inserted"] == 6
        assert res["partitions_touched"] == 3

    def test_lookback_rereads_the_day_before_the_last_loaded_end(self, scenario) -> None:
        late = scenario.after(late_rows_run)
        # Loaded up to 2025-01-03 12:00: lookback 1 re-reads the day before the 3rd too
        # (rows up to a day late may be from the 2nd's afternoon), not day 1.
        assert late["daily"] == late["source_without_13"]
        assert [r[:2] for r in late["loads"]][3:] == [
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-04 00:00:00"),
            ("2025-01-04 00:00:00", "2025-01-05 00:00:00"),
        ]

    def test_longer_lookback_rereads_more_days(self, scenario) -> None:
        late = scenario.after(late_rows_run)
        # daily_merge has lookback 2: it re-reads days 1 to 3, so it has day 1's late row.
        assert late["daily_merge"] == late["source"]
        assert [r[0] for r in late["merge_loads"]][3:] == [
            "2025-01-01 00:00:00",
            "2025-01-02 00:00:00",
            "2025-01-03 00:00:00",
            "2025-01-04 00:00:00",
        ]

    def test_invalidated_range_reloads_next_run(self, scenario) -> None:
        reloaded = scenario.after(invalidated_run)
        assert reloaded["daily"] == reloaded["source"]
        windows = [r[0] for r in reloaded["loads"]][6:]
        # The gap, then lookback from the last loaded end (2025-01-04 12:00): the 3rd, the 4th.
        assert windows == ["2025-01-01 00:00:00", "2025-01-03 00:00:00", "2025-01-04 00:00:00"]

    def test_explicit_range_replaces_exactly_that_range(self, scenario) -> None:
        # An explicit range replaces exactly that range; rows outside stay identical.
        replaced = scenario.after(explicit_range_run)
        assert replaced["outside_after"] == replaced["outside_before"]
        assert replaced["inside"] == [(22, "d2e2!")]
        res = replaced["response"]
        assert (res["rows_deleted"], res["rows_inserted"], res["batches"]) == (2, 1, 1)

    def test_partition_table_mirrors_the_data(self, scenario) -> None:
        parts = scenario.after(explicit_range_run)["partitions"]
        assert parts == [("2025-01-01", 3), ("2025-01-02", 1), ("2025-01-03", 3), ("2025-01-04", 1)]


def weekly_load(project) -> dict:
    create_events(project)
    project.run_sql(
        "insert into {schema}.events select range, timestamp '2025-01-01'"
        " + to_hours(range * 12), 'v' || range from range(120)"
    )
    _, log = run_dbt_and_capture(["--debug", "run", *now("2025-03-01T12:00:00")])
    return {
        "log": log,
        "target": events_target(project, "weekly"),
        "source": events_source(project),
        "loads": loads(project, "weekly"),
    }


def check_loaded(project) -> object:
    return run_dbt(["run-operation", "sqlflow_check_partitions", "--args", "{model: weekly}"])


def check_after_hand_insert(project) -> str:
    # A row inserted by hand breaks the recorded counts.
    project.run_sql(
        "insert into {schema}.weekly values (999, timestamp '2025-01-10 10:00:00', 'x')"
    )
    _, log = run_dbt_and_capture(
        ["run-operation", "sqlflow_check_partitions", "--args", "{model: weekly}"],
        expect_pass=False,
    )
    return log


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

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, weekly_load, check_loaded, check_after_hand_insert)

    def test_sixty_days_in_nine_weekly_loads(self, scenario) -> None:
        loaded = scenario.after(weekly_load)
        assert loaded["target"] == loaded["source"]
        windows = loaded["loads"]
        assert len(windows) == 9
        # Every batch is in the log (the eight after the first at debug level, grouped).
        for start, end, *_ in windows:
            assert f"insert_overwrite [{start}, {end}): " in loaded["log"], (start, end)
        assert windows[0][:2] == ("2025-01-01 00:00:00", "2025-01-06 00:00:00")
        assert windows[-1][:2] == ("2025-02-24 00:00:00", "2025-03-03 00:00:00")
        assert sum(w[3] for w in windows) == 120

    def test_check_partitions_passes_on_the_loaded_table(self, scenario) -> None:
        assert scenario.after(check_loaded)

    def test_check_partitions_names_a_count_mismatch(self, scenario) -> None:
        # The check fails, naming the partition.
        log = scenario.after(check_after_hand_insert)
        assert "count_mismatch [2025-01-10]" in log
        assert "recorded 2 rows, found 3" in log


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
