"""Recovery from transient failures: a batch's transaction retried, a run interrupted.

A transient failure (``retry.classify``) in a batch rolls back that batch's transaction
only; the batches before it stay committed. The batch is then tried again from scratch
after a wait (``retry.retrying``): the statements dbt ran in the same transaction before
the batch (the first batch's pre-hooks and schema changes, the last batch's post-hooks)
are replayed from the connection's journal, and the run's records are rewound to where
they were (``ModelRun.rewind``). An out-of-memory error is retried once, in a degraded
mode (fewer DuckDB threads, insertion order not preserved, so DuckDB can spill to disk).

SIGTERM is turned into the KeyboardInterrupt that dbt already handles for Ctrl-C (it
cancels the running queries): the batch in flight rolls back and the run's error says
which windows committed. dbt exits right after cancelling, without waiting for its worker
threads; the adapter waits (:func:`wait_until_stopped`, a few seconds at most) until every
model run has stopped and said so.

``SQLFLOW_FAULTS`` (for fault-injection tests only) makes real failures happen inside a
batch's transaction: see :func:`inject_fault`.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from dbt.adapters.events.logging import AdapterLogger

from dbt.adapters.sqlflow import events
from dbt.adapters.sqlflow.retry import (
    CONFLICT,
    CONNECTION,
    OUT_OF_MEMORY,
    RetrySettings,
    classify,
    first_line,
    retrying,
)
from dbt.adapters.sqlflow.run import BatchResult, ModelRun, Savepoint
from dbt.adapters.sqlflow.sql import quote_identifier

logger = AdapterLogger("sqlflow")

T = TypeVar("T")

Journal = list[tuple[str, Any]]
"""Statements dbt ran in a transaction: ``(sql, bindings)`` pairs."""


class Session(Protocol):
    """The database as the batch loop uses it: dbt's connection in production."""

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL in the open transaction (opened if none), returning its rows."""

    def commit(self) -> None:
        """Commit the open transaction, if any."""

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""

    def journal(self) -> Journal:
        """What dbt ran in the open transaction (hooks, schema changes), in order."""

    def replay(self, statements: Journal) -> None:
        """Run journaled statements again in a transaction (BEGIN if none is open)."""


# -- retrying a transaction ----------------------------------------------------------------


def attempt(
    run: ModelRun,
    session: Session,
    body: Callable[[bool], None],
    what: str,
    point: Savepoint | None = None,
) -> None:
    """Run one transaction's work (``body``) and retry it after a transient failure.

    ``body(first)`` does the whole transaction's work, replaying what it must when
    ``first`` is False. A failed try's transaction is rolled back; before a retry the
    run's records are rewound; each retry is logged and counted (``run.retries``, and the batch's
    ``retries`` once it commits). Permanent errors, an interrupted run and a second
    out-of-memory error are raised at once.

    Args:
        what: Names the transaction in the log, e.g. ``batch 3 of 30 [2025-01-03, ...)``.
        point: Where the transaction began in the run's records (now, by default): a
            retry rewinds them to it.
    """
    settings = run.services.retry
    point = point or run.savepoint()
    reasons: list[str] = []

    def transient(error: BaseException) -> bool:
        if run.interrupted or interrupted():
            return False
        reason = classify(error)
        return reason is not None and not (reason == OUT_OF_MEMORY and OUT_OF_MEMORY in reasons)

    def before_sleep(state: Any) -> None:
        error = state.outcome.exception()
        reason = classify(error) or "unknown"
        batch = run.in_flight
        context = run.log_context()
        run.rewind(point)  # the failed try rolled its transaction back
        reasons.append(reason)
        run.retries.append(reason)
        degraded = " once, in a degraded mode (fewer threads, spilling to disk)" * (
            reason == OUT_OF_MEMORY
        )
        retry_event(
            run,
            batch,
            f"{run.config.model}: {what} failed with a transient error ({reason}):"
            f" {first_line(error)}. Rolled back; retrying{degraded} in"
            f" {state.next_action.sleep:.1f} s (try {state.attempt_number + 1} of"
            f" {settings.attempts}). {context}",
            attempt=state.attempt_number + 1,
            attempts=settings.attempts,
            reason=reason,
            error_type=type(error).__name__,
            wait_seconds=round(state.next_action.sleep, 3),
        )

    for trial in retrying(settings, transient, before_sleep):
        with trial:
            first = trial.retry_state.attempt_number == 1
            restore = None
            try:
                if reasons and reasons[-1] == OUT_OF_MEMORY:
                    restore = degrade(session)
                run.retrying = list(reasons)
                body(first)
            except BaseException:
                session.rollback()  # before the settings are restored, in a new one
                raise
            finally:
                if restore is not None:
                    restore()
    # The retries belong to the first batch of the transaction that was retried.
    head = next(iter(run.uncommitted[point.uncommitted :]), run.in_flight)
    if head is not None:
        head.retries = reasons


def outside_batches(
    settings: RetrySettings,
    session: Session,
    what: str,
    body: Callable[[], T],
    undo: Callable[[], None] | None = None,
) -> tuple[T, list[str]]:
    """Run a model's work outside its batches (claiming the table, planning, laying out
    or creating a lake table) and retry it from scratch after a lost catalog connection
    or a commit conflict, as a batch would be; returns its result and the retries'
    reasons.

    A catalog that restarts between two models' batches is met here first (the next
    model's first query, or its claim), where nothing else would retry it. A failed try's
    transaction is rolled back and ``undo`` run (a claim let go) before the wait; each
    retry is logged as a warning. Out of memory, a held file lock (retried when
    connecting) and permanent errors are raised at once, as is everything once the
    process was told to stop.

    Args:
        what: Names the work in the log, e.g. ``model.shop.orders: planning``.
    """
    reasons: list[str] = []

    def transient(error: BaseException) -> bool:
        return not interrupted() and classify(error) in (CONFLICT, CONNECTION)

    def before_sleep(state: Any) -> None:
        error = state.outcome.exception()
        reason = classify(error) or "unknown"
        reasons.append(reason)
        logger.warning(
            f"{what} failed with a transient error ({reason}): {first_line(error)}. Rolled"
            f" back; retrying in {state.next_action.sleep:.1f} s (try"
            f" {state.attempt_number + 1} of {settings.attempts})."
        )

    for trial in retrying(settings, transient, before_sleep):
        with trial:
            try:
                result = body()
            except BaseException as e:
                if transient(e):
                    session.rollback()
                    if undo is not None:
                        undo()
                raise
    return result, reasons


def retry_event(run: ModelRun, batch: BatchResult | None, text: str, **fields: Any) -> None:
    """The ``retry`` event (a warning): the batch (``batch``, the one rolled back, None
    for a transaction without one) failed with a transient error and is tried again;
    ``fields`` say which try comes next, why and after how long."""
    events.fire("warning", text, run.event_fields(batch, event="retry", **fields))


def degrade(session: Session) -> Callable[[], None]:
    """DuckDB's advice for an out-of-memory error, until the returned function undoes it:
    half the threads and no insertion order (both let operators spill to disk)."""
    threads, order = session.execute(
        "select current_setting('threads'), current_setting('preserve_insertion_order')"
    )[0]
    fewer = max(1, int(threads) // 2)
    session.execute(f"set threads = {fewer}")
    session.execute("set preserve_insertion_order = false")
    logger.info(
        f"degraded mode for one retry: threads {threads} -> {fewer}, preserve_insertion_order false"
    )

    def restore() -> None:
        session.execute(f"set threads = {int(threads)}")
        session.execute(f"set preserve_insertion_order = {'true' if order else 'false'}")

    return restore


# -- interrupts ----------------------------------------------------------------------------

_INTERRUPTED = threading.Event()


def interrupted() -> bool:
    """Whether this process received SIGTERM."""
    return _INTERRUPTED.is_set()


def _on_sigterm(signum: int, frame: Any) -> None:
    _INTERRUPTED.set()
    # dbt handles KeyboardInterrupt in its main thread: it cancels the running queries,
    # each model's open transaction rolls back, and dbt exits.
    raise KeyboardInterrupt


def handle_sigterm() -> None:
    """Make SIGTERM stop the run the way Ctrl-C does (the batches in flight roll back),
    when this is the main thread and nobody else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


STOP_WAIT_SECONDS = 10.0
"""How long an interrupted process waits for its model runs to stop before it exits."""


def wait_until_stopped(
    running: Callable[[], bool],
    cancel: Callable[[], object],
    timeout: float = STOP_WAIT_SECONDS,
) -> bool:
    """After an interrupt, wait until no model run is ``running`` (each has rolled back
    its open group and logged its message saying which windows committed).

    dbt cancels the queries running when it is interrupted, then exits without joining
    its worker threads: a run between two statements would run its next one and die with
    the process, unheard. A run checks :func:`interrupted` before each batch and before
    each commit; a statement it started after dbt's cancel is cancelled again
    (``cancel``) every half second. Returns whether every run stopped within ``timeout``
    seconds.
    """
    deadline = time.monotonic() + timeout
    next_cancel = time.monotonic() + 0.5
    while running():
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_cancel:
            cancel()
            next_cancel = now + 0.5
        time.sleep(0.05)
    return True


def stopped_note(run: ModelRun, why: str) -> str:
    """What a run stopped by ``why`` leaves: the windows committed, where the next run
    resumes."""
    done = [r.window for r in run.results if r.window is not None]
    open_group = [*run.uncommitted, *([run.in_flight] if run.in_flight else [])]
    windows = [r.window for r in open_group if r.window is not None]
    total = len(run.plan.batches)
    parts = [f"sqlflow: {run.config.model} was stopped ({why})."]
    if done:
        parts.append(
            f" {len(done)} window(s) committed and stay loaded: [{done[0].start}, {done[-1].end})."
        )
    else:
        parts.append(" No window of this run committed.")
    left = f"({total - run.loaded_batches} of {total} batches left)"
    if windows:
        what = "The batch" if len(windows) == 1 else f"The {len(windows)} batches"
        parts.append(
            f" {what} [{windows[0].start}, {windows[-1].end}) rolled back; the next run"
            f" resumes there {left}."
        )
    elif run.loaded_batches < total:
        upcoming = run.plan.batches[run.loaded_batches]
        if upcoming is not None:
            parts.append(f" The next run resumes at {upcoming.start} {left}.")
    return "".join(parts)


# -- fault injection (tests only) ------------------------------------------------------------

FAULT_KINDS = ("conflict", "oom", "kill", "term")
_FAULT = re.compile(r"^(?:(?P<model>[\w.-]+):)?(?P<kind>\w+)@(?P<index>\d+)$")
PROBE = "sqlflow_fault_probe"
"""The state schema's table a ``conflict`` fault makes two transactions update."""


@dataclass(frozen=True)
class Fault:
    """One fault of ``SQLFLOW_FAULTS``: ``[model:]kind@batch_index``; the index one past
    the last batch's is the run's last commit, after the model's post-hooks."""

    kind: str
    index: int
    model: str | None = None


def armed_faults() -> list[Fault]:
    """The faults ``SQLFLOW_FAULTS`` asks for (a comma-separated list), e.g.
    ``conflict@3,orders:kill@10``.

    Raises:
        ValueError: for an entry that is not ``[model:]kind@index`` of a known kind.
    """
    raw = os.environ.get("SQLFLOW_FAULTS", "").strip()
    faults = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        found = _FAULT.match(entry)
        if found is None or found["kind"] not in FAULT_KINDS:
            raise ValueError(
                f"SQLFLOW_FAULTS entry {entry!r} is not [model:]kind@batch_index with kind one"
                f" of {', '.join(FAULT_KINDS)}"
            )
        faults.append(Fault(found["kind"], int(found["index"]), found["model"]))
    return faults


def probe_sql(table: str) -> str:
    """The probe table a ``conflict`` fault needs, created before any batch begins."""
    return f"create table if not exists {table} (n integer); insert into {table} values (0)"


_UNITS = {"": 1, "B": 1, "BYTES": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def size_bytes(text: str) -> int:
    """DuckDB's size text (``'1.0 GiB'``, ``'512.0 MiB'``, ``'1000 bytes'``) in bytes."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", text)
    if found is None or found[2].upper() not in _UNITS:
        raise ValueError(f"not a DuckDB size: {text!r}")
    return int(float(found[1]) * _UNITS[found[2].upper()])


def inject_fault(
    run: ModelRun, session: Session, index: int, side: Callable[[str], Any], probe: str
) -> None:
    """Make the fault ``SQLFLOW_FAULTS`` arms for this batch happen, on its first try, in
    its open transaction. The errors are the real system's:

    - ``conflict``: another transaction (``side``, a second connection to the same
      database) updates the probe row and commits, then this one updates it: DuckDB's
      "Conflict on update" (a write-write conflict).
    - ``oom``: a statement that needs twice the ``memory_limit``: DuckDB's "Out of
      Memory Error".
    - ``kill``: SIGKILL to this process, in the middle of the batch.
    - ``term``: SIGTERM to this process, in the middle of the batch.
    """
    name = run.config.model.rsplit(".", 1)[-1]
    for fault in armed_faults():
        if fault.index != index or fault.model not in (None, name):
            continue
        if fault.kind == "conflict":
            # Read first: DuckDB starts a transaction on a database when it first reads it.
            session.execute(f"select n from {probe}")
            side(f"update {probe} set n = n + 1")
            session.execute(f"update {probe} set n = n + 1")
        elif fault.kind == "oom":
            limit = size_bytes(str(session.execute("select current_setting('memory_limit')")[0][0]))
            # BIGINTs in one list: twice the limit's worth.
            session.execute(
                f"select len(l) from (select list(i) as l from range({limit // 4})"
                f" as t(i)) as {quote_identifier('oom')}"
            )
        else:
            os.kill(os.getpid(), signal.SIGKILL if fault.kind == "kill" else signal.SIGTERM)
