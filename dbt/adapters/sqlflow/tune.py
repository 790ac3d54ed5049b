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
- ``memory_limit`` / ``threads`` (profile ``settings``): batches retried after running
  out of memory (:data:`OOM_SHARE` of them, or two) get a larger ``memory_limit`` when the
  machine has room, else half the ``threads`` (what the degraded retry did, and it
  succeeded); batches that spill (:data:`SPILL_SHARE` of them) get a ``memory_limit``
  that holds their peak plus what they spilled, or, when the machine has no room for it,
  a finer ``batch_size``.
- sort order: DuckDB keeps each row group's min and max per column and skips a row group
  whose range cannot match a filter (zone maps). A column the loads filter on
  (``event_time``, the partition column, the merge keys, ``incremental_predicates``)
  whose row groups' ranges overlap many others (:data:`OVERLAP`) is scanned almost whole
  by each batch; rewritten in that column's order, a batch reads a few row groups.

Not recommended (yet): ``incremental_predicates``. A predicate on the target's side is safe
only if no batch ever updates a row outside it, and neither the load history nor the
table's current rows show where a batch's keys were before it replaced them.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from dbt.adapters.sqlflow.intervals import GRANULARITIES
from dbt.adapters.sqlflow.sql import as_naive

MIN_LOADS = 10
HISTORY = 200
TINY_ROWS = 100_000
TINY_SECONDS = 0.5
TARGET_ROWS = 1_000_000
HUGE_SECONDS = 120.0
OOM_SHARE = 0.1
SPILL_SHARE = 0.2
MACHINE_SHARE = 0.8
OVERLAP = 4.0
MIN_ROW_GROUPS = 8
_GB = 1 << 30

# Units per next-coarser unit (a month counted as 30 days, a year as 12 months).
_FACTORS = {"hour": 24, "day": 7, "week": 30 / 7, "month": 12}


@dataclass(frozen=True)
class Batch:
    """One recorded batch: when it ran, how many rows it wrote, the DuckDB instance's peak
    memory and spill while it ran, and what it was retried after (None: not recorded)."""

    started_at: datetime
    finished_at: datetime
    rows: int
    peak_memory_bytes: int | None = None
    spilled_bytes: int | None = None
    retry_reasons: str | None = None
    #: How many batches were loaded by the one statement that loaded this one (a group
    #: loaded at once: its batches share their start; ``finished_at`` is the group's end).
    loaded_with: int = 1

    @property
    def out_of_memory(self) -> bool:
        """Whether the batch was retried after running out of memory."""
        return "out_of_memory" in (self.retry_reasons or "")

    @property
    def seconds(self) -> float:
        """How long the batch took (its share of the statement that loaded its group)."""
        return max(0.0, (self.finished_at - self.started_at).total_seconds()) / self.loaded_with


@dataclass(frozen=True)
class Recommendation:
    """One setting to change, why, and what it should gain.

    ``scope`` says where the setting lives: ``model`` (its config), ``profile`` (the
    profile's DuckDB ``settings``, for every model of the target), ``table`` (a one-time
    rewrite of the model's table) or ``sql`` (the model's ``config()`` call: a value
    with Jinja in it).
    """

    model: str
    key: str
    current: str
    recommended: str
    evidence: str
    expected_gain: str
    scope: str = "model"


@dataclass(frozen=True)
class Resources:
    """What the model's DuckDB may use: the profile's ``memory_limit`` and ``threads``
    and the machine's memory (None: unknown)."""

    memory_limit_bytes: int | None
    threads: int | None
    machine_bytes: int | None


@dataclass(frozen=True)
class ZoneMap:
    """One column's per-row-group ``(min, max)`` in the model's table, in storage order."""

    column: str
    ranges: list[tuple[Any, Any]]

    def overlap(self) -> float:
        """How many row groups' ranges each row group's range meets, on average (itself
        included): about 1 when the table is in this column's order, up to the number of
        row groups when every range spans the whole table."""
        ranges = sorted((lo, hi) for lo, hi in self.ranges if lo is not None and hi is not None)
        if not ranges:
            return 0.0
        lows = [lo for lo, _ in ranges]
        # Sorted by min: the ranges starting at or before our max and ending at or after
        # our min meet ours.
        met = sum(
            sum(1 for _, other_hi in ranges[: bisect.bisect_right(lows, hi)] if other_hi >= lo)
            for lo, hi in ranges
        )
        return met / len(ranges)

    def increasing(self) -> bool:
        """Whether the row groups' minima grow with their storage order (allowing one in
        ten out of step): the column follows the table's order."""
        lows = [lo for lo, _ in self.ranges if lo is not None]
        steps = sum(1 for a, b in itertools.pairwise(lows) if b < a)
        return len(lows) >= 2 and steps <= len(lows) // 10


def batches_from_loads(loads: Sequence[Any]) -> list[Batch]:
    """The recent batches that wrote rows (empty windows cost no batch), newest last,
    from ``state.LoadRow`` s. The batches of a group loaded at once (one statement) have
    start (their group's): each counts its share of the group's time."""
    together = Counter(load.started_at for load in loads)
    ends: dict[Any, Any] = {}
    for load in loads:
        if load.finished_at is not None and together[load.started_at] > 1:
            ends[load.started_at] = max(
                load.finished_at, ends.get(load.started_at, load.finished_at)
            )
    found = [
        Batch(
            load.started_at,
            ends.get(load.started_at, load.finished_at),
            load.rows_inserted + load.rows_updated + load.rows_deleted,
            load.peak_memory_bytes,
            load.spilled_bytes,
            load.retry_reasons,
            together[load.started_at],
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
    unit = window_unit(config)
    rows = statistics.median(b.rows for b in batches)
    seconds = statistics.median(b.seconds for b in batches)
    seen = (
        f"median {rows:,.0f} rows and {seconds:.2f} s per {unit} batch over the last"
        f" {len(batches)} batches"
    )
    found = []
    together = statistics.median(b.loaded_with for b in batches)
    if rows < TINY_ROWS and seconds < TINY_SECONDS and config.get("commit_every") != 1:
        # Grouped commits first (below); batches already loaded a group at a time by one
        # statement cost a state row each: larger ones would save nothing (and a window
        # over several partitions is sorted).
        coarser = _coarser(unit, rows) if together <= 1 else None
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
    elif rows < TINY_ROWS and seconds < TINY_SECONDS:
        found.append(
            Recommendation(
                model,
                "commit_every",
                "1",
                "auto",
                f"{seen}: one commit for each",
                "one commit per ~2 s of work instead of one per batch (and groups of"
                " batches that need no staging, or whose keys are all new, load as one"
                " statement); run tune again after a few loads for the batch size",
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


def window_unit(config: Mapping[str, Any]) -> str:
    """The unit of a model's windows: ``batch_size``, else its time partitions', else day."""
    return str(config.get("batch_size") or _partition_unit(config) or "day")


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


def size_text(size: float) -> str:
    """Bytes as DuckDB writes a memory_limit: ``4GB``, ``512MB``."""
    if size >= _GB:
        return f"{size / _GB:.0f}GB" if size % _GB == 0 else f"{size / _GB:.1f}GB"
    return f"{size / (1 << 20):.0f}MB"


def recommend_memory(
    model: str, config: Mapping[str, Any], batches: Sequence[Batch], resources: Resources
) -> list[Recommendation]:
    """``memory_limit`` / ``threads`` (or a finer ``batch_size``) for a model whose recent
    batches ran out of memory or spilled to disk; nothing otherwise.

    Args:
        model: The model's unique_id.
        config: Its config (for ``batch_size``).
        batches: Its recent batches that wrote rows, oldest first.
        resources: The profile's limits and the machine's memory.
    """
    if len(batches) < MIN_LOADS:
        return []
    oom = [b for b in batches if b.out_of_memory]
    spilled = [b for b in batches if (b.spilled_bytes or 0) > 0]
    limit, room = resources.memory_limit_bytes, _room(resources)
    if len(oom) >= 2 or len(oom) >= OOM_SHARE * len(batches):
        seen = (
            f"{len(oom)} of the last {len(batches)} batches ran out of memory"
            f" (memory_limit {size_text(limit) if limit else 'unknown'}) and passed on the"
            " degraded retry (half the threads, no insertion order)"
        )
        gain = (
            f"no failed first try: ~{statistics.median(b.seconds for b in oom):.1f} s saved"
            " for each of those batches, and no rollback"
        )
        if limit and room and room > limit:
            target = min(room, _round_gb(2 * limit))
            return [
                _profile(model, "memory_limit", size_text(limit), size_text(target), seen, gain)
            ]
        if resources.threads and resources.threads > 1:
            fewer = str(resources.threads // 2)
            return [_profile(model, "threads", str(resources.threads), fewer, seen, gain)]
        return []
    if len(spilled) < SPILL_SHARE * len(batches):
        return []
    need = max((b.peak_memory_bytes or 0) + (b.spilled_bytes or 0) for b in spilled)
    written = statistics.median(b.spilled_bytes or 0 for b in spilled)
    seen = (
        f"{len(spilled)} of the last {len(batches)} batches spilled to disk (median"
        f" {size_text(written)} written to the temporary directory, peak memory"
        f" {size_text(max(b.peak_memory_bytes or 0 for b in spilled))}, memory_limit"
        f" {size_text(limit) if limit else 'unknown'})"
    )
    gain = (
        f"no spill: ~{size_text(written)} a batch not written to and read back from disk"
        f" (median {statistics.median(b.seconds for b in spilled):.1f} s a spilling batch)"
    )
    target = _round_gb(need * 1.25)
    if limit and room and limit < target <= room:
        return [_profile(model, "memory_limit", size_text(limit), size_text(target), seen, gain)]
    unit = window_unit(config)
    finer = _finer(unit)
    if finer is None:
        return []
    return [Recommendation(model, "batch_size", unit, finer, seen, f"{gain}: smaller batches")]


def _room(resources: Resources) -> int | None:
    """The memory_limit the machine allows (:data:`MACHINE_SHARE` of it), or None."""
    machine = resources.machine_bytes
    return int(machine * MACHINE_SHARE) // _GB * _GB if machine else None


def _round_gb(size: float) -> int:
    return max(1, math.ceil(size / _GB)) * _GB


def _profile(
    model: str, key: str, current: str, recommended: str, evidence: str, gain: str
) -> Recommendation:
    return Recommendation(model, key, current, recommended, evidence, gain, scope="profile")


def filter_columns(config: Mapping[str, Any]) -> list[str]:
    """The columns a model's loads filter its table on, the batch's window first:
    ``event_time``, the partition column, the columns of ``incremental_predicates``
    (``DBT_INTERNAL_DEST.<column>``) and the merge keys."""
    found: list[str] = []
    partition = config.get("partition_by")
    named = [
        config.get("event_time"),
        partition.get("field") if isinstance(partition, Mapping) else None,
        *(
            m.group(1)
            for p in config.get("incremental_predicates") or []
            for m in re.finditer(r'DBT_INTERNAL_DEST\."?(\w+)', str(p))
        ),
        *_as_list(config.get("unique_key")),
    ]
    for column in named:
        if column and str(column).lower() not in (c.lower() for c in found):
            found.append(str(column))
    return found


def recommend_sort_order(
    model: str, config: Mapping[str, Any], zones: Mapping[str, ZoneMap]
) -> list[Recommendation]:
    """``sorted_by`` on the time column its loads filter on (the batch's window), and one
    rewrite of the table, when the table's row groups are far out of that order.

    DuckDB keeps a min and max per row group and column and skips the row groups whose
    range cannot match a filter; ordered rows make the ranges narrow and disjoint, so a
    batch's filter on ``event_time`` (its window, the delete or merge of its range) reads
    the few row groups of that range. Unordered, every range spans the table and nothing
    is skipped. ``sorted_by`` is the order sqlflow writes every batch and build in (a
    group of batches loaded at once, too, which is otherwise written in the model's
    order); the full refresh puts the rows already there in it.

    Args:
        model: The model's unique_id.
        config: Its config (``event_time``, ``partition_by``, ``sorted_by``, ...).
        zones: Zone maps of the filter columns, by column name.
    """
    partition = config.get("partition_by")
    times = [config.get("event_time")]
    if isinstance(partition, Mapping) and partition.get("granularity"):
        times.append(partition.get("field"))
    others = [c for c in filter_columns(config) if c not in times]
    current = ", ".join(_as_list(config.get("sorted_by")))
    for column in (c for c in times if c):
        zone = zones.get(column)
        if zone is None or len(zone.ranges) < MIN_ROW_GROUPS:
            continue
        depth = zone.overlap()
        if depth <= OVERLAP:
            return []
        name = model.rsplit(".", 1)[-1]
        also = f"; its loads also filter on {', '.join(others)}" if others else ""
        first = current.split(",")[0].split()[0].strip('"').lower() if current else ""
        keep = first == str(column).lower()
        return [
            Recommendation(
                model,
                "sorted_by",
                current or "none",
                (current if keep else str(column))
                + f", then `dbt run --full-refresh -s {name}` once: it rewrites the table in"
                f" {column} order (sorted_by keeps new batches in it)",
                f"row groups unordered on {column}: each of its {len(zone.ranges)} row"
                f" groups' [min, max] of {column} meets {depth:.0f} row groups' on average"
                f" (in {column} order: ~1), so a batch's filter on {column} skips almost"
                f" none{also}",
                f"DuckDB skips the row groups whose [min, max] of {column} miss a batch's"
                f" window: each batch's scans of the table on {column} read ~{depth:.0f}x"
                " fewer row groups (measured here at 10M rows: a day's DELETE 7 ms in"
                " order, 38 ms out of order)",
                # The gain is the rewritten table's: an A/B of one load cannot show it.
                scope="table",
            )
        ]
    return []


@dataclass(frozen=True)
class Reach:
    """How far before their windows the rows of a model's latest load lie on one time
    column of its table, and that column's zone map.

    Attributes:
        column: The column.
        rows: The rows of the latest load's windows.
        lag_seconds: The most any of them lies before its window's start on ``column``
            (``date_trunc(batch_size, event_time) - column``; negative: after it).
        window_start: The latest load's first window start (naive UTC).
        zone: The column's per-row-group ``(min, max)``.
    """

    column: str
    rows: int
    lag_seconds: float
    window_start: datetime
    zone: ZoneMap


#: The share of the table's row groups a predicate must let a batch skip to be advised.
PREDICATE_SKIP = 0.5


def recommend_predicates(
    model: str, config: Mapping[str, Any], reaches: Sequence[Reach]
) -> list[Recommendation]:
    """``incremental_predicates`` for a keyed model whose batches' rows lie in a narrow
    range of a time column before their window, in a table ordered on that column.

    A merge (or delete+insert) looks for each batch's keys in the whole table (or the
    batch's partition range). When each row's ``column`` is fixed for its key (a created
    time) and the latest load's rows lay at most ``lag`` before their window, a predicate
    ``DBT_INTERNAL_DEST.column >= window start - 2 x lag`` (whole days) keeps every match
    and lets DuckDB skip the row groups whose max of ``column`` is older: the rows a
    batch's keys can match are in the newest part of an ordered table.

    Args:
        model: The model's unique_id.
        config: Its config (``incremental_strategy``, ``unique_key``,
            ``incremental_predicates``).
        reaches: Per candidate time column (not ``event_time``, not the time partition
            column, whose range the batch prunes already).
    """
    strategy = config.get("incremental_strategy") or "auto"
    if not config.get("unique_key") or strategy not in ("merge", "delete+insert", "auto"):
        return []
    if config.get("incremental_predicates"):
        return []
    for reach in reaches:
        zone = reach.zone
        if reach.rows == 0 or len(zone.ranges) < MIN_ROW_GROUPS:
            continue
        if zone.overlap() > OVERLAP or not zone.increasing():
            continue
        days = max(1, math.ceil(2 * max(reach.lag_seconds, 0.0) / 86400))
        bound = reach.window_start - timedelta(days=days)
        skipped = sum(1 for _, high in zone.ranges if _before(high, bound)) / len(zone.ranges)
        if skipped < PREDICATE_SKIP:
            continue
        column = reach.column
        lag = timedelta(seconds=round(max(reach.lag_seconds, 0.0)))
        return [
            Recommendation(
                model,
                "incremental_predicates",
                "none",
                f'["DBT_INTERNAL_DEST.{column} >= " ~ sqlflow_window_start() ~'
                f' " - interval {days} day"] in the model\'s config()',
                f"the {reach.rows:,} rows of its latest load lay at most {lag} before their"
                f" window's start on {column} (the predicate allows twice that, in whole"
                f" days); its {len(zone.ranges)} row groups are in {column} order",
                f"each batch looks for its keys only in the row groups of {column} from"
                f" {days} day(s) before its window: for the latest one"
                f" {skipped:.0%} of the table's row groups skipped by their min/max (more"
                f" as the table grows). Only if a key's {column} never changes: a key whose"
                " row is older than that would be inserted again",
                scope="sql",
            )
        ]
    return []


def _before(value: Any, bound: datetime) -> bool:
    """Whether a zone map's value (date, naive or aware datetime) is before ``bound``
    (naive UTC)."""
    if isinstance(value, datetime):
        return (as_naive(value) or value) < bound
    if isinstance(value, date):
        return value < bound.date()
    return False


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# -- --apply: the settings written into the model's properties YAML ----------------------------


class ConfigEditError(ValueError):
    """The properties file cannot be edited safely; the message says why and the fix."""


def set_model_config(text: str | None, model: str, settings: Mapping[str, Any]) -> str:
    """The properties YAML ``text`` with ``settings`` set in the ``config:`` of the model
    named ``model``, every other line kept as it was (comments, order, quoting).

    A missing file (None) or a file without the model gets a ``models:`` entry; a model
    without ``config:`` gets one after its ``name:``; keys already in its ``config:``
    have their value replaced in place, new ones are added under it at its indentation.
    The result is parsed again and must equal the original with only those keys changed.

    Raises:
        ConfigEditError: The file does not parse, or its ``models:`` or the model's
            ``config:`` is written in flow style (``{...}``), which is not edited.
    """
    import yaml  # type: ignore[import-untyped]

    if not text or not text.strip():
        text = "version: 2\n"
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigEditError(f"does not parse as YAML ({e}). Fix: correct it first") from e
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    entry = _model_entry(root, model)
    if entry is None:
        lines = _add_model(lines, root, model, settings)
    else:
        lines = _edit_config(lines, entry, settings)
    edited = "".join(lines)
    _check_edit(text, edited, model, settings)
    return edited


def _model_entry(root: Any, model: str) -> Any:
    """The mapping node of ``model`` under ``models:``, or None."""
    models = _value(root, "models")
    if models is None:
        return None
    if models.flow_style or not hasattr(models, "value") or not isinstance(models.value, list):
        raise ConfigEditError("its models: is not a block list. Fix: write it as `- name: ...`")
    for item in models.value:
        name = _value(item, "name")
        if name is not None and getattr(name, "value", None) == model:
            return item
    return None


def _value(node: Any, key: str) -> Any:
    """The value node of ``key`` in a mapping node, or None."""
    if node is None or node.tag != "tag:yaml.org,2002:map":
        return None
    return next((v for k, v in node.value if k.value == key), None)


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar for a setting: numbers as numbers, text quoted."""
    text = str(value)
    return text if text.isdigit() else json.dumps(text)


def _add_model(lines: list[str], root: Any, model: str, settings: Mapping[str, Any]) -> list[str]:
    """A ``models:`` entry for the model with its ``config:``, after the last one (a
    ``models:`` list at the end of the file when there is none)."""
    models = _value(root, "models")
    if models is None:
        return [*lines, "models:\n", *_entry_lines(2, 4, model, settings)]
    if not isinstance(models.value, list) or not models.value:
        raise ConfigEditError("its models: is empty. Fix: remove it or list a model under it")
    first = models.value[0]
    dash = lines[first.start_mark.line].rfind("-", 0, first.start_mark.column)
    end = _end_line(models.value[-1], lines)
    entry = _entry_lines(dash, first.start_mark.column, model, settings)
    return [*lines[:end], *entry, *lines[end:]]


def _entry_lines(dash: int, column: int, model: str, settings: Mapping[str, Any]) -> list[str]:
    """``- name: model`` and its ``config:`` block, the keys at ``column``."""
    return [
        f"{' ' * dash}-{' ' * (column - dash - 1)}name: {model}\n",
        *_config_lines(column, settings),
    ]


def _config_lines(column: int, settings: Mapping[str, Any]) -> list[str]:
    pad = " " * column
    return [f"{pad}config:\n", *(f"{pad}  {k}: {_yaml_scalar(v)}\n" for k, v in settings.items())]


def _edit_config(lines: list[str], entry: Any, settings: Mapping[str, Any]) -> list[str]:
    """The model's ``config:`` with ``settings``: values replaced in place, new keys
    added after its last line; a ``config:`` after ``name:`` when it has none."""
    config = _value(entry, "config")
    if config is None:
        name = next(k for k, _ in entry.value if k.value == "name")
        at = name.end_mark.line + 1
        return [*lines[:at], *_config_lines(entry.start_mark.column, settings), *lines[at:]]
    if config.tag != "tag:yaml.org,2002:map" or config.flow_style or not config.value:
        raise ConfigEditError(
            "the model's config: is not a block mapping. Fix: write it as one key per line"
        )
    lines = list(lines)
    new = dict(settings)
    for key, value in config.value:
        if key.value not in new:
            continue
        if value.start_mark.line != value.end_mark.line or not hasattr(value, "style"):
            raise ConfigEditError(
                f"the model's config: {key.value} spans several lines. Fix: write it on one line"
            )
        line = lines[value.start_mark.line]
        scalar = _yaml_scalar(new.pop(key.value))
        lines[value.start_mark.line] = (
            line[: value.start_mark.column] + scalar + line[value.end_mark.column :]
        )
    end = _end_line(config.value[-1][1], lines)
    pad = " " * config.start_mark.column
    added = [f"{pad}{k}: {_yaml_scalar(v)}\n" for k, v in new.items()]
    return [*lines[:end], *added, *lines[end:]]


def _end_line(node: Any, lines: Sequence[str]) -> int:
    """The index of the first line after ``node`` (its end mark is the next token's start
    for a block, the end of its text for a scalar)."""
    mark = node.end_mark
    if mark.line >= len(lines) or not lines[mark.line][: mark.column].strip():
        return mark.line
    return mark.line + 1


def _check_edit(before: str, after: str, model: str, settings: Mapping[str, Any]) -> None:
    """Refuse an edit that changed anything but the model's settings."""
    import yaml

    old = yaml.safe_load(before) or {}
    expected = {k: yaml.safe_load(_yaml_scalar(v)) for k, v in settings.items()}
    entries = old.setdefault("models", None) or []
    entry = next((m for m in entries if m.get("name") == model), None)
    if entry is None:
        entries.append({"name": model, "config": expected})
        old["models"] = entries
    else:
        entry["config"] = {**(entry.get("config") or {}), **expected}
    try:
        same = yaml.safe_load(after) == old
    except yaml.YAMLError:
        same = False
    if not same:
        raise ConfigEditError(
            "an edit of it would change more than the model's config. Fix: add the"
            f" settings by hand: {', '.join(f'{k}: {v}' for k, v in expected.items())}"
        )
