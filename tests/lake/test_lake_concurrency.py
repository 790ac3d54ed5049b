"""Separate OS processes on one lake, as separate machines would be.

Two ``dbt run`` processes start at once: both load the same windowed append model (one
waits for the other's claim and then loads only what is left: no window twice), and each
also loads a model of its own (writers of different models both succeed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lake_testing import release
from sqlflow_testing import events_model, raw_sources_yml, rows

HOURLY = "event_time='event_ts', batch_size='hour'"
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "shared.sql": events_model(f"incremental_strategy='append', {HOURLY}"),
    "mine_a.sql": events_model(f"incremental_strategy='merge', unique_key='id', {HOURLY}"),
    "mine_b.sql": events_model("incremental_strategy='delete+insert', unique_key='id'"),
}
NOW = '{"sqlflow_now": "2025-01-04T00:00:00"}'


def dbt_process(project, *select: str) -> subprocess.Popen:
    dbt = Path(sys.executable).parent / "dbt"
    return subprocess.Popen(
        [
            str(dbt),
            "run",
            "--vars",
            NOW,
            "-s",
            *select,
            "--project-dir",
            str(project.project_root),
            "--profiles-dir",
            str(project.profiles_dir),
            "--log-path",
            str(Path(project.project_root) / f"logs_{select[-1]}"),
            "--target-path",
            str(Path(project.project_root) / f"target_{select[-1]}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )


class TestTwoProcessesAtOnce:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    def test_no_window_is_loaded_twice_and_both_succeed(self, project):
        # Three days of events, one a minute: 72 hourly windows.
        project.run_sql(
            "create or replace table {database}.{schema}.events as select range::integer as id,"
            " timestamp '2025-01-01' + range * interval 1 minute as event_ts,"
            " 'v' || range as v from range(3 * 24 * 60)"
        )
        release(project)
        first = dbt_process(project, "shared", "mine_a")
        second = dbt_process(project, "shared", "mine_b")
        outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
        codes = [first.returncode, second.returncode]
        assert codes == [0, 0], "\n".join(outputs)
        source = rows(project, "select id, event_ts, v from {database}.{schema}.events order by id")
        for model in ("shared", "mine_a", "mine_b"):
            found = rows(
                project, f"select id, event_ts, v from {{database}}.{{schema}}.{model} order by id"
            )
            assert len(found) == len(source), model
            assert found == source, model
        loads = rows(
            project,
            "select window_start, count(*) from {database}.sqlflow_meta.loads"
            " where model = 'model.test.shared' group by all having count(*) > 1",
        )
        assert loads == []  # no window loaded by both
        assert any("another process is loading" in o for o in outputs), "\n".join(outputs)
