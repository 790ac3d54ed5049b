"""Per-load figures in run_results.json and sqlflow_meta.loads against the table's real changes.

Four daily-partitioned models (merge, delete+insert, insert_overwrite, append) read one
source over three runs with "now" pinned. The expected windows follow from the config
(lookback 1 day: the last run's "now" was at noon, so the day before its day is re-read
too; append never re-reads: it loads the current day up to "now" and the next run loads
the rest); the expected figures and target contents are
computed here, in Python, from the source and the target as they were before each run.
The three runs are one scenario; each test checks one figure after one run, for one model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import Scenario, Step, raw_sources_yml, rows, run_results

sources_yml = raw_sources_yml("src")

DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
STRATEGIES = {
    "f_merge": ("merge", f"incremental_strategy='merge', unique_key='id', {DAY}"),
    "f_delete_insert": (
        "delete+insert",
        f"incremental_strategy='delete+insert', unique_key='id', {DAY}",
    ),
    "f_insert_overwrite": ("insert_overwrite", f"incremental_strategy='insert_overwrite', {DAY}"),
    "f_append": ("append", f"incremental_strategy='append', {DAY}"),
}

Row = tuple[int, datetime, str]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def day(text: str) -> tuple[datetime, datetime]:
    start = ts(text)
    return start, start + timedelta(days=1)


def model(config: str) -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n"
        "select id, event_ts, v from {{ source('raw', 'src') }}\n"
    )


def set_source(project, data: Iterable[Row]) -> None:
    project.run_sql(
        "create or replace table {schema}.src (id integer, event_ts timestamp, v varchar)"
    )
    values = ", ".join(f"({i}, timestamp '{t.isoformat(sep=' ')}', '{v}')" for i, t, v in data)
    project.run_sql(f"insert into {{schema}}.src values {values}")


def target(project, name: str) -> list[Row]:
    return sorted(rows(project, f"select id, event_ts, v from {{schema}}.{name}"))


def simulate(
    strategy: str, before: list[Row], source: list[Row], windows: list[tuple[datetime, datetime]]
) -> tuple[list[Row], list[dict]]:
    """The target after the run and each window's figures, by the strategy's definition."""
    table = list(before)
    figures = []
    for start, end in windows:
        batch = [r for r in source if start <= r[1] < end]
        in_window = [r for r in table if start <= r[1] < end]
        inserted = updated = deleted = 0
        if strategy == "merge":
            # Matching is restricted to the batch's partitions (the window's days).
            by_key = {r[0]: r for r in in_window}
            for row in batch:
                if row[0] in by_key:
                    table[table.index(by_key[row[0]])] = row
                    updated += 1
                else:
                    table.append(row)
                    inserted += 1
        elif strategy == "delete+insert":
            keys = {r[0] for r in batch}
            gone = [r for r in in_window if r[0] in keys]
            table = [r for r in table if r not in gone] + batch
            deleted, inserted = len(gone), len(batch)
        elif strategy == "insert_overwrite":
            table = [r for r in table if r not in in_window] + batch
            deleted, inserted = len(in_window), len(batch)
        else:
            table += batch
            inserted = len(batch)
        figures.append(
            {
                "window": (start, end),
                "watermark_after": newest(table),
                "inserted": inserted,
                "updated": updated,
                "deleted": deleted,
                # An empty window (no source rows, nothing to replace) touches no partition.
                "partitions": 1 if batch or (strategy == "insert_overwrite" and in_window) else 0,
            }
        )
    return sorted(table), figures


def newest(table: list[Row]) -> str | None:
    return max(r[1] for r in table).isoformat() if table else None


def loads_of(project, name: str, load_ids: list[str]) -> list[tuple]:
    ids = ", ".join(f"'{i}'" for i in load_ids)
    return rows(
        project,
        "select window_start, window_end, strategy, rows_inserted, rows_updated, rows_deleted,"
        " partitions_touched, status, watermark_after"
        f" from sqlflow_meta.loads where model = 'model.test.{name}' and load_id in ({ids})"
        " order by window_start",
    )


RUN_1 = [
    (1, ts("2025-01-01 08:00"), "a"),
    (2, ts("2025-01-01 09:00"), "b"),
    (3, ts("2025-01-02 10:00"), "c"),
    (4, ts("2025-01-03 07:00"), "d"),
    (5, ts("2025-01-03 09:00"), "e"),
]
# id 4 changes and id 6 arrives late (day 3, inside the lookback), id 5 leaves the source,
# id 1 changes outside every window, id 9 arrives for the afternoon of day 3 (after the
# first run's now), day 4 brings ids 7 and 8.
RUN_2 = [
    (1, ts("2025-01-01 08:00"), "A"),
    (2, ts("2025-01-01 09:00"), "b"),
    (3, ts("2025-01-02 10:00"), "c"),
    (4, ts("2025-01-03 07:00"), "D"),
    (6, ts("2025-01-03 11:00"), "f"),
    (9, ts("2025-01-03 13:00"), "i"),
    (7, ts("2025-01-04 06:00"), "g"),
    (8, ts("2025-01-04 08:00"), "h"),
]
# id 7 changes; day 5 has no rows.
RUN_3 = [*RUN_2[:6], (7, ts("2025-01-04 06:00"), "G"), (8, ts("2025-01-04 08:00"), "h")]

RUNS = [
    (
        RUN_1,
        "2025-01-03T12:00:00",
        {
            **{
                name: [day("2025-01-01"), day("2025-01-02"), day("2025-01-03")]
                for name in STRATEGIES
            },
            # append loads the current day up to now only (the rest comes next run).
            "f_append": [
                day("2025-01-01"),
                day("2025-01-02"),
                (ts("2025-01-03"), ts("2025-01-03 12:00")),
            ],
        },
    ),
    (
        RUN_2,
        "2025-01-04T12:00:00",
        {
            **{
                name: [day("2025-01-02"), day("2025-01-03"), day("2025-01-04")]
                for name in STRATEGIES
            },
            # No lookback: the rest of the day that was current at the last run, then day 4
            # up to now.
            "f_append": [
                (ts("2025-01-03 12:00"), ts("2025-01-04")),
                (ts("2025-01-04"), ts("2025-01-04 12:00")),
            ],
        },
    ),
    (
        RUN_3,
        "2025-01-05T12:00:00",
        {
            **{
                name: [day("2025-01-03"), day("2025-01-04"), day("2025-01-05")]
                for name in STRATEGIES
            },
            "f_append": [
                (ts("2025-01-04 12:00"), ts("2025-01-05")),
                (ts("2025-01-05"), ts("2025-01-05 12:00")),
            ],
        },
    ),
]


def load_run(number: int) -> Step:
    """Scenario step: run ``number`` of :data:`RUNS` (its source, its "now"), read back."""
    source, now, _ = RUNS[number - 1]

    def step(project) -> dict[str, dict]:
        set_source(project, source)
        run_dbt(["run", "--vars", json.dumps({"sqlflow_now": now})])
        results = run_results(project)
        seen = {}
        for name in STRATEGIES:
            response = results[name]["adapter_response"]
            seen[name] = {
                "target": target(project, name),
                "response": response,
                "loads": loads_of(project, name, response.get("load_ids", [])),
            }
        return seen

    step.__name__ = f"run_{number}"
    return step


LOAD_RUNS = [load_run(number) for number in range(1, len(RUNS) + 1)]


def expected(name: str, number: int) -> tuple[list[Row], list[Row], list[dict]]:
    """The target before and after run ``number`` and its windows' figures, simulated."""
    strategy = STRATEGIES[name][0]
    after: list[Row] = []
    for source, _, windows in RUNS[:number]:
        before = after
        after, figures = simulate(strategy, before, source, windows[name])
    return before, after, figures


RUN_MODEL = [(number, name) for number in range(1, len(RUNS) + 1) for name in STRATEGIES]
# The third run's insert_overwrite removes the newest row: its watermarks are in TestWatermarks.
WATERMARKED = [case for case in RUN_MODEL if case != (3, "f_insert_overwrite")]


def each(cases: list[tuple[int, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("number", "name"), cases, ids=[f"run{number}-{name}" for number, name in cases]
    )


class TestLoadFigures:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {f"{name}.sql": model(cfg) for name, (_, cfg) in STRATEGIES.items()}
        return {"sources.yml": sources_yml, **files}

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, *LOAD_RUNS)

    @each(RUN_MODEL)
    def test_target_holds_what_the_strategy_defines(self, scenario, number, name) -> None:
        seen = scenario.after(LOAD_RUNS[number - 1])[name]
        _, after, _ = expected(name, number)
        assert seen["target"] == after, f"run {number}, {name}"

    @each(RUN_MODEL)
    def test_run_results_figures_are_the_tables_real_changes(self, scenario, number, name) -> None:
        where = f"run {number}, {name}"
        strategy = STRATEGIES[name][0]
        windows = RUNS[number - 1][2][name]
        response = scenario.after(LOAD_RUNS[number - 1])[name]["response"]
        before, after, figures = expected(name, number)
        # Every row counted is a real change of the table.
        inserted = sum(f["inserted"] for f in figures)
        updated = sum(f["updated"] for f in figures)
        deleted = sum(f["deleted"] for f in figures)
        assert len(after) - len(before) == inserted - deleted, where
        # The watermark is the newest event_ts: before the run (none on the first
        # build) and after it.
        watermark_before = newest(before) if number > 1 else None
        # (run_results.json leaves out the figures that are None.)
        assert {
            k: response.get(k)
            for k in (
                "rows_inserted",
                "rows_updated",
                "rows_deleted",
                "rows_affected",
                "partitions_touched",
                "batches",
                "strategy",
                "watermark_before",
            )
        } == {
            "rows_inserted": inserted,
            "rows_updated": updated,
            "rows_deleted": deleted,
            "rows_affected": inserted + updated + deleted,
            "partitions_touched": sum(f["partitions"] for f in figures),
            "batches": len(windows),
            "strategy": strategy,
            "watermark_before": watermark_before,
        }, where

    @each(WATERMARKED)
    def test_run_results_watermark_after_is_the_newest_event(self, scenario, number, name) -> None:
        response = scenario.after(LOAD_RUNS[number - 1])[name]["response"]
        _, after, _ = expected(name, number)
        assert response.get("watermark_after") == newest(after), f"run {number}, {name}"

    @each(RUN_MODEL)
    def test_each_load_has_one_loads_row_with_its_own_figures(self, scenario, number, name) -> None:
        where = f"run {number}, {name}"
        strategy = STRATEGIES[name][0]
        seen = scenario.after(LOAD_RUNS[number - 1])[name]
        _, _, figures = expected(name, number)
        assert len(set(seen["response"]["load_ids"])) == len(RUNS[number - 1][2][name]), where
        assert [r[:-1] for r in seen["loads"]] == [
            (
                *f["window"],
                strategy,
                f["inserted"],
                f["updated"],
                f["deleted"],
                f["partitions"],
                "success",
            )
            for f in figures
        ], where

    @each(WATERMARKED)
    def test_each_load_records_the_newest_event_after_it(self, scenario, number, name) -> None:
        # Each load's watermark after is the newest event_ts once it committed
        # (a load that removes the newest row: see TestWatermarks).
        recorded = scenario.after(LOAD_RUNS[number - 1])[name]["loads"]
        _, _, figures = expected(name, number)
        assert [r[-1] for r in recorded] == [f["watermark_after"] for f in figures], (
            f"run {number}, {name}"
        )


class TestWatermarks:
    """The watermarks of each load follow the table, load by load."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "f_insert_overwrite.sql": model(STRATEGIES["f_insert_overwrite"][1]),
        }

    def test_each_load_records_its_own_watermark_before(self, project) -> None:
        set_source(project, RUN_1)
        run_dbt(["run", "--vars", json.dumps({"sqlflow_now": "2025-01-03T12:00:00"})])
        response = run_results(project)["f_insert_overwrite"]["adapter_response"]
        recorded = rows(
            project,
            "select window_start::date::varchar, watermark_before, watermark_after"
            " from sqlflow_meta.loads order by window_start",
        )
        assert len(response["load_ids"]) == 3
        assert recorded == [
            ("2025-01-01", None, "2025-01-01T09:00:00"),
            ("2025-01-02", "2025-01-01T09:00:00", "2025-01-02T10:00:00"),
            ("2025-01-03", "2025-01-02T10:00:00", "2025-01-03T09:00:00"),
        ]

    def test_watermark_after_a_load_that_removes_the_newest_row(self, project) -> None:
        now = ["--vars", json.dumps({"sqlflow_now": "2025-01-04T12:00:00"})]
        set_source(project, RUN_2)
        run_dbt(["run", "--full-refresh", *now])
        set_source(project, RUN_2[:-1])  # the newest row (id 8, 2025-01-04 08:00) leaves
        run_dbt(["run", *now])
        assert target(project, "f_insert_overwrite") == sorted(RUN_2[:-1])
        response = run_results(project)["f_insert_overwrite"]["adapter_response"]
        assert response["watermark_before"] == "2025-01-04T08:00:00"
        assert response["watermark_after"] == "2025-01-04T06:00:00"


class TestMergeCountsWithoutUpdates:
    """MERGEs whose matched rows are not all updated: the split must still be exact."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "insert_only.sql": model(
                "incremental_strategy='merge', unique_key='id',"
                " merge_exclude_columns=['event_ts', 'v']"
            ),
            "with_predicate.sql": model(
                "incremental_strategy='merge', unique_key='id',"
                " incremental_predicates=[\"DBT_INTERNAL_DEST.v <> 'frozen'\"]"
            ),
        }

    def first_run(self, project) -> None:
        set_source(
            project,
            [
                (1, ts("2025-01-01"), "frozen"),
                (2, ts("2025-01-01"), "b"),
                (3, ts("2025-01-01"), "c"),
            ],
        )
        run_dbt(["run", "--full-refresh"])

    def test_merge_that_updates_no_column(self, project) -> None:
        self.first_run(project)
        changed = [
            (1, ts("2025-01-02"), "x"),
            (2, ts("2025-01-02"), "y"),
            (4, ts("2025-01-02"), "d"),
        ]
        set_source(project, changed)
        run_dbt(["run", "-s", "insert_only"])
        # Nothing matched is updated (every non-key column is excluded); id 4 is inserted.
        assert target(project, "insert_only") == [
            (1, ts("2025-01-01"), "frozen"),
            (2, ts("2025-01-01"), "b"),
            (3, ts("2025-01-01"), "c"),
            (4, ts("2025-01-02"), "d"),
        ]
        response = run_results(project)["insert_only"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_updated"]) == (1, 0)

    def test_merge_with_incremental_predicates(self, project) -> None:
        self.first_run(project)
        changed = [(1, ts("2025-01-02"), "x"), (2, ts("2025-01-02"), "y")]
        set_source(project, changed)
        run_dbt(["run", "-s", "with_predicate"])
        # id 1's target row is excluded by the predicate: the MERGE inserts a second id 1.
        assert target(project, "with_predicate") == [
            (1, ts("2025-01-01"), "frozen"),
            (1, ts("2025-01-02"), "x"),
            (2, ts("2025-01-02"), "y"),
            (3, ts("2025-01-01"), "c"),
        ]
        response = run_results(project)["with_predicate"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_updated"]) == (1, 1)


class TestMergeIntoTargetWithDuplicateKeys:
    """A merge runs as delete of the matched rows + insert; a non-unique target is refused."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "keyed.sql": model("incremental_strategy='merge', unique_key='id'"),
            "partial.sql": model(
                "incremental_strategy='merge', unique_key='id', merge_update_columns=['v']"
            ),
        }

    def test_partial_merge_counts_every_updated_row(self, project) -> None:
        # A partial-column merge stays a MERGE, which updates both rows of a doubled key.
        set_source(project, [(1, ts("2025-01-01"), "a"), (2, ts("2025-01-01"), "b")])
        run_dbt(["run", "--full-refresh", "-s", "partial"])
        project.run_sql("insert into {schema}.partial values (1, timestamp '2025-01-01', 'dup')")
        set_source(project, [(1, ts("2025-01-02"), "x"), (3, ts("2025-01-02"), "c")])
        run_dbt(["run", "-s", "partial"])
        assert target(project, "partial") == [
            (1, ts("2025-01-01"), "x"),
            (1, ts("2025-01-01"), "x"),
            (2, ts("2025-01-01"), "b"),
            (3, ts("2025-01-02"), "c"),
        ]
        response = run_results(project)["partial"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_updated"]) == (1, 2)

    def test_refused_with_the_fix_and_nothing_written(self, project) -> None:
        set_source(project, [(1, ts("2025-01-01"), "a"), (2, ts("2025-01-01"), "b")])
        run_dbt(["run", "--full-refresh", "-s", "keyed"])
        # A row added by hand gives id 1 two target rows.
        project.run_sql("insert into {schema}.keyed values (1, timestamp '2025-01-01', 'dup')")
        before = target(project, "keyed")
        state_before = rows(project, "select count(*) from sqlflow_meta.loads")
        set_source(project, [(1, ts("2025-01-02"), "x"), (3, ts("2025-01-02"), "c")])
        results = run_dbt(["run", "-s", "keyed"], expect_pass=False)
        message = results[0].message
        assert "sqlflow_incremental model 'model.test.keyed'" in message
        assert "matched 1 key value(s) of the batch to 2 rows" in message
        assert "unique_key is not unique in the target table" in message
        assert "dbt run --full-refresh -s keyed" in message and "Nothing was written." in message
        assert target(project, "keyed") == before
        assert rows(project, "select count(*) from sqlflow_meta.loads") == state_before

    def test_unique_target_updates_in_place_of_merge(self, project) -> None:
        set_source(project, [(1, ts("2025-01-01"), "a"), (2, ts("2025-01-01"), "b")])
        run_dbt(["run", "--full-refresh", "-s", "keyed"])
        set_source(project, [(1, ts("2025-01-02"), "x"), (3, ts("2025-01-02"), "c")])
        run_dbt(["run", "-s", "keyed"])
        assert target(project, "keyed") == [
            (1, ts("2025-01-02"), "x"),
            (2, ts("2025-01-01"), "b"),
            (3, ts("2025-01-02"), "c"),
        ]
        response = run_results(project)["keyed"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_updated"]) == (1, 1)
        assert response["rows_deleted"] == 0
