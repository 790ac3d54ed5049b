"""``make demo-lake``: the demo's marts on a DuckLake equal the same marts in one DuckDB file.

``run_demo.py`` (embedded) and ``run_lake_demo.py`` (marts and state in a DuckLake with a
PostgreSQL catalog) run in two copies of ``integration_project/`` on a tenth of the data
(the same data: a deterministic function of ids and days), on this venv's DuckDB. After
both builds of each, every mart holds the same rows in the lake as in the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
MARTS = ("agg_daily_revenue", "dim_customers_history", "fct_events", "fct_orders")


def run_copy(tmp: Path, script: str, **env: str) -> tuple[Path, str]:
    """Run a demo script in a copy of the project (with the lake suite's stack beside it,
    where the lake demo looks for it); its folder and output."""
    folder = tmp / "integration_project"
    shutil.copytree(
        ROOT / "integration_project",
        folder,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.wal", "demo_lake*"),
    )
    (tmp / "tests" / "lake").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "lake" / "lake_stack.py", tmp / "tests" / "lake")
    env = {
        **os.environ,
        "SQLFLOW_DEMO_SCALE": "0.1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **env,
    }
    done = subprocess.run(
        [sys.executable, script], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return folder, done.stdout


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory, postgres) -> dict:
    """Both demos; the lake one on a catalog database of the suite's PostgreSQL (which
    outlives the demo, so the test can read the lake)."""
    postgres.create_database("demo_lake")
    catalog = f"postgres:{postgres.dsn('demo_lake')}"
    embedded, _ = run_copy(tmp_path_factory.mktemp("embedded"), "run_demo.py")
    lake, output = run_copy(
        tmp_path_factory.mktemp("lake"), "run_lake_demo.py", SQLFLOW_DEMO_CATALOG=catalog
    )
    return {"embedded": embedded, "lake": lake, "catalog": catalog, "output": output}


def marts(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, list[tuple]]:
    return {
        m: con.execute(f"select * from {database}.main.{m} order by all").fetchall() for m in MARTS
    }


def test_the_lake_demo_prints_both_runs_and_the_lake(demos) -> None:
    output = demos["output"]
    assert "the lake's catalog: postgres (SQLFLOW_DEMO_CATALOG)" in output
    assert "one simulated day later: incremental run" in output
    assert "== the lake's newest snapshots" in output
    assert "main.fct_events" in output  # its data files


def test_every_mart_on_the_lake_equals_the_embedded_one(demos) -> None:
    with duckdb.connect(str(demos["embedded"] / "demo.duckdb"), read_only=True) as con:
        expected = marts(con, "demo")
    assert all(expected[m] for m in MARTS)
    with duckdb.connect() as con:
        data = demos["lake"] / "demo_lake_files"
        con.execute(
            f"attach 'ducklake:{demos['catalog']}' as lake (data_path '{data}/', read_only)"
        )
        found = marts(con, "lake")
    for mart in MARTS:
        assert found[mart] == expected[mart], mart
