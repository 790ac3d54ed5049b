"""Property-based tests (hypothesis) of the interval math against its docstrings.

Each test's docstring states the exact property it checks. Two references are used, both
independent of the code under test:

* breakpoints: which instants a finite union of half-open intervals holds changes only at
  the intervals' starts and ends, so two unions hold the same instants when they agree at
  every start and end of both and at one instant before the earliest. The check is exact,
  microseconds included (:func:`_points`, :class:`_Count`);
* for minute-aligned intervals on a short range, brute-force sets of minutes.

Unit starts are computed here by :func:`_floor` and :func:`_shift`, not by the module's
``truncate`` and ``add_units``. Times are naive, 2024-01-01 to 2026-12-31.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dbt.adapters.sqlflow.intervals import (
    GRANULARITIES,
    Interval,
    add_units,
    ceil,
    clip,
    merge,
    missing,
    plan_explicit,
    plan_windows,
    split,
    subtract,
    truncate,
)

# Modest example counts keep the file at a few seconds; PER_UNIT runs once for each of the
# five units. No example database on disk: a failure prints its example to rerun.
PROPERTY = settings(max_examples=200, deadline=None, database=None)
PER_UNIT = settings(max_examples=40, deadline=None, database=None)

FIRST = datetime(2024, 1, 1)  # a Monday and a year start: every unit start drawn is >= FIRST
LAST = datetime(2026, 12, 31, 23, 59, 59, 999999)
US = timedelta(microseconds=1)

GRID = datetime(2024, 2, 28)  # minute grid for the brute-force reference, over a leap day
GRID_MINUTES = 2 * 24 * 60

SPAN = {
    "hour": timedelta(days=10),
    "day": timedelta(days=200),
    "week": timedelta(days=1000),
    "month": timedelta(days=1000),
    "year": timedelta(days=1000),
}
"""How far apart the times of one drawn case may be, so that a case makes few batches."""

NUDGES = (timedelta(0), -US, US, -timedelta(hours=1), timedelta(hours=1), timedelta(days=1))
"""Moves of a drawn instant onto, just before and just after an interval end."""


# -- independent unit arithmetic ---------------------------------------------------------

_FIXED = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
_MONTHS = {"month": 1, "year": 12}


def _floor(ts: datetime, unit: str) -> datetime:
    """The start of the unit holding ``ts``; weeks start on Monday."""
    if unit == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "day": day,
        "week": day - timedelta(days=day.weekday()),
        "month": day.replace(day=1),
        "year": day.replace(month=1, day=1),
    }[unit]


def _shift(start: datetime, unit: str, n: int) -> datetime:
    """The unit start ``n`` units after the unit start ``start`` (day 1: nothing to clamp)."""
    if unit in _FIXED:
        return start + n * _FIXED[unit]
    index = start.year * 12 + start.month - 1 + n * _MONTHS[unit]
    return start.replace(year=index // 12, month=index % 12 + 1)


def _is_unit_start(ts: datetime, unit: str) -> bool:
    return _floor(ts, unit) == ts


# -- independent coverage reference -------------------------------------------------------


class _Count:
    """How many of some intervals hold an instant: ``#(start <= t) - #(end <= t)``.

    Each interval adds ``[start <= t] - [end <= t]``, which is 1 exactly when
    ``start <= t < end`` (as ``start < end``). Overlaps count more than once.
    """

    def __init__(self, intervals: Iterable[Interval]) -> None:
        intervals = list(intervals)
        self.starts = sorted(iv.start for iv in intervals)
        self.ends = sorted(iv.end for iv in intervals)

    def __call__(self, ts: datetime) -> int:
        return bisect_right(self.starts, ts) - bisect_right(self.ends, ts)


def _points(*groups: Iterable[Interval], extra: Iterable[datetime | None] = ()) -> list[datetime]:
    """Every start and end of the groups, the extra instants, and one instant before all."""
    points = {ts for group in groups for iv in group for ts in (iv.start, iv.end)}
    points.update(ts for ts in extra if ts is not None)
    if not points:
        return [FIRST]
    return [min(points) - US, *sorted(points)]


def _minutes(intervals: Iterable[Interval]) -> set[int]:
    """The grid minutes held by minute-aligned intervals."""
    held: set[int] = set()
    for iv in intervals:
        first, last = ((ts - GRID) // timedelta(minutes=1) for ts in (iv.start, iv.end))
        assert GRID + timedelta(minutes=first) == iv.start, f"{iv} is off the minute grid"
        assert GRID + timedelta(minutes=last) == iv.end, f"{iv} is off the minute grid"
        held.update(range(first, last))
    return held


def _assert_separated(intervals: list[Interval]) -> None:
    """Sorted with a gap between neighbours: no overlap and no touching ends."""
    for left, right in itertools.pairwise(intervals):
        assert left.end < right.start, (left, right)


# -- strategies ---------------------------------------------------------------------------
# Strategies are built once here; composites draw integers from them and compute the times
# (building strategies inside a composite cost ~10 ms an example in validation).

FRACTIONS = st.tuples(st.integers(0, 255), st.integers(0, 255)).map(
    lambda b: (b[0] * 256 + b[1]) / 2**16
)
"""A fraction in [0, 1) from two bytes: hypothesis draws wide integer ranges mostly small,
narrow ones evenly."""
JITTERS = st.integers(0, 2**31)
"""Microseconds (up to 36 minutes) after a fraction's instant, mostly few."""
ALIGNMENTS = st.sampled_from((None, "minute", *GRANULARITIES))
"""Any microsecond, a whole minute, or a unit start."""
UNIT_ALIGNMENTS = {
    unit: st.sampled_from((None, "minute", *GRANULARITIES[: i + 1], unit))
    for i, unit in enumerate(GRANULARITIES)
}
"""For a case in one unit: no coarser unit starts (they would mostly fall before the case)."""
GRID_ALIGNMENTS = st.sampled_from(("minute", "hour", "day"))
POOL_SIZES = st.integers(2, 10)
PAIR_LISTS = {
    n: st.lists(st.tuples(st.integers(0, 9), st.integers(1, 4)), min_size=n, max_size=6)
    for n in (0, 1)
}
THREE_WAYS = st.integers(0, 2)
LAYOUTS = st.integers(0, 3)
UNITS = st.sampled_from(GRANULARITIES)
LOOKBACKS = st.integers(0, 5)
ONE_IN_8 = st.integers(0, 7).map(lambda n: n == 7)


def _align(ts: datetime, how: str | None) -> datetime:
    if how is None:
        return ts
    if how == "minute":
        return ts.replace(second=0, microsecond=0)
    return _floor(ts, how)


def _moment(
    draw: st.DrawFn,
    lo: datetime = FIRST,
    span: timedelta = LAST - FIRST,
    alignments: st.SearchStrategy[str | None] = ALIGNMENTS,
) -> datetime:
    """A naive datetime in ``[lo, lo + span]``, aligned as drawn unless that is before ``lo``."""
    ts = min(lo + span * draw(FRACTIONS) + US * draw(JITTERS), lo + span)
    aligned = _align(ts, draw(alignments))
    return aligned if aligned >= lo else ts


def _interval_lists(
    draw: st.DrawFn,
    count: int,
    min_size: int = 0,
    lo: datetime = FIRST,
    span: timedelta = LAST - FIRST,
    alignments: st.SearchStrategy[str | None] = ALIGNMENTS,
) -> list[list[Interval]]:
    """``count`` lists of intervals whose ends come from one sorted pool of 2 to 10 instants.

    A list is either ``min_size`` to 6 intervals each from a pool instant to one of the next
    four (they often touch, overlap, nest or repeat), in half of these lists with one more
    interval over the whole pool that holds all the others; or every other pool step from
    the first or second instant on (separate intervals, interleaved across lists).
    """
    size = draw(POOL_SIZES)
    pool = sorted({_moment(draw, lo, span, alignments) for _ in range(size)})
    if len(pool) < 2:
        pool = sorted({pool[0], lo, lo + span})
    last = len(pool) - 1
    lists = []
    for _ in range(count):
        layout = draw(LAYOUTS)
        if layout >= 2 and layout - 2 < last:
            lists.append([Interval(pool[i], pool[i + 1]) for i in range(layout - 2, last, 2)])
            continue
        pairs = draw(PAIR_LISTS[min_size])
        intervals = [Interval(pool[i % last], pool[min(i % last + k, last)]) for i, k in pairs]
        if layout == 1:
            intervals.append(Interval(pool[0], pool[last]))
        lists.append(intervals)
    return lists


@st.composite
def moments(draw: st.DrawFn) -> datetime:
    """A naive datetime from 2024-01-01 to 2026-12-31, see :func:`_moment`."""
    return _moment(draw)


@st.composite
def interval_lists(draw: st.DrawFn, count: int = 1, min_size: int = 0) -> list[list[Interval]]:
    """Lists of intervals from 2024-01-01 to 2026-12-31, see :func:`_interval_lists`."""
    return _interval_lists(draw, count, min_size)


@st.composite
def grid_interval_lists(draw: st.DrawFn, count: int = 1) -> list[list[Interval]]:
    """Lists of minute-aligned intervals on the short minute grid from ``GRID``."""
    return _interval_lists(draw, count, 0, GRID, timedelta(minutes=GRID_MINUTES), GRID_ALIGNMENTS)


def _span_start(draw: st.DrawFn, unit: str) -> datetime:
    """The start of a ``SPAN`` of ``unit`` within the drawn years."""
    return _moment(draw, FIRST, LAST - FIRST - SPAN[unit], st.just(None))


@dataclasses.dataclass(frozen=True)
class PlanCase:
    """The arguments of one :func:`plan_windows` call, and what its docstring derives."""

    loaded: list[Interval]
    begin: datetime | None
    now: datetime
    batch_size: str
    lookback: int
    data_start: datetime | None

    def plan(self) -> list[Interval]:
        return plan_windows(
            self.loaded,
            begin=self.begin,
            now=self.now,
            batch_size=self.batch_size,
            lookback=self.lookback,
            data_start=self.data_start,
        )

    @property
    def lower(self) -> datetime | None:
        """``begin``, else the first loaded start, else ``data_start``'s unit start."""
        if self.begin is not None:
            return self.begin
        if self.loaded:
            return min(iv.start for iv in self.loaded)
        if self.data_start is not None:
            return _floor(self.data_start, self.batch_size)
        return None

    @property
    def upper(self) -> datetime:
        """The end of the unit holding ``now`` (a unit start ``now`` opens its unit)."""
        return _shift(_floor(self.now, self.batch_size), self.batch_size, 1)

    @property
    def reread(self) -> Interval | None:
        """``[unit start of the last loaded end - lookback units, last loaded end)``."""
        if not self.loaded or not self.lookback:
            return None
        last_end = max(iv.end for iv in self.loaded)
        start = _shift(_floor(last_end, self.batch_size), self.batch_size, -self.lookback)
        return Interval(start, last_end)

    def in_horizon(self, ts: datetime) -> bool:
        return self.lower is not None and self.lower <= ts < self.upper


@st.composite
def plan_cases(
    draw: st.DrawFn, unit: str, lookback: st.SearchStrategy[int] = LOOKBACKS
) -> PlanCase:
    """Loaded intervals (rarely none), ``begin``, ``now`` and ``data_start`` within about one
    ``SPAN``; ``now`` and ``begin`` are often a unit start or on, just before or just after
    a loaded start or end."""
    lo = _span_start(draw, unit)
    span, alignments = SPAN[unit], UNIT_ALIGNMENTS[unit]
    (loaded,) = _interval_lists(draw, 1, 1, lo, span, alignments)
    if draw(ONE_IN_8):
        loaded = []
    ends = [iv.end for iv in loaded] + [iv.start for iv in loaded]
    ends += [max(ends)] * len(ends) if ends else []  # near the last end: the lookback span

    def near_loaded() -> datetime:
        way = draw(THREE_WAYS)
        if way == 0 and ends:
            return draw(st.sampled_from(ends)) + draw(st.sampled_from(NUDGES))
        if way == 1:
            return _floor(_moment(draw, lo, span, alignments), unit)
        return _moment(draw, lo, span, alignments)

    return PlanCase(
        loaded=loaded,
        begin=near_loaded() if draw(st.booleans()) else None,
        now=near_loaded(),
        batch_size=unit,
        lookback=draw(lookback),
        data_start=_moment(draw, lo, span, alignments) if draw(st.booleans()) else None,
    )


# -- Interval ---------------------------------------------------------------------------


@PROPERTY
@given(interval_lists(count=2, min_size=1))
def test_interval_intersection_holds_the_common_instants(lists: list[list[Interval]]) -> None:
    """a.overlaps(b) is symmetric and true exactly when a.intersection(b) is not None; the
    intersection holds an instant exactly when both a and b contain it."""
    a, b = lists[0][0], lists[1][0]
    common = a.intersection(b)
    assert a.overlaps(b) == b.overlaps(a) == (common is not None)
    held = _Count([common] if common else [])
    for ts in _points([a, b]):
        assert (held(ts) > 0) == (a.contains(ts) and b.contains(ts)), ts


# -- merge ------------------------------------------------------------------------------


@PROPERTY
@given(interval_lists())
def test_merge_is_sorted_separated_and_holds_the_same_instants(
    lists: list[list[Interval]],
) -> None:
    """merge(xs) is sorted with a gap between neighbours (overlapping and touching intervals
    become one), and holds an instant exactly when some interval of xs does."""
    (xs,) = lists
    got = merge(xs)
    _assert_separated(got)
    held, want = _Count(got), _Count(xs)
    for ts in _points(xs, got):
        assert (held(ts) > 0) == (want(ts) > 0), ts


@PROPERTY
@given(grid_interval_lists())
def test_merge_matches_minute_sets(lists: list[list[Interval]]) -> None:
    """On minute-aligned intervals, the minutes merge(xs) holds are the union of xs's."""
    (xs,) = lists
    assert _minutes(merge(xs)) == _minutes(xs)


@PROPERTY
@given(st.data(), interval_lists())
def test_merge_ignores_order_and_is_idempotent(
    data: st.DataObject, lists: list[list[Interval]]
) -> None:
    """merge gives the same list for any order of its input, and merge(merge(xs)) is
    merge(xs)."""
    (xs,) = lists
    merged = merge(xs)
    assert merge(data.draw(st.permutations(xs))) == merged
    assert merge(merged) == merged


# -- subtract / missing / clip ----------------------------------------------------------


@PROPERTY
@given(interval_lists(count=2))
def test_subtract_keeps_instants_of_a_in_no_b(lists: list[list[Interval]]) -> None:
    """subtract(a, b) is merged and sorted (gaps between neighbours), overlaps no interval
    of b, and holds an instant exactly when a does and b does not."""
    a, b = lists
    got = subtract(a, b)
    _assert_separated(got)
    assert not any(x.overlaps(y) for x in got for y in b)
    held, in_a, in_b = _Count(got), _Count(a), _Count(b)
    for ts in _points(a, b, got):
        assert (held(ts) > 0) == (in_a(ts) > 0 and in_b(ts) == 0), ts


@PROPERTY
@given(grid_interval_lists(count=2))
def test_subtract_matches_minute_sets(lists: list[list[Interval]]) -> None:
    """On minute-aligned intervals, subtract(a, b) holds the minutes of a minus those of b."""
    a, b = lists
    assert _minutes(subtract(a, b)) == _minutes(a) - _minutes(b)


@PROPERTY
@given(interval_lists(count=2, min_size=1))
def test_missing_and_clip_partition_within(lists: list[list[Interval]]) -> None:
    """For any ``within``: clip(loaded, within) holds the instants of ``within`` some loaded
    interval holds, missing(loaded, within) the others; each is sorted with gaps, they
    overlap nowhere, and together they merge back into exactly ``[within]``."""
    loaded, within = lists[0], lists[1][0]
    gaps, kept = missing(loaded, within), clip(loaded, within)
    _assert_separated(gaps)
    _assert_separated(kept)
    assert not any(g.overlaps(k) for g in gaps for k in kept)
    assert merge(gaps + kept) == [within]
    in_gaps, in_kept, in_loaded = _Count(gaps), _Count(kept), _Count(loaded)
    for ts in _points(loaded, [within], gaps, kept):
        assert (in_kept(ts) > 0) == (within.contains(ts) and in_loaded(ts) > 0), ts
        assert (in_gaps(ts) > 0) == (within.contains(ts) and in_loaded(ts) == 0), ts


# -- split / plan_explicit --------------------------------------------------------------


@st.composite
def split_cases(draw: st.DrawFn, unit: str) -> Interval:
    """An interval no longer than the unit's ``SPAN``."""
    lo = _span_start(draw, unit)
    a, b = (_moment(draw, lo, SPAN[unit], UNIT_ALIGNMENTS[unit]) for _ in range(2))
    return Interval(min(a, b), max(a, b) if a != b else b + US)


def _assert_tiles(pieces: list[Interval], start: datetime, end: datetime) -> None:
    """The pieces run from start to end, each starting where the previous one ends."""
    assert pieces, "no pieces"
    assert pieces[0].start == start
    assert pieces[-1].end == end
    for left, right in itertools.pairwise(pieces):
        assert left.end == right.start, (left, right)


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_split_tiles_the_interval_in_units(unit: str, data: st.DataObject) -> None:
    """split(iv, unit) runs from iv.start to iv.end with each piece starting where the last
    ended (so: in order, no overlap, exactly iv). Each piece lies within one unit; a piece
    is a whole unit ``[unit start, next unit start)`` except the first when iv.start is no
    unit start and the last when iv.end is no unit start."""
    interval = data.draw(split_cases(unit), label="interval")
    pieces = split(interval, unit)
    _assert_tiles(pieces, interval.start, interval.end)
    for i, piece in enumerate(pieces):
        unit_start = _floor(piece.start, unit)
        assert piece.end <= _shift(unit_start, unit, 1), piece
        whole = piece.start == unit_start and piece.end == _shift(unit_start, unit, 1)
        partial_first = i == 0 and not _is_unit_start(interval.start, unit)
        partial_last = i == len(pieces) - 1 and not _is_unit_start(interval.end, unit)
        assert whole or partial_first or partial_last, (i, piece)


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_explicit_covers_exactly_start_to_end(unit: str, data: st.DataObject) -> None:
    """plan_explicit(start, end, size) runs from start to end with no gap or overlap, and
    is split([start, end), size)."""
    interval = data.draw(split_cases(unit), label="interval")
    got = plan_explicit(interval.start, interval.end, unit)
    _assert_tiles(got, interval.start, interval.end)
    assert got == split(interval, unit)


@PROPERTY
@given(moments(), moments(), UNITS)
def test_plan_explicit_rejects_start_not_before_end(
    start: datetime, end: datetime, unit: str
) -> None:
    """plan_explicit raises ValueError when start >= end."""
    start, end = max(start, end), min(start, end)
    with pytest.raises(ValueError, match="is not before its end"):
        plan_explicit(start, end, unit)


# -- truncate / ceil / add_units --------------------------------------------------------


@PROPERTY
@given(moments(), UNITS)
def test_truncate_and_ceil_find_unit_starts(ts: datetime, unit: str) -> None:
    """truncate(ts) is the unit start at or before ts (ts < next unit start); ceil(ts) is ts
    when ts is a unit start, else the next unit start."""
    start = truncate(ts, unit)
    assert start == _floor(ts, unit)
    assert start <= ts < add_units(start, unit, 1)
    assert ceil(ts, unit) == (ts if start == ts else _shift(start, unit, 1))


@PROPERTY
@given(moments(), UNITS, st.integers(-40, 40))
def test_add_units_moves_by_whole_units(ts: datetime, unit: str, n: int) -> None:
    """add_units on a unit start gives the unit start n units away. Hours, days and weeks
    add a fixed length to any ts; months and years keep the time of day and the day of
    month clamped to the target month's length."""
    assert add_units(_floor(ts, unit), unit, n) == _shift(_floor(ts, unit), unit, n)
    got = add_units(ts, unit, n)
    if unit in _FIXED:
        assert got == ts + n * _FIXED[unit]
        return
    month_start = _shift(ts.replace(day=1), unit, n)
    days = calendar.monthrange(month_start.year, month_start.month)[1]
    assert got == month_start.replace(day=min(ts.day, days))


# -- plan_windows -----------------------------------------------------------------------
# Each property runs per batch_size so that every unit gets its share of examples.


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_are_sorted_disjoint_batches_in_range(unit: str, data: st.DataObject) -> None:
    """The windows are in time order without overlap (each ends at or before the next
    starts), lie within ``[lower, upper)`` (lower: begin, else first loaded start, else
    data_start's unit start; upper: end of the unit holding now), each lies within one
    batch_size unit, and where two windows touch they meet at a unit start. Empty when
    there is no lower bound or lower >= upper."""
    case = data.draw(plan_cases(unit), label="case")
    got = case.plan()
    if case.lower is None or case.lower >= case.upper:
        assert got == []
        return
    for left, right in itertools.pairwise(got):
        assert left.end <= right.start, (left, right)
        if left.end == right.start:
            assert _is_unit_start(right.start, unit), (left, right)
    for window in got:
        assert case.lower <= window.start and window.end <= case.upper, window
        assert window.end <= _shift(_floor(window.start, unit), unit, 1), window


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_backfill_every_gap(unit: str, data: st.DataObject) -> None:
    """Every instant in ``[lower, upper)`` that no loaded interval holds is in a window."""
    case = data.draw(plan_cases(unit), label="case")
    got = case.plan()
    in_window, in_loaded = _Count(got), _Count(case.loaded)
    for ts in _points(case.loaded, got, extra=(case.lower, case.upper)):
        if case.in_horizon(ts) and in_loaded(ts) == 0:
            assert in_window(ts) > 0, ts


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_reread_loaded_time_only_in_the_lookback_span(
    unit: str, data: st.DataObject
) -> None:
    """A loaded instant is in a window only when it lies in the lookback span
    ``[unit start of the last loaded end - lookback units, last loaded end)``; with
    lookback 0 no loaded instant is in a window. Windowed instants lie in [lower, upper)."""
    case = data.draw(plan_cases(unit), label="case")
    got = case.plan()
    in_window, in_loaded, reread = _Count(got), _Count(case.loaded), case.reread
    spans = [reread] if reread else []
    for ts in _points(case.loaded, got, spans, extra=(case.lower, case.upper)):
        if in_window(ts):
            assert case.in_horizon(ts), ts
            assert in_loaded(ts) == 0 or (reread is not None and reread.contains(ts)), ts


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_reread_the_whole_lookback_span(unit: str, data: st.DataObject) -> None:
    """With lookback >= 1, every instant of the lookback span (see above) that lies in
    ``[lower, upper)`` is in a window: the span is cut only by the lower and upper bounds."""
    case = data.draw(plan_cases(unit, lookback=st.integers(1, 5)), label="case")
    got = case.plan()
    in_window, reread = _Count(got), case.reread
    spans = [reread] if reread else []
    for ts in _points(case.loaded, got, spans, extra=(case.lower, case.upper)):
        if reread is not None and reread.contains(ts) and case.in_horizon(ts):
            assert in_window(ts) > 0, ts


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(extra=st.integers(1, 3), data=st.data())
def test_plan_windows_lookback_0_fully_loaded_plans_nothing(
    unit: str, extra: int, data: st.DataObject
) -> None:
    """With lookback 0 and ``[lower, X)`` loaded, X a unit start at or after the end of the
    unit holding now (``upper``), nothing is planned."""
    case = data.draw(plan_cases(unit, lookback=st.just(0)), label="case")
    assume(case.lower is not None)
    assert case.lower is not None
    loaded_to = _shift(_floor(case.now, unit), unit, extra)
    assume(case.lower < loaded_to)
    full = dataclasses.replace(case, loaded=[*case.loaded, Interval(case.lower, loaded_to)])
    assert full.plan() == []


@PROPERTY
@given(moments(), UNITS, st.data())
def test_plan_windows_plans_the_unit_that_starts_at_now(
    now: datetime, unit: str, data: st.DataObject
) -> None:
    """Loaded up to now, now a unit start, lookback 0: the unit ``[now, next unit start)``
    holds now and is not loaded, so it is the one window (loaded up to the first unit start
    at or after now is not "everything": only up to the end of now's unit is)."""
    now = max(_floor(now, unit), _shift(FIRST, unit, 1))
    start = FIRST + (now - FIRST) * data.draw(FRACTIONS, label="fraction")  # before now
    case = PlanCase([Interval(start, now)], None, now, unit, 0, None)
    assert case.plan() == [Interval(now, _shift(now, unit, 1))]


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_first_build_runs_from_data_starts_unit(
    unit: str, data: st.DataObject
) -> None:
    """Nothing loaded and no begin: the windows are the whole units from the unit holding
    data_start to the end of the unit holding now (none when data_start is later), for
    any lookback."""
    case = data.draw(plan_cases(unit), label="case")
    data_start = case.data_start or case.now
    first = dataclasses.replace(case, loaded=[], begin=None, data_start=data_start)
    expected, start = [], _floor(data_start, unit)
    while start < first.upper:
        expected.append(Interval(start, _shift(start, unit, 1)))
        start = expected[-1].end
    assert first.plan() == expected


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(data=st.data())
def test_plan_windows_after_loading_the_plan_lookback_0_plans_nothing(
    unit: str, data: st.DataObject
) -> None:
    """Once the planned windows are loaded too, the same run with lookback 0 plans
    nothing (the lower bound does not move: windows start at or after it)."""
    case = data.draw(plan_cases(unit), label="case")
    again = dataclasses.replace(case, loaded=[*case.loaded, *case.plan()], lookback=0)
    assert again.plan() == []


@pytest.mark.parametrize("unit", GRANULARITIES)
@PER_UNIT
@given(quarters=st.integers(-12 * 4, 14 * 4), data=st.data())
def test_plan_windows_takes_aware_times_as_utc(
    unit: str, quarters: int, data: st.DataObject
) -> None:
    """now, begin and data_start given time-zone-aware (UTC-12:00 to +14:00, each or not)
    plan as their naive UTC values."""
    case = data.draw(plan_cases(unit), label="case")
    zone = timezone(timedelta(minutes=15 * quarters))

    def aware(ts: datetime | None) -> datetime | None:
        if ts is None or not data.draw(st.booleans()):
            return ts
        return (ts + zone.utcoffset(None)).replace(tzinfo=zone)

    shifted = dataclasses.replace(
        case, now=aware(case.now), begin=aware(case.begin), data_start=aware(case.data_start)
    )
    assert shifted.plan() == case.plan()


@PROPERTY
@given(moments(), UNITS, LOOKBACKS)
def test_plan_windows_without_lower_bound_plans_nothing(
    now: datetime, unit: str, lookback: int
) -> None:
    """No begin, nothing loaded and no data_start: nothing is planned."""
    assert PlanCase([], None, now, unit, lookback, None).plan() == []


@PROPERTY
@given(moments(), UNITS, st.integers(max_value=-1))
def test_plan_windows_rejects_negative_lookback(now: datetime, unit: str, lookback: int) -> None:
    """A lookback below 0 raises ValueError."""
    with pytest.raises(ValueError, match="lookback must be an integer >= 0"):
        PlanCase([], now, now, unit, lookback, None).plan()
