"""retry.py: the profile's sqlflow_retry settings and which errors are transient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtConfigError
from sqlflow_testing import file_locked_by_another_process

from dbt.adapters.sqlflow.retry import RetrySettings, is_lock_conflict


def test_defaults_retry() -> None:
    assert RetrySettings.parse(None) == RetrySettings(5, 1.0, 30.0)


def test_settings_are_read() -> None:
    raw = {"attempts": 1, "initial_seconds": 0.5, "max_seconds": 2}
    assert RetrySettings.parse(raw) == RetrySettings(1, 0.5, 2)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("yes", "sqlflow_retry must be a mapping, got 'yes'."),
        ({"attempts": 0}, "attempts is 0; it must be an integer >= 1"),
        ({"attempts": 2.5}, "attempts is 2.5; it must be an integer >= 1"),
        ({"initial_seconds": -1}, "initial_seconds is -1; it must be a number of seconds >= 0"),
        ({"max_seconds": True}, "max_seconds is True; it must be a number of seconds >= 0"),
        ({"tries": 3}, "unknown key 'tries' (allowed: attempts, initial_seconds, max_seconds)"),
    ],
)
def test_bad_settings_say_what_and_the_fix(raw: Any, problem: str) -> None:
    with pytest.raises(DbtConfigError) as info:
        RetrySettings.parse(raw)
    assert problem in info.value.msg
    assert (
        "Write sqlflow_retry: {attempts: 5, initial_seconds: 1, max_seconds: 30}" in info.value.msg
    )


def test_a_lock_held_by_another_process_is_transient(tmp_path: Path) -> None:
    path = str(tmp_path / "held.duckdb")
    duckdb.connect(path).close()
    with file_locked_by_another_process(path):
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(path)
    assert is_lock_conflict(info.value)


def test_sql_errors_are_permanent() -> None:
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect().execute("select * from missing_table")
    assert not is_lock_conflict(info.value)
