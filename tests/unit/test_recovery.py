"""recovery.py: a batch's transaction retried after a real transient failure, on a real
DuckDB (two connections to one database make a real write-write conflict)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from typing import Any

import duckdb
import pytest
from sqlflow_testing import CommitLog, DuckSession, Recorder
from test_execution import (
    APPEND,
    FOUR_DAYS_SOURCE,
    STAGED_APPEND,
    begin_run,
    committed,
    committed_state,
    database,
    day,
    dt,
    loads,
    target_rows,
)

from dbt.adapters.sqlflow.execution import finish_run, run_batches
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.recovery import (
    PROBE,
    Fault,
    armed_faults,
    attempt,
    probe_sql,
    size_bytes,
    stopped_note,
    wait_until_stopped,
)
from dbt.adapters.sqlflow.retry import RetrySettings
from dbt.adapters.sqlflow.run import ModelRun
from dbt.adapters.sqlflow.state import StateStore

NO_WAIT = RetrySettings(attempts=3, initial_seconds=0, max_seconds=0)
TODAY = Interval(dt("2025-01-04"), dt("2025-01-04T12:00"))
EXPECTED_LOADS = [
    ("append", dt("2025-01-01"), dt("2025-01-02"), 2, 0, 0, "success", "inv-1"),
    ("append", dt("2025-01-02"), dt("2025-01-03"), 1, 0, 0, "success", "inv-1"),
    ("append", dt("2025-01-03"), dt("2025-01-04"), 2, 0, 0, "success", "inv-1"),
    ("append", dt("2025-01-04"), dt("2025-01-04T12:00"), 1, 0, 0, "success", "inv-1"),
]


def faulty_run(
    monkeypatch: pytest.MonkeyPatch, faults: str, retry: RetrySettings = NO_WAIT
) -> tuple[ModelRun, DuckSession, duckdb.DuckDBPyConnection, Any]:
    """Four daily batches of an append model, with ``SQLFLOW_FAULTS`` armed and the
    probe table a conflict needs."""
    monkeypatch.setenv("SQLFLOW_FAULTS", faults)
    con = database(FOUR_DAYS_SOURCE)
    # Created before the run's first transaction, as the adapter creates it with the
    # state tables.
    con.execute("create schema sqlflow_meta")
    con.execute(probe_sql(StateStore(Recorder(con)).table(PROBE)))
    con.execute("create table hook_log (n integer)")  # what the hooks of a test write
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")
    run.services.retry = retry
    side_connection = con.cursor()

    def side(sql: str) -> None:
        side_connection.execute(sql)

    return run, session, con, side


def test_faults_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLFLOW_FAULTS", "conflict@3, orders:kill@10")
    assert armed_faults() == [Fault("conflict", 3), Fault("kill", 10, "orders")]
    monkeypatch.setenv("SQLFLOW_FAULTS", "explode@1")
    with pytest.raises(ValueError, match="'explode@1' is not"):
        armed_faults()


@pytest.mark.parametrize(
    ("text", "size"),
    [("488.2 MiB", int(488.2 * 2**20)), ("1.0 GiB", 2**30), ("1000 bytes", 1000), ("2 GB", 2e9)],
)
def test_duckdb_sizes(text: str, size: int) -> None:
    assert size_bytes(text) == size


def test_a_conflicting_batch_is_retried_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    run, session, con, side = faulty_run(monkeypatch, "conflict@1")
    log = CommitLog()

    run_batches(run, session, STAGED_APPEND, "stage", log, side=side)
    finish_run(run, session, log)

    # The second batch met a real write-write conflict, rolled back and loaded once.
    assert run.retries == ["conflict"]
    assert [done.retries for done, _ in log.calls] == [[], ["conflict"], [], []]
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS
    assert committed_state(con).loaded_intervals(run.config.model) == [
        Interval(dt("2025-01-01"), dt("2025-01-04T12:00"))
    ]
    # The other transaction's update committed; the batch's own was rolled back.
    assert committed(con, f"select n from {run.services.state.table(PROBE)}") == [(1,)]
    # Watermarks were rewound with the batch: each load's before is the previous after.
    marks = [(r.watermark_before, r.watermark_after) for r in run.results]
    assert [before for before, _ in marks[1:]] == [after for _, after in marks[:-1]]
    assert run.response().retries == 1 and run.response().retry_reasons == {"conflict": 1}


def test_a_retried_first_batch_replays_the_pre_hooks_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, session, con, side = faulty_run(monkeypatch, "conflict@0")
    session.dbt("insert into hook_log values (1)")  # a pre-hook, in the first transaction
    log = CommitLog()

    run_batches(run, session, STAGED_APPEND, "stage", log, side=side)
    finish_run(run, session, log)

    assert committed(con, "select n from hook_log") == [(1,)]
    assert run.retries == ["conflict"]
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS


def test_the_last_commit_is_retried_with_its_batch_and_post_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Index 4, one past the last batch: the run's last commit, after the post-hooks.
    run, session, con, side = faulty_run(monkeypatch, "conflict@4")
    log = CommitLog()
    run_batches(run, session, STAGED_APPEND, "stage", log, side=side)
    session.dbt("insert into hook_log values (2)")  # a post-hook, in the last transaction

    finish_run(run, session, log)

    assert committed(con, "select n from hook_log") == [(2,)]
    assert run.retries == ["conflict"]
    assert [done.window for done, _ in log.calls][-1] == TODAY
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS
    response = run.response()
    assert (response.rows_inserted, response.batches, response.commits) == (6, 4, 4)


def grouped_append_whose_commit_conflicts(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[duckdb.DuckDBPyConnection, ModelRun, Any]:
    """Four tiny daily batches of an append model, commit_every='auto' (one group); the
    group's commit meets a real write-write conflict on its first try."""
    monkeypatch.setenv("SQLFLOW_FAULTS", "conflict@4")
    con = database(FOUR_DAYS_SOURCE)
    con.execute("create schema sqlflow_meta")
    con.execute(probe_sql(StateStore(Recorder(con)).table(PROBE)))
    run, session = begin_run(con, {**APPEND, "commit_every": "auto"}, "2025-01-04T12:00")
    run.services.retry = NO_WAIT
    return con, run, session


def test_a_retried_group_loads_each_of_its_batches_once(monkeypatch: pytest.MonkeyPatch) -> None:
    con, run, session = grouped_append_whose_commit_conflicts(monkeypatch)
    side = con.cursor()
    log = CommitLog()

    run_batches(run, session, STAGED_APPEND, "stage", log, side=side.execute)
    finish_run(run, session, log)

    assert run.retries == ["conflict"]
    assert [done.retries for done, _ in log.calls] == [["conflict"], [], [], []]
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS
    response = run.response()
    assert (response.rows_inserted, response.batches, response.commits) == (6, 4, 1)


def test_a_retried_last_group_loads_every_batch_though_its_retry_is_due_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last group's commit conflicts; its retry is slower, so commit_every='auto'
    would call the group due after one batch: the retry still loads all four (a lake
    writer did this: the run succeeded with its last three windows unloaded)."""
    con, run, session = grouped_append_whose_commit_conflicts(monkeypatch)
    # Not due while the first try loads its batches (indexes 0 to 2 are asked), due from
    # the retry's first batch on.
    asked = itertools.count()
    monkeypatch.setattr(type(run.config.commit_every), "due", lambda self, *_: next(asked) >= 3)
    side = con.cursor()
    log = CommitLog()

    run_batches(run, session, STAGED_APPEND, "stage", log, side=side.execute)
    finish_run(run, session, log)

    assert run.retries == ["conflict"]
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS
    assert run.response().batches == 4


def test_work_outside_batches_is_retried_after_a_lost_catalog_connection() -> None:
    """Claiming and planning (recovery.outside_batches): rolled back, let go and tried
    again after a connection error; a permanent error raises at once, untouched."""
    from dbt.adapters.sqlflow.recovery import outside_batches

    calls: list[str] = []

    class Session:
        def rollback(self) -> None:
            calls.append("rollback")

    def flaky() -> str:
        calls.append("try")
        if calls.count("try") == 1:
            raise RuntimeError("FATAL:  the database system is shutting down")
        return "planned"

    found = outside_batches(NO_WAIT, Session(), "m: planning", flaky, lambda: calls.append("undo"))  # type: ignore[arg-type]
    assert found == ("planned", ["connection"])
    assert calls == ["try", "rollback", "undo", "try"]

    calls.clear()

    def broken() -> str:
        calls.append("try")
        raise RuntimeError("Binder Error: column x not found")

    with pytest.raises(RuntimeError, match="Binder Error"):
        outside_batches(NO_WAIT, Session(), "m: planning", broken)  # type: ignore[arg-type]
    assert calls == ["try"]


def test_without_retries_the_conflict_fails_the_batch_and_keeps_the_ones_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, session, con, side = faulty_run(monkeypatch, "conflict@2", replace(NO_WAIT, attempts=1))
    with pytest.raises(duckdb.TransactionException, match="Conflict on update"):
        run_batches(run, session, STAGED_APPEND, "stage", CommitLog(), side=side)
    session.rollback()
    assert run.retries == []
    assert target_rows(con) == FOUR_DAYS_SOURCE[:3]
    assert loads(con) == EXPECTED_LOADS[:2]


def test_out_of_memory_is_retried_once_in_a_degraded_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, session, con, side = faulty_run(monkeypatch, "oom@1")
    con.execute("set memory_limit = '64MB'")
    con.execute("set threads = 2")
    seen: list[tuple] = []
    log = CommitLog()

    def on_commit(run: ModelRun, done: Any, quiet: bool) -> None:
        log(run, done, quiet)
        seen.append(tuple(con.execute("select current_setting('threads')").fetchone() or ()))

    run_batches(run, session, STAGED_APPEND, "stage", on_commit, side=side)
    finish_run(run, session, log)

    assert run.retries == ["out_of_memory"]
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == EXPECTED_LOADS
    # The settings are back once the degraded retry is done.
    assert seen[1:] == [(2,), (2,)]
    assert con.execute(
        "select current_setting('threads'), current_setting('preserve_insertion_order')"
    ).fetchall() == [(2, True)]


def test_a_second_out_of_memory_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    run, session, con, _ = faulty_run(monkeypatch, "")
    con.execute("set memory_limit = '32MB'")
    tries: list[bool] = []

    def body(first: bool) -> None:
        tries.append(first)
        session.execute("select len(l) from (select list(i) as l from range(50000000) as t(i))")

    with pytest.raises(duckdb.OutOfMemoryException):
        attempt(run, session, body, "batch 1 of 1")
    assert tries == [True, False]
    assert run.retries == ["out_of_memory"]


def test_permanent_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    run, session, _, _ = faulty_run(monkeypatch, "")
    tries: list[bool] = []

    def body(first: bool) -> None:
        tries.append(first)
        session.execute("select * from no_such_table")

    with pytest.raises(duckdb.CatalogException):
        attempt(run, session, body, "batch 1 of 1")
    assert (tries, run.retries) == ([True], [])


def test_the_stopped_note_says_what_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    run, session, _, side = faulty_run(monkeypatch, "")
    log = CommitLog()
    run_batches(run, session, STAGED_APPEND, "stage", log, side=side)
    assert stopped_note(run, "SIGTERM") == (
        "sqlflow: model.proj.events was stopped (SIGTERM). 3 window(s) committed and stay"
        " loaded: [2025-01-01 00:00:00, 2025-01-04 00:00:00). The batch"
        " [2025-01-04 00:00:00, 2025-01-04 12:00:00) rolled back; the next run resumes"
        " there (1 of 4 batches left)."
    )
    session.rollback()
    assert [w for w in log.windows] == [day("2025-01-01"), day("2025-01-02"), day("2025-01-03")]
    # Stopped between transactions: nothing rolled back, the next window is named.
    run.in_flight, run.uncommitted = None, []
    assert stopped_note(run, "SIGTERM").endswith(
        "3 window(s) committed and stay loaded: [2025-01-01 00:00:00, 2025-01-04 00:00:00)."
        " The next run resumes at 2025-01-04 00:00:00 (1 of 4 batches left)."
    )


# -- an interrupted process waits for its model runs ------------------------------------------


def test_an_interrupt_waits_for_the_run_and_cancels_a_statement_started_late() -> None:
    """dbt cancels once, while the run is between two statements: the run's next
    statement (minutes of work) is cancelled by the wait's own cancel, and the wait ends
    when the run has stopped."""
    con = duckdb.connect()
    between = threading.Event()
    outcome: list[str] = []

    def model_run() -> None:
        between.set()
        time.sleep(0.3)
        try:
            con.execute("select sum(i) from range(100000000000) as t(i)").fetchall()
            outcome.append("finished")
        except duckdb.InterruptException:
            outcome.append("interrupted")

    worker = threading.Thread(target=model_run)
    worker.start()
    between.wait()
    con.interrupt()  # dbt's cancel: no statement is running, nothing stops
    cancels: list[float] = []

    def cancel() -> None:
        cancels.append(time.monotonic())
        con.interrupt()

    started = time.monotonic()
    assert wait_until_stopped(worker.is_alive, cancel, timeout=60)
    assert outcome == ["interrupted"]
    assert 1 <= len(cancels) <= 3
    assert time.monotonic() - started < 10


def test_the_wait_gives_up_after_its_timeout() -> None:
    cancels: list[float] = []
    started = time.monotonic()
    assert not wait_until_stopped(lambda: True, lambda: cancels.append(1), timeout=1.2)
    assert 1.2 <= time.monotonic() - started < 10
    assert 1 <= len(cancels) <= 2  # every half second


def test_no_running_model_means_no_wait() -> None:
    started = time.monotonic()
    assert wait_until_stopped(lambda: False, lambda: pytest.fail("nothing to cancel"), timeout=5)
    assert time.monotonic() - started < 1
