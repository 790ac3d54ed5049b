"""In-memory records of sqlflow loads, kept during a dbt invocation.

The materialization calls :meth:`LoadRecorder.record` once per load (one batch of a
sqlflow model). Recording does no I/O: it builds one small object and appends it
under an uncontended lock (dbt runs models on several threads).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbt.adapters.sqlflow.quality import CheckOutcome


@dataclass(slots=True)
class LoadRecord:
    """What one load (one batch of a sqlflow model) did.

    Attributes:
        unique_id: The model's dbt unique id, e.g. ``model.shop.orders``.
        strategy: The sqlflow strategy that ran (``merge``, ``insert_overwrite``...).
        status: ``"success"`` or ``"error"``.
        duration_seconds: Wall time of the load.
        rows_inserted: Rows the load inserted into the target.
        rows_updated: Rows it updated.
        rows_deleted: Rows it deleted.
        partitions_touched: Partitions of the target it wrote.
        batches: Batches this record covers (1 for one batch).
        watermark_before: The model's watermark before the load (UTC), if it has one.
        watermark_after: The watermark after the load (UTC), if it has one.
        quality_checks: Outcome of every quality check run on the load.
        error_type: The exception class name of a failed load, else None.
        load_id: sqlflow's id of the load (the key of its row in the load table).
        invocation_id: dbt's invocation id.
        retries: Why each retry of the load's transaction happened (``retry.REASONS``).
        rows_ignored: Change events it did not apply (``cdc``: stale or duplicates).
        phase_seconds: Seconds of each phase of the batch (``observe.PHASES``), if timed.
    """

    unique_id: str
    strategy: str
    status: str
    duration_seconds: float
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    partitions_touched: int = 0
    batches: int = 1
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    quality_checks: Sequence[CheckOutcome] = field(default_factory=tuple)
    error_type: str | None = None
    load_id: str | None = None
    invocation_id: str | None = None
    retries: tuple[str, ...] = ()
    rows_ignored: int = 0
    phase_seconds: Mapping[str, float] | None = None


class LoadRecorder:
    """The in-memory recorder: the :class:`LoadRecord` of every load of one dbt invocation.

    (The Prometheus collector is :class:`~.collector.RunCollector`; it reads the run's
    artifacts, not this recorder.)

    Thread-safe; ``record`` costs a few microseconds (see ``bench/bench_metrics.py``).
    It never reads or writes the database or any file: exporters read
    :meth:`records` (or the artifacts dbt writes) after the run.
    """

    __slots__ = ("_lock", "_records")

    def __init__(self) -> None:
        self._records: list[LoadRecord] = []
        self._lock = threading.Lock()

    def record(
        self,
        unique_id: str,
        *,
        strategy: str,
        status: str,
        duration_seconds: float,
        rows_inserted: int = 0,
        rows_updated: int = 0,
        rows_deleted: int = 0,
        partitions_touched: int = 0,
        batches: int = 1,
        watermark_before: datetime | None = None,
        watermark_after: datetime | None = None,
        quality_checks: Iterable[CheckOutcome | Sequence[Any]] = (),
        error_type: str | None = None,
        load_id: str | None = None,
        invocation_id: str | None = None,
        retries: Sequence[str] = (),
        rows_ignored: int = 0,
        phase_seconds: Mapping[str, float] | None = None,
    ) -> LoadRecord:
        """Record one load and return its record.

        ``quality_checks`` items may be :class:`CheckOutcome` or plain
        ``(check_name, severity, status, failing_rows)`` sequences. ``phase_seconds``
        is kept as given (not copied).
        """
        checks = tuple(
            c if isinstance(c, CheckOutcome) else CheckOutcome(*c[:4]) for c in quality_checks
        )
        load = LoadRecord(
            unique_id,
            strategy,
            status,
            duration_seconds,
            rows_inserted,
            rows_updated,
            rows_deleted,
            partitions_touched,
            batches,
            watermark_before,
            watermark_after,
            checks,
            error_type,
            load_id,
            invocation_id,
            tuple(retries),
            rows_ignored,
            phase_seconds,
        )
        with self._lock:
            self._records.append(load)
        return load

    def records(self, unique_id: str | None = None) -> list[LoadRecord]:
        """A copy of the records so far, in recording order; only ``unique_id``'s if given."""
        with self._lock:
            snapshot = list(self._records)
        if unique_id is None:
            return snapshot
        return [r for r in snapshot if r.unique_id == unique_id]

    def clear(self) -> None:
        """Forget every record (a new invocation)."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)
