"""Failed and refused runs leave what was loaded as it was: a failing first batch, a failing
batch before empty windows, a model renamed onto a loaded table.

Every run pins "now" with --vars sqlflow_now; each test asserts the target's rows and
sqlflow's state tables, before and after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, write_file
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
)

sources_yml = raw_sources_yml("events")

DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"


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

    def test_failing_first_batch_leaves_rows_and_state_as_they_were(self, project) -> None:
        create_daily_events(project)
        run_dbt(["run", *now("2025-01-03T12:00:00")])
        before_rows = events_target(project, "strict")
        before_state = model_state(project, "strict")
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
        assert model_state(project, "strict") == before_state


def loaded_two_days(project) -> None:
    create_daily_events(project, days=(1, 2))
    run_dbt(["run", *now("2025-01-03T00:00:00")])


def failing_batch_run(project) -> list[tuple]:
    # Day 3 brings a bad row; days 4-6 have no rows yet (empty windows after it).
    project.run_sql("insert into {schema}.events values (31, '2025-01-03 01:00', 'bad')")
    run_dbt(["run", *now("2025-01-07T00:00:00")], expect_pass=False)
    return model_state(project, "checked")["intervals"]


def late_rows_run(project) -> dict:
    # The bad row is fixed and rows for days 4 and 5 arrive late: the next run loads them.
    project.run_sql("update {schema}.events set v = 'fixed' where id = 31")
    project.run_sql(
        "insert into {schema}.events values (41, '2025-01-04 01:00', 'late'),"
        " (51, '2025-01-05 01:00', 'late')"
    )
    run_dbt(["run", *now("2025-01-07T00:00:00")])
    return {
        "target": events_target(project, "checked"),
        "source": events_source(project),
        "intervals": model_state(project, "checked")["intervals"],
    }


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

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, loaded_two_days, failing_batch_run, late_rows_run)

    def test_nothing_after_the_failing_batch_is_recorded(self, scenario) -> None:
        intervals = scenario.after(failing_batch_run)
        # Day 2 (lookback) committed before the failing day 3; nothing after it.
        assert max(end for _, end in intervals) == "2025-01-03 00:00:00"

    def test_late_rows_of_the_unrecorded_windows_load_next_run(self, scenario) -> None:
        loaded = scenario.after(late_rows_run)
        assert loaded["target"] == loaded["source"]
        assert max(end for _, end in loaded["intervals"]) == "2025-01-07 00:00:00"


class TestRenamedModel:
    """A model renamed onto the same table does not load its windows a second time."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "appended.sql": events_model("incremental_strategy='append', event_time='event_ts'"),
        }

    def test_rename_is_refused_until_full_refresh(self, project) -> None:
        create_daily_events(project)
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
