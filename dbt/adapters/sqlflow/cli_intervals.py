"""``dbt-sqlflow intervals MODEL``: a windowed model's loaded ranges and gaps, from sqlflow's state.

Any sqlflow_incremental model that loads in time windows (``event_time`` set, or a time
``partition_by``) has its loaded ``[start, end)`` ranges recorded in ``intervals``, with
or without partitions. This command shows them merged, the last load of each range (its
``load_id`` and ``finished_at``, from ``loads``), and the gaps: the parts not loaded
between where the next run starts planning and now. The model, the DuckDB file and the
state schema are found as :mod:`~dbt.adapters.sqlflow.cli_state` finds them; the
database is opened read-only.

Every failure is a :class:`~dbt.adapters.sqlflow.cli_state.StateCommandError` whose
message is one line naming the thing that is missing or wrong and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow.cli_state import (
    ModelKind,
    StateCommandError,
    StateLocation,
    is_sqlflow,
    iso,
    manifest_path,
    model_node,
    open_state,
    project_dirs,
    resolve_state_location,
    text_table,
    when,
)
from dbt.adapters.sqlflow.config import partition_by_mapping
from dbt.adapters.sqlflow.intervals import Interval, merge, missing, parse_timestamp
from dbt.adapters.sqlflow.sql import utc_now
from dbt.adapters.sqlflow.state import IntervalRow

LOAD_ID_CHARS = 12


def _time_partition(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    partition_by = partition_by_mapping(config.get("partition_by"))
    return partition_by if partition_by and partition_by.get("granularity") else None


def _is_windowed(config: Mapping[str, Any]) -> bool:
    return is_sqlflow(config) and bool(config.get("event_time") or _time_partition(config))


WINDOWED = ModelKind("windowed", "intervals", "event_time", _is_windowed)


@dataclass(frozen=True)
class WindowedModel:
    """A sqlflow model that loads in time windows, as the manifest describes it.

    Attributes:
        unique_id: The model's unique_id (sqlflow's state records intervals under it).
        name: The model's name.
        relation: The rendered relation (``"db"."schema"."table"``).
        event_time: The time column it windows on (``event_time``, else the time
            ``partition_by`` field).
        batch_size: The unit of one batch (``batch_size``, else the partition
            granularity, else ``day``).
        begin: ``begin`` from the config, naive UTC; None when not set.
    """

    unique_id: str
    name: str
    relation: str
    event_time: str
    batch_size: str
    begin: datetime | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    """The model's config, as the manifest has it."""


@dataclass(frozen=True)
class LoadedRange:
    """A merged loaded range ``[start, end)`` and the last load that covered part of it.

    Attributes:
        interval: The range, start inclusive, end exclusive.
        last_load_id: The load whose ``finished_at`` is latest among the range's rows.
        last_finished_at: That load's ``finished_at`` (naive UTC); None when ``loads``
            has no row for it.
    """

    interval: Interval
    last_load_id: str | None
    last_finished_at: datetime | None


@dataclass(frozen=True)
class IntervalReport:
    """Everything ``dbt-sqlflow intervals`` shows.

    Attributes:
        model: The model.
        location: Where its state was read.
        now: The end of the span gaps are looked for in (exclusive).
        since: The start of that span (inclusive): ``begin``, else the earliest window
            the model ever loaded, where its next run starts planning; None when unknown.
        loaded: The loaded ranges, merged, in time order.
        gaps: The parts of ``[since, now)`` not loaded, in time order.
    """

    model: WindowedModel
    location: StateLocation
    now: datetime
    since: datetime | None
    loaded: list[LoadedRange]
    gaps: list[Interval]

    def summary(self) -> dict[str, Any]:
        """``loaded_ranges``, ``gaps``, ``loaded_seconds``, ``gap_seconds``,
        ``loaded_until`` (end of the last range), ``last_load_id`` and
        ``last_finished_at`` (the latest load over all ranges)."""
        done = [r for r in self.loaded if r.last_finished_at is not None]
        last = max(done, key=lambda r: r.last_finished_at or datetime.min) if done else None
        return {
            "loaded_ranges": len(self.loaded),
            "gaps": len(self.gaps),
            "loaded_seconds": _seconds(r.interval for r in self.loaded),
            "gap_seconds": _seconds(self.gaps),
            "loaded_until": self.loaded[-1].interval.end if self.loaded else None,
            "last_load_id": last.last_load_id if last else None,
            "last_finished_at": last.last_finished_at if last else None,
        }


def _seconds(intervals: Iterable[Interval]) -> int:
    return int(sum((iv.end - iv.start).total_seconds() for iv in intervals))


# -- manifest ----------------------------------------------------------------------------


def find_windowed_model(manifest: Path, model: str) -> WindowedModel:
    """The windowed sqlflow model named ``model`` (a name or a unique_id) in a manifest.

    Raises:
        StateCommandError: The manifest is missing or unreadable, no model (or several)
            has that name, or the model is not a windowed sqlflow_incremental model.
    """
    node = model_node(manifest, model, WINDOWED)
    config = node.get("config") or {}
    partition = _time_partition(config)
    event_time = config.get("event_time") or (partition or {}).get("field")
    if not event_time:
        raise StateCommandError(
            f"model '{node['unique_id']}': has no event_time (nor a partition_by with a"
            " granularity), so sqlflow loads it whole and records no intervals. Fix: set"
            " event_time to its time column, e.g. event_time='event_ts', and run it"
        )
    batch_size = config.get("batch_size") or (partition or {}).get("granularity") or "day"
    try:
        begin = parse_timestamp(config["begin"]) if config.get("begin") else None
    except ValueError:
        begin = None  # a run refuses it; the gaps then start at the first loaded window
    return WindowedModel(
        node["unique_id"],
        node["name"],
        node["relation_name"],
        event_time,
        batch_size,
        begin,
        config,
    )


# -- state -------------------------------------------------------------------------------


def loaded_ranges(
    rows: Iterable[IntervalRow], finished: Mapping[str, datetime]
) -> list[LoadedRange]:
    """The stored interval rows merged into ranges, each with its latest load.

    Args:
        rows: The model's rows of ``intervals`` (any order, may touch or overlap).
        finished: ``finished_at`` of each load, by ``load_id``.
    """
    rows = list(rows)
    ranges = []
    for merged in merge(r.interval for r in rows):
        inside = [r for r in rows if merged.start <= r.interval.start < merged.end]
        last = max(
            inside, key=lambda r: (finished.get(r.load_id or "", datetime.min), r.load_id or "")
        )
        ranges.append(LoadedRange(merged, last.load_id, finished.get(last.load_id or "")))
    return ranges


def read_intervals(
    location: StateLocation, model: WindowedModel
) -> tuple[list[LoadedRange], datetime | None]:
    """The model's loaded ranges and where its gaps start, from the file opened read-only.

    Raises:
        StateCommandError: The file is missing or locked by a running dbt, holds no
            sqlflow state, or no load of the model.
    """
    with open_state(location, model.name, "intervals") as store:
        rows = store.interval_rows(model.unique_id)
        loads = store.loads(model.unique_id)
    if not rows and not loads:
        raise StateCommandError(
            f"model '{model.unique_id}': no intervals of it recorded in {location.source}"
            f" ({location.state_schema}.intervals). Fix: run it first: dbt run -s {model.name}"
        )
    starts = [w.window_start for w in loads if w.window_start is not None]
    starts += [r.interval.start for r in rows]
    since = model.begin or (min(starts) if starts else None)
    ranges = loaded_ranges(rows, {w.load_id: w.finished_at for w in loads})
    return ranges, since


def load_report(
    model: str,
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
    now: datetime | None = None,
) -> IntervalReport:
    """Everything ``dbt-sqlflow intervals`` shows.

    Args:
        model: A model name or unique_id.
        project_dir: The dbt project (default: as dbt, the nearest folder with
            dbt_project.yml).
        profiles_dir: The folder of profiles.yml (default: as dbt).
        target: The profile target (default: the profile's).
        now: The end of the span gaps are looked for in, naive UTC (default: now).

    Raises:
        StateCommandError: With a one-line message naming what is wrong and the fix.
    """
    moment = now or utc_now()
    project, profiles = project_dirs(project_dir, profiles_dir)
    found = find_windowed_model(manifest_path(project), model)
    location = resolve_state_location(project, profiles, target)
    ranges, since = read_intervals(location, found)
    gaps = (
        missing([r.interval for r in ranges], Interval(since, moment))
        if since and since < moment
        else []
    )
    return IntervalReport(found, location, moment, since, ranges, gaps)


# -- output ------------------------------------------------------------------------------


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return " ".join(p for p in parts if p) or "0s"


def summary_line(report: IntervalReport) -> str:
    """One line: ranges and gaps with their lengths, loaded until, last load."""
    s = report.summary()
    ranges = "range" if s["loaded_ranges"] == 1 else "ranges"
    gaps = "gap" if s["gaps"] == 1 else "gaps"
    return (
        f"{report.model.name}: {s['loaded_ranges']} loaded {ranges}"
        f" ({_span(s['loaded_seconds'])}), {s['gaps']} {gaps} ({_span(s['gap_seconds'])})"
        f" from {when(report.since)} to now"
        f" {when(report.now)}, loaded until {when(s['loaded_until'])},"
        f" last load {when(s['last_finished_at'])} UTC"
    )


def format_table(report: IntervalReport) -> str:
    """The ranges and gaps as text, in time order: a title, a header, one line each, the
    summary."""
    headers = ("state", "start", "end", "last load", "finished at (UTC)")
    lines: list[tuple[datetime, Sequence[str]]] = [
        (
            r.interval.start,
            (
                "loaded",
                when(r.interval.start),
                when(r.interval.end),
                (r.last_load_id or "-")[:LOAD_ID_CHARS],
                when(r.last_finished_at),
            ),
        )
        for r in report.loaded
    ]
    lines += [(g.start, ("gap", when(g.start), when(g.end), "-", "-")) for g in report.gaps]
    rows = [row for _, row in sorted(lines, key=lambda x: x[0])]
    m = report.model
    title = (
        f"{m.relation} ({m.batch_size} windows on {m.event_time}; state in"
        f" {report.location.label}:{report.location.state_schema}; [start, end) UTC)"
    )
    body = text_table(headers, rows)
    return "\n".join([title, *body, summary_line(report)]) + "\n"


def format_json(report: IntervalReport) -> str:
    """The ranges and gaps as JSON: model, relation, event_time, batch_size, now, since,
    loaded, gaps, summary."""
    summary = report.summary()
    for key in ("loaded_until", "last_finished_at"):
        summary[key] = iso(summary[key])
    m = report.model
    data = {
        "model": m.unique_id,
        "relation": m.relation,
        "event_time": m.event_time,
        "batch_size": m.batch_size,
        "database": report.location.source,
        "state_schema": report.location.state_schema,
        "now": iso(report.now),
        "since": iso(report.since),
        "loaded": [
            {
                "start": iso(r.interval.start),
                "end": iso(r.interval.end),
                "last_load_id": r.last_load_id,
                "last_finished_at": iso(r.last_finished_at),
            }
            for r in report.loaded
        ],
        "gaps": [{"start": iso(g.start), "end": iso(g.end)} for g in report.gaps],
        "summary": summary,
    }
    return json.dumps(data, indent=2) + "\n"
