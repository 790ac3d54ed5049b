"""impl.py: the @available bridge, on a real SqlflowAdapter.

The adapter is built the way dbt builds it (and dbt-tests-adapter's ``adapter`` fixture):
a RuntimeConfig read from a dbt_project.yml and a profiles.yml with ``type: sqlflow``, on a
DuckDB file in a temp folder, and one named connection.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.impl import SqlflowAdapter
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.sql import TEMPLATE_TOKENS, substitute_window
from dbt.adapters.sqlflow.state import PartitionInfo, StateStore

PROJECT = "name: bridge\nversion: '1.0'\nconfig-version: 2\nprofile: bridge\n"


def profile(path: Path) -> str:
    return (
        "bridge:\n  target: dev\n  outputs:\n    dev:\n"
        f"      type: sqlflow\n      path: '{path}'\n      threads: 1\n"
    )


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlflowAdapter]:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.config.runtime import RuntimeConfig
    from dbt.flags import set_from_args
    from dbt.mp_context import get_mp_context

    root = tmp_path_factory.mktemp("bridge")
    (root / "dbt_project.yml").write_text(PROJECT)
    (root / "profiles.yml").write_text(profile(root / "bridge.duckdb"))
    args = Namespace(
        profiles_dir=str(root), project_dir=str(root), target=None, profile=None, threads=None
    )
    set_from_args(args, {})
    built = SqlflowAdapter(RuntimeConfig.from_args(args), get_mp_context())
    try:
        with built.connection_named("bridge"):
            yield built
    finally:
        built.cleanup_connections()
        DuckDBConnectionManager.close_all_connections()


def query(adapter: SqlflowAdapter, sql: str) -> list[tuple]:
    _, table = adapter.execute(sql, fetch=True)
    return [tuple(row) for row in table.rows]


# -- incremental strategies for materialized='incremental' ---------------------------------

DUCKDB_STRATEGIES = ["append", "delete+insert", "merge", "microbatch"]


def test_valid_incremental_strategies_is_a_new_list_each_call(adapter: SqlflowAdapter) -> None:
    from dbt.adapters.duckdb.impl import DuckDBAdapter

    # dbt-duckdb hands out one cached list; dbt's base code appends "default" to it.
    cached = DuckDBAdapter.valid_incremental_strategies(adapter)
    assert DuckDBAdapter.valid_incremental_strategies(adapter) is cached
    first = adapter.valid_incremental_strategies()
    second = adapter.valid_incremental_strategies()
    assert first == second == DUCKDB_STRATEGIES
    assert first is not second and first is not cached
    first.append("default")
    assert adapter.valid_incremental_strategies() == DUCKDB_STRATEGIES


def test_dbt_strategy_lookup_leaves_the_strategies_alone(adapter: SqlflowAdapter) -> None:
    macro = object()
    context = {"get_incremental_append_sql": macro}
    for _ in range(3):
        assert adapter.get_incremental_strategy_macro(context, "append") is macro
    assert adapter.valid_incremental_strategies() == DUCKDB_STRATEGIES
    with pytest.raises(DbtRuntimeError, match="incremental strategy 'insert_overwrite' is not"):
        adapter.get_incremental_strategy_macro(context, "insert_overwrite")


# -- what Jinja renders --------------------------------------------------------------------

START_MARK, END_MARK = "/*sqlflow_window_start*/", "/*sqlflow_window_end*/"


@pytest.mark.parametrize(
    ("bound", "run_vars", "expected"),
    [
        ("start", None, "TIMESTAMP '0001-01-01 00:00:00'" + START_MARK),
        ("end", None, "TIMESTAMP '9999-12-31 00:00:00'" + END_MARK),
        ("start", {"sqlflow_start": "2025-01-01"}, "TIMESTAMP '2025-01-01 00:00:00'" + START_MARK),
        (
            "end",
            {"sqlflow_end": "2025-01-02T05:00:00+02:00"},
            "TIMESTAMP '2025-01-02 03:00:00'" + END_MARK,
        ),
        ("end", {"sqlflow_end": date(2025, 1, 2)}, "TIMESTAMP '2025-01-02 00:00:00'" + END_MARK),
        # The other bound, an empty or a bad value: the unbounded default (explicit_range
        # reports a bad value before anything runs).
        ("start", {"sqlflow_end": "2025-01-02"}, "TIMESTAMP '0001-01-01 00:00:00'" + START_MARK),
        ("start", {"sqlflow_start": ""}, "TIMESTAMP '0001-01-01 00:00:00'" + START_MARK),
        ("end", {"sqlflow_end": "soon"}, "TIMESTAMP '9999-12-31 00:00:00'" + END_MARK),
    ],
)
def test_sqlflow_window_sql(
    adapter: SqlflowAdapter, bound: str, run_vars: dict[str, Any] | None, expected: str
) -> None:
    assert adapter.sqlflow_window_sql(bound, run_vars) == expected


def test_window_sql_runs_in_duckdb_and_takes_each_batch_bounds(adapter: SqlflowAdapter) -> None:
    start = adapter.sqlflow_window_sql("start")
    end = adapter.sqlflow_window_sql("end", {"sqlflow_end": "2025-02-01"})
    sql = f"select {start} as s, {end} as e"
    assert query(adapter, sql) == [(datetime(1, 1, 1), datetime(2025, 2, 1))]
    batch = substitute_window(sql, datetime(2025, 1, 3), datetime(2025, 1, 4, 6))
    assert query(adapter, batch) == [(datetime(2025, 1, 3), datetime(2025, 1, 4, 6))]


def test_sqlflow_template_tokens_is_a_copy(adapter: SqlflowAdapter) -> None:
    tokens = adapter.sqlflow_template_tokens()
    assert tokens == {
        "start": "__SQLFLOW_WINDOW_START__",
        "end": "__SQLFLOW_WINDOW_END__",
        "model_sql": "__SQLFLOW_MODEL_SQL__",
        "target_predicate": "(__SQLFLOW_TARGET_PREDICATE__)",
        "overwrite_predicate": "(__SQLFLOW_OVERWRITE_PREDICATE__)",
    }
    tokens["start"] = "changed"
    assert TEMPLATE_TOKENS["start"] == "__SQLFLOW_WINDOW_START__"
    assert adapter.sqlflow_template_tokens()["start"] == "__SQLFLOW_WINDOW_START__"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01", "TIMESTAMP '2025-03-01 00:00:00'"),
        ("2025-03-01T02:30:00+02:00", "TIMESTAMP '2025-03-01 00:30:00'"),
        (date(2025, 3, 1), "TIMESTAMP '2025-03-01 00:00:00'"),
    ],
)
def test_sqlflow_pinned_now_literal(adapter: SqlflowAdapter, value: Any, expected: str) -> None:
    assert adapter.sqlflow_pinned_now_literal(value) == expected


def test_sqlflow_pinned_now_literal_from_the_environment(
    adapter: SqlflowAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SQLFLOW_NOW", raising=False)
    assert adapter.sqlflow_pinned_now_literal(None) is None
    monkeypatch.setenv("SQLFLOW_NOW", "2025-03-01T02:30:00+02:00")
    assert adapter.sqlflow_pinned_now_literal(None) == "TIMESTAMP '2025-03-01 00:30:00'"


def test_sqlflow_pinned_now_literal_bad_value(adapter: SqlflowAdapter) -> None:
    with pytest.raises(DbtRuntimeError) as info:
        adapter.sqlflow_pinned_now_literal("next tuesday")
    assert info.value.msg == (
        "--vars sqlflow_now 'next tuesday' is not an ISO date or timestamp. Pass e.g."
        " SQLFLOW_NOW=2025-03-01T00:00:00 (or --vars"
        ' \'{"sqlflow_now": "2025-03-01T00:00:00"}\').'
    )


# -- operations on the state ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "detail"),
    [
        (
            "2025-01-03",
            "2025-01-02",
            "interval start 2025-01-03T00:00:00 is not before its end 2025-01-02T00:00:00:"
            " an interval [start, end) needs start < end",
        ),
        (
            "yesterday",
            "2025-01-02",
            "cannot read 'yesterday' as a date or timestamp: give an ISO 8601 date or"
            " timestamp such as '2025-03-04', '2025-03-04T05:00:00' or"
            " '2025-03-04T05:00:00+02:00' (an offset or 'Z' is converted to UTC)",
        ),
    ],
)
def test_sqlflow_invalidate_bad_bounds(
    adapter: SqlflowAdapter, start: str, end: str, detail: str
) -> None:
    with pytest.raises(DbtRuntimeError) as info:
        adapter.sqlflow_invalidate("model.bridge.events", start, end)
    assert info.value.msg == (
        f"sqlflow_invalidate of 'model.bridge.events': {detail}. Pass ISO bounds with"
        " start < end, e.g. --args '{model: m, start: 2025-01-01, end: 2025-01-02}'."
    )


def test_sqlflow_invalidate_unmarks_loaded_time(adapter: SqlflowAdapter) -> None:
    state = StateStore(lambda sql: query(adapter, sql))
    state.ensure()
    loaded = Interval(datetime(2025, 1, 1), datetime(2025, 1, 5))
    state.add_interval("model.bridge.inv", '"bridge"."main"."inv"', loaded, "load-1")
    adapter.commit_if_has_connection()

    removed = adapter.sqlflow_invalidate("model.bridge.inv", "2025-01-02", "2025-01-03T12:00")
    nothing = adapter.sqlflow_invalidate("model.bridge.inv", "2026-01-01", "2026-01-02")

    assert removed == "[2025-01-02 00:00:00, 2025-01-03 12:00:00)"
    assert nothing == "nothing was loaded there"
    assert state.loaded_intervals("model.bridge.inv") == [
        Interval(datetime(2025, 1, 1), datetime(2025, 1, 2)),
        Interval(datetime(2025, 1, 3, 12), datetime(2025, 1, 5)),
    ]


def test_sqlflow_check_partitions_needs_partition_by(adapter: SqlflowAdapter) -> None:
    adapter.execute("create or replace table plain as select 1 as id")
    with pytest.raises(DbtRuntimeError) as info:
        adapter.sqlflow_check_partitions("model.bridge.plain", "plain", {"unique_key": "id"})
    assert info.value.msg == (
        "sqlflow_check_partitions: model 'model.bridge.plain' has no partition_by."
        " Set partition_by in its config to give it partitions."
    )


def test_sqlflow_check_partitions_reports(adapter: SqlflowAdapter) -> None:
    adapter.execute(
        "create or replace table parts as select range::int as id,"
        " timestamp '2025-01-01' + to_hours(range * 12) as event_ts from range(4)"
    )
    state = StateStore(lambda sql: query(adapter, sql))
    state.ensure()
    day = [(datetime(2025, 1, d), datetime(2025, 1, d + 1)) for d in (1, 2)]
    state.upsert_partitions(
        "parts",
        [PartitionInfo(f"2025-01-0{d}", *day[d - 1], row_count=2) for d in (1, 2)],
    )
    adapter.commit_if_has_connection()
    node_config = {"partition_by": {"field": "event_ts", "granularity": "day"}, "unique_key": "id"}

    report = adapter.sqlflow_check_partitions("model.bridge.parts", "parts", node_config)
    assert report == "sqlflow: model 'model.bridge.parts': parts: 2 partitions, consistent"

    adapter.execute("insert into parts values (9, timestamp '2025-01-02 20:00')")
    adapter.commit_if_has_connection()
    with pytest.raises(DbtRuntimeError) as info:
        adapter.sqlflow_check_partitions("model.bridge.parts", "parts", node_config)
    assert info.value.msg == (
        "sqlflow: model 'model.bridge.parts': parts: 1 partition problem(s) in 2 recorded"
        " partitions:\n"
        "  - count_mismatch [2025-01-02]: recorded 2 rows, found 3\n"
        "Fix: rebuild the affected range (dbt run -s <model> --vars"
        ' \'{"sqlflow_start": ..., "sqlflow_end": ...}\') or the model with --full-refresh.'
    )
