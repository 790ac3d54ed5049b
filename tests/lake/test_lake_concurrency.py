"""Separate OS processes on one lake, as separate machines would be.

Two ``dbt run`` processes start at once: both load the same windowed append model (the
test holds its claim until both wait for it; then one loads and the other waits for it
and loads only what is left: no window twice), and each also loads a model of its own
(writers of different models both succeed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lake_testing import release
from psycopg import connect
from sqlflow_testing import events_model, raw_sources_yml, rows

from dbt.adapters.sqlflow.claims import CLASS_ID, Claims, psycopg_connect

HOURLY = "event_time='event_ts', batch_size='hour'"
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "shared.sql": events_model(f"incremental_strategy='append', {HOURLY}"),
    "mine_a.sql": events_model(f"incremental_strategy='merge', unique_key='id', {HOURLY}"),
    "mine_b.sql": events_model("incremental_strategy='delete+insert', unique_key='id'"),
}
NOW = '{"sqlflow_now": "2025-01-04T00:00:00"}'


def wait_for_waiters(dsn: str, count: int, timeout: float = 300) -> None:
    """Wait until ``count`` sessions wait for one of sqlflow's advisory locks."""
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as pg:
        while time.monotonic() < deadline:
            waiting = pg.execute(
                "select count(*) from pg_locks where locktype = 'advisory'"
                " and classid = %s and not granted",
                (CLASS_ID,),
            ).fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.1)
    raise AssertionError(f"{count} waiting runs expected within {timeout} s")


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

    def test_no_window_is_loaded_twice_and_both_succeed(self, project, lake):
        # Three days of events, one a minute: 72 hourly windows.
        project.run_sql(
            "create or replace table {database}.{schema}.events as select range::integer as id,"
            " timestamp '2025-01-01' + range * interval 1 minute as event_ts,"
            " 'v' || range as v from range(3 * 24 * 60)"
        )
        release(project)
        # The test holds the claim on `shared` until both processes wait for it: then the
        # two runs of `shared` overlap for certain, whatever the machine's speed.
        claims = Claims(psycopg_connect, lambda line: None)
        relation = str(
            project.adapter.Relation.create(project.database, project.test_schema, "shared")
        )
        claims.claim("test", lake["dsn"], relation, "test")
        first = dbt_process(project, "shared", "mine_a")
        second = dbt_process(project, "shared", "mine_b")
        try:
            wait_for_waiters(lake["dsn"], 2)
        finally:
            claims.release("test")
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
        # Nothing updated loads after a run (on DuckLake an UPDATE deletes, and made the
        # other process's load commits fail): the two phase columns written that way stay
        # NULL on a lake.
        updated = rows(
            project,
            "select count(*) from {database}.sqlflow_meta.loads"
            " where state_seconds is not null or commit_seconds is not null",
        )
        assert updated == [(0,)]
        for output in outputs:  # each waited, and said so
            assert "another process is loading" in output, output
