"""`dbt-sqlflow intervals MODEL`: loaded ranges and gaps of a windowed model without
partition_by, from real dbt runs, and the errors.

A merge model with ``event_time`` and no ``partition_by`` is built over three days, a day
is invalidated with ``sqlflow_invalidate``, and the command's table and JSON are checked
exactly against sqlflow's ``loads`` table; a run then fills the gap. The CLI runs in a
subprocess (or in-process after :func:`release`), as in test_cli_partitions.py.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, now, raw_sources_yml, rows
from test_cli_partitions import cli as _cli
from test_cli_partitions import cli_profiles, release  # noqa: F401 (a fixture)

windowed_sql = events_model("incremental_strategy='merge', unique_key='id', event_time='event_ts'")
never_run_sql = events_model("incremental_strategy='append', event_time='event_ts'")
whole_sql = events_model("incremental_strategy='merge', unique_key='id'")
view_sql = "{{ config(materialized='view') }} select * from {{ source('raw', 'events') }}"


def cli(project, profiles: dict[str, Any], *args: str, **kwargs: Any):
    """``dbt-sqlflow intervals ARGS`` against the test project."""
    return _cli(project, profiles, *args, command="intervals", **kwargs)


def loads_by_window(project) -> dict[str, tuple[str, datetime]]:
    """``window_start`` (as text) -> (load_id, finished_at) of the windowed model's loads."""
    found = rows(
        project,
        "select strftime(window_start, '%Y-%m-%d'), load_id, finished_at from sqlflow_meta.loads"
        " where model = 'model.test.windowed' order by finished_at",
    )
    return {day: (load_id, finished) for day, load_id, finished in found}


def second(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")


class TestIntervalsCommand:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("events"),
            "windowed.sql": windowed_sql,
            "never_run.sql": never_run_sql,
            "whole.sql": whole_sql,
            "plain_view.sql": view_sql,
        }

    def test_ranges_and_gaps(self, project, cli_profiles) -> None:  # noqa: F811
        profiles = cli_profiles
        create_events(project)
        project.run_sql(
            "insert into {schema}.events values (1, '2025-01-01 01:00', 'a'),"
            " (2, '2025-01-02 01:00', 'b'), (3, '2025-01-03 01:00', 'c')"
        )
        run_dbt(["run", "--exclude", "never_run", *now("2025-01-03T12:00:00")])
        run_dbt(
            [
                "run-operation",
                "sqlflow_invalidate",
                "--args",
                "{model: windowed, start: '2025-01-02', end: '2025-01-03'}",
            ]
        )
        by_day = loads_by_window(project)
        assert sorted(by_day) == ["2025-01-01", "2025-01-02", "2025-01-03"]
        (id1, fin1), (id3, fin3) = by_day["2025-01-01"], by_day["2025-01-03"]
        release(project)

        done = cli(project, profiles, "windowed", "--now", "2025-01-04")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f'"sqlflow"."{project.test_schema}"."windowed" (day windows on event_ts; state in'
            " sqlflow.duckdb:sqlflow_meta; [start, end) UTC)",
            "state   start                end                  last load     finished at (UTC)",
            "------  -------------------  -------------------  ------------  -------------------",
            f"loaded  2025-01-01 00:00:00  2025-01-02 00:00:00  {id1[:12]}  {second(fin1)}",
            "gap     2025-01-02 00:00:00  2025-01-03 00:00:00  -             -",
            f"loaded  2025-01-03 00:00:00  2025-01-03 12:00:00  {id3[:12]}  {second(fin3)}",
            "gap     2025-01-03 12:00:00  2025-01-04 00:00:00  -             -",
            "windowed: 2 loaded ranges (1d 12h), 2 gaps (1d 12h) from 2025-01-01 00:00:00 to now"
            " 2025-01-04 00:00:00, loaded until 2025-01-03 12:00:00, last load"
            f" {second(fin3)} UTC",
        ]

        done = cli(project, profiles, "model.test.windowed", "--json", "--now", "2025-01-04")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "model": "model.test.windowed",
            "relation": f'"sqlflow"."{project.test_schema}"."windowed"',
            "event_time": "event_ts",
            "batch_size": "day",
            "database": str(profiles["database"]),
            "state_schema": "sqlflow_meta",
            "now": "2025-01-04T00:00:00",
            "since": "2025-01-01T00:00:00",
            "loaded": [
                {
                    "start": "2025-01-01T00:00:00",
                    "end": "2025-01-02T00:00:00",
                    "last_load_id": id1,
                    "last_finished_at": fin1.isoformat(),
                },
                {
                    "start": "2025-01-03T00:00:00",
                    "end": "2025-01-03T12:00:00",
                    "last_load_id": id3,
                    "last_finished_at": fin3.isoformat(),
                },
            ],
            "gaps": [
                {"start": "2025-01-02T00:00:00", "end": "2025-01-03T00:00:00"},
                {"start": "2025-01-03T12:00:00", "end": "2025-01-04T00:00:00"},
            ],
            "summary": {
                "loaded_ranges": 2,
                "gaps": 2,
                "loaded_seconds": 36 * 3600,
                "gap_seconds": 36 * 3600,
                "loaded_until": "2025-01-03T12:00:00",
                "last_load_id": id3,
                "last_finished_at": fin3.isoformat(),
            },
        }

        # Without --now, gaps run up to the clock (UTC).
        before = datetime.utcnow()
        data = json.loads(cli(project, profiles, "windowed", "--json").stdout)
        assert before <= datetime.fromisoformat(data["now"]) <= datetime.utcnow()
        assert data["gaps"][-1] == {"start": "2025-01-03T12:00:00", "end": data["now"]}

        # The next run fills the gap: one range, none missing up to its pinned now. Its
        # batch of the current day (from its now, 01-04 00:00) loaded nothing of that day,
        # so the range's last load is the batch of the 3rd.
        run_dbt(["run", "-s", "windowed", *now("2025-01-04T00:00:00")])
        newest = max(
            rows(
                project,
                "select finished_at, load_id from sqlflow_meta.loads"
                " where model = 'model.test.windowed' and window_start < '2025-01-04'",
            )
        )
        release(project)
        data = json.loads(
            cli(project, profiles, "windowed", "--json", "--now", "2025-01-04").stdout
        )
        assert (data["loaded"], data["gaps"]) == (
            [
                {
                    "start": "2025-01-01T00:00:00",
                    "end": "2025-01-04T00:00:00",
                    "last_load_id": newest[1],
                    "last_finished_at": newest[0].isoformat(),
                }
            ],
            [],
        )

    def test_errors(self, project, cli_profiles) -> None:  # noqa: F811
        profiles = cli_profiles
        manifest = Path(project.project_root) / "target" / "manifest.json"
        release(project)
        cases = [
            (
                ["nope"],
                f"Error: model 'nope': not in {manifest}; windowed sqlflow models: never_run,"
                " windowed. Fix: pass a model name or unique_id of this project (run `dbt parse`"
                " if the model is new)",
            ),
            (
                ["plain_view"],
                "Error: model 'model.test.plain_view': materialized 'view', not"
                " 'sqlflow_incremental', so sqlflow keeps no intervals for it. Fix: choose a"
                " sqlflow_incremental model with event_time",
            ),
            (
                ["whole"],
                "Error: model 'model.test.whole': has no event_time (nor a partition_by with a"
                " granularity), so sqlflow loads it whole and records no intervals. Fix: set"
                " event_time to its time column, e.g. event_time='event_ts', and run it",
            ),
            (
                ["never_run"],
                f"Error: model 'model.test.never_run': no intervals of it recorded in"
                f" {profiles['database']} (sqlflow_meta.intervals). Fix: run it first: dbt run -s"
                " never_run",
            ),
            (
                ["windowed", "--target", "empty"],
                f"Error: {profiles['empty']}: no sqlflow state (no table sqlflow_meta.intervals)."
                " Fix: run the model first: dbt run -s windowed",
            ),
        ]
        for args, message in cases:
            done = cli(project, profiles, *args, in_process=True)
            assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n"), args
        # `partitions` of the same model points here.
        done = _cli(project, profiles, "windowed", in_process=True)
        assert (done.returncode, done.stderr) == (
            2,
            "Error: model 'model.test.windowed': has no partition_by, so it has no partitions;"
            " its loaded windows: dbt-sqlflow intervals windowed. Fix: set partition_by, e.g."
            " {'field': 'event_ts', 'granularity': 'day'}, and run it\n",
        )
        done = cli(project, profiles, "windowed", "--now", "yesterday", in_process=True)
        assert done.returncode == 2
        assert "'yesterday' is not an ISO date or timestamp. Fix: pass e.g. --now" in done.stderr
