"""``dbt-sqlflow tune MODEL --ab`` on a DuckLake with a PostgreSQL catalog.

Hour batches of three rows committed one by one (``commit_every=1``): tune recommends
``commit_every='auto'``, and the A/B runs the model's latest load with both settings on a
copy of the lake (a DuckDB-file catalog and a local data folder holding the model's
source, its table and sqlflow's state, copied at the lake's current snapshot), several
times each. The production lake is only read: no new snapshot, the same rows and state.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lake_testing import release, run_lake_dbt, state, target
from sqlflow_testing import dbt_sqlflow, events_model, raw_sources_yml, rows

HOURLY = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='hour',"
    " begin='2025-01-01', commit_every=1"
)


def tune(project: Any, *args: str) -> Any:
    """``dbt-sqlflow tune ARGS`` in its own process, on the test project."""
    return dbt_sqlflow(project, "tune", *args, timeout=900)


def production(project: Any) -> dict[str, Any]:
    """What the A/B must leave alone: the lake's snapshots, the model's rows and state."""
    release(project)
    found = {
        "snapshots": rows(project, "select snapshot_id from ducklake_snapshots('lake') order by 1"),
        "rows": target(project, "hourly"),
        "state": state(project, "hourly"),
    }
    release(project)
    return found


class TestTuneABOnALake:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {"sources.yml": raw_sources_yml("events"), "hourly.sql": HOURLY}

    def test_ab_runs_both_arms_on_a_copy_of_the_lake(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Three events an hour for 12 hours of 2025-01-01, in the lake.
        project.run_sql(
            "create table {database}.{schema}.events as select i as id,"
            " timestamp '2025-01-01' + i * interval 20 minute as event_ts, 'v' || i as v"
            " from range(36) as t(i)"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-01T12:00:00")
        run_lake_dbt(project, ["run"])
        before = production(project)
        assert len(before["rows"]) == 36 and len(before["state"]["loads"]) == 12

        advised = tune(project, "hourly", "--json")
        assert advised.returncode == 0, advised.stderr
        recommended = json.loads(advised.stdout)[0]["recommendations"]
        assert [(r["key"], r["recommended"]) for r in recommended] == [("commit_every", "auto")]

        done = tune(project, "hourly", "--ab", "--runs", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == (
            "model.test.hourly: its latest load [2025-01-01T00:00:00, 2025-01-01T12:00:00)"
            " (it built the table: rebuilt, --full-refresh) on a copy of the lake"
        )
        arms = {line.split()[0]: line.split() for line in lines[3:5]}
        assert "(as configured)" in " ".join(arms["current"])
        assert "commit_every=auto" in arms["recommended"]
        for cells in arms.values():
            runs, median = cells[-4], float(cells[-3])
            assert runs == "2" and median > 0
        assert lines[5].startswith(
            ("no real difference", "recommended settings faster", "current settings faster")
        )
        # Production only read: no snapshot, the same rows and state.
        assert production(project) == before
