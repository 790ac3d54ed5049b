"""The ``cdc`` strategy's configuration and the shape of a change feed: pure data.

A model with ``incremental_strategy='cdc'`` selects change events: the key, the row's
columns, a sequence (``cdc.sequence_by``) and an operation (a column, or SQL conditions).
:func:`parse_cdc` reads the ``cdc`` config dict, gathering every problem; :func:`layout`
works out, from the model's columns, which columns reach the target and the SQL that turns
each event into a normalised row of the staged batch:

* the key and target columns, as the model returns them;
* ``sqlflow_seq``: the sequence (the column, or a STRUCT of the columns, compared field by
  field in order);
* ``sqlflow_rank``: 0 for a snapshot read, 1 for any other change (at an equal sequence a
  streaming change wins over a snapshot read);
* ``sqlflow_op``: ``upsert``, ``delete`` or ``truncate`` (inserts, updates and snapshot
  reads are all upserts), NULL for an operation value the config does not name.

Nothing here runs SQL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dbt.adapters.sqlflow.sql import quote_identifier, sql_string

STORED_AS = ("scd1", "scd2")
OPERATIONS = ("insert", "update", "delete", "truncate", "snapshot")
#: Debezium's op codes, the defaults of ``cdc.operation``.
DEFAULT_OPERATION_VALUES: Mapping[str, tuple[str, ...]] = {
    "insert": ("c",),
    "update": ("u",),
    "delete": ("d",),
    "truncate": ("t",),
    "snapshot": ("r",),
}
CDC_KEYS = (
    "sequence_by",
    "operation",
    "apply_as_deletes",
    "apply_as_truncates",
    "ignore_null_updates",
    "columns",
    "except_columns",
    "stored_as",
    "track_history_columns",
    "tombstone_retention",
    "debezium",
)
DEFAULT_RETENTION = timedelta(days=7)
VALID_FROM = "dbt_valid_from"
VALID_TO = "dbt_valid_to"
#: The columns a Debezium envelope is flattened into besides the row image: the op code,
#: the commit position and the change's own position (PostgreSQL: ``source.sequence``'s
#: last commit LSN and LSN, else ``source.lsn`` for both).
DBZ_OP, DBZ_COMMIT, DBZ_LSN = "sqlflow_dbz_op", "sqlflow_dbz_commit", "sqlflow_dbz_lsn"
#: Columns of the staged (normalised) batch that sqlflow adds.
FEED_COLUMNS = ("sqlflow_seq", "sqlflow_rank", "sqlflow_op")
#: ``sqlflow_op`` of an operation value the config does not name: the value behind this
#: prefix (the batch is refused, naming it; no column of its own to stage).
UNKNOWN_OP = "?"
#: SQL (over a staged row): the event's operation is one the config does not name.
UNKNOWN_OP_SQL = f"(sqlflow_op is null or starts_with(sqlflow_op, '{UNKNOWN_OP}'))"
#: SQL (over a staged row): the operation value the config does not name.
UNKNOWN_OP_VALUE_SQL = f"substr(sqlflow_op, {len(UNKNOWN_OP) + 1})"
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}

ErrorSink = Callable[[str, Any, str, str], None]
"""``(key, value, problem, fix)``: how :func:`parse_cdc` reports a problem."""


@dataclass(frozen=True)
class CdcSpec:
    """The validated ``cdc`` config of a model.

    Attributes:
        sequence_by: The columns giving the order of changes, most significant first.
        operation: The column holding the operation, or None.
        operation_values: Per operation (:data:`OPERATIONS`), the values meaning it.
        apply_as_deletes: A SQL condition marking deletes (instead of an operation column).
        apply_as_truncates: A SQL condition marking truncates.
        ignore_null_updates: The columns whose NULL in a change keeps the current value;
            True for every target column but the key.
        columns: The columns that reach the target (None: every column but the sequence
            and operation columns).
        except_columns: Columns kept out of the target.
        stored_as: ``scd1`` (current state) or ``scd2`` (history).
        track_history_columns: ``scd2``: the columns whose change makes a new version
            (None: every target column but the key).
        tombstone_retention: How long a delete is remembered.
        debezium: None, or where the model's Debezium envelope is: ``""`` for the columns
            ``before``, ``after``, ``op``, ``source``, or a column's name.
    """

    sequence_by: tuple[str, ...]
    operation: str | None = None
    operation_values: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_OPERATION_VALUES)
    )
    apply_as_deletes: str | None = None
    apply_as_truncates: str | None = None
    ignore_null_updates: bool | tuple[str, ...] = False
    columns: tuple[str, ...] | None = None
    except_columns: tuple[str, ...] = ()
    stored_as: str = "scd1"
    track_history_columns: tuple[str, ...] | None = None
    tombstone_retention: timedelta = DEFAULT_RETENTION
    debezium: str | None = None

    @property
    def has_truncates(self) -> bool:
        """Whether a change may be a truncate."""
        if self.operation is not None:
            return bool(self.operation_values.get("truncate"))
        return self.apply_as_truncates is not None


def parse_retention(value: Any) -> timedelta | None:
    """``'7 days'``, ``'12 hours'``, ``'30 minutes'``, ``'1 week'`` or a number of seconds;
    None when it is none of them (or not positive)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return timedelta(seconds=value) if value > 0 else None
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(second|minute|hour|day|week)s?\s*", value.lower())
    if match is None or int(match.group(1)) == 0:
        return None
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class _CdcParser:
    """Reads the keys of one ``cdc`` dict, reporting problems to ``error``."""

    def __init__(
        self, raw: Mapping[str, Any], error: ErrorSink, columns: Mapping[str, str] | None
    ) -> None:
        self.raw = raw
        self.error = error
        self.columns = {c.lower(): c for c in columns or {}}
        self.known = columns is not None

    def names(self, key: str, required: bool = False) -> tuple[str, ...] | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.error(
                    f"cdc.{key}",
                    None,
                    "is required by incremental_strategy 'cdc'",
                    f"set cdc.{key} to the column (or list of columns) giving the order of"
                    " changes, e.g. {'sequence_by': ['commit_lsn', 'lsn']}",
                )
            return None
        if isinstance(value, str) and value:
            names: tuple[str, ...] = (value,)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
            names = tuple(value)
        else:
            self.error(
                f"cdc.{key}",
                value,
                "must be a column name or a list of them",
                f"write cdc.{key}=['col']",
            )
            return None
        for name in names:
            self.column(f"cdc.{key}", name)
        return names

    def column(self, key: str, name: str) -> None:
        if self.known and name.lower() not in self.columns:
            self.error(
                key,
                name,
                "names a column the model does not produce; its columns are: "
                + ", ".join(self.columns.values()),
                f"select {name} in the model or change {key}",
            )

    def condition(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(
                f"cdc.{key}",
                value,
                "must be a SQL condition",
                f"write cdc.{key}=\"op = 'D'\"",
            )
            return None
        return value

    def operation(self) -> tuple[str | None, dict[str, tuple[str, ...]]]:
        value = self.raw.get("operation")
        values = dict(DEFAULT_OPERATION_VALUES)
        if value is None:
            return None, values
        if isinstance(value, str):
            self.column("cdc.operation", value)
            return value, values
        example = "{'column': 'op', 'insert': 'I', 'update': 'U', 'delete': 'D'}"
        if not isinstance(value, Mapping) or not isinstance(value.get("column"), str):
            self.error(
                "cdc.operation",
                value,
                "must be a column name or a dict with a 'column'",
                f"write {example}",
            )
            return None, values
        unknown = sorted(set(value) - {"column", *OPERATIONS})
        if unknown:
            self.error(
                "cdc.operation",
                dict(value),
                f"has unknown key(s) {unknown}",
                f"use only 'column' and {', '.join(map(repr, OPERATIONS))}, as in {example}",
            )
        for op in OPERATIONS:
            given = value.get(op, values[op])
            if isinstance(given, str):
                given = (given,)
            if not isinstance(given, (list, tuple)) or not all(isinstance(v, str) for v in given):
                self.error(
                    f"cdc.operation.{op}",
                    given,
                    "must be a value or a list of values",
                    f"write {op}: ['x']",
                )
                continue
            values[op] = tuple(given)
        seen: dict[str, str] = {}
        for op in OPERATIONS:
            for v in values[op]:
                if v in seen and seen[v] != op:
                    self.error(
                        f"cdc.operation.{op}",
                        v,
                        f"also means {seen[v]}",
                        "give each operation its own values",
                    )
                seen.setdefault(v, op)
        self.column("cdc.operation", value["column"])
        return value["column"], values

    def ignore_null_updates(self) -> bool | tuple[str, ...]:
        value = self.raw.get("ignore_null_updates")
        if value is None or value is False:
            return False
        if value is True:
            return True
        names = self.names("ignore_null_updates")
        return names or False

    def retention(self) -> timedelta:
        value = self.raw.get("tombstone_retention")
        if value is None:
            return DEFAULT_RETENTION
        parsed = parse_retention(value)
        if parsed is None:
            self.error(
                "cdc.tombstone_retention",
                value,
                "is not a positive duration",
                "write e.g. '7 days', '12 hours', '30 minutes' or a number of seconds",
            )
            return DEFAULT_RETENTION
        return parsed


def parse_cdc(
    raw: Any,
    error: ErrorSink,
    *,
    unique_key: Sequence[str],
    columns: Mapping[str, str] | None,
    event_time: str | None,
) -> CdcSpec | None:
    """Read ``cdc``: every problem goes to ``error`` (``key, value, problem, fix``).

    Returns:
        The spec, or None when ``cdc`` is missing or not a dict.
    """
    example = "{'sequence_by': 'lsn', 'operation': 'op'}"
    if raw is None:
        error("cdc", None, "is required by incremental_strategy 'cdc'", f"set cdc={example}")
        return None
    if not isinstance(raw, Mapping):
        error("cdc", raw, "must be a dict", f"write cdc={example}")
        return None
    unknown = sorted(str(k) for k in set(raw) - set(CDC_KEYS))
    if unknown:
        error(
            "cdc",
            unknown,
            f"has unknown key(s); sqlflow reads {', '.join(CDC_KEYS)}",
            "remove or rename them",
        )
    p = _CdcParser(raw, error, columns)
    debezium = envelope_of(raw)
    if raw.get("debezium") not in (None, False) and debezium is None:
        error(
            "cdc.debezium",
            raw.get("debezium"),
            "must be true (the model selects before, after, op, source) or the name of the"
            " column holding the envelope",
            "write cdc.debezium=true or cdc.debezium='value'",
        )
    if debezium is not None:
        for key in ("sequence_by", "operation", "apply_as_deletes", "apply_as_truncates"):
            if raw.get(key) is not None:
                error(
                    f"cdc.{key}",
                    raw.get(key),
                    "cannot be combined with cdc.debezium (the envelope's op and source"
                    " position give them)",
                    f"remove cdc.{key}",
                )
        raw = {**raw, "sequence_by": [DBZ_COMMIT, DBZ_LSN], "operation": DBZ_OP}
        raw = {k: v for k, v in raw.items() if k not in ("apply_as_deletes", "apply_as_truncates")}
        p = _CdcParser(raw, error, columns)
    sequence_by = p.names("sequence_by", required=True) or ()
    operation, values = p.operation()
    deletes = p.condition("apply_as_deletes")
    truncates = p.condition("apply_as_truncates")
    if operation is not None and (deletes or truncates):
        error(
            "cdc.operation",
            operation,
            "cannot be combined with cdc.apply_as_deletes / cdc.apply_as_truncates",
            "use the operation column, or the conditions, not both",
        )
    stored_as = raw.get("stored_as", "scd1")
    if stored_as not in STORED_AS:
        error(
            "cdc.stored_as",
            stored_as,
            "is not one of: scd1, scd2",
            "set cdc.stored_as='scd1' or 'scd2'",
        )
        stored_as = "scd1"
    cols = p.names("columns")
    excepted = p.names("except_columns") or ()
    if cols is not None and excepted:
        error(
            "cdc.columns",
            list(cols),
            "conflicts with cdc.except_columns",
            "set only one of cdc.columns and cdc.except_columns",
        )
    keys = {k.lower() for k in unique_key}
    dropped = [k for k in unique_key if k.lower() in {c.lower() for c in excepted}]
    if dropped:
        error(
            "cdc.except_columns",
            list(excepted),
            f"drops the unique_key column(s) {dropped}",
            "keep the key in the target",
        )
    track = p.names("track_history_columns")
    if track is not None and stored_as != "scd2":
        error(
            "cdc.track_history_columns",
            list(track),
            "only applies to cdc.stored_as='scd2'",
            "set cdc.stored_as='scd2' or remove cdc.track_history_columns",
        )
    seq_keys = [c for c in sequence_by if c.lower() in keys]
    if seq_keys:
        error(
            "cdc.sequence_by",
            list(sequence_by),
            f"names the unique_key column(s) {seq_keys}",
            "order changes by a log position or a change time",
        )
    spec = CdcSpec(
        sequence_by=tuple(sequence_by),
        operation=operation,
        operation_values=values,
        apply_as_deletes=deletes,
        apply_as_truncates=truncates,
        ignore_null_updates=p.ignore_null_updates(),
        columns=cols,
        except_columns=tuple(excepted),
        stored_as=stored_as,
        track_history_columns=track,
        tombstone_retention=p.retention(),
        debezium=debezium,
    )
    if columns is not None and event_time is not None:
        target = target_columns(spec, unique_key, list(columns))
        if event_time.lower() not in {c.lower() for c in target}:
            error(
                "event_time",
                event_time,
                "does not reach the cdc target (it is a sequence or operation column, or left"
                " out by cdc.columns / cdc.except_columns)",
                "window on a column the target keeps, or list it in cdc.columns",
            )
    return spec


def target_columns(spec: CdcSpec, unique_key: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The model's columns that reach the target, in the model's order: the key, then
    ``cdc.columns`` (or every column but the sequence and operation columns and
    ``cdc.except_columns``)."""
    keys = {k.lower() for k in unique_key}
    if spec.columns is not None:
        chosen = {c.lower() for c in spec.columns} | keys
        return [c for c in columns if c.lower() in chosen]
    dropped = {c.lower() for c in (*spec.sequence_by, *spec.except_columns)}
    if spec.operation is not None:
        dropped.add(spec.operation.lower())
    return [c for c in columns if c.lower() in keys or c.lower() not in dropped]


def _in_list(values: Sequence[str]) -> str:
    return ", ".join(sql_string(v) for v in values)


def operation_sql(spec: CdcSpec) -> str:
    """The SQL of ``sqlflow_op`` for one model row (alias-free): upsert, delete, truncate,
    or a value the config does not name behind :data:`UNKNOWN_OP` (NULL for NULL)."""
    if spec.operation is not None:
        column = f"cast({quote_identifier(spec.operation)} as varchar)"
        values = spec.operation_values
        branches = [
            (("insert", "update", "snapshot"), "upsert"),
            (("delete",), "delete"),
            (("truncate",), "truncate"),
        ]
        parts = []
        for ops, result in branches:
            listed = [v for op in ops for v in values[op]]
            if listed:
                parts.append(f"when {column} in ({_in_list(listed)}) then '{result}'")
        unknown = f"{sql_string(UNKNOWN_OP)} || {column}"
        return "case " + " ".join(parts) + f" else {unknown} end" if parts else unknown
    parts = []
    if spec.apply_as_truncates:
        parts.append(f"when coalesce(({spec.apply_as_truncates}), false) then 'truncate'")
    if spec.apply_as_deletes:
        parts.append(f"when coalesce(({spec.apply_as_deletes}), false) then 'delete'")
    if not parts:
        return "'upsert'"
    return "case " + " ".join(parts) + " else 'upsert' end"


def sequence_sql(spec: CdcSpec) -> str:
    """The SQL of ``sqlflow_seq``: the column, or a STRUCT of the columns (DuckDB compares
    structs field by field, in order)."""
    quoted = [quote_identifier(c) for c in spec.sequence_by]
    if len(quoted) == 1:
        return quoted[0]
    fields = ", ".join(f"{q} := {q}" for q in quoted)
    return f"struct_pack({fields})"


def sequence_null_sql(spec: CdcSpec) -> str:
    """A condition on a staged row: its sequence, or a part of it, is NULL."""
    if len(spec.sequence_by) == 1:
        return "sqlflow_seq is null"
    return " or ".join(
        f"struct_extract(sqlflow_seq, {sql_string(c)}) is null" for c in spec.sequence_by
    )


def _snapshot_values(spec: CdcSpec) -> tuple[str, ...]:
    """The operation values meaning a snapshot read (none without an operation column)."""
    return tuple(spec.operation_values.get("snapshot") or ()) if spec.operation else ()


def rank_sql(spec: CdcSpec) -> str:
    """The SQL of ``sqlflow_rank``: 0 for a snapshot read, else 1."""
    snapshot = _snapshot_values(spec)
    if not snapshot:
        return "1"
    column = f"cast({quote_identifier(spec.operation or '')} as varchar)"
    return f"case when {column} in ({_in_list(snapshot)}) then 0 else 1 end"


_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
# Microsecond timestamps only: epoch_us of a nanosecond one would tie distinct sequences.
_TIMESTAMP_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP WITH TIME ZONE"})


def order_sql(spec: CdcSpec, types: Mapping[str, str] | None) -> str:
    """The SQL (over a staged row ``s``) that orders one key's events: by sequence, and a
    snapshot read before a streaming change of the same sequence (``sqlflow_rank``).

    In general a STRUCT of the two. DuckDB's ``arg_max`` compares a scalar faster than a
    STRUCT, so: the sequence alone when no operation value means a snapshot read (the
    rank is always 1), and ``sequence * 2 + rank`` as a HUGEINT for one integer or
    timestamp column (``types``: the model's columns and their DuckDB types).
    """
    if not _snapshot_values(spec):
        return "s.sqlflow_seq"
    if len(spec.sequence_by) == 1 and types:
        by_name = {name.lower(): dtype.upper() for name, dtype in types.items()}
        dtype = by_name.get(spec.sequence_by[0].lower())
        if dtype in _INTEGER_TYPES:
            return "(cast(s.sqlflow_seq as hugeint) * 2 + s.sqlflow_rank)"
        if dtype in _TIMESTAMP_TYPES:
            return "(cast(epoch_us(s.sqlflow_seq) as hugeint) * 2 + s.sqlflow_rank)"
    return "struct_pack(sqlflow_seq := s.sqlflow_seq, sqlflow_rank := s.sqlflow_rank)"


@dataclass(frozen=True)
class CdcLayout:
    """Where a model's change events go: the columns and SQL the cdc macros render.

    Attributes:
        key: The unique_key columns, quoted.
        columns: The target's columns from the model (key included), quoted, in order.
        values: ``columns`` without the key.
        ignore_nulls: The quoted value columns whose NULL in a change keeps the value.
        tracked: ``scd2``: the quoted value columns whose change makes a new version.
        stage_select: The select list turning a model row into a staged batch row.
        order: The SQL ordering a key's staged events (:func:`order_sql`).
    """

    key: tuple[str, ...]
    columns: tuple[str, ...]
    values: tuple[str, ...]
    ignore_nulls: tuple[str, ...]
    tracked: tuple[str, ...]
    stage_select: str
    order: str = "struct_pack(sqlflow_seq := s.sqlflow_seq, sqlflow_rank := s.sqlflow_rank)"


def layout(
    spec: CdcSpec,
    unique_key: Sequence[str],
    columns: Sequence[str],
    types: Mapping[str, str] | None = None,
) -> CdcLayout:
    """The layout of a model's change feed (``columns``: the model's, in order;
    ``types``: their DuckDB types, when known)."""
    target = target_columns(spec, unique_key, columns)
    keys = {k.lower() for k in unique_key}
    values = [c for c in target if c.lower() not in keys]

    def pick(names: bool | tuple[str, ...] | None, default: list[str]) -> list[str]:
        if names is None or names is True:
            return default
        if names is False:
            return []
        chosen = {n.lower() for n in names}
        return [c for c in values if c.lower() in chosen]

    select = [quote_identifier(c) for c in target] + [
        f"{sequence_sql(spec)} as sqlflow_seq",
        f"{rank_sql(spec)} as sqlflow_rank",
        f"{operation_sql(spec)} as sqlflow_op",
    ]
    return CdcLayout(
        key=tuple(quote_identifier(k) for k in unique_key),
        columns=tuple(quote_identifier(c) for c in target),
        values=tuple(quote_identifier(c) for c in values),
        ignore_nulls=tuple(quote_identifier(c) for c in pick(spec.ignore_null_updates, values)),
        tracked=tuple(quote_identifier(c) for c in pick(spec.track_history_columns, values)),
        stage_select=", ".join(select),
        order=order_sql(spec, types),
    )


def feed_problems(
    model: str,
    unique_key: Sequence[str],
    spec: CdcSpec,
    *,
    null_keys: int,
    null_sequences: list[tuple[Any, ...]],
    null_sequence_rows: int,
    unknown_operations: list[tuple[Any, int]],
    conflicts: list[tuple[Any, ...]],
    conflict_keys: int,
) -> str | None:
    """The error message for a batch of change events that cannot be applied, or None.

    ``null_sequences`` and ``conflicts`` hold up to five key tuples (a conflict's last item
    is its sequence); ``unknown_operations`` up to five ``(value, rows)``.
    """
    if not (null_keys or null_sequence_rows or unknown_operations or conflict_keys):
        return None
    keys = ", ".join(unique_key)
    sequence = ", ".join(spec.sequence_by)
    parts = [f"sqlflow_incremental model '{model}': the change events cannot be applied."]
    if null_keys:
        parts.append(
            f"{null_keys:,} event(s) have a null in the key column(s) {keys}. Filter them out"
            " in the model or fill the key."
        )
    if null_sequence_rows:
        parts.append(
            f"{null_sequence_rows:,} event(s) have a NULL in cdc.sequence_by ({sequence}),"
            f" e.g. of the key(s) {_keys_text(unique_key, null_sequences)}: their order is"
            " unknown. Fill the sequence in the model (e.g. coalesce with a log position)"
            " or filter those events out."
        )
    if unknown_operations:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in unknown_operations)
        named = ", ".join(f"{op}={list(spec.operation_values[op])}" for op in OPERATIONS)
        parts.append(
            f"cdc.operation column {spec.operation} holds value(s) the config does not name:"
            f" {shown} (named: {named}). Map them in cdc.operation, e.g."
            " {'column': ..., 'update': ['u', 'U']}, or filter them out in the model."
        )
    if conflict_keys:
        shown = "; ".join(
            f"{_key_text(unique_key, c[:-1])} at sequence {c[-1]!r}" for c in conflicts
        )
        parts.append(
            f"{conflict_keys:,} key(s) have different changes with the same sequence"
            f" ({sequence}), e.g. {shown}: which one applies last is undefined. Add a column"
            " to cdc.sequence_by that orders them (e.g. a serial within the transaction), or"
            " fix the duplicates upstream (identical events are applied once)."
        )
    parts.append("Nothing was written.")
    return " ".join(parts)


def _key_text(unique_key: Sequence[str], values: Sequence[Any]) -> str:
    if len(unique_key) == 1:
        return f"{unique_key[0]}={values[0]!r}"
    return "(" + ", ".join(f"{k}={v!r}" for k, v in zip(unique_key, values, strict=False)) + ")"


def _keys_text(unique_key: Sequence[str], samples: list[tuple[Any, ...]]) -> str:
    return "; ".join(_key_text(unique_key, s) for s in samples) or "-"


def ledger_table_name(relation: str) -> str:
    """The name (unquoted) of the ledger of a cdc target in sqlflow's state schema: the
    target's table name and a hash of the whole relation (two schemas may hold tables of
    one name)."""
    table = relation.rsplit(".", 1)[-1].strip('"').replace('""', '"')
    digest = hashlib.sha1(relation.encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_]", "_", table)[:40]
    return f"cdc_{safe}_{digest}"


def envelope_of(raw_cdc: Any) -> str | None:
    """Where a ``cdc`` config says the Debezium envelope is (see ``CdcSpec.debezium``), or
    None (no envelope, or a value :func:`parse_cdc` refuses)."""
    if not isinstance(raw_cdc, Mapping):
        return None
    value = raw_cdc.get("debezium")
    if value is True:
        return ""
    if isinstance(value, str) and value:
        return value
    return None


def _is_json(dtype: str | None) -> bool:
    return (dtype or "").upper() == "JSON"


def debezium_feed_sql(
    compiled_code: str,
    columns: Mapping[str, str],
    envelope: str,
    image_structure: str | None = None,
) -> str:
    """The model's Debezium change events flattened: the row image (``after``, or
    ``before`` for a delete; NULLs for a truncate) as columns, then :data:`DBZ_OP`,
    :data:`DBZ_COMMIT` and :data:`DBZ_LSN`, so the rest of the strategy reads a plain
    change feed.

    Args:
        compiled_code: The model's SELECT of envelopes (PostgreSQL connector shape:
            ``source.lsn`` and, where present, ``source.sequence`` =
            ``'["<last commit lsn>", "<lsn>"]'``).
        columns: The model's columns and types (STRUCT or JSON envelopes).
        envelope: ``""`` when the model selects ``before``, ``after``, ``op``, ``source``;
            else the column holding the envelope (a JSON one may wrap it in
            ``{"schema": ..., "payload": ...}``).
        image_structure: For JSON envelopes, the row's ``json_transform`` structure
            (``'{"id": "INTEGER", ...}'``).
    """
    lowered = {k.lower(): v for k, v in columns.items()}
    alias = "sqlflow_envelope"

    def part(name: str) -> tuple[str, str]:
        """The SQL of one envelope member and its type (``JSON``, or a STRUCT's text)."""
        if not envelope:
            return f"{alias}.{quote_identifier(name)}", lowered.get(name, "")
        base = f"{alias}.{quote_identifier(envelope)}"
        dtype = lowered.get(envelope.lower(), "")
        if _is_json(dtype):
            return (
                f"coalesce(json_extract({base}, '$.payload.{name}'),"
                f" json_extract({base}, '$.{name}'))",
                "JSON",
            )
        return f"{base}.{quote_identifier(name)}", dtype

    op_sql, op_type = part("op")
    op = (
        f"json_extract_string({op_sql}, '$')" if _is_json(op_type) else f"cast({op_sql} as varchar)"
    )
    (after, image_type), (before, _) = part("after"), part("before")
    image = f"case when {op} = 'd' then {before} else {after} end"
    if _is_json(image_type):
        image = f"json_transform({image}, {sql_string(image_structure or '{}')})"
    source, source_type = part("source")
    if _is_json(source_type):
        lsn = f"try_cast(json_extract_string({source}, '$.lsn') as ubigint)"
        sequence = f"json_extract_string({source}, '$.sequence')"
    else:
        lsn = f"try_cast({source}.lsn as ubigint)"
        has_sequence = re.search(r"\bsequence\b", source_type, re.IGNORECASE)
        sequence = f"cast({source}.sequence as varchar)" if has_sequence else "null"
    commit = f"coalesce(try_cast(json_extract_string({sequence}, '$[0]') as ubigint), {lsn})"
    position = f"coalesce(try_cast(json_extract_string({sequence}, '$[1]') as ubigint), {lsn})"
    return (
        f"select unnest({image}), {op} as {DBZ_OP}, {commit} as {DBZ_COMMIT},"
        f" {position} as {DBZ_LSN} from (\n{compiled_code}\n) as {alias}"
    )


def json_image_structure(columns: Sequence[tuple[str, str]]) -> str:
    """A ``json_transform`` structure giving each column its type."""
    return json.dumps({name: dtype for name, dtype in columns})


def debezium_image_sql(compiled_code: str, envelope: str) -> str:
    """A query of the ``json_transform`` structure of a JSON envelope's row images, as
    DuckDB infers it from the whole feed (``json_group_structure``)."""
    if envelope:
        base = f"sqlflow_envelope.{quote_identifier(envelope)}"
        image = (
            f"coalesce(json_extract({base}, '$.payload.after'), json_extract({base}, '$.after'),"
            f" json_extract({base}, '$.payload.before'), json_extract({base}, '$.before'))"
        )
    else:
        image = "coalesce(sqlflow_envelope.after, sqlflow_envelope.before)"
    return f"select json_group_structure({image}) from (\n{compiled_code}\n) as sqlflow_envelope"


def envelope_is_json(columns: Mapping[str, str], envelope: str) -> bool:
    """Whether the model's envelope is JSON (else STRUCT)."""
    lowered = {k.lower(): v for k, v in columns.items()}
    return _is_json(lowered.get((envelope or "after").lower()))
