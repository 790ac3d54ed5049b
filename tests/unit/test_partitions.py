"""Unit tests of partition math and the partition manager, on real DuckDB files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlflow_testing import Recorder

from dbt.adapters.sqlflow.intervals import GRANULARITIES, Interval, add_units, truncate
from dbt.adapters.sqlflow.partitions import (
    NULL_KEY,
    ConsistencyReport,
    PartitionInfo,
    PartitionManager,
    PartitionSpec,
    covering_range,
    partition_key,
    partition_keys,
    partition_range,
)
from dbt.adapters.sqlflow.state import StateStore

REL = '"t"."main"."fct_events"'


def d(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iv(start: str, end: str) -> Interval:
    return Interval(d(start), d(end))


# -- keys and ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "granularity", "key", "start", "end"),
    [
        ("2025-03-04 05:59:59", "hour", "2025-03-04T05", "2025-03-04 05:00", "2025-03-04 06:00"),
        ("2025-12-31 23:30", "hour", "2025-12-31T23", "2025-12-31 23:00", "2026-01-01 00:00"),
        ("2025-03-04 05:00", "day", "2025-03-04", "2025-03-04", "2025-03-05"),
        ("2024-02-29 12:00", "day", "2024-02-29", "2024-02-29", "2024-03-01"),
        ("2025-03-05", "week", "2025-W10", "2025-03-03", "2025-03-10"),
        ("2024-12-31", "week", "2025-W01", "2024-12-30", "2025-01-06"),  # ISO year ahead
        ("2021-01-03", "week", "2020-W53", "2020-12-28", "2021-01-04"),  # ISO year behind
        ("2026-12-31", "week", "2026-W53", "2026-12-28", "2027-01-04"),
        ("2024-02-29", "month", "2024-02", "2024-02-01", "2024-03-01"),
        ("2025-12-15", "month", "2025-12", "2025-12-01", "2026-01-01"),
        ("2024-07-01", "year", "2024", "2024-01-01", "2025-01-01"),
    ],
)
def test_key_and_range(ts: str, granularity: str, key: str, start: str, end: str) -> None:
    assert partition_key(d(ts), granularity) == key
    assert partition_range(key, granularity) == iv(start, end)


def test_keys_round_trip_and_sort_in_time_order() -> None:
    start = datetime(2019, 12, 20)
    for g in GRANULARITIES:
        ts = [start + timedelta(hours=7 * i) for i in range(3000)]
        keys = [partition_key(t, g) for t in ts]
        assert keys == sorted(keys), g
        for t, k in zip(ts, keys, strict=True):
            rng = partition_range(k, g)
            assert rng.contains(t)
            assert rng.start == truncate(t, g)
            assert rng.end == add_units(rng.start, g, 1)


@pytest.mark.parametrize(
    ("key", "granularity"),
    [
        ("2025-03-04", "hour"),
        ("2025-3-4", "day"),
        ("2025-02-30", "day"),
        ("2025-W54", "week"),
        ("2025-03-03", "week"),
        ("2025-13", "month"),
        ("25", "year"),
    ],
)
def test_partition_range_rejects(key: str, granularity: str) -> None:
    with pytest.raises(
        ValueError, match=rf"{key!r} is not a {granularity} partition key: expected"
    ):
        partition_range(key, granularity)


@pytest.mark.parametrize(
    ("interval", "granularity", "expected"),
    [
        (("2025-03-04 10:00", "2025-03-06"), "day", ["2025-03-04", "2025-03-05"]),
        (("2025-03-04", "2025-03-06 00:00:01"), "day", ["2025-03-04", "2025-03-05", "2025-03-06"]),
        (("2024-12-28", "2025-01-08"), "week", ["2024-W52", "2025-W01", "2025-W02"]),
        (("2024-01-31", "2024-03-01"), "month", ["2024-01", "2024-02"]),
        (("2024-06-01", "2026-01-01"), "year", ["2024", "2025"]),
        (("2025-03-04 23:00", "2025-03-05 01:00"), "hour", ["2025-03-04T23", "2025-03-05T00"]),
    ],
)
def test_partition_keys(interval: tuple[str, str], granularity: str, expected: list[str]) -> None:
    assert partition_keys(iv(*interval), granularity) == expected


def test_covering_range() -> None:
    got = covering_range(["2025-03-03", "2025-03-01", "2025-03-02", "2025-03-05"], "day")
    assert got == [iv("2025-03-01", "2025-03-04"), iv("2025-03-05", "2025-03-06")]


def test_spec_normalises_type_and_checks_granularity() -> None:
    assert PartitionSpec("ts", "day", "timestamptz").field_type == "TIMESTAMP WITH TIME ZONE"
    assert (
        PartitionSpec("ts", "day", "timestamp  with time zone").field_type
        == "TIMESTAMP WITH TIME ZONE"
    )
    assert PartitionSpec("d", "day", "date").field_type == "DATE"
    assert not PartitionSpec("region").is_time
    with pytest.raises(ValueError, match="unknown granularity 'days'"):
        PartitionSpec("ts", "days")


# -- fixtures ---------------------------------------------------------------------------


def table_reads(run: Recorder) -> list[str]:
    """The statements that read the table itself (not sqlflow's state)."""
    return [s for s in run.statements if REL in s and "sqlflow_meta" not in s]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "t.duckdb"))
    yield connection
    connection.close()


@pytest.fixture
def run(con: duckdb.DuckDBPyConnection) -> Recorder:
    return Recorder(con)


@pytest.fixture
def state(run: Recorder) -> StateStore:
    store = StateStore(run)
    store.ensure()
    return store


def make_sixty_days(con: duckdb.DuckDBPyConnection) -> None:
    """60 days (2025-01-01 .. 2025-03-01) where day i holds (i % 4) + 1 hourly rows."""
    con.execute(
        f"""
        create table {REL} as
        select row_number() over (order by ts) as id, ts, region from (
            select day + to_hours(h) as ts, case when h % 2 = 0 then 'eu' else 'us' end as region
            from range(TIMESTAMP '2025-01-01', TIMESTAMP '2025-03-02', INTERVAL 1 DAY) r(day),
                 range(4) hours(h)
            where h <= datediff('day', TIMESTAMP '2025-01-01', day) % 4
        ) order by ts
        """
    )


@pytest.fixture
def sixty(con: duckdb.DuckDBPyConnection) -> str:
    make_sixty_days(con)  # the file t.duckdb is catalog "t"
    return REL


@pytest.fixture
def manager(run: Recorder, state: StateStore, sixty: str) -> PartitionManager:
    return PartitionManager(run, state, PartitionSpec("ts", "day", "TIMESTAMP"), unique_key=["id"])


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


# -- predicates and pruning ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_type", "alias", "expected"),
    [
        (
            "TIMESTAMP",
            None,
            "\"ts\" >= TIMESTAMP '2025-03-04 00:00:00'"
            " and \"ts\" < TIMESTAMP '2025-03-05 00:00:00'",
        ),
        (
            "TIMESTAMPTZ",
            "DBT_INTERNAL_DEST",
            "DBT_INTERNAL_DEST.\"ts\" >= TIMESTAMPTZ '2025-03-04 00:00:00+00'"
            " and DBT_INTERNAL_DEST.\"ts\" < TIMESTAMPTZ '2025-03-05 00:00:00+00'",
        ),
        ("DATE", "t", "t.\"ts\" >= DATE '2025-03-04' and t.\"ts\" < DATE '2025-03-05'"),
    ],
)
def test_predicate(
    field_type: str, alias: str | None, expected: str, run: Recorder, state: StateStore
) -> None:
    pm = PartitionManager(run, state, PartitionSpec("ts", "day", field_type))
    assert pm.predicate(iv("2025-03-04", "2025-03-05"), alias) == expected


def test_date_predicate_rounds_partial_days_up(run: Recorder, state: StateStore) -> None:
    pm = PartitionManager(run, state, PartitionSpec("d", "day", "DATE"))
    assert pm.predicate(iv("2025-03-04 10:00", "2025-03-06 01:00")) == (
        "\"d\" >= DATE '2025-03-05' and \"d\" < DATE '2025-03-07'"
    )


def test_value_partitions_have_no_time_predicate(run: Recorder, state: StateStore) -> None:
    pm = PartitionManager(run, state, PartitionSpec("region"))
    for call in (
        lambda: pm.predicate(iv("2025-03-04", "2025-03-05")),
        lambda: pm.prune_partitions("select 1", iv("2025-03-04", "2025-03-05")),
        lambda: pm.create_partition(REL, iv("2025-03-04", "2025-03-05")),
    ):
        with pytest.raises(ValueError, match="'region' are value partitions"):
            call()


def test_prune_partitions_runs_and_pushes_down(
    manager: PartitionManager, con: duckdb.DuckDBPyConnection
) -> None:
    window = iv("2025-01-03", "2025-01-05")
    sql = manager.prune_partitions(f"select * from {REL} -- trailing comment\n;", window)
    rows = con.execute(sql).fetchall()
    assert len(rows) == 3 + 4  # day index 2 and 3
    assert all(window.contains(r[1]) for r in rows)
    plan = "\n".join(r[1] for r in con.execute(f"explain {sql}").fetchall())
    assert "Filters:" in plan  # the range reached the table scan


def test_keys_predicate(manager: PartitionManager, con: duckdb.DuckDBPyConnection) -> None:
    pred = manager.keys_predicate(["2025-01-03", "2025-01-04", "2025-01-10"])
    assert pred.count(" or ") == 1  # two merged ranges
    assert count(con, f"select count(*) from {REL} where {pred}") == 3 + 4 + 2
    assert manager.keys_predicate([]) == "false"


# -- detect / create / refresh ------------------------------------------------------------


def test_detect_from_data_then_from_state(
    manager: PartitionManager, run: Recorder, state: StateStore
) -> None:
    infos = manager.detect_partitions(REL)
    assert len(infos) == 60
    assert infos[0] == PartitionInfo(
        key="2025-01-01",
        range_start=d("2025-01-01"),
        range_end=d("2025-01-02"),
        row_count=1,
        min_value="2025-01-01 00:00:00",
        max_value="2025-01-01 00:00:00",
    )
    assert infos[3].row_count == 4
    assert infos[3].max_value == "2025-01-04 03:00:00"
    assert infos[-1].key == "2025-03-01"
    assert state.partitions(REL) == infos  # recorded on first sight
    reads = len(table_reads(run))
    assert manager.detect_partitions(REL) == infos
    assert len(table_reads(run)) == reads  # second time from state only


def test_detect_empty_table(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute("create table empty_t (ts timestamp)")
    pm = PartitionManager(run, state, PartitionSpec("ts", "day"))
    assert pm.detect_partitions("empty_t") == []
    assert state.partitions("empty_t") == []


def test_create_partition(manager: PartitionManager, state: StateStore) -> None:
    manager.detect_partitions(REL)
    keys = manager.create_partition(REL, iv("2025-02-28 12:00", "2025-03-03"), load_id="L9")
    assert keys == ["2025-02-28", "2025-03-01", "2025-03-02"]
    recorded = {p.key: p for p in state.partitions(REL)}
    assert len(recorded) == 61
    assert recorded["2025-02-28"].row_count == 3  # existing: untouched
    assert recorded["2025-02-28"].last_load_id is None
    new = recorded["2025-03-02"]
    assert (new.row_count, new.range_start, new.range_end, new.last_load_id) == (
        0,
        d("2025-03-02"),
        d("2025-03-03"),
        "L9",
    )
    assert new.last_loaded_at is not None


def test_refresh_statistics_for_touched_keys(
    manager: PartitionManager, con: duckdb.DuckDBPyConnection, run: Recorder, state: StateStore
) -> None:
    manager.detect_partitions(REL)
    con.execute(f"insert into {REL} values (1000, TIMESTAMP '2025-01-10 23:00', 'eu')")
    con.execute(
        f"delete from {REL} where ts >= TIMESTAMP '2025-01-11' and ts < TIMESTAMP '2025-01-12'"
    )
    run.statements.clear()
    at = d("2025-03-10 10:00")
    got = manager.refresh_statistics(REL, ["2025-01-10", "2025-01-11"], load_id="L2", loaded_at=at)
    assert [(p.key, p.row_count, p.max_value, p.last_load_id) for p in got] == [
        ("2025-01-10", 3, "2025-01-10 23:00:00", "L2"),
        ("2025-01-11", 0, None, "L2"),
    ]
    (scan,) = table_reads(run)
    assert "group by" in scan and "2025-01-10 00:00:00" in scan and "2025-01-12 00:00:00" in scan
    recorded = {p.key: p for p in state.partitions(REL)}
    assert recorded["2025-01-11"].row_count == 0
    assert recorded["2025-01-11"].last_loaded_at == at
    assert recorded["2025-01-09"].last_load_id is None  # not touched
    assert manager.refresh_statistics(REL, []) == []


def test_refresh_statistics_all_keeps_last_loads(
    manager: PartitionManager, state: StateStore
) -> None:
    manager.create_partition(REL, iv("2025-03-02", "2025-03-03"), load_id="L1")
    got = manager.refresh_statistics(REL)
    assert len(got) == 61
    assert got[-1].key == "2025-03-02" and got[-1].row_count == 0 and got[-1].last_load_id == "L1"


# -- statistics ---------------------------------------------------------------------------


def test_statistics_exact(manager: PartitionManager) -> None:
    manager.detect_partitions(REL)
    manager.create_partition(REL, iv("2025-03-02", "2025-03-03"))
    manager.refresh_statistics(REL, ["2025-02-01"], load_id="L7", loaded_at=d("2025-03-10 10:00"))
    stats = manager.get_partition_statistics(REL)
    # 60 days cycling 1, 2, 3, 4 rows (15 of each) plus one empty day.
    assert stats == {
        "relation": REL,
        "partition_count": 61,
        "total_rows": 150,
        "min_rows": 0,
        "median_rows": 2.0,
        "max_rows": 4,
        "empty_partitions": 1,
        "oldest_partition": "2025-01-01",
        "newest_partition": "2025-03-02",
        "last_load_id": "L7",
        "last_loaded_at": d("2025-03-10 10:00"),
    }


def test_statistics_of_nothing(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute("create table empty_t (ts timestamp)")
    stats = PartitionManager(run, state, PartitionSpec("ts", "day")).get_partition_statistics(
        "empty_t"
    )
    assert stats["partition_count"] == 0
    assert stats["median_rows"] is None and stats["oldest_partition"] is None


# -- consistency --------------------------------------------------------------------------


def kinds(report: ConsistencyReport) -> list[tuple[str, str | None]]:
    return [(p.kind, p.partition_key) for p in report.problems]


def test_consistent_table(manager: PartitionManager) -> None:
    manager.detect_partitions(REL)
    report = manager.validate_consistency(REL)
    assert report.ok, report.format()
    assert report.partitions_checked == 60
    assert report.format() == f"{REL}: 60 partitions, consistent"


def test_row_in_the_wrong_range(manager: PartitionManager, con: duckdb.DuckDBPyConnection) -> None:
    manager.detect_partitions(REL)
    con.execute(f"insert into {REL} values (5000, TIMESTAMP '2030-06-01 10:00', 'eu')")
    report = manager.validate_consistency(REL)
    assert kinds(report) == [("out_of_range", "2030-06-01")]
    problem = report.problems[0]
    assert problem.actual == 1
    assert (
        "1 row(s) with ts in [2030-06-01 10:00:00, 2030-06-01 10:00:00] fall in no recorded"
        in problem.detail
    )


def test_recorded_count_disagrees(
    manager: PartitionManager, con: duckdb.DuckDBPyConnection
) -> None:
    manager.detect_partitions(REL)
    con.execute(f"insert into {REL} values (5000, TIMESTAMP '2025-01-05 10:00', 'eu')")
    con.execute(f"delete from {REL} where ts = TIMESTAMP '2025-02-10 00:00'")
    report = manager.validate_consistency(REL)
    assert kinds(report) == [("count_mismatch", "2025-01-05"), ("count_mismatch", "2025-02-10")]
    first, second = report.problems
    assert (first.recorded, first.actual) == (1, 2)
    assert first.detail == "recorded 1 rows, found 2"
    assert (second.recorded, second.actual) == (1, 0)


def test_unique_key_in_two_partitions(
    manager: PartitionManager, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute(f"update {REL} set id = 1 where ts = TIMESTAMP '2025-01-03 00:00'")
    manager.detect_partitions(REL)
    report = manager.validate_consistency(REL)
    assert kinds(report) == [("duplicate_key", "2025-01-01")]
    assert report.problems[0].detail == (
        "unique_key (id) = (1) is in 2 partitions: 2025-01-01, 2025-01-03 (1 such value(s) in all)"
    )


def test_gaps_between_partitions(
    manager: PartitionManager, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute(
        f"delete from {REL} where ts >= TIMESTAMP '2025-01-10' and ts < TIMESTAMP '2025-01-13'"
        " or ts >= TIMESTAMP '2025-02-01' and ts < TIMESTAMP '2025-02-02'"
    )
    manager.detect_partitions(REL)
    report = manager.validate_consistency(REL)
    assert kinds(report) == [("gap", "2025-01-13"), ("gap", "2025-02-02")]
    assert report.problems[0].detail == (
        "no partition covers [2025-01-10T00:00:00, 2025-01-13T00:00:00)"
        " between 2025-01-09 and 2025-01-13"
    )
    # Registering the empty days closes the gaps.
    manager.create_partition(REL, iv("2025-01-10", "2025-01-13"))
    manager.create_partition(REL, iv("2025-02-01", "2025-02-02"))
    assert manager.validate_consistency(REL).ok


def test_forgotten_partition_and_bad_range(
    manager: PartitionManager, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    manager.detect_partitions(REL)
    state.delete_partitions(REL, ["2025-01-20"])
    broken = state.partitions(REL, keys=["2025-01-30"])[0]
    broken.range_end = d("2025-02-02")
    state.upsert_partitions(REL, [broken])
    report = manager.validate_consistency(REL)
    assert kinds(report) == [
        ("bad_range", "2025-01-30"),
        ("out_of_range", "2025-01-20"),
        ("gap", "2025-01-21"),
    ]
    text = report.format()
    assert text.startswith(f"{REL}: 3 partition problem(s) in 59 recorded partitions:")
    assert (
        "  - bad_range [2025-01-30]: recorded range [2025-01-30T00:00:00, 2025-02-02T00:00:00)"
        in text
    )
    assert "--full-refresh" in text


def test_null_time_rows_are_reported(
    manager: PartitionManager, con: duckdb.DuckDBPyConnection
) -> None:
    manager.detect_partitions(REL)
    con.execute(f"insert into {REL} values (7000, NULL, 'eu')")
    report = manager.validate_consistency(REL)
    assert kinds(report) == [("out_of_range", None)]
    assert "with a NULL ts fall in no recorded partition" in report.problems[0].detail


# -- other field types --------------------------------------------------------------------


def test_timestamptz_partitions_are_utc(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute("set TimeZone = 'America/New_York'")
    con.execute("create table tz_t (ts timestamptz)")
    # 2025-03-04 23:30 in New York is 2025-03-05 04:30 UTC.
    con.execute("insert into tz_t values ('2025-03-04 23:30:00-05'), ('2025-03-04 12:00:00+00')")
    pm = PartitionManager(run, state, PartitionSpec("ts", "day", "TIMESTAMPTZ"))
    infos = pm.detect_partitions("tz_t")
    assert [(p.key, p.row_count, p.min_value) for p in infos] == [
        ("2025-03-04", 1, "2025-03-04 12:00:00"),
        ("2025-03-05", 1, "2025-03-05 04:30:00"),
    ]
    sql = pm.prune_partitions("select * from tz_t", iv("2025-03-05", "2025-03-06"))
    assert count(con, f"select count(*) from ({sql})") == 1
    assert pm.validate_consistency("tz_t").ok


def test_date_field_week_partitions(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute(
        "create table date_t as select range::date as d from"
        " range(DATE '2024-12-25', DATE '2025-01-15', INTERVAL 1 DAY)"
    )
    pm = PartitionManager(run, state, PartitionSpec("d", "week", "DATE"))
    infos = pm.detect_partitions("date_t")
    assert [(p.key, p.row_count, p.min_value, p.max_value) for p in infos] == [
        ("2024-W52", 5, "2024-12-25", "2024-12-29"),
        ("2025-W01", 7, "2024-12-30", "2025-01-05"),
        ("2025-W02", 7, "2025-01-06", "2025-01-12"),
        ("2025-W03", 2, "2025-01-13", "2025-01-14"),
    ]
    sql = pm.prune_partitions("select * from date_t", partition_range("2025-W01", "week"))
    assert count(con, f"select count(*) from ({sql})") == 7
    assert pm.validate_consistency("date_t").ok


def test_value_partitions(run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create table v_t as select * from"
        " (values (1, 'eu'), (2, 'eu'), (3, 'us'), (4, NULL), (5, 'o''x')) t(id, region)"
    )
    pm = PartitionManager(run, state, PartitionSpec("region", None, "VARCHAR"), unique_key=["id"])
    infos = pm.detect_partitions("v_t")
    assert [(p.key, p.row_count, p.range_start, p.min_value) for p in infos] == [
        (NULL_KEY, 1, None, None),
        ("eu", 2, None, "eu"),
        ("o'x", 1, None, "o'x"),
        ("us", 1, None, "us"),
    ]
    pred = pm.keys_predicate(["eu", NULL_KEY, "o'x"])
    assert pred == "(\"region\" in ('eu', 'o''x', '__null__') or \"region\" is null)"
    assert count(con, f"select count(*) from v_t where {pred}") == 4
    con.execute("insert into v_t values (6, 'eu'), (3, 'apac')")
    got = pm.refresh_statistics("v_t", ["eu", "apac"], load_id="L1")
    assert [(p.key, p.row_count, p.last_load_id) for p in got] == [
        ("apac", 1, "L1"),
        ("eu", 3, "L1"),
    ]
    stats = pm.get_partition_statistics("v_t")
    assert (stats["partition_count"], stats["total_rows"], stats["median_rows"]) == (5, 7, 1.0)
    assert stats["oldest_partition"] is None and stats["last_load_id"] == "L1"
    report = pm.validate_consistency("v_t")
    assert kinds(report) == [("duplicate_key", "apac")]  # id 3 in 'apac' and 'us'; no gaps


def test_integer_value_partitions(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    con.execute("create table i_t as select range % 3 as bucket from range(10)")
    pm = PartitionManager(run, state, PartitionSpec("bucket", None, "BIGINT"))
    assert [(p.key, p.row_count) for p in pm.detect_partitions("i_t")] == [
        ("0", 4),
        ("1", 3),
        ("2", 3),
    ]
    assert count(con, f"select count(*) from i_t where {pm.keys_predicate(['0', '2'])}") == 7
    # A NULL partition of a non-text column: no '__null__' literal to cast.
    con.execute("insert into i_t values (NULL)")
    assert count(con, f"select count(*) from i_t where {pm.keys_predicate([NULL_KEY])}") == 1


def test_a_text_value_null_key_shares_the_null_partition(
    run: Recorder, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    # The value '__null__' gets the NULL partition's key; selecting that partition must
    # select it too, or replacing the partition would keep its old rows.
    con.execute(
        "create table n_t as select * from"
        " (values (1, NULL), (2, '__null__'), (3, 'eu')) t(id, region)"
    )
    pm = PartitionManager(run, state, PartitionSpec("region", None, "VARCHAR"))
    assert [(p.key, p.row_count) for p in pm.detect_partitions("n_t")] == [(NULL_KEY, 2), ("eu", 1)]
    pred = pm.keys_predicate([NULL_KEY])
    found = con.execute(f"select id from n_t where {pred} order by id").fetchall()
    assert found == [(1,), (2,)]


def test_partition_writes_roll_back(
    manager: PartitionManager, state: StateStore, con: duckdb.DuckDBPyConnection
) -> None:
    manager.detect_partitions(REL)
    before = state.partitions(REL)
    con.execute("begin transaction")
    manager.create_partition(REL, iv("2025-03-02", "2025-03-05"), load_id="L")
    manager.refresh_statistics(REL, ["2025-01-01"], load_id="L")
    con.execute("rollback")
    assert state.partitions(REL) == before
