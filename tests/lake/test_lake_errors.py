"""Which of a lake's errors are transient: each produced by a real DuckLake and PostgreSQL.

``retry.classify`` reads the words of the error. These are the errors DuckLake 1.5.5 and
its PostgreSQL catalog really raise: a commit conflict between two writers of one table,
and the errors of a session whose catalog server restarted.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from dbt.adapters.sqlflow.retry import classify


def attach(lake: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        f"attach 'ducklake:postgres:{lake['dsn']}' as lake (data_path '{lake['data_path']}')"
    )
    return con


@pytest.fixture(scope="class")
def table(lake: dict[str, Any]) -> str:
    con = attach(lake)
    con.execute("create or replace table lake.main.errors_t (n integer)")
    con.execute("insert into lake.main.errors_t values (0)")
    con.close()
    return "lake.main.errors_t"


class TestLakeErrors:
    def test_a_commit_conflict_between_two_writers_is_a_conflict(self, lake, table):
        first, second = attach(lake), attach(lake)
        first.execute("begin")
        first.execute(f"delete from {table} where n = 0")
        second.execute(f"update {table} set n = n where n = 0")  # commits first
        with pytest.raises(duckdb.Error) as info:
            first.execute("commit")
        assert "conflict" in str(info.value).lower()
        assert classify(info.value) == "conflict"

    def test_a_catalog_restart_is_a_connection_error(self, lake, table, postgres):
        con = attach(lake)
        con.execute(f"select count(*) from {table}").fetchall()
        con.execute("begin")
        con.execute(f"insert into {table} values (1)")
        postgres.restart()
        with pytest.raises(duckdb.Error) as info:
            con.execute("commit")
        assert classify(info.value) == "connection", str(info.value)
        # The commit did not go through: the row is not there.
        assert attach(lake).execute(f"select count(*) from {table} where n = 1").fetchone() == (0,)
