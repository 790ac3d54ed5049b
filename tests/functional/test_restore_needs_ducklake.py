"""`dbt-sqlflow restore` (the ``sqlflow_restore`` run-operation) on a plain DuckDB file:
undo needs DuckLake's snapshots, and says so in one dbt error naming the model and the
fix; the table and sqlflow's state stay as they were."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import (
    create_daily_events,
    dbt_sqlflow,
    events_model,
    model_state,
    now,
    raw_sources_yml,
    rows,
)

MODEL = events_model("incremental_strategy='append', event_time='event_ts', batch_size='day'")


class TestRestoreNeedsDuckLake:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("events"), "appended.sql": MODEL}

    @pytest.fixture(scope="class")
    def loaded(self, project) -> dict:
        create_daily_events(project)
        run_dbt(["run", *now("2025-01-03T18:00:00")])
        load = rows(project, "select load_id from sqlflow_meta.loads order by started_at")[0][0]
        return {"load": load, "state": model_state(project, "appended")}

    def test_the_run_operation_says_undo_needs_ducklake(self, project, loaded):
        args = f"{{model: appended, before_load: {loaded['load']}}}"
        _, log = run_dbt_and_capture(
            ["run-operation", "sqlflow_restore", "--args", args], expect_pass=False
        )
        text = " ".join(log.split())
        assert "sqlflow restore of model.test.appended: undoing a load needs DuckLake's" in text
        assert '."appended" is in a plain DuckDB database, which keeps no earlier versions' in text
        assert "Fix: put the model in a DuckLake" in text
        assert "dbt run --full-refresh -s appended" in text
        assert model_state(project, "appended") == loaded["state"]

    def test_the_command_fails_with_the_same_error(self, project, loaded):
        found = dbt_sqlflow(project, "restore", "appended", "--at", "2025-01-02", timeout=300)
        assert found.returncode == 1, found.stdout + found.stderr
        assert "undoing a load needs DuckLake's snapshots" in " ".join(found.stdout.split())

    def test_maintenance_needs_a_ducklake_too(self, project, loaded):
        _, log = run_dbt_and_capture(
            ["run-operation", "sqlflow_lake_maintenance"], expect_pass=False
        )
        text = " ".join(log.split())
        assert "sqlflow_lake_maintenance: database 'sqlflow' is not a DuckLake" in text, text
        assert "Fix: pass the alias of a DuckLake attachment" in text
