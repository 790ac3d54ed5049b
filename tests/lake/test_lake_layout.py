"""Native DuckLake partitioning and sort order from partition_by and sorted_by, and the
rollback of a failed batch on the lake.

The layout is asserted on the lake's own files (``ducklake_list_files``): hive-style
folders as configured, none under a ``__dbt_tmp`` table, rows sorted in each file. Data
inlining is off for these lakes, so every write is a Parquet file.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import lake_profile
from dbt.tests.util import run_dbt_and_capture, write_file
from lake_testing import DAY_ROWS, add_events, create_events, release, run_lake_dbt, target
from sqlflow_testing import Scenario, events_model, now, raw_sources_yml, rows

MODELS = {
    "sources.yml": raw_sources_yml("events"),
    # Windowed build: created empty, laid out, then filled by day batches.
    "by_day.sql": events_model(
        "incremental_strategy='insert_overwrite', event_time='event_ts', batch_size='day',"
        " partition_by={'field': 'event_ts', 'granularity': 'day'}"
    ),
    # Built from the whole query in one go.
    "by_month.sql": events_model(
        "incremental_strategy='merge', unique_key='id',"
        " partition_by={'field': 'event_ts', 'granularity': 'month'}, sorted_by='v desc'"
    ),
    "by_week.sql": events_model(
        "incremental_strategy='append', event_time='event_ts', batch_size='day',"
        " partition_by={'field': 'event_ts', 'granularity': 'week'}"
    ),
    "by_value.sql": events_model(
        "incremental_strategy='merge', unique_key='id', partition_by={'field': 'v'}"
    ),
}


def files(project: Any, table: str) -> list[str]:
    """The table's data files, relative to the lake's data path."""
    found = rows(
        project,
        f"select data_file from ducklake_list_files('lake', '{table}',"
        " schema => '{schema}') order by 1",
    )
    return [re.sub(r"^.*?/lake_files\d+/", "", str(r[0])) for r in found]


def folders(project: Any, table: str) -> list[str]:
    """The distinct folders of the table's data files, below the table's folder."""
    return sorted({f.rsplit("/", 1)[0].split(f"/{table}/", 1)[-1] for f in files(project, table)})


def first_build(project: Any) -> dict:
    create_events(project)
    _, log = run_dbt_and_capture(["run", *now("2025-01-03T18:00:00")])
    release(project)
    return {
        "files": {m: files(project, m) for m in ("by_day", "by_month", "by_week", "by_value")},
        "folders": {m: folders(project, m) for m in ("by_day", "by_month", "by_week", "by_value")},
        "by_month": target(project, "by_month"),
        "log": log,
    }


def relaid_run(project: Any) -> dict:
    # by_month becomes day-partitioned: DuckLake applies it to the files written next.
    write_file(
        events_model(
            "incremental_strategy='merge', unique_key='id',"
            " partition_by={'field': 'event_ts', 'granularity': 'day'}, sorted_by='v desc'"
        ),
        project.project_root,
        "models",
        "by_month.sql",
    )
    add_events(project, DAY_ROWS[4])
    release(project)
    _, log = run_dbt_and_capture(["run", "-s", "by_month", *now("2025-01-04T18:00:00")])
    release(project)
    return {
        "folders": folders(project, "by_month"),
        "log": log,
        "rows": target(project, "by_month"),
    }


class TestNativePartitions:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, lake: dict) -> dict:
        return lake_profile(lake, inline=False)

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_build, relaid_run)

    def test_no_file_stays_under_a_dbt_tmp_table(self, scenario):
        found = scenario.after(first_build)["files"]
        for model, paths in found.items():
            assert paths, model
            assert all(f"/{model}/" in p and "__dbt_tmp" not in p for p in paths), paths

    def test_time_partitions_are_hive_folders(self, scenario):
        found = scenario.after(first_build)["folders"]
        assert found["by_day"] == [
            "year=2025/month=1/day=1",
            "year=2025/month=1/day=2",
            "year=2025/month=1/day=3",
        ]
        assert found["by_month"] == ["year=2025/month=1"]
        # No week transform in DuckLake: by day, said in the log.
        assert found["by_week"] == found["by_day"]
        assert "DuckLake has no week partitioning" in scenario.after(first_build)["log"]

    def test_value_partitions_are_folders_per_value(self, scenario):
        found = scenario.after(first_build)["folders"]
        assert found["by_value"] == [
            f"v={v}" for _, _, v in sorted(r for d in (1, 2, 3) for r in DAY_ROWS[d])
        ]

    def test_sorted_by_orders_the_rows_of_each_file(self, scenario):
        built = scenario.after(first_build)
        assert len(built["files"]["by_month"]) == 1
        (path,) = rows(
            scenario.project,
            "select data_file from ducklake_list_files('lake', 'by_month', schema => '{schema}')",
        )[0]
        in_file = rows(scenario.project, f"select v from read_parquet('{path}')")
        assert [r[0] for r in in_file] == sorted((r[2] for r in built["by_month"]), reverse=True)

    def test_a_changed_partition_by_applies_to_new_files_and_says_so(self, scenario):
        found = scenario.after(relaid_run)
        # The first file (month folder) stays; every file written since is in a day folder.
        assert found["folders"][0] == "year=2025/month=1"
        assert "year=2025/month=1/day=4" in found["folders"]
        assert all(f.startswith("year=2025/month=1/day=") for f in found["folders"][1:])
        assert "partition_by changed: the lake table is now partitioned by" in found["log"]
        assert "the existing files keep their layout" in found["log"]
        assert found["rows"] == sorted(r for d in (1, 2, 3, 4) for r in DAY_ROWS[d])


FAILING = {
    "sources.yml": raw_sources_yml("events"),
    "checked.sql": events_model(
        "incremental_strategy='merge', unique_key='id', event_time='event_ts',"
        " batch_size='day', lookback=0,"
        " partition_by={'field': 'event_ts', 'granularity': 'day'},"
        " quality_checks=[{'expression': \"v <> 'bad'\"}]"
    ),
    "neighbour.sql": events_model(
        "incremental_strategy='append', event_time='event_ts', batch_size='day'"
    ),
}

STATE_TABLES = ("loads", "interval_log", "partition_log", "quality_results")


def lake_state(project: Any) -> dict[str, Any]:
    """The model's table and every state table of the lake, whole."""
    found: dict[str, Any] = {"checked": target(project, "checked")}
    for table in STATE_TABLES:
        found[table] = rows(
            project, f"select * from {{database}}.sqlflow_meta.{table} order by all"
        )
    return found


class TestAFailedBatchLeavesTheLakeAsItWas:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return FAILING

    def test_data_and_state_unchanged(self, project):
        create_events(project)
        run_lake_dbt(project, ["run", *now("2025-01-03T18:00:00")])
        before = lake_state(project)
        assert before["checked"] == sorted(r for d in (1, 2, 3) for r in DAY_ROWS[d])
        # Day 4 holds a bad row: its batch fails the check and rolls back, with the empty
        # window before it that it would have recorded.
        add_events(project, [(41, "2025-01-04 01:00:00", "bad"), (42, "2025-01-04 02:00:00", "ok")])
        run_lake_dbt(
            project, ["run", "-s", "checked", *now("2025-01-04T18:00:00")], expect_pass=False
        )
        after = lake_state(project)
        assert after["checked"] == before["checked"]
        for table in STATE_TABLES:
            assert after[table] == before[table], table
