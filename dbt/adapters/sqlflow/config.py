"""Model configuration of ``materialized='sqlflow_incremental'``: parsing and validation.

``SqlflowConfig.parse`` reads the model's config dict, checks it against the columns the
model produces, gathers every problem and raises one ``DbtConfigError`` that names the
model, each key, its bad value, what is allowed and the fix (``config_error`` words it, for
the quality checks' problems too). A key close to one of :data:`SQLFLOW_KEYS` that neither
dbt nor sqlflow reads is one of those problems: dbt would ignore it silently. Nothing is
written before it runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbt_common.exceptions import DbtConfigError

from dbt.adapters.sqlflow.cdc import CdcSpec, parse_cdc
from dbt.adapters.sqlflow.intervals import parse_timestamp
from dbt.adapters.sqlflow.redact import RedactSettings
from dbt.adapters.sqlflow.strategies import KEYED_STRATEGIES, REGISTRY, STRATEGY_NAMES

STRATEGIES = STRATEGY_NAMES
ON_SCHEMA_CHANGE = ("ignore", "fail", "append_new_columns", "sync_all_columns")
GRANULARITIES = ("hour", "day", "week", "month", "year")
TIME_TYPES: tuple[str, ...] = (
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMPTZ",
    "TIMESTAMP_NS",
    "TIMESTAMP_MS",
    "TIMESTAMP_S",
    "DATETIME",
)
HARD_DELETES = ("ignore", "invalidate", "new_record")
SNAPSHOT_STRATEGIES = ("timestamp", "check")
SNAPSHOT_META_COLUMNS = (
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_is_deleted",
)

SQLFLOW_KEYS: tuple[str, ...] = (
    "incremental_strategy",
    "unique_key",
    "dedupe_by",
    "merge_update_columns",
    "merge_exclude_columns",
    "on_schema_change",
    "partition_by",
    "event_time",
    "batch_size",
    "lookback",
    "begin",
    "snapshot",
    "hard_deletes",
    "dbt_valid_to_current",
    "snapshot_meta_column_names",
    "quality_checks",
    "incremental_predicates",
    "commit_every",
    "sqlflow_redact",
    "cdc",
    "sorted_by",
)
"""Every config key ``SqlflowConfig.parse`` reads (``_Parser.get`` refuses any other): a key
close to one of these that neither dbt nor sqlflow knows is taken for a misspelling."""


def config_error(model: str, problems: Sequence[str]) -> DbtConfigError:
    """The one error of a model's configuration problems: one count, one line each.

    Args:
        model: The model's unique id.
        problems: One line per problem, each naming the key, the bad value and the fix.
    """
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    lines = "\n".join(f"  - {p}" for p in problems)
    return DbtConfigError(
        f"sqlflow_incremental model '{model}' has {count} configuration {noun}"
        f" (nothing was written):\n{lines}"
    )


@dataclass(frozen=True)
class PartitionBy:
    """A model's partitions: a time field with a granularity, or a value field."""

    field: str
    granularity: str | None = None
    data_type: str | None = None

    @property
    def is_time(self) -> bool:
        """True for time partitions (a granularity is set)."""
        return self.granularity is not None


@dataclass(frozen=True)
class SnapshotSpec:
    """How the snapshot strategy detects a change, as in dbt snapshots."""

    strategy: str
    updated_at: str | None = None
    check_cols: tuple[str, ...] | str = ()
    hard_deletes: str = "ignore"
    valid_to_current: str | None = None
    column_names: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str:
        """The configured name of a snapshot meta column (e.g. ``dbt_valid_to``)."""
        return self.column_names.get(name, name)


@dataclass(frozen=True)
class CommitEvery:
    """How many consecutive batches one transaction carries (``commit_every``).

    The group commits after ``batches`` batches, or as soon as it has written ``rows``
    rows or run ``seconds`` seconds, whichever comes first (the last batch's transaction
    always stays open for the model's post-hooks). ``batch_size`` stays the unit of
    state: every batch keeps its own interval, load row and counts.
    """

    batches: int | None = None
    rows: int | None = None
    seconds: float | None = None
    auto: bool = False

    def due(self, batches: int, rows: int, seconds: float) -> bool:
        """Whether a group of ``batches`` batches, ``rows`` rows written in ``seconds``
        should commit now."""
        return (
            (self.batches is not None and batches >= self.batches)
            or (self.rows is not None and rows >= self.rows)
            or (self.seconds is not None and seconds >= self.seconds)
        )

    def describe(self) -> str:
        """The setting in the config's words."""
        if self.auto:
            return "auto"
        if self.batches is not None:
            return str(self.batches)
        if self.rows is not None:
            return f"{{rows: {self.rows}}}"
        return f"{{seconds: {self.seconds}}}"


EVERY_BATCH = CommitEvery(batches=1)
AUTO_COMMIT = CommitEvery(rows=10_000_000, seconds=2.0, auto=True)
"""``commit_every='auto'``: a group commits once it has run 2 s (measured on this run's
batches as they load) or written 10M rows, so a failure costs at most a few seconds of
work, a tiny batch does not pay a commit of its own, and a huge one commits alone."""


@dataclass(frozen=True)
class SqlflowConfig:
    """The validated config of one sqlflow_incremental model."""

    model: str
    strategy: str = "auto"
    unique_key: tuple[str, ...] = ()
    dedupe_by: tuple[str, ...] = ()
    merge_update_columns: tuple[str, ...] | None = None
    merge_exclude_columns: tuple[str, ...] | None = None
    on_schema_change: str = "ignore"
    partition_by: PartitionBy | None = None
    event_time: str | None = None
    batch_size: str | None = None
    begin: datetime | None = None
    lookback: int = 1
    snapshot: SnapshotSpec | None = None
    quality_checks: tuple[Any, ...] = ()
    incremental_predicates: tuple[str, ...] = ()
    commit_every: CommitEvery = AUTO_COMMIT
    redact: RedactSettings = field(default_factory=RedactSettings)
    """The model's ``sqlflow_redact`` (laid over the profile's by the adapter)."""
    cdc: CdcSpec | None = None
    sorted_by: tuple[str, ...] = ()
    """dbt-duckdb's ``sorted_by`` (columns or expressions, each with ASC/DESC): the order
    sqlflow writes every batch and build in (on a DuckLake also the table's own
    ``SET SORTED BY``)."""
    unknown_keys: tuple[str, ...] = ()
    """Keys neither dbt nor sqlflow reads and not close to a sqlflow key (a package's own,
    which dbt allows): kept as dbt keeps them, listed at debug level."""

    @property
    def windowed(self) -> bool:
        """True when loads run in time windows (an event_time or a time partition)."""
        return self.event_time is not None

    @property
    def time_unit(self) -> str | None:
        """The batch size of windowed loads."""
        return self.batch_size

    @classmethod
    def parse(
        cls,
        model: str,
        raw: Mapping[str, Any],
        columns: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
        dbt_keys: Collection[str] = (),
    ) -> SqlflowConfig:
        """Validate a model's config dict.

        Args:
            model: The model's unique id, used in every message.
            raw: The model's config (``model.config`` in Jinja).
            columns: Column name -> DuckDB type of what the model's SQL returns, when
                known; keys naming a missing column are then errors.
            now: Current UTC time; ``begin`` may not lie after it.
            dbt_keys: The config keys dbt and the adapter know (never misspellings).

        Returns:
            The validated config.

        Raises:
            DbtConfigError: with every problem found, in one message.
        """
        config, problems = cls.check(model, raw, columns, now=now, dbt_keys=dbt_keys)
        if problems:
            raise config_error(model, problems)
        return config

    @classmethod
    def check(
        cls,
        model: str,
        raw: Mapping[str, Any],
        columns: Mapping[str, str] | None = None,
        *,
        now: datetime | None = None,
        dbt_keys: Collection[str] = (),
    ) -> tuple[SqlflowConfig, list[str]]:
        """Read a model's config dict as :meth:`parse` does, without raising.

        Returns:
            The config (with defaults in place of bad values) and every problem found, one
            line each; the config is valid only when there are none.
        """
        p = _Parser(model, raw, columns)
        unknown = p.unknown_keys(dbt_keys)
        strategy = p.choice("incremental_strategy", STRATEGIES, "auto")
        unique_key, dedupe_by = p.keys()
        update_cols, exclude_cols = p.merge_columns(unique_key)
        on_schema_change = p.choice("on_schema_change", ON_SCHEMA_CHANGE, "ignore")
        window = p.window(now)
        p.check_lookback(strategy)
        snapshot = p.snapshot(strategy)
        p.check_snapshot(snapshot, on_schema_change, window.event_time)
        p.check_strategy_needs(strategy, unique_key, window.partition_by, snapshot)
        quality = p.quality_checks()
        predicates = p.string_list("incremental_predicates")
        commit_every = p.commit_every()
        redact = p.redact()
        cdc = p.cdc(strategy, unique_key, window.event_time)
        sorted_by = tuple(e.strip() for e in p.string_list("sorted_by") if e.strip())
        config = cls(
            model=model,
            strategy=strategy or "auto",
            unique_key=unique_key,
            dedupe_by=dedupe_by,
            merge_update_columns=update_cols,
            merge_exclude_columns=exclude_cols,
            on_schema_change=on_schema_change or "ignore",
            partition_by=window.partition_by,
            event_time=window.event_time,
            batch_size=window.batch_size,
            begin=window.begin,
            lookback=window.lookback,
            snapshot=snapshot,
            quality_checks=quality,
            incremental_predicates=predicates,
            commit_every=commit_every,
            redact=redact,
            cdc=cdc,
            sorted_by=sorted_by,
            unknown_keys=unknown,
        )
        return config, p.problems


@dataclass(frozen=True)
class _Window:
    """The time-window keys of a config, as :meth:`_Parser.window` read them."""

    partition_by: PartitionBy | None
    event_time: str | None
    batch_size: str | None
    lookback: int
    begin: datetime | None


def _plain_column(expression: str) -> str | None:
    """The column of an ORDER BY item that is a bare column (``updated_at desc``), else None."""

    match = re.fullmatch(
        r'\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_]*)'
        r"(\s+(asc|desc))?(\s+nulls\s+(first|last))?\s*",
        expression,
        flags=re.IGNORECASE,
    )
    if match is None:
        return None
    name = match.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _normal_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            best = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, rows[-2][j - 2] + 1)
            row.append(best)
        rows.append(row)
    return rows[-1][-1]


def _meant_key(key: str) -> str | None:
    """The sqlflow key ``key`` misspells, or None when it is close to none.

    Keys are compared without case, ``_`` and ``-``; then one edit is allowed (two for keys
    of twelve letters or more), so a package's own keys rarely match.
    """
    if not isinstance(key, str):
        return None
    normal = _normal_key(key)
    limit = 2 if len(normal) >= 12 else 1
    found = [(_edit_distance(normal, _normal_key(k)), k) for k in SQLFLOW_KEYS]
    distance, meant = min(found, key=lambda pair: pair[0])
    return meant if distance <= limit else None


def clip_text(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...``) for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def partition_by_mapping(value: Any) -> dict[str, Any] | None:
    """A ``partition_by`` config as a dict with a text ``field`` (a bare name is the
    field), or None when it is not one (the callers say so in their own words)."""
    if isinstance(value, str):
        return {"field": value}
    if isinstance(value, Mapping) and isinstance(value.get("field"), str):
        return dict(value)
    return None


class _Parser:
    """Reads keys of a raw config and gathers problems."""

    def __init__(
        self, model: str, raw: Mapping[str, Any], columns: Mapping[str, str] | None
    ) -> None:
        self.model = model
        self._raw = raw
        self.columns = {k.lower(): (k, v) for k, v in (columns or {}).items()}
        self.known_columns = columns is not None
        self.problems: list[str] = []

    def error(self, key: str, value: Any, problem: str, fix: str) -> None:
        shown = "" if value is None else f" {value!r}"
        self.problems.append(f"{key}{shown} {problem}. Fix: {fix}.")

    def get(self, key: str) -> Any:
        """The raw value of ``key``, which must be one of :data:`SQLFLOW_KEYS`."""
        if key not in SQLFLOW_KEYS:
            # A programming error: a key read here and missing from the list would be
            # taken for an unknown key.
            raise KeyError(f"{key!r} is read by SqlflowConfig.parse but not in SQLFLOW_KEYS")
        return self._raw.get(key)

    def unknown_keys(self, dbt_keys: Collection[str]) -> tuple[str, ...]:
        """Report keys that look like a misspelled sqlflow key; return the other unknown
        keys (packages' own, as dbt allows them)."""
        ignored = []
        for key, value in self._raw.items():
            if key in SQLFLOW_KEYS or key in dbt_keys:
                continue
            meant = _meant_key(key)
            if meant is None:
                ignored.append(str(key))
                continue
            shown = clip_text(repr(value))
            self.problems.append(
                f"unknown config `{key}` — did you mean `{meant}`? {key}={shown} would be"
                f" ignored (sqlflow reads {meant}). Fix: rename {key} to {meant}."
            )
        return tuple(sorted(ignored))

    def choice(self, key: str, allowed: Sequence[str], default: str | None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or value.lower() not in allowed:
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value.lower(), allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.error(
                key,
                value,
                f"is not one of: {', '.join(allowed)}{hint}",
                f"set {key} to one of them",
            )
            return default
        return value.lower()

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None or value == []:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        self.error(key, value, "must be a string or a list of strings", f"write {key}=['col']")
        return ()

    def check_column(self, key: str, name: str) -> None:
        if self.known_columns and name.lower() not in self.columns:
            available = ", ".join(v[0] for v in self.columns.values())
            close = difflib.get_close_matches(name.lower(), list(self.columns), n=1)
            hint = f" (did you mean '{self.columns[close[0]][0]}'?)" if close else ""
            self.error(
                key,
                name,
                f"names a column the model does not produce{hint}; its columns are: {available}",
                f"select {name} in the model or change {key}",
            )

    def column_list(self, key: str, allow_none: bool = False) -> Any:
        value = self.get(key)
        if value is None and allow_none:
            return None
        names = self.string_list(key)
        for name in names:
            self.check_column(key, name)
        if len({n.lower() for n in names}) != len(names):
            self.error(key, list(names), "lists a column twice", "list each column once")
        return names

    def optional_column(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.error(key, value, "must be a column name", f"write {key}='event_ts'")
            return None
        self.check_column(key, value)
        self.check_time_type(key, value)
        return value

    def check_time_type(self, key: str, name: str) -> None:
        entry = self.columns.get(name.lower())
        if entry is None:
            return
        data_type = entry[1].upper()
        if data_type not in TIME_TYPES:
            self.error(
                key,
                name,
                f"is of type {data_type}, not DATE, TIMESTAMP or TIMESTAMPTZ",
                f"cast {name} to a timestamp in the model, or choose a time column",
            )

    def check_date_units(
        self, partition_by: PartitionBy | None, event_time: str | None, batch_size: str | None
    ) -> None:
        """A DATE column has no hours: hour partitions or hour batches on it load nothing."""

        def is_date(name: str | None) -> bool:
            entry = self.columns.get(name.lower()) if name else None
            return entry is not None and entry[1].upper() == "DATE"

        if partition_by is not None and partition_by.granularity == "hour":
            if is_date(partition_by.field):
                self.error(
                    "partition_by.granularity",
                    "hour",
                    f"cannot partition the DATE column {partition_by.field} (a date has no hours)",
                    "use granularity 'day' (or coarser), or partition a TIMESTAMP column",
                )
        elif batch_size == "hour" and is_date(event_time):
            self.error(
                "batch_size",
                "hour",
                f"cannot cut the DATE column {event_time} into hours (a date has no hours)",
                "use batch_size 'day' (or coarser), or a TIMESTAMP event_time",
            )

    def partition_by(self) -> PartitionBy | None:
        value = self.get("partition_by")
        if value is None:
            return None
        example = "{'field': 'event_ts', 'granularity': 'day'} or {'field': 'region'}"
        mapping = partition_by_mapping(value)
        if mapping is None:
            self.error("partition_by", value, "must be a dict with a 'field'", f"write {example}")
            return None
        value = mapping
        unknown = sorted(set(value) - {"field", "granularity", "data_type"})
        if unknown:
            self.error(
                "partition_by",
                dict(value),
                f"has unknown key(s) {unknown}",
                f"use only 'field' and 'granularity', as in {example}",
            )
        name = value["field"]
        self.check_column("partition_by.field", name)
        granularity = value.get("granularity")
        if granularity is not None:
            if not isinstance(granularity, str) or granularity.lower() not in GRANULARITIES:
                self.error(
                    "partition_by.granularity",
                    granularity,
                    f"is not one of: {', '.join(GRANULARITIES)}",
                    "set granularity to one of them, or remove it for value partitions",
                )
                granularity = None
            else:
                granularity = granularity.lower()
                self.check_time_type("partition_by.field", name)
        entry = self.columns.get(name.lower())
        return PartitionBy(
            field=name, granularity=granularity, data_type=entry[1] if entry else None
        )

    def commit_every(self) -> CommitEvery:
        value = self.get("commit_every")
        fix = (
            "write commit_every='auto' (the default), a number of batches (1 commits each"
            " batch), {'rows': N} or {'seconds': S}"
        )
        if value is None or value == "auto":
            return AUTO_COMMIT
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return CommitEvery(batches=value)
        if isinstance(value, Mapping) and len(value) == 1:
            ((key, number),) = value.items()
            is_number = isinstance(number, int | float) and not isinstance(number, bool)
            if key == "rows" and is_number and isinstance(number, int) and number >= 1:
                return CommitEvery(rows=number)
            if key == "seconds" and is_number and number > 0:
                return CommitEvery(seconds=float(number))
        self.error("commit_every", value, "is not a batch count, rows or seconds target", fix)
        return AUTO_COMMIT

    def lookback(self) -> int:
        value = self.get("lookback")
        if value is None:
            return 1
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(
                "lookback",
                value,
                "must be an integer >= 0 (batch_size units re-read before the last loaded end)",
                "set lookback=1, or 0 to re-read nothing",
            )
            return 1
        return value

    def begin(self, now: datetime | None) -> datetime | None:
        value = self.get("begin")
        if value is None:
            return None
        try:
            begin = parse_timestamp(value)
        except ValueError:
            self.error(
                "begin",
                value,
                "is not an ISO date or timestamp",
                "write begin='2025-01-01' or begin='2025-01-01T00:00:00'",
            )
            return None
        if now is not None and begin > now:
            self.error(
                "begin",
                value,
                f"lies in the future (now is {now.isoformat(sep=' ')} UTC)",
                "set begin to the earliest time the model has data for",
            )
        return begin

    def snapshot(self, strategy: str | None) -> SnapshotSpec | None:
        value = self.get("snapshot")
        if value is None:
            if strategy == "snapshot":
                self.error(
                    "snapshot",
                    None,
                    "is required by incremental_strategy 'snapshot'",
                    "set snapshot={'strategy': 'timestamp', 'updated_at': 'updated_at'}"
                    " or {'strategy': 'check', 'check_cols': 'all'}",
                )
            return None
        if not isinstance(value, Mapping):
            self.error("snapshot", value, "must be a dict", "write {'strategy': 'check', ...}")
            return None
        kind = value.get("strategy")
        if kind not in SNAPSHOT_STRATEGIES:
            self.error(
                "snapshot.strategy",
                kind,
                "is not one of: timestamp, check",
                "set snapshot.strategy to 'timestamp' (with updated_at) or 'check' (with"
                " check_cols)",
            )
            return None
        updated_at = self.snapshot_updated_at(value) if kind == "timestamp" else None
        check_cols = self.snapshot_check_cols(value) if kind == "check" else ()
        hard_deletes = self.choice("hard_deletes", HARD_DELETES, "ignore") or "ignore"
        current = self.get("dbt_valid_to_current")
        names = self.snapshot_column_names()
        return SnapshotSpec(
            strategy=kind,
            updated_at=updated_at,
            check_cols=check_cols,
            hard_deletes=hard_deletes,
            valid_to_current=str(current) if current is not None else None,
            column_names=names,
        )

    def snapshot_updated_at(self, value: Mapping[str, Any]) -> Any:
        """The timestamp strategy's ``updated_at`` as configured (an error unless a string)."""
        updated_at = value.get("updated_at")
        if not isinstance(updated_at, str):
            self.error(
                "snapshot.updated_at",
                updated_at,
                "is required by the timestamp strategy",
                "set updated_at to the column that records when a row last changed",
            )
        else:
            self.check_column("snapshot.updated_at", updated_at)
        return updated_at

    def snapshot_check_cols(self, value: Mapping[str, Any]) -> tuple[str, ...] | str:
        """The check strategy's ``check_cols``: 'all' or a non-empty list of columns."""
        raw_cols = value.get("check_cols")
        if raw_cols == "all":
            return "all"
        if (
            isinstance(raw_cols, (list, tuple))
            and raw_cols
            and all(isinstance(c, str) for c in raw_cols)
        ):
            check_cols = tuple(raw_cols)
            for col in check_cols:
                self.check_column("snapshot.check_cols", col)
            return check_cols
        self.error(
            "snapshot.check_cols",
            raw_cols,
            "must be 'all' or a non-empty list of columns",
            "set check_cols='all' or check_cols=['status', ...]",
        )
        return ()

    def snapshot_column_names(self) -> dict[str, str]:
        """``snapshot_meta_column_names``: new names for some of the snapshot meta columns."""
        names = self.get("snapshot_meta_column_names") or {}
        if not isinstance(names, Mapping) or not set(names) <= set(SNAPSHOT_META_COLUMNS):
            self.error(
                "snapshot_meta_column_names",
                names,
                f"may only rename {', '.join(SNAPSHOT_META_COLUMNS)}",
                "write {'dbt_valid_from': 'valid_from', ...}",
            )
            return {}
        return dict(names)

    def keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``unique_key`` and ``dedupe_by`` (whose bare columns must exist)."""
        unique_key = self.column_list("unique_key")
        dedupe_by = self.string_list("dedupe_by")
        for expression in dedupe_by:
            column = _plain_column(expression)
            if column is not None:
                self.check_column("dedupe_by", column)
        if dedupe_by and not unique_key:
            self.error(
                "dedupe_by",
                dedupe_by,
                "has no effect without unique_key",
                "set unique_key to the columns that identify a row, or remove dedupe_by",
            )
        return unique_key, dedupe_by

    def merge_columns(
        self, unique_key: tuple[str, ...]
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        """``merge_update_columns`` and ``merge_exclude_columns`` (None when not set)."""
        update_cols = self.column_list("merge_update_columns", allow_none=True)
        exclude_cols = self.column_list("merge_exclude_columns", allow_none=True)
        if update_cols and exclude_cols:
            self.error(
                "merge_update_columns",
                list(update_cols),
                "conflicts with merge_exclude_columns",
                "set only one of merge_update_columns and merge_exclude_columns",
            )
        keys = {k.lower() for k in unique_key}
        overlap = [c for c in update_cols or () if c.lower() in keys]
        if overlap:
            self.error(
                "merge_update_columns",
                list(update_cols),
                f"names the unique_key column(s) {overlap}, which a merge never updates",
                f"remove {overlap} from merge_update_columns",
            )
        return update_cols, exclude_cols

    def window(self, now: datetime | None) -> _Window:
        """The time-window keys; event_time and batch_size are derived when not set."""
        partition_by = self.partition_by()
        event_time = self.optional_column("event_time")
        if event_time is None and partition_by is not None and partition_by.is_time:
            event_time = partition_by.field
        batch_size = self.choice("batch_size", GRANULARITIES, None)
        lookback = self.lookback()
        begin = self.begin(now)
        self.check_time_keys(partition_by, event_time)
        if event_time is not None and batch_size is None:
            batch_size = partition_by.granularity if partition_by and partition_by.is_time else None
            batch_size = batch_size or "day"
        self.check_date_units(partition_by, event_time, batch_size)
        return _Window(partition_by, event_time, batch_size, lookback, begin)

    def check_time_keys(self, partition_by: PartitionBy | None, event_time: str | None) -> None:
        """Time-window keys (batch_size, begin, lookback) need a time column to window on."""
        time_keys = [k for k in ("batch_size", "begin") if self.get(k) is not None]
        # dbt's NodeConfig defaults lookback to 1 (for microbatch): only another value is
        # a sign that the user set it.
        if self.get("lookback") not in (None, 1):
            time_keys.append("lookback")
        raw_partition = self.get("partition_by")
        bad_granularity = (
            isinstance(raw_partition, Mapping) and raw_partition.get("granularity") is not None
        ) and (partition_by is None or not partition_by.is_time)
        if bad_granularity:
            pass  # already reported: the user meant time partitions, the keys are fine
        elif partition_by is not None and not partition_by.is_time and event_time is None:
            for key in time_keys:
                self.error(
                    key,
                    self.get(key),
                    f"is a time-window key, but partition_by {{'field': '{partition_by.field}'}}"
                    " makes value partitions and the model has no event_time",
                    "remove it, or set event_time to the model's time column",
                )
        elif event_time is None:
            for key in time_keys:
                self.error(
                    key,
                    self.get(key),
                    "needs a time column to window on, and the model has neither event_time"
                    " nor a time partition_by",
                    "set event_time (or partition_by with a granularity), or remove it",
                )

    def check_lookback(self, strategy: str | None) -> None:
        """A strategy that does not re-read a window (append) cannot take a lookback."""
        rereads = strategy is None or strategy not in REGISTRY or REGISTRY[strategy].rereads_window
        if not rereads and self.get("lookback") not in (None, 0, 1):
            # (1 is dbt's own default for every model: it cannot be told from a choice.)
            self.error(
                "lookback",
                self.get("lookback"),
                f"cannot be used with {strategy}: re-read rows would be appended a second time",
                "remove lookback (append loads each window once, up to now), or use"
                " insert_overwrite or merge to re-read late data",
            )

    def check_snapshot(
        self, snapshot: SnapshotSpec | None, on_schema_change: str | None, event_time: str | None
    ) -> None:
        """Keys that contradict a snapshot: on_schema_change, and hard_deletes in windows."""
        if snapshot is not None and on_schema_change in ("fail", "sync_all_columns"):
            # The history table's meta columns are not in the model's SQL: schema-change
            # detection sees them as removed columns ('fail' always fails, 'sync_all_columns'
            # drops them).
            self.error(
                "on_schema_change",
                on_schema_change,
                "cannot be used with the snapshot strategy, whose history table holds"
                " snapshot meta columns the model's SQL does not return",
                "set on_schema_change='append_new_columns' (new model columns are added)"
                " or 'ignore'",
            )
        if snapshot is not None and event_time is not None and snapshot.hard_deletes != "ignore":
            self.error(
                "hard_deletes",
                snapshot.hard_deletes,
                f"cannot be used with event_time '{event_time}': a batch holds one time window,"
                " so every key outside it would look deleted",
                "remove event_time (and partition_by's time field) so each run reads the whole"
                " source, or set hard_deletes='ignore'",
            )

    def check_strategy_needs(
        self,
        strategy: str | None,
        unique_key: tuple[str, ...],
        partition_by: PartitionBy | None,
        snapshot: SnapshotSpec | None,
    ) -> None:
        """The keys a strategy requires (unique_key, partition_by) or rules out (snapshot)."""
        if strategy in KEYED_STRATEGIES and not unique_key:
            self.error(
                "unique_key",
                None,
                f"is required by incremental_strategy '{strategy}'",
                "set unique_key to the column (or list of columns) that identifies a row",
            )
        if strategy == "insert_overwrite" and partition_by is None:
            self.error(
                "partition_by",
                None,
                "is required by incremental_strategy 'insert_overwrite'",
                "set partition_by, e.g. {'field': 'event_ts', 'granularity': 'day'}",
            )
        if snapshot is not None and strategy not in ("snapshot", "auto"):
            self.error(
                "snapshot",
                self.get("snapshot"),
                f"is set, but incremental_strategy is '{strategy}'",
                "set incremental_strategy='snapshot' (or 'auto'), or remove snapshot",
            )

    def cdc(
        self, strategy: str | None, unique_key: tuple[str, ...], event_time: str | None
    ) -> CdcSpec | None:
        """``cdc`` (the change feed of the cdc strategy), and the keys it rules out."""
        raw = self.get("cdc")
        if strategy != "cdc":
            if raw is not None:
                self.error(
                    "cdc",
                    raw,
                    f"is set, but incremental_strategy is '{strategy}'",
                    "set incremental_strategy='cdc', or remove cdc",
                )
            return None
        columns = {v[0]: v[1] for v in self.columns.values()} if self.known_columns else None
        spec = parse_cdc(
            raw, self.error, unique_key=unique_key, columns=columns, event_time=event_time
        )
        # The staged batch is a feed of events, not rows of the target: keys that shape a
        # row-for-row load do not apply.
        ruled_out = {
            "dedupe_by": "cdc applies every change in cdc.sequence_by order; remove dedupe_by",
            "merge_update_columns": "use cdc.columns or cdc.except_columns",
            "merge_exclude_columns": "use cdc.except_columns",
            "incremental_predicates": "remove them (a change may touch any row of its key)",
        }
        for key, fix in ruled_out.items():
            if self.get(key) not in (None, [], ()):
                self.error(
                    key, self.get(key), "cannot be used with incremental_strategy 'cdc'", fix
                )
        if self.get("on_schema_change") not in (None, "ignore"):
            self.error(
                "on_schema_change",
                self.get("on_schema_change"),
                "is not supported with incremental_strategy 'cdc' (the target's columns are"
                " not the feed's)",
                "set on_schema_change='ignore' and run with --full-refresh after a change of"
                " the target's columns",
            )
        return spec

    def quality_checks(self) -> tuple[Any, ...]:
        """The raw ``quality_checks`` entries (``quality.py`` parses each one)."""
        quality = self.get("quality_checks") or ()
        if not isinstance(quality, (list, tuple)):
            self.error(
                "quality_checks",
                quality,
                "must be a list of checks",
                "write quality_checks=[{'not_null': ['id']}, ...]",
            )
            quality = ()
        return tuple(quality)

    def redact(self) -> RedactSettings:
        """``sqlflow_redact``: what to redact in this model's messages; its columns must be
        columns of the model."""
        settings, problems = RedactSettings.check(self.get("sqlflow_redact"))
        self.problems.extend(problems)
        for column in settings.columns:
            self.check_column("sqlflow_redact.columns", column)
        return settings
