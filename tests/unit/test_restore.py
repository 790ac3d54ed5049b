"""Unit tests of the pure parts of the undo of loads (restore.py), of the interval
``differences`` it writes, and of the state reads and writes it adds (on a real DuckDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlflow_testing import Recorder

from dbt.adapters.sqlflow.cli import cli
from dbt.adapters.sqlflow.intervals import Interval, differences, overlay
from dbt.adapters.sqlflow.restore import (
    RestoreReport,
    Snapshot,
    Target,
    first_present,
    interval_changes,
    needs_ducklake,
    partition_changes,
    snapshot_at,
)
from dbt.adapters.sqlflow.state import IntervalRow, LoadRow, PartitionInfo, StateStore

MODEL = "model.shop.orders"
RELATION = '"lake"."main"."orders"'
TARGET = Target(MODEL, RELATION, "lake", "main", "orders")


def d(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iv(start: str, end: str) -> Interval:
    return Interval(d(start), d(end))


# -- finding the snapshot -------------------------------------------------------------------


@pytest.mark.parametrize("first", [None, 0, 1, 5, 9])
def test_first_present_finds_the_first_id_in_few_asks(first: int | None) -> None:
    ids = list(range(10, 20))
    asked: list[int] = []

    def present(version: int) -> bool:
        asked.append(version)
        return first is not None and version >= ids[first]

    assert first_present(ids, present) == (None if first is None else ids[first])
    assert len(asked) <= 5  # the last id, then log2(10) rounded up


def test_first_present_of_nothing() -> None:
    assert first_present([], lambda version: True) is None


SNAPSHOTS = [Snapshot(i, d("2025-01-01") + timedelta(hours=i)) for i in (3, 4, 7)]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2025-01-01 02:59", None),
        ("2025-01-01 03:00", 3),
        ("2025-01-01 05:00", 4),
        ("2025-01-01 07:00", 7),
        ("2030-01-01", 7),
    ],
)
def test_snapshot_at_takes_the_last_one_committed_by_then(at: str, expected: int | None) -> None:
    found = snapshot_at(SNAPSHOTS, d(at))
    assert (found.id if found else None) == expected


# -- what to write ---------------------------------------------------------------------------


def test_differences_unmark_what_was_not_loaded_and_put_back_what_was() -> None:
    # Then: day 1 by a, day 2 by b, day 3 until 18:00 by c. Now (a run with a day of
    # lookback later): day 3 by d, day 4 until 18:00 by e.
    then = [
        (iv("2025-01-01", "2025-01-02"), "a"),
        (iv("2025-01-02", "2025-01-03"), "b"),
        (iv("2025-01-03", "2025-01-03 18:00"), "c"),
    ]
    now = [
        (iv("2025-01-01", "2025-01-02"), "a"),
        (iv("2025-01-02", "2025-01-03"), "b"),
        (iv("2025-01-03", "2025-01-04"), "d"),
        (iv("2025-01-04", "2025-01-04 18:00"), "e"),
    ]
    assert differences(now, then) == [
        (iv("2025-01-03", "2025-01-03 18:00"), "c"),
        (iv("2025-01-03 18:00", "2025-01-04 18:00"), None),
    ]
    assert differences(now, now) == []
    assert differences([], then) == then


layouts = st.lists(
    st.tuples(st.integers(0, 20), st.integers(1, 5), st.sampled_from("abc")), max_size=6
).map(
    lambda layers: overlay(
        (
            Interval(
                d("2025-01-01") + timedelta(hours=s), d("2025-01-01") + timedelta(hours=s + n)
            ),
            v,
        )
        for s, n, v in layers
    )
)


@settings(max_examples=200, deadline=None)
@given(layouts, layouts)
def test_differences_laid_over_the_current_layout_give_the_wanted_one(now, wanted) -> None:
    """Every instant (each hour of the range, the layouts' only breakpoints) has its
    wanted value once the differences are laid over the current layout."""
    result = overlay([*now, *differences(now, wanted)])

    def value(layout, hour: int):
        instant = d("2025-01-01") + timedelta(hours=hour, minutes=30)
        return next((v for piece, v in layout if piece.contains(instant)), None)

    assert all(value(result, h) == value(wanted, h) for h in range(-1, 27))


def row(start: str, end: str, load: str) -> IntervalRow:
    return IntervalRow(iv(start, end), RELATION, load, d("2025-01-05"))


def test_interval_changes_carry_the_earlier_rows() -> None:
    then = [row("2025-01-01", "2025-01-02", "a")]
    now = [row("2025-01-01", "2025-01-03", "b")]
    assert interval_changes(now, then) == [
        (iv("2025-01-01", "2025-01-02"), then[0]),
        (iv("2025-01-02", "2025-01-03"), None),
    ]


def part(key: str, rows: int, load: str = "a") -> PartitionInfo:
    return PartitionInfo(key=key, row_count=rows, last_load_id=load)


def test_partition_changes() -> None:
    then = [part("2025-01-01", 2), part("2025-01-02", 2)]
    now = [part("2025-01-01", 2), part("2025-01-02", 3, "b"), part("2025-01-03", 1, "b")]
    assert partition_changes(now, then) == (["2025-01-03"], [then[1]])
    assert partition_changes(then, then) == ([], [])


# -- texts -------------------------------------------------------------------------------------


def test_needs_ducklake_names_the_model_and_the_fix() -> None:
    text = str(needs_ducklake(MODEL, '"shop"."main"."orders"'))
    assert "sqlflow restore of model.shop.orders: undoing a load needs DuckLake's snapshots" in text
    assert '"shop"."main"."orders" is in a plain DuckDB database' in text
    assert "Fix: put the model in a DuckLake" in text
    assert "dbt run --full-refresh -s orders" in text


def test_report_text() -> None:
    point = Snapshot(7, d("2025-01-05 10:00"))
    assert RestoreReport(TARGET, point).text() == (
        "sqlflow restore of model.shop.orders: nothing to undo; no load of it committed after"
        " snapshot 7 (2025-01-05 10:00:00 UTC)"
    )
    report = RestoreReport(
        TARGET,
        point,
        snapshot=12,
        undone=("l2", "l3"),
        rows_before=9,
        rows_after=6,
        intervals=((iv("2025-01-03", "2025-01-04"), False), (iv("2025-01-02", "2025-01-03"), True)),
        partitions_removed=("2025-01-03",),
        partitions_restored=("2025-01-02",),
    )
    assert report.text().splitlines() == [
        'sqlflow restore of model.shop.orders: "lake"."main"."orders" is as it was at snapshot 7'
        " (2025-01-05 10:00:00 UTC), committed as snapshot 12",
        "  rows: 9 -> 6",
        "  loads undone: 2 (l2, l3)",
        "  unloaded again (the next run loads them): [2025-01-03 00:00:00, 2025-01-04 00:00:00)",
        "  loaded again by their earlier loads: [2025-01-02 00:00:00, 2025-01-03 00:00:00)",
        "  partitions: 1 put back, 1 forgotten",
    ]


def test_the_command_needs_exactly_one_point() -> None:
    for args in ([], ["--before-load", "x", "--at", "2025-01-01"]):
        found = CliRunner().invoke(cli, ["restore", "orders", *args])
        assert found.exit_code == 2
        assert "pass exactly one of --before-load LOAD_ID and --at TIMESTAMP" in found.output
    found = CliRunner().invoke(cli, ["restore", "orders", "--at", "yesterday"])
    assert found.exit_code == 2
    assert "'yesterday' is not an ISO date or timestamp" in found.output


# -- state reads and writes (real DuckDB) ------------------------------------------------------


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "t.duckdb"))
    yield connection
    connection.close()


def test_a_store_at_a_snapshot_reads_by_time_travel() -> None:
    store = StateStore(lambda sql: [], database="lake").as_of(5)
    assert store.table("loads") == '"lake"."sqlflow_meta"."loads" at (version => 5)'
    assert store._aliased("loads", "r") == '"lake"."sqlflow_meta"."loads" as "r" at (version => 5)'
    assert StateStore(lambda sql: [])._aliased("loads", "r") == '"sqlflow_meta"."loads" as "r"'


def load(load_id: str, model: str = MODEL) -> LoadRow:
    return LoadRow(
        load_id=load_id,
        invocation_id="i",
        model=model,
        relation=RELATION,
        strategy="append",
        started_at=d("2025-01-05"),
        finished_at=d("2025-01-05"),
    )


def test_loads_are_removed_and_copied_back_with_their_checks(con) -> None:
    store = StateStore(Recorder(con))
    store.ensure()
    earlier = StateStore(Recorder(con), schema="earlier")
    earlier.ensure()
    for name in ("a", "b", "c"):
        store.record_load(load(name))
        earlier.record_load(load(name))
        store.record_checks(name, MODEL, [{"check_name": "not_null(v)", "status": "pass"}])
        earlier.record_checks(name, MODEL, [{"check_name": "not_null(v)", "status": "pass"}])
    store.record_load(load("x", "model.shop.other"))
    assert store.load_model("x") == "model.shop.other"
    assert store.load_model("nope") is None
    store.remove_loads(MODEL, ["b", "c"])
    assert store.load_ids(MODEL) == ["a"]
    assert [r.load_id for r in store.check_results(model=MODEL)] == ["a"]
    assert store.load_ids("model.shop.other") == ["x"]
    store.copy_loads(earlier, MODEL, ["c"])
    assert sorted(store.load_ids(MODEL)) == ["a", "c"]
    assert sorted(r.load_id for r in store.check_results(model=MODEL)) == ["a", "c"]


def test_write_intervals_lays_ranges_over_the_current_ones(con) -> None:
    store = StateStore(Recorder(con))
    store.ensure()
    store.add_interval(MODEL, RELATION, iv("2025-01-01", "2025-01-04"), "b")
    earlier = row("2025-01-01", "2025-01-02", "a")
    store.write_intervals(
        MODEL, [(earlier.interval, earlier), (iv("2025-01-02", "2025-01-04"), None)]
    )
    assert store.interval_rows(MODEL) == [earlier]
    view = con.execute(
        "select interval_start, interval_end, load_id from sqlflow_meta.intervals"
    ).fetchall()
    assert view == [(d("2025-01-01"), d("2025-01-02"), "a")]
