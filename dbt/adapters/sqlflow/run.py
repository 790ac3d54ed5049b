"""A model run's records: the run (:class:`ModelRun`), its services, each load's figures
(:class:`BatchResult`) and the run's ``adapter_response``.

Plain data and the arithmetic of the figures; the batch loop (``execution``) fills them.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbt.adapters.contracts.connection import AdapterResponse

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.observe import PHASES, BatchClock, MemoryProbe, Tracing, rounded
from dbt.adapters.sqlflow.partitions import PartitionManager
from dbt.adapters.sqlflow.plan import LoadPlan
from dbt.adapters.sqlflow.quality import CheckOutcome, QualityCheck
from dbt.adapters.sqlflow.redact import DEFAULT, Redactor
from dbt.adapters.sqlflow.retry import RetrySettings
from dbt.adapters.sqlflow.sql import Executor
from dbt.adapters.sqlflow.state import StateStore
from dbt.adapters.sqlflow.strategies import CountRole


@dataclass
class BatchResult:
    """Figures of one load: a batch (in flight, then committed) or an empty window."""

    load_id: str
    strategy: str
    window: Interval | None
    started: float
    finished: float = 0.0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_ignored: int = 0
    partitions_touched: int = 0
    matched: int = 0
    batch_rows: int | None = None
    keys: list[str] | None = None
    batch_max: datetime | None = None
    status: str = "success"
    checks: list[CheckOutcome] = field(default_factory=list)
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    retries: list[str] = field(default_factory=list)
    index: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    loaded_with: int = 1
    """How many batches the statement that loaded this one loaded: a group loaded at once
    (its batches are logged as one ``batch_end``), 1 otherwise."""

    @property
    def seconds(self) -> float:
        """The load's wall time so far (to its commit once committed)."""
        return (self.finished or time.time()) - self.started


@dataclass
class RunServices:
    """What one model run reads and writes besides the target's data."""

    run: Executor
    state: StateStore
    partitions: PartitionManager | None
    checks: list[QualityCheck]
    now: datetime
    event_time_type: str | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    redactor: Redactor = DEFAULT
    """Redacts the row values of the run's messages (the profile's and the model's
    ``sqlflow_redact``)."""
    tracing: Tracing | None = None
    memory: MemoryProbe | None = None
    """The DuckDB instance's peak memory and spill over the run's statements, read into
    each load row; None when not measured."""
    load_history: int = 0
    """Loads kept in detail per model (the profile's ``sqlflow_load_history``; 0: all)."""
    lake: bool = False
    """The target is a DuckLake table (other processes may write sqlflow's state at once)."""
    claim_check: Callable[[], Any] | None = None
    """Before each COMMIT on a lake with a PostgreSQL catalog: makes sure the run still
    holds its claim on the model (claims.py), raising when it cannot."""


@dataclass
class SqlflowAdapterResponse(AdapterResponse):
    """dbt's adapter response with sqlflow's per-model figures (all in run_results.json)."""

    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    #: Change events not applied (``cdc``: stale, or a duplicate of an applied one).
    rows_ignored: int | None = None
    strategy: str | None = None
    partitions_touched: int | None = None
    batches: int | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    load_ids: list[str] | None = None
    quality_checks: list[dict[str, Any]] | None = None
    sqlflow_now: str | None = None
    retries: int | None = None
    retry_reasons: dict[str, int] | None = None
    commits: int | None = None
    phase_seconds: dict[str, float] | None = None
    batch_phase_seconds: dict[str, list[float]] | None = None


@dataclass(frozen=True)
class Savepoint:
    """What a run's records held before a batch's transaction began, to rewind a retried
    batch to (its transaction rolled back): the watermark, the empty windows recorded,
    the partitions known."""

    watermark_after: datetime | None
    pending_empty: int
    known_keys: frozenset[str] | None
    uncommitted: int = 0


@dataclass
class ModelRun:
    """One execution of a model: its plan, the batch in flight and the committed figures.

    ``empty_done`` counts the empty windows committed; ``pending_empty`` holds those
    recorded in the open transaction (they commit or roll back with the batch in flight).
    """

    id: str
    config: SqlflowConfig
    relation: str
    plan: LoadPlan
    services: RunServices
    invocation_id: str
    compiled_code: str = ""
    results: list[BatchResult] = field(default_factory=list)
    in_flight: BatchResult | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    pending_empty: list[BatchResult] = field(default_factory=list)
    empty_done: int = 0
    empty_last_commit: int = 0
    pinned_now: datetime | None = None
    retries: list[str] = field(default_factory=list)
    #: The transient failures the open transaction was retried after (its try's
    #: ``recovery.attempt`` sets them): its first load row records them.
    retrying: list[str] = field(default_factory=list)
    interrupted: str | None = None
    loop: Any = None
    uncommitted: list[BatchResult] = field(default_factory=list)
    commits: int = 0
    census: Any = None
    #: The ``cdc`` strategy's ledger in sqlflow's state (quoted), else None.
    cdc_ledger: str | None = None
    plan_seconds: float = 0.0
    clock: BatchClock | None = None
    span: Any = None
    batch_index: int | None = None
    batch_window: Interval | None = None
    clock_batch: BatchResult | None = None

    @property
    def mode(self) -> str:
        """``build`` or ``incremental``."""
        return self.plan.mode

    @property
    def loaded_batches(self) -> int:
        """Batches (not empty windows) committed so far."""
        return len(self.results) - self.empty_done

    @property
    def batches_done(self) -> int:
        """Batches loaded so far, committed or in the open transaction's group."""
        return self.loaded_batches + len(self.uncommitted)

    def begin_batch(self, index: int, window: Interval | None) -> BatchClock:
        """Start timing the batch ``index`` (its span too, when tracing); the previous
        batch's clock ends here if it is still open (no commit after it)."""
        self.end_clock()
        # The plan counts in the first batch (in each of its tries).
        seconds = {"plan": self.plan_seconds} if index == 0 and self.plan_seconds else {}
        self.batch_index, self.batch_window = index, window
        tracing, span = self.services.tracing, None
        if tracing is not None:
            span = tracing.start(
                f"sqlflow.batch {index}",
                self.span,
                self.span_attributes(window=window, batch_index=index),
            )
        self.clock = BatchClock(seconds, tracing, span)
        return self.clock

    def phase(self, name: str) -> AbstractContextManager[Any]:
        """Time one phase (:data:`observe.PHASES`) of the batch being loaded."""
        return self.clock.phase(name) if self.clock is not None else nullcontext()

    def end_clock(self) -> None:
        """End the open batch clock and its span (with the batch's figures), if any."""
        clock, self.clock = self.clock, None
        if clock is not None:
            batch = self.clock_batch
            clock.end(self.span_attributes(batch) if batch is not None else {})

    def start_batch(self, strategy: str, window: Interval | None) -> BatchResult:
        """Open the figures of the next batch (its phase timings are the batch clock's)."""
        self.in_flight = self.new_result(strategy, window)
        if self.clock is not None:
            # The batch started with its clock, before its rows were staged.
            self.in_flight.started = self.clock.started
            self.in_flight.phases = self.clock.seconds
            self.clock_batch = self.in_flight
        self.in_flight.index = self.batches_done
        return self.in_flight

    def new_result(self, strategy: str, window: Interval | None) -> BatchResult:
        """The figures of one load (a batch or an empty window), not yet committed."""
        return BatchResult(
            load_id=uuid.uuid4().hex,
            strategy=strategy,
            window=window,
            started=time.time(),
            watermark_before=self.watermark_after,
            watermark_after=self.watermark_after,
        )

    def add_count(self, role: str, count: int | None) -> None:
        """Add a DML statement's row count to the batch in flight."""
        batch = self.in_flight
        if batch is None or count is None:
            return
        if role == CountRole.INSERTED:
            batch.rows_inserted += count
        elif role == CountRole.DELETED:
            batch.rows_deleted += count
        elif role == CountRole.UPDATED:
            batch.rows_updated += count
        elif role == CountRole.IGNORED:
            batch.rows_ignored += count
        else:
            raise ValueError(f"unknown count role {role!r}")

    def close_batch(self) -> BatchResult:
        """The batch in flight is loaded; it joins the open transaction's group."""
        assert self.in_flight is not None
        self.in_flight.finished = time.time()
        done, self.in_flight = self.in_flight, None
        self.uncommitted.append(done)
        return done

    def commit_group(self) -> list[BatchResult]:
        """Close the open transaction's batches after it committed; returns them."""
        if self.in_flight is not None:
            self.close_batch()
        done, self.uncommitted = self.uncommitted, []
        self.results.extend(done)
        self.commits += 1
        self.commit_empty(time.time())
        self.end_clock()  # the group's last batch, its commit timed
        return done

    def fail(self, error: BaseException | str) -> None:
        """End the open spans (batch, model) with ``error`` recorded on them."""
        if self.clock is not None:
            self.clock.end(error=error if isinstance(error, BaseException) else None)
            self.clock = None
        tracing, span, self.span = self.services.tracing, self.span, None
        if tracing is not None and span is not None:
            tracing.fail(span, error)
            span.end()

    def end_span(self, response: SqlflowAdapterResponse) -> None:
        """End the model execution's span with the run's figures."""
        span, self.span = self.span, None
        if span is None:
            return
        phases = response.phase_seconds or {}
        span.set_attributes(
            {
                "sqlflow.batches": len(self.results),
                "sqlflow.rows_inserted": response.rows_inserted or 0,
                "sqlflow.rows_updated": response.rows_updated or 0,
                "sqlflow.rows_deleted": response.rows_deleted or 0,
                **{f"sqlflow.phase_seconds.{k}": v for k, v in phases.items()},
            }
        )
        if response.strategy:
            span.set_attribute("sqlflow.strategy", response.strategy)
        span.end()

    def event_fields(self, batch: BatchResult | None = None, **extra: Any) -> dict[str, Any]:
        """The fields of a log event about this run (and one of its loads): the ids that
        join logs, metrics, the loads table and traces, the window, strategy and figures."""
        fields: dict[str, Any] = {
            "invocation_id": self.invocation_id,
            "unique_id": self.config.model,
            "execution_id": self.id,
            "batches": len(self.plan.batches),
        }
        if batch is None and self.clock is not None:
            # Between batches' figures (a batch that failed before it was inspected).
            window = self.batch_window
            fields.update(
                batch_index=self.batch_index,
                window_start=iso_or_none(window.start if window else None),
                window_end=iso_or_none(window.end if window else None),
            )
        if batch is not None:
            fields.update(
                load_id=batch.load_id,
                batch_index=batch.index,
                window_start=iso_or_none(batch.window.start if batch.window else None),
                window_end=iso_or_none(batch.window.end if batch.window else None),
                strategy=batch.strategy,
                rows_inserted=batch.rows_inserted,
                rows_updated=batch.rows_updated,
                rows_deleted=batch.rows_deleted,
                seconds=round(batch.seconds, 6),
                phase_seconds=rounded(batch.phases),
                retries=len(batch.retries),
            )
        fields.update(extra)
        return fields

    def span_attributes(
        self,
        batch: BatchResult | None = None,
        *,
        window: Interval | None = None,
        batch_index: int | None = None,
    ) -> dict[str, Any]:
        """A span's attributes: :meth:`event_fields` as ``dbt.*``/``sqlflow.*`` names."""
        window = batch.window if batch is not None else window
        attributes: dict[str, Any] = {
            "dbt.invocation_id": self.invocation_id,
            "dbt.unique_id": self.config.model,
            "sqlflow.execution_id": self.id,
            "sqlflow.batch_index": batch.index if batch is not None else batch_index,
            "sqlflow.window_start": iso_or_none(window.start) if window else None,
            "sqlflow.window_end": iso_or_none(window.end) if window else None,
        }
        if batch is not None:
            attributes.update(
                {
                    "sqlflow.load_id": batch.load_id,
                    "sqlflow.strategy": batch.strategy,
                    "sqlflow.status": batch.status,
                    "sqlflow.rows_inserted": batch.rows_inserted,
                    "sqlflow.rows_updated": batch.rows_updated,
                    "sqlflow.rows_deleted": batch.rows_deleted,
                    "sqlflow.seconds": batch.seconds,
                    "sqlflow.retries": len(batch.retries),
                }
            )
        return attributes

    def commit_empty(self, finished: float) -> None:
        """Count the empty windows recorded in the transaction that just committed."""
        for empty in self.pending_empty:
            empty.finished = finished
        self.results.extend(self.pending_empty)
        self.empty_done += len(self.pending_empty)
        self.empty_last_commit = len(self.pending_empty)
        self.pending_empty = []

    def savepoint(self) -> Savepoint:
        """The records as they are before a batch's transaction (see :meth:`rewind`)."""
        pm = self.services.partitions
        known = pm.known_keys if pm is not None else None
        return Savepoint(
            self.watermark_after,
            len(self.pending_empty),
            frozenset(known) if known is not None else None,
            len(self.uncommitted),
        )

    def rewind(self, point: Savepoint) -> None:
        """Forget what the rolled-back transaction did to the records: the batch in
        flight, the watermark it advanced, the empty windows and partitions it recorded
        and the state writes not yet sent."""
        self.in_flight = None
        self.watermark_after = point.watermark_after
        del self.pending_empty[point.pending_empty :]
        del self.uncommitted[point.uncommitted :]
        pm = self.services.partitions
        if pm is not None:
            pm.known_keys = set(point.known_keys) if point.known_keys is not None else None
        discard = getattr(self.services.run, "discard", None)
        if discard is not None:
            discard()

    def log_context(self, load_id: str | None = None) -> str:
        """The ids every sqlflow log line carries."""
        load_id = load_id or (self.in_flight.load_id if self.in_flight else "-")
        return f"[invocation_id={self.invocation_id} model={self.config.model} load_id={load_id}]"

    def response(self) -> SqlflowAdapterResponse:
        """The run result's ``adapter_response``: the committed loads' figures."""
        inserted = sum(r.rows_inserted for r in self.results)
        updated = sum(r.rows_updated for r in self.results)
        deleted = sum(r.rows_deleted for r in self.results)
        ignored = sum(r.rows_ignored for r in self.results)
        strategies = sorted({r.strategy for r in self.results})
        strategy = strategies[0] if len(strategies) == 1 else ",".join(strategies) or None
        # Each outcome names its load and window, so a failure can be traced to a batch.
        checks = [
            {
                "check": c.check_name,
                "severity": c.severity,
                "status": c.status,
                "failing_rows": c.failing_rows,
                "window_start": iso_or_none(r.window.start if r.window else None),
                "window_end": iso_or_none(r.window.end if r.window else None),
                "load_id": r.load_id,
            }
            for r in self.results
            for c in r.checks
        ]
        message = f"{strategy or 'noop'}: {inserted} inserted, {updated} updated, {deleted} deleted"
        if self.config.cdc is not None:
            message += f", {ignored} ignored"
        warned = sum(1 for r in self.results for c in r.checks if c.failed)
        if warned:
            # In the node's result line: the run succeeded, but a check of severity 'warn'
            # failed (errors roll back, so only warnings reach a committed load).
            message += f"; {warned} quality check(s) warned"
        timed = [r.phases for r in self.results if r.phases]
        return SqlflowAdapterResponse(
            _message=message,
            rows_affected=inserted + updated + deleted,
            rows_inserted=inserted,
            rows_updated=updated,
            rows_deleted=deleted,
            rows_ignored=ignored if self.config.cdc is not None else None,
            strategy=strategy,
            # Distinct partitions: daily batches of one monthly partition touch one.
            partitions_touched=len({k for r in self.results for k in r.keys or ()})
            if any(r.keys for r in self.results)
            else sum(r.partitions_touched for r in self.results),
            batches=len(self.results),
            watermark_before=iso_or_none(self.watermark_before),
            watermark_after=iso_or_none(self.watermark_after),
            load_ids=[r.load_id for r in self.results],
            quality_checks=checks or None,
            sqlflow_now=iso_or_none(self.pinned_now),
            retries=len(self.retries),
            retry_reasons=dict(sorted(Counter(self.retries).items())) or None,
            commits=self.commits,
            phase_seconds=rounded({p: sum(t.get(p, 0.0) for t in timed) for p in PHASES})
            if timed
            else None,
            # Per batch, in load order: what the sqlflow_batch_phase_seconds histogram
            # observes (an exporter reading run_results.json has nothing else).
            batch_phase_seconds={p: [round(t.get(p, 0.0), 6) for t in timed] for p in PHASES}
            if timed
            else None,
        )


def iso_or_none(value: datetime | None) -> str | None:
    """ISO text of a naive UTC time, or None."""
    return value.isoformat() if value is not None else None


def warned_checks_summary(records: Any) -> str | None:
    """One line listing the run's failed checks of severity ``warn`` (model, check, load),
    for the end of the run's output; None when no check warned.

    Args:
        records: The invocation's ``metrics.LoadRecord`` s (committed loads and failures).
    """
    warned = [
        f"{r.unique_id}: {c.check_name} ({c.failing_rows} failing rows, load {r.load_id})"
        for r in records
        if r.status == "success"
        for c in r.quality_checks
        if c.severity == "warn" and c.status == "fail"
    ]
    if not warned:
        return None
    return f"{len(warned)} quality check(s) of severity 'warn' failed in this run: " + "; ".join(
        warned
    )


def metrics_fields(
    run: ModelRun, batch: BatchResult, status: str, error_type: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``metrics.LoadRecorder.record`` for one load of the run
    (a failed load counts no rows: its transaction was rolled back)."""
    ok = status == "success"
    return {
        "strategy": batch.strategy,
        "status": status,
        "duration_seconds": (batch.finished or time.time()) - batch.started,
        "rows_inserted": batch.rows_inserted if ok else 0,
        "rows_updated": batch.rows_updated if ok else 0,
        "rows_deleted": batch.rows_deleted if ok else 0,
        "rows_ignored": batch.rows_ignored if ok else 0,
        "partitions_touched": batch.partitions_touched if ok else 0,
        "watermark_before": run.watermark_before,
        "watermark_after": run.watermark_after if ok else None,
        "quality_checks": batch.checks,
        "error_type": error_type,
        "load_id": batch.load_id,
        "invocation_id": run.invocation_id,
        "retries": tuple(batch.retries),
        "phase_seconds": batch.phases or None,
    }
