"""Unit tests of the state store, on real DuckDB files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlflow_testing import Recorder

from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.partitions import PartitionInfo
from dbt.adapters.sqlflow.state import CheckResult, LoadRow, StateStore

MODEL = "model.proj.fct_events"
RELATION = '"t"."main"."fct_events"'


def d(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iv(start: str, end: str) -> Interval:
    return Interval(d(start), d(end))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "t.duckdb"))
    yield connection
    connection.close()


@pytest.fixture
def store(con: duckdb.DuckDBPyConnection) -> StateStore:
    state = StateStore(Recorder(con))
    state.ensure()
    return state


def load_row(load_id: str, model: str = MODEL, **kwargs: object) -> LoadRow:
    values: dict = {
        "load_id": load_id,
        "invocation_id": "inv-1",
        "model": model,
        "relation": RELATION,
        "strategy": "merge",
        "window_start": d("2025-03-01"),
        "window_end": d("2025-03-02"),
        "started_at": d("2025-03-10 10:00"),
        "finished_at": d("2025-03-10 10:01"),
    }
    values.update(kwargs)
    return LoadRow(**values)


def snapshot(con: duckdb.DuckDBPyConnection, schema: str = "sqlflow_meta") -> dict[str, list]:
    return {
        t: sorted(con.execute(f'select * from "{schema}"."{t}"').fetchall(), key=repr)
        for t in StateStore.TABLES
    }


# -- ensure -----------------------------------------------------------------------------


def test_ensure_creates_then_is_one_query(con: duckdb.DuckDBPyConnection) -> None:
    recorder = Recorder(con)
    state = StateStore(recorder, "my meta")
    assert state.ensure() is True
    tables = con.execute(
        "select table_name from information_schema.tables where table_schema = 'my meta' order by 1"
    ).fetchall()
    assert [t[0] for t in tables] == [
        "interval_log",
        "intervals",
        "load_summaries",
        "loads",
        "partition_log",
        "partitions",
        "quality_results",
    ]
    recorder.statements.clear()
    assert state.ensure() is False
    assert len(recorder.statements) == 1


def test_ensure_recreates_a_missing_table(
    store: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute('drop table "sqlflow_meta"."quality_results"')
    assert store.ensure() is True
    assert con.execute('select count(*) from "sqlflow_meta"."quality_results"').fetchone() == (0,)


def test_ensure_with_database(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    con.execute(f"attach '{tmp_path / 'other.duckdb'}' as other")
    state = StateStore(Recorder(con), database="other")
    assert state.ensure() is True
    assert state.ensure() is False
    assert state.table("loads") == '"other"."sqlflow_meta"."loads"'
    state.record_load(load_row("a"))
    assert con.execute("select count(*) from other.sqlflow_meta.loads").fetchone() == (1,)


# The loads table as dbt-sqlflow created it before the phase columns (issue 17).
OLD_LOADS = """create table sqlflow_meta.loads (
    load_id varchar not null, invocation_id varchar, model varchar not null,
    relation varchar not null, strategy varchar not null, window_start timestamp,
    window_end timestamp, started_at timestamp not null, finished_at timestamp not null,
    status varchar not null, rows_inserted bigint, rows_updated bigint, rows_deleted bigint,
    partitions_touched integer, watermark_before varchar, watermark_after varchar)"""


def test_an_older_loads_table_reads_and_gains_the_added_columns(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    con.execute("create schema sqlflow_meta")
    con.execute(OLD_LOADS)
    con.execute(
        "insert into sqlflow_meta.loads values ('old', 'inv-1', 'model.proj.fct_events', 'rel',"
        " 'merge', '2025-03-01', '2025-03-02', '2025-03-10 10:00', '2025-03-10 10:01',"
        " 'success', 4, 0, 0, 1, null, '2025-03-01 23:00:00')"
    )
    con.execute("checkpoint")
    old = load_row("old", rows_inserted=4, partitions_touched=1, relation="rel")
    old = LoadRow(**{**old.__dict__, "watermark_after": "2025-03-01 23:00:00"})
    # Read-only, as `dbt-sqlflow intervals` opens it: the missing columns read as None.
    con.close()
    readonly = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    assert StateStore(Recorder(readonly)).loads() == [old]
    readonly.close()
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    recorder = Recorder(con)
    store = StateStore(recorder)
    # The next run adds the columns (the old row keeps nulls) and the tables that miss.
    assert store.ensure() is True
    added = [s for s in recorder.statements if s.startswith("alter table")]
    assert added == [
        f'alter table "sqlflow_meta"."loads" add column if not exists "{c}" {kind}'
        for c, kind in [
            *((f"{p}_seconds", "double") for p in ("plan", "stage", "dml", "checks", "state")),
            ("commit_seconds", "double"),
            ("peak_memory_bytes", "bigint"),
            ("spilled_bytes", "bigint"),
            ("retries", "integer"),
            ("retry_reasons", "varchar"),
        ]
    ]
    recorder.statements.clear()
    assert store.ensure() is False and len(recorder.statements) == 1
    new = load_row(
        "new",
        started_at=d("2025-03-11 10:00"),
        plan_seconds=0.5,
        dml_seconds=2.0,
        peak_memory_bytes=3 << 30,
        spilled_bytes=0,
        retries=2,
        retry_reasons="out_of_memory,conflict",
    )
    store.record_load(new)
    store.record_phase_times({"new": (0.25, 0.125)}, since=d("2025-03-11 10:00"))
    timed = LoadRow(**{**new.__dict__, "state_seconds": 0.25, "commit_seconds": 0.125})
    assert store.loads() == [old, timed]
    store.record_phase_times({}, since=d("2025-03-11"))  # nothing to write
    con.close()


def test_new_load_id() -> None:
    ids = {StateStore.new_load_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# -- loads ------------------------------------------------------------------------------


def test_record_and_read_loads(store: StateStore) -> None:
    first = load_row(
        "a", rows_inserted=10, partitions_touched=1, watermark_after="2025-03-01 23:00:00"
    )
    second = load_row(
        "b",
        status="warn",
        window_start=d("2025-03-02"),
        window_end=d("2025-03-03"),
        started_at=d("2025-03-10 10:01"),
        finished_at=d("2025-03-10 10:02"),
        rows_updated=3,
        rows_deleted=2,
        watermark_before="2025-03-01 23:00:00",
    )
    other = load_row(
        "c", model="model.proj.other", invocation_id="inv-2", window_start=None, window_end=None
    )
    for row in (second, other, first):
        store.record_load(row)
    assert store.loads(MODEL) == [first, second]
    assert store.loads(invocation_id="inv-2") == [other]
    assert len(store.loads()) == 3
    assert store.last_load(MODEL) == second
    assert store.last_load("model.proj.none") is None


def test_record_load_rejects_status(store: StateStore) -> None:
    with pytest.raises(
        ValueError, match=r"has status 'error': a recorded load is one of success, warn"
    ):
        store.record_load(load_row("a", status="error"))


def test_literals_are_escaped(store: StateStore) -> None:
    model = 'model.p.it\'s "quoted"; drop table x; --'
    store.record_load(load_row("a'b", model=model, strategy="o'neil"))
    assert store.loads(model)[0].load_id == "a'b"
    store.add_interval(model, "rel'x", iv("2025-01-01", "2025-01-02"), "a'b")
    assert store.loaded_intervals(model) == [iv("2025-01-01", "2025-01-02")]
    store.upsert_partitions("rel'x", [PartitionInfo(key="it's")])
    assert [p.key for p in store.partitions("rel'x", keys=["it's"])] == ["it's"]


# -- intervals --------------------------------------------------------------------------


def test_intervals_merge_on_read_and_compact_on_write(store: StateStore) -> None:
    for day in ("2025-03-01", "2025-03-02", "2025-03-04"):
        start = d(day)
        store.add_interval(
            MODEL, RELATION, Interval(start, start.replace(day=start.day + 1)), f"l{day}"
        )
    assert store.loaded_intervals(MODEL) == [
        iv("2025-03-01", "2025-03-03"),
        iv("2025-03-04", "2025-03-05"),
    ]
    # A reload of [1st, 3rd) replaces the two rows it covers.
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-03"), "reload")
    rows = store.interval_rows(MODEL)
    assert [(r.interval, r.load_id) for r in rows] == [
        (iv("2025-03-01", "2025-03-03"), "reload"),
        (iv("2025-03-04", "2025-03-05"), "l2025-03-04"),
    ]
    assert store.loaded_intervals("model.proj.other") == []


def test_invalidate(store: StateStore) -> None:
    store.add_interval(
        MODEL, RELATION, iv("2025-03-01", "2025-03-05"), "a", loaded_at=d("2025-03-05 01:00")
    )
    store.add_interval(MODEL, RELATION, iv("2025-03-05", "2025-03-10"), "b")
    store.add_interval("model.proj.other", RELATION, iv("2025-03-01", "2025-03-10"), "c")
    removed = store.invalidate(MODEL, iv("2025-03-03", "2025-03-07"))
    assert removed == [iv("2025-03-03", "2025-03-07")]
    assert store.loaded_intervals(MODEL) == [
        iv("2025-03-01", "2025-03-03"),
        iv("2025-03-07", "2025-03-10"),
    ]
    first = store.interval_rows(MODEL)[0]
    assert (first.load_id, first.loaded_at, first.relation) == (
        "a",
        d("2025-03-05 01:00"),
        RELATION,
    )
    # Other models untouched; invalidating an unloaded range changes nothing.
    assert store.loaded_intervals("model.proj.other") == [iv("2025-03-01", "2025-03-10")]
    assert store.invalidate(MODEL, iv("2025-04-01", "2025-04-02")) == []
    # Partly loaded range: only the loaded part is reported.
    assert store.invalidate(MODEL, iv("2025-03-09", "2025-03-20")) == [
        iv("2025-03-09", "2025-03-10")
    ]
    assert store.loaded_intervals(MODEL) == [
        iv("2025-03-01", "2025-03-03"),
        iv("2025-03-07", "2025-03-09"),
    ]


def test_invalidate_inside_one_row(store: StateStore) -> None:
    store.add_interval(MODEL, RELATION, iv("2025-01-01", "2026-01-01"), "year")
    store.invalidate(MODEL, iv("2025-06-01 12:00", "2025-06-02"))
    assert store.loaded_intervals(MODEL) == [
        iv("2025-01-01", "2025-06-01 12:00"),
        iv("2025-06-02", "2026-01-01"),
    ]
    assert {r.load_id for r in store.interval_rows(MODEL)} == {"year"}


# -- partitions -------------------------------------------------------------------------


def part(key: str, rows: int = 1, load: str | None = "l1") -> PartitionInfo:
    start = d(key)
    return PartitionInfo(
        key=key,
        range_start=start,
        range_end=start.replace(day=start.day + 1),
        row_count=rows,
        min_value=f"{key} 00:00:00",
        max_value=f"{key} 23:00:00",
        last_load_id=load,
        last_loaded_at=d("2025-03-10 10:00") if load else None,
    )


def test_partitions_upsert_read_delete(store: StateStore) -> None:
    store.upsert_partitions(RELATION, [part("2025-03-02"), part("2025-03-01")])
    store.upsert_partitions("other", [part("2025-03-01", 7)])
    assert store.partitions(RELATION) == [part("2025-03-01"), part("2025-03-02")]
    store.upsert_partitions(RELATION, [part("2025-03-02", 5, "l2"), part("2025-03-03", 0, None)])
    assert store.partitions(RELATION) == [
        part("2025-03-01"),
        part("2025-03-02", 5, "l2"),
        part("2025-03-03", 0, None),
    ]
    assert store.partitions(RELATION, keys=["2025-03-03", "nope"]) == [part("2025-03-03", 0, None)]
    assert store.partitions(RELATION, keys=[]) == []
    store.delete_partitions(RELATION, ["2025-03-01", "2025-03-03", "nope"])
    assert store.partitions(RELATION) == [part("2025-03-02", 5, "l2")]
    assert store.partitions("other") == [part("2025-03-01", 7)]


def test_value_partitions_round_trip(store: StateStore) -> None:
    infos = [
        PartitionInfo(key="eu", row_count=3, min_value="eu", max_value="eu"),
        PartitionInfo(key="__null__"),
    ]
    store.upsert_partitions(RELATION, infos)
    assert store.partitions(RELATION) == sorted(infos, key=lambda p: p.key)


def test_many_partitions_in_chunks(store: StateStore) -> None:
    infos = [PartitionInfo(key=f"k{i:05d}", row_count=i) for i in range(1234)]
    store.upsert_partitions(RELATION, infos)
    store.upsert_partitions(RELATION, infos)
    got = store.partitions(RELATION)
    assert len(got) == 1234
    assert sum(p.row_count for p in got) == sum(range(1234))


# -- quality ----------------------------------------------------------------------------


@dataclass
class Outcome:
    check_name: str
    severity: str
    status: str
    failing_rows: int
    sample: object


def test_record_checks(store: StateStore) -> None:
    at = d("2025-03-10 10:00")
    outcomes = [
        Outcome("not_null_id", "error", "pass", 0, None),
        {
            "check_name": "unique_id",
            "severity": "warn",
            "status": "warn",
            "failing_rows": 2,
            "sample": [{"id": 1}],
        },
        {
            "check_name": "fresh",
            "severity": "warn",
            "status": "pass",
            "failing_rows": None,
            "sample": "text",
        },
    ]
    assert store.record_checks("l1", MODEL, outcomes, checked_at=at) == 3
    assert store.record_checks("l1", MODEL, []) == 0
    got = store.check_results(model=MODEL)
    assert got == [
        CheckResult("l1", MODEL, "fresh", "warn", "pass", None, "text", at),
        CheckResult("l1", MODEL, "not_null_id", "error", "pass", 0, None, at),
        CheckResult("l1", MODEL, "unique_id", "warn", "warn", 2, '[{"id": 1}]', at),
    ]
    assert store.check_results(load_id="other") == []


def test_record_checks_rejects_nameless(store: StateStore) -> None:
    with pytest.raises(ValueError, match="has no check_name"):
        store.record_checks("l1", MODEL, [{"status": "pass"}])


# -- full refresh -----------------------------------------------------------------------


def test_forget_model(store: StateStore) -> None:
    store.record_load(load_row("a"))
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-02"), "a")
    store.add_interval("model.proj.other", "other", iv("2025-03-01", "2025-03-02"), "b")
    store.upsert_partitions(RELATION, [part("2025-03-01")])
    store.upsert_partitions("other", [part("2025-03-01")])
    store.forget_model(MODEL, RELATION)
    assert store.loaded_intervals(MODEL) == []
    assert store.partitions(RELATION) == []
    assert store.loaded_intervals("model.proj.other") != []
    assert store.partitions("other") != []
    assert len(store.loads(MODEL)) == 1  # history stays


# -- transactions -----------------------------------------------------------------------


def test_rollback_leaves_tables_exactly_as_before(
    store: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    store.record_load(load_row("base"))
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-05"), "base")
    store.upsert_partitions(RELATION, [part("2025-03-01"), part("2025-03-02")])
    store.record_checks("base", MODEL, [{"check_name": "c", "status": "pass"}])
    before = snapshot(con)

    con.execute("begin transaction")
    store.ensure()
    store.record_load(load_row("new"))
    store.add_interval(MODEL, RELATION, iv("2025-03-05", "2025-03-06"), "new")
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-06"), "new")
    store.invalidate(MODEL, iv("2025-03-02", "2025-03-03"))
    store.upsert_partitions(RELATION, [part("2025-03-02", 99, "new"), part("2025-03-03")])
    store.delete_partitions(RELATION, ["2025-03-01"])
    store.record_checks("new", MODEL, [{"check_name": "c", "status": "fail", "failing_rows": 1}])
    store.forget_model(MODEL, RELATION)
    assert snapshot(con) != before
    con.execute("rollback")

    assert snapshot(con) == before


def test_rollback_of_first_ensure_leaves_no_schema(con: duckdb.DuckDBPyConnection) -> None:
    state = StateStore(Recorder(con))
    con.execute("begin transaction")
    state.ensure()
    state.record_load(load_row("a"))
    con.execute("rollback")
    schemas = con.execute(
        "select count(*) from information_schema.schemata where schema_name = 'sqlflow_meta'"
    ).fetchone()
    assert schemas == (0,)
    assert state.ensure() is True  # nothing cached: created again


def test_state_persists_in_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "t.duckdb")
    con = duckdb.connect(path)
    state = StateStore(lambda sql: con.execute(sql).fetchall())
    state.ensure()
    state.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-02"), "a")
    con.close()
    con = duckdb.connect(path)
    state = StateStore(lambda sql: con.execute(sql).fetchall())
    assert state.ensure() is False
    assert state.loaded_intervals(MODEL) == [iv("2025-03-01", "2025-03-02")]
    con.close()


def test_a_reload_cuts_the_rows_it_overlaps(store: StateStore) -> None:
    # Stored rows stay disjoint: each instant maps to the load that last covered it.
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-10"), "a")
    store.add_interval(MODEL, RELATION, iv("2025-03-08", "2025-03-12"), "b")
    store.add_interval(MODEL, RELATION, iv("2025-03-03", "2025-03-04"), "c")
    assert [(r.interval, r.load_id) for r in store.interval_rows(MODEL)] == [
        (iv("2025-03-01", "2025-03-03"), "a"),
        (iv("2025-03-03", "2025-03-04"), "c"),
        (iv("2025-03-04", "2025-03-08"), "a"),
        (iv("2025-03-08", "2025-03-12"), "b"),
    ]
    assert store.loaded_intervals(MODEL) == [iv("2025-03-01", "2025-03-12")]


DAYS = st.integers(min_value=0, max_value=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(DAYS, st.integers(min_value=1, max_value=10)), min_size=1, max_size=8))
def test_written_rows_are_disjoint_and_record_the_last_load(spans: list[tuple[int, int]]) -> None:
    con = duckdb.connect()
    store = StateStore(Recorder(con))
    store.ensure()
    base = d("2025-03-01")
    last: dict[int, str] = {}  # hour of the range -> the load that covered it last
    for i, (start, length) in enumerate(spans):
        lo, hi = base + timedelta(hours=start), base + timedelta(hours=start + length)
        store.add_interval(MODEL, RELATION, Interval(lo, hi), f"l{i}")
        last.update({h: f"l{i}" for h in range(start, start + length)})
    rows = store.interval_rows(MODEL)
    stored = {}
    for row in rows:
        hours = range(
            int((row.interval.start - base) / timedelta(hours=1)),
            int((row.interval.end - base) / timedelta(hours=1)),
        )
        for h in hours:
            assert h not in stored, f"hour {h} stored twice: {rows}"
            stored[h] = row.load_id
    assert stored == last
    con.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(DAYS, st.integers(min_value=1, max_value=10), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_the_intervals_view_shows_what_interval_rows_reads(
    steps: list[tuple[int, int, bool]],
) -> None:
    # The view (for users and the CLI) lays the log out in SQL as interval_rows does in
    # Python: loads and invalidations in any order give the same rows.
    con = duckdb.connect()
    store = StateStore(Recorder(con))
    store.ensure()
    base = d("2025-03-01")
    for i, (start, length, load) in enumerate(steps):
        window = Interval(base + timedelta(hours=start), base + timedelta(hours=start + length))
        if load:
            store.add_interval(MODEL, RELATION, window, f"l{i}", loaded_at=base)
        else:
            store.invalidate(MODEL, window)
    store.add_interval("model.proj.other", RELATION, iv("2025-03-01", "2025-03-02"), "o")
    view = con.execute(
        "select interval_start, interval_end, relation, load_id, loaded_at"
        f" from sqlflow_meta.intervals where model = '{MODEL}' order by interval_start"
    ).fetchall()
    python = [
        (r.interval.start, r.interval.end, r.relation, r.load_id, r.loaded_at)
        for r in store.interval_rows(MODEL)
    ]
    assert view == python
    con.close()


def test_state_writes_only_insert(store: StateStore) -> None:
    # Models load at once; on DuckLake a DELETE (or UPDATE) of a state table another
    # transaction inserted into fails to commit. Every write of a batch is an INSERT.
    recorder = store.executor
    assert isinstance(recorder, Recorder)
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-05"), "a")
    recorder.statements.clear()
    store.record_load(load_row("b"))
    store.add_interval(MODEL, RELATION, iv("2025-03-04", "2025-03-06"), "b")
    store.invalidate(MODEL, iv("2025-03-02", "2025-03-03"))
    store.upsert_partitions(RELATION, [part("2025-03-04"), part("2025-03-05")])
    store.delete_partitions(RELATION, ["2025-03-04"])
    store.record_checks("b", MODEL, [{"check_name": "c", "status": "pass"}])
    store.forget_model(MODEL, RELATION)
    writes = [s.split()[0].lower() for s in recorder.statements if not s.startswith("select")]
    assert set(writes) == {"insert"}


def test_an_older_sqlflows_tables_move_into_the_logs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema sqlflow_meta")
    con.execute(
        "create table sqlflow_meta.intervals (model varchar not null, relation varchar,"
        " interval_start timestamp not null, interval_end timestamp not null,"
        " load_id varchar, loaded_at timestamp)"
    )
    con.execute(
        f"insert into sqlflow_meta.intervals values ('{MODEL}', 'r', '2025-03-01', '2025-03-02',"
        f" 'a', '2025-03-02'), ('{MODEL}', 'r', '2025-03-02', '2025-03-03', 'b', null)"
    )
    con.execute(
        "create table sqlflow_meta.partitions (relation varchar not null, partition_key varchar"
        " not null, range_start timestamp, range_end timestamp, row_count bigint not null,"
        " min_value varchar, max_value varchar, last_load_id varchar, last_loaded_at timestamp)"
    )
    con.execute(
        "insert into sqlflow_meta.partitions (relation, partition_key, row_count)"
        " values ('r', 'k', 3)"
    )
    store = StateStore(Recorder(con))
    assert store.ensure() is True
    assert [(r.interval, r.load_id) for r in store.interval_rows(MODEL)] == [
        (iv("2025-03-01", "2025-03-02"), "a"),
        (iv("2025-03-02", "2025-03-03"), "b"),
    ]
    assert store.partitions("r") == [PartitionInfo(key="k", row_count=3)]
    kinds = dict(
        con.execute(
            "select table_name, table_type from information_schema.tables"
            " where table_schema = 'sqlflow_meta'"
        ).fetchall()
    )
    assert kinds["intervals"] == kinds["partitions"] == "VIEW"
    assert store.ensure() is False


def test_compact_keeps_the_current_rows(store: StateStore, con: duckdb.DuckDBPyConnection) -> None:
    store.add_interval(MODEL, RELATION, iv("2025-03-01", "2025-03-10"), "a")
    store.add_interval(MODEL, RELATION, iv("2025-03-08", "2025-03-12"), "b")
    store.invalidate(MODEL, iv("2025-03-03", "2025-03-04"))
    store.upsert_partitions(RELATION, [part("2025-03-01"), part("2025-03-02")])
    store.upsert_partitions(RELATION, [part("2025-03-02", 5, "l2")])
    store.delete_partitions(RELATION, ["2025-03-01"])
    rows, partitions = store.interval_rows(MODEL), store.partitions(RELATION)
    # Three interval events give three rows (one cut in two, one cleared); four partition
    # rows give one.
    assert store.compact() == 3
    assert store.interval_rows(MODEL) == rows
    assert store.partitions(RELATION) == partitions == [part("2025-03-02", 5, "l2")]
    assert con.execute("select count(*) from sqlflow_meta.interval_log").fetchone() == (3,)
    assert store.compact() == 0


# -- bounded history ---------------------------------------------------------------------


def test_compact_loads_folds_the_oldest_into_one_summary(
    con: duckdb.DuckDBPyConnection,
) -> None:
    recorder = Recorder(con)
    store = StateStore(recorder)
    store.ensure()
    start = d("2025-03-01")
    for i in range(10):
        store.record_load(
            load_row(
                f"l{i:02}",
                window_start=start + timedelta(days=i),
                window_end=start + timedelta(days=i + 1),
                started_at=d("2025-03-10 10:00") + timedelta(minutes=i),
                finished_at=d("2025-03-10 10:00") + timedelta(minutes=i, seconds=i + 1),
                # Every third load is an empty window; the others write 10 * i rows.
                rows_inserted=0 if i % 3 == 0 else 10 * i,
                rows_updated=1 if i % 3 else 0,
                dml_seconds=0.5,
                peak_memory_bytes=1000 * i,
                spilled_bytes=5 if i == 4 else 0,
                retries=1 if i == 5 else 0,
                retry_reasons="out_of_memory" if i == 5 else None,
            )
        )
    store.record_load(load_row("other", model="model.proj.other"))
    now = d("2025-03-11")
    recorder.statements.clear()
    # 10 loads: within keep + slack nothing happens, in one count.
    assert store.compact_loads(MODEL, 4, slack=6, now=now) == 0
    assert len(recorder.statements) == 1 and store.load_summaries(MODEL) == []
    # Over it: the 6 oldest (l00..l05) are folded, the 4 newest stay.
    assert store.compact_loads(MODEL, 4, slack=5, now=now) == 6
    assert [x.load_id for x in store.loads(MODEL)] == ["l06", "l07", "l08", "l09"]
    assert [x.load_id for x in store.loads("model.proj.other")] == ["other"]
    [summary] = store.load_summaries(MODEL)
    assert summary == {
        "model": MODEL,
        "relation": RELATION,
        "summarized_at": now,
        "first_started_at": d("2025-03-10 10:00"),
        "last_finished_at": d("2025-03-10 10:05:06"),
        "window_start": d("2025-03-01"),
        "window_end": d("2025-03-07"),
        "loads": 6,
        "batches": 4,  # l01, l02, l04, l05 wrote rows
        "rows_inserted": 10 + 20 + 40 + 50,
        "rows_updated": 4,
        "rows_deleted": 0,
        "batch_seconds": 2.0 + 3 + 5 + 6,
        "median_batch_seconds": 4.0,
        "median_batch_rows": (21 + 41) / 2,
        "plan_seconds": None,
        "stage_seconds": None,
        "dml_seconds": 3.0,
        "checks_seconds": None,
        "state_seconds": None,
        "commit_seconds": None,
        "max_peak_memory_bytes": 5000,
        "spilled_batches": 1,
        "spilled_bytes": 5,
        "retries": 1,
        "out_of_memory_retries": 1,
    }
    # Folded once: a second compaction folds only what is new beyond keep.
    assert store.compact_loads(MODEL, 4, now=now) == 0
    assert store.compact_loads(MODEL, 2, now=now) == 2
    assert [s["loads"] for s in store.load_summaries(MODEL)] == [6, 2]
