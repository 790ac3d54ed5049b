"""Unit tests of the pure interval functions (half-open [start, end), naive UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from dbt.adapters.sqlflow.intervals import (
    GRANULARITIES,
    Interval,
    add_units,
    ceil,
    check_granularity,
    clip,
    merge,
    missing,
    parse_timestamp,
    plan_explicit,
    plan_windows,
    split,
    subtract,
    to_utc_naive,
    truncate,
)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iv(start: str, end: str) -> Interval:
    return Interval(d(start), d(end))


def ivs(*pairs: tuple[str, str]) -> list[Interval]:
    return [iv(s, e) for s, e in pairs]


# -- Interval ---------------------------------------------------------------------------


def test_interval_is_half_open() -> None:
    day = iv("2025-03-04", "2025-03-05")
    assert day.contains(d("2025-03-04"))
    assert day.contains(d("2025-03-04 23:59:59.999999"))
    assert not day.contains(d("2025-03-05"))
    assert not day.overlaps(iv("2025-03-05", "2025-03-06"))
    assert day.overlaps(iv("2025-03-04 23:00", "2025-03-06"))
    assert str(day) == "[2025-03-04T00:00:00, 2025-03-05T00:00:00)"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (d("2025-03-04"), d("2025-03-04"), "is not before its end"),
        (d("2025-03-05"), d("2025-03-04"), "needs start < end"),
        (datetime(2025, 3, 4, tzinfo=UTC), d("2025-03-05"), "has a time zone"),
        (date(2025, 3, 4), d("2025-03-05"), "must be a datetime"),
    ],
)
def test_interval_rejects(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Interval(start, end)


def test_intersection() -> None:
    a = iv("2025-03-01", "2025-03-05")
    assert a.intersection(iv("2025-03-04", "2025-03-09")) == iv("2025-03-04", "2025-03-05")
    assert a.intersection(iv("2025-03-05", "2025-03-09")) is None


# -- merge / subtract / missing / clip --------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], []),
        ([("2025-01-01", "2025-01-02")], [("2025-01-01", "2025-01-02")]),
        # touching intervals merge
        (
            [("2025-01-02", "2025-01-03"), ("2025-01-01", "2025-01-02")],
            [("2025-01-01", "2025-01-03")],
        ),
        # overlapping and contained
        (
            [
                ("2025-01-01", "2025-01-05"),
                ("2025-01-02", "2025-01-03"),
                ("2025-01-04", "2025-01-08"),
            ],
            [("2025-01-01", "2025-01-08")],
        ),
        # disjoint stay apart, sorted
        (
            [("2025-01-05", "2025-01-06"), ("2025-01-01", "2025-01-02")],
            [("2025-01-01", "2025-01-02"), ("2025-01-05", "2025-01-06")],
        ),
        # duplicates
        (
            [("2025-01-01", "2025-01-02"), ("2025-01-01", "2025-01-02")],
            [("2025-01-01", "2025-01-02")],
        ),
    ],
)
def test_merge(given: list, expected: list) -> None:
    assert merge(ivs(*given)) == ivs(*expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([("2025-01-01", "2025-01-10")], [], [("2025-01-01", "2025-01-10")]),
        ([], [("2025-01-01", "2025-01-10")], []),
        # hole in the middle: b's start removed, b's end kept
        (
            [("2025-01-01", "2025-01-10")],
            [("2025-01-03", "2025-01-05")],
            [("2025-01-01", "2025-01-03"), ("2025-01-05", "2025-01-10")],
        ),
        # covers the start / the end / all
        (
            [("2025-01-01", "2025-01-10")],
            [("2024-12-01", "2025-01-04")],
            [("2025-01-04", "2025-01-10")],
        ),
        (
            [("2025-01-01", "2025-01-10")],
            [("2025-01-08", "2025-02-01")],
            [("2025-01-01", "2025-01-08")],
        ),
        ([("2025-01-01", "2025-01-10")], [("2025-01-01", "2025-01-10")], []),
        # touching only: nothing removed
        (
            [("2025-01-01", "2025-01-10")],
            [("2025-01-10", "2025-01-11")],
            [("2025-01-01", "2025-01-10")],
        ),
        # several a and several b, unsorted
        (
            [("2025-01-20", "2025-01-25"), ("2025-01-01", "2025-01-10")],
            [
                ("2025-01-22", "2025-01-23"),
                ("2025-01-02", "2025-01-03"),
                ("2025-01-09", "2025-01-21"),
            ],
            [
                ("2025-01-01", "2025-01-02"),
                ("2025-01-03", "2025-01-09"),
                ("2025-01-21", "2025-01-22"),
                ("2025-01-23", "2025-01-25"),
            ],
        ),
    ],
)
def test_subtract(a: list, b: list, expected: list) -> None:
    assert subtract(ivs(*a), ivs(*b)) == ivs(*expected)


@pytest.mark.parametrize(
    ("loaded", "expected"),
    [
        ([], [("2025-01-01", "2025-02-01")]),
        ([("2024-01-01", "2026-01-01")], []),
        (
            [("2025-01-05", "2025-01-10"), ("2025-01-20", "2025-01-25")],
            [
                ("2025-01-01", "2025-01-05"),
                ("2025-01-10", "2025-01-20"),
                ("2025-01-25", "2025-02-01"),
            ],
        ),
    ],
)
def test_missing(loaded: list, expected: list) -> None:
    assert missing(ivs(*loaded), iv("2025-01-01", "2025-02-01")) == ivs(*expected)


def test_clip() -> None:
    within = iv("2025-01-05", "2025-01-10")
    got = clip(ivs(("2025-01-01", "2025-01-06"), ("2025-01-09", "2025-01-20")), within)
    assert got == ivs(("2025-01-05", "2025-01-06"), ("2025-01-09", "2025-01-10"))
    assert clip(ivs(("2025-01-01", "2025-01-05")), within) == []


# -- truncate / add_units / ceil --------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "granularity", "expected"),
    [
        ("2025-03-04 05:06:07.8", "hour", "2025-03-04 05:00"),
        ("2025-03-04 05:06:07", "day", "2025-03-04"),
        ("2025-03-05 05:00", "week", "2025-03-03"),  # Wednesday -> Monday
        ("2025-03-03 00:00", "week", "2025-03-03"),  # Monday stays
        ("2025-03-09 23:59", "week", "2025-03-03"),  # Sunday -> previous Monday
        ("2025-01-01 12:00", "week", "2024-12-30"),  # week crossing the year
        ("2024-02-29 10:00", "month", "2024-02-01"),
        ("2025-12-31 23:59", "year", "2025-01-01"),
        ("2024-02-29 10:00", "year", "2024-01-01"),
    ],
)
def test_truncate(ts: str, granularity: str, expected: str) -> None:
    assert truncate(d(ts), granularity) == d(expected)


def test_truncate_matches_duckdb(tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    start = datetime(2023, 12, 25, 7)
    for i in range(0, 24 * 800, 37):
        ts = start + timedelta(hours=i, minutes=13)
        for g in GRANULARITIES:
            got = con.execute(f"select date_trunc('{g}', TIMESTAMP '{ts}')").fetchone()
            assert got is not None
            assert truncate(ts, g) == got[0], (ts, g)


@pytest.mark.parametrize(
    ("ts", "granularity", "n", "expected"),
    [
        ("2025-03-04 23:00", "hour", 2, "2025-03-05 01:00"),
        ("2025-03-01", "day", -1, "2025-02-28"),
        ("2024-03-01", "day", -1, "2024-02-29"),  # leap year
        ("2025-03-03", "week", 1, "2025-03-10"),
        ("2024-12-30", "week", -1, "2024-12-23"),
        ("2025-01-31", "month", 1, "2025-02-28"),  # clamped
        ("2024-01-31", "month", 1, "2024-02-29"),  # clamped, leap
        ("2025-12-01", "month", 1, "2026-01-01"),
        ("2025-01-01", "month", -1, "2024-12-01"),
        ("2025-03-01", "month", -14, "2024-01-01"),
        ("2024-02-29", "year", 1, "2025-02-28"),  # clamped
        ("2024-02-29", "year", 4, "2028-02-29"),
        ("2025-01-01", "year", -3, "2022-01-01"),
    ],
)
def test_add_units(ts: str, granularity: str, n: int, expected: str) -> None:
    assert add_units(d(ts), granularity, n) == d(expected)


def test_add_units_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        add_units(d("9999-06-01"), "year", 1)


@pytest.mark.parametrize(
    ("ts", "granularity", "expected"),
    [
        ("2025-03-04", "day", "2025-03-04"),
        ("2025-03-04 00:00:01", "day", "2025-03-05"),
        ("2025-03-04", "week", "2025-03-10"),
        ("2025-03-01", "month", "2025-03-01"),
        ("2025-12-15", "year", "2026-01-01"),
    ],
)
def test_ceil(ts: str, granularity: str, expected: str) -> None:
    assert ceil(d(ts), granularity) == d(expected)


@pytest.mark.parametrize("bad", ["days", "minute", "DAY", ""])
def test_unknown_granularity(bad: str) -> None:
    with pytest.raises(ValueError, match=r"unknown batch_size .*use one of hour, day, week"):
        check_granularity(bad, what="batch_size")
    with pytest.raises(ValueError, match="unknown granularity"):
        truncate(d("2025-01-01"), bad)


# -- split ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "batch_size", "expected"),
    [
        (
            ("2025-03-01", "2025-03-04"),
            "day",
            [
                ("2025-03-01", "2025-03-02"),
                ("2025-03-02", "2025-03-03"),
                ("2025-03-03", "2025-03-04"),
            ],
        ),
        # unaligned ends give partial first and last pieces
        (
            ("2025-03-01 10:00", "2025-03-03 05:00"),
            "day",
            [
                ("2025-03-01 10:00", "2025-03-02"),
                ("2025-03-02", "2025-03-03"),
                ("2025-03-03", "2025-03-03 05:00"),
            ],
        ),
        (
            ("2025-03-04 10:00", "2025-03-04 11:00"),
            "day",
            [("2025-03-04 10:00", "2025-03-04 11:00")],
        ),
        (
            ("2025-03-01", "2025-03-20"),  # Saturday .. Thursday
            "week",
            [
                ("2025-03-01", "2025-03-03"),
                ("2025-03-03", "2025-03-10"),
                ("2025-03-10", "2025-03-17"),
                ("2025-03-17", "2025-03-20"),
            ],
        ),
        (
            ("2024-01-15", "2024-04-01"),
            "month",
            [
                ("2024-01-15", "2024-02-01"),
                ("2024-02-01", "2024-03-01"),
                ("2024-03-01", "2024-04-01"),
            ],
        ),
        (
            ("2023-06-01", "2025-01-01"),
            "year",
            [("2023-06-01", "2024-01-01"), ("2024-01-01", "2025-01-01")],
        ),
        (
            ("2025-03-04 22:30", "2025-03-05 01:00"),
            "hour",
            [
                ("2025-03-04 22:30", "2025-03-04 23:00"),
                ("2025-03-04 23:00", "2025-03-05 00:00"),
                ("2025-03-05 00:00", "2025-03-05 01:00"),
            ],
        ),
    ],
)
def test_split(interval: tuple[str, str], batch_size: str, expected: list) -> None:
    assert split(iv(*interval), batch_size) == ivs(*expected)


def test_split_leap_february_in_days() -> None:
    days = split(iv("2024-02-01", "2024-03-01"), "day")
    assert len(days) == 29
    assert days[-1] == iv("2024-02-29", "2024-03-01")
    assert len(split(iv("2025-02-01", "2025-03-01"), "day")) == 28
    assert len(split(iv("2024-01-01", "2025-01-01"), "day")) == 366


# -- parse_timestamp --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04", "2025-03-04 00:00"),
        (" 2025-03-04 ", "2025-03-04 00:00"),
        ("2025-03-04T05:06", "2025-03-04 05:06"),
        ("2025-03-04 05:06:07.25", "2025-03-04 05:06:07.25"),
        ("2025-03-04T05:00:00+02:00", "2025-03-04 03:00"),
        ("2025-03-04T01:00:00-03:00", "2025-03-04 04:00"),
        ("2025-03-04T05:00:00Z", "2025-03-04 05:00"),
        ("2025-03-01T01:00:00+02:00", "2025-02-28 23:00"),  # crosses a month back
        ("2024-02-29", "2024-02-29 00:00"),
    ],
)
def test_parse_timestamp(text: str, expected: str) -> None:
    got = parse_timestamp(text)
    assert got == d(expected)
    assert got.tzinfo is None


def test_parse_timestamp_objects() -> None:
    assert parse_timestamp(date(2025, 3, 4)) == d("2025-03-04")
    aware = datetime(2025, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert parse_timestamp(aware) == d("2025-03-04 04:00")
    assert to_utc_naive(d("2025-03-04 05:00")) == d("2025-03-04 05:00")


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2025-13-01", "2025-02-29", "04/03/2025", "2025-03-04T25:00"]
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"cannot read .* as a date or timestamp: give an ISO 8601"
    ):
        parse_timestamp(text)


def test_parse_timestamp_rejects_other_types() -> None:
    with pytest.raises(ValueError, match=r"cannot read 20250304 \(int\)"):
        parse_timestamp(20250304)  # type: ignore[arg-type]


# -- plan_windows -----------------------------------------------------------------------

NOW = d("2025-03-10 15:30")


def plan(loaded: list, **kwargs) -> list[Interval]:
    args: dict[str, Any] = {
        "begin": None,
        "now": NOW,
        "batch_size": "day",
        "lookback": 1,
        "data_start": None,
    }
    args.update(kwargs)
    return plan_windows(ivs(*loaded), **args)


def days(start: str, end: str) -> list[Interval]:
    return split(iv(start, end), "day")


def test_plan_first_build_from_data_start() -> None:
    # Nothing loaded, no begin: from the data's first unit to the end of today.
    got = plan([], data_start=d("2025-03-07 13:00"), lookback=3)
    assert got == days("2025-03-07", "2025-03-11")


def test_plan_first_build_from_begin() -> None:
    got = plan([], begin=d("2025-03-08"), data_start=d("2025-01-01"))
    assert got == days("2025-03-08", "2025-03-11")


def test_plan_nothing_known() -> None:
    assert plan([]) == []


def test_plan_begin_in_future() -> None:
    assert plan([], begin=d("2025-03-11")) == []


def test_plan_up_to_date_with_lookback_0() -> None:
    assert plan([("2025-03-01", "2025-03-11")], lookback=0) == []


@pytest.mark.parametrize(
    ("lookback", "expected_start"),
    [
        (0, "2025-03-09"),
        (1, "2025-03-08"),
        (3, "2025-03-06"),
        (8, "2025-03-01"),
        (50, "2025-03-01"),
    ],
)
def test_plan_lookback(lookback: int, expected_start: str) -> None:
    # Loaded up to (excluding) the 9th; the 9th and 10th are new; lookback re-reads days
    # before the 9th, never before the first loaded start (lookback larger than the span).
    got = plan([("2025-03-01", "2025-03-09")], lookback=lookback)
    assert got == days(expected_start, "2025-03-11")


def test_plan_gaps_included_and_merged_with_lookback() -> None:
    loaded = [
        ("2025-03-01", "2025-03-03"),
        ("2025-03-05", "2025-03-06"),
        ("2025-03-07", "2025-03-10"),
    ]
    got = plan(loaded, lookback=1)
    expected = [
        *days("2025-03-03", "2025-03-05"),  # gap
        *days("2025-03-06", "2025-03-07"),  # gap
        *days("2025-03-09", "2025-03-11"),  # lookback (9th) + new (10th)
    ]
    assert got == expected


def test_plan_begin_cuts_earlier_gaps() -> None:
    loaded = [("2025-03-01", "2025-03-02"), ("2025-03-05", "2025-03-10")]
    got = plan(loaded, begin=d("2025-03-04"), lookback=0)
    assert got == days("2025-03-04", "2025-03-05") + days("2025-03-10", "2025-03-11")


def test_plan_begin_before_loaded_fills_the_start() -> None:
    got = plan([("2025-03-05", "2025-03-11")], begin=d("2025-03-03"), lookback=0)
    assert got == days("2025-03-03", "2025-03-05")


def test_plan_unaligned_loaded_end() -> None:
    # Loaded up to 10:00 on the 9th: lookback counts from the unit holding the last loaded
    # instants (the 9th, re-read whole), as dbt's microbatch counts from the current batch:
    # lookback 1 re-reads the 8th too, lookback 2 the 7th and the 8th.
    got = plan([("2025-03-01", "2025-03-09 10:00")], lookback=1)
    assert got == days("2025-03-08", "2025-03-11")
    got = plan([("2025-03-01", "2025-03-09 10:00")], lookback=2)
    assert got == days("2025-03-07", "2025-03-11")
    got = plan([("2025-03-01", "2025-03-09 10:00")], lookback=0)
    assert got == [iv("2025-03-09 10:00", "2025-03-10"), iv("2025-03-10", "2025-03-11")]


def test_plan_loaded_beyond_now_is_clipped() -> None:
    got = plan([("2025-03-01", "2025-03-20")], lookback=2)
    assert got == []


@pytest.mark.parametrize(
    ("batch_size", "now", "loaded", "lookback", "expected"),
    [
        (
            "week",
            "2025-03-12 08:00",  # Wednesday: current week ends Monday 17th
            [("2025-02-24", "2025-03-10")],
            1,
            [("2025-03-03", "2025-03-10"), ("2025-03-10", "2025-03-17")],
        ),
        (
            "week",
            "2025-01-01",  # week crossing the new year
            [("2024-12-16", "2024-12-23")],
            0,
            [("2024-12-23", "2024-12-30"), ("2024-12-30", "2025-01-06")],
        ),
        (
            "month",
            "2024-02-29 23:59",  # leap day
            [("2023-11-01", "2024-01-01")],
            1,
            [
                ("2023-12-01", "2024-01-01"),
                ("2024-01-01", "2024-02-01"),
                ("2024-02-01", "2024-03-01"),
            ],
        ),
        (
            "year",
            "2025-06-01",
            [("2023-01-01", "2025-01-01")],
            1,
            [("2024-01-01", "2025-01-01"), ("2025-01-01", "2026-01-01")],
        ),
        (
            "hour",
            "2025-03-10 02:15",
            [("2025-03-09 20:00", "2025-03-10 00:00")],
            2,
            [
                ("2025-03-09 22:00", "2025-03-09 23:00"),
                ("2025-03-09 23:00", "2025-03-10 00:00"),
                ("2025-03-10 00:00", "2025-03-10 01:00"),
                ("2025-03-10 01:00", "2025-03-10 02:00"),
                ("2025-03-10 02:00", "2025-03-10 03:00"),
            ],
        ),
    ],
)
def test_plan_batch_sizes(
    batch_size: str, now: str, loaded: list, lookback: int, expected: list
) -> None:
    got = plan(loaded, now=d(now), batch_size=batch_size, lookback=lookback)
    assert got == ivs(*expected)


def test_plan_sixty_days_in_weeks() -> None:
    # 60 days from Wednesday 2025-01-01 up to now on 2025-03-01 (Saturday): 9 batches.
    got = plan([], begin=d("2025-01-01"), now=d("2025-03-01 12:00"), batch_size="week")
    assert len(got) == 9
    assert got[0] == iv("2025-01-01", "2025-01-06")
    assert got[-1] == iv("2025-02-24", "2025-03-03")


def test_plan_accepts_aware_now() -> None:
    now = datetime(2025, 3, 11, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 10th 22:30 UTC
    assert plan([("2025-03-01", "2025-03-10")], now=now, lookback=0) == days(
        "2025-03-10", "2025-03-11"
    )


@pytest.mark.parametrize("lookback", [-1, 1.5, "1", True])
def test_plan_rejects_bad_lookback(lookback: object) -> None:
    with pytest.raises(
        ValueError, match=r"lookback must be an integer >= 0 \(a number of day units\)"
    ):
        plan([], lookback=lookback)


def test_plan_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="unknown batch_size 'days'"):
        plan([], batch_size="days")


# -- plan_explicit ----------------------------------------------------------------------


def test_plan_explicit() -> None:
    assert plan_explicit(d("2025-01-01"), d("2025-02-01"), "week") == split(
        iv("2025-01-01", "2025-02-01"), "week"
    )
    assert len(plan_explicit(d("2025-01-01"), d("2025-02-01"), "day")) == 31
    assert plan_explicit(d("2025-01-01 10:00"), d("2025-01-01 11:00"), "month") == [
        iv("2025-01-01 10:00", "2025-01-01 11:00")
    ]


@pytest.mark.parametrize(
    ("start", "end"), [("2025-02-01", "2025-01-01"), ("2025-01-01", "2025-01-01")]
)
def test_plan_explicit_rejects_reversed(start: str, end: str) -> None:
    with pytest.raises(
        ValueError, match=r"backfill start .* is not before its end .*give start < end"
    ):
        plan_explicit(d(start), d(end), "day")
