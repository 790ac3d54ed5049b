"""Retries of transient failures: the profile's ``sqlflow_retry`` settings, which errors
are transient (:func:`classify`) and the retry schedule both retry points share.

Transient, retried: the DuckDB file's lock held by another process (when connecting),
write-write conflicts between transactions (threads of one run, DuckLake writers),
DuckLake commit failures, a catalog connection lost or refused while PostgreSQL
restarts, and out-of-memory (once, in a degraded mode). Permanent, never retried: SQL
and schema errors, bad config, failed quality checks, a full disk — everything else.
Waits grow exponentially with jitter up to a cap (tenacity's ``wait_exponential_jitter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying

from dbt_common.exceptions import DbtConfigError

LOCK_HELD = "Could not set lock on file"
"""DuckDB's words when another process holds the database file's write lock."""


@dataclass(frozen=True)
class RetrySettings:
    """How often and how long to retry a transient failure.

    Attributes:
        attempts: Tries in all (1 retries nothing).
        initial_seconds: The first wait; each next one doubles, plus up to this much jitter.
        max_seconds: The longest single wait.
    """

    attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 30.0

    @classmethod
    def parse(cls, raw: Any) -> RetrySettings:
        """The profile's ``sqlflow_retry`` (None: the defaults).

        Raises:
            DbtConfigError: naming every bad key or value and the fix.
        """
        if raw is None:
            return cls()
        example = "sqlflow_retry: {attempts: 5, initial_seconds: 1, max_seconds: 30}"
        if not isinstance(raw, Mapping):
            raise DbtConfigError(f"sqlflow_retry must be a mapping, got {raw!r}. Write {example}")
        problems = [
            f"unknown key {key!r} (allowed: attempts, initial_seconds, max_seconds)"
            for key in raw
            if key not in ("attempts", "initial_seconds", "max_seconds")
        ]
        values: dict[str, Any] = {}
        for key, default, low in (
            ("attempts", cls.attempts, 1),
            ("initial_seconds", cls.initial_seconds, 0),
            ("max_seconds", cls.max_seconds, 0),
        ):
            value = raw.get(key, default)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or value < low or (key == "attempts" and not isinstance(value, int)):
                kind = "an integer >= 1" if key == "attempts" else "a number of seconds >= 0"
                problems.append(f"{key} is {value!r}; it must be {kind}")
            values[key] = value
        if problems:
            raise DbtConfigError(f"sqlflow_retry: {'; '.join(problems)}. Write {example}")
        return cls(**values)


def is_lock_conflict(error: BaseException) -> bool:
    """Whether an error is DuckDB's "another process holds the file's lock" (transient)."""
    return any(LOCK_HELD in str(e) for e in _chain(error))


LOCK = "lock"
CONFLICT = "conflict"
CONNECTION = "connection"
OUT_OF_MEMORY = "out_of_memory"

# (reason, words of the error) — the first match wins. The words are the databases' own:
# DuckDB's transaction manager, DuckLake's commit, libpq through DuckDB's postgres
# extension (a catalog that restarts), DuckDB's buffer manager.
_TRANSIENT: tuple[tuple[str, str], ...] = (
    (LOCK, LOCK_HELD),
    (CONFLICT, "TransactionContext Error: Conflict on"),
    (CONFLICT, "write-write conflict"),
    (CONFLICT, "Transaction conflict"),
    (CONFLICT, "Failed to commit DuckLake transaction"),
    (CONFLICT, "set by the ducklake_max_retry_count setting"),
    (CONNECTION, "server closed the connection unexpectedly"),
    (CONNECTION, "terminating connection due to administrator command"),
    (CONNECTION, "the database system is shutting down"),
    (CONNECTION, "the database system is starting up"),
    (CONNECTION, "Connection refused"),
    (CONNECTION, "could not connect to server"),
    (CONNECTION, "no connection to the server"),
    # libpq's hint when nothing listens (yet) on the server's socket or port: on a unix
    # socket, a restarting server's socket file is gone ("No such file or directory").
    (CONNECTION, "Is the server running"),
    # DuckLake's commit failed and so did its ROLLBACK on the catalog (the connection was
    # gone): whether the catalog committed is checked before a retry (execution.commit_group).
    (CONNECTION, 'Failed to execute query "ROLLBACK"'),
    (OUT_OF_MEMORY, "Out of Memory Error"),
)

REASONS = (LOCK, CONFLICT, CONNECTION, OUT_OF_MEMORY)
"""Every reason :func:`classify` returns (the ``reason`` label of sqlflow_retries_total)."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and the errors it was raised from (dbt wraps DuckDB's)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(error: BaseException) -> str | None:
    """Why an error is transient (one of :data:`REASONS`), or None when it is permanent.

    Reads the error and the errors it was raised from: dbt re-raises DuckDB's errors as
    ``DbtRuntimeError`` with the same words.
    """
    for found in _chain(error):
        text = str(found)
        for reason, words in _TRANSIENT:
            if words in text:
                return reason
    return None


def is_transient(error: BaseException) -> bool:
    """Whether :func:`classify` takes the error for a transient one (worth a retry)."""
    return classify(error) is not None


def is_connection_lost(error: BaseException) -> bool:
    """Whether the error is a lost or refused connection (:data:`CONNECTION`)."""
    return classify(error) == CONNECTION


def first_line(error: BaseException) -> str:
    """The first line of the database's own message: the innermost error's (dbt's
    ``Runtime Error`` wrapper says only that)."""
    *_, innermost = _chain(error)
    text = str(innermost).strip()
    return text.splitlines()[0].rstrip(".") if text else type(innermost).__name__


def retrying(
    settings: RetrySettings,
    retry_on: Callable[[BaseException], bool],
    before_sleep: Callable[[RetryCallState], None],
) -> Retrying:
    """tenacity's retry loop with sqlflow's schedule: ``settings.attempts`` tries in all,
    waits doubling from ``initial_seconds`` plus up to as much jitter, capped at
    ``max_seconds``; the last error is re-raised as it was."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt
    from tenacity import wait_exponential_jitter as backoff

    return Retrying(
        stop=stop_after_attempt(settings.attempts),
        wait=backoff(settings.initial_seconds, settings.max_seconds, 2, settings.initial_seconds),
        retry=retry_if_exception(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )
