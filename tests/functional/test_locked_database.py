"""A dbt run started while another process holds the DuckDB file: it waits with backoff
(the profile's sqlflow_retry), logging who holds the lock; when the lock is still held
after the last try, one clear line names the holder and the fix (no tracebacks), and the
metrics say the run failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import file_locked_by_another_process, file_target, release

MODEL = "{{ config(materialized='sqlflow_incremental', unique_key='id') }} select 1 as id\n"


def run_success(textfile_dir: Path) -> list[str]:
    text = (textfile_dir / "dbt_sqlflow.prom").read_text()
    return [line for line in text.splitlines() if line.startswith("sqlflow_run_success ")]


def dbt_command(project) -> list[str]:
    return [
        str(Path(sys.executable).parent / "dbt"),
        "run",
        "--project-dir",
        project.project_root,
        "--profiles-dir",
        project.profiles_dir,
    ]


def dbt_run_in_another_process(project) -> subprocess.CompletedProcess[str]:
    return subprocess.run(dbt_command(project), capture_output=True, text=True, timeout=180)


class LockedFile:
    retry: dict[str, Any] = {}

    @pytest.fixture(scope="class")
    def textfile_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(
        self, tmp_path_factory: pytest.TempPathFactory, textfile_dir: Path
    ) -> dict[str, Any]:
        return file_target(
            tmp_path_factory,
            sqlflow_metrics={"textfile": str(textfile_dir)},
            sqlflow_retry=self.retry,
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"m.sql": MODEL}


class TestNoRetry(LockedFile):
    retry = {"attempts": 1}

    def test_lock_error_is_one_line_and_the_run_exports_failure(
        self, project, textfile_dir: Path
    ) -> None:
        run_dbt(["run"])
        assert run_success(textfile_dir) == ["sqlflow_run_success 1.0"]
        path = project.adapter.config.credentials.path
        release(project)
        with file_locked_by_another_process(path) as pid:
            done = dbt_run_in_another_process(project)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "Traceback" not in output and "trying again" not in output
        assert (
            f"sqlflow: the DuckDB file {path} is locked by another process (PID {pid}, "
        ) in output
        assert "Fix: wait for that process (another dbt run?) to finish" in output
        # The previous run's success must not stay on the board.
        assert run_success(textfile_dir) == ["sqlflow_run_success 0.0"]


class TestRetriesGiveUp(LockedFile):
    retry = {"attempts": 3, "initial_seconds": 0.1, "max_seconds": 0.2}

    def test_each_wait_is_logged_and_the_last_error_says_how_long(self, project) -> None:
        path = project.adapter.config.credentials.path
        release(project)
        with file_locked_by_another_process(path) as pid:
            done = dbt_run_in_another_process(project)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        waits = [line for line in output.splitlines() if "trying again" in line]
        assert len(waits) == 2, output  # three tries, two waits
        assert all(f"is locked by PID {pid} (" in line for line in waits)
        assert "(try 2 of 3)" in waits[0] and "(try 3 of 3)" in waits[1]
        assert "(gave up after 3 tries in " in output
        assert "Traceback" not in output


class TestRetriesWaitForTheLock(LockedFile):
    retry = {"attempts": 30, "initial_seconds": 0.3, "max_seconds": 1}

    def test_the_run_waits_and_loads_once_the_lock_is_released(self, project) -> None:
        path = project.adapter.config.credentials.path
        release(project)
        # The holder keeps the lock until dbt has logged its first wait, then exits
        # (however long dbt's start-up takes on a busy machine).
        with file_locked_by_another_process(path) as pid:
            dbt = subprocess.Popen(
                dbt_command(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert dbt.stdout is not None
            lines = []
            for line in dbt.stdout:
                lines.append(line)
                if "trying again" in line:
                    break
        lines += dbt.stdout.readlines()
        output = "".join(lines)
        assert dbt.wait(timeout=180) == 0, output
        assert f"is locked by PID {pid} (" in output and "trying again" in output
        assert [tuple(r) for r in project.run_sql("select id from {schema}.m", fetch="all")] == [
            (1,)
        ]
