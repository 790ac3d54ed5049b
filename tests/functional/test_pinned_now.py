"""Pinning sqlflow's "now" with the SQLFLOW_NOW environment variable: the same windows as
--vars sqlflow_now, without making dbt re-parse the project on every run."""

from __future__ import annotations

import json

import pytest
from dbt.tests.util import run_dbt_and_capture
from sqlflow_testing import create_events, events_model, raw_sources_yml, rows, run_results

REPARSE = "Unable to do partial parsing"


def intervals(project) -> list[tuple]:
    return rows(
        project,
        "select interval_start::varchar, interval_end::varchar from sqlflow_meta.intervals"
        " where model = 'model.test.daily' order by 1",
    )


class TestSqlflowNowEnvironmentVariable:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("events"),
            "daily.sql": events_model(
                "event_time='event_ts', batch_size='day', begin='2025-01-01',"
                " incremental_strategy='merge', unique_key='id', lookback=0"
            ),
        }

    def test_environment_variable_pins_now_without_a_reparse(
        self, project, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events values (1, '2025-01-01 10:00', 'a'),"
            " (2, '2025-01-02 09:00', 'b'), (3, '2025-01-02 18:00', 'c')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-02T12:00:00")
        run_dbt_and_capture(["run", "--full-refresh"])
        # Planned up to the end of the pinned now's day (not today's), recorded as loaded up
        # to the pinned now: the rest of day 2 is still owed.
        assert rows(project, "select id from {schema}.daily order by id") == [(1,), (2,), (3,)]
        assert intervals(project)[-1] == ("2025-01-02 00:00:00", "2025-01-02 12:00:00")
        response = run_results(project)["daily"]["adapter_response"]
        assert response["sqlflow_now"] == "2025-01-02T12:00:00"

        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-03T00:00:00")
        _, log = run_dbt_and_capture(["run"])
        assert REPARSE not in log
        assert rows(project, "select id from {schema}.daily order by id") == [(1,), (2,), (3,)]
        assert intervals(project)[-1] == ("2025-01-02 12:00:00", "2025-01-03 00:00:00")

    def test_vars_pin_now_too_but_a_changed_value_reparses(self, project) -> None:
        create_events(project)
        for now in ("2025-01-02T00:00:00", "2025-01-03T00:00:00"):
            _, log = run_dbt_and_capture(["run", "--vars", json.dumps({"sqlflow_now": now})])
        # The cost the environment variable avoids: dbt re-parsed for the new --vars.
        assert REPARSE in log
        assert run_results(project)["daily"]["adapter_response"]["sqlflow_now"] == (
            "2025-01-03T00:00:00"
        )
