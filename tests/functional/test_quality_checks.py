"""Quality checks in real sqlflow_incremental loads: pass, fail with 'error', fail with 'warn'.

Every run pins now with --vars sqlflow_now. The models load daily windows of one source
day (2025-01-03), so each run is one batch: a failed 'error' check rolls back the only
load of the run and the target and all of sqlflow's state must be exactly as before.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import Scenario, now, ordered_hash, raw_sources_yml, rows, run_results

sources_yml = raw_sources_yml("orders")

body = "select id, code, status, amount, event_ts from {{ source('raw', 'orders') }}"

CHECKS = [
    ("not_null", "['status']"),
    ("unique", "['code']"),
    ("accepted_values", "{'column': 'status', 'values': ['placed', 'shipped']}"),
    ("row_count", "{'min': 1, 'max': 4}"),
    ("expression", "'amount >= 0'"),
    ("freshness", "{'max_lag': '12 hours'}"),
    ("partition_consistency", "true"),
]
CHECK_NAMES = [
    "not_null(status)",
    "unique(code)",
    "accepted_values(status)",
    "row_count",
    "expression(amount >= 0)",
    "freshness(event_ts)",
    "partition_consistency",
]
META_TABLES = ("loads", "intervals", "partitions", "quality_results")
NOON = "2025-01-03T12:00:00"
LATE = "2025-01-03T23:30:00"


def model(severity: str) -> str:
    checks = ", ".join(f"{{'{kind}': {value}, 'severity': '{severity}'}}" for kind, value in CHECKS)
    return (
        "{{ config(materialized='sqlflow_incremental', incremental_strategy='merge',"
        " unique_key='id', partition_by={'field': 'event_ts', 'granularity': 'day'},"
        f" begin='2025-01-03', quality_checks=[{checks}]) }}}}\n{body}\n"
    )


def table(project, name: str) -> list[tuple]:
    return rows(
        project,
        f"select id, code, status, amount, event_ts::varchar from {{schema}}.{name} order by id",
    )


def meta(project) -> dict[str, list[tuple]]:
    return {t: rows(project, f"select * from sqlflow_meta.{t} order by all") for t in META_TABLES}


def quality_rows(project, name: str) -> list[tuple]:
    """(load, check, severity, status, failing_rows) per check outcome, loads in order."""
    return rows(
        project,
        "select dense_rank() over (order by l.started_at, l.load_id), q.check_name, q.severity,"
        " q.status, q.failing_rows from sqlflow_meta.quality_results q"
        " join sqlflow_meta.loads l using (load_id)"
        f" where q.model = 'model.test.{name}' order by 1, q.check_name",
    )


def passing(load: int, severity: str) -> list[tuple]:
    return sorted((load, name, severity, "pass", 0) for name in CHECK_NAMES)


FIRST = [
    (1, "c1", "placed", 10, "2025-01-03 01:00:00"),
    (2, "c2", "shipped", 20, "2025-01-03 02:00:00"),
    (3, "c3", "placed", 30, "2025-01-03 10:00:00"),
]
# Five rows (row_count max is 4): id 4 has a null status, a negative amount and the code
# of id 3; id 5 has a status outside the accepted values. The newest event is still
# 10:00, older than 23:30 minus 12 hours.
BAD = [
    (4, "c3", None, -5, "2025-01-03 03:00:00"),
    (5, "c5", "lost", 50, "2025-01-03 04:00:00"),
]
FIXED = [(4, "c4", "placed", 5, "2025-01-03 03:00:00")]
# A row put into the target by hand on a day no partition records.
STRAY = "(99, 'c99', 'placed', 1, timestamp '2025-01-02 08:00:00')"


def traced(load_id: str, start: str, end: str) -> dict[str, str]:
    """The load and window an adapter_response quality_checks entry names."""
    return {
        "window_start": f"{start}T00:00:00",
        "window_end": f"{end}T00:00:00",
        "load_id": load_id,
    }


def set_source(project, values: list[tuple]) -> None:
    project.run_sql(
        "create or replace table {schema}.orders"
        " (id integer, code varchar, status varchar, amount integer, event_ts timestamp)"
    )
    literals = ", ".join(
        f"({i}, '{c}', {'null' if s is None else repr(s)}, {a}, timestamp '{ts}')"
        for i, c, s, a, ts in values
    )
    project.run_sql(f"insert into {{schema}}.orders values {literals}")


ERROR_MESSAGE = """\
Model 'model.test.q_error': 7 quality checks of severity 'error' failed, so the load was \
rolled back and the target and sqlflow's state are unchanged. Fix the data or the check, or \
set severity: 'warn' on a check to load despite it.
quality check failed: not_null(status) (1 failing rows)
  1 rows of the batch have a null in status
  - status=NULL, id=4, code='c3', amount=-5, event_ts=2025-01-03 03:00:00
quality check failed: unique(code) (2 failing rows)
  2 rows of the target share 1 duplicated (code) values
  - code='c3' (2 rows)
quality check failed: accepted_values(status) (1 failing rows)
  1 rows of the batch have status outside the accepted values ['placed', 'shipped']
  - status='lost', id=5, code='c5', amount=50, event_ts=2025-01-03 04:00:00
quality check failed: row_count (0 failing rows)
  the batch has 5 rows; row_count requires between 1 and 4
quality check failed: expression(amount >= 0) (1 failing rows)
  1 rows of the batch make (amount >= 0) false or null
  - id=4, code='c3', status=NULL, amount=-5, event_ts=2025-01-03 03:00:00
quality check failed: freshness(event_ts) (0 failing rows)
  the newest event_ts in the target, 2025-01-03 10:00:00, is older than 2025-01-03 11:30:00 \
(now (2025-01-03 23:30:00) minus max_lag '12 hours')
  - newest event_ts=2025-01-03 10:00:00
quality check failed: partition_consistency (0 failing rows)
  the partition consistency check found 1 problems
  - out_of_range 2025-01-02: 1 row(s) with event_ts in [2025-01-02 08:00:00, 2025-01-02 \
08:00:00] fall in no recorded partition"""


BAD_MESSAGE = (
    "sqlflow_incremental model 'model.test.q_bad' has 4 configuration errors (nothing was"
    " written):\n"
    "  - quality_checks[0] {'not_nul': ['id']}: unknown check 'not_nul'. Allowed checks:"
    " not_null, unique, accepted_values, row_count, expression, freshness,"
    " partition_consistency. Did you mean 'not_null'?\n"
    "  - quality_checks[1] {'row_count': {'min': 5, 'max': 2}, 'severity': 'fatal'}:"
    " severity 'fatal' (a string) is not allowed. Allowed severities: error, warn"
    " (default error).\n"
    "  - quality_checks[1] {'row_count': {'min': 5, 'max': 2}, 'severity': 'fatal'}:"
    " row_count.min 5 is greater than row_count.max 2; no batch could pass."
    " Make min <= max.\n"
    "  - quality_checks[2] {'unique': ['idd']}: unique names column 'idd', which the"
    " model does not produce. Model columns: id, code, status, amount, event_ts."
    " Did you mean 'id'?"
)


def passing_run(project) -> dict:
    # Run 1: every check passes; the outcomes are recorded and reported.
    set_source(project, FIRST)
    run_dbt(["run", "-s", "q_error", "q_warn", *now(NOON)])
    return {
        "tables": {name: table(project, name) for name in ("q_error", "q_warn")},
        "quality": {name: quality_rows(project, name) for name in ("q_error", "q_warn")},
        "response": run_results(project)["q_error"]["adapter_response"],
    }


def error_run(project) -> dict:
    # Run 2 of q_error: every check fails; nothing changes anywhere.
    set_source(project, FIRST + BAD)
    for name in ("q_error", "q_warn"):
        project.run_sql(f"insert into {{schema}}.{name} values {STRAY}")
    before = ordered_hash(project, "{schema}.q_error")
    state = meta(project)
    results = run_dbt(["run", "-s", "q_error", *now(LATE)], expect_pass=False)
    return {
        "results": results,
        "hash_before": before,
        "hash_after": ordered_hash(project, "{schema}.q_error"),
        "meta_before": state,
        "meta_after": meta(project),
        "table": table(project, "q_error"),
    }


def warn_run(project) -> dict:
    # Run 2 of q_warn: the same failures are warnings; the load commits.
    _, log = run_dbt_and_capture(["run", "-s", "q_warn", *now(LATE)])
    return {
        "log": log,
        "table": table(project, "q_warn"),
        "quality": quality_rows(project, "q_warn"),
        "loads": rows(
            project,
            "select status, rows_inserted, rows_updated from sqlflow_meta.loads"
            " where model = 'model.test.q_warn' order by started_at",
        ),
        "response": run_results(project)["q_warn"]["adapter_response"],
        "samples": rows(
            project,
            "select check_name, sample from sqlflow_meta.quality_results"
            " where model = 'model.test.q_warn' and status = 'fail' order by check_name",
        ),
    }


def fixed_run(project) -> dict:
    # Run 3: the data is fixed and the stray rows removed; every check passes again.
    set_source(project, FIRST + FIXED)
    for name in ("q_error", "q_warn"):
        project.run_sql(f"delete from {{schema}}.{name} where id = 99")
    run_dbt(["run", "-s", "q_error", "q_warn", *now(NOON)])
    return {
        "tables": {name: table(project, name) for name in ("q_error", "q_warn")},
        "quality": {name: quality_rows(project, name) for name in ("q_error", "q_warn")},
    }


class TestQualityChecks:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "q_error.sql": model("error"),
            "q_warn.sql": model("warn"),
            "q_bad.sql": (
                "{{ config(materialized='sqlflow_incremental', quality_checks=["
                "{'not_nul': ['id']}, {'row_count': {'min': 5, 'max': 2}, 'severity': 'fatal'},"
                " {'unique': ['idd']}]) }}\n" + body + "\n"
            ),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, passing_run, error_run, warn_run, fixed_run)

    def test_passing_checks_are_recorded_and_reported(self, scenario) -> None:
        first = scenario.after(passing_run)
        assert first["tables"]["q_error"] == FIRST
        assert first["tables"]["q_warn"] == FIRST
        assert first["quality"]["q_error"] == passing(1, "error")
        assert first["quality"]["q_warn"] == passing(1, "warn")
        response = first["response"]
        assert response["quality_checks"] == [
            {
                "check": name,
                "severity": "error",
                "status": "pass",
                "failing_rows": 0,
                **traced(response["load_ids"][0], "2025-01-03", "2025-01-04"),
            }
            for name in CHECK_NAMES
        ]

    def test_failing_error_checks_roll_back_the_load(self, scenario) -> None:
        failed = scenario.after(error_run)
        results = failed["results"]
        assert [(r.node.name, r.status) for r in results] == [("q_error", "error")]
        assert results[0].message == (
            "Runtime Error in model q_error (models/q_error.sql)\n"
            + textwrap.indent(ERROR_MESSAGE, "  ")
        )
        assert failed["hash_after"] == failed["hash_before"]
        assert failed["meta_after"] == failed["meta_before"]
        stray = (99, "c99", "placed", 1, "2025-01-02 08:00:00")
        assert failed["table"] == [*FIRST, stray]

    def test_failing_warn_checks_log_warnings_and_commit_the_load(self, scenario) -> None:
        warned = scenario.after(warn_run)
        log = warned["log"]
        stray = (99, "c99", "placed", 1, "2025-01-02 08:00:00")
        assert warned["table"] == [*FIRST, *BAD, stray]
        for block in ERROR_MESSAGE.split("quality check failed: ")[1:]:
            assert "quality check warned: " + block.strip() in log
        assert log.count(
            "Model 'model.test.q_warn': a quality check of severity 'warn' failed;"
            " the load was committed."
        ) == len(CHECKS)
        failing = {
            "not_null(status)": 1,
            "unique(code)": 2,
            "accepted_values(status)": 1,
            "row_count": 0,
            "expression(amount >= 0)": 1,
            "freshness(event_ts)": 0,
            "partition_consistency": 0,
        }
        assert warned["quality"] == passing(1, "warn") + sorted(
            (2, name, "warn", "fail", n) for name, n in failing.items()
        )
        assert warned["loads"] == [("success", 3, 0), ("warn", 2, 3)]
        response = warned["response"]
        assert response["quality_checks"] == [
            {
                "check": name,
                "severity": "warn",
                "status": "fail",
                "failing_rows": n,
                **traced(response["load_ids"][0], "2025-01-03", "2025-01-04"),
            }
            for name, n in failing.items()
        ]
        assert json.loads(dict(warned["samples"])["unique(code)"]) == ["code='c3' (2 rows)"]

    def test_fixed_data_passes_every_check_again(self, scenario) -> None:
        fixed = scenario.after(fixed_run)
        assert fixed["tables"]["q_error"] == FIRST + FIXED
        assert fixed["tables"]["q_warn"] == [*FIRST, *FIXED, BAD[1]]
        assert fixed["quality"]["q_error"] == passing(1, "error") + passing(2, "error")
        assert fixed["quality"]["q_warn"][-len(CHECKS) :] == passing(3, "warn")

    def test_malformed_checks_are_a_config_error(self, project, scenario) -> None:
        scenario.after(passing_run)  # sqlflow's state exists and holds loads
        set_source(project, FIRST)
        state = meta(project)
        results = run_dbt(["run", "-s", "q_bad"], expect_pass=False)
        assert results[0].status == "error"
        assert results[0].message == "Runtime Error in model q_bad (models/q_bad.sql)\n" + (
            textwrap.indent(BAD_MESSAGE, "  ")
        )
        assert rows(
            project,
            "select count(*) from duckdb_tables() where table_name = 'q_bad'",
        ) == [(0,)]
        assert meta(project) == state


class TestFreshnessOnBackfill:
    """A first build of several daily batches: only the finished load is judged for freshness."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "fresh.sql": (
                "{{ config(materialized='sqlflow_incremental', unique_key='id',"
                " partition_by={'field': 'event_ts', 'granularity': 'day'},"
                " quality_checks=[{'freshness': {'max_lag': '1 day'}}]) }}\n" + body + "\n"
            ),
        }

    def test_backfill_of_fresh_data_passes(self, project) -> None:
        days = [(d, f"c{d}", "placed", d, f"2025-01-0{d} 10:00:00") for d in (1, 2, 3)]
        set_source(project, days)
        run_dbt(["run", *now(NOON)])
        assert table(project, "fresh") == days


class TestChecksOfEveryBatch:
    """A build of five daily batches with two checks: ten outcomes, each naming its batch."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "five.sql": (
                "{{ config(materialized='sqlflow_incremental', unique_key='id',"
                " event_time='event_ts', batch_size='day', begin='2025-01-01',"
                " quality_checks=[{'not_null': ['status']},"
                " {'expression': 'amount > 2', 'severity': 'warn'}]) }}\n" + body + "\n"
            ),
        }

    def test_each_outcome_names_its_window_and_load(self, project) -> None:
        days = [(d, f"c{d}", "placed", d, f"2025-01-0{d} 10:00:00") for d in range(1, 6)]
        set_source(project, days)
        run_dbt(["run", *now("2025-01-05T12:00:00")])
        assert table(project, "five") == days
        response = run_results(project)["five"]["adapter_response"]
        load_ids = response["load_ids"]
        assert response["batches"] == len(load_ids) == 5
        loads = rows(
            project,
            "select load_id, window_start::varchar from sqlflow_meta.loads order by window_start",
        )
        assert [load_id for load_id, _ in loads] == load_ids
        expected = []
        for day, load_id in enumerate(load_ids, start=1):
            window = traced(load_id, f"2025-01-0{day}", f"2025-01-0{day + 1}")
            expected += [
                {
                    "check": "not_null(status)",
                    "severity": "error",
                    "status": "pass",
                    "failing_rows": 0,
                    **window,
                },
                {
                    "check": "expression(amount > 2)",
                    "severity": "warn",
                    "status": "fail" if day <= 2 else "pass",
                    "failing_rows": 1 if day <= 2 else 0,
                    **window,
                },
            ]
        assert response["quality_checks"] == expected
