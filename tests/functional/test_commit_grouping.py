"""commit_every: batches grouped into transactions leave exactly what one transaction per
batch leaves (rows, intervals, partitions, per-batch load rows and counts), for every
windowed strategy, on a build and on an incremental run with late and new rows."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, raw_sources_yml, rows, run_results

WINDOWED = "event_time='event_ts', batch_size='day', begin='2025-01-01', lookback=2"
DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
STRATEGIES = {
    "append": "incremental_strategy='append', event_time='event_ts', begin='2025-01-01'",
    "merge": f"incremental_strategy='merge', unique_key='id', {WINDOWED}",
    "delete_insert": f"incremental_strategy='delete+insert', unique_key='id', {WINDOWED}",
    "overwrite": f"incremental_strategy='insert_overwrite', {DAY}, {WINDOWED}",
    "snapshot": (
        "incremental_strategy='snapshot', unique_key='id',"
        " snapshot={'strategy': 'timestamp', 'updated_at': 'event_ts'}, " + WINDOWED
    ),
    "auto": f"unique_key='id', {DAY}, {WINDOWED}",
}
GROUPINGS = {"one": "commit_every=1", "three": "commit_every=3", "auto": "commit_every='auto'"}


def load_rows(project, name: str) -> list[tuple]:
    """The model's load rows without ids and times: window, strategy, counts, status."""
    return rows(
        project,
        "select window_start::varchar, window_end::varchar, strategy, rows_inserted,"
        " rows_updated, rows_deleted, partitions_touched, status from sqlflow_meta.loads"
        f" where model = 'model.test.{name}' order by window_start, started_at",
    )


def what_it_left(project, name: str) -> dict:
    return {
        "rows": rows(project, f"select * exclude (dbt_scd_id) from {{schema}}.{name} order by all")
        if name.startswith("snapshot")
        else rows(project, f"select * from {{schema}}.{name} order by all"),
        "loads": load_rows(project, name),
        "intervals": rows(
            project,
            "select interval_start::varchar, interval_end::varchar from sqlflow_meta.intervals"
            f" where model = 'model.test.{name}' order by 1",
        ),
        "partitions": rows(
            project,
            "select partition_key, row_count, min_value, max_value from sqlflow_meta.partitions"
            f" where relation like '%\"{name}\"' order by 1",
        ),
        # Each partition's last load is the batch whose window wrote it (a group refreshes
        # its partitions at once, each with its batch's load id).
        "partition_loads": rows(
            project,
            "select p.partition_key, l.window_start::varchar from sqlflow_meta.partitions p"
            " left join sqlflow_meta.loads l on l.load_id = p.last_load_id"
            f" where p.relation like '%\"{name}\"' order by 1",
        ),
    }


class TestGroupedEqualsOnePerBatch:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {"sources.yml": raw_sources_yml("events")}
        for strategy, config in STRATEGIES.items():
            for grouping, every in GROUPINGS.items():
                files[f"{strategy}_{grouping}.sql"] = events_model(f"{config}, {every}")
        return files

    def test_build_then_incremental_run(self, project, monkeypatch: pytest.MonkeyPatch) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select i, timestamp '2025-01-01' + i * interval 5 hour,"
            " 'v' || i from range(1, 60) as t(i)"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-13T12:00:00")
        run_dbt(["run"])
        results = run_results(project)
        # 13 daily batches each: one transaction per batch, groups of three, one group.
        for strategy in STRATEGIES:
            commits = {
                g: results[f"{strategy}_{g}"]["adapter_response"]["commits"] for g in GROUPINGS
            }
            assert commits == {"one": 13, "three": 5, "auto": 1}, strategy

        # New rows, late rows (within lookback) and an update of a key.
        project.run_sql(
            "insert into {schema}.events values (100, '2025-01-12 23:00', 'late'),"
            " (101, '2025-01-14 01:00', 'new'), (102, '2025-01-15 02:00', 'new2')"
        )
        project.run_sql("update {schema}.events set v = 'changed' where id = 58")
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-15T12:00:00")
        run_dbt(["run"])

        for strategy in STRATEGIES:
            one = what_it_left(project, f"{strategy}_one")
            assert one["rows"] and one["loads"], strategy
            for grouping in ("three", "auto"):
                assert what_it_left(project, f"{strategy}_{grouping}") == one, (strategy, grouping)
