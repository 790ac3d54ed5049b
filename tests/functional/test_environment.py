"""dbt-duckdb's environment under ``type: sqlflow``: Python models, plugins, attach, debug.

Pins the subclassing trap: dbt-duckdb reads its DuckDB environment as
``DuckDBConnectionManager._ENV``; a second, private environment breaks these.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture

PLUGIN_DIR = str(Path(__file__).parent / "plugins")

sources_yml = """
version: 2
sources:
  - name: plugin_src
    meta:
      plugin: testplug
    tables:
      - name: numbers
"""

sql_base = "select range as id, range * 10 as amount from range(5)"

python_model = """
def model(dbt, session):
    dbt.config(materialized="table")
    base = dbt.ref("base")
    return base.filter("id >= 2").project("id, amount * 2 as amount2")
"""

uses_plugin_and_attach = """
select n, triple(n) as tripled, (select count(*) from other.main.side) as side_rows
from {{ source('plugin_src', 'numbers') }}
"""


class TestPythonModelPluginAttach:
    @pytest.fixture(scope="class")
    def other_db(self, tmp_path_factory: pytest.TempPathFactory) -> str:
        path = tmp_path_factory.mktemp("other") / "other.duckdb"
        con = duckdb.connect(str(path))
        con.execute("create table side as select range as x from range(7)")
        con.close()
        return str(path)

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory, other_db: str) -> dict:
        path = tmp_path_factory.mktemp("duckdb") / "env.duckdb"
        return {
            "type": "sqlflow",
            "path": str(path),
            "threads": 2,
            "module_paths": [PLUGIN_DIR],
            "plugins": [{"module": "sqlflow_test_plugin", "alias": "testplug"}],
            "attach": [{"path": other_db, "alias": "other", "read_only": True}],
            "settings": {"threads": 2},
        }

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "base.sql": sql_base,
            "py_model.py": python_model,
            "uses_env.sql": uses_plugin_and_attach,
        }

    def test_python_model_plugin_and_attach(self, project) -> None:
        results = run_dbt(["run"])
        assert len(results) == 3
        rows = project.run_sql("select id, amount2 from {schema}.py_model order by id", fetch="all")
        assert [tuple(r) for r in rows] == [(2, 40), (3, 60), (4, 80)]
        rows = project.run_sql(
            "select n, tripled, side_rows from {schema}.uses_env order by n", fetch="all"
        )
        assert [tuple(r) for r in rows] == [(1, 3, 7), (2, 6, 7), (3, 9, 7)]
        # A second invocation in the same process reuses the shared environment.
        results = run_dbt(["run", "-s", "py_model"])
        assert len(results) == 1


class TestDebugAndVersion:
    def test_dbt_debug_passes(self, project) -> None:
        _, out = run_dbt_and_capture(["--no-use-colors", "debug"])
        assert "Connection test: [OK connection ok]" in out
        assert "All checks passed!" in out
        assert "type: sqlflow" in out or "sqlflow" in out

    def test_dbt_version_lists_plugin(self) -> None:
        dbt = Path(sys.executable).parent / "dbt"
        out = subprocess.run(
            [str(dbt), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert "sqlflow" in out

    def test_cli_version(self) -> None:
        cli = Path(sys.executable).parent / "dbt-sqlflow"
        out = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
        from dbt.adapters.sqlflow.__version__ import version

        assert out.stdout.strip() == f"dbt-sqlflow, version {version}"


class TestProfileSettingsReachLoads:
    """DuckDB settings from the profile (memory_limit) hold inside sqlflow's loads."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        path = tmp_path_factory.mktemp("duckdb") / "settings.duckdb"
        return {
            "type": "sqlflow",
            "path": str(path),
            "threads": 1,
            "settings": {"memory_limit": "512MB", "threads": 1},
        }

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "limits.sql": "{{ config(materialized='sqlflow_incremental',"
            " event_time='ts', batch_size='day') }}\n"
            "select current_setting('memory_limit') as memory_limit,"
            " current_setting('threads') as threads, timestamp '2025-01-01 05:00' as ts",
        }

    def test_memory_limit_and_threads_hold_inside_a_load(self, project) -> None:
        run_dbt(["run", "--vars", '{"sqlflow_now": "2025-01-01T12:00:00"}'])
        rows = project.run_sql("select memory_limit, threads from {schema}.limits", fetch="all")
        assert [tuple(r) for r in rows] == [("488.2 MiB", 1)]
