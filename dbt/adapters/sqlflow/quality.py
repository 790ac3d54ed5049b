"""Data quality checks that run inside a load's transaction, after the DML and before commit.

A model's ``quality_checks`` config is parsed here into :class:`QualityCheck` values (every
problem a line of the one :class:`DbtConfigError` that ``config.config_error`` words), run
through a caller-supplied executor into :class:`CheckOutcome` values, and turned into the
error or warning text the materialization shows. Nothing here touches dbt's adapter or the
metrics exporter: the materialization passes an ``executor`` that runs SQL on the load's
open transaction.

Failing-row counts are row-level: for ``not_null``, ``accepted_values`` and ``expression`` the
rows of the batch that break the check; for ``unique`` the rows of the target whose key occurs
more than once. Table-level checks (``row_count``, ``freshness``, ``partition_consistency``)
report 0 failing rows and say in their message why they failed.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.config import clip_text, config_error
from dbt.adapters.sqlflow.redact import DEFAULT, NOTHING, Redactor
from dbt.adapters.sqlflow.sql import Executor, quote_identifier, sql_literal

CHECK_KINDS: tuple[str, ...] = (
    "not_null",
    "unique",
    "accepted_values",
    "row_count",
    "expression",
    "freshness",
    "partition_consistency",
)
SEVERITIES: tuple[str, ...] = ("error", "warn")
BATCH_CHECKS = frozenset({"not_null", "accepted_values", "row_count", "expression"})

# The metrics exporter finds failed checks in a failed model's message by this prefix.
FAILURE_PREFIX = "quality check failed: "
WARNING_PREFIX = "quality check warned: "
SAMPLE_LIMIT = 5

_NAME_EXPRESSION_CHARS = 60
_SAMPLE_CHARS = 200
_VALUE_CHARS = 40
_ENTRY_CHARS = 100
_SAMPLE_ALIAS = "_sqlflow_sample"
_ROWS_ALIAS = "_sqlflow_rows"

AcceptedValue = str | int | float | bool | dt.date


@dataclass(frozen=True)
class QualityCheck:
    """One parsed entry of a model's ``quality_checks`` config.

    Attributes:
        kind: The check, one of :data:`CHECK_KINDS`.
        name: Stable short name, used as the metrics label and in messages.
        severity: ``error`` (a failure rolls the load back) or ``warn`` (logged, committed).
        scope: ``batch`` (queried on the staged batch) or ``target`` (on the target after the
            load; ``partition_consistency`` asks the partition manager instead).
        index: Position of the entry in ``quality_checks``.
        columns: Columns checked, spelled as the model produces them when its columns are
            known (``freshness``: the model's ``event_time``).
        values: Accepted values (``accepted_values`` only).
        min_rows: Inclusive lower bound on the batch's row count (``row_count`` only).
        max_rows: Inclusive upper bound on the batch's row count (``row_count`` only).
        expression: SQL boolean expression every batch row must satisfy (``expression`` only).
        max_lag: Largest allowed age of the newest ``event_time`` (``freshness`` only).
        max_lag_text: ``max_lag`` as configured, for messages.
    """

    kind: str
    name: str
    severity: str
    scope: str
    index: int = 0
    columns: tuple[str, ...] = ()
    values: tuple[AcceptedValue, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    expression: str | None = None
    max_lag: dt.timedelta | None = None
    max_lag_text: str | None = None


@dataclass(frozen=True)
class CheckOutcome:
    """The result of running one :class:`QualityCheck` in one load.

    The one outcome type: the batch loop records it, the metrics read it back from a
    run's ``adapter_response`` (where ``sample`` and ``message`` are not kept).

    Attributes:
        check_name: :attr:`QualityCheck.name`.
        severity: ``error`` or ``warn``.
        status: ``pass`` or ``fail``.
        failing_rows: Rows that break a row-level check; 0 for table-level checks.
        sample: Up to five failing rows (or problems), each rendered as one short line.
        message: One sentence saying what was found.
    """

    check_name: str
    severity: str
    status: str
    failing_rows: int
    sample: Sequence[str] = ()
    message: str = ""

    @property
    def failed(self) -> bool:
        """Whether the check failed."""
        return self.status == "fail"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    columns: dict[str, str] | None  # lower-cased name -> name as the model produces it
    event_time: str | None
    has_partitions: bool


def parse_quality_checks(
    raw: object,
    *,
    model: str,
    columns: list[str] | None = None,
    event_time: str | None = None,
    has_partitions: bool = False,
) -> list[QualityCheck]:
    """Parse and validate a model's ``quality_checks`` config.

    Args:
        raw: The config value: a list of entries, each a mapping of one check to its settings
            plus an optional ``severity``. ``None`` means no checks.
        model: The model's unique id, named in error messages.
        columns: The columns the model produces; when given, every column a check names must
            be one of them (compared case-insensitively).
        event_time: The model's ``event_time`` column, which ``freshness`` checks.
        has_partitions: Whether the model is partitioned (``partition_consistency`` needs it).

    Returns:
        The checks, in config order.

    Raises:
        DbtConfigError: Listing every problem found across all entries (``config_error``).
    """
    checks, problems = quality_check_problems(
        raw, columns=columns, event_time=event_time, has_partitions=has_partitions
    )
    if problems:
        raise config_error(model, problems)
    return checks


def quality_check_problems(
    raw: object,
    *,
    columns: list[str] | None = None,
    event_time: str | None = None,
    has_partitions: bool = False,
) -> tuple[list[QualityCheck], list[str]]:
    """Read a model's ``quality_checks`` config as :func:`parse_quality_checks` does,
    without raising.

    Returns:
        The valid checks, in config order, and every problem found, one line each (the
        caller words the error, with the config's other problems).
    """
    if raw is None:
        return [], []
    if not isinstance(raw, list | tuple):
        return [], [
            f"quality_checks must be a list of checks, got {_describe(raw)}. "
            "Write a list of entries, e.g. quality_checks=[{'not_null': ['id']}, "
            "{'row_count': {'min': 1}}]."
        ]
    column_map = None if columns is None else {c.lower(): c for c in columns}
    ctx = _Context(column_map, event_time, has_partitions)
    problems: list[str] = []
    checks: list[QualityCheck] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"quality_checks[{index}] {_entry_text(entry)}"
        errors: list[str] = []
        check = _parse_entry(index, entry, ctx, errors)
        if check is not None and not errors:
            if check.name in seen:
                errors.append(
                    f"repeats quality_checks[{seen[check.name]}] ({check.name}). "
                    "Remove one of the two entries."
                )
            else:
                seen[check.name] = index
                checks.append(check)
        problems.extend(f"{where}: {error}" for error in errors)
    return checks, problems


def _parse_entry(
    index: int, entry: object, ctx: _Context, errors: list[str]
) -> QualityCheck | None:
    if not isinstance(entry, dict):
        example = "{'not_null': ['id']}"
        if entry == "partition_consistency":
            example = "{'partition_consistency': True}"
        errors.append(
            "each entry must be a mapping of one check to its settings plus an optional "
            f"'severity', got {_describe(entry)}. Allowed checks: {', '.join(CHECK_KINDS)}. "
            f"Write e.g. {example}."
        )
        return None
    kinds = _entry_kinds(entry, errors)
    severity = _parse_severity(entry.get("severity", "error"), errors)
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    before = len(errors)
    check = _PARSERS[kind](kind, entry[kind], ctx, errors)
    if check is None or severity is None or len(errors) > before:
        return None
    return QualityCheck(
        kind=kind,
        name=check.name,
        severity=severity,
        scope="batch" if kind in BATCH_CHECKS else "target",
        index=index,
        columns=check.columns,
        values=check.values,
        min_rows=check.min_rows,
        max_rows=check.max_rows,
        expression=check.expression,
        max_lag=check.max_lag,
        max_lag_text=check.max_lag_text,
    )


def _entry_kinds(entry: dict, errors: list[str]) -> list[str]:
    """The checks an entry names; its unknown keys, and a count other than one, are errors."""
    kinds = [key for key in entry if key in CHECK_KINDS]
    unknown = [key for key in entry if key not in CHECK_KINDS and key != "severity"]
    for key in unknown:
        if kinds:
            errors.append(
                f"unknown key {key!r} next to check '{kinds[0]}'. An entry holds one check "
                f"and an optional 'severity'.{_did_you_mean(key, ('severity', *CHECK_KINDS))}"
            )
        else:
            errors.append(
                f"unknown check {key!r}. Allowed checks: {', '.join(CHECK_KINDS)}."
                f"{_did_you_mean(key, (*CHECK_KINDS, 'severity'))}"
            )
    if len(kinds) > 1:
        split = ", ".join(f"{{'{kind}': ...}}" for kind in kinds)
        errors.append(
            f"holds {len(kinds)} checks ({', '.join(kinds)}); an entry holds exactly one. "
            f"Put each check in its own entry: {split}."
        )
    elif not kinds and not unknown:
        errors.append(
            f"holds no check. Add one of: {', '.join(CHECK_KINDS)}, "
            "e.g. {'not_null': ['id'], 'severity': 'warn'}."
        )
    return kinds


def _parse_severity(value: object, errors: list[str]) -> str | None:
    if isinstance(value, str) and value.strip().lower() in SEVERITIES:
        return value.strip().lower()
    hint = _did_you_mean(value.lower(), SEVERITIES) if isinstance(value, str) else ""
    errors.append(
        f"severity {_describe(value)} is not allowed. Allowed severities: "
        f"{', '.join(SEVERITIES)} (default error).{hint}"
    )
    return None


def _parse_column_list(kind: str, value: object, ctx: _Context, errors: list[str]) -> _Partial:
    if isinstance(value, str) and value:
        errors.append(
            f"{kind} must be a list of column names, got {_describe(value)}. "
            f"Write {{'{kind}': [{value!r}]}}."
        )
        return None
    if not isinstance(value, list | tuple) or not value:
        errors.append(
            f"{kind} must be a non-empty list of column names, got {_describe(value)}. "
            f"Write e.g. {{'{kind}': ['id']}}."
        )
        return None
    names: list[str] = []
    for position, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            errors.append(
                f"{kind}[{position}] is {_describe(item)}; every item must be a column name "
                "(a non-empty string)."
            )
            continue
        column = _known_column(kind, item, ctx, errors)
        if column is None:
            continue
        if column.lower() in (name.lower() for name in names):
            errors.append(f"{kind} lists column {item!r} twice. List each column once.")
            continue
        names.append(column)
    if len(names) != len(value):
        return None
    return _PartialCheck(name=f"{kind}({','.join(names)})", columns=tuple(names))


def _parse_accepted_values(kind: str, value: object, ctx: _Context, errors: list[str]) -> _Partial:
    example = "{'accepted_values': {'column': 'status', 'values': ['placed', 'shipped']}}"
    if not isinstance(value, dict):
        errors.append(
            f"{kind} must be a mapping with keys 'column' and 'values', got "
            f"{_describe(value)}. Write e.g. {example}."
        )
        return None
    ok = _check_keys(kind, value, ("column", "values"), errors)
    missing = [key for key in ("column", "values") if key not in value]
    if missing:
        errors.append(
            f"{kind} is missing {' and '.join(repr(key) for key in missing)}. Write e.g. {example}."
        )
        return None
    column = value["column"]
    if not isinstance(column, str) or not column.strip():
        errors.append(
            f"{kind}.column must be a column name (a non-empty string), got "
            f"{_describe(column)}. Write e.g. {example}."
        )
        known = None
    else:
        known = _known_column(f"{kind}.column", column, ctx, errors)
    values = value["values"]
    accepted = _parse_values(kind, values, column, errors)
    if not ok or known is None or accepted is None:
        return None
    return _PartialCheck(name=f"{kind}({known})", columns=(known,), values=accepted)


def _parse_values(
    kind: str, values: object, column: object, errors: list[str]
) -> tuple[AcceptedValue, ...] | None:
    if not isinstance(values, list | tuple) or not values:
        errors.append(
            f"{kind}.values must be a non-empty list of strings, numbers or booleans, got "
            f"{_describe(values)}. Write e.g. 'values': ['placed', 'shipped']."
        )
        return None
    accepted: list[AcceptedValue] = []
    for position, item in enumerate(values):
        if item is None:
            target = column if isinstance(column, str) else "column"
            errors.append(
                f"{kind}.values[{position}] is null; a null never matches a value list "
                f"(nulls pass accepted_values). Remove it, and to forbid nulls add "
                f"{{'not_null': [{target!r}]}}."
            )
        elif isinstance(item, float) and not math.isfinite(item):
            errors.append(
                f"{kind}.values[{position}] is {item!r}; values must be finite numbers, "
                "strings or booleans."
            )
        elif isinstance(item, str | int | float | bool | dt.date):
            accepted.append(item)
        else:
            errors.append(
                f"{kind}.values[{position}] is {_describe(item)}; each value must be a string, "
                "number, boolean or date."
            )
    if len(accepted) != len(values):
        return None
    return tuple(accepted)


def _parse_row_count(kind: str, value: object, ctx: _Context, errors: list[str]) -> _Partial:
    example = "{'row_count': {'min': 1, 'max': 1000000}}"
    if not isinstance(value, dict) or not value:
        errors.append(
            f"{kind} must be a mapping with 'min' and/or 'max', got {_describe(value)}. "
            f"Write e.g. {example}."
        )
        return None
    ok = _check_keys(kind, value, ("min", "max"), errors)
    bounds: dict[str, int] = {}
    for key in ("min", "max"):
        if key not in value:
            continue
        bound = value[key]
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            errors.append(
                f"{kind}.{key} must be a whole number >= 0, got {_describe(bound)}. "
                f"Write e.g. {example}."
            )
            ok = False
        else:
            bounds[key] = bound
    if not ok:
        return None
    if not bounds:
        errors.append(f"{kind} needs 'min' and/or 'max'. Write e.g. {example}.")
        return None
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None and low > high:
        errors.append(
            f"{kind}.min {low} is greater than {kind}.max {high}; no batch could pass. "
            "Make min <= max."
        )
        return None
    return _PartialCheck(name=kind, min_rows=low, max_rows=high)


def _parse_expression(kind: str, value: object, ctx: _Context, errors: list[str]) -> _Partial:
    if not isinstance(value, str) or not value.strip():
        errors.append(
            f"{kind} must be a SQL boolean expression (a non-empty string), got "
            f"{_describe(value)}. Write e.g. {{'expression': 'amount >= 0'}}."
        )
        return None
    text = value.strip()
    return _PartialCheck(name=f"{kind}({_short_expression(text)})", expression=text)


def _parse_freshness(kind: str, value: object, ctx: _Context, errors: list[str]) -> _Partial:
    example = "{'freshness': {'max_lag': '2 days'}}"
    if not isinstance(value, dict):
        errors.append(
            f"{kind} must be a mapping with 'max_lag', got {_describe(value)}. "
            f"Write e.g. {example}."
        )
        return None
    ok = _check_keys(kind, value, ("max_lag",), errors)
    lag = None
    if "max_lag" not in value:
        errors.append(f"{kind} is missing 'max_lag'. Write e.g. {example}.")
    else:
        lag = _parse_lag(kind, value["max_lag"], errors)
    column = None
    if ctx.event_time is None:
        errors.append(
            f"{kind} checks the newest event_time of the target, but the model has no "
            "event_time. Set event_time='<timestamp column>' in the model's config, or "
            "remove this check."
        )
    else:
        column = _known_column(f"{kind} (the model's event_time)", ctx.event_time, ctx, errors)
    if not ok or lag is None or column is None:
        return None
    return _PartialCheck(
        name=f"{kind}({column})",
        columns=(column,),
        max_lag=lag,
        max_lag_text=str(value["max_lag"]).strip(),
    )


def _parse_lag(kind: str, value: object, errors: list[str]) -> dt.timedelta | None:
    allowed = (
        "A lag is a DuckDB interval of weeks, days, hours, minutes, seconds, milliseconds or "
        "microseconds, e.g. '2 days', '6 hours', '1 day 12 hours', '90 minutes'."
    )
    if not isinstance(value, str):
        errors.append(f"{kind}.max_lag must be a string, got {_describe(value)}. {allowed}")
        return None
    try:
        lag = parse_interval(value)
    except ValueError as e:
        errors.append(f"{kind}.max_lag {value!r} is not a valid interval: {e}. {allowed}")
        return None
    if lag <= dt.timedelta(0):
        errors.append(f"{kind}.max_lag {value!r} must be longer than zero. {allowed}")
        return None
    return lag


def _parse_partition_consistency(
    kind: str, value: object, ctx: _Context, errors: list[str]
) -> _Partial:
    if value is not True:
        errors.append(
            f"{kind} must be true, got {_describe(value)}. Write {{'{kind}': True}} "
            "(true in YAML), or remove the entry to skip the check."
        )
        return None
    if not ctx.has_partitions:
        errors.append(
            f"{kind} checks the partitions a load touched, but the model is not partitioned. "
            "Configure partition_by on the model, or remove this check."
        )
        return None
    return _PartialCheck(name=kind)


@dataclass(frozen=True)
class _PartialCheck:
    name: str
    columns: tuple[str, ...] = ()
    values: tuple[AcceptedValue, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    expression: str | None = None
    max_lag: dt.timedelta | None = None
    max_lag_text: str | None = None


_Partial = _PartialCheck | None

_PARSERS: dict[str, Callable[[str, object, _Context, list[str]], _Partial]] = {
    "not_null": _parse_column_list,
    "unique": _parse_column_list,
    "accepted_values": _parse_accepted_values,
    "row_count": _parse_row_count,
    "expression": _parse_expression,
    "freshness": _parse_freshness,
    "partition_consistency": _parse_partition_consistency,
}


def _check_keys(kind: str, value: dict, allowed: tuple[str, ...], errors: list[str]) -> bool:
    ok = True
    for key in value:
        if key not in allowed:
            ok = False
            errors.append(
                f"{kind} has unknown key {key!r}. Allowed keys: "
                f"{', '.join(allowed)}.{_did_you_mean(key, allowed)}"
            )
    return ok


def _known_column(what: str, column: str, ctx: _Context, errors: list[str]) -> str | None:
    """The column as the model spells it, or None (with an error) if the model lacks it."""
    if ctx.columns is None:
        return column
    found = ctx.columns.get(column.lower())
    if found is not None:
        return found
    produced = list(ctx.columns.values())
    shown = ", ".join(produced[:20]) + (", ..." if len(produced) > 20 else "")
    hint = _did_you_mean(column, produced)
    errors.append(
        f"{what} names column {column!r}, which the model does not produce. "
        f"Model columns: {shown}.{hint or ' Fix the name, or add the column to the model.'}"
    )
    return None


def _did_you_mean(value: object, options: Sequence[str]) -> str:
    if not isinstance(value, str):
        return ""
    lowered = {option.lower(): option for option in options}
    match = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return f" Did you mean {lowered[match[0]]!r}?" if match else ""


def _describe(value: object) -> str:
    if value is None:
        return "null"
    kinds = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        tuple: "a list",
        dict: "a mapping",
    }
    kind = kinds.get(type(value), f"a {type(value).__name__}")
    return f"{clip_text(repr(value), _ENTRY_CHARS)} ({kind})"


def _entry_text(entry: object) -> str:
    return clip_text(repr(entry), _ENTRY_CHARS)


def _short_expression(text: str) -> str:
    """The expression on one line; long ones clipped, with a hash so names stay unique."""
    flat = " ".join(text.split())
    if len(flat) <= _NAME_EXPRESSION_CHARS:
        return flat
    digest = hashlib.sha1(flat.encode()).hexdigest()[:6]
    return f"{flat[: _NAME_EXPRESSION_CHARS - 12].rstrip()}... #{digest}"


_INTERVAL_UNITS: dict[str, dt.timedelta] = {}
for _names, _size in (
    (("microsecond", "microseconds", "us", "usec", "usecs"), dt.timedelta(microseconds=1)),
    (("millisecond", "milliseconds", "ms", "msec", "msecs"), dt.timedelta(milliseconds=1)),
    (("second", "seconds", "s", "sec", "secs"), dt.timedelta(seconds=1)),
    (("minute", "minutes", "m", "min", "mins"), dt.timedelta(minutes=1)),
    (("hour", "hours", "h", "hr", "hrs"), dt.timedelta(hours=1)),
    (("day", "days", "d"), dt.timedelta(days=1)),
    (("week", "weeks", "w"), dt.timedelta(weeks=1)),
):
    for _name in _names:
        _INTERVAL_UNITS[_name] = _size
_CALENDAR_UNITS = frozenset(
    {"month", "months", "mon", "mons", "year", "years", "y", "yr", "yrs", "decade", "decades"}
)
_INTERVAL_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_INTERVAL_CLOCK = re.compile(r"\s*(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d{1,6})?))?\s*$")


def parse_interval(text: str) -> dt.timedelta:
    """Parse a DuckDB-style interval such as ``'2 days'`` or ``'1 day 12 hours'``.

    Accepts ``<number> <unit>`` parts (units from microseconds to weeks, singular, plural or
    abbreviated as DuckDB does, e.g. ``h``, ``min``, ``s``), optionally followed by a clock
    part ``HH:MM[:SS]``. Months and years are rejected: their length varies.

    Args:
        text: The interval text.

    Returns:
        The interval as a timedelta.

    Raises:
        ValueError: If the text is not such an interval.
    """
    rest = text.strip()
    if not rest:
        raise ValueError("it is empty")
    total = dt.timedelta(0)
    while rest:
        clock = _INTERVAL_CLOCK.match(rest)
        if clock:
            hours, minutes, seconds = clock.groups()
            total += dt.timedelta(
                hours=int(hours), minutes=int(minutes), seconds=float(seconds or 0)
            )
            return total
        part = _INTERVAL_PART.match(rest)
        if not part:
            raise ValueError(f"cannot read {rest.strip()!r}")
        number, unit = part.group(1), part.group(2).lower()
        if unit in _CALENDAR_UNITS:
            raise ValueError(f"{unit!r} has no fixed length; use days or weeks")
        if unit not in _INTERVAL_UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        total += _INTERVAL_UNITS[unit] * float(number)
        rest = rest[part.end() :]
    return total


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_quality_checks(
    executor: Executor,
    checks: Sequence[QualityCheck],
    *,
    batch_relation: str,
    target_relation: str,
    event_time: str | None,
    now: dt.datetime,
    batch_filter: str | None = None,
    partition_check: Callable[[], list[str]] | None = None,
    redactor: Redactor = DEFAULT,
) -> list[CheckOutcome]:
    """Run checks on the load's open transaction, one query per check.

    Batch checks query ``batch_relation`` (restricted by ``batch_filter`` when given);
    ``unique`` and ``freshness`` query ``target_relation`` as the DML left it;
    ``partition_consistency`` calls ``partition_check``.

    Args:
        executor: Runs one SQL statement on the load's transaction and returns its rows.
        checks: Checks from :func:`parse_quality_checks`.
        batch_relation: The staged batch, rendered (e.g. ``"db"."main"."orders__batch"``).
        target_relation: The target table, rendered.
        event_time: The model's ``event_time`` column for ``freshness``; when None, the
            column recorded at parse time is used.
        now: The current time as a naive UTC datetime (an aware one is converted).
        batch_filter: A SQL predicate selecting the batch's rows in ``batch_relation``, for a
            relation that holds more than the batch.
        partition_check: Returns the partition manager's consistency problems for the
            partitions the load touched (an empty list when consistent).
        redactor: Redacts the row values samples, messages and query errors show.

    Returns:
        One outcome per check, in order.

    Raises:
        DbtRuntimeError: If a check's query fails (e.g. an expression naming a missing
            column), or ``partition_consistency`` runs without ``partition_check``.
    """
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC).replace(tzinfo=None)
    outcomes = []
    for check in checks:
        runner = _RUNNERS.get(check.kind)
        if runner is None:  # pragma: no cover - parse_quality_checks only makes known kinds
            raise ValueError(f"unknown quality check kind {check.kind!r}")
        relation = batch_relation if check.scope == "batch" else target_relation
        run = _Run(
            executor, check, relation, batch_filter, event_time, now, partition_check, redactor
        )
        outcomes.append(runner(run))
    return outcomes


@dataclass(frozen=True)
class _Run:
    """One check's run: the check, the relation it queries and the run-wide inputs."""

    executor: Executor
    check: QualityCheck
    relation: str
    batch_filter: str | None
    event_time: str | None
    now: dt.datetime
    partition_check: Callable[[], list[str]] | None
    redactor: Redactor = DEFAULT

    def query(self, sql: str) -> list[tuple]:
        try:
            return self.executor(sql)
        except Exception as e:
            # DuckDB's error may quote a row value: redacted, and then not chained (the
            # cause would carry the text unredacted into tracebacks).
            text = self.redactor.text(str(e))
            error = DbtRuntimeError(
                f"quality check {self.check.name} (quality_checks[{self.check.index}]) could "
                f"not run against {self.relation}: {text}\nCheck the column names and SQL of"
                f" this check in the model's quality_checks config.\nSQL: {sql}"
            )
            raise error from (e if text == str(e) else None)

    def render(self, row: dict[str, Any]) -> str:
        """A row for a sample line, its values redacted."""
        return _render_row(row, self.redactor)

    def show(self, column: str, value: object) -> str:
        """One value of ``column`` for a message, redacted."""
        return _render_value(value, self.redactor, column)

    def where(self, condition: str) -> str:
        if self.batch_filter and self.check.scope == "batch":
            return f"where ({self.batch_filter}) and ({condition})"
        return f"where {condition}"

    def outcome(
        self, failing_rows: int, sample: list[str], message: str, failed: bool
    ) -> CheckOutcome:
        return CheckOutcome(
            check_name=self.check.name,
            severity=self.check.severity,
            status="fail" if failed else "pass",
            failing_rows=failing_rows,
            sample=sample,
            message=message,
        )


def _failing_rows(run: _Run, condition: str) -> tuple[int, list[str]]:
    """Count the batch rows matching ``condition`` and render up to five of them.

    One query: the count as a scalar subquery next to each sample row (a struct); no rows
    come back when nothing fails. Samples are ordered by all columns so messages are
    reproducible; DuckDB keeps only the top rows while sorting.
    """
    where = run.where(condition)
    rows = run.query(
        f"select (select count(*) from {run.relation} {where}) as {_ROWS_ALIAS}, "
        f"{_SAMPLE_ALIAS} from (select * from {run.relation} {where} "
        f"order by all limit {SAMPLE_LIMIT}) as {_SAMPLE_ALIAS}"
    )
    if not rows:
        return 0, []
    first = run.check.columns
    return int(rows[0][0]), [run.render(_columns_first(row[1], first)) for row in rows]


def _run_not_null(run: _Run) -> CheckOutcome:
    columns = run.check.columns
    condition = " or ".join(f"{quote_identifier(c)} is null" for c in columns)
    count, sample = _failing_rows(run, condition)
    return run.outcome(
        count,
        sample,
        f"{count} rows of the batch have a null in {' or '.join(columns)}",
        failed=count > 0,
    )


def _run_accepted_values(run: _Run) -> CheckOutcome:
    column = quote_identifier(run.check.columns[0])
    literals = ", ".join(sql_literal(v) for v in run.check.values)
    count, sample = _failing_rows(run, f"{column} is not null and {column} not in ({literals})")
    # The accepted values are the model's config, not row values: shown as written.
    configured = (_render_value(v, NOTHING) for v in run.check.values)
    shown = clip_text(", ".join(configured), _SAMPLE_CHARS)
    return run.outcome(
        count,
        sample,
        f"{count} rows of the batch have {run.check.columns[0]} outside the accepted values "
        f"[{shown}]",
        failed=count > 0,
    )


def _run_expression(run: _Run) -> CheckOutcome:
    expression = run.check.expression or ""
    count, sample = _failing_rows(run, f"not coalesce(({expression}), false)")
    return run.outcome(
        count,
        sample,
        f"{count} rows of the batch make ({_short_expression(expression)}) false or null",
        failed=count > 0,
    )


def _run_row_count(run: _Run) -> CheckOutcome:
    check = run.check
    where = f" where ({run.batch_filter})" if run.batch_filter else ""
    rows = run.query(f"select count(*) from {run.relation}{where}")
    count = int(rows[0][0])
    low, high = check.min_rows, check.max_rows
    if low is not None and high is not None:
        bounds = f"between {low} and {high}"
    elif low is not None:
        bounds = f"at least {low}"
    else:
        bounds = f"at most {high}"
    failed = (low is not None and count < low) or (high is not None and count > high)
    verdict = "requires" if failed else "allows"
    return run.outcome(
        0, [], f"the batch has {count} rows; row_count {verdict} {bounds}", failed=failed
    )


def _run_unique(run: _Run) -> CheckOutcome:
    """Key combinations occurring more than once in the target.

    As in SQL's UNIQUE and dbt's ``unique`` test, rows with a null in a key column are not
    compared. The duplicate groups are materialized once, then counted and sampled.
    """
    columns = run.check.columns
    keys = ", ".join(quote_identifier(c) for c in columns)
    not_null = " and ".join(f"{quote_identifier(c)} is not null" for c in columns)
    dupes = "_sqlflow_duplicates"
    rows = run.query(
        f"with {dupes} as materialized (select {keys}, count(*) as {_ROWS_ALIAS} "
        f"from {run.relation} where {not_null} group by {keys} having count(*) > 1) "
        f"select (select sum({_ROWS_ALIAS}) from {dupes}), (select count(*) from {dupes}), "
        f"{_SAMPLE_ALIAS} from (select * from {dupes} order by {_ROWS_ALIAS} desc, {keys} "
        f"limit {SAMPLE_LIMIT}) as {_SAMPLE_ALIAS}"
    )
    if not rows:
        return run.outcome(0, [], f"no ({','.join(columns)}) value occurs twice", failed=False)
    count, groups = int(rows[0][0]), int(rows[0][1])
    sample = []
    for row in rows:
        values = dict(row[2])
        times = values.pop(_ROWS_ALIAS)
        sample.append(f"{run.render(values)} ({times} rows)")
    return run.outcome(
        count,
        sample,
        f"{count} rows of the target share {groups} duplicated ({','.join(columns)}) values",
        failed=True,
    )


def _run_freshness(run: _Run) -> CheckOutcome:
    check, now = run.check, run.now
    column = run.event_time or (check.columns[0] if check.columns else None)
    if column is None or check.max_lag is None:
        raise DbtRuntimeError(
            f"quality check {check.name} needs the model's event_time column; none was given."
        )
    rows = run.query(f"select max({quote_identifier(column)}) from {run.relation}")
    newest = _as_utc_datetime(rows[0][0] if rows else None, check, run.redactor)
    cutoff = now - check.max_lag
    lag = f"now ({_render_value(now)}) minus max_lag '{check.max_lag_text}'"
    if newest is None:
        return run.outcome(
            0,
            [],
            f"the target has no rows with a non-null {column}, so none is newer than "
            f"{_render_value(cutoff)} ({lag})",
            failed=True,
        )
    newest_text = run.show(column, rows[0][0])
    shown = f"newest {column}={newest_text}"
    if newest < cutoff:
        return run.outcome(
            0,
            [shown],
            f"the newest {column} in the target, {newest_text}, is older than "
            f"{_render_value(cutoff)} ({lag})",
            failed=True,
        )
    return run.outcome(
        0,
        [],
        f"the newest {column} in the target, {newest_text}, is within "
        f"max_lag '{check.max_lag_text}' of now",
        failed=False,
    )


def _as_utc_datetime(
    value: object, check: QualityCheck, redactor: Redactor = DEFAULT
) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    raise DbtRuntimeError(
        f"quality check {check.name}: the newest event_time is"
        f" {redactor.text(repr(value))} "
        f"({type(value).__name__}); freshness needs a DATE, TIMESTAMP or TIMESTAMPTZ column. "
        "Point event_time at such a column, or remove the check."
    )


def _run_partition_consistency(run: _Run) -> CheckOutcome:
    check, partition_check = run.check, run.partition_check
    if partition_check is None:
        raise DbtRuntimeError(
            f"quality check {check.name} needs the partition manager's consistency check, "
            "but the load gave none; this is a bug in dbt-sqlflow's materialization."
        )
    problems = [str(problem) for problem in partition_check()]
    failed = bool(problems)
    message = (
        f"the partition consistency check found {len(problems)} problems"
        if failed
        else "the touched partitions are consistent"
    )
    return CheckOutcome(
        check_name=check.name,
        severity=check.severity,
        status="fail" if failed else "pass",
        failing_rows=0,
        # Value partitions' keys are row values.
        sample=[clip_text(run.redactor.text(p), _SAMPLE_CHARS) for p in problems[:SAMPLE_LIMIT]],
        message=message,
    )


_RUNNERS: dict[str, Callable[[_Run], CheckOutcome]] = {
    "not_null": _run_not_null,
    "accepted_values": _run_accepted_values,
    "expression": _run_expression,
    "row_count": _run_row_count,
    "unique": _run_unique,
    "freshness": _run_freshness,
    "partition_consistency": _run_partition_consistency,
}


# --------------------------------------------------------------------------------------------
# Decisions and messages
# --------------------------------------------------------------------------------------------


def failed_errors(outcomes: Sequence[CheckOutcome]) -> list[CheckOutcome]:
    """Failed outcomes of severity ``error``: any one rolls the load back."""
    return [o for o in outcomes if o.failed and o.severity == "error"]


def failed_warnings(outcomes: Sequence[CheckOutcome]) -> list[CheckOutcome]:
    """Failed outcomes of severity ``warn``: logged, and the load commits."""
    return [o for o in outcomes if o.failed and o.severity == "warn"]


def format_failure(model: str, outcomes: Sequence[CheckOutcome]) -> str:
    """The error that fails a model whose ``error`` checks failed.

    One block per failed ``error`` outcome (passing outcomes and warnings are left out),
    each starting with ``quality check failed: <name> (<n> failing rows)``, the line the
    metrics exporter looks for.

    Args:
        model: The model's unique id.
        outcomes: Outcomes of the load (all, or just the failed errors).

    Returns:
        The message.

    Raises:
        ValueError: If no outcome is a failed error.
    """
    failures = failed_errors(outcomes)
    if not failures:
        raise ValueError("format_failure needs at least one failed check of severity 'error'")
    checks = "check" if len(failures) == 1 else "checks"
    lines = [
        f"Model '{model}': {len(failures)} quality {checks} of severity 'error' failed, so the "
        "load was rolled back and the target and sqlflow's state are unchanged. Fix the data "
        "or the check, or set severity: 'warn' on a check to load despite it."
    ]
    for outcome in failures:
        lines.extend(_block(FAILURE_PREFIX, outcome))
    return "\n".join(lines)


def format_warning(model: str, outcome: CheckOutcome) -> str:
    """The warning logged for one failed ``warn`` check; the load was committed.

    Args:
        model: The model's unique id.
        outcome: The failed outcome.

    Returns:
        The message: a line naming the model, then the check's block.
    """
    lines = [f"Model '{model}': a quality check of severity 'warn' failed; the load was committed."]
    lines.extend(_block(WARNING_PREFIX, outcome))
    return "\n".join(lines)


_FAILURE_LINE = re.compile(re.escape(FAILURE_PREFIX) + r"(.+) \((\d+) failing rows\)$")


def failures_in_message(message: str | None) -> list[tuple[str, int]]:
    """Read back the failed checks of a message made by :func:`format_failure`.

    The inverse of the ``quality check failed: <name> (<n> failing rows)`` lines, for
    readers of run results. Names may contain spaces, parentheses and `` - `` (expressions).

    Args:
        message: A failed model's message (None is fine).

    Returns:
        ``(check name, failing rows)`` per failed check, in message order.
    """
    found = []
    for line in (message or "").splitlines():
        match = _FAILURE_LINE.match(line.strip())
        if match:
            found.append((match.group(1), int(match.group(2))))
    return found


def _block(prefix: str, outcome: CheckOutcome) -> list[str]:
    lines = [f"{prefix}{outcome.check_name} ({outcome.failing_rows} failing rows)"]
    lines.append(f"  {outcome.message}")
    lines.extend(f"  - {row}" for row in outcome.sample[:SAMPLE_LIMIT])
    return lines


def _columns_first(row: Any, first: Sequence[str]) -> dict[str, Any]:
    """The row as a dict with the checked columns first, so samples show them up front."""
    values = dict(row)
    lowered = {key.lower(): key for key in values}
    ordered: dict[str, Any] = {}
    for column in first:
        key = lowered.get(column.lower())
        if key is not None:
            ordered[key] = values[key]
    for key, value in values.items():
        ordered.setdefault(key, value)
    return ordered


def _render_row(row: dict[str, Any], redactor: Redactor = DEFAULT) -> str:
    text = ", ".join(f"{key}={_render_value(value, redactor, key)}" for key, value in row.items())
    return clip_text(text, _SAMPLE_CHARS)


def _render_value(value: object, redactor: Redactor = DEFAULT, column: str = "") -> str:
    """A value as a sample shows it; redacted before it is clipped, so a clip never leaves
    part of an e-mail address that no longer looks like one."""
    if column and redactor.listed(column):
        return redactor.value(column, value)
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = redactor.text(value)
        return clip_text("'" + text.replace("'", "''") + "'", _VALUE_CHARS)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        # A struct's fields are columns too (a listed name is redacted whole).
        inner = ", ".join(f"{k}: {_render_value(v, redactor, str(k))}" for k, v in value.items())
        return clip_text("{" + inner + "}", _VALUE_CHARS)
    if isinstance(value, list | tuple):
        items = ", ".join(_render_value(v, redactor) for v in value)
        return clip_text("[" + items + "]", _VALUE_CHARS)
    return clip_text(redactor.text(str(value)), _VALUE_CHARS)
