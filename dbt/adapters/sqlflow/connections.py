"""Connection management: dbt-duckdb's, plus the row counts DuckDB returns for DML.

dbt-duckdb reports ``OK`` for every statement (its issue 496). DuckDB answers INSERT,
UPDATE, DELETE, MERGE and CREATE TABLE AS with a single ``Count`` row, so statements run
without ``fetch`` are executed one at a time and their counts summed into
``AdapterResponse.rows_affected``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dbt.adapters.contracts.connection import AdapterResponse, Connection
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.observe import PROFILE_OFF, PROFILE_ON, MemoryProbe
from dbt.adapters.sqlflow.redact import Redactor, RedactSettings
from dbt.adapters.sqlflow.retry import (
    LOCK_HELD,
    RetrySettings,
    first_line,
    is_connection_lost,
    is_lock_conflict,
    retrying,
)

if TYPE_CHECKING:
    import agate


def split_statements(sql: str, parser: Any = None) -> list[str]:
    """Split a SQL script into statements with DuckDB's own parser: ``parser``'s (a DuckDB
    connection: it knows the syntax of the extensions it loaded), else the module's
    default connection (whose creation costs ~20 ms the first time in a process).

    Returns ``[sql]`` unchanged when the script holds one statement or when DuckDB's
    parser cannot read it (an extension's syntax, say): execution then reports the
    error exactly as dbt-duckdb would. SQL without a ``;`` is one statement and is not
    parsed (parsing a batch's large statements costs milliseconds each).
    """
    if ";" not in sql:
        return [sql]
    if parser is None:
        import duckdb

        parser = duckdb

    try:
        statements = parser.extract_statements(sql)
    except Exception:
        return [sql]
    if len(statements) <= 1:
        return [sql]
    return [s.query for s in statements]


_LOCK_HOLDER = re.compile(
    re.escape(LOCK_HELD) + r' "(?P<file>[^"]*)": Conflicting lock is held in'
    r" (?P<program>.*?) \(PID (?P<pid>\d+)\)"
)


def lock_conflict_message(error: str, path: str) -> str | None:
    """One line for DuckDB's "Could not set lock on file" error, or None for other errors.

    DuckDB lets one process write a database file; the holder's PID is in its message.
    """
    found = _LOCK_HOLDER.search(error)
    if found is None:
        if LOCK_HELD not in error:
            return None
        holder = "another process"
        where = path
    else:
        holder = f"another process (PID {found['pid']}, {found['program']})"
        where = found["file"]
    return (
        f"sqlflow: the DuckDB file {where} is locked by {holder}: DuckDB lets one process"
        " write a database file at a time. Fix: wait for that process (another dbt run?)"
        " to finish, or stop it, then run again."
    )


def _log_lock_wait(state: Any, path: str, started: float, attempts: int) -> None:
    """One line per wait for another process's lock: who holds it, how long so far."""
    from dbt.adapters.events.logging import AdapterLogger

    found = _LOCK_HOLDER.search(str(state.outcome.exception()))
    holder = f"PID {found['pid']} ({found['program']})" if found else "another process"
    waited = time.monotonic() - started
    AdapterLogger("sqlflow").info(
        f"the DuckDB file {path} is locked by {holder}; waited {waited:.1f} s, trying again"
        f" in {state.next_action.sleep:.1f} s (try {state.attempt_number + 1} of {attempts})"
    )


class LakeWriters:
    """How the threads of one process use a DuckLake: one transaction at a time, from its
    first statement to its end (a statement outside a transaction: that statement).

    DuckLake 1.5.5, with several threads of one process writing, now and then fails a
    commit with a corrupted catalog id or text ("Failed to get path for schema with id
    <garbage> - schema not found in metadata catalog", "unterminated quoted string" in the
    catalog's SQL, an error message that is not UTF-8) or crashes: the race reported
    upstream for concurrent transactions in one process (ducklake issues 1248 and 1404,
    dbt-duckdb issue 748; clean on DuckLake 1.5.2, broken since 1.5.3). Holding only
    commits or catalog changes apart was not enough (measured: 5 of 6 lake-suite runs
    failed), so a process runs its lake transactions one after another; dbt's threads
    still overlap their Python work, and separate processes (other machines) write at
    once, which DuckLake supports. Profiles without a DuckLake are not affected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = threading.local()

    def _holds(self) -> bool:
        return bool(getattr(self._held, "holds", False))

    def before(self, credentials: Any, sql: str = "") -> None:
        """Called before a statement runs: on a profile with a DuckLake, the thread
        takes the lock (waiting for another thread's transaction to end) unless its own
        transaction holds it already."""
        if not getattr(credentials, "_ducklake_dbs", None) or self._holds():
            return
        self._lock.acquire()
        self._held.holds = True

    @contextmanager
    def commit(self, credentials: Any) -> Iterator[None]:
        """Around a commit on this profile: with a DuckLake, the lock (the one the
        transaction holds, or taken for the commit); released when the commit ends."""
        self.before(credentials)
        try:
            yield
        finally:
            self.ended()

    def ended(self) -> None:
        """The thread's transaction ended (committed or rolled back), or its statement
        outside a transaction did: release the lock if the thread holds it."""
        if self._holds():
            self._held.holds = False
            self._lock.release()


LAKE_WRITERS = LakeWriters()
"""The process's one :class:`LakeWriters`."""


_tracked_metrics: bool | None = None
"""Whether this process's DuckDB has the ``tracked_metrics`` setting (None: not asked)."""


def _has_tracked_metrics(cursor: Any) -> bool:
    """Whether this DuckDB has the ``tracked_metrics`` setting: asked once per process
    (a scan of ``duckdb_settings()`` costs ~2.5 ms, every model)."""
    global _tracked_metrics
    if _tracked_metrics is None:
        cursor.execute("select count(*) from duckdb_settings() where name = 'tracked_metrics'")
        _tracked_metrics = bool(cursor.fetchone()[0])
    return _tracked_metrics


def count_from_cursor(cursor: Any) -> int | None:
    """The row count of a DML statement's result, or None for anything else.

    Only call this for a statement whose result dbt will not fetch: it consumes the
    result.
    """
    description = getattr(cursor, "description", None)
    if not description or len(description) != 1 or description[0][0] != "Count":
        return None
    try:
        rows = cursor.fetchall()
    except Exception:
        return None
    if len(rows) != 1:
        return None
    value = rows[0][0]
    return int(value) if isinstance(value, int) else None


@contextmanager
def redacted_errors(manager: Any, sql: str, redactor: Redactor) -> Iterator[None]:
    """dbt-duckdb's ``exception_handler`` with DuckDB's error text redacted.

    DuckDB quotes row values in its errors (``Could not convert string 'ann@example.com'
    to INT32``, ``Duplicate key "email: ..."``); dbt-duckdb's handler logs that text at debug
    level and re-raises it. Here the log lines and the ``DbtRuntimeError`` carry it
    redacted, and a redacted error is not chained: its cause would hold the text as it was.
    """
    try:
        yield
    except DbtRuntimeError:
        raise
    except Exception as e:
        from dbt.adapters.events.logging import AdapterLogger

        logger = AdapterLogger("sqlflow")
        text = redactor.text(str(e))
        logger.debug(f"duckdb error: {text}")
        logger.debug(f"Error running SQL: {redactor.text(sql)}")
        logger.debug("Rolling back transaction.")
        manager.rollback_if_open()
        raise DbtRuntimeError(text) from (e if text == str(e) else None)


def profile_redactor(credentials: Any) -> Redactor:
    """The redactor of the profile's ``sqlflow_redact``.

    Raises:
        DbtConfigError: for a bad ``sqlflow_redact``.
    """
    return RedactSettings.parse(getattr(credentials, "sqlflow_redact", None)).redactor()


class SqlflowConnectionManager(DuckDBConnectionManager):
    """dbt-duckdb's connection manager under ``type: sqlflow``, with row counts.

    dbt-duckdb keeps one DuckDB environment in ``DuckDBConnectionManager._ENV`` and
    reads it by that class name elsewhere (relations, Python models, plugins), so
    ``open`` and ``close_all_connections`` delegate to it: a subclass attribute would
    make a second, private environment.
    """

    TYPE = "sqlflow"

    def __init__(self, config: Any, mp_context: Any) -> None:
        super().__init__(config, mp_context)
        # Per thread: what dbt ran in the open transaction (pre-hooks, schema changes,
        # post-hooks), so a retried batch can run it again after the rollback.
        self._journals: dict[int, list[tuple[str, Any]]] = {}
        # The profile's sqlflow_redact, built when a statement first fails.
        self._sqlflow_redactor: Redactor | None = None
        # Per thread: the memory probe of the sqlflow run on it; the threads whose DuckDB
        # profiler sqlflow turned on (and turns off after the model).
        self._probes: dict[int, MemoryProbe] = {}
        self._profiling: set[int] = set()
        # The threads whose open transaction holds statements sqlflow ran itself
        # (DbtSession), which the journal cannot replay.
        self._direct: set[int] = set()

    def start_memory_probe(self) -> MemoryProbe | None:
        """Measure the memory of this thread's sqlflow statements (``DbtSession``) until
        :meth:`stop_memory_probe`: DuckDB's profiler is turned on for this connection with
        :data:`observe.PROFILE_ON`, unless the profile's settings turned it on already
        (then their profile is read as it is).

        Returns:
            The probe, or None when this DuckDB has no ``tracked_metrics`` setting (its
            profiler cannot be limited to the two system metrics).
        """
        cursor = self.get_thread_connection().handle.cursor()
        if not _has_tracked_metrics(cursor):
            return None
        cursor.execute("select current_setting('enable_profiling')")
        (enabled,) = cursor.fetchone()
        thread = threading.get_ident()
        if enabled is None:
            for sql in PROFILE_ON:
                cursor.execute(sql)
            self._profiling.add(thread)
        probe = self._probes[thread] = MemoryProbe()
        return probe

    def memory_probe(self) -> MemoryProbe | None:
        """The memory probe of this thread's sqlflow run, if one is measuring."""
        return self._probes.get(threading.get_ident())

    def stop_memory_probe(self) -> None:
        """Stop this thread's memory probe, and turn the profiler off if sqlflow turned
        it on (nothing when no probe runs)."""
        thread = threading.get_ident()
        if self._probes.pop(thread, None) is None or thread not in self._profiling:
            return
        cursor = self.get_thread_connection().handle.cursor()
        try:
            for sql in PROFILE_OFF:
                cursor.execute(sql)
        except Exception:
            # A failed model's aborted transaction refuses even RESET: the profiler stays
            # on (still sqlflow's) until a later model on this thread stops its probe.
            return
        self._profiling.discard(thread)

    def journal(self) -> list[tuple[str, Any]]:
        """The ``(sql, bindings)`` dbt ran through this thread's connection in its open
        transaction, in order (sqlflow's own batch statements are not in it)."""
        return self._journals.setdefault(threading.get_ident(), [])

    def begin(self) -> None:
        """BEGIN, and start this thread's journal afresh."""
        self.journal().clear()
        self._direct.discard(threading.get_ident())
        super().begin()

    def mark_direct(self) -> None:
        """Note that sqlflow ran a statement of its own (not journaled) in this thread's
        open transaction: a lost connection there is the batch loop's to retry."""
        self._direct.add(threading.get_ident())

    def add_query(
        self,
        sql: str,
        auto_begin: bool = True,
        bindings: Any | None = None,
        abridge_sql_log: bool = False,
        retryable_exceptions: tuple[type[Exception], ...] = (),
        retry_limit: int = 1,
    ) -> tuple[Connection, Any]:
        """dbt's ``add_query`` (within :class:`LakeWriters`' lock on a DuckLake); a
        statement run in a transaction is kept in the journal.

        A statement dbt runs outside sqlflow's batches (a schema change's DESCRIBE, a
        staging table's shape) that loses the lake's catalog connection (PostgreSQL
        restarting) is run again under the profile's ``sqlflow_retry``: the transaction
        is rolled back, begun again and what dbt ran in it replayed from the journal.
        Not a BEGIN, COMMIT or ROLLBACK (whether a lost COMMIT committed is unknown), nor
        a statement in a transaction that holds sqlflow's own statements (the batch
        loop retries those whole).
        """
        if sql in ("BEGIN", "COMMIT", "ROLLBACK"):
            return self._add_query(
                sql, auto_begin, bindings, abridge_sql_log, retryable_exceptions, retry_limit
            )
        connection = self.get_thread_connection()
        in_transaction = connection.transaction_open
        journal = list(self.journal()) if in_transaction else []
        thread = threading.get_ident()

        def lost(error: BaseException) -> bool:
            direct = in_transaction and thread in self._direct
            return not direct and is_connection_lost(error)

        def before_sleep(state: Any) -> None:
            from dbt.adapters.events.logging import AdapterLogger

            error = state.outcome.exception()
            AdapterLogger("sqlflow").warning(
                f"{connection.name}: a statement lost the lake's catalog connection"
                f" ({first_line(error)}); rolled back, running its transaction again in"
                f" {state.next_action.sleep:.1f} s (try {state.attempt_number + 1} of"
                f" {settings.attempts})"
            )

        settings = RetrySettings.parse(getattr(connection.credentials, "sqlflow_retry", None))
        for attempt in retrying(settings, lost, before_sleep):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._start_over(in_transaction, journal)
                return self._add_query(
                    sql, auto_begin, bindings, abridge_sql_log, retryable_exceptions, retry_limit
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _start_over(self, in_transaction: bool, journal: list[tuple[str, Any]]) -> None:
        """Roll back this thread's transaction and, if one was open, begin it again with
        what dbt had run in it."""
        connection = self.get_thread_connection()
        try:
            self.rollback_if_open()
        except Exception:  # the connection was lost: nothing to undo but DuckDB's side
            pass
        try:
            connection.handle.cursor().execute("ROLLBACK")
        except Exception:  # "no transaction is active"
            pass
        connection.transaction_open = False
        if in_transaction:
            self.begin()
            for sql, bindings in journal:
                self._add_query(sql, True, bindings)

    def _add_query(
        self,
        sql: str,
        auto_begin: bool = True,
        bindings: Any | None = None,
        abridge_sql_log: bool = False,
        retryable_exceptions: tuple[type[Exception], ...] = (),
        retry_limit: int = 1,
    ) -> tuple[Connection, Any]:
        LAKE_WRITERS.before(self.profile.credentials, sql)
        try:
            connection, cursor = super().add_query(
                sql, auto_begin, bindings, abridge_sql_log, retryable_exceptions, retry_limit
            )
        finally:
            # A statement outside a transaction is over (BEGIN opens one: dbt marks it
            # open only once the statement returns).
            if sql != "BEGIN" and not self.get_thread_connection().transaction_open:
                LAKE_WRITERS.ended()
        if connection.transaction_open and sql not in ("BEGIN", "COMMIT"):
            self.journal().append((sql, bindings))
        return connection, cursor

    @classmethod
    def open(cls, connection: Connection) -> Connection:
        """Open the connection on dbt-duckdb's shared environment.

        A DuckDB file locked by another process is waited for, with exponential backoff
        and jitter (the profile's ``sqlflow_retry``), each wait logged with the holder.

        Raises:
            FailedToConnectError: in one line, naming the process that holds the DuckDB
                file's lock and the fix, when the lock is still held after the last try.
        """
        settings = RetrySettings.parse(getattr(connection.credentials, "sqlflow_retry", None))
        path = str(getattr(connection.credentials, "path", ""))
        started = time.monotonic()
        waits = retrying(
            settings,
            is_lock_conflict,
            lambda state: _log_lock_wait(state, path, started, settings.attempts),
        )
        try:
            return waits(DuckDBConnectionManager.open, connection)
        except Exception as e:
            message = lock_conflict_message(str(e), path)
            if message is None:
                raise
            from dbt.adapters.exceptions import FailedToConnectError

            waited = time.monotonic() - started
            if settings.attempts > 1:
                message += f" (gave up after {settings.attempts} tries in {waited:.1f} s)"
            raise FailedToConnectError(message) from None

    @classmethod
    def close_all_connections(cls) -> None:
        """Drop dbt-duckdb's shared environment."""
        DuckDBConnectionManager.close_all_connections()

    @contextmanager
    def exception_handler(self, sql: str, connection_name: str = "master") -> Iterator[None]:
        """dbt-duckdb's handler, with the error text redacted by the profile's
        ``sqlflow_redact``."""
        with redacted_errors(self, sql, self.redactor()):
            yield

    def redactor(self) -> Redactor:
        """The profile's redactor (built once)."""
        if self._sqlflow_redactor is None:
            self._sqlflow_redactor = profile_redactor(self.profile.credentials)
        return self._sqlflow_redactor

    def commit(self) -> Any:
        """dbt's COMMIT, one thread at a time on a profile with a DuckLake
        (:class:`LakeWriters`)."""
        with LAKE_WRITERS.commit(self.profile.credentials):
            return super().commit()  # type: ignore[func-returns-value]

    def rollback_if_open(self) -> None:
        """dbt's ROLLBACK, ending the thread's hold of the lake's lock."""
        try:
            super().rollback_if_open()
        finally:
            LAKE_WRITERS.ended()

    def release(self) -> None:
        """dbt's release of the thread's connection (after each node), ending any hold
        of the lake's lock."""
        try:
            super().release()
        finally:
            LAKE_WRITERS.ended()

    def execute(
        self,
        sql: str,
        auto_begin: bool = False,
        fetch: bool = False,
        limit: int | None = None,
    ) -> tuple[AdapterResponse, agate.Table]:
        """Execute SQL; without ``fetch``, report the summed DML row counts."""
        if fetch:
            return super().execute(sql, auto_begin, fetch, limit)
        from dbt_common.clients.agate_helper import empty_table

        if self.disable_transactions:
            auto_begin = False
        total: int | None = None
        for statement in split_statements(sql):
            _, cursor = self.add_query(self._add_query_comment(statement), auto_begin)
            count = count_from_cursor(cursor)
            if count is not None:
                total = count if total is None else total + count
        return AdapterResponse(_message="OK", rows_affected=total), empty_table()


class DbtSession:
    """dbt's connection of this thread as sqlflow's batch loop uses it.

    sqlflow's own small queries (inspection, state, checks, a batch's steps) go straight
    to the DuckDB cursor of dbt's connection: the same transaction, without dbt's
    per-statement events, which cost ~1 ms each (5x the query). BEGIN and COMMIT keep
    the connection's ``transaction_open`` as dbt keeps it; errors are dbt's, their
    DuckDB text redacted (``redacted_errors``).
    """

    def __init__(self, connections: Any, redactor: Redactor | None = None) -> None:
        self._connections = connections
        self._redactor = redactor

    def _errors(self, sql: str) -> Any:
        """The error handling of one statement: the run's redactor (the profile's and the
        model's ``sqlflow_redact``), else the connection manager's."""
        if self._redactor is None:
            return self._connections.exception_handler(sql)
        return redacted_errors(self._connections, sql, self._redactor)

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL in this thread's open transaction (BEGIN first if none is open); a
        script of several statements runs one statement at a time, returning the last
        one's rows."""
        connection = self._connections.get_thread_connection()
        if not connection.transaction_open:
            with self._errors("BEGIN"):
                connection.handle.cursor().execute("BEGIN")
            connection.transaction_open = True
            self._connections.journal().clear()
        self._connections.mark_direct()
        found: list[tuple] = []
        probe = self._connections.memory_probe()
        for statement in split_statements(sql, connection.handle.cursor()):
            LAKE_WRITERS.before(connection.credentials, statement)
            with self._errors(statement):
                cursor = connection.handle.cursor()
                cursor.execute(statement)
                found = [] if cursor.description is None else [tuple(r) for r in cursor.fetchall()]
            # DuckDB profiles a failed statement nowhere: an out-of-memory error leaves only
            # its retry (the load's retry_reasons).
            if probe is not None:
                probe.observe(cursor.get_profiling_information())
        return found

    def commit(self) -> None:
        """COMMIT the open transaction, if any, without dbt's per-statement events."""
        connection = self._connections.get_thread_connection()
        if connection.transaction_open:
            with LAKE_WRITERS.commit(connection.credentials), self._errors("COMMIT"):
                connection.handle.cursor().execute("COMMIT")
            connection.transaction_open = False

    def rollback(self) -> None:
        """Roll back the open transaction, if any (dbt's rollback, with its event).

        Then a ROLLBACK on the DuckDB connection itself, whatever dbt thinks is open:
        dbt marks the transaction closed even when its rollback failed (out of memory,
        say), and DuckDB then refuses every statement with "Current transaction is
        aborted" until one succeeds.
        """
        self._connections.rollback_if_open()
        connection = self._connections.get_thread_connection()
        try:
            connection.handle.cursor().execute("ROLLBACK")
        except Exception:  # "no transaction is active": nothing to undo
            pass
        connection.transaction_open = False
        LAKE_WRITERS.ended()

    def journal(self) -> list[tuple[str, Any]]:
        """A copy of what dbt ran in the open transaction (pre- and post-hooks, schema
        changes): ``(sql, bindings)`` pairs to :meth:`replay` after a rollback."""
        return list(self._connections.journal())

    def replay(self, statements: list[tuple[str, Any]]) -> None:
        """Run journaled statements again, through dbt, in a transaction (BEGIN if none
        is open)."""
        for sql, bindings in statements:
            self._connections.add_query(sql, auto_begin=True, bindings=bindings)

    def describe(self, sql: str) -> list[tuple[str, str]]:
        """The (name, type) of each column a query returns, outside any transaction."""
        _, cursor = self._connections.add_query(f"describe ({sql}\n)", auto_begin=False)
        return [(str(row[0]), str(row[1])) for row in cursor.fetchall()]
