"""connections.py: DuckDB's lock error in one line, from the real error of a real lock."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from sqlflow_testing import file_locked_by_another_process

from dbt.adapters.sqlflow.connections import lock_conflict_message


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
