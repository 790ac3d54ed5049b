"""Helpers shared by sqlflow's functional tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

Step = Callable[[Any], Any]

# Retries fast enough for a test: three attempts, 10 ms then at most 50 ms apart.
FAST_RETRY = {"attempts": 3, "initial_seconds": 0.01, "max_seconds": 0.05}


def file_target(tmp_path_factory: pytest.TempPathFactory, **extra: Any) -> dict[str, Any]:
    """A ``type: sqlflow`` target on a new DuckDB file, one thread, plus ``extra`` keys."""
    path = tmp_path_factory.mktemp("duckdb") / "sqlflow.duckdb"
    return {"type": "sqlflow", "path": str(path), "threads": 1, **extra}


class Scenario:
    """The steps of one scenario on a test class's shared project, each run once, in order.

    dbt-tests-adapter's ``project`` fixture is class-scoped: a class's tests share one
    database. A step acts (changes the source, runs dbt) and returns what the tests will
    assert on, read right after it; it asserts nothing itself. A test asks for what one step
    recorded with :meth:`after`, which first runs every earlier step not yet run: the test
    passes alone (``pytest file::Class::test_x``), and a class's tests together run each
    step once.
    """

    def __init__(self, project: Any, *steps: Step) -> None:
        self.project = project
        self.steps = steps
        self.recorded: dict[Step, Any] = {}
        self.failed: Step | None = None

    def after(self, step: Step) -> Any:
        """What ``step`` recorded, running it and the steps before it if they have not run."""
        for earlier in self.steps[: self.steps.index(step) + 1]:
            if earlier in self.recorded:
                continue
            if self.failed is not None:
                # The database is somewhere between two steps: running on would mislead.
                pytest.fail(f"scenario step {self.failed.__name__} failed in an earlier test")
            try:
                self.recorded[earlier] = earlier(self.project)
            except BaseException:
                self.failed = earlier
                raise
        return self.recorded[step]


def run_results(project: Any) -> dict[str, dict[str, Any]]:
    """The last run's results from ``target/run_results.json``, by node name."""
    path = Path(project.project_root) / "target" / "run_results.json"
    data = json.loads(path.read_text())
    return {r["unique_id"].split(".")[-1]: r for r in data["results"]}


def raw_sources_yml(*tables: str) -> str:
    """A sources.yml declaring source ``raw`` (in the test schema) with these tables."""
    listed = "".join(f"      - name: {t}\n" for t in tables)
    return (
        'version: 2\nsources:\n  - name: raw\n    schema: "{{ target.schema }}"\n'
        f"    tables:\n{listed}"
    )


def now(ts: str) -> list[str]:
    """The dbt arguments that pin sqlflow's "now" (``--vars '{"sqlflow_now": ts}'``)."""
    return ["--vars", json.dumps({"sqlflow_now": ts})]


EVENTS_BODY = "select id, event_ts, v from {{ source('raw', 'events') }}"


def events_model(config: str, body: str = EVENTS_BODY) -> str:
    """A ``sqlflow_incremental`` model file with this config (``raw.events`` by default)."""
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + body + "\n"


def create_events(project: Any) -> None:
    """An empty ``events`` table (id, event_ts, v) in the test schema, for source raw.events."""
    project.run_sql(
        "create or replace table {schema}.events (id integer, event_ts timestamp, v varchar)"
    )


def create_daily_events(project: Any, days: tuple[int, ...] = (1, 2, 3)) -> None:
    """``events`` with two rows on each of these days of January 2025, at 01:00 and 02:00.

    Day ``d``'s rows have ids ``d*10 + 1`` and ``d*10 + 2`` and values ``'d<d>e1'``, ``'d<d>e2'``.
    """
    create_events(project)
    values = ", ".join(
        f"({d * 10 + i}, timestamp '2025-01-0{d} 0{i}:00:00', 'd{d}e{i}')"
        for d in days
        for i in (1, 2)
    )
    project.run_sql(f"insert into {{schema}}.events values {values}")


def model_state(project: Any, name: str) -> dict[str, list[tuple]]:
    """Every sqlflow state row of one model (its loads without their timestamps and ids)."""
    model_id = f"'model.test.{name}'"
    return {
        "loads": rows(
            project,
            "select window_start::varchar, window_end::varchar, strategy, status, rows_inserted,"
            f" rows_deleted from sqlflow_meta.loads where model = {model_id}"
            " order by window_start nulls first, started_at",
        ),
        "intervals": rows(
            project,
            "select interval_start::varchar, interval_end::varchar from sqlflow_meta.intervals"
            f" where model = {model_id} order by interval_start",
        ),
        "partitions": rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            f" where relation like '%\"{name}\"' order by partition_key",
        ),
    }


def events_target(project: Any, name: str) -> list[tuple]:
    """A model's rows built from raw.events, by id (event_ts as text)."""
    return rows(project, f"select id, event_ts::varchar, v from {{schema}}.{name} order by id")


def events_source(project: Any, where: str = "true") -> list[tuple]:
    """The rows of raw.events matching ``where``, by id, as :func:`events_target` shows them."""
    return rows(
        project, f"select id, event_ts::varchar, v from {{schema}}.events where {where} order by id"
    )


def rows(project: Any, sql: str) -> list[tuple]:
    """All rows of a query, as tuples (``{schema}`` is the test schema)."""
    return [tuple(r) for r in project.run_sql(sql, fetch="all")]


def table_hash(project: Any, relation: str) -> tuple[int, int | None]:
    """Row count and an order-independent content hash of a table."""
    result = project.run_sql(f"select count(*), sum(hash(t)) from {relation} as t", fetch="one")
    return int(result[0]), result[1]


def dbt_sqlflow(project: Any, *args: str, timeout: float = 600) -> Any:
    """The ``dbt-sqlflow`` command in its own process, on the test project (after
    :func:`release`, so it can open the database); the completed process, output as text."""
    return own_process(project, "dbt-sqlflow", *args, timeout=timeout)


def own_process(
    project: Any,
    program: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> Any:
    """``program`` (``dbt``, ``dbt-sqlflow``) of this venv in its own process on the test
    project and its profile (after :func:`release`), with ``env`` over the environment;
    the completed process, output as text."""
    import os
    import subprocess
    import sys

    release(project)
    return subprocess.run(
        [
            str(Path(sys.executable).parent / program),
            *args,
            "--project-dir",
            str(project.project_root),
            "--profiles-dir",
            str(project.profiles_dir),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})},
        cwd=project.project_root,
        timeout=timeout,
    )


def release(project: Any) -> None:
    """Close this process's DuckDB database, so another process can open the file.

    dbt-duckdb keeps one database open per process (``DuckDBConnectionManager._ENV``);
    the next query of the test opens it again.
    """
    import gc

    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    project.adapter.cleanup_connections()
    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()
    gc.collect()


@contextmanager
def file_locked_by_another_process(path: str, hold_seconds: float = 120) -> Iterator[int]:
    """A second Python process holding the DuckDB file's write lock for ``hold_seconds``
    (then it exits); yields its PID."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
            " print('ready', flush=True); time.sleep(float(sys.argv[2]))",
            path,
            str(hold_seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def ordered_hash(project: Any, relation: str) -> tuple[int, str]:
    """Row count and a hash of every row in physical order (byte-for-byte sameness)."""
    found = project.run_sql(
        f"select count(*), md5(string_agg(t::varchar, chr(10) order by rowid)) from {relation} t",
        fetch="one",
    )
    return int(found[0]), found[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_pushgateway(store_dir: Path) -> Iterator[str]:
    """A real prometheus-pushgateway on 127.0.0.1, yielding its URL; stopped afterwards.

    Skips the test when the binary is missing (``make services`` installs it).
    """
    import shutil
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway binary not found (make services installs it)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={store_dir / 'pgw.db'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pushgateway did not start on {url}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- unit-test doubles on a real DuckDB connection (no mocks of the database) --------------


class Recorder:
    """An executor on a DuckDB connection that keeps the statements it ran."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.statements: list[str] = []

    def __call__(self, sql: str) -> list[tuple]:
        self.statements.append(sql)
        cursor = self.con.execute(sql)
        return cursor.fetchall() if cursor.description else []


class DuckSession:
    """The batch loop's ``Session`` on a plain DuckDB connection: BEGIN when no
    transaction is open (as dbt's connection does), COMMIT on ``commit``; statements run
    with :meth:`dbt` are journaled as dbt's connection journals its own (hooks)."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.record = Recorder(con)
        self.open = False
        self.commits = 0
        self.dbt_journal: list[tuple[str, Any]] = []

    def execute(self, sql: str) -> list[tuple]:
        if not self.open:
            self.con.execute("BEGIN")
            self.open = True
            self.dbt_journal.clear()
        return self.record(sql)

    def dbt(self, sql: str) -> None:
        """Run a statement as dbt would (a hook): in the transaction, and journaled."""
        self.execute(sql)
        self.dbt_journal.append((sql, None))

    def journal(self) -> list[tuple[str, Any]]:
        return list(self.dbt_journal)

    def replay(self, statements: list[tuple[str, Any]]) -> None:
        for sql, _ in statements:
            self.dbt(sql)

    def commit(self) -> None:
        if self.open:
            self.con.execute("COMMIT")
            self.open = False
            self.commits += 1

    def rollback(self) -> None:
        if self.open:
            self.con.execute("ROLLBACK")
            self.open = False


def model_run(config: Any, relation: str, plan: Any, invocation_id: str, con: Any = None) -> Any:
    """A ``ModelRun`` whose services run on ``con`` (a new in-memory DuckDB by default)."""
    import duckdb

    from dbt.adapters.sqlflow.run import ModelRun, RunServices
    from dbt.adapters.sqlflow.sql import utc_now
    from dbt.adapters.sqlflow.state import StateStore

    run = Recorder(con if con is not None else duckdb.connect())
    services = RunServices(run, StateStore(run), None, [], utc_now())
    return ModelRun("run-1", config, relation, plan, services, invocation_id)


def duck_services(
    session: DuckSession,
    now: Any,
    *,
    checks: Any = (),
    partitions: Any = None,
    event_time_type: str | None = None,
) -> Any:
    """``RunServices`` as the adapter builds them, on ``session``'s DuckDB connection.

    State writes go through ``BufferedWrites`` on the session (one transaction with the
    data, as in production); the state tables are created and committed first.
    """
    from dbt.adapters.sqlflow.run import RunServices
    from dbt.adapters.sqlflow.sql import BufferedWrites
    from dbt.adapters.sqlflow.state import StateStore

    run = BufferedWrites(session.execute)
    state = StateStore(run)
    state.ensure()
    session.commit()
    return RunServices(run, state, partitions, list(checks), now, event_time_type)


class CommitLog:
    """An ``on_commit`` hook that keeps what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, bool]] = []
        self.statements: list[list[Any]] = []

    def __call__(self, run: Any, loaded: list[Any], quiet: bool) -> None:
        """One call per statement that loaded batches: each batch is kept with ``quiet``."""
        self.statements.append(list(loaded))
        self.calls.extend((done, quiet) for done in loaded)

    @property
    def windows(self) -> list[Any]:
        """The committed batches' windows, in commit order."""
        return [done.window for done, _ in self.calls]


def sample_run(**raw: Any) -> Any:
    """A ``ModelRun`` of ``model.proj.events`` with this raw config, planned incremental with
    no windows, on an in-memory DuckDB (for tests of its figures and counts)."""
    from dbt.adapters.sqlflow.config import SqlflowConfig
    from dbt.adapters.sqlflow.plan import INCREMENTAL, LoadPlan

    config = SqlflowConfig.parse("model.proj.events", raw)
    return model_run(config, '"db"."main"."events"', LoadPlan(INCREMENTAL), "inv-1")
