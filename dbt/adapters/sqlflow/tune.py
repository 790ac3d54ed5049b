"""Recommendations from a model's load history (``dbt-sqlflow tune``): pure functions.

sqlflow records every batch in ``sqlflow_meta.loads`` (window, start and end times, rows
written). From the recent batches of a model and its config, :func:`recommend` says
which setting to change, with the figures that led to it (the evidence) and the gain to
expect; a model whose batches are neither tiny nor huge gets no recommendation.

Rules (each needs at least :data:`MIN_LOADS` batches that wrote rows):

- ``batch_size`` coarser: batches of under :data:`TINY_ROWS` rows that take under
  :data:`TINY_SECONDS` each are mostly per-batch overhead (stage, state, commit); the
  coarsest unit whose batches would stay under :data:`TARGET_ROWS` rows is recommended.
- ``batch_size`` finer: batches over :data:`HUGE_SECONDS` each make a failure (and its
  retry) expensive and hold much memory.
- ``commit_every``: ``commit_every=1`` with tiny batches pays one commit per batch;
  ``auto`` groups them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbt.adapters.sqlflow.intervals import GRANULARITIES

MIN_LOADS = 10
HISTORY = 200
TINY_ROWS = 100_000
TINY_SECONDS = 0.5
TARGET_ROWS = 1_000_000
HUGE_SECONDS = 120.0

# Units per next-coarser unit (a month counted as 30 days, a year as 12 months).
_FACTORS = {"hour": 24, "day": 7, "week": 30 / 7, "month": 12}


@dataclass(frozen=True)
class Batch:
    """One recorded batch: when it ran and how many rows it wrote."""

    started_at: datetime
    finished_at: datetime
    rows: int

    @property
    def seconds(self) -> float:
        """How long the batch took."""
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class Recommendation:
    """One setting to change, why, and what it should gain."""

    model: str
    key: str
    current: str
    recommended: str
    evidence: str
    expected_gain: str


def batches_from_loads(loads: Sequence[Any]) -> list[Batch]:
    """The recent batches that wrote rows (empty windows cost no batch), newest last,
    from ``state.LoadRow`` s."""
    found = [
        Batch(
            load.started_at,
            load.finished_at,
            load.rows_inserted + load.rows_updated + load.rows_deleted,
        )
        for load in loads
        if load.window_start is not None
        and load.started_at is not None
        and load.finished_at is not None
        and load.rows_inserted + load.rows_updated + load.rows_deleted > 0
    ]
    return found[-HISTORY:]


def recommend(
    model: str, config: Mapping[str, Any], batches: Sequence[Batch]
) -> list[Recommendation]:
    """What to change in a model's config, from its recent batches (oldest first).

    Args:
        model: The model's unique_id.
        config: Its config as the manifest has it (``batch_size``, ``partition_by``,
            ``commit_every``).
        batches: Its recent batches that wrote rows.
    """
    if len(batches) < MIN_LOADS:
        return []
    unit = str(config.get("batch_size") or _partition_unit(config) or "day")
    rows = statistics.median(b.rows for b in batches)
    seconds = statistics.median(b.seconds for b in batches)
    seen = (
        f"median {rows:,.0f} rows and {seconds:.2f} s per {unit} batch over the last"
        f" {len(batches)} batches"
    )
    found = []
    if rows < TINY_ROWS and seconds < TINY_SECONDS:
        coarser = _coarser(unit, rows)
        if coarser is not None:
            factor = _factor(unit, coarser)
            found.append(
                Recommendation(
                    model,
                    "batch_size",
                    unit,
                    coarser,
                    seen,
                    f"about {factor:.0f}x fewer batches (~{rows * factor:,.0f} rows each):"
                    f" up to {seconds * (factor - 1):.2f} s less per {coarser} of data, the"
                    " per-batch overhead of the batches saved",
                ),
            )
        if config.get("commit_every") == 1:
            found.append(
                Recommendation(
                    model,
                    "commit_every",
                    "1",
                    "auto",
                    f"{seen}: one commit for each",
                    "one commit per ~2 s of work instead of one per batch (and groups of"
                    " unstaged batches load at once)",
                )
            )
    elif seconds > HUGE_SECONDS:
        finer = _finer(unit)
        if finer is not None:
            factor = _factor(finer, unit)
            found.append(
                Recommendation(
                    model,
                    "batch_size",
                    unit,
                    finer,
                    seen,
                    f"batches of ~{seconds / factor:.0f} s: a failed or retried batch redoes"
                    f" {seconds / factor:.0f} s instead of {seconds:.0f} s, with less memory",
                )
            )
    return found


def _partition_unit(config: Mapping[str, Any]) -> str | None:
    partition = config.get("partition_by")
    if isinstance(partition, Mapping) and partition.get("granularity") in GRANULARITIES:
        return str(partition["granularity"])
    return None


def _coarser(unit: str, rows: float) -> str | None:
    """The coarsest unit above ``unit`` whose batches stay under TARGET_ROWS rows."""
    if unit not in GRANULARITIES:
        return None
    best = None
    current, estimate = unit, rows
    while current in _FACTORS:
        following = GRANULARITIES[GRANULARITIES.index(current) + 1]
        estimate *= _FACTORS[current]
        if estimate > TARGET_ROWS:
            break
        best, current = following, following
    return best


def _finer(unit: str) -> str | None:
    index = GRANULARITIES.index(unit) if unit in GRANULARITIES else 0
    return GRANULARITIES[index - 1] if index > 0 else None


def _factor(fine: str, coarse: str) -> float:
    """Units of ``fine`` in one ``coarse``."""
    factor = 1.0
    current = fine
    while current != coarse:
        factor *= _FACTORS[current]
        current = GRANULARITIES[GRANULARITIES.index(current) + 1]
    return factor
