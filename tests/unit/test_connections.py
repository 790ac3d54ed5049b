"""connections.py: DuckDB's lock error in one line, from the real error of a real lock;
scripts split into statements by DuckDB's parser."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from sqlflow_testing import file_locked_by_another_process

from dbt.adapters.sqlflow.connections import lock_conflict_message, split_statements


def test_lock_conflict_names_the_holder_and_the_fix(tmp_path: Path) -> None:
    path = str(tmp_path / "held.duckdb")
    duckdb.connect(path).close()
    with file_locked_by_another_process(path) as pid:
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(path)
    message = lock_conflict_message(str(info.value), path)
    assert message is not None
    assert message.startswith(
        f"sqlflow: the DuckDB file {path} is locked by another process (PID {pid}, "
    )
    assert message.endswith(
        ": DuckDB lets one process write a database file at a time. Fix: wait for that"
        " process (another dbt run?) to finish, or stop it, then run again."
    )
    assert "\n" not in message


def test_other_errors_are_left_alone(tmp_path: Path) -> None:
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect(str(tmp_path / "missing" / "x.duckdb"))
    assert lock_conflict_message(str(info.value), "x.duckdb") is None


def test_a_lock_error_without_a_pid_still_reads_as_one() -> None:
    message = lock_conflict_message('IO Error: Could not set lock on file "/d/x.duckdb"', "/d/x")
    assert message is not None and "/d/x is locked by another process:" in message


class _Creds:
    """Credentials as dbt-duckdb builds them: the DuckLake databases the profile attaches."""

    def __init__(self, *lakes: str) -> None:
        self._ducklake_dbs = set(lakes)


def test_on_a_lake_a_thread_holds_the_lock_from_its_first_statement_to_its_end() -> None:
    from dbt.adapters.sqlflow.connections import LakeWriters

    writers = LakeWriters()
    writers.before(_Creds("lake"), "insert into lake.s.m select 1")
    assert writers._holds() and writers._lock.locked()
    writers.before(_Creds("lake"), "insert into lake.s.m select 2")  # held already
    # The commit keeps the lock the transaction holds, and releases it when it ends.
    with writers.commit(_Creds("lake")):
        assert writers._lock.locked()
    assert not writers._holds() and not writers._lock.locked()
    # A commit with no statement before it takes the lock for itself.
    with writers.commit(_Creds("lake")):
        assert writers._lock.locked()
    assert not writers._lock.locked()
    writers.ended()  # nothing held: nothing happens
    assert not writers._lock.locked()


def test_another_thread_waits_for_the_transaction_to_end() -> None:
    import threading

    from dbt.adapters.sqlflow.connections import LakeWriters

    writers = LakeWriters()
    order: list[str] = []
    writers.before(_Creds("lake"), "insert into lake.s.m select 1")

    def other() -> None:
        writers.before(_Creds("lake"), "select 1")
        order.append("other ran")
        writers.ended()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(0.2)
    assert order == []  # still waiting
    order.append("first ended")
    writers.ended()
    thread.join(5)
    assert order == ["first ended", "other ran"]


def test_without_a_lake_nothing_is_locked() -> None:
    from dbt.adapters.sqlflow.connections import LakeWriters

    writers = LakeWriters()
    writers.before(_Creds(), "create table t (a int)")
    assert not writers._holds()
    with writers.commit(_Creds()):
        assert not writers._lock.locked()
    with writers.commit(_Creds("lake")):
        assert writers._lock.locked()
    writers.ended()


def test_a_script_splits_into_statements_that_run_in_turn() -> None:
    script = "create table t (s varchar);\ninsert into t values ('a;b'); select count(*) from t"
    statements = split_statements(script)
    assert len(statements) == 3
    con = duckdb.connect()
    assert split_statements(script, con) == statements
    for statement in statements:
        found = con.execute(statement).fetchall()
    assert found == [(1,)]
    assert con.execute("select s from t").fetchall() == [("a;b",)]


def test_one_statement_comes_back_unchanged() -> None:
    one = "select 1 as a\n-- no terminator"
    assert split_statements(one) == [one]
    assert split_statements("select ';' as a;") == ["select ';' as a;"]
    # Not SQL DuckDB's parser reads: executed as it is, its error DuckDB's own.
    assert split_statements("frobnicate; x") == ["frobnicate; x"]
