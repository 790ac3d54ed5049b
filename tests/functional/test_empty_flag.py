"""``dbt run --empty`` reads no rows: it must neither delete nor record anything.

Every run pins "now" with --vars sqlflow_now; each test asserts the target's rows and
sqlflow's state tables, before and after.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import (
    Scenario,
    create_daily_events,
    events_model,
    events_source,
    events_target,
    model_state,
    now,
    raw_sources_yml,
    rows,
    run_results,
)

sources_yml = raw_sources_yml("events")

DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"


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
        create_daily_events(project)
        run_dbt(["run", "-s", "daily", "keyed", "history", *now("2025-01-03T12:00:00")])
        names = ("daily", "keyed", "history")
        tables = {n: rows(project, f"select * from {{schema}}.{n} order by all") for n in names}
        states = {n: model_state(project, n) for n in names}
        assert events_target(project, "daily") == events_source(project)
        assert len(states["daily"]["loads"]) == 3

        # A day later, --empty: every window would be empty and every key missing.
        run_dbt(["run", "--empty", *now("2025-01-04T12:00:00")])
        for n in names:
            assert rows(project, f"select * from {{schema}}.{n} order by all") == tables[n], n
            assert model_state(project, n) == states[n], n
        response = run_results(project)["daily"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_deleted"], response["batches"]) == (
            0,
            0,
            0,
        )


def empty_first_build(project) -> dict:
    create_daily_events(project)
    run_dbt(["run", "--empty", *now("2025-01-03T12:00:00")])
    return {"target": events_target(project, "fresh"), "state": model_state(project, "fresh")}


def real_run(project) -> dict:
    run_dbt(["run", *now("2025-01-03T12:00:00")])
    return {
        "target": events_target(project, "fresh"),
        "source": events_source(project),
        "intervals": model_state(project, "fresh")["intervals"],
    }


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

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, empty_first_build, real_run)

    def test_first_build_creates_an_empty_table_and_records_nothing(self, scenario) -> None:
        first = scenario.after(empty_first_build)
        assert first["target"] == []
        assert first["state"] == {"loads": [], "intervals": [], "partitions": []}

    def test_next_real_run_loads_everything_from_begin(self, scenario) -> None:
        loaded = scenario.after(real_run)
        assert loaded["target"] == loaded["source"]
        assert loaded["intervals"] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00"),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00"),
            ("2025-01-03 00:00:00", "2025-01-03 12:00:00"),
        ]
