"""One execution of a sqlflow_incremental model: its plan, batches, counts and response.

A ``ModelLoad`` is created when the materialization starts (after the config is parsed)
and lives until it stores its result. It owns the figures of the run; the adapter feeds it
the counts DuckDB returns and the facts it measures, and hands back plain dicts to Jinja.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dbt.adapters.contracts.connection import AdapterResponse

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.intervals import (
    Interval,
    parse_timestamp,
    plan_explicit,
    plan_windows,
    truncate,
)
from dbt.adapters.sqlflow.partitions import (
    PartitionManager,
    partition_key,
    partition_keys,
    partition_range,
    sql_identifier,
    utc_expr,
)
from dbt.adapters.sqlflow.quality import QualityCheck
from dbt.adapters.sqlflow.state import LoadRow, StateStore

WINDOW_START_MARK = "/*sqlflow_window_start*/"
WINDOW_END_MARK = "/*sqlflow_window_end*/"
UNBOUNDED_START = datetime(1, 1, 1)
UNBOUNDED_END = datetime(9999, 12, 31)


@dataclass
class SqlflowAdapterResponse(AdapterResponse):
    """dbt's adapter response with sqlflow's per-model figures (all in run_results.json)."""

    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    strategy: str | None = None
    partitions_touched: int | None = None
    batches: int | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    load_ids: list[str] | None = None
    quality_checks: list[dict[str, Any]] | None = None


def utc_now() -> datetime:
    """Now in UTC, naive (sqlflow's time convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def timestamp_literal(value: datetime) -> str:
    """A DuckDB TIMESTAMP literal for a naive UTC datetime."""
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def time_literal(value: datetime, data_type: str | None = None) -> str:
    """A literal of a column's own time type, so DuckDB prunes row groups by min/max."""
    kind = (data_type or "TIMESTAMP").upper()
    if kind == "DATE":
        return f"DATE '{value.date().isoformat()}'"
    if kind in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return f"TIMESTAMPTZ '{value.isoformat(sep=' ')}+00'"
    return timestamp_literal(value)


def window_sql(mark: str, value: datetime | None, default: datetime) -> str:
    """What ``sqlflow_window_start()`` / ``sqlflow_window_end()`` render in a model.

    A literal followed by a marker comment, so each batch of the run can substitute its
    own bounds into the compiled SQL.
    """
    return f"{timestamp_literal(value or default)}{mark}"


def substitute_window(sql: str, start: datetime, end: datetime) -> str:
    """The compiled model SQL with one batch's window bounds in place of the markers."""
    import re

    for mark, value in ((WINDOW_START_MARK, start), (WINDOW_END_MARK, end)):
        pattern = r"TIMESTAMP '[^']*'" + re.escape(mark)
        sql = re.sub(pattern, timestamp_literal(value).replace("\\", "\\\\") + mark, sql)
    return sql


@dataclass
class BatchResult:
    """Figures of one committed batch (one load)."""

    load_id: str
    strategy: str
    window: tuple[datetime, datetime] | None
    started: float
    finished: float = 0.0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    partitions_touched: int = 0
    matched: int = 0
    batch_rows: int | None = None
    keys: list[str] | None = None
    batch_max: datetime | None = None
    status: str = "success"
    checks: list[Any] = field(default_factory=list)
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None


@dataclass
class ModelLoad:
    """The state of one model execution."""

    id: str
    config: SqlflowConfig
    relation: str
    mode: str  # "build" (create the table) or "incremental"
    batches: list[tuple[datetime, datetime] | None]
    invocation_id: str
    started: float = field(default_factory=time.perf_counter)
    results: list[BatchResult] = field(default_factory=list)
    current: BatchResult | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    services: LoadServices | None = None
    empty: list[tuple[datetime, datetime]] = field(default_factory=list)
    # Empty windows recorded in the open transaction (committed with the current batch),
    # and how many are committed already.
    pending_empty: list[BatchResult] = field(default_factory=list)
    empty_done: int = 0
    compiled_code: str = ""
    loaded_at_start: list[Interval] = field(default_factory=list)

    def overlaps_loaded(self, interval: Interval) -> bool:
        """Whether ``interval`` overlaps what was loaded when the execution started."""
        return any(interval.overlaps(done) for done in self.loaded_at_start)

    @classmethod
    def create(
        cls,
        config: SqlflowConfig,
        relation: str,
        mode: str,
        batches: list[tuple[datetime, datetime] | None],
        invocation_id: str,
    ) -> ModelLoad:
        """A new model execution with its planned batches."""
        return cls(
            id=uuid.uuid4().hex,
            config=config,
            relation=relation,
            mode=mode,
            batches=batches,
            invocation_id=invocation_id,
        )

    def start_batch(self, strategy: str, window: tuple[datetime, datetime] | None) -> BatchResult:
        """Open the figures of the next batch."""
        self.current = self.new_result(strategy, window)
        return self.current

    def new_result(self, strategy: str, window: tuple[datetime, datetime] | None) -> BatchResult:
        """The figures of one load (a batch or an empty window), not yet committed."""
        return BatchResult(
            load_id=uuid.uuid4().hex,
            strategy=strategy,
            window=window,
            started=time.time(),
            watermark_before=self.watermark_after,
            watermark_after=self.watermark_after,
        )

    @property
    def loaded_batches(self) -> int:
        """Batches (not empty windows) committed so far."""
        return len(self.results) - self.empty_done

    def add_count(self, role: str, count: int | None) -> None:
        """Add a DML statement's row count to the current batch's figures."""
        batch = self.current
        if batch is None or count is None:
            return
        if role == "inserted":
            batch.rows_inserted += count
        elif role == "deleted":
            batch.rows_deleted += count
        elif role == "updated":
            batch.rows_updated += count
        else:
            raise ValueError(f"unknown count role {role!r}")

    def commit_batch(self) -> BatchResult:
        """Close the current batch after its transaction committed."""
        assert self.current is not None
        self.current.finished = time.time()
        self.results.append(self.current)
        self.commit_empty(self.current.finished)
        done, self.current = self.current, None
        return done

    def commit_empty(self, finished: float) -> None:
        """Count the empty windows recorded in the transaction that just committed."""
        for empty in self.pending_empty:
            empty.finished = finished
        self.results.extend(self.pending_empty)
        self.empty_done += len(self.pending_empty)
        self.pending_empty = []

    def log_context(self, load_id: str | None = None) -> str:
        """The ids every sqlflow log line carries."""
        load_id = load_id or (self.current.load_id if self.current else "-")
        return f"[invocation_id={self.invocation_id} model={self.config.model} load_id={load_id}]"

    def response(self) -> SqlflowAdapterResponse:
        """The run result's adapter_response for this execution."""
        inserted = sum(r.rows_inserted for r in self.results)
        updated = sum(r.rows_updated for r in self.results)
        deleted = sum(r.rows_deleted for r in self.results)
        strategies = sorted({r.strategy for r in self.results})
        strategy = strategies[0] if len(strategies) == 1 else ",".join(strategies) or None
        checks: list[dict[str, Any]] = []
        for r in self.results:
            checks.extend(
                {
                    "check": c.check_name,
                    "severity": c.severity,
                    "status": c.status,
                    "failing_rows": c.failing_rows,
                }
                for c in r.checks
            )
        message = f"{strategy or 'noop'}: {inserted} inserted, {updated} updated, {deleted} deleted"
        return SqlflowAdapterResponse(
            _message=message,
            rows_affected=inserted + updated + deleted,
            rows_inserted=inserted,
            rows_updated=updated,
            rows_deleted=deleted,
            strategy=strategy,
            # Distinct partitions: daily batches of one monthly partition touch one.
            partitions_touched=len({k for r in self.results for k in r.keys or ()})
            if any(r.keys for r in self.results)
            else sum(r.partitions_touched for r in self.results),
            batches=len(self.results),
            watermark_before=_iso(self.watermark_before),
            watermark_after=_iso(self.watermark_after),
            load_ids=[r.load_id for r in self.results],
            quality_checks=checks or None,
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- the load's work on the database (through an executor, inside its transaction) -------


class BufferedWrites:
    """An executor that holds back INSERT/DELETE/UPDATE and sends them in one round trip.

    State writes of a batch are many small statements; each costs dbt's per-statement
    overhead (~2 ms) more than DuckDB's work. Any read flushes the pending writes first,
    so reads see them; ``flush`` runs them all as one multi-statement script, inside the
    same transaction.
    """

    _WRITES = ("insert", "delete", "update")

    def __init__(self, run: Callable[[str], list[tuple]]) -> None:
        self._run = run
        self.pending: list[str] = []

    def __call__(self, sql: str) -> list[tuple]:
        if sql.lstrip()[:6].lower() in self._WRITES:
            self.pending.append(sql.strip().rstrip(";"))
            return []
        self.flush()
        return self._run(sql)

    def flush(self) -> None:
        """Run the pending writes (one statement script), if any."""
        if self.pending:
            script, self.pending = ";\n".join(self.pending), []
            self._run(script)


def census(
    run: Callable[[str], list[tuple]],
    relation_sql: str,
    column: str,
    data_type: str | None,
    windows: list[Interval],
    unit: str,
) -> dict[datetime, int]:
    """Rows per ``unit`` of ``column`` within the windows' hull, in one GROUP BY.

    Keys are unit starts (naive UTC). ``split`` aligns batches to unit boundaries, so
    each unit start maps to at most one batch.
    """
    if not windows:
        return {}
    lo, hi = windows[0].start, windows[-1].end
    value = utc_expr(column, data_type)
    found = run(
        f"select date_trunc('{unit}', {value}) as unit, count(*) from {relation_sql}"
        f" where {column} >= {time_literal(lo, data_type)}"
        f" and {column} < {time_literal(hi, data_type)} group by 1"
    )
    return {as_naive(u) or lo: int(n) for u, n in found if u is not None}


@dataclass
class LoadServices:
    """What one model execution reads and writes besides the target's data."""

    run: Callable[[str], list[tuple]]
    state: StateStore
    partitions: PartitionManager | None
    checks: list[QualityCheck]
    now: datetime
    event_time_type: str | None = None


def plan_batches(
    load: ModelLoad,
    services: LoadServices,
    *,
    explicit: tuple[datetime, datetime] | None,
    data_start: Callable[[], datetime | None],
) -> list[Interval]:
    """The windows of a windowed model's execution, in time order.

    An explicit backfill reprocesses exactly ``[start, end)``; otherwise the loaded
    intervals decide (gaps, ``lookback`` and the current unit, see ``plan_windows``).
    ``data_start`` is only called when neither ``begin`` nor a loaded interval exists.
    """
    from dbt.adapters.sqlflow.strategies import resolve_static

    config = load.config
    batch_size = config.batch_size or "day"
    static = resolve_static(config)
    if static is not None and static.strategy == "append":
        # An appended row stays: a window re-read would be appended twice. So append
        # never looks back, and loads the current unit only up to now (what it records).
        now = services.now
        if explicit is not None:
            windows = plan_explicit(explicit[0], explicit[1], batch_size)
        else:
            windows = _planned(load, services, batch_size, 0, data_start)
        return [Interval(w.start, min(w.end, now)) for w in windows if w.start < now]
    if explicit is not None:
        return plan_explicit(explicit[0], explicit[1], batch_size)
    return _planned(load, services, batch_size, config.lookback, data_start)


def _planned(
    load: ModelLoad,
    services: LoadServices,
    batch_size: str,
    lookback: int,
    data_start: Callable[[], datetime | None],
) -> list[Interval]:
    """The windows ``plan_windows`` gives from the model's loaded intervals."""
    config = load.config
    loaded = services.state.loaded_intervals(config.model) if load.mode == "incremental" else []
    if load.mode == "incremental" and not loaded:
        recorded = services.state.models_with_intervals(load.relation)
        others = [m for m in recorded if m != config.model]
        if others:
            from dbt_common.exceptions import DbtRuntimeError

            raise DbtRuntimeError(
                f"sqlflow_incremental model '{config.model}': its table {load.relation} holds"
                f" windows loaded as {', '.join(repr(m) for m in others)} (a renamed model?)"
                f" and none as '{config.model}', so every window would load again. Run it"
                " once with --full-refresh to rebuild the table under its new name."
            )
    load.loaded_at_start = loaded
    start = None
    begin = config.begin
    if begin is None and loaded:
        # A range invalidated at the very start is still owed: the lower bound is the
        # earliest window the model ever loaded, not the first one still loaded.
        first = services.state.first_window_start(config.model)
        begin = min(first, loaded[0].start) if first is not None else None
    if begin is None and not loaded:
        start = data_start()
    return plan_windows(
        loaded,
        begin=begin,
        now=services.now,
        batch_size=batch_size,
        lookback=lookback,
        data_start=start,
    )


def batch_order_by(
    config: SqlflowConfig, batches: list[tuple[datetime, datetime] | None]
) -> str | None:
    """The column a batch's rows are written in order of (quoted), or None for none.

    Rows go in partition order so DuckDB's per-row-group min/max let later loads skip
    other partitions. When every batch is a window on the time partition field that lies
    in one partition (``batch_size`` no larger than the granularity, the usual backfill),
    a batch's rows are in partition order already and sorting them would only cost time.
    Windowed models without ``partition_by`` are ordered by ``event_time``.
    """
    part = config.partition_by
    field = part.field if part is not None else config.event_time
    if field is None:
        return None
    if (
        part is not None
        and part.granularity is not None
        and config.event_time is not None
        and part.field.lower() == config.event_time.lower()
        and batches
        and all(
            b is not None and len(partition_keys(Interval(b[0], b[1]), part.granularity)) == 1
            for b in batches
        )
    ):
        return None
    return sql_identifier(field)


def loaded_part(window: tuple[datetime, datetime], now: datetime) -> Interval | None:
    """The part of a window that counts as loaded: ``[start, min(end, now))``.

    The current unit is only loaded up to now; the rest of it is still owed, so the next
    run reloads it even with ``lookback=0`` (rows of later today are not lost).
    """
    end = min(window[1], now)
    return Interval(window[0], end) if end > window[0] else None


def empty_windows(
    load: ModelLoad,
    services: LoadServices,
    windows: list[Interval],
    model_sql: str,
    target: str | None,
    strategy: str | None,
) -> set[int]:
    """Indexes of the windows with nothing to do: no source rows and, for a strategy
    that replaces what the window held (insert_overwrite), no target rows either.

    Two GROUP BYs for the whole plan instead of one staged batch per window: a backfill
    of 365 empty days costs two queries, not 365 transactions. A model that reads its
    window (``sqlflow_window_start()``/``sqlflow_window_end()``) may return rows that
    depend on it (e.g. ``select {{ sqlflow_window_start() }} as day, count(*)``): run over
    the whole range at once it would not show which windows have rows, so each window runs.
    """
    config = load.config
    if strategy == "snapshot" or config.event_time is None or not windows:
        return set()
    if WINDOW_START_MARK in load.compiled_code or WINDOW_END_MARK in load.compiled_code:
        return set()
    column = sql_identifier(config.event_time)
    unit = config.batch_size or "day"
    dtype = services.event_time_type
    source = census(services.run, f"({model_sql}\n) as m", column, dtype, windows, unit)
    busy = set(source)
    if target is not None and strategy in (None, "insert_overwrite"):
        busy |= set(census(services.run, target, column, dtype, windows, unit))
    return {i for i, w in enumerate(windows) if truncate(w.start, unit) not in busy}


def record_empty(load: ModelLoad, services: LoadServices) -> None:
    """Record every empty window as loaded (an interval and a load row each), in bulk:
    for a run with no batch to load, whose caller commits right after."""
    _record_empty_until(load, services, None, load.relation)
    _flush(services)
    load.commit_empty(time.time())


def _record_empty_until(
    load: ModelLoad, services: LoadServices, end: datetime | None, target: str
) -> None:
    """Record the empty windows before ``end`` (all that are left for None) in the open
    transaction: they commit with the current batch and roll back with it, so a failed
    batch never leaves later windows marked loaded."""
    from dbt.adapters.sqlflow.strategies import resolve_static

    start = load.empty_done + len(load.pending_empty)
    static = resolve_static(load.config)
    for window in load.empty[start:]:
        if end is not None and window[0] >= end:
            break
        result = load.new_result(static.strategy if static else "merge", window)
        _record_batch(load, services, result, target)
        load.pending_empty.append(result)


def _record_batch(
    load: ModelLoad, services: LoadServices, batch: BatchResult, relation: str
) -> None:
    """The state rows of a finished batch: its loaded interval (if windowed), its load."""
    if batch.window is not None:
        loaded = loaded_part(batch.window, services.now)
        if loaded is not None:
            services.state.add_interval(
                load.config.model,
                relation,
                loaded,
                batch.load_id,
                replace=load.overlaps_loaded(loaded),
            )
    services.state.record_load(_load_row(load, batch))


def _flush(services: LoadServices) -> None:
    """Send the state writes held back by a ``BufferedWrites`` executor, if any."""
    flush = getattr(services.run, "flush", None)
    if flush is not None:
        flush()


def _load_row(load: ModelLoad, batch: BatchResult) -> LoadRow:
    return LoadRow(
        load_id=batch.load_id,
        invocation_id=load.invocation_id,
        model=load.config.model,
        relation=load.relation,
        strategy=batch.strategy,
        window_start=batch.window[0] if batch.window else None,
        window_end=batch.window[1] if batch.window else None,
        started_at=datetime.fromtimestamp(batch.started, timezone.utc).replace(tzinfo=None),
        finished_at=utc_now(),
        status=batch.status,
        rows_inserted=batch.rows_inserted,
        rows_updated=batch.rows_updated,
        rows_deleted=batch.rows_deleted,
        partitions_touched=batch.partitions_touched,
        watermark_before=_iso(batch.watermark_before),
        watermark_after=_iso(batch.watermark_after),
    )


def touched_partitions(
    load: ModelLoad, services: LoadServices, batch_relation: str, target: str
) -> list[str]:
    """Register and return the partition keys the current batch writes."""
    pm = services.partitions
    batch = load.current
    if pm is None or batch is None:
        return []
    if batch.keys is not None:
        return batch.keys
    if batch.window is not None and pm.spec.is_time and pm.spec.field == load.config.event_time:
        # refresh_statistics records every key of the window up to now (empty ones with
        # 0 rows): the days of the current batch that lie in the future are not partitions
        # yet, unless rows already sit there.
        keys = pm.partition_keys(loaded_part(batch.window, services.now) or Interval(*batch.window))
        later = [k for k in pm.partition_keys(Interval(*batch.window)) if k not in keys]
        if later:
            lo = partition_range(later[0], pm.spec.granularity or "day").start
            found = services.run(
                f"select distinct {pm._bucket_expr()} from {target}"
                f" where {pm.predicate(Interval(lo, batch.window[1]))}"
            )
            present = {partition_key(b[0], pm.spec.granularity or "day") for b in found if b[0]}
            keys += [k for k in later if k in present]
        return keys
    if pm.spec.is_time:
        gran = pm.spec.granularity or "day"
        buckets = services.run(f"select distinct {pm._bucket_expr()} from {batch_relation}")
        return sorted(partition_key(b[0], gran) for b in buckets if b[0] is not None)
    return [
        str(r[0])
        for r in services.run(f"select distinct {pm._bucket_expr()} from {batch_relation}")
    ]


def finish_batch(
    load: ModelLoad,
    services: LoadServices,
    batch_relation: str,
    target: str,
    batch_filter: str | None = None,
) -> list[Any]:
    """The state writes and quality checks of the current batch, before its commit.

    ``batch_filter`` selects the batch's rows in ``batch_relation`` when that is the
    target itself (a batch written without staging).

    Returns the quality check outcomes; raises ``DbtRuntimeError`` (the load rolls back)
    when a check of severity ``error`` fails.
    """
    from dbt_common.exceptions import DbtRuntimeError

    from dbt.adapters.sqlflow import quality

    batch = load.current
    assert batch is not None
    config = load.config
    keys = touched_partitions(load, services, batch_relation, target)
    if services.partitions is not None and keys:
        infos = services.partitions.refresh_statistics(target, keys, load_id=batch.load_id)
        if batch.batch_max is None and batch_filter is not None:
            # Unstaged batch: its newest event time is the newest of the partitions it
            # replaced (time partitions on event_time, the only ones that go unstaged).
            newest = [parse_timestamp(p.max_value) for p in infos if p.max_value]
            batch.batch_max = max(newest) if newest else None
    batch.partitions_touched = len(keys)
    batch.keys = keys
    if config.event_time is not None and (batch.rows_deleted or batch.rows_updated):
        # A delete or an update can remove the newest row: ask the table.
        found = services.run(f"select max({sql_identifier(config.event_time)}) from {target}")
        load.watermark_after = as_naive(found[0][0])
    elif config.event_time is not None and batch.batch_max is not None:
        load.watermark_after = max(filter(None, (load.watermark_after, batch.batch_max)))
    batch.watermark_after = load.watermark_after
    outcomes: list[Any] = []
    checks = services.checks
    is_last = load.loaded_batches + 1 >= len(load.batches)
    if not is_last:
        # Freshness judges what the whole execution leaves behind: an early batch of a
        # backfill holds old data by design.
        checks = [c for c in checks if c.kind != "freshness"]
    if checks:
        pm = services.partitions

        def partition_check() -> list[str]:
            if pm is None:
                return []
            report = pm.validate_consistency(target)
            return [f"{p.kind} {p.partition_key}: {p.detail}" for p in report.problems]

        outcomes = quality.run_quality_checks(
            services.run,
            checks,
            batch_relation=batch_relation,
            target_relation=target,
            event_time=config.event_time,
            now=services.now,
            batch_filter=batch_filter,
            partition_check=partition_check,
        )
        batch.checks = outcomes
        if quality.failed_errors(outcomes):
            message = quality.format_failure(config.model, outcomes)
            done = [r for r in load.results if r.window is not None]
            if batch.window is not None and done:
                message += (
                    f"\nThe rolled-back load was the batch [{batch.window[0]}, {batch.window[1]});"
                    f" the {len(done)} batch(es) before it were committed and stay loaded."
                )
            raise DbtRuntimeError(message)
        if quality.failed_warnings(outcomes):
            batch.status = "warn"
        services.state.record_checks(batch.load_id, config.model, outcomes)
    _record_batch(load, services, batch, target)
    if load.empty:
        end = None if is_last or batch.window is None else batch.window[1]
        _record_empty_until(load, services, end, target)
    _flush(services)
    return outcomes


def as_naive(value: Any) -> datetime | None:
    """A DuckDB time value as a naive UTC datetime (None for anything else)."""
    from datetime import date

    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None
