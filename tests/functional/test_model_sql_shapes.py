"""Model SQL as users write it, which a naive wrapper or a whole-range census would get wrong:
a trailing line comment, a window macro as the event time, window macros in another time zone.

Every run pins "now" with --vars sqlflow_now.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import (
    EVENTS_BODY,
    Scenario,
    create_daily_events,
    events_model,
    events_source,
    events_target,
    file_target,
    now,
    raw_sources_yml,
    rows,
)

sources_yml = raw_sources_yml("events")

DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
COUNTS = "select day::varchar, events from {schema}.daily_counts order by day"


def first_run(project) -> dict:
    create_daily_events(project, days=(1, 3))
    run_dbt(["run", *now("2025-01-03T12:00:00")])
    return {
        "source": events_source(project),
        "commented": events_target(project, "commented"),
        "commented_keyed": events_target(project, "commented_keyed"),
        "counts": rows(project, COUNTS),
    }


def next_day_run(project) -> list[tuple]:
    run_dbt(["run", *now("2025-01-04T12:00:00")])
    return rows(project, COUNTS)


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

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_run, next_day_run)

    def test_model_ending_in_a_line_comment_loads_every_row(self, scenario) -> None:
        first = scenario.after(first_run)
        assert first["commented"] == first["source"]
        assert first["commented_keyed"] == first["source"]

    def test_window_start_as_event_time_gives_one_row_per_window(self, scenario) -> None:
        # One row per window, day 2 included (no events): the windows are not judged by
        # running the model once over the whole range (where every row would be day 1).
        assert scenario.after(first_run)["counts"] == [
            ("2025-01-01 00:00:00", 2),
            ("2025-01-02 00:00:00", 0),
            ("2025-01-03 00:00:00", 2),
        ]
        assert scenario.after(next_day_run) == [
            ("2025-01-01 00:00:00", 2),
            ("2025-01-02 00:00:00", 0),
            ("2025-01-03 00:00:00", 2),
            ("2025-01-04 00:00:00", 0),
        ]


IDS = "select id from {schema}.%s order by id"


class TestWindowMacrosInAnotherTimeZone:
    """A TIMESTAMPTZ event_time read through the window macros in a non-UTC session: the
    plain comparison shifts the window (warned about), timezone('UTC', ...) does not."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        return file_target(
            tmp_path_factory,
            settings={"TimeZone": "America/New_York"},
        )

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

    @pytest.fixture(scope="class")
    def output(self, project) -> str:
        """The log of one run over two days of events, one every 3 hours (UTC)."""
        project.run_sql("create or replace table {schema}.tz_events (id integer, ts timestamptz)")
        project.run_sql(
            "insert into {schema}.tz_events select i, timestamptz '2025-01-01 00:00:00+00'"
            " + i * interval 3 hour from range(16) t(i)"
        )
        _, output = run_dbt_and_capture(["run", *now("2025-01-03T00:00:00")])
        return output

    def test_windows_converted_to_utc_load_every_event(self, project, output) -> None:
        assert rows(project, IDS % "exact") == [(i,) for i in range(16)]

    def test_plain_comparison_shifts_each_window(self, project, output) -> None:
        # New York is 5 hours behind UTC: each day's window misses its first 5 hours
        # of UTC time (00:00 and 03:00 of each day).
        assert rows(project, IDS % "shifted") == [(i,) for i in range(16) if i not in (0, 1, 8, 9)]

    def test_only_the_plain_comparison_is_warned_about(self, output) -> None:
        warned = [line for line in output.splitlines() if "TimeZone is America/New_York" in line]
        # Only the model that compares the literals as they are.
        assert len(warned) == 1, output
        assert "model.test.shifted" in warned[0]
        assert "timezone('UTC', {{ sqlflow_window_start() }})" in warned[0]
