"""The pure parts of `dbt-sqlflow intervals`: merging rows into ranges with their last
load, and the text and JSON output of a report."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from dbt.adapters.sqlflow.cli_intervals import (
    IntervalReport,
    LoadedRange,
    WindowedModel,
    format_json,
    format_table,
    loaded_ranges,
)
from dbt.adapters.sqlflow.cli_state import StateLocation
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.state import IntervalRow


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iv(start: str, end: str) -> Interval:
    return Interval(dt(start), dt(end))


def row(start: str, end: str, load_id: str | None) -> IntervalRow:
    return IntervalRow(iv(start, end), '"db"."s"."m"', load_id, dt("2030-01-01"))


def test_loaded_ranges_merge_touching_rows_and_keep_the_latest_load() -> None:
    rows = [
        row("2025-01-02", "2025-01-03", "b"),
        row("2025-01-01", "2025-01-02", "a"),
        row("2025-01-05", "2025-01-06", "c"),
        row("2025-01-06", "2025-01-07", None),
    ]
    finished = {"a": dt("2025-02-01 10:00"), "b": dt("2025-02-01 09:00"), "c": dt("2025-02-02")}
    assert loaded_ranges(rows, finished) == [
        LoadedRange(iv("2025-01-01", "2025-01-03"), "a", dt("2025-02-01 10:00")),
        LoadedRange(iv("2025-01-05", "2025-01-07"), "c", dt("2025-02-02")),
    ]


def test_loaded_ranges_without_loads() -> None:
    assert loaded_ranges([row("2025-01-01", "2025-01-02", "x")], {}) == [
        LoadedRange(iv("2025-01-01", "2025-01-02"), "x", None)
    ]
    assert loaded_ranges([], {}) == []


def report(loaded: list[LoadedRange], gaps: list[Interval]) -> IntervalReport:
    model = WindowedModel("model.p.m", "m", '"db"."s"."m"', "ts", "hour")
    location = StateLocation(Path("/data/x.duckdb"), "meta", "dev")
    return IntervalReport(model, location, dt("2025-01-01 05:30"), dt("2025-01-01"), loaded, gaps)


def test_format_table_interleaves_ranges_and_gaps() -> None:
    got = format_table(
        report(
            [
                LoadedRange(
                    iv("2025-01-01", "2025-01-01 01:00"),
                    "0123456789abcdef",
                    dt("2025-02-01 10:00:00.5"),
                ),
                LoadedRange(iv("2025-01-01 02:00", "2025-01-01 05:00"), None, None),
            ],
            [
                iv("2025-01-01 01:00", "2025-01-01 02:00"),
                iv("2025-01-01 05:00", "2025-01-01 05:30"),
            ],
        )
    )
    assert got.splitlines() == [
        '"db"."s"."m" (hour windows on ts; state in x.duckdb:meta; [start, end) UTC)',
        "state   start                end                  last load     finished at (UTC)",
        "------  -------------------  -------------------  ------------  -------------------",
        "loaded  2025-01-01 00:00:00  2025-01-01 01:00:00  0123456789ab  2025-02-01 10:00:00",
        "gap     2025-01-01 01:00:00  2025-01-01 02:00:00  -             -",
        "loaded  2025-01-01 02:00:00  2025-01-01 05:00:00  -             -",
        "gap     2025-01-01 05:00:00  2025-01-01 05:30:00  -             -",
        "m: 2 loaded ranges (4h), 2 gaps (1h 30m) from 2025-01-01 00:00:00 to now"
        " 2025-01-01 05:30:00, loaded until 2025-01-01 05:00:00, last load 2025-02-01 10:00:00 UTC",
    ]


def test_format_of_an_all_invalidated_model() -> None:
    empty = report([], [iv("2025-01-01", "2025-01-01 05:30")])
    assert format_table(empty).splitlines()[-1] == (
        "m: 0 loaded ranges (0s), 1 gap (5h 30m) from 2025-01-01 00:00:00 to now"
        " 2025-01-01 05:30:00, loaded until -, last load - UTC"
    )
    data = json.loads(format_json(empty))
    assert (data["loaded"], data["gaps"], data["since"], data["now"]) == (
        [],
        [{"start": "2025-01-01T00:00:00", "end": "2025-01-01T05:30:00"}],
        "2025-01-01T00:00:00",
        "2025-01-01T05:30:00",
    )
    assert data["summary"] == {
        "loaded_ranges": 0,
        "gaps": 1,
        "loaded_seconds": 0,
        "gap_seconds": 19800,
        "loaded_until": None,
        "last_load_id": None,
        "last_finished_at": None,
    }
