"""Window SQL, time literals, buffered state writes (on real DuckDB) and a load's figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import duckdb
import pytest

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.load import (
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    BufferedWrites,
    ModelLoad,
    SqlflowAdapterResponse,
    batch_order_by,
    substitute_window,
    time_literal,
    window_sql,
)
from dbt.adapters.sqlflow.quality import CheckOutcome

MODEL = "model.proj.events"


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- window SQL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mark", "value", "default", "expected"),
    [
        (
            WINDOW_START_MARK,
            None,
            UNBOUNDED_START,
            "TIMESTAMP '0001-01-01 00:00:00'/*sqlflow_window_start*/",
        ),
        (
            WINDOW_END_MARK,
            None,
            UNBOUNDED_END,
            "TIMESTAMP '9999-12-31 00:00:00'/*sqlflow_window_end*/",
        ),
        (
            WINDOW_START_MARK,
            dt("2025-01-02T03:04:05"),
            UNBOUNDED_START,
            "TIMESTAMP '2025-01-02 03:04:05'/*sqlflow_window_start*/",
        ),
        (
            WINDOW_END_MARK,
            dt("2025-01-02T03:04:05.000250"),
            UNBOUNDED_END,
            "TIMESTAMP '2025-01-02 03:04:05.000250'/*sqlflow_window_end*/",
        ),
    ],
)
def test_window_sql(mark: str, value: datetime | None, default: datetime, expected: str) -> None:
    assert window_sql(mark, value, default) == expected


def compiled_model() -> str:
    start = window_sql(WINDOW_START_MARK, None, UNBOUNDED_START)
    end = window_sql(WINDOW_END_MARK, None, UNBOUNDED_END)
    return (
        f"select * from src where ts >= {start} and ts < {end}\n"
        f"union all select * from late where ts >= {start} - interval 1 day"
        " and created > TIMESTAMP '2020-01-01 00:00:00'"
    )


def test_substitute_window_replaces_every_marker_and_nothing_else() -> None:
    sql = substitute_window(compiled_model(), dt("2025-01-01"), dt("2025-01-02T12:00"))
    assert sql == (
        "select * from src where ts >= TIMESTAMP '2025-01-01 00:00:00'/*sqlflow_window_start*/"
        " and ts < TIMESTAMP '2025-01-02 12:00:00'/*sqlflow_window_end*/\n"
        "union all select * from late"
        " where ts >= TIMESTAMP '2025-01-01 00:00:00'/*sqlflow_window_start*/ - interval 1 day"
        " and created > TIMESTAMP '2020-01-01 00:00:00'"
    )


def test_substitute_window_is_repeatable() -> None:
    # Each batch substitutes into the SQL of the previous one.
    first = substitute_window(compiled_model(), dt("2025-01-01"), dt("2025-01-02"))
    second = substitute_window(first, dt("2025-01-02"), dt("2025-01-03"))
    assert second == substitute_window(compiled_model(), dt("2025-01-02"), dt("2025-01-03"))


def test_substitute_window_without_markers_is_unchanged() -> None:
    sql = "select TIMESTAMP '2025-01-01 00:00:00' as ts /* sqlflow_window_start */"
    assert substitute_window(sql, dt("2024-01-01"), dt("2024-01-02")) == sql


def test_substituted_window_runs_in_duckdb() -> None:
    sql = substitute_window(
        "select count(*) from range(TIMESTAMP '2025-01-01', TIMESTAMP '2025-01-10',"
        " interval 1 hour) t(ts) where ts >= "
        + window_sql(WINDOW_START_MARK, None, UNBOUNDED_START)
        + " and ts < "
        + window_sql(WINDOW_END_MARK, None, UNBOUNDED_END),
        dt("2025-01-02T06:00"),
        dt("2025-01-03"),
    )
    assert duckdb.sql(sql).fetchall() == [(18,)]


# -- time literals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "data_type", "expected"),
    [
        (dt("2025-01-02T03:04:05"), "DATE", "DATE '2025-01-02'"),
        (dt("2025-01-02T00:00:00"), "date", "DATE '2025-01-02'"),
        (dt("2025-01-02T03:04:05"), "TIMESTAMP", "TIMESTAMP '2025-01-02 03:04:05'"),
        (dt("2025-01-02T03:04:05"), None, "TIMESTAMP '2025-01-02 03:04:05'"),
        (dt("2025-01-02T03:04:05"), "TIMESTAMP_NS", "TIMESTAMP '2025-01-02 03:04:05'"),
        (
            dt("2025-01-02T03:04:05"),
            "TIMESTAMP WITH TIME ZONE",
            "TIMESTAMPTZ '2025-01-02 03:04:05+00'",
        ),
        (dt("2025-01-02T03:04:05.5"), "timestamptz", "TIMESTAMPTZ '2025-01-02 03:04:05.500000+00'"),
    ],
)
def test_time_literal(value: datetime, data_type: str | None, expected: str) -> None:
    assert time_literal(value, data_type) == expected


def test_time_literals_mean_the_utc_instant() -> None:
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'America/New_York'")
        value = dt("2025-07-01T03:30:00")
        row = con.execute(
            f"select {time_literal(value, 'DATE')}, {time_literal(value, 'TIMESTAMP')},"
            f" epoch({time_literal(value, 'TIMESTAMPTZ')})"
        ).fetchone()
    finally:
        con.close()
    assert row == (
        date(2025, 7, 1),
        value,
        value.replace(tzinfo=timezone.utc).timestamp(),
    )


# -- BufferedWrites -----------------------------------------------------------------------


class Recorder:
    """An executor on a DuckDB connection that keeps what it was sent."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.sent: list[str] = []

    def __call__(self, sql: str) -> list[tuple]:
        self.sent.append(sql)
        cursor = self.con.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("create table t (id integer, v varchar)")
    connection.execute("insert into t values (1, 'a'), (2, 'b')")
    yield connection
    connection.close()


def table(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("select id, v from t order by id").fetchall()


def test_writes_are_held_until_a_read(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    assert run("insert into t values (3, 'c');") == []
    assert run("  UPDATE t set v = 'B' where id = 2") == []
    assert run("\ndelete from t where id = 1") == []
    assert recorder.sent == []
    assert table(con) == [(1, "a"), (2, "b")]
    assert run.pending == [
        "insert into t values (3, 'c')",
        "UPDATE t set v = 'B' where id = 2",
        "delete from t where id = 1",
    ]
    # A read runs the held writes first, as one script, then itself.
    assert run("select id, v from t order by id") == [(2, "B"), (3, "c")]
    assert recorder.sent == [
        "insert into t values (3, 'c');\n"
        "UPDATE t set v = 'B' where id = 2;\n"
        "delete from t where id = 1",
        "select id, v from t order by id",
    ]
    assert run.pending == []


def test_any_other_statement_flushes_first(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    run("insert into t values (3, 'c')")
    run("create table u as select * from t")
    assert recorder.sent == ["insert into t values (3, 'c')", "create table u as select * from t"]
    assert con.execute("select count(*) from u").fetchall() == [(3,)]


def test_flush_sends_one_script_and_nothing_when_empty(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    run.flush()
    assert recorder.sent == []
    for i in range(3, 8):
        run(f"insert into t values ({i}, 'x{i}')")
    run.flush()
    assert len(recorder.sent) == 1
    assert recorder.sent[0].count(";\n") == 4
    assert table(con) == [(1, "a"), (2, "b"), *((i, f"x{i}") for i in range(3, 8))]
    run.flush()
    assert len(recorder.sent) == 1


def test_buffered_writes_share_the_transaction(con: duckdb.DuckDBPyConnection) -> None:
    run = BufferedWrites(Recorder(con))
    con.execute("begin")
    run("insert into t values (3, 'c')")
    run("delete from t where id = 1")
    run.flush()
    assert table(con) == [(2, "b"), (3, "c")]
    con.execute("rollback")
    assert table(con) == [(1, "a"), (2, "b")]


def test_failed_script_raises_and_is_not_resent(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    run("insert into t values (3, 'c')")
    run("insert into missing_table values (1)")
    with pytest.raises(duckdb.CatalogException, match="missing_table"):
        run("select 1")
    assert run.pending == []


# -- ModelLoad figures --------------------------------------------------------------------


def model_load(**raw: object) -> ModelLoad:
    config = SqlflowConfig.parse(MODEL, raw)
    return ModelLoad.create(config, '"db"."main"."events"', "incremental", [None], "inv-1")


def test_response_sums_batches() -> None:
    load = model_load(unique_key="id", event_time="event_ts")
    load.watermark_before = dt("2025-01-02T23:00:00")
    first = load.start_batch("merge", (dt("2025-01-02"), dt("2025-01-03")))
    load.add_count("updated", 3)
    load.add_count("inserted", 1)
    first.partitions_touched = 1
    first.checks = [
        CheckOutcome("not_null(id)", "error", "pass", 0, [], "0 rows"),
        CheckOutcome("row_count", "warn", "fail", 0, [], "the batch has 4 rows"),
    ]
    load.commit_batch()
    second = load.start_batch("merge", (dt("2025-01-03"), dt("2025-01-04")))
    load.add_count("inserted", 5)
    load.add_count("deleted", 2)
    load.add_count("inserted", None)
    second.partitions_touched = 2
    second.checks = [CheckOutcome("not_null(id)", "error", "pass", 0, [], "0 rows")]
    load.commit_batch()
    load.watermark_after = dt("2025-01-03T08:30:00")

    assert load.response() == SqlflowAdapterResponse(
        _message="merge: 6 inserted, 3 updated, 2 deleted",
        rows_affected=11,
        rows_inserted=6,
        rows_updated=3,
        rows_deleted=2,
        strategy="merge",
        partitions_touched=3,
        batches=2,
        watermark_before="2025-01-02T23:00:00",
        watermark_after="2025-01-03T08:30:00",
        load_ids=[first.load_id, second.load_id],
        quality_checks=[
            {"check": "not_null(id)", "severity": "error", "status": "pass", "failing_rows": 0},
            {"check": "row_count", "severity": "warn", "status": "fail", "failing_rows": 0},
            {"check": "not_null(id)", "severity": "error", "status": "pass", "failing_rows": 0},
        ],
    )
    assert len({first.load_id, second.load_id, load.id}) == 3
    assert load.current is None


def test_response_names_every_strategy_of_the_run() -> None:
    load = model_load(unique_key="id")
    load.start_batch("merge", None)
    load.add_count("updated", 1)
    load.commit_batch()
    load.start_batch("append", None)
    load.add_count("inserted", 2)
    load.commit_batch()
    response = load.response()
    assert (response.strategy, response._message) == (
        "append,merge",
        "append,merge: 2 inserted, 1 updated, 0 deleted",
    )
    assert (response.rows_affected, response.batches, response.quality_checks) == (3, 2, None)


def test_response_of_a_run_without_batches() -> None:
    response = model_load().response()
    assert response == SqlflowAdapterResponse(
        _message="noop: 0 inserted, 0 updated, 0 deleted",
        rows_affected=0,
        rows_inserted=0,
        rows_updated=0,
        rows_deleted=0,
        strategy=None,
        partitions_touched=0,
        batches=0,
        watermark_before=None,
        watermark_after=None,
        load_ids=[],
        quality_checks=None,
    )


def test_uncommitted_batch_is_not_counted() -> None:
    load = model_load()
    load.start_batch("append", None)
    load.add_count("inserted", 4)
    load.commit_batch()
    load.start_batch("append", None)
    load.add_count("inserted", 99)
    response = load.response()
    assert (response.rows_inserted, response.batches) == (4, 1)


def test_add_count_rejects_an_unknown_role_and_ignores_no_batch() -> None:
    load = model_load()
    load.add_count("inserted", 5)  # no batch open: nothing to count into
    load.start_batch("append", None)
    with pytest.raises(ValueError, match="unknown count role 'merged'"):
        load.add_count("merged", 1)
    load.commit_batch()
    assert load.response().rows_inserted == 0


def test_log_context() -> None:
    load = model_load()
    assert load.log_context() == f"[invocation_id=inv-1 model={MODEL} load_id=-]"
    batch = load.start_batch("append", None)
    assert load.log_context() == f"[invocation_id=inv-1 model={MODEL} load_id={batch.load_id}]"
    assert load.log_context("x") == f"[invocation_id=inv-1 model={MODEL} load_id=x]"


# -- the order of a batch's rows ----------------------------------------------------------

DAY_1 = (dt("2025-01-01"), dt("2025-01-02"))
DAY_2 = (dt("2025-01-02"), dt("2025-01-03"))
HOUR = (dt("2025-01-01T05:00"), dt("2025-01-01T06:00"))
WEEK = (dt("2025-01-06"), dt("2025-01-13"))


@pytest.mark.parametrize(
    ("raw", "batches", "expected"),
    [
        # Each batch lies in one day partition: written as it comes.
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [DAY_1, DAY_2], None),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [HOUR], None),
        ({"partition_by": {"field": "Event_TS", "granularity": "day"}}, [DAY_1], None),
        # A batch spanning several partitions, or a build without a window: sorted.
        (
            {"partition_by": {"field": "event_ts", "granularity": "day"}},
            [DAY_1, WEEK],
            '"event_ts"',
        ),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [None], '"event_ts"'),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [], '"event_ts"'),
        (
            {"partition_by": {"field": "event_ts", "granularity": "hour"}, "batch_size": "day"},
            [DAY_1],
            '"event_ts"',
        ),
        # Windows on another column than the partition field, and value partitions.
        (
            {
                "partition_by": {"field": "event_date", "granularity": "day"},
                "event_time": "event_ts",
            },
            [DAY_1],
            '"event_date"',
        ),
        ({"partition_by": {"field": "region"}, "event_time": "event_ts"}, [DAY_1], '"region"'),
        # No partitions: event_time order, or none at all.
        ({"event_time": "event_ts"}, [DAY_1], '"event_ts"'),
        ({"unique_key": "id"}, [None], None),
    ],
)
def test_batch_order_by(
    raw: dict[str, object], batches: list[tuple[datetime, datetime] | None], expected: str | None
) -> None:
    assert batch_order_by(SqlflowConfig.parse(MODEL, raw), batches) == expected


def test_partitions_touched_counts_distinct_partitions() -> None:
    # Daily batches of one monthly partition touch one partition, not one per batch.
    load = model_load(partition_by={"field": "event_ts", "granularity": "month"}, batch_size="day")
    for day in ("2025-01-01", "2025-01-02", "2025-01-03"):
        batch = load.start_batch("insert_overwrite", (dt(day), dt(day) + timedelta(days=1)))
        batch.partitions_touched = 1
        batch.keys = ["2025-01"]
        load.commit_batch()
    batch = load.start_batch("insert_overwrite", (dt("2025-02-01"), dt("2025-02-02")))
    batch.partitions_touched = 1
    batch.keys = ["2025-02"]
    load.commit_batch()
    response = load.response()
    assert (response.partitions_touched, response.batches) == (2, 4)
