"""One writer per model on a shared lake: a PostgreSQL advisory lock per target table.

Two ``dbt run`` processes (on one machine or two) that load the same model of a DuckLake
with a PostgreSQL catalog would each plan the windows missing when they start and both
load them: rows twice. So, before a run plans, it takes a session advisory lock on the
lake's catalog database keyed by the target table, and keeps it until the model's run
ends (the connection closes, and PostgreSQL frees the lock, even when the process dies).
A second run of the model waits for the first (saying so in the log), then plans from the
state the first one committed: the windows it loaded are not loaded again.

Plain DuckDB files need no such lock (one process writes a file), nor do DuckLakes with a
DuckDB-file catalog; the lock is taken only on a ``ducklake:postgres:`` attachment. It
needs the ``psycopg`` package (constraints-lake.txt pins it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbt_common.exceptions import DbtRuntimeError

PREFIX = "ducklake:postgres:"
CLASS_ID = 0x5F1F
"""The first key of sqlflow's advisory locks (the second is the relation's hash)."""
_TRY_LOCK = "select pg_try_advisory_lock(%s, hashtext(%s))"


def catalog_dsn(credentials: Any, database: str | None) -> str | None:
    """The libpq connection string of the PostgreSQL catalog of the lake ``database``
    (the profile's ``path`` or an ``attach`` entry), or None when it has none."""
    candidates = []
    path = str(getattr(credentials, "path", "") or "")
    if path.startswith(PREFIX) and database == credentials.path_derived_database_name(path):
        candidates.append(path)
    for attachment in getattr(credentials, "attach", None) or []:
        alias = getattr(attachment, "alias", None)
        if alias == database and str(attachment.path).startswith(PREFIX):
            candidates.append(str(attachment.path))
    return candidates[0][len(PREFIX) :] if candidates else None


@dataclass
class Claims:
    """The advisory locks this process holds, one per model run.

    Attributes:
        connect: Opens a PostgreSQL connection in autocommit mode from a libpq string.
        log: Logs one line.
    """

    connect: Callable[[str], Any]
    log: Callable[[str], None]
    _held: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, run_key: str, dsn: str, relation: str, model: str) -> float:
        """Take the lock of ``relation`` for ``run_key``, waiting for another process
        that holds it; returns the seconds waited.

        Raises:
            DbtRuntimeError: when the catalog database cannot be reached.
        """
        try:
            connection = self.connect(dsn)
        except Exception as e:
            raise DbtRuntimeError(
                f"sqlflow: cannot connect to the lake's PostgreSQL catalog to claim {model}"
                f" ({e}). Fix: check the ducklake:postgres: attach path in profiles.yml"
            ) from e
        started = time.monotonic()
        if not connection.execute(_TRY_LOCK, (CLASS_ID, relation)).fetchone()[0]:
            self.log(
                f"{model}: another process is loading {relation} (it holds sqlflow's lock on"
                " the lake's catalog); waiting for it to finish, then loading what it left"
            )
            connection.execute("select pg_advisory_lock(%s, hashtext(%s))", (CLASS_ID, relation))
            waited = time.monotonic() - started
            self.log(f"{model}: the other load of {relation} ended after {waited:.1f} s; going on")
        with self._lock:
            self._held[run_key] = connection
        return time.monotonic() - started

    def ensure(
        self,
        run_key: str,
        dsn: str,
        relation: str,
        model: str,
        others_loaded: Callable[[], bool],
    ) -> bool:
        """Make sure the run still holds its lock before it commits; True when it had to
        take it again.

        A session advisory lock lives as long as its connection: a catalog restart (or a
        network cut) frees it, and another process may then claim the model and load
        windows this run planned. So: the lock's connection answers, the lock is held.
        Else the lock is taken again, without waiting, and ``others_loaded()`` (read in
        a fresh snapshot) must say that no other run loaded the model meanwhile.

        Raises:
            DbtRuntimeError: when another process holds the lock now, or another run
                loaded the model while the lock was free: the group rolls back (the
                batches committed before it stay) and the run stops.
            Exception: the driver's error while the catalog is still unreachable (a
                connection error: the group is retried, and checks again).
        """
        with self._lock:
            connection = self._held.get(run_key)
        if connection is None:
            return False
        try:
            connection.execute("select 1")
            return False
        except Exception:
            self.release(run_key)
        fresh = self.connect(dsn)
        if not fresh.execute(_TRY_LOCK, (CLASS_ID, relation)).fetchone()[0]:
            fresh.close()
            raise _lost(model, relation, "another process holds it now")
        with self._lock:
            self._held[run_key] = fresh
        if others_loaded():
            raise _lost(model, relation, "another run loaded the model meanwhile")
        self.log(
            f"{model}: the claim on {relation} was lost (the lake's catalog connection"
            " dropped) and is taken again; no other run loaded the model meanwhile; going on"
        )
        return True

    def release(self, run_key: str) -> None:
        """Free the lock of a run (nothing when it holds none)."""
        with self._lock:
            connection = self._held.pop(run_key, None)
        if connection is not None:
            try:
                connection.close()
            except Exception:  # the lock dies with the connection either way
                pass

    def release_all(self) -> None:
        """Free every lock this process holds."""
        with self._lock:
            keys = list(self._held)
        for key in keys:
            self.release(key)


def _lost(model: str, relation: str, since: str) -> DbtRuntimeError:
    """The error of a run whose claim was lost and cannot be trusted again (``since``:
    what happened meanwhile)."""
    return DbtRuntimeError(
        f"sqlflow_incremental model '{model}': its claim on {relation} was lost (the lake's"
        f" catalog connection dropped: a restart?) and {since}. Stopping so that no window"
        " is loaded twice: the batches committed so far stay, this group is rolled back."
        " Fix: nothing; the next run loads what is left."
    )


def psycopg_connect(dsn: str) -> Any:
    """A psycopg connection in autocommit mode.

    Raises:
        DbtRuntimeError: when psycopg is not installed, with the fix.
    """
    try:
        import psycopg
    except ImportError as e:
        raise DbtRuntimeError(
            "sqlflow: a DuckLake with a PostgreSQL catalog needs the psycopg package, to keep"
            " two processes from loading one model at once. Fix: pip install 'psycopg[binary]'"
        ) from e
    return psycopg.connect(dsn, autocommit=True)
