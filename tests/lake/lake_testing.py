"""Helpers of the lake suite: reads of the lake's tables and sqlflow's state in it."""

from __future__ import annotations

from typing import Any

from dbt.tests.util import run_dbt
from sqlflow_testing import release, rows

DAY_ROWS = {
    d: [(d * 10 + i, f"2025-01-0{d} 0{i}:00:00", f"d{d}e{i}") for i in (1, 2)] for d in range(1, 8)
}
"""The rows of raw.events on day ``d`` of January 2025, as :func:`target` shows them."""


def run_lake_dbt(project: Any, args: list[str], expect_pass: bool = True) -> Any:
    """``run_dbt`` on a fresh DuckDB instance, as a ``dbt`` command runs.

    dbt-duckdb keeps one DuckDB instance per process; the tests' own queries and earlier
    runs would share it (and its DuckLake catalog cache) with the run. With ``threads: 4``
    DuckLake 1.5.5 then sometimes fails a commit with a corrupted catalog entry (an error
    text that is not UTF-8), which a ``dbt`` command in its own process did not show in
    the same scenario (upstream: ducklake issue 1404).
    """
    release(project)
    try:
        return run_dbt(args, expect_pass=expect_pass)
    finally:
        release(project)


def create_events(project: Any, days: tuple[int, ...] = (1, 2, 3)) -> None:
    """``events`` (id, event_ts, v) in the lake, two rows a day on these days (:data:`DAY_ROWS`)."""
    project.run_sql(
        "create or replace table {database}.{schema}.events"
        " (id integer, event_ts timestamp, v varchar)"
    )
    add_events(project, [r for d in days for r in DAY_ROWS[d]])


def add_events(project: Any, values: list[tuple[int, str, str]]) -> None:
    """Insert rows (id, event_ts text, v) into raw.events."""
    text = ", ".join(f"({i}, timestamp '{ts}', '{v}')" for i, ts, v in values)
    project.run_sql(f"insert into {{database}}.{{schema}}.events values {text}")


def target(project: Any, name: str, columns: str = "id, event_ts::varchar, v") -> list[tuple]:
    """A model's rows in the lake, by id."""
    return rows(project, f"select {columns} from {{database}}.{{schema}}.{name} order by all")


def source(project: Any) -> list[tuple]:
    """raw.events as :func:`target` shows a model's rows."""
    return target(project, "events")


def merged(rows_: list[tuple]) -> list[tuple]:
    """Interval rows ``(start, end)`` with touching ones merged."""
    result: list[tuple] = []
    for start, end in rows_:
        if result and result[-1][1] == start:
            result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def state(project: Any, name: str) -> dict[str, list[tuple]]:
    """sqlflow's state rows of one model, read from the lake."""
    model_id = f"'model.test.{name}'"
    meta = "{database}.sqlflow_meta"
    return {
        "loads": rows(
            project,
            "select window_start::varchar, window_end::varchar, strategy, rows_inserted,"
            f" rows_updated, rows_deleted from {meta}.loads where model = {model_id}"
            " order by window_start nulls first, started_at",
        ),
        "intervals": merged(
            rows(
                project,
                f"select interval_start::varchar, interval_end::varchar from {meta}.intervals"
                f" where model = {model_id} order by interval_start",
            )
        ),
        "partitions": rows(
            project,
            f"select partition_key, row_count from {meta}.partitions"
            f" where relation like '%\"{name}\"' order by partition_key",
        ),
    }
