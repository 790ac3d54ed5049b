"""A batch that meets a real write-write conflict in a dbt run is rolled back and tried
again alone: the model's hooks run once in the data, every window is loaded once, and the
retries show in run_results.json and the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import (
    FAST_RETRY,
    create_daily_events,
    events_model,
    events_source,
    events_target,
    file_target,
    model_state,
    raw_sources_yml,
    rows,
    run_results,
)

HOOKED = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='day',"
    " begin='2025-01-01',"
    " pre_hook=\"insert into {{ target.schema }}.hook_log values ('pre')\","
    " post_hook=\"insert into {{ target.schema }}.hook_log values ('post')\""
)


class TestConflictRetried:
    @pytest.fixture(scope="class")
    def textfile_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(
        self, tmp_path_factory: pytest.TempPathFactory, textfile_dir: Path
    ) -> dict[str, Any]:
        return file_target(
            tmp_path_factory,
            sqlflow_metrics={"textfile": str(textfile_dir)},
            sqlflow_retry=FAST_RETRY,
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("events"), "hooked.sql": HOOKED}

    def test_first_batch_and_last_commit_retried_with_their_hooks_once(
        self, project, textfile_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_daily_events(project, days=(1, 2, 3))
        project.run_sql("create table {schema}.hook_log (hook varchar)")
        # Batch 0 (with the pre-hook in its transaction) and the last commit (index 3,
        # after the post-hook) each meet a conflict.
        monkeypatch.setenv("SQLFLOW_FAULTS", "hooked:conflict@0,hooked:conflict@3")
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-04T00:00:00")

        run_dbt(["run"])

        assert events_target(project, "hooked") == events_source(project)
        assert rows(project, "select hook from {schema}.hook_log order by hook") == [
            ("post",),
            ("pre",),
        ]
        assert model_state(project, "hooked")["loads"] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00", "append", "success", 2, 0),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00", "append", "success", 2, 0),
            ("2025-01-03 00:00:00", "2025-01-04 00:00:00", "append", "success", 2, 0),
        ]
        response = run_results(project)["hooked"]["adapter_response"]
        assert (response["retries"], response["retry_reasons"]) == (2, {"conflict": 2})
        assert response["rows_inserted"] == 6
        text = (textfile_dir / "dbt_sqlflow.prom").read_text()
        assert 'sqlflow_retries_total{model="model.test.hooked",reason="conflict"} 2.0' in text
