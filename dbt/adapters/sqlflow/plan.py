"""What one model run will do, decided before it writes anything: pure functions and data.

From the model's config, its loaded intervals (gathered by the caller), ``now`` and an
explicit backfill range, :func:`build_plan` makes a frozen :class:`LoadPlan`: the windows
to load in order, the windows with nothing to load, the strategy variants a batch may
run with, whether batches may skip staging, and the order rows are written in. Nothing
here runs SQL; windows are half-open ``[start, end)`` in naive UTC (see ``intervals``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbt_common.exceptions import DbtConfigError, DbtRuntimeError

from dbt.adapters.sqlflow import cdc
from dbt.adapters.sqlflow.config import SNAPSHOT_META_COLUMNS, SqlflowConfig, config_error
from dbt.adapters.sqlflow.intervals import (
    Interval,
    parse_timestamp,
    plan_explicit,
    plan_windows,
    truncate,
)
from dbt.adapters.sqlflow.partitions import partition_keys
from dbt.adapters.sqlflow.quality import QualityCheck, quality_check_problems
from dbt.adapters.sqlflow.sql import quote_identifier, utc_now
from dbt.adapters.sqlflow.strategies import AUTO, Strategy, get_strategy, resolve_static

BUILD = "build"
"""Mode of a run that creates the table (first run or ``--full-refresh``)."""
INCREMENTAL = "incremental"
"""Mode of a run that loads into the existing table."""


@dataclass(frozen=True)
class Variant:
    """A strategy a batch may run with, and whether it is a plain insert of new keys."""

    strategy: str
    plain_insert: bool = False

    @property
    def key(self) -> str:
        """The variant's name in the batch templates."""
        return f"{self.strategy}:{self.plain_insert}"


@dataclass(frozen=True)
class LoadedState:
    """What the state tables say about the model, read before planning.

    Attributes:
        loaded: The model's loaded intervals (merged, in order).
        first_window_start: The earliest window the model ever loaded, or None.
        other_models: Models (other unique_ids) with intervals on the same table.
    """

    loaded: tuple[Interval, ...] = ()
    first_window_start: datetime | None = None
    other_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadPlan:
    """The plan of one model run.

    Attributes:
        mode: :data:`BUILD` or :data:`INCREMENTAL`.
        batches: The windows to load, in time order; ``(None,)`` for one batch without a
            window (a model without ``event_time``); empty when there is nothing to load.
        empty_windows: Windows with nothing to load: recorded as loaded, in the
            transaction of the batch after them (or the last).
        loaded_at_start: The loaded intervals when the run started (a window overlapping
            them replaces their record).
        order_by: The quoted column batch rows are written in order of, or None.
        variants: The strategies (and plain-insert forms) a batch may run with.
        direct: The strategy whose batches skip staging, or None.
        new_keys: The strategy a group of batches with only new keys loads as, in one
            INSERT (:func:`new_keys_strategy`), or None.
    """

    mode: str
    batches: tuple[Interval | None, ...] = (None,)
    empty_windows: tuple[Interval, ...] = ()
    loaded_at_start: tuple[Interval, ...] = ()
    order_by: str | None = None
    variants: tuple[Variant, ...] = ()
    direct: str | None = None
    new_keys: str | None = None

    @property
    def windowed(self) -> bool:
        """Whether the batches are time windows."""
        return any(b is not None for b in self.batches) or bool(self.empty_windows)

    def overlaps_loaded(self, interval: Interval) -> bool:
        """Whether ``interval`` overlaps what was loaded when the run started."""
        return any(interval.overlaps(done) for done in self.loaded_at_start)


# -- inputs --------------------------------------------------------------------------------


NOW_VARIABLE = "SQLFLOW_NOW"
"""The environment variable that pins sqlflow's "now" without changing dbt's vars."""


def pinned_now(
    run_vars: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> datetime | None:
    """The run's pinned clock: ``--vars sqlflow_now``, else the ``SQLFLOW_NOW`` environment
    variable (read here, at run time: unlike a changed ``--vars`` it does not make dbt
    re-parse the project), else None.

    Raises:
        DbtRuntimeError: when the value is not an ISO date or timestamp, naming where it
            came from.
    """
    environ = os.environ if environ is None else environ
    pinned: Any = run_vars.get("sqlflow_now")
    source = "--vars sqlflow_now"
    if pinned in (None, ""):
        pinned, source = environ.get(NOW_VARIABLE), f"the environment variable {NOW_VARIABLE}"
    if pinned in (None, ""):
        return None
    try:
        return parse_timestamp(pinned)
    except ValueError as e:
        raise DbtRuntimeError(
            f"{source} {pinned!r} is not an ISO date or timestamp. Pass e.g."
            f" {NOW_VARIABLE}=2025-03-01T00:00:00 (or --vars"
            ' \'{"sqlflow_now": "2025-03-01T00:00:00"}\').'
        ) from e


def parse_now(run_vars: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> datetime:
    """The run's clock: :func:`pinned_now` when pinned (replays, tests), else now (UTC).

    Raises:
        DbtRuntimeError: when the pinned value is not an ISO date or timestamp.
    """
    return pinned_now(run_vars, environ) or utc_now()


def parse_model_config(
    model_id: str,
    raw: Mapping[str, Any],
    columns: Mapping[str, str],
    now: datetime,
    dbt_keys: Collection[str] = (),
) -> tuple[SqlflowConfig, list[QualityCheck]]:
    """The model's config and quality checks, every problem of both in one error.

    Args:
        dbt_keys: The config keys dbt and the adapter know (see ``SqlflowConfig.parse``).

    Raises:
        DbtConfigError: listing every problem (``config.config_error``).
    """
    config, problems = SqlflowConfig.check(
        model_id, dict(raw), dict(columns), now=now, dbt_keys=dbt_keys
    )
    raw_checks = raw.get("quality_checks")
    checks: list[QualityCheck] = []
    if raw_checks is None or isinstance(raw_checks, list | tuple):
        # (Not a list: the config's own problems already say so.)
        checks, check_problems = quality_check_problems(
            raw_checks or [],
            columns=list(columns),
            event_time=config.event_time,
            has_partitions=bool(raw.get("partition_by")),
        )
        problems += check_problems
    if problems:
        raise config_error(model_id, problems)
    return config, checks


_RANGE_FIX = (
    'pass both, e.g. --vars \'{"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-02-01"}\''
)


def explicit_range(
    model_id: str,
    config: SqlflowConfig,
    run_vars: Mapping[str, Any],
    event_time_start: Any = None,
    event_time_end: Any = None,
) -> tuple[datetime, datetime] | None:
    """An explicit backfill range: ``--vars sqlflow_start/sqlflow_end``, else dbt's
    ``--event-time-start/--event-time-end`` (for windowed models), else None.

    Raises:
        DbtConfigError: listing every problem of the range (missing or unparsable bound,
            start not before end, a model without windows), nothing written.
    """
    start, end = run_vars.get("sqlflow_start"), run_vars.get("sqlflow_end")
    if start in (None, "") and end in (None, ""):
        if not config.windowed:
            return None
        start, end = event_time_start, event_time_end
    if start in (None, "") and end in (None, ""):
        return None
    problems: list[str] = []
    lo, hi = (
        _bound(key, value, problems)
        for key, value in (("sqlflow_start", start), ("sqlflow_end", end))
    )
    if lo is not None and hi is not None and lo >= hi:
        problems.append(
            f"sqlflow_start {lo.isoformat()} is not before sqlflow_end {hi.isoformat()}"
            " (the range [start, end) includes start, excludes end). Fix: swap them."
        )
    if not config.windowed:
        problems.append(
            "an explicit backfill range was given, but the model has no event_time or"
            " time partition_by. Fix: set event_time, or run without sqlflow_start/end."
        )
    if problems or lo is None or hi is None:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DbtConfigError(
            f"sqlflow_incremental model '{model_id}': bad backfill range (nothing was"
            f" written):\n{lines}"
        )
    return lo, hi


def _bound(key: str, value: Any, problems: list[str]) -> datetime | None:
    if value in (None, ""):
        problems.append(f"{key} is missing. Fix: {_RANGE_FIX}.")
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        problems.append(f"{key} {str(value)!r} is not an ISO date or timestamp. Fix: {_RANGE_FIX}.")
        return None


# -- windows -------------------------------------------------------------------------------


def static_strategy(config: SqlflowConfig) -> Strategy | None:
    """The strategy record when config alone decides it; None when ``auto`` looks at data."""
    static = resolve_static(config)
    return get_strategy(static.strategy) if static is not None else None


def plan_model_windows(
    config: SqlflowConfig,
    mode: str,
    state: LoadedState,
    now: datetime,
    explicit: tuple[datetime, datetime] | None,
    data_start: Callable[[], datetime | None],
) -> list[Interval]:
    """The windows of a windowed model's run, in time order (empty ones included).

    An explicit backfill reprocesses exactly ``[start, end)``; otherwise the loaded
    intervals decide (gaps, ``lookback`` and the current unit, see ``plan_windows``).
    A strategy that never re-reads a window (append) does not look back, and loads the
    current unit only up to now. ``data_start`` is only called when neither ``begin``
    nor a loaded interval gives the lower bound.

    Raises:
        DbtRuntimeError: when the table holds windows loaded under another model name
            only (a renamed model), which would load every window again.
    """
    batch_size = config.batch_size or "day"
    static = static_strategy(config)
    rereads = static is None or static.rereads_window
    if explicit is not None:
        windows = plan_explicit(explicit[0], explicit[1], batch_size)
    else:
        _refuse_renamed(config, mode, state)
        windows = plan_windows(
            list(state.loaded),
            begin=_lower_bound(config, state),
            now=now,
            batch_size=batch_size,
            lookback=config.lookback if rereads else 0,
            data_start=data_start() if config.begin is None and not state.loaded else None,
        )
    if rereads:
        return windows
    return [Interval(w.start, min(w.end, now)) for w in windows if w.start < now]


def _refuse_renamed(config: SqlflowConfig, mode: str, state: LoadedState) -> None:
    if mode == INCREMENTAL and not state.loaded and state.other_models:
        raise DbtRuntimeError(
            f"sqlflow_incremental model '{config.model}': its table holds windows loaded as"
            f" {', '.join(repr(m) for m in state.other_models)} (a renamed model?) and none"
            f" as '{config.model}', so every window would load again. Run it once with"
            " --full-refresh to rebuild the table under its new name."
        )


def _lower_bound(config: SqlflowConfig, state: LoadedState) -> datetime | None:
    """``begin``; else the earliest window ever loaded (a range invalidated at the very
    start is still owed), else None (the data's start decides)."""
    if config.begin is not None or not state.loaded:
        return config.begin
    first = state.first_window_start
    return min(first, state.loaded[0].start) if first is not None else None


def empty_indexes(windows: list[Interval], unit: str, busy: set[datetime]) -> set[int]:
    """Indexes of the windows whose unit start is not among the ``busy`` unit starts."""
    return {i for i, w in enumerate(windows) if truncate(w.start, unit) not in busy}


def census_targets(config: SqlflowConfig, mode: str, reads_window: bool) -> tuple[bool, bool]:
    """Which tables a run counts rows of to find its empty windows: ``(source, target)``.

    None when every window must run: a strategy that writes on an empty batch without
    replacing the window (snapshot closes vanished keys), or a model that reads its
    window (its rows depend on the window, so one census over the whole range says
    nothing per window). The target counts too for a strategy that replaces the window
    (or ``auto``, still undecided): its rows there would be deleted.
    """
    static = static_strategy(config)
    if config.event_time is None or reads_window:
        return False, False
    if static is not None and not static.judges_empty_windows:
        return False, False
    return True, mode == INCREMENTAL and (static is None or static.replaces_window)


def loaded_part(window: Interval, now: datetime) -> Interval | None:
    """The part of a window that counts as loaded: ``[start, min(end, now))``.

    The current unit is only loaded up to now; the rest of it is still owed, so the next
    run reloads it even with ``lookback=0`` (rows of later today are not lost).
    """
    end = min(window.end, now)
    return Interval(window.start, end) if end > window.start else None


# -- how batches are written ---------------------------------------------------------------


def batch_order_by(config: SqlflowConfig, windows: list[Interval | None]) -> str | None:
    """The column a batch's rows are written in order of (quoted), or None for none; the
    model's ``sorted_by`` when it has one (its order, whatever the partitions).

    Rows go in partition order so DuckDB's per-row-group min/max let later loads skip
    other partitions. When every batch is a window on the time partition field that lies
    in one partition (``batch_size`` no larger than the granularity, the usual backfill),
    a batch's rows are in partition order already and sorting them would only cost time.
    Windowed models without ``partition_by`` are ordered by ``event_time``. A change
    feed's batch is not written as it is (a row per key comes out of its events): never
    sorted.
    """
    static = static_strategy(config)
    if static is not None and static.change_feed:
        return None
    if config.sorted_by:
        return ", ".join(config.sorted_by)
    part = config.partition_by
    column = part.field if part is not None else config.event_time
    if column is None:
        return None
    if (
        part is not None
        and part.granularity is not None
        and config.event_time is not None
        and part.field.lower() == config.event_time.lower()
        and windows
        and all(w is not None and len(partition_keys(w, part.granularity)) == 1 for w in windows)
    ):
        return None
    return quote_identifier(column)


def variants(config: SqlflowConfig) -> tuple[Variant, ...]:
    """The strategies (and plain-insert forms) a batch of this model may run with."""
    static = resolve_static(config)
    if static is not None and static.strategy != "merge":
        return (Variant(static.strategy),)
    return (Variant("merge"), Variant("merge", True), Variant("append", True))


def direct_strategy(
    config: SqlflowConfig, partitions_on_event_time: bool | None, batch_checks: bool
) -> str | None:
    """The strategy whose windowed batches may skip staging, or None.

    A windowed insert_overwrite or append with no key to check, no ``dedupe_by`` and time
    partitions (if
    any, ``partitions_on_event_time`` is None without partitions) on event_time reads
    the model's query straight into the target; its batch checks then run on the
    target's window (insert_overwrite only: after an append the window holds more than
    the batch).
    """
    static = static_strategy(config)
    if not config.windowed or static is None or not static.may_skip_staging:
        return None
    if static.keyed or (static.replaces_window and config.unique_key):
        return None
    if config.dedupe_by:
        # The rows tied for last by dedupe_by are checked (and collapsed) on the staged batch.
        return None
    if partitions_on_event_time is False:
        return None
    if not static.rereads_window and batch_checks:
        return None
    return static.name


def new_keys_strategy(config: SqlflowConfig) -> str | None:
    """The strategy of a keyed windowed model whose consecutive batches may load as one
    INSERT when none of their keys is in the target, none is null and none is in two of
    them (the batch loop checks that on the group's rows before writing), or None.

    Batch by batch such batches are plain inserts (a merge or an ``auto`` batch whose
    keys are all new inserts them; a delete+insert deletes nothing), so one INSERT of the
    group's range writes exactly their rows. ``dedupe_by`` deduplicates per window (the
    range's rows differ), a snapshot writes meta columns and a change feed applies
    events: those load batch by batch.
    """
    if not config.windowed or not config.unique_key or config.dedupe_by:
        return None
    static = resolve_static(config)
    if static is None:
        return "append"  # auto: a batch whose keys are all new is a plain insert
    if static.strategy in ("merge", "delete+insert"):
        return static.strategy
    return None


def build_plan(
    config: SqlflowConfig,
    mode: str,
    windows: list[Interval] | None,
    empty_window_indexes: set[int],
    *,
    loaded_at_start: tuple[Interval, ...] = (),
    direct: str | None = None,
    new_keys: str | None = None,
    empty_flag: bool = False,
) -> LoadPlan:
    """The frozen plan of a run.

    Args:
        config: The model's config.
        mode: :data:`BUILD` or :data:`INCREMENTAL`.
        windows: The planned windows, or None for a model without windows.
        empty_window_indexes: Indexes of the windows with nothing to load.
        loaded_at_start: The model's loaded intervals before the run.
        direct: The strategy whose batches skip staging (:func:`direct_strategy`).
        new_keys: The strategy of a group of batches with only new keys loaded at once
            (:func:`new_keys_strategy`).
        empty_flag: dbt's ``--empty``: no batch would see a row, yet each would replace or
            close rows and record its window; only the (empty) table is built.
    """
    if windows is None:
        batches: tuple[Interval | None, ...] = (None,)
        idle: tuple[Interval, ...] = ()
    else:
        batches = tuple(w for i, w in enumerate(windows) if i not in empty_window_indexes)
        idle = tuple(w for i, w in enumerate(windows) if i in empty_window_indexes)
    if empty_flag and (mode == INCREMENTAL or config.windowed):
        batches, idle = (), ()
    return LoadPlan(
        mode=mode,
        batches=batches,
        empty_windows=idle,
        loaded_at_start=loaded_at_start,
        order_by=batch_order_by(config, list(batches)),
        variants=variants(config),
        direct=direct,
        new_keys=new_keys,
    )


# -- what Jinja sees -----------------------------------------------------------------------


def snapshot_settings(config: SqlflowConfig) -> dict[str, Any] | None:
    """The snapshot settings as plain data for the snapshot strategy's macros."""
    spec = config.snapshot
    if spec is None or config.strategy not in ("snapshot", AUTO):
        return None
    return {
        "strategy": spec.strategy,
        "updated_at": spec.updated_at,
        "check_cols": spec.check_cols if spec.check_cols == "all" else list(spec.check_cols),
        "hard_deletes": spec.hard_deletes,
        "dbt_valid_to_current": spec.valid_to_current,
        "columns": {name: spec.column(name) for name in SNAPSHOT_META_COLUMNS},
    }


def cdc_tables(run_id: str) -> tuple[str, str]:
    """The temporary tables of a cdc run's batches (quoted): its changes and its events."""
    return (
        quote_identifier(f"sqlflow_cdc_changes_{run_id[:12]}"),
        quote_identifier(f"sqlflow_cdc_events_{run_id[:12]}"),
    )


def cdc_settings(
    run_id: str,
    config: SqlflowConfig,
    columns: Mapping[str, str] | None,
    ledger: str | None,
    source: str | None = None,
) -> dict[str, Any] | None:
    """The cdc strategy's settings as plain data for its macros (see ``cdc.layout``):
    the column lists (quoted), the staged batch's select list, the ledger (sqlflow's
    state table of applied sequences and tombstones), the run's temporary tables and the
    SQL the events come from (``source``: the model's, Debezium envelopes flattened)."""
    spec = config.cdc
    if spec is None:
        return None
    shape = cdc.layout(spec, config.unique_key, list(columns or {}), columns)
    return {
        "stored_as": spec.stored_as,
        "key": list(shape.key),
        "columns": list(shape.columns),
        "value_columns": list(shape.values),
        "ignore_nulls": list(shape.ignore_nulls),
        "tracked": list(shape.tracked),
        "stage_select": shape.stage_select,
        "order": shape.order,
        "truncates": spec.has_truncates,
        "ledger": ledger,
        "changes": cdc_tables(run_id)[0],
        "events": cdc_tables(run_id)[1],
        "valid_from": quote_identifier(cdc.VALID_FROM),
        "valid_to": quote_identifier(cdc.VALID_TO),
        "source_sql": source,
    }


def jinja_plan(
    run_id: str,
    config: SqlflowConfig,
    plan: LoadPlan,
    columns: Mapping[str, str] | None = None,
    cdc_ledger: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The plan as the materialization and the strategy macros read it (plain data).

    ``unique_key`` holds the key columns quoted (for joins and window clauses);
    ``unique_key_names`` the names as configured; ``batch_columns`` the model's columns
    (quoted name and DuckDB type, as DESCRIBE gave them), the shape of a staged batch.
    """
    return {
        "batch_columns": [
            {"name": quote_identifier(name), "type": dtype}
            for name, dtype in (columns or {}).items()
        ],
        "id": run_id,
        "mode": plan.mode,
        "windowed": config.windowed,
        "has_batches": bool(plan.batches),
        "unique_key": [quote_identifier(k) for k in config.unique_key],
        "unique_key_names": list(config.unique_key),
        "dedupe_by": list(config.dedupe_by),
        "event_time": quote_identifier(config.event_time) if config.event_time else None,
        "order_by": plan.order_by,
        "sorted_by": ", ".join(config.sorted_by) or None,
        "on_schema_change": config.on_schema_change,
        "merge_update_columns": list(config.merge_update_columns or []),
        "merge_exclude_columns": list(config.merge_exclude_columns or []),
        "incremental_predicates": list(config.incremental_predicates),
        "snapshot": snapshot_settings(config),
        "cdc": cdc_settings(run_id, config, columns, cdc_ledger, source),
        "variants": [
            {
                "strategy": v.strategy,
                "plain_insert": v.plain_insert,
                "key": v.key,
                "macro_name": _macro(v.strategy),
            }
            for v in plan.variants
        ],
        "direct": {"strategy": plan.direct, "macro_name": _macro(plan.direct)}
        if plan.direct
        else None,
        # A group with only new keys is one plain insert (append's steps), written in the
        # model's order unless sorted_by asks for one: sorting a large group costs a
        # quarter of the insert (a window's rows are sorted, being few).
        "new_keys": {"strategy": "append", "macro_name": _macro("append")}
        if plan.new_keys
        else None,
        "new_keys_order_by": ", ".join(config.sorted_by) or None,
    }


def _macro(strategy: str) -> str:
    return get_strategy(strategy).macro
