"""DuckLake maintenance (``dbt-sqlflow lake-maintenance``, the run-operation
``sqlflow_lake_maintenance``) on a PostgreSQL-catalog lake.

An append model loads a day of events in hourly batches into day partitions, each batch
committed on its own (as hourly scheduled runs would): a Parquet file per batch in its
day's folder, plus the state tables' small files. Maintenance with no retention merges
them, expires every older snapshot and deletes the old files: far fewer files, on disk and
in the catalog (the two counts agree), one file per day folder, the same rows and state
row by row; the next run loads on top; a restore can no longer reach before the expiry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import lake_profile
from dbt.tests.util import run_dbt_and_capture
from lake_testing import release, run_lake_dbt
from sqlflow_testing import dbt_sqlflow, events_model, now, raw_sources_yml, rows

from dbt.adapters.sqlflow.maintenance import file_counts_sql

MODEL = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='hour', commit_every=1,"
    " partition_by={'field': 'event_ts', 'granularity': 'day'}"
)
META = "{database}.sqlflow_meta"


def on_disk(lake: dict) -> int:
    return sum(1 for _ in Path(lake["data_path"]).rglob("*.parquet"))


def observe(project: Any, lake: dict) -> dict:
    release(project)
    found = {
        "rows": rows(project, "select * from {database}.{schema}.hourly order by all"),
        "state": {
            view: rows(project, f"select * from {META}.{view} order by all")
            for view in ("loads", "intervals", "partitions", "quality_results")
        },
        "counts": rows(project, file_counts_sql("lake"))[0],
        "folders": rows(
            project,
            "select regexp_extract(data_file, 'day=[0-9]+'), count(*) from"
            " ducklake_list_files('lake', 'hourly', schema => '{schema}') group by 1 order by 1",
        ),
        "disk": on_disk(lake),
    }
    release(project)
    return found


def maintenance(project: Any, *args: str) -> Any:
    return dbt_sqlflow(project, "lake-maintenance", *args)


class TestLakeMaintenance:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, lake: dict) -> dict:
        return lake_profile(lake, inline=False)

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("events"), "hourly.sql": MODEL}

    @pytest.fixture(scope="class")
    def maintained(self, project, lake) -> dict:
        # Two days of events, one every 10 minutes; the first run loads the first day.
        project.run_sql(
            "create or replace table {database}.{schema}.events as select range::integer as id,"
            " timestamp '2025-01-01' + range * interval 10 minute as event_ts, 'v' || range"
            " as v from range(2 * 24 * 6)"
        )
        run_lake_dbt(project, ["run", *now("2025-01-02T00:00:00")])
        before = observe(project, lake)
        first_load = rows(project, f"select min_by(load_id, started_at) from {META}.loads")[0][0]
        done = maintenance(
            project, "--older-than", "0 seconds", "--delete-files-older-than", "0 seconds"
        )
        after = observe(project, lake)
        return {"before": before, "after": after, "done": done, "first_load": first_load}

    def test_the_command_reports_files_before_and_after(self, maintained):
        done, before, after = maintained["done"], maintained["before"], maintained["after"]
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "sqlflow lake maintenance of lake:" in out, out
        assert (
            f"data files read by a query now: {before['counts'][0]} -> {after['counts'][0]}" in out
        )
        assert f"files in storage: {before['counts'][2]} -> {after['counts'][2]}" in out
        for step in (
            "flush inlined data:",
            "merge adjacent files:",
            "expire snapshots:",
            "clean up old files:",
        ):
            assert step in out, out

    def test_the_catalog_counts_the_files_on_disk(self, maintained):
        for moment in ("before", "after"):
            found = maintained[moment]
            assert found["counts"][2] == found["disk"], moment

    def test_maintenance_merges_each_day_into_one_file_and_deletes_the_rest(self, maintained):
        before, after = maintained["before"], maintained["after"]
        assert before["folders"] == [("day=1", 24)]  # a file per hourly batch
        assert after["folders"] == [("day=1", 1)]
        assert after["counts"][0] < before["counts"][0] / 4
        assert after["disk"] < before["disk"] / 4
        assert after["counts"][2] == after["counts"][0] + after["counts"][1]  # nothing old kept
        assert after["counts"][3] < before["counts"][3]

    def test_data_and_state_are_unchanged(self, maintained):
        before, after = maintained["before"], maintained["after"]
        assert len(after["rows"]) == 24 * 6
        assert after["rows"] == before["rows"]
        assert after["state"] == before["state"]

    def test_restore_reaches_no_further_back_than_the_kept_snapshots(self, project, maintained):
        load = maintained["first_load"]
        release(project)
        _, log = run_dbt_and_capture(
            [
                "run-operation",
                "sqlflow_restore",
                "--args",
                f"{{model: hourly, before_load: {load}}}",
            ],
            expect_pass=False,
        )
        text = " ".join(log.split())
        assert f"the snapshot before load '{load}'" in text, text
        assert "was expired (ducklake_expire_snapshots)" in text, text

    def test_the_next_run_loads_on_top(self, project, lake, maintained):
        release(project)
        run_lake_dbt(project, ["run", *now("2025-01-03T00:00:00")])
        found = observe(project, lake)
        source = rows(project, "select * from {database}.{schema}.events order by all")
        assert found["rows"] == source
        assert found["folders"] == [("day=1", 1), ("day=2", 24)]

    def test_a_bad_age_is_refused(self, project, maintained):
        done = maintenance(project, "--older-than", "a week")
        assert done.returncode == 1
        assert "older_than: 'a week' is not an age like '7 days'" in " ".join(done.stdout.split())
