"""retry.py: the profile's sqlflow_retry settings and which errors are transient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtConfigError
from sqlflow_testing import file_locked_by_another_process

from dbt.adapters.sqlflow.retry import (
    RetrySettings,
    classify,
    is_connection_lost,
    is_lock_conflict,
    is_transient,
)


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


# -- which errors are transient: each produced by the real system ----------------------------


def conflict_on_update() -> BaseException:
    """Two transactions update one row; the later writer gets DuckDB's conflict."""
    con = duckdb.connect()
    con.execute("create table t (n integer); insert into t values (0)")
    other = con.cursor()
    con.execute("begin")
    con.execute("select n from t")
    other.execute("update t set n = n + 1")
    with pytest.raises(duckdb.TransactionException) as info:
        con.execute("update t set n = n + 1")
    return info.value


def catalog_conflict() -> BaseException:
    """Two transactions alter one table."""
    con = duckdb.connect()
    con.execute("create table t (n integer)")
    other = con.cursor()
    con.execute("begin")
    con.execute("select n from t")
    other.execute("alter table t add column m integer")
    with pytest.raises(duckdb.TransactionException) as info:
        con.execute("alter table t add column k integer")
    return info.value


def out_of_memory() -> BaseException:
    con = duckdb.connect()
    con.execute("set memory_limit = '32MB'")
    with pytest.raises(duckdb.OutOfMemoryException) as info:
        con.execute("select len(l) from (select list(i) as l from range(50000000) as t(i))")
    return info.value


def refused_connection() -> BaseException:
    """What a client gets while PostgreSQL restarts: nothing listens on its port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as info, socket.socket() as client:
        client.connect(("127.0.0.1", port))
    return info.value


def wrapped_by_dbt(error: BaseException) -> BaseException:
    """dbt-duckdb's exception_handler re-raises DuckDB's error as DbtRuntimeError."""
    from dbt_common.exceptions import DbtRuntimeError

    try:
        raise DbtRuntimeError(str(error)) from error
    except DbtRuntimeError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (conflict_on_update, "conflict"),
        (catalog_conflict, "conflict"),
        (out_of_memory, "out_of_memory"),
        (refused_connection, "connection"),
        (lambda: wrapped_by_dbt(conflict_on_update()), "conflict"),
    ],
    ids=["conflict-on-update", "catalog-conflict", "out-of-memory", "refused", "wrapped"],
)
def test_transient_errors_are_classified(make: Any, reason: str) -> None:
    error = make()
    assert classify(error) == reason
    assert is_transient(error)
    assert is_connection_lost(error) == (reason == "connection")


def test_a_held_lock_is_classified(tmp_path: Path) -> None:
    path = str(tmp_path / "held.duckdb")
    duckdb.connect(path).close()
    with file_locked_by_another_process(path):
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(path)
    assert classify(info.value) == "lock"


@pytest.mark.parametrize(
    "sql",
    [
        "select * from missing_table",  # catalog
        "select 'x'::integer",  # conversion
        "create table u (k integer primary key); insert into u values (1), (1)",  # constraint
        "selec 1",  # syntax
        "copy (select 1) to '/proc/sqlflow-no-such-dir/x.csv'",  # I/O
    ],
)
def test_permanent_errors_are_not_transient(sql: str) -> None:
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect().execute(sql)
    assert classify(info.value) is None
    assert not is_transient(info.value)
    assert not is_connection_lost(info.value)
