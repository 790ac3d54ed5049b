"""Every strategy on a DuckLake with a PostgreSQL catalog, ``threads: 4``, two builds.

The models read raw.events (in the lake too); the first ``dbt run`` builds them, the
second loads late and changed rows. sqlflow's state lives in the lake: its rows are
asserted with the data, row by row, after each run.
"""

from __future__ import annotations

import pytest
from lake_testing import DAY_ROWS, add_events, create_events, run_lake_dbt, source, state, target
from sqlflow_testing import Scenario, events_model, now, raw_sources_yml, rows

WINDOWED = "event_time='event_ts', batch_size='day'"

MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "appended.sql": events_model(f"incremental_strategy='append', {WINDOWED}"),
    "merged.sql": events_model(
        f"incremental_strategy='merge', unique_key='id', {WINDOWED}, lookback=1"
    ),
    "deleted_inserted.sql": events_model(
        f"incremental_strategy='delete+insert', unique_key='id', {WINDOWED}, lookback=1"
    ),
    "overwritten.sql": events_model(
        "incremental_strategy='insert_overwrite',"
        " partition_by={'field': 'event_ts', 'granularity': 'day'}, lookback=1"
    ),
    "merged_whole.sql": events_model("incremental_strategy='merge', unique_key='id'"),
    "auto_keyed.sql": events_model("unique_key='id'"),
    "auto_windowed.sql": events_model(f"unique_key='id', {WINDOWED}, lookback=1"),
    "snapshotted.sql": events_model(
        "incremental_strategy='snapshot', unique_key='id',"
        " snapshot={'strategy': 'check', 'check_cols': ['v']}, hard_deletes='invalidate'"
    ),
}
KEYED = ("merged", "deleted_inserted", "overwritten", "merged_whole", "auto_keyed", "auto_windowed")
FIRST = [r for d in (1, 2, 3) for r in DAY_ROWS[d]]
LATE = [(33, "2025-01-03 20:00:00", "d3e3"), *DAY_ROWS[4]]
# Row 12 is deleted from the source in the second run: the snapshot closes it; the other
# keyed models keep it (merge never deletes; day 1 is outside the lookback).
ROW_12 = (12, "2025-01-01 02:00:00", "d1e2")


def first_run(project) -> dict:
    create_events(project)
    run_lake_dbt(project, ["run", *now("2025-01-03T18:00:00")])
    return snapshot_of(project)


def second_run(project) -> dict:
    add_events(project, LATE)
    project.run_sql("update {database}.{schema}.events set v = 'd3e1!' where id = 31")
    project.run_sql("delete from {database}.{schema}.events where id = 12")
    run_lake_dbt(project, ["run", *now("2025-01-04T18:00:00")])
    return snapshot_of(project)


def third_run(project) -> dict:
    # Nothing changed: every model loads its newest window again, or nothing.
    run_lake_dbt(project, ["run", *now("2025-01-04T18:00:00")])
    return snapshot_of(project)


def snapshot_of(project) -> dict:
    found = {name: target(project, name) for name in (*KEYED, "appended")}
    found["source"] = source(project)
    found["snapshotted"] = rows(
        project,
        "select id, v, dbt_valid_to is null from {database}.{schema}.snapshotted order by all",
    )
    found["state"] = {name: state(project, name) for name in ("appended", "merged", "overwritten")}
    return found


class TestEveryStrategyOnTheLake:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_run, second_run, third_run)

    def test_first_build_is_exact(self, scenario):
        found = scenario.after(first_run)
        for name in (*KEYED, "appended"):
            assert found[name] == FIRST, name
        assert found["snapshotted"] == [(i, v, True) for i, _, v in FIRST]

    def test_first_build_state(self, scenario):
        found = scenario.after(first_run)["state"]
        assert found["appended"]["intervals"] == [("2025-01-01 00:00:00", "2025-01-03 18:00:00")]
        assert [r[:4] for r in found["appended"]["loads"]] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00", "append", 2),
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00", "append", 2),
            ("2025-01-03 00:00:00", "2025-01-03 18:00:00", "append", 2),
        ]
        assert found["overwritten"]["partitions"] == [
            ("2025-01-01", 2),
            ("2025-01-02", 2),
            ("2025-01-03", 2),
        ]

    def test_second_build_loads_late_and_changed_rows(self, scenario):
        found = scenario.after(second_run)
        # Keyed strategies with a day of lookback (or the whole source) hold the source.
        for name in KEYED:
            assert found[name] == sorted([*found["source"], ROW_12]), name
        assert found["appended"] == sorted(FIRST + LATE)
        assert found["snapshotted"] == sorted(
            [(i, v, True) for i, _, v in FIRST if i not in (12, 31)]
            + [(12, "d1e2", False), (31, "d3e1", False), (31, "d3e1!", True)]
            + [(i, v, True) for i, _, v in LATE]
        )

    def test_second_build_state(self, scenario):
        found = scenario.after(second_run)["state"]
        assert found["appended"]["intervals"] == [("2025-01-01 00:00:00", "2025-01-04 18:00:00")]
        assert sum(r[3] for r in found["appended"]["loads"]) == 9
        assert found["overwritten"]["partitions"] == [
            ("2025-01-01", 2),
            ("2025-01-02", 2),
            ("2025-01-03", 3),
            ("2025-01-04", 2),
        ]

    def test_third_build_changes_nothing(self, scenario):
        second = scenario.after(second_run)
        third = scenario.after(third_run)
        for name in (*KEYED, "appended", "snapshotted"):
            assert third[name] == second[name], name
