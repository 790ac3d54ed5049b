"""Retries of transient failures: the profile's ``sqlflow_retry`` settings and which errors
are transient.

Today one failure is retried: opening a DuckDB file whose write lock another process holds
(DuckDB lets one process write a file). Waits grow exponentially with jitter up to a cap
(tenacity's ``wait_exponential_jitter``); permanent errors (SQL, schema, config, failed
checks) are never retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    return LOCK_HELD in str(error)
