"""commit_every: batches grouped into transactions leave exactly what one transaction per
batch leaves (rows, intervals, partitions, per-batch load rows and counts), for every
windowed strategy, on a build and on an incremental run with late and new rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import (
    FAST_RETRY,
    create_daily_events,
    create_events,
    events_model,
    file_target,
    raw_sources_yml,
    rows,
    run_results,
)

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


# Keyed models whose groups of windows may load as one INSERT when every key is new:
# partitions that are not the windows' own (born_ts), value partitions, none, and a key
# that repeats across windows (so the group loads batch by batch). Without lookback an
# incremental run's windows are all new (lookback re-reads keys the target holds).
BORN = (
    "select id, event_ts, event_ts - interval 30 hour as born_ts, v"
    " from {{ source('raw', 'events') }}"
)
KEYED = {
    "parts": (
        "incremental_strategy='merge', unique_key='id', lookback=2,"
        " partition_by={'field': 'born_ts', 'granularity': 'day'}",
        BORN,
    ),
    "di": (
        "incremental_strategy='delete+insert', unique_key='id', lookback=0",
        "select id, event_ts, v from {{ source('raw', 'events') }}",
    ),
    "valued": (
        "unique_key='id', partition_by={'field': 'grp'}, lookback=0",
        "select id, event_ts, id % 3 as grp, v from {{ source('raw', 'events') }}",
    ),
    # Partitions on event_time, coarser than the windows: a month holds every day window.
    "owned": (
        "incremental_strategy='merge', unique_key='id', lookback=0,"
        " partition_by={'field': 'event_ts', 'granularity': 'month'}",
        "select id, event_ts, v from {{ source('raw', 'events') }}",
    ),
    "repeat": (
        "incremental_strategy='merge', unique_key='k'",
        "select id % 20 as k, event_ts, v from {{ source('raw', 'events') }}",
    ),
}
KEYED_WINDOWS = "event_time='event_ts', batch_size='day', begin='2025-01-01'"


def timed_loads(project, name: str) -> int:
    """The model's load rows with DML seconds of their own: one per batch loaded alone,
    one per group loaded at once."""
    return rows(
        project,
        "select count(dml_seconds) from sqlflow_meta.loads"
        f" where model = 'model.test.{name}' and window_start is not null",
    )[0][0]


class TestKeyedGroupLoadedAtOnce:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {"sources.yml": raw_sources_yml("events")}
        for name, (config, body) in KEYED.items():
            for grouping in ("one", "auto"):
                every = GROUPINGS[grouping]
                files[f"{name}_{grouping}.sql"] = events_model(
                    f"{config}, {KEYED_WINDOWS}, {every}", body
                )
        return files

    def test_new_keys_load_at_once_and_leave_what_batches_leave(
        self, project, logs_dir: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select i, timestamp '2025-01-01' + i * interval 5 hour,"
            " 'v' || i from range(1, 60) as t(i)"
        )

        def same_as_one_per_batch() -> None:
            for name in KEYED:
                one = what_it_left(project, f"{name}_one")
                assert one["rows"] and one["loads"], name
                assert what_it_left(project, f"{name}_auto") == one, name

        # Build: 13 day windows with unique keys, one statement; the repeating key
        # (id % 20 in another window) loads batch by batch, updating.
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-14T00:00:00")
        log = Path(logs_dir) / "dbt.log"
        logged_before = log.stat().st_size if log.exists() else 0
        run_dbt(["run"])
        same_as_one_per_batch()
        # A build's batch-by-batch SQL is rendered (and its staging table created) only
        # for a model whose group fell back to it.
        with log.open(encoding="utf-8") as text:
            text.seek(logged_before)
            logged = text.read()
        staged = {
            name
            for name in KEYED
            if f'create or replace temporary table "{name}_auto__sqlflow_stage' in logged
        }
        assert staged == {"repeat"}
        assert 'create or replace temporary table "repeat_one__sqlflow_stage' in logged
        assert {n: timed_loads(project, f"{n}_auto") for n in KEYED} == {
            "parts": 1,
            "di": 1,
            "valued": 1,
            "owned": 1,
            "repeat": 13,
        }
        assert len(rows(project, "select * from {schema}.repeat_auto")) == 20
        # New keys in two new days: at once again (the target's keys checked, none held),
        # but the merge re-reads its two days of lookback, whose keys it holds.
        project.run_sql(
            "insert into {schema}.events values (101, '2025-01-14 01:00', 'new'),"
            " (102, '2025-01-15 02:00', 'new2')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-16T00:00:00")
        run_dbt(["run"])
        same_as_one_per_batch()
        assert {n: timed_loads(project, f"{n}_auto") for n in ("di", "valued", "owned")} == {
            "di": 2,
            "valued": 2,
            "owned": 2,
        }
        # The merge re-reads two days (batch by batch, then a commit) and loads the two new
        # ones at once.
        assert timed_loads(project, "parts_auto") == 1 + 2 + 1
        # A key the target holds comes back in a new day: batch by batch (an update).
        project.run_sql(
            "insert into {schema}.events values (3, '2025-01-16 03:00', 'again'),"
            " (103, '2025-01-17 04:00', 'new3')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-18T00:00:00")
        run_dbt(["run"])
        same_as_one_per_batch()
        assert timed_loads(project, "di_auto") == 2 + 2
        assert timed_loads(project, "owned_auto") == 2 + 2
        # Key 3 moved within its month partition: matched (its window's partition range is
        # the whole month), not inserted twice.
        for name in ("di_auto", "owned_one", "owned_auto"):
            assert rows(project, f"select v from {{schema}}.{name} where id = 3") == [("again",)]
        assert rows(project, "select v from {schema}.di_auto where id = 3") == [("again",)]

    def test_a_null_or_repeated_key_in_a_group_is_refused_as_batch_by_batch(
        self, project, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events values (1, '2025-01-01 01:00', 'a'),"
            " (2, '2025-01-02 01:00', 'b'), (null, '2025-01-03 01:00', 'c'),"
            " (4, '2025-01-04 01:00', 'd'), (4, '2025-01-04 02:00', 'e')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-05T00:00:00")
        results = run_dbt(["run", "-s", "di_auto", "--full-refresh"], expect_pass=False)
        message = results[0].message
        assert "null in the key column(s) id" in message and "'model.test.di_auto'" in message
        # The group rolled back: nothing written, nothing recorded.
        assert rows(project, "select count(*) from {schema}.di_auto") == [(0,)]
        project.run_sql("delete from {schema}.events where id is null")
        results = run_dbt(["run", "-s", "di_auto", "--full-refresh"], expect_pass=False)
        assert "duplicate" in results[0].message and "4" in results[0].message, results[0].message
        assert rows(project, "select count(*) from {schema}.di_auto") == [(0,)]


GAPS = (
    "incremental_strategy='merge', unique_key='id', event_time='event_ts', batch_size='day',"
    " begin='2025-01-01', partition_by={'field': 'event_ts', 'granularity': 'day'}"
)


class TestBuildCountsItsSourceInItsFirstGroup:
    """A keyed build whose batches may load as one INSERT counts its source (so its empty
    windows) in its first group's transaction, the same query as the group's check: it
    leaves what a build counted at planning leaves (commit_every=1), also when that group
    is rolled back and loaded again."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        return file_target(tmp_path_factory, sqlflow_retry=FAST_RETRY)

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("events"),
            "gaps_one.sql": events_model(f"{GAPS}, commit_every=1"),
            "gaps_auto.sql": events_model(f"{GAPS}, commit_every='auto'"),
            "gaps_retried.sql": events_model(f"{GAPS}, commit_every='auto'"),
        }

    def test_empty_windows_and_a_retried_group_leave_what_batches_leave(
        self, project, logs_dir: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Rows on January 2, 3, 6 and 7; windows January 1 to 10 (now's day included), six
        # of them empty: the first, two in the middle, the last three.
        create_daily_events(project, days=(2, 3, 6, 7))
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-10T00:00:00")
        # The retried model's group meets a write-write conflict on its first try.
        monkeypatch.setenv("SQLFLOW_FAULTS", "gaps_retried:conflict@0")
        run_dbt(["run"])
        one = what_it_left(project, "gaps_one")
        # An empty window is a load row too, of no rows.
        assert [(load[0], load[3]) for load in one["loads"]] == [
            (f"2025-01-{d:02d} 00:00:00", 2 if d in (2, 3, 6, 7) else 0) for d in range(1, 11)
        ]
        assert one["intervals"] == [
            (f"2025-01-{d:02d} 00:00:00", f"2025-01-{d + 1:02d} 00:00:00") for d in range(1, 10)
        ]  # the day holding now is not done
        assert len(one["rows"]) == 8
        responses = run_results(project)
        for name in ("gaps_auto", "gaps_retried"):
            assert what_it_left(project, name) == one, name
            assert timed_loads(project, name) == 1, name  # one statement
            response = responses[name]["adapter_response"]
            assert response["batches"] == responses["gaps_one"]["adapter_response"]["batches"]
            assert response["rows_inserted"] == 8
        assert responses["gaps_retried"]["adapter_response"]["retries"] == 1
        assert responses["gaps_auto"]["adapter_response"]["retries"] == 0
        # Counted at planning for one batch per transaction; with the first group else.
        logged = (Path(logs_dir) / "dbt.log").read_text(encoding="utf-8")
        assert "gaps_one planned 4 batch(es) (build, 6 empty window(s))" in logged
        assert (
            "gaps_auto planned 10 batch(es) (build, 0 empty window(s),"
            " empty windows counted by the first group)"
        ) in logged
