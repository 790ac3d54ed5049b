"""Errors of time-window configs and backfill ranges through real dbt runs; nothing is written.

Also dbt's own --event-time-start/--event-time-end: dbt accepts them for every ``dbt run``
(not only microbatch models), and a windowed sqlflow model then reprocesses exactly that
range.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from dbt.cli.exceptions import DbtUsageException
from dbt.tests.util import run_dbt
from sqlflow_testing import ordered_hash, rows, run_results

sources_yml = """
version: 2
sources:
  - name: raw
    schema: "{{ target.schema }}"
    tables:
      - name: events
"""

body = "select id, region, event_ts, v from {{ source('raw', 'events') }}"
DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
COLUMNS = "id, region, event_ts, v"
META_TABLES = ("loads", "intervals", "partitions", "quality_results")
NOW = "2025-01-03T12:00:00"


def model(config: str) -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + body + "\n"


def run_vars(**values: str) -> list[str]:
    return ["--vars", json.dumps({"sqlflow_now": NOW, **values})]


def create_events(project) -> None:
    project.run_sql(
        "create or replace table {schema}.events"
        " (id integer, region varchar, event_ts timestamp, v varchar)"
    )
    project.run_sql(
        "insert into {schema}.events values"
        " (1, 'eu', timestamp '2025-01-01 10:00:00', 'a'),"
        " (2, 'us', timestamp '2025-01-02 10:00:00', 'b'),"
        " (3, 'eu', timestamp '2025-01-03 10:00:00', 'c')"
    )


def config_error(name: str, *problems: str) -> str:
    """dbt's message for a model whose config parse found ``problems``."""
    noun = "error" if len(problems) == 1 else "errors"
    inner = (
        f"sqlflow_incremental model 'model.test.{name}' has {len(problems)} configuration"
        f" {noun} (nothing was written):\n" + "\n".join(f"  - {p}" for p in problems)
    )
    return f"Runtime Error in model {name} (models/{name}.sql)\n" + textwrap.indent(inner, "  ")


def range_error(name: str, *problems: str) -> str:
    inner = (
        f"sqlflow_incremental model 'model.test.{name}': bad backfill range (nothing was"
        " written):\n" + "\n".join(f"  - {p}" for p in problems)
    )
    return f"Runtime Error in model {name} (models/{name}.sql)\n" + textwrap.indent(inner, "  ")


def tables(project) -> list[str]:
    return [
        r[0]
        for r in rows(
            project,
            "select table_name from duckdb_tables() where schema_name = '{schema}' order by 1",
        )
    ]


def meta(project) -> dict[str, list[tuple]]:
    found = {
        r[0]
        for r in rows(
            project, "select table_name from duckdb_tables() where schema_name = 'sqlflow_meta'"
        )
    }
    return {
        t: rows(project, f"select * from sqlflow_meta.{t} order by all")
        for t in META_TABLES
        if t in found
    }


GRANULARITIES = "hour, day, week, month, year"
LOOKBACK = (
    "must be an integer >= 0 (batch_size units re-read before the last loaded end)."
    " Fix: set lookback=1, or 0 to re-read nothing."
)
BACKFILL_FIX = (
    'Fix: pass both, e.g. --vars \'{"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-02-01"}\'.'
)

BAD_MODELS = {
    "bad_granularity": (
        "partition_by={'field': 'event_ts', 'granularity': 'fortnight'}",
        [
            f"partition_by.granularity 'fortnight' is not one of: {GRANULARITIES}. Fix: set"
            " granularity to one of them, or remove it for value partitions."
        ],
    ),
    "bad_batch_size": (
        "event_time='event_ts', batch_size='days'",
        [
            f"batch_size 'days' is not one of: {GRANULARITIES} (did you mean 'day'?)."
            " Fix: set batch_size to one of them."
        ],
    ),
    "missing_field": (
        "partition_by={'field': 'evt_ts', 'granularity': 'day'}",
        [
            "partition_by.field 'evt_ts' names a column the model does not produce (did you"
            f" mean 'event_ts'?); its columns are: {COLUMNS}. Fix: select evt_ts in the model"
            " or change partition_by.field."
        ],
    ),
    "wrong_type": (
        "partition_by={'field': 'region', 'granularity': 'day'}",
        [
            "partition_by.field 'region' is of type VARCHAR, not DATE, TIMESTAMP or"
            " TIMESTAMPTZ. Fix: cast region to a timestamp in the model, or choose a time"
            " column."
        ],
    ),
    "negative_lookback": (f"{DAY}, lookback=-1", [f"lookback -1 {LOOKBACK}"]),
    "text_lookback": (f"{DAY}, lookback='2'", [f"lookback '2' {LOOKBACK}"]),
    "bad_begin": (
        f"{DAY}, begin='first of january'",
        [
            "begin 'first of january' is not an ISO date or timestamp. Fix: write"
            " begin='2025-01-01' or begin='2025-01-01T00:00:00'."
        ],
    ),
    "future_begin": (
        f"{DAY}, begin='2025-01-04'",
        [
            "begin '2025-01-04' lies in the future (now is 2025-01-03 12:00:00 UTC). Fix: set"
            " begin to the earliest time the model has data for."
        ],
    ),
    "value_with_time_keys": (
        "partition_by={'field': 'region'}, batch_size='day', begin='2025-01-01', lookback=2",
        [
            f"{key} {value!r} is a time-window key, but partition_by {{'field': 'region'}}"
            " makes value partitions and the model has no event_time. Fix: remove it, or set"
            " event_time to the model's time column."
            for key, value in (("batch_size", "day"), ("begin", "2025-01-01"), ("lookback", 2))
        ],
    ),
}


class TestWindowConfigErrors:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {f"{name}.sql": model(cfg) for name, (cfg, _) in BAD_MODELS.items()}
        return {"sources.yml": sources_yml, **files}

    def test_every_error_before_anything_is_written(self, project) -> None:
        create_events(project)
        results = run_dbt(["run", *run_vars()], expect_pass=False)
        assert {r.node.name: r.status for r in results} == dict.fromkeys(BAD_MODELS, "error")
        for result in results:
            assert result.message == config_error(
                result.node.name, *BAD_MODELS[result.node.name][1]
            )
        assert tables(project) == ["events"]
        assert all(not found for found in meta(project).values())


BAD_RANGES = {
    "start_not_iso": (
        {"sqlflow_start": "Jan 2", "sqlflow_end": "2025-01-03"},
        ["sqlflow_start 'Jan 2' is not an ISO date or timestamp. " + BACKFILL_FIX],
    ),
    "end_not_a_date": (
        {"sqlflow_start": "2025-01-02", "sqlflow_end": "2025-01-32"},
        ["sqlflow_end '2025-01-32' is not an ISO date or timestamp. " + BACKFILL_FIX],
    ),
    "start_after_end": (
        {"sqlflow_start": "2025-01-03", "sqlflow_end": "2025-01-02"},
        [
            "sqlflow_start 2025-01-03T00:00:00 is not before sqlflow_end"
            " 2025-01-02T00:00:00 (the range [start, end) includes start, excludes"
            " end). Fix: swap them."
        ],
    ),
    "empty_range": (
        {"sqlflow_start": "2025-01-02", "sqlflow_end": "2025-01-02"},
        [
            "sqlflow_start 2025-01-02T00:00:00 is not before sqlflow_end"
            " 2025-01-02T00:00:00 (the range [start, end) includes start, excludes"
            " end). Fix: swap them."
        ],
    ),
    "end_missing": (
        {"sqlflow_start": "2025-01-02"},
        [f"sqlflow_end is missing. {BACKFILL_FIX}"],
    ),
}


class TestBackfillRanges:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "daily.sql": model(f"incremental_strategy='insert_overwrite', {DAY}"),
            "plain.sql": model("unique_key='id'"),
        }

    @pytest.fixture(scope="class")
    def loaded(self, project) -> dict:
        """Both models loaded, then every source row changed (a bad range writes nothing)."""
        create_events(project)
        run_dbt(["run", *run_vars()])
        loaded = {
            "daily": ordered_hash(project, "{schema}.daily"),
            "plain": ordered_hash(project, "{schema}.plain"),
            "state": meta(project),
        }
        project.run_sql("update {schema}.events set v = v || '!'")
        return loaded

    def test_first_run_loads_three_daily_batches_and_the_plain_model(self, loaded) -> None:
        assert loaded["daily"][0] == 3
        assert len(loaded["state"]["loads"]) == 4  # three daily batches and the plain build

    @pytest.mark.parametrize("case", list(BAD_RANGES))
    def test_bad_range_is_refused_and_writes_nothing(self, project, loaded, case) -> None:
        bounds, problems = BAD_RANGES[case]
        results = run_dbt(["run", "-s", "daily", *run_vars(**bounds)], expect_pass=False)
        assert results[0].message == range_error("daily", *problems), bounds
        assert ordered_hash(project, "{schema}.daily") == loaded["daily"]
        assert meta(project) == loaded["state"]

    def test_range_for_a_model_without_event_time_is_refused(self, project, loaded) -> None:
        results = run_dbt(
            ["run", "-s", "plain", *run_vars(sqlflow_start="2025-01-02", sqlflow_end="2025-01-03")],
            expect_pass=False,
        )
        assert results[0].message == range_error(
            "plain",
            "an explicit backfill range was given, but the model has no event_time or time"
            " partition_by. Fix: set event_time, or run without sqlflow_start/end.",
        )
        assert ordered_hash(project, "{schema}.plain") == loaded["plain"]
        assert meta(project) == loaded["state"]


class TestDbtEventTimeFlags:
    """dbt accepts --event-time-start/--event-time-end on any run; sqlflow honours them."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "daily.sql": model(f"incremental_strategy='insert_overwrite', {DAY}"),
        }

    def test_flags_reprocess_exactly_the_range(self, project) -> None:
        create_events(project)
        run_dbt(["run", *run_vars()])
        project.run_sql("update {schema}.events set v = v || '!'")
        project.run_sql(
            "insert into {schema}.events values (4, 'us', timestamp '2025-01-02 20:00:00', 'd')"
        )
        run_dbt(
            [
                "run",
                "--event-time-start",
                "2025-01-02",
                "--event-time-end",
                "2025-01-03",
                *run_vars(),
            ]
        )
        assert rows(project, "select id, event_ts::varchar, v from {schema}.daily order by id") == [
            (1, "2025-01-01 10:00:00", "a"),
            (2, "2025-01-02 10:00:00", "b!"),
            (3, "2025-01-03 10:00:00", "c"),
            (4, "2025-01-02 20:00:00", "d"),
        ]
        response = run_results(project)["daily"]["adapter_response"]
        assert (response["batches"], response["rows_deleted"], response["rows_inserted"]) == (
            1,
            1,
            2,
        )
        assert rows(
            project,
            "select window_start::varchar, window_end::varchar from sqlflow_meta.loads"
            " order by started_at desc limit 1",
        ) == [("2025-01-02 00:00:00", "2025-01-03 00:00:00")]

    def test_dbt_rejects_reversed_flags(self, project) -> None:
        # dbt itself validates the pair before any model runs.
        with pytest.raises(DbtUsageException) as info:
            run_dbt(
                [
                    "run",
                    "--event-time-start",
                    "2025-01-03",
                    "--event-time-end",
                    "2025-01-02",
                ]
            )
        assert str(info.value) == (
            "Value for `--event-time-start` must be less than `--event-time-end`"
        )


class TestDbtEventTimeFlagsSkipUnwindowedModels:
    """dbt's event-time flags apply to the models that have an event time, as in dbt."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "daily.sql": model(f"incremental_strategy='insert_overwrite', {DAY}"),
            "plain.sql": model("unique_key='id'"),
        }

    def test_unwindowed_model_runs_as_usual(self, project) -> None:
        create_events(project)
        run_dbt(["run", *run_vars()])
        project.run_sql("update {schema}.events set v = v || '!'")
        flags = ["--event-time-start", "2025-01-02", "--event-time-end", "2025-01-03"]
        results = run_dbt(["run", *flags, *run_vars()])
        assert {r.node.name: r.status for r in results} == {"daily": "success", "plain": "success"}
        assert rows(project, "select id, v from {schema}.plain order by id") == [
            (1, "a!"),
            (2, "b!"),
            (3, "c!"),
        ]
        assert rows(project, "select id, v from {schema}.daily order by id") == [
            (1, "a"),
            (2, "b!"),
            (3, "c"),
        ]
