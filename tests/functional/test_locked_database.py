"""A dbt run started while another process holds the DuckDB file: one clear line naming
the holder and the fix (no tracebacks), and the metrics say the run failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import file_locked_by_another_process, release

MODEL = "{{ config(materialized='sqlflow_incremental', unique_key='id') }} select 1 as id\n"


def run_success(textfile_dir: Path) -> list[str]:
    text = (textfile_dir / "dbt_sqlflow.prom").read_text()
    return [line for line in text.splitlines() if line.startswith("sqlflow_run_success ")]


class TestRunOnALockedFile:
    @pytest.fixture(scope="class")
    def textfile_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(
        self, tmp_path_factory: pytest.TempPathFactory, textfile_dir: Path
    ) -> dict[str, Any]:
        path = tmp_path_factory.mktemp("duckdb") / "sqlflow.duckdb"
        return {
            "type": "sqlflow",
            "path": str(path),
            "threads": 1,
            "sqlflow_metrics": {"textfile": str(textfile_dir)},
        }

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"m.sql": MODEL}

    def test_lock_error_is_one_line_and_the_run_exports_failure(
        self, project, textfile_dir: Path
    ) -> None:
        run_dbt(["run"])
        assert run_success(textfile_dir) == ["sqlflow_run_success 1.0"]
        path = project.adapter.config.credentials.path
        release(project)
        with file_locked_by_another_process(path) as pid:
            done = subprocess.run(
                [
                    str(Path(sys.executable).parent / "dbt"),
                    "run",
                    "--project-dir",
                    project.project_root,
                    "--profiles-dir",
                    project.profiles_dir,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "Traceback" not in output
        assert (
            f"sqlflow: the DuckDB file {path} is locked by another process (PID {pid}, "
        ) in output
        assert "Fix: wait for that process (another dbt run?) to finish" in output
        # The previous run's success must not stay on the board.
        assert run_success(textfile_dir) == ["sqlflow_run_success 0.0"]
