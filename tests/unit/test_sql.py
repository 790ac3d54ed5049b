"""sql.py: window SQL, time literals and buffered state writes (on real DuckDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
from sqlflow_testing import Recorder

from dbt.adapters.sqlflow.sql import (
    JSON_ROWS,
    UNBOUNDED_END,
    UNBOUNDED_START,
    WINDOW_END_MARK,
    WINDOW_START_MARK,
    BufferedWrites,
    RowInsert,
    as_naive,
    fill_template,
    json_value,
    merge_inserts,
    quote_identifier,
    sql_literal,
    sql_string,
    substitute_window,
    time_literal,
    truncate_sql,
    utc_expr,
    window_literals_in,
    window_sql,
)

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
        value.replace(tzinfo=UTC).timestamp(),
    )


# -- BufferedWrites -----------------------------------------------------------------------


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
    assert recorder.statements == []
    assert table(con) == [(1, "a"), (2, "b")]
    assert run.pending == [
        "insert into t values (3, 'c')",
        "UPDATE t set v = 'B' where id = 2",
        "delete from t where id = 1",
    ]
    # A read runs the held writes first, as one script, then itself.
    assert run("select id, v from t order by id") == [(2, "B"), (3, "c")]
    assert recorder.statements == [
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
    assert recorder.statements == [
        "insert into t values (3, 'c')",
        "create table u as select * from t",
    ]
    assert con.execute("select count(*) from u").fetchall() == [(3,)]


def test_flush_sends_one_script_and_nothing_when_empty(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    run.flush()
    assert recorder.statements == []
    for i in range(3, 8):
        run(f"insert into t values ({i}, 'x{i}')")
    run.flush()
    assert len(recorder.statements) == 1
    assert recorder.statements[0].count(";\n") == 4
    assert table(con) == [(1, "a"), (2, "b"), *((i, f"x{i}") for i in range(3, 8))]
    run.flush()
    assert len(recorder.statements) == 1


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


# -- literals and quoting (one owner: sql.py) ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "NULL"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (1.5, "1.5"),
        (2.5, "2.5"),
        ("placed", "'placed'"),
        ("it's", "'it''s'"),
        (datetime(2025, 3, 4, 5, 6, 7, 500000), "TIMESTAMP '2025-03-04 05:06:07.500000'"),
        (datetime(2024, 1, 2, 3, 4), "TIMESTAMP '2024-01-02 03:04:00'"),
        # an aware datetime is the same instant in UTC
        (
            datetime(2025, 3, 4, 6, 0, tzinfo=timezone(timedelta(hours=1))),
            "TIMESTAMP '2025-03-04 05:00:00'",
        ),
        (date(2025, 3, 4), "DATE '2025-03-04'"),
    ],
)
def test_sql_literal(value: object, expected: str) -> None:
    assert sql_literal(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), ["a"], {"a": 1}])
def test_sql_literal_rejects_what_sql_cannot_say(value: object) -> None:
    # NaN is not NULL: embedding it as NULL would change what a check or a row means.
    with pytest.raises(ValueError, match="cannot embed"):
        sql_literal(value)


@pytest.mark.parametrize(
    ("name", "sql"),
    [
        ("id", '"id"'),
        ('we"ird', '"we""ird"'),
        ("Mixed Case", '"Mixed Case"'),
        ('my "col"', '"my ""col"""'),
    ],
)
def test_quote_identifier(name: str, sql: str) -> None:
    assert quote_identifier(name) == sql


def test_sql_string() -> None:
    assert sql_string("a'b''c") == "'a''b''''c'"


def test_literals_round_trip_through_duckdb() -> None:
    con = duckdb.connect()
    values = [None, True, 3, 1.5, "it's", datetime(2025, 3, 4, 5, 6, 7, 500000), date(2025, 3, 4)]
    row = con.execute("select " + ", ".join(sql_literal(v) for v in values)).fetchone()
    assert list(row or ()) == values


def test_inserts_of_one_table_merge_between_other_statements() -> None:
    statements = [
        "insert into t (id, v) values\n(3, 'c')",
        "insert into u (n) values (1)",
        "INSERT INTO t (id, v) VALUES (4, 'd), (x')",
        "insert into t (id, v) values\n(5, 'e'),\n(6, 'f')",
        "delete from t where id = 1",
        "insert into t (id, v) values (7, 'g')",
        "insert into t values (8, 'h')",
        "insert into t (id, v) values (9, 'i') on conflict do nothing",
        "insert into u (n) select 2",
    ]
    merged = merge_inserts(statements)
    assert merged == [
        "insert into t (id, v) values\n(3, 'c'),\n(5, 'e'),\n(6, 'f')",
        "insert into u (n) values (1)",
        "INSERT INTO t (id, v) VALUES (4, 'd), (x')",
        "delete from t where id = 1",
        "insert into t (id, v) values (7, 'g')",
        "insert into t values (8, 'h')",
        "insert into t (id, v) values (9, 'i') on conflict do nothing",
        "insert into u (n) select 2",
    ]
    # The same rows as the statements one by one.
    results = []
    for script in (statements, merged):
        con = duckdb.connect()
        con.execute("create table t (id integer primary key, v varchar)")
        con.execute("create table u (n integer)")
        con.execute("insert into t values (1, 'a')")
        for statement in script:
            con.execute(statement)
        results.append(
            (
                con.execute("select * from t order by id").fetchall(),
                con.execute("select * from u order by n").fetchall(),
            )
        )
    assert results[0] == results[1]
    assert [r[0] for r in results[0][0]] == [3, 4, 5, 6, 7, 8, 9]


def test_flush_merges_the_inserts_it_holds(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    run = BufferedWrites(recorder)
    for i in range(3, 6):
        run(f"insert into t (id, v) values ({i}, 'x{i}')")
    run.flush()
    assert recorder.statements == ["insert into t (id, v) values (3, 'x3'),\n(4, 'x4'),\n(5, 'x5')"]
    assert table(con)[2:] == [(3, "x3"), (4, "x4"), (5, "x5")]


# -- held rows: VALUES for a few, one JSON text for many --------------------------------------


ODD_VALUES = [
    None,
    True,
    -(2**62),
    2.5,
    'it\'s "quoted", ünïcode, ; and a\nnewline',
    datetime(2025, 1, 2, 3, 4, 5, 678901),
    datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    date(2025, 2, 28),
]
ODD_TYPES = ("VARCHAR", "BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP", "TIMESTAMP", "DATE")


def odd_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create table odd (a varchar, b boolean, c bigint, d double, e varchar, f timestamp,"
        " g timestamp, h date)"
    )


@pytest.mark.parametrize("count", [1, JSON_ROWS - 1, JSON_ROWS, 300])
def test_held_rows_are_written_as_literal_inserts_would_write_them(count: int) -> None:
    rows = [
        [f"row {i}" if j == 0 else v for j, v in enumerate(ODD_VALUES)]
        if i % 3
        else [None] * len(ODD_VALUES)
        for i in range(count)
    ]
    columns = ("a", "b", "c", "d", "e", "f", "g", "h")
    written = []
    for held in (False, True):
        con = duckdb.connect()
        odd_table(con)
        recorder = Recorder(con)
        run = BufferedWrites(recorder)
        if held:
            half = count // 2
            run.insert_rows("odd", columns, ODD_TYPES, rows[:half])
            run.insert_rows("odd", columns, ODD_TYPES, rows[half:])
            run.flush()
            # One INSERT for the table; JSON from JSON_ROWS rows on.
            assert len(recorder.statements) == 1
            assert ("from_json" in recorder.statements[0]) == (count >= JSON_ROWS)
        else:
            for row in rows:
                con.execute(f"insert into odd values ({', '.join(sql_literal(v) for v in row)})")
        written.append(con.execute("select * from odd order by rowid").fetchall())
    assert written[0] == written[1]
    assert len(written[1]) == count


def test_held_rows_keep_their_place_around_deletes(con: duckdb.DuckDBPyConnection) -> None:
    run = BufferedWrites(Recorder(con))
    run.insert_rows("t", ("id", "v"), ("INTEGER", "VARCHAR"), [[i, f"x{i}"] for i in range(3, 13)])
    run("delete from t where id < 5")
    run.insert_rows("t", ("id", "v"), ("INTEGER", "VARCHAR"), [[1, "again"]])
    run.flush()
    assert table(con) == [(1, "again"), *((i, f"x{i}") for i in range(5, 13))]


@pytest.mark.parametrize(("bad", "named"), [(float("nan"), "nan"), ([1], "list")])
def test_held_rows_refuse_what_json_value_refuses(bad: Any, named: str) -> None:
    rows = [[i, "x"] for i in range(JSON_ROWS)] + [[bad, "y"]]
    held = RowInsert("t", ("a", "b"), ("DOUBLE", "VARCHAR"), rows)
    with pytest.raises(ValueError, match=named):
        held.sql()


def test_json_value_refuses_what_sql_literal_refuses() -> None:
    with pytest.raises(ValueError, match="nan"):
        json_value(float("nan"))
    with pytest.raises(ValueError, match="list"):
        json_value([1])


def test_window_bounds_in_a_template_take_the_batch_literals() -> None:
    start = window_sql(WINDOW_START_MARK, None, UNBOUNDED_START)
    end = window_sql(WINDOW_END_MARK, None, UNBOUNDED_END)
    predicate = f"d.born >= {start} - interval 2 day and d.born < {end}"
    filled = fill_template(f"delete from t as d where {predicate}", ("DATE '2025-01-07'", "x"))
    assert filled == (
        f"delete from t as d where d.born >= DATE '2025-01-07'{WINDOW_START_MARK}"
        f" - interval 2 day and d.born < x{WINDOW_END_MARK}"
    )
    assert window_literals_in("no bounds", ("a", "b")) == "no bounds"


# -- unit starts ---------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["hour", "day", "week", "month", "year"])
@pytest.mark.parametrize(
    ("column", "data_type"),
    [("ts", "TIMESTAMP"), ("tz", "TIMESTAMP WITH TIME ZONE"), ("d", "DATE")],
)
def test_truncate_sql_is_date_trunc_of_the_utc_time(unit: str, column: str, data_type: str) -> None:
    con = duckdb.connect()
    con.execute("set timezone = 'America/New_York'")
    con.execute(
        "create table t as select ts, ts::timestamptz as tz, ts::date as d from (values"
        " (timestamp '2025-01-01 00:00:00'), (timestamp '2024-12-31 23:59:59.999999'),"
        " (timestamp '2025-03-09 02:30:00'), (timestamp '2025-07-15 13:45:10'),"
        " (null::timestamp)) as v(ts)"
    )
    value = utc_expr(column, data_type)
    found = con.execute(
        f"select {truncate_sql(unit, value)}, date_trunc('{unit}', {value}) from t"
    ).fetchall()
    assert [as_naive(a) for a, _ in found] == [as_naive(b) for _, b in found]
    assert all(a is None for a, b in found if b is None)
