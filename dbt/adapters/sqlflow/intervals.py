"""Interval arithmetic: half-open ``[start, end)`` ranges of naive UTC datetimes.

Every interval here includes its ``start`` and excludes its ``end``, so consecutive
intervals ``[a, b)`` and ``[b, c)`` touch without overlapping and merge into ``[a, c)``.
All datetimes are naive and mean UTC (no daylight saving time, so a day is always
24 hours). Weeks start on Monday, as DuckDB's ``date_trunc('week', ...)``.

The functions are pure: no database, no clock (``now`` is always passed in), no dbt.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TypeVar

T = TypeVar("T")

GRANULARITIES: tuple[str, ...] = ("hour", "day", "week", "month", "year")
"""Units of time for partitions and batches, finest first."""


@dataclass(frozen=True, order=True)
class Interval:
    """The half-open range ``[start, end)``: ``start`` is inclusive, ``end`` exclusive.

    Attributes:
        start: First instant in the range (inclusive), naive UTC.
        end: First instant after the range (exclusive), naive UTC; later than ``start``.

    Raises:
        ValueError: When ``end`` is not later than ``start``, or a bound is not a naive
            ``datetime``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise ValueError(
                    f"interval {name} must be a datetime, got {type(value).__name__} {value!r}"
                )
            if value.tzinfo is not None:
                raise ValueError(
                    f"interval {name} {value.isoformat()} has a time zone: sqlflow works in "
                    "naive UTC; convert it with to_utc_naive()"
                )
        if self.start >= self.end:
            raise ValueError(
                f"interval start {self.start.isoformat()} is not before its end "
                f"{self.end.isoformat()}: an interval [start, end) needs start < end"
            )

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"

    def contains(self, ts: datetime) -> bool:
        """True when ``start <= ts < end`` (start inclusive, end exclusive)."""
        return self.start <= ts < self.end

    def overlaps(self, other: Interval) -> bool:
        """True when the two half-open intervals share at least one instant."""
        return self.start < other.end and other.start < self.end

    def intersection(self, other: Interval) -> Interval | None:
        """The common part of two intervals (``[max start, min end)``), or None."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Interval(start, end) if start < end else None


def check_granularity(granularity: str, *, what: str = "granularity") -> str:
    """Return ``granularity`` when it is one of :data:`GRANULARITIES`.

    Args:
        granularity: The unit name to check.
        what: How the caller's setting is called in the error (``batch_size``, say).

    Raises:
        ValueError: For any other value, naming the allowed ones.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown {what} {granularity!r}: use one of {', '.join(GRANULARITIES)}")
    return granularity


def to_utc_naive(value: datetime | date) -> datetime:
    """A naive UTC datetime for a datetime or date.

    A time-zone-aware datetime is converted to UTC and made naive; a naive one is taken
    to be UTC already; a date becomes its midnight.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise ValueError(f"expected a datetime or date, got {type(value).__name__} {value!r}")


def parse_timestamp(text: str | date | datetime) -> datetime:
    """Parse an ISO 8601 date or timestamp into a naive UTC datetime.

    ``'2025-03-04'`` is midnight of that day; ``'2025-03-04T05:30'``, ``'2025-03-04
    05:30:00.5'`` and ``'2025-03-04T05:30:00+02:00'`` / ``'...Z'`` are accepted, an
    offset being converted to UTC. A ``date`` or ``datetime`` (as YAML may hand over
    ``--vars``) is taken as is (converted to naive UTC).

    Raises:
        ValueError: When the text is not an ISO date or timestamp; the message shows
            the bad value and the accepted forms.
    """
    if isinstance(text, (date, datetime)):
        return to_utc_naive(text)
    if not isinstance(text, str):
        raise ValueError(
            f"cannot read {text!r} ({type(text).__name__}) as a date or timestamp: "
            "give an ISO 8601 string such as '2025-03-04' or '2025-03-04T05:00:00'"
        )
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat has no 'Z'
    try:
        if len(value) == 10 and value[4] == "-":
            return to_utc_naive(date.fromisoformat(value))
        return to_utc_naive(datetime.fromisoformat(value))
    except ValueError:
        pass
    raise ValueError(
        f"cannot read {text!r} as a date or timestamp: give an ISO 8601 date or timestamp "
        "such as '2025-03-04', '2025-03-04T05:00:00' or '2025-03-04T05:00:00+02:00' "
        "(an offset or 'Z' is converted to UTC)"
    )


def truncate(ts: datetime, granularity: str) -> datetime:
    """The start of the ``granularity`` unit containing ``ts`` (as DuckDB's ``date_trunc``).

    The unit is ``[truncate(ts), add_units(truncate(ts), granularity, 1))``, start
    inclusive. Weeks start on Monday.
    """
    check_granularity(granularity)
    if granularity == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def add_units(ts: datetime, granularity: str, n: int) -> datetime:
    """``ts`` moved by ``n`` units of ``granularity`` (``n`` may be negative).

    Months and years keep the day of month, clamped to the month's length (January 31st
    plus one month is February 28th or 29th), as DuckDB's interval arithmetic; on unit
    starts (see :func:`truncate`) this never clamps.
    """
    check_granularity(granularity)
    if granularity == "hour":
        return ts + timedelta(hours=n)
    if granularity == "day":
        return ts + timedelta(days=n)
    if granularity == "week":
        return ts + timedelta(weeks=n)
    months = n if granularity == "month" else 12 * n
    year, month0 = divmod(ts.year * 12 + ts.month - 1 + months, 12)
    if not 1 <= year <= 9999:
        raise ValueError(f"{ts.isoformat()} plus {n} {granularity}(s) is out of range")
    day = min(ts.day, calendar.monthrange(year, month0 + 1)[1])
    return ts.replace(year=year, month=month0 + 1, day=day)


def ceil(ts: datetime, granularity: str) -> datetime:
    """The first unit start at or after ``ts`` (``ts`` itself when it is a unit start)."""
    start = truncate(ts, granularity)
    return start if start == ts else add_units(start, granularity, 1)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering exactly the same instants.

    Overlapping and touching intervals (``[a, b)`` and ``[b, c)``) become one ``[a, c)``.
    """
    result: list[Interval] = []
    for iv in sorted(intervals):
        if result and iv.start <= result[-1].end:
            if iv.end > result[-1].end:
                result[-1] = Interval(result[-1].start, iv.end)
        else:
            result.append(iv)
    return result


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The instants of ``a`` that are in no interval of ``b``, merged and sorted.

    Half-open throughout: removing ``[b1, b2)`` from ``[a1, a2)`` keeps ``[a1, b1)``
    (``b1`` itself is removed) and ``[b2, a2)`` (``b2`` itself is kept).
    """
    cut = merge(b)
    result: list[Interval] = []
    j = 0
    for iv in merge(a):
        start = iv.start
        while j < len(cut) and cut[j].end <= start:
            j += 1
        k = j
        while k < len(cut) and cut[k].start < iv.end:
            if cut[k].start > start:
                result.append(Interval(start, cut[k].start))
            start = max(start, cut[k].end)
            k += 1
        if start < iv.end:
            result.append(Interval(start, iv.end))
    return result


def overlay(layers: Iterable[tuple[Interval, T | None]]) -> list[tuple[Interval, T]]:
    """Lay intervals one over another, in order: each instant keeps the value of the last
    layer covering it; a layer whose value is None clears what it covers.

    The pieces of one layer stay separate from those of others, even where they touch
    (two loads side by side are two rows); a layer cut by a later one keeps its parts on
    either side (``[a, b)`` under ``[c, d)`` keeps ``[a, c)`` and ``[d, b)``).

    Returns:
        ``(piece, value)`` pairs, sorted by piece.
    """
    pieces: list[tuple[Interval, int]] = []
    values: list[T | None] = []
    for index, (layer, value) in enumerate(layers):
        kept: list[tuple[Interval, int]] = []
        for piece, owner in pieces:
            if piece.end <= layer.start or piece.start >= layer.end:
                kept.append((piece, owner))
                continue
            if piece.start < layer.start:
                kept.append((Interval(piece.start, layer.start), owner))
            if piece.end > layer.end:
                kept.append((Interval(layer.end, piece.end), owner))
        if value is not None:
            kept.append((layer, index))
        pieces = kept
        values.append(value)
    found = [(piece, values[owner]) for piece, owner in sorted(pieces, key=lambda p: p[0])]
    return [(piece, value) for piece, value in found if value is not None]


def differences(
    current: Sequence[tuple[Interval, T]], wanted: Sequence[tuple[Interval, T]]
) -> list[tuple[Interval, T | None]]:
    """Where two layouts differ, and what ``wanted`` has there.

    Both are disjoint ``(piece, value)`` pairs, as :func:`overlay` returns them. Each
    returned piece ``[start, end)`` is time whose value in ``wanted`` (None where
    ``wanted`` has no piece) is not its value in ``current``; touching pieces with one
    wanted value are one piece. Laid over ``current`` (:func:`overlay`), they give
    ``wanted`` instant by instant.

    Returns:
        ``(piece, wanted value or None)`` pairs, sorted by piece.
    """
    points = sorted({t for piece, _ in (*current, *wanted) for t in (piece.start, piece.end)})
    starts = [piece.start for piece, _ in current], [piece.start for piece, _ in wanted]
    result: list[tuple[Interval, T | None]] = []
    for start, end in pairwise(points):
        have = _value_at(current, starts[0], start)
        want = _value_at(wanted, starts[1], start)
        if have == want:
            continue
        if result and result[-1][0].end == start and result[-1][1] == want:
            result[-1] = (Interval(result[-1][0].start, end), want)
        else:
            result.append((Interval(start, end), want))
    return result


def _value_at(
    layout: Sequence[tuple[Interval, T]], starts: list[datetime], instant: datetime
) -> T | None:
    """The value of the piece of a sorted, disjoint layout (its pieces' ``starts``) that
    holds ``instant``."""
    index = bisect_right(starts, instant) - 1
    if index >= 0 and layout[index][0].contains(instant):
        return layout[index][1]
    return None


def missing(loaded: Iterable[Interval], within: Interval) -> list[Interval]:
    """The gaps: parts of ``within`` (``[start, end)``) covered by no loaded interval."""
    return subtract([within], loaded)


def clip(intervals: Iterable[Interval], within: Interval) -> list[Interval]:
    """The merged intervals cut to ``within`` (``[start, end)``); empty parts dropped."""
    result = []
    for iv in merge(intervals):
        part = iv.intersection(within)
        if part is not None:
            result.append(part)
    return result


def split(interval: Interval, batch_size: str) -> list[Interval]:
    """Cut an interval at every ``batch_size`` unit boundary, in time order.

    Each piece is ``[start, end)`` within one unit; only the first and last pieces can be
    shorter than a unit, when ``interval`` does not start or end on a unit boundary.
    ``split([2025-03-01, 2025-03-04), 'day')`` gives three days.
    """
    check_granularity(batch_size, what="batch_size")
    result = []
    current = interval.start
    while current < interval.end:
        following = min(add_units(truncate(current, batch_size), batch_size, 1), interval.end)
        result.append(Interval(current, following))
        current = following
    return result


def plan_windows(
    loaded: list[Interval],
    *,
    begin: datetime | None,
    now: datetime,
    batch_size: str,
    lookback: int,
    data_start: datetime | None,
) -> list[Interval]:
    """The batches an incremental run processes, in time order.

    The planned range runs from its lower bound (inclusive) to the end of the
    ``batch_size`` unit that contains ``now`` (exclusive). The lower bound is ``begin``
    when given, else the start of the first loaded interval, else ``data_start``
    truncated to its ``batch_size`` unit (the earliest event time the model returns, for
    a first build). Within that range the run processes:

    * every part not loaded yet (gaps included), and
    * the ``lookback`` units before the unit holding the last loaded end (late data):
      ``[truncate(last end) - lookback units, last end)``, never before the lower bound.
      As in dbt's microbatch, where ``lookback`` batches before the current one are
      re-read: a model loaded up to 06:00 today re-reads yesterday with ``lookback=1``,
      on every run of the day,

    merged and cut into ``batch_size`` batches (:func:`split`).

    Args:
        loaded: The model's loaded intervals (any order, may overlap).
        begin: Earliest time to load (inclusive), or None.
        now: The current time (naive UTC, or aware and converted).
        batch_size: Unit of one batch: hour, day, week, month or year.
        lookback: Units re-read before the last loaded end; 0 re-reads nothing.
        data_start: Earliest event time of the model's data, used only when there is
            neither ``begin`` nor a loaded interval; None when unknown or empty.

    Returns:
        The batches, each ``[start, end)``; empty when there is nothing to load (also when
        the lower bound is unknown: no ``begin``, nothing loaded, no ``data_start``).

    Raises:
        ValueError: For an unknown ``batch_size`` or a ``lookback`` that is not an
            integer ``>= 0``.
    """
    _check_batching(batch_size, lookback)
    done = merge(loaded)
    lower = _lower_bound(done, begin=begin, batch_size=batch_size, data_start=data_start)
    if lower is None:
        return []
    upper = add_units(truncate(to_utc_naive(now), batch_size), batch_size, 1)
    if lower >= upper:
        return []
    horizon = Interval(lower, upper)
    todo = missing(done, horizon)
    if done and lookback:
        last_end = done[-1].end
        reread_start = add_units(truncate(last_end, batch_size), batch_size, -lookback)
        todo += clip([Interval(reread_start, last_end)], horizon)
    return [batch for iv in merge(todo) for batch in split(iv, batch_size)]


def _check_batching(batch_size: str, lookback: int) -> None:
    """Raise ValueError for an unknown ``batch_size`` or a ``lookback`` that is not an int >= 0."""
    check_granularity(batch_size, what="batch_size")
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 0:
        raise ValueError(
            f"lookback must be an integer >= 0 (a number of {batch_size} units), got {lookback!r}"
        )


def _lower_bound(
    done: list[Interval],
    *,
    begin: datetime | None,
    batch_size: str,
    data_start: datetime | None,
) -> datetime | None:
    """Where :func:`plan_windows` starts planning (inclusive), or None when unknown.

    Args:
        done: The loaded intervals, merged and in time order.
        begin: Earliest time to load, or None; wins when given.
        batch_size: Unit ``data_start`` is truncated to.
        data_start: Earliest event time of the model's data (a first build), or None.

    Returns:
        ``begin``, else the start of the first loaded interval, else ``data_start``
        truncated to its ``batch_size`` unit, else None.
    """
    if begin is not None:
        return to_utc_naive(begin)
    if done:
        return done[0].start
    if data_start is not None:
        return truncate(to_utc_naive(data_start), batch_size)
    return None


def plan_explicit(start: datetime, end: datetime, batch_size: str) -> list[Interval]:
    """The batches of an explicit backfill of exactly ``[start, end)``, in time order.

    Args:
        start: First instant to reprocess (inclusive).
        end: First instant not reprocessed (exclusive).
        batch_size: Unit of one batch: hour, day, week, month or year.

    Raises:
        ValueError: When ``start`` is not before ``end`` (with both values and the fix),
            or ``batch_size`` is unknown.
    """
    check_granularity(batch_size, what="batch_size")
    start, end = to_utc_naive(start), to_utc_naive(end)
    if start >= end:
        raise ValueError(
            f"backfill start {start.isoformat()} is not before its end {end.isoformat()}: "
            "the range [start, end) includes start and excludes end; give start < end"
        )
    return split(Interval(start, end), batch_size)
