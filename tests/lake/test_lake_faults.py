"""Transient failures of a lake, recovered by the run itself (the recovery issue, on DuckLake).

- The PostgreSQL catalog restarts in the middle of a run of hourly batches: the batches
  in flight fail with libpq's connection errors, are rolled back and retried once the
  server is back; the run succeeds with every row once. (Now and then DuckDB 1.5.5 aborts
  the process instead; then the next run finishes the model, every row once.)
- Another process writes the target while sqlflow's batches run (a no-op UPDATE of one of
  its rows, four times: a delete and insert in DuckLake): sqlflow's batch that writes the
  same table meanwhile fails to commit with DuckLake's "Transaction conflict" and is
  retried; the run succeeds with every row once.

- The run's claim on the model (an advisory lock on the catalog) dies with its session:
  the run takes it again before its next commit, or stops when another process holds it.

Each run's retries are read from ``run_results.json``; the data is checked row by row.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from lake_testing import release
from psycopg import connect
from sqlflow_testing import events_model, raw_sources_yml, rows
from test_lake_concurrency import dbt_process

from dbt.adapters.sqlflow.claims import CLASS_ID

HOURS = 2 * 24
HOURLY = "event_time='event_ts', batch_size='hour', commit_every=1"
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "appended.sql": events_model(f"incremental_strategy='append', {HOURLY}"),
    "merged.sql": events_model(f"incremental_strategy='merge', unique_key='id', {HOURLY}"),
}


def create_events(project) -> None:
    project.run_sql(
        "create or replace table {database}.{schema}.events as select range::integer as id,"
        " timestamp '2025-01-01' + range * interval 1 minute as event_ts,"
        f" 'v' || range as v from range({HOURS} * 60)"
    )
    release(project)


def snapshots(dsn: str) -> int:
    with connect(dsn, autocommit=True) as pg:
        return int(pg.execute("select count(*) from ducklake_snapshot").fetchone()[0])


def wait_for_snapshots(dsn: str, count: int, timeout: float = 300) -> None:
    """Wait until the lake has ``count`` snapshots (the run has committed some batches)."""
    deadline = time.monotonic() + timeout
    while snapshots(dsn) < count:
        assert time.monotonic() < deadline, f"{count} snapshots expected"
        time.sleep(0.05)


def retries(project, model: str) -> int:
    results = json.loads(
        (Path(project.project_root) / f"target_{model}" / "run_results.json").read_text()
    )
    (result,) = [r for r in results["results"] if r["unique_id"] == f"model.test.{model}"]
    assert result["status"] == "success"
    return int(result["adapter_response"]["retries"])


def exact(project, model: str) -> None:
    source = rows(project, "select id, event_ts, v from {database}.{schema}.events order by id")
    found = rows(
        project, f"select id, event_ts, v from {{database}}.{{schema}}.{model} order by id"
    )
    assert found == source, model


class TestTheCatalogRestarts:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    def test_the_run_retries_and_loads_every_row_once(self, project, lake, postgres):
        create_events(project)
        started = snapshots(lake["dsn"])
        load = dbt_process(project, "appended")
        wait_for_snapshots(lake["dsn"], started + 5)
        postgres.restart()
        output = load.communicate(timeout=600)[0]
        if load.returncode != 0:
            # DuckDB 1.5.5 sometimes aborts the process when the catalog's connection dies
            # (SIGABRT), or fails a statement with "Attempting to fetch from an
            # unsuccessful query result ... Current transaction is aborted" (README,
            # DuckLake): then, as after a kill -9, the next run must finish the model.
            assert (
                "database has been invalidated" in output or "transaction is aborted" in output
            ), output
            rerun = dbt_process(project, "appended")
            output = rerun.communicate(timeout=600)[0]
            assert rerun.returncode == 0, output
        else:
            assert load.returncode == 0, output
            assert "transient error (connection)" in output, output
            assert retries(project, "appended") >= 1
        exact(project, "appended")


class TestAnotherWriterOfTheTarget:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    def test_conflicting_commits_are_retried_and_every_row_loaded_once(self, project, lake):
        create_events(project)
        stop = threading.Event()
        errors: list[str] = []

        def other_writer() -> None:
            import duckdb

            con = duckdb.connect()
            con.execute(
                f"attach 'ducklake:postgres:{lake['dsn']}' as lake"
                f" (data_path '{lake['data_path']}')"
            )
            table = f"lake.{project.test_schema}.merged"
            writes = 0
            # A few writes, 1.5 s apart, once the table holds rows: each lands inside one
            # of sqlflow's back-to-back batch transactions (a writer that never paused
            # would starve any optimistic writer, sqlflow's retries included).
            while not stop.is_set() and writes < 4:
                try:
                    if con.execute(f"update {table} set v = v where id = 0").fetchone()[0]:
                        writes += 1
                        stop.wait(1.5)
                        continue
                except Exception as e:  # the table is not there yet
                    errors.append(str(e).splitlines()[0])
                stop.wait(0.05)
            con.close()

        load = dbt_process(project, "merged")
        writer = threading.Thread(target=other_writer)
        writer.start()
        try:
            output = load.communicate(timeout=600)[0]
        finally:
            stop.set()
            writer.join(60)
        assert load.returncode == 0, output
        assert "transient error (conflict)" in output, output
        assert retries(project, "merged") >= 1
        exact(project, "merged")


def terminate_claim(dsn: str) -> int:
    """Terminate the catalog session holding sqlflow's advisory lock (what a catalog
    restart or a network cut does to it); how many were terminated."""
    with connect(dsn, autocommit=True) as pg:
        return int(
            pg.execute(
                "select count(pg_terminate_backend(pid)) from pg_locks"
                " where locktype = 'advisory' and classid = %s and granted",
                (CLASS_ID,),
            ).fetchone()[0]
        )


def wait_for_waiters(dsn: str, timeout: float = 30) -> None:
    """Wait until a session waits for one of sqlflow's advisory locks."""
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as pg:
        while not pg.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and classid = %s"
            " and not granted",
            (CLASS_ID,),
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "no session waits for the lock"
            time.sleep(0.02)


class TestTheClaimIsLost:
    """The run's advisory lock dies with its catalog session; before its next COMMIT the
    run takes it again (nobody loaded the model meanwhile) or stops (somebody holds it)."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    def test_taken_again_when_nobody_else_loaded(self, project, lake):
        create_events(project)
        started = snapshots(lake["dsn"])
        load = dbt_process(project, "appended")
        wait_for_snapshots(lake["dsn"], started + 5)
        assert terminate_claim(lake["dsn"]) == 1
        output = load.communicate(timeout=600)[0]
        assert load.returncode == 0, output
        assert "is taken again; no other run loaded the model meanwhile" in output, output
        exact(project, "appended")

    def test_the_run_stops_when_another_process_holds_it(self, project, lake):
        started = snapshots(lake["dsn"])
        load = dbt_process(project, "merged")
        wait_for_snapshots(lake["dsn"], started + 5)
        with connect(lake["dsn"], autocommit=True) as other:
            relation = str(
                project.adapter.Relation.create(project.database, project.test_schema, "merged")
            )
            # Another process waits for the model's lock: PostgreSQL grants it the lock as
            # the run's session ends (pg_terminate_backend returns before it has), ahead of
            # the run's own attempt to take it again.
            waiting = threading.Thread(
                target=other.execute,
                args=("select pg_advisory_lock(%s, hashtext(%s))", (CLASS_ID, relation)),
            )
            waiting.start()
            wait_for_waiters(lake["dsn"])
            assert terminate_claim(lake["dsn"]) == 1
            waiting.join(timeout=60)
            assert not waiting.is_alive()
            output = load.communicate(timeout=600)[0]
        assert load.returncode == 1, output
        assert "was lost (the lake's catalog connection dropped: a restart?) and another" in (
            output
        ), output
        # What committed before stays, once each; the next run loads the rest.
        loaded = rows(
            project, "select count(*), count(distinct id) from {database}.{schema}.merged"
        )
        assert loaded[0][0] == loaded[0][1] and 0 < loaded[0][0] < HOURS * 60
        rerun = dbt_process(project, "merged")
        output = rerun.communicate(timeout=600)[0]
        assert rerun.returncode == 0, output
        exact(project, "merged")
