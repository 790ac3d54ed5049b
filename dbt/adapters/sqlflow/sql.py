"""SQL text: the one owner of quoting, literals, sqlflow's clock and the executor type.

Every identifier and literal sqlflow embeds in SQL goes through this module, and so do
the markers and tokens that let one rendered SQL text serve every batch of a run:

- ``sqlflow_window_start()`` / ``sqlflow_window_end()`` render a TIMESTAMP literal
  followed by a marker comment; :func:`substitute_window` puts a batch's bounds there.
- Batch templates carry :data:`TEMPLATE_TOKENS` where each batch has its own window
  literals, model SQL and partition predicates; :func:`fill_template` substitutes them.

Time convention: naive datetimes are UTC.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

Executor = Callable[[str], list[tuple]]
"""Runs one SQL statement (or a script) and returns all its rows (``[]`` for DML/DDL)."""

TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"
_TYPE_ALIASES = {"TIMESTAMPTZ": TIMESTAMPTZ, "DATETIME": "TIMESTAMP"}

WINDOW_START_MARK = "/*sqlflow_window_start*/"
WINDOW_END_MARK = "/*sqlflow_window_end*/"
UNBOUNDED_START = datetime(1, 1, 1)
UNBOUNDED_END = datetime(9999, 12, 31)

TEMPLATE_TOKENS = {
    "start": "__SQLFLOW_WINDOW_START__",
    "end": "__SQLFLOW_WINDOW_END__",
    "model_sql": "__SQLFLOW_MODEL_SQL__",
    "target_predicate": "(__SQLFLOW_TARGET_PREDICATE__)",
    "overwrite_predicate": "(__SQLFLOW_OVERWRITE_PREDICATE__)",
}
"""Where batch templates differ per batch (see :func:`fill_template`)."""


# -- the clock -----------------------------------------------------------------------------


def utc_now() -> datetime:
    """Now in UTC, naive (sqlflow's time convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_naive(value: Any) -> datetime | None:
    """A time value from DuckDB as a naive UTC datetime (None for anything else)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


# -- quoting and literals ------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """A quoted SQL identifier: ``name`` in double quotes, each double quote doubled."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A SQL string literal: ``value`` in single quotes, each quote doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def timestamp_literal(value: datetime) -> str:
    """A DuckDB ``TIMESTAMP '...'`` literal; an aware datetime is converted to UTC first."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def time_literal(value: datetime, data_type: str | None = None) -> str:
    """A literal of a time column's own type, so DuckDB prunes row groups by min/max.

    ``value`` is naive UTC; ``data_type`` is the column's DuckDB type (TIMESTAMP when
    unknown). A DATE column gets the date, a TIMESTAMPTZ column the instant in UTC.
    """
    kind = normalize_time_type(data_type)
    if kind == "DATE":
        return f"DATE '{value.date().isoformat()}'"
    if kind == TIMESTAMPTZ:
        return f"TIMESTAMPTZ '{value.isoformat(sep=' ')}+00'"
    return timestamp_literal(value)


def sql_literal(value: Any) -> str:
    """A SQL literal for None, bool, int, float, datetime, date or str.

    Raises:
        ValueError: for a NaN or infinite float (no SQL literal means the same) and for
            any other type.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot embed {value!r} as a SQL literal")
        return repr(value)
    if isinstance(value, str):
        return sql_string(value)
    if isinstance(value, datetime):
        return timestamp_literal(value)
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    raise ValueError(f"cannot embed {value!r} ({type(value).__name__}) as a SQL literal")


def normalize_time_type(data_type: str | None) -> str:
    """A DuckDB time type in one spelling (``TIMESTAMPTZ`` -> ``TIMESTAMP WITH TIME ZONE``)."""
    kind = " ".join((data_type or "TIMESTAMP").upper().split())
    return _TYPE_ALIASES.get(kind, kind)


def utc_expr(column: str, data_type: str | None) -> str:
    """SQL of a time column (quoted ``column``) as a naive UTC TIMESTAMP."""
    kind = normalize_time_type(data_type)
    if kind == TIMESTAMPTZ:
        return f"timezone('UTC', {column})"
    if kind == "TIMESTAMP":
        return column
    return f"cast({column} as timestamp)"


def truncate_sql(unit: str, value: str) -> str:
    """SQL of the start of the ``unit`` (a granularity) holding ``value``, a naive UTC
    time (see :func:`utc_expr`), as DuckDB's ``date_trunc``: for a day the DATE (a cast:
    about 1.5x faster than ``date_trunc`` over 10M rows; :func:`as_naive` reads both as
    the same midnight), else a TIMESTAMP."""
    if unit == "day":
        return f"cast({value} as date)"
    return f"date_trunc({sql_string(unit)}, {value})"


def key_join(keys: tuple[str, ...] | list[str], left: str, right: str) -> str:
    """``left.k = right.k and ...`` over the (unquoted) key columns, each quoted."""
    return " and ".join(
        f"{left}.{quote_identifier(k)} = {right}.{quote_identifier(k)}" for k in keys
    )


# -- window markers and batch templates ----------------------------------------------------


def window_sql(mark: str, value: datetime | None, default: datetime) -> str:
    """What ``sqlflow_window_start()`` / ``sqlflow_window_end()`` render in a model.

    A literal followed by a marker comment, so each batch of the run can substitute its
    own bounds into the compiled SQL.
    """
    return f"{timestamp_literal(value or default)}{mark}"


def substitute_window(sql: str, start: datetime, end: datetime) -> str:
    """The compiled model SQL with one batch's window bounds in place of the markers."""
    return window_literals_in(sql, (timestamp_literal(start), timestamp_literal(end)))


def window_literals_in(sql: str, window: tuple[str, str]) -> str:
    """``sql`` with the bounds ``sqlflow_window_start()`` / ``sqlflow_window_end()``
    rendered replaced by one batch's window literals (of the event_time column's type)."""
    for mark, literal in ((WINDOW_START_MARK, window[0]), (WINDOW_END_MARK, window[1])):
        if mark in sql:
            # The replacement as text, not a pattern: a literal's backslashes stay.
            sql = re.sub(
                r"TIMESTAMP '[^']*'" + re.escape(mark), (literal + mark).replace("\\", "\\\\"), sql
            )
    return sql


def reads_window(sql: str) -> bool:
    """Whether compiled model SQL reads its window (``sqlflow_window_start/end()``)."""
    return WINDOW_START_MARK in sql or WINDOW_END_MARK in sql


def fill_template(
    sql: str,
    window: tuple[str, str] | None,
    *,
    model_sql: str | None = None,
    target_predicate: str | None = None,
    overwrite_predicate: str | None = None,
) -> str:
    """A batch template with one batch's window literals, model SQL and predicates.

    ``window`` is the batch's ``(start, end)`` as SQL literals; they also replace the
    bounds ``sqlflow_window_start()`` / ``sqlflow_window_end()`` left in the template
    (an ``incremental_predicates`` entry relative to the batch's window). The model's SQL
    goes in last, so a token-like text in it is never replaced.
    """
    if window is not None:
        sql = sql.replace(TEMPLATE_TOKENS["start"], window[0])
        sql = sql.replace(TEMPLATE_TOKENS["end"], window[1])
        sql = window_literals_in(sql, window)
    if target_predicate is not None:
        sql = sql.replace(TEMPLATE_TOKENS["target_predicate"], target_predicate)
    if overwrite_predicate is not None:
        sql = sql.replace(TEMPLATE_TOKENS["overwrite_predicate"], overwrite_predicate)
    if model_sql is not None:
        sql = sql.replace(TEMPLATE_TOKENS["model_sql"], model_sql)
    return sql


_VALUES_INSERT = re.compile(r"insert\s+into\s+(\S+)\s*\(([^()]*)\)\s*values\s", re.IGNORECASE)


JSON_ROWS = 8
"""From this many rows on, literal rows go into their table as one JSON text
(:class:`RowInsert`): DuckDB binds a VALUES list value by value (365 rows of a state
table: ~90 ms), a JSON text as one literal (~15 ms); below it VALUES is cheaper."""


@dataclass
class RowInsert:
    """Literal rows for one table, held back (:class:`BufferedWrites`) until they are
    written with the other rows of that table in one INSERT.

    Attributes:
        table: The quoted table.
        columns: The column names (as SQL, and as the JSON text's keys).
        types: Each column's DuckDB type (``from_json``'s shape of a row).
        rows: The rows' values (None, bool, int, float, str, datetime, date).
    """

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[Sequence[Any]] = field(default_factory=list)

    def sql(self) -> str:
        """The INSERT: VALUES for a few rows, else one JSON text of a list per column,
        unnested side by side into rows (a third of the parse time of a list of row
        objects: 365 load rows ~5 ms against ~14 ms)."""
        names = ", ".join(self.columns)
        if len(self.rows) < JSON_ROWS:
            values = ",\n".join(
                "(" + ", ".join(sql_literal(v) for v in row) + ")" for row in self.rows
            )
            return f"insert into {self.table} ({names}) values\n{values}"
        keys = [f"c{i}" for i in range(len(self.columns))]
        shape = json.dumps({key: [kind] for key, kind in zip(keys, self.types, strict=True)})
        columns = [[row[i] for row in self.rows] for i in range(len(keys))]
        for column in columns:
            _check_json_values(column)
        # Plain values as json writes them; times and dates through json_value (default).
        data = json.dumps(dict(zip(keys, columns, strict=True)), default=json_value)
        lists = ", ".join(f"unnest(sqlflow_rows.{key})" for key in keys)
        return (
            f"insert into {self.table} ({names}) select {lists} from (select from_json("
            f"{sql_string(data)}, {sql_string(shape)}) as sqlflow_rows)"
        )


_JSON_PLAIN = frozenset((type(None), bool, int, str, datetime, date))
"""The types :func:`json_value` takes as they are (times and dates it writes as text)."""


def _check_json_values(values: list[Any]) -> None:
    """Refuse, as :func:`json_value` does, a value of a column it would refuse (a NaN, a
    list, ...): the per-column JSON text is written by ``json`` itself, which would take
    lists and write NaN. One pass over the values' types; floats are checked one by one.

    Raises:
        ValueError: for the first such value.
    """
    for kind in set(map(type, values)) - _JSON_PLAIN:
        for value in values:
            if type(value) is not kind or (isinstance(value, float) and math.isfinite(value)):
                continue
            json_value(value)  # raises, unless a subclass of a plain type


def json_value(value: Any) -> Any:
    """A value as :class:`RowInsert`'s JSON text holds it (times as naive UTC text).

    Raises:
        ValueError: for a NaN or infinite float and any type :func:`sql_literal` refuses.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot embed {value!r} as a SQL literal")
        return value
    if isinstance(value, datetime):
        return (as_naive(value) or value).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"cannot embed {value!r} ({type(value).__name__}) as a SQL literal")


def merge_inserts(statements: Sequence[str | RowInsert]) -> list[str]:
    """The statements, with the ``INSERT INTO t (columns) VALUES ...`` of one table and
    column list merged into one multi-row insert, at the place of the first of them (so
    are the :class:`RowInsert` rows of one table).

    Only between two other statements (a DELETE or UPDATE keeps its place relative to
    every insert): inserts of literal rows read nothing, so their order across tables
    does not matter, and within a table the rows keep their order (an insert with a
    clause after its rows, say ON CONFLICT, is left alone). A group of batches
    loaded at once writes its state rows (a load, an interval, a partition per batch) in
    three statements instead of three per batch (~1 ms each).
    """
    merged: list[str] = []
    groups: dict[str, list[str]] = {}
    held: dict[tuple[str, tuple[str, ...]], RowInsert] = {}

    def close() -> None:
        merged.extend(prefix + ",\n".join(rows) for prefix, rows in groups.items())
        merged.extend(rows.sql() for rows in held.values())
        groups.clear()
        held.clear()

    for statement in statements:
        if isinstance(statement, RowInsert):
            key = (statement.table, statement.columns)
            if key not in held:
                held[key] = RowInsert(statement.table, statement.columns, statement.types)
            held[key].rows.extend(statement.rows)
            continue
        found = _VALUES_INSERT.match(statement)
        if found is None or not statement.rstrip().endswith(")"):
            close()
            merged.append(statement)
        else:
            groups.setdefault(found.group(0), []).append(statement[found.end() :])
    close()
    return merged


class BufferedWrites:
    """An executor that holds back INSERT/DELETE/UPDATE and sends them in one round trip.

    State writes of a batch are many small statements; each costs dbt's per-statement
    overhead (~2 ms) more than DuckDB's work. Any read flushes the pending writes first,
    so reads see them; ``flush`` runs them all as one multi-statement script, inside the
    same transaction, the inserts of literal rows into one table merged
    (:func:`merge_inserts`).
    """

    _WRITES = ("insert", "delete", "update")

    def __init__(self, run: Executor) -> None:
        self._run = run
        self.pending: list[str | RowInsert] = []

    def __call__(self, sql: str) -> list[tuple]:
        if sql.lstrip()[:6].lower() in self._WRITES:
            self.pending.append(sql.strip().rstrip(";"))
            return []
        self.flush()
        return self._run(sql)

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Hold back literal rows for ``table`` (written at the flush with the other rows
        of that table: :class:`RowInsert`)."""
        self.pending.append(RowInsert(table, tuple(columns), tuple(types), list(rows)))

    def discard(self) -> None:
        """Forget the pending writes (their transaction rolled back)."""
        self.pending = []

    def flush(self) -> None:
        """Run the pending writes (one statement script), if any."""
        if self.pending:
            script, self.pending = ";\n".join(merge_inserts(self.pending)), []
            self._run(script)
