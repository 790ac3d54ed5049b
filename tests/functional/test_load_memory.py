"""Each load row records the DuckDB instance's peak memory, what it spilled to disk, and
the transient failures its batch was retried after: a model whose batches group three
million strings under a 100 MB ``memory_limit`` spills, a light one does not, and an
out-of-memory error in a batch shows as its retry."""

from __future__ import annotations

from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import (
    FAST_RETRY,
    create_daily_events,
    events_model,
    file_target,
    raw_sources_yml,
    release,
    rows,
)

DAILY = "incremental_strategy='append', event_time='event_ts', begin='2025-01-01'"
# The batch's rows, joined to a GROUP BY of 3M distinct strings (~200 MB of hash table).
HEAVY = events_model(
    DAILY + ", commit_every=1",
    "select e.id, e.event_ts, e.v from {{ source('raw', 'events') }} as e"
    " where e.id not in (select count(*) from (select md5(i::varchar) as s"
    " from range(3000000) as t(i)) group by s having count(*) > 1)",
)
LIGHT = events_model(DAILY + ", commit_every=1")


class TestLoadMemory:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        return file_target(
            tmp_path_factory,
            settings={"memory_limit": "100MB", "threads": 2},
            sqlflow_retry=FAST_RETRY,
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {"sources.yml": raw_sources_yml("events"), "heavy.sql": HEAVY, "light.sql": LIGHT}

    def test_peak_memory_spill_and_retries_per_load(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_daily_events(project, days=(1, 2))
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-03T00:00:00")
        monkeypatch.setenv("SQLFLOW_FAULTS", "light:oom@1")
        run_dbt(["run"])

        found = rows(
            project,
            "select split_part(model, '.', 3), window_start::date::varchar, rows_inserted,"
            " peak_memory_bytes > 0, spilled_bytes > 0, retries, retry_reasons"
            " from sqlflow_meta.loads order by 1, 2",
        )
        assert found == [
            ("heavy", "2025-01-01", 2, True, True, 0, None),
            ("heavy", "2025-01-02", 2, True, True, 0, None),
            ("light", "2025-01-01", 2, True, False, 0, None),
            ("light", "2025-01-02", 2, True, False, 1, "out_of_memory"),
        ]
        # The profiler sqlflow turned on for the models is off again.
        assert rows(project, "select current_setting('enable_profiling')") == [(None,)]

    def test_tune_recommends_a_memory_limit_for_the_spilling_model(
        self, project: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        import json

        from click.testing import CliRunner

        from dbt.adapters.sqlflow.cli import cli

        # Ten days more: 12 batches of each model (the first test's two, then these ten).
        create_daily_events(project, days=(1, 2, 3, 4, 5, 6, 7, 8, 9))
        project.run_sql(
            "insert into {schema}.events values (101, timestamp '2025-01-10 01:00', 'x'),"
            " (102, timestamp '2025-01-11 01:00', 'y'), (103, timestamp '2025-01-12 01:00', 'z')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-13T00:00:00")
        run_dbt(["run"])
        release(project)
        path = project.adapter.config.credentials.path
        (tmp_path / "profiles.yml").write_text(
            "test:\n  target: dev\n  outputs:\n    dev:\n      type: sqlflow\n"
            f"      path: {path}\n      settings: {{memory_limit: 100MB, threads: 2}}\n"
        )
        argv = ["tune", "--json", "--project-dir", str(project.project_root)]
        done = CliRunner().invoke(cli, [*argv, "--profiles-dir", str(tmp_path)])
        assert done.exit_code == 0, done.output
        advice = {a["model"]: a for a in json.loads(done.stdout)}
        heavy = advice["model.test.heavy"]
        assert heavy["batches"] == 12
        assert [
            (r["key"], r["current"], r["recommended"], r["scope"]) for r in heavy["recommendations"]
        ] == [("memory_limit", "95MB", "1GB", "profile")]
        assert (
            "12 of the last 12 batches spilled to disk" in heavy["recommendations"][0]["evidence"]
        )
        # The light model spills nothing: no memory advice (its tiny batches, one commit
        # each, get grouped commits).
        light = advice["model.test.light"]["recommendations"]
        assert [r["key"] for r in light] == ["commit_every"]
