"""Partitions of a DuckDB table, kept by sqlflow: pure key/range math and a manager.

DuckDB tables have no partitions; sqlflow records them in its state tables (see
:mod:`dbt.adapters.sqlflow.state`) and keeps the rows of a partition together by writing
them in time order, so DuckDB's per-row-group min/max skip the others.

Time partitions (``granularity`` set) cover half-open ``[start, end)`` ranges of naive
UTC time: ``start`` inclusive, ``end`` exclusive. Their keys are:

============  ================  ==========================================
granularity   key               range
============  ================  ==========================================
hour          ``2025-03-04T05``  ``[2025-03-04 05:00, 2025-03-04 06:00)``
day           ``2025-03-04``     ``[2025-03-04, 2025-03-05)``
week          ``2025-W10``       ``[2025-03-03, 2025-03-10)`` (ISO week, Monday first)
month         ``2025-03``        ``[2025-03-01, 2025-04-01)``
year          ``2025``           ``[2025-01-01, 2026-01-01)``
============  ================  ==========================================

Week keys are ISO 8601 weeks (``%G-W%V``): the ISO year can differ from the calendar
year around New Year (Monday 2024-12-30 starts ``2025-W01``). Every key sorts in time
order as a string.

Value partitions (no granularity) have the field's value cast to VARCHAR as key
(:data:`NULL_KEY` for NULL) and no range.

The pure parts import nothing heavy; :class:`PartitionManager` reaches the database only
through an executor (``Callable[[str], list[tuple]]``) and the state store.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.config import partition_by_mapping
from dbt.adapters.sqlflow.intervals import (
    Interval,
    add_units,
    ceil,
    check_granularity,
    merge,
    to_utc_naive,
    truncate,
)
from dbt.adapters.sqlflow.sql import (
    TIMESTAMPTZ,
    Executor,
    normalize_time_type,
    quote_identifier,
    sql_string,
    time_literal,
    truncate_sql,
    utc_expr,
    utc_now,
)
from dbt.adapters.sqlflow.state import PartitionInfo, StateStore

NULL_KEY = "__null__"
"""Key of the value partition holding the rows whose field is NULL."""

# ---------------------------------------------------------------------------------------
# Pure key / range math
# ---------------------------------------------------------------------------------------


def partition_key(ts: datetime | date, granularity: str) -> str:
    """The key of the ``granularity`` partition containing ``ts`` (see the module table)."""
    t = truncate(to_utc_naive(ts), granularity)
    if granularity == "hour":
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}"
    if granularity == "day":
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    if granularity == "week":
        iso = t.isocalendar()
        return f"{iso[0]:04d}-W{iso[1]:02d}"
    if granularity == "month":
        return f"{t.year:04d}-{t.month:02d}"
    return f"{t.year:04d}"


# DuckLake's time transforms, coarsest first, and the finest one each granularity needs to
# tell a file's partition (a week is laid out by day: see lake.py).
_LAKE_UNITS = ("year", "month", "day", "hour")
_LAKE_FINEST = {"year": "year", "month": "month", "week": "day", "day": "day", "hour": "hour"}


def lake_file_key(values: Mapping[str, str | None], granularity: str | None) -> str | None:
    """The key of the partition a DuckLake data file holds, from the file's partition
    values in the lake's catalog.

    Args:
        values: The file's value per transform on the partition field: ``{'year':
            '2025', 'month': '1', 'day': '3'}``, or ``{'identity': 'eu'}`` for a value
            partition (None for NULL).
        granularity: The model's partition granularity; None for value partitions.

    Returns:
        The key, or None when the values do not tell it (a file written unpartitioned,
        or under a coarser or other layout).
    """
    if granularity is None:
        if set(values) != {"identity"}:
            return None
        value = values["identity"]
        return NULL_KEY if value is None else value
    units = _LAKE_UNITS[: _LAKE_UNITS.index(_LAKE_FINEST[granularity]) + 1]
    if "identity" in values or any(values.get(u) is None for u in units):
        return None
    try:
        n = {"month": 1, "day": 1, "hour": 0} | {u: int(str(values[u])) for u in units}
        moment = datetime(n["year"], n["month"], n["day"], n["hour"])
    except ValueError:
        return None
    return partition_key(moment, granularity)


_KEY_PATTERNS = {
    "hour": re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})"),
    "day": re.compile(r"(\d{4})-(\d{2})-(\d{2})"),
    "week": re.compile(r"(\d{4})-W(\d{2})"),
    "month": re.compile(r"(\d{4})-(\d{2})"),
    "year": re.compile(r"(\d{4})"),
}


def partition_range(key: str, granularity: str) -> Interval:
    """The ``[start, end)`` range of a time partition key (start inclusive, end exclusive).

    Raises:
        ValueError: When ``key`` is not a key of that granularity.
    """
    check_granularity(granularity)
    match = _KEY_PATTERNS[granularity].fullmatch(key)
    try:
        if match is None:
            raise ValueError(key)
        parts = [int(p) for p in match.groups()]
        if granularity == "week":
            start = datetime.combine(
                date.fromisocalendar(parts[0], parts[1], 1), datetime.min.time()
            )
        elif granularity == "hour":
            start = datetime(parts[0], parts[1], parts[2], parts[3])
        elif granularity == "day":
            start = datetime(parts[0], parts[1], parts[2])
        elif granularity == "month":
            start = datetime(parts[0], parts[1], 1)
        else:
            start = datetime(parts[0], 1, 1)
    except ValueError:
        example = partition_key(datetime(2025, 3, 4, 5), granularity)
        raise ValueError(
            f"{key!r} is not a {granularity} partition key: expected the form {example!r}"
        ) from None
    return Interval(start, add_units(start, granularity, 1))


def partition_keys(interval: Interval, granularity: str) -> list[str]:
    """Keys of every ``granularity`` partition overlapping ``[start, end)``, in time order."""
    keys = []
    current = truncate(interval.start, granularity)
    while current < interval.end:
        keys.append(partition_key(current, granularity))
        current = add_units(current, granularity, 1)
    return keys


def covering_range(keys: Iterable[str], granularity: str) -> list[Interval]:
    """The merged ``[start, end)`` ranges of some time partition keys, in time order."""
    return merge(partition_range(k, granularity) for k in keys)


@dataclass(frozen=True)
class PartitionSpec:
    """How a table is partitioned.

    Attributes:
        field: Column name, unquoted (sqlflow quotes it).
        granularity: hour, day, week, month or year for time partitions; None for value
            partitions (one partition per distinct value).
        field_type: The column's DuckDB type: ``DATE``, ``TIMESTAMP``, ``TIMESTAMP WITH
            TIME ZONE`` (``TIMESTAMPTZ`` accepted) or another type (compared as
            TIMESTAMP for time partitions).
    """

    field: str
    granularity: str | None = None
    field_type: str = "TIMESTAMP"

    def __post_init__(self) -> None:
        if self.granularity is not None:
            check_granularity(self.granularity)
        object.__setattr__(self, "field_type", normalize_time_type(self.field_type))

    @property
    def is_time(self) -> bool:
        """True for time partitions."""
        return self.granularity is not None


@dataclass(frozen=True)
class ConsistencyProblem:
    """One disagreement between a table's data and its recorded partitions.

    Attributes:
        kind: ``count_mismatch``, ``out_of_range``, ``bad_range``, ``duplicate_key`` or
            ``gap``.
        partition_key: The partition concerned (the one after the gap for ``gap``), or
            None when the rows belong to no partition key (a NULL field).
        detail: A sentence saying what was recorded and what was found.
        recorded: The recorded row count, where it applies.
        actual: The row count found in the data, where it applies.
    """

    kind: str
    partition_key: str | None
    detail: str
    recorded: int | None = None
    actual: int | None = None


@dataclass
class ConsistencyReport:
    """The outcome of :meth:`PartitionManager.validate_consistency`.

    Attributes:
        relation: The table checked.
        partitions_checked: How many recorded partitions were compared with the data.
        problems: Every problem found (empty when consistent).
    """

    relation: str
    partitions_checked: int
    problems: list[ConsistencyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def format(self) -> str:
        """A message listing every problem, one a line (for an error or the CLI)."""
        if self.ok:
            return f"{self.relation}: {self.partitions_checked} partitions, consistent"
        lines = [
            f"{self.relation}: {len(self.problems)} partition problem(s) in "
            f"{self.partitions_checked} recorded partitions:"
        ]
        for p in self.problems:
            lines.append(f"  - {p.kind} [{p.partition_key or '-'}]: {p.detail}")
        lines.append(
            "Fix: rebuild the affected range (dbt run -s <model> --vars "
            '\'{"sqlflow_start": ..., "sqlflow_end": ...}\') or the model with --full-refresh.'
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------------------

DUPLICATE_SAMPLE = 10
"""How many unique_key values in two partitions ``validate_consistency`` lists."""


class PartitionManager:
    """A table's partitions: detection, registration, pruning, statistics and checks.

    Args:
        executor: Runs one SQL statement, returns its rows (in production, dbt's
            connection inside the model's transaction).
        state: sqlflow's state store (where partitions are recorded).
        spec: The table's partitioning.
        unique_key: Columns that identify a row, for the duplicate check of
            :meth:`validate_consistency`; None skips it.

    ``relation`` arguments are rendered, quoted relation names (``"db"."main"."t"``).
    """

    def __init__(
        self,
        executor: Executor,
        state: StateStore,
        spec: PartitionSpec,
        *,
        unique_key: list[str] | None = None,
    ) -> None:
        self.executor = executor
        self.state = state
        self.spec = spec
        self.unique_key = list(unique_key or [])
        # Keys known to be recorded for the relation being loaded, when the caller has
        # read them (``remember_keys``): refreshing a key not among them needs no delete.
        self.known_keys: set[str] | None = None

    def remember_keys(self, relation: str) -> None:
        """Read the relation's recorded keys once, so refreshes of new keys skip a delete."""
        self.known_keys = {p.key for p in self.state.partitions(relation)}

    # -- SQL fragments ---------------------------------------------------------------

    def _column(self, alias: str | None = None) -> str:
        column = quote_identifier(self.spec.field)
        return f"{alias}.{column}" if alias else column

    def _utc_expr(self) -> str:
        """The field as a naive UTC TIMESTAMP (the time partitions' frame)."""
        return utc_expr(self._column(), self.spec.field_type)

    def bucket_expr(self) -> str:
        """SQL giving each row its partition: unit start (time) or VARCHAR key (value)."""
        if self.spec.granularity is None:
            return f"coalesce(cast({self._column()} as varchar), {sql_string(NULL_KEY)})"
        return truncate_sql(self.spec.granularity, self._utc_expr())

    def _value_expr(self) -> str:
        """The field as shown in min/max: naive UTC for TIMESTAMPTZ, else as stored."""
        if self.spec.field_type == TIMESTAMPTZ:
            return self._utc_expr()
        return self._column()

    def _bucket_key(self, bucket: Any) -> str | None:
        if self.spec.granularity is None:
            return str(bucket)
        if bucket is None:
            return None
        return partition_key(bucket, self.spec.granularity)

    def _require_time(self, what: str) -> str:
        if self.spec.granularity is None:
            raise ValueError(
                f"{what} needs time partitions, but partitions on {self.spec.field!r} are "
                "value partitions (no granularity): select value partitions by key instead"
            )
        return self.spec.granularity

    def _bound(self, ts: datetime) -> str:
        if self.spec.field_type == "DATE":
            return f"DATE '{ceil(ts, 'day').date().isoformat()}'"
        return time_literal(ts, self.spec.field_type)

    def predicate(self, time_range: Interval, alias: str | None = None) -> str:
        """The boolean SQL for ``start <= field < end`` (start inclusive, end exclusive).

        Literals are typed as the field (DATE, TIMESTAMP or TIMESTAMPTZ at ``+00``) so
        DuckDB pushes the filter down to row-group min/max. A DATE field compares with
        the first dates at or after each bound.

        Args:
            time_range: The range to keep.
            alias: Table alias to qualify the column with, inserted verbatim.

        Raises:
            ValueError: For value partitions.
        """
        self._require_time("a time-range predicate")
        column = self._column(alias)
        return (
            f"{column} >= {self._bound(time_range.start)} "
            f"and {column} < {self._bound(time_range.end)}"
        )

    def span_predicate(self, keys: Sequence[str], alias: str | None = None) -> str:
        """The boolean SQL for one range of time partitions: from the start of the first
        of ``keys`` to the end of the last (the partitions between them included)."""
        ranges = covering_range(keys, self._require_time("span_predicate"))
        return self.predicate(Interval(ranges[0].start, ranges[-1].end), alias)

    def keys_predicate(self, keys: Sequence[str], alias: str | None = None) -> str:
        """The boolean SQL selecting the rows of the given partitions.

        Time partitions: the merged ranges of the keys (pushable range comparisons, OR-ed).
        Value partitions: ``field in (...)`` with the keys as string literals (DuckDB
        casts them to the field's type), ``or field is null`` for :data:`NULL_KEY`.
        An empty ``keys`` gives ``false``.
        """
        if not keys:
            return "false"
        if self.spec.granularity is not None:
            ranges = covering_range(keys, self.spec.granularity)
            parts = [f"({self.predicate(r, alias)})" for r in ranges]
            return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"
        column = self._column(alias)
        values = sorted({k for k in keys if k != NULL_KEY})
        if NULL_KEY in keys and self.spec.field_type.split("(")[0] in ("VARCHAR", "TEXT", "STRING"):
            # A text value '__null__' falls into the NULL partition (same key): select it too,
            # or a replace of that partition would keep its old rows beside the new ones.
            values.append(NULL_KEY)
        parts = []
        if values:
            parts.append(f"{column} in ({', '.join(sql_string(v) for v in values)})")
        if NULL_KEY in keys:
            parts.append(f"{column} is null")
        return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"

    def prune_partitions(self, query: str, time_range: Interval) -> str:
        """``query`` restricted to ``[start, end)`` on the partition field.

        Returns ``select * from (query) as sqlflow_pruned where <predicate>``, the
        predicate of :meth:`predicate`, which DuckDB pushes down into the query's scans.

        Raises:
            ValueError: For value partitions.
        """
        condition = self.predicate(time_range)
        body = query.strip().rstrip(";").rstrip()
        return f"select * from (\n{body}\n) as sqlflow_pruned\nwhere {condition}"

    def partition_keys(self, time_range: Interval) -> list[str]:
        """Keys of the partitions overlapping ``[start, end)``, in time order."""
        return partition_keys(time_range, self._require_time("partition_keys"))

    # -- Reading the data ---------------------------------------------------------------

    def statistics_sql(self) -> str:
        """The aggregates of a partition's statistics over rows with the table's columns:
        rows, min and max (as text); :meth:`statistics_of` reads them per bucket."""
        value = self._value_expr()
        return f"count(*), cast(min({value}) as varchar), cast(max({value}) as varchar)"

    def statistics_of(self, rows: Iterable[Sequence[Any]]) -> dict[str | None, tuple]:
        """``{key: (rows, min, max)}`` from rows of ``(bucket, *statistics_sql)`` (key
        None: NULL time), what :meth:`refresh_statistics` takes as ``found``."""
        return {
            self._bucket_key(bucket): (int(count), low, high) for bucket, count, low, high in rows
        }

    def _scan(self, relation: str, keys: Sequence[str] | None) -> dict[str | None, tuple]:
        """One GROUP BY: ``{key: (rows, min, max)}`` of the data (key None: NULL time)."""
        where = "" if keys is None else f"\nwhere {self.keys_predicate(keys)}"
        return self.statistics_of(
            self.executor(
                f"select {self.bucket_expr()} as sqlflow_bucket, {self.statistics_sql()}"
                f"\nfrom {relation}{where}\ngroup by 1"
            )
        )

    def _info(self, key: str, stats: tuple | None, previous: PartitionInfo | None) -> PartitionInfo:
        count, low, high = stats if stats is not None else (0, None, None)
        start = end = None
        if self.spec.granularity is not None:
            rng = partition_range(key, self.spec.granularity)
            start, end = rng.start, rng.end
        return PartitionInfo(
            key=key,
            range_start=start,
            range_end=end,
            row_count=count,
            min_value=low,
            max_value=high,
            last_load_id=previous.last_load_id if previous else None,
            last_loaded_at=previous.last_loaded_at if previous else None,
        )

    def _sorted(self, infos: Iterable[PartitionInfo]) -> list[PartitionInfo]:
        return sorted(infos, key=lambda p: (p.range_start or datetime.min, p.key))

    def detect_partitions(self, relation: str) -> list[PartitionInfo]:
        """The table's partitions, in key order (time order for time partitions).

        Read from the state tables; for a table with no recorded partitions (built
        outside sqlflow), computed from the data with one GROUP BY and recorded (with no
        load id). An empty table has none.
        """
        recorded = self.state.partitions(relation)
        if recorded:
            return self._sorted(recorded)
        found = self._scan(relation, None)
        infos = [self._info(k, v, None) for k, v in found.items() if k is not None]
        if infos:
            self.state.upsert_partitions(relation, infos)
        return self._sorted(infos)

    def create_partition(
        self, relation: str, time_range: Interval, *, load_id: str | None = None
    ) -> list[str]:
        """Register the partitions of ``[start, end)``; return all their keys in time order.

        Partitions already recorded are left as they are; new ones are recorded empty
        (0 rows), with ``load_id``. Call :meth:`refresh_statistics` with the keys after
        writing the data.

        Raises:
            ValueError: For value partitions (their keys come from the data).
        """
        keys = partition_keys(time_range, self._require_time("create_partition"))
        known = {p.key for p in self.state.partitions(relation, keys=keys)}
        now = utc_now() if load_id is not None else None
        new = []
        for key in keys:
            if key not in known:
                info = self._info(key, None, None)
                info.last_load_id, info.last_loaded_at = load_id, now
                new.append(info)
        if new:
            self.state.upsert_partitions(relation, new)
        return keys

    def refresh_statistics(
        self,
        relation: str,
        keys: Sequence[str] | None = None,
        *,
        load_id: str | Mapping[str, str] | None = None,
        loaded_at: datetime | None = None,
        found: Mapping[str | None, tuple] | None = None,
    ) -> list[PartitionInfo]:
        """Recompute row counts and min/max of partitions from the data and record them.

        One GROUP BY, restricted to the given keys' ranges (time) or values (value
        partitions), so a load touching one day reads one day. A given key with no rows
        is recorded with 0 rows (an empty partition). With ``keys=None`` every recorded
        partition and every partition present in the data is refreshed.

        Args:
            relation: The table.
            keys: Partition keys to refresh; None for all.
            load_id: The load that touched them, or per key the load that touched it
                (a group of batches refreshed at once); recorded as their last load
                (with ``loaded_at``, default now). None keeps each partition's last load.
            loaded_at: When the load happened (naive UTC).
            found: The partitions' statistics when the caller has them exactly
                (:meth:`statistics_of` of the rows the given keys hold: a load into
                partitions that were empty); read from the table otherwise.

        Returns:
            The refreshed partitions, in key order.
        """
        wanted = None if keys is None else list(dict.fromkeys(keys))
        if wanted is not None and not wanted:
            return []
        # With a load id every refreshed key gets it: the previous rows are only needed
        # to keep each partition's last load, or to list every recorded key.
        previous = (
            {}
            if load_id is not None and wanted is not None
            else {p.key: p for p in self.state.partitions(relation, keys=wanted)}
        )
        if found is None or wanted is None:
            found = self._scan(relation, wanted)
        if wanted is None:
            wanted = list(dict.fromkeys([*previous, *(k for k in found if k is not None)]))
        stamp = (loaded_at or utc_now()) if load_id is not None else None
        infos = []
        for key in wanted:
            info = self._info(key, found.get(key), previous.get(key))
            if load_id is not None:
                info.last_load_id = load_id if isinstance(load_id, str) else load_id[key]
                info.last_loaded_at = stamp
            infos.append(info)
        if self.known_keys is None:
            self.state.upsert_partitions(relation, infos)
        else:
            new = [p.key for p in infos if p.key not in self.known_keys]
            self.state.upsert_partitions(relation, infos, new_keys=new)
            self.known_keys.update(new)
        return self._sorted(infos)

    def get_partition_statistics(self, relation: str) -> dict[str, Any]:
        """Figures over the table's partitions (from :meth:`detect_partitions`).

        Returns:
            A dict with ``relation``, ``partition_count``, ``total_rows``, ``min_rows``,
            ``median_rows`` (a float), ``max_rows`` (None for each of the three when there
            is no partition), ``empty_partitions``, ``oldest_partition`` and
            ``newest_partition`` (first and last keys in time order; None for value
            partitions), ``last_load_id`` and ``last_loaded_at`` (the most recent load
            recorded on any partition).
        """
        import statistics  # pulls in fractions/decimal: only when asked

        infos = self.detect_partitions(relation)
        counts = [p.row_count for p in infos]
        loaded = [p for p in infos if p.last_loaded_at is not None]
        last = max(loaded, key=lambda p: p.last_loaded_at or datetime.min) if loaded else None
        timed = self.spec.granularity is not None and infos
        return {
            "relation": relation,
            "partition_count": len(infos),
            "total_rows": sum(counts),
            "min_rows": min(counts) if counts else None,
            "median_rows": float(statistics.median(counts)) if counts else None,
            "max_rows": max(counts) if counts else None,
            "empty_partitions": sum(1 for c in counts if c == 0),
            "oldest_partition": infos[0].key if timed else None,
            "newest_partition": infos[-1].key if timed else None,
            "last_load_id": last.last_load_id if last else None,
            "last_loaded_at": last.last_loaded_at if last else None,
        }

    def validate_consistency(self, relation: str) -> ConsistencyReport:
        """Compare the recorded partitions with the data.

        Reports (one :class:`ConsistencyProblem` each):

        * ``count_mismatch``: a recorded row count that differs from the rows in the
          partition;
        * ``out_of_range``: rows whose field falls in no recorded partition (including a
          NULL field);
        * ``bad_range``: a recorded range that is not its key's range, so rows of that key
          lie outside their partition's recorded range;
        * ``duplicate_key``: a ``unique_key`` value present in two partitions (the first
          :data:`DUPLICATE_SAMPLE` values, with the total);
        * ``gap``: time between two recorded time partitions that no partition covers.

        Reads the data with one GROUP BY, plus one for the ``unique_key`` check.
        """
        recorded = self._sorted(self.state.partitions(relation))
        found = self._scan(relation, None)
        problems = self._recorded_problems(recorded, found)
        problems += self._unrecorded_problems(found, {p.key for p in recorded})
        problems += self._duplicates(relation)
        problems += self._gaps(recorded)
        return ConsistencyReport(relation, len(recorded), problems)

    def _recorded_problems(
        self, recorded: list[PartitionInfo], found: dict[str | None, tuple]
    ) -> list[ConsistencyProblem]:
        """``count_mismatch`` and ``bad_range`` of each recorded partition, in order."""
        problems: list[ConsistencyProblem] = []
        gran = self.spec.granularity
        for info in recorded:
            count = found.get(info.key, (0, None, None))[0]
            if count != info.row_count:
                problems.append(
                    ConsistencyProblem(
                        "count_mismatch",
                        info.key,
                        f"recorded {info.row_count} rows, found {count}",
                        recorded=info.row_count,
                        actual=count,
                    )
                )
            if gran is not None:
                expected = partition_range(info.key, gran)
                if (info.range_start, info.range_end) != (expected.start, expected.end):
                    problems.append(
                        ConsistencyProblem(
                            "bad_range",
                            info.key,
                            f"recorded range [{_iso(info.range_start)}, {_iso(info.range_end)})"
                            f" is not the key's range {expected}",
                        )
                    )
        return problems

    def _unrecorded_problems(
        self, found: dict[str | None, tuple], recorded_keys: set[str]
    ) -> list[ConsistencyProblem]:
        """``out_of_range``: the data's partition keys that no partition records, in order."""
        problems = []
        for key, (count, low, high) in sorted(found.items(), key=lambda kv: kv[0] or ""):
            if key in recorded_keys:
                continue
            where = (
                f"a NULL {self.spec.field}"
                if key is None
                else f"{self.spec.field} in [{low}, {high}]"
                if self.spec.granularity is not None
                else f"{self.spec.field} = {low}"
            )
            problems.append(
                ConsistencyProblem(
                    "out_of_range",
                    key,
                    f"{count} row(s) with {where} fall in no recorded partition",
                    recorded=None,
                    actual=count,
                )
            )
        return problems

    def _gaps(self, recorded: list[PartitionInfo]) -> list[ConsistencyProblem]:
        """``gap``: time between two consecutive recorded time partitions (none for values)."""
        if self.spec.granularity is None:
            return []
        return [
            ConsistencyProblem(
                "gap",
                after.key,
                f"no partition covers [{_iso(before.range_end)}, "
                f"{_iso(after.range_start)}) between {before.key} and {after.key}",
            )
            for before, after in itertools.pairwise(recorded)
            if before.range_end and after.range_start and before.range_end < after.range_start
        ]

    def _duplicates(self, relation: str) -> list[ConsistencyProblem]:
        if not self.unique_key:
            return []
        columns = ", ".join(quote_identifier(c) for c in self.unique_key)
        bucket = self.bucket_expr()
        rows = self.executor(
            f"select {columns}, list(distinct {bucket}), count(*) over ()"
            f"\nfrom {relation}\ngroup by {columns}"
            f"\nhaving count(distinct {bucket}) > 1"
            f"\norder by {columns}\nlimit {DUPLICATE_SAMPLE}"
        )
        problems = []
        n = len(self.unique_key)
        for row in rows:
            values, buckets, total = row[:n], row[n], row[n + 1]
            keys = sorted(k or "(null)" for k in {self._bucket_key(b) for b in buckets})
            shown = ", ".join(str(v) for v in values)
            problems.append(
                ConsistencyProblem(
                    "duplicate_key",
                    keys[0],
                    f"unique_key ({', '.join(self.unique_key)}) = ({shown}) is in "
                    f"{len(keys)} partitions: {', '.join(keys)}"
                    f" ({total} such value(s) in all)",
                )
            )
        return problems


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "NULL"


def check_model_partitions(
    model_id: str,
    relation: str,
    node_config: Mapping[str, Any],
    columns: Mapping[str, str],
    execute: Executor,
    state: Callable[[Executor], StateStore],
) -> str:
    """The partition manager's consistency check of a model's table
    (``dbt run-operation sqlflow_check_partitions``).

    Returns:
        The report, when the partitions are consistent.

    Raises:
        DbtRuntimeError: for a model without ``partition_by``, or listing every
            inconsistency found.
    """
    part = partition_by_mapping(node_config.get("partition_by"))
    if part is None:
        raise DbtRuntimeError(
            f"sqlflow_check_partitions: model '{model_id}' has no partition_by."
            " Set partition_by in its config to give it partitions."
        )
    lowered = {name.lower(): dtype for name, dtype in columns.items()}
    spec = PartitionSpec(
        part["field"], part.get("granularity"), lowered.get(part["field"].lower(), "TIMESTAMP")
    )
    key = node_config.get("unique_key")
    keys = [key] if isinstance(key, str) else list(key or [])
    pm = PartitionManager(execute, state(execute), spec, unique_key=keys or None)
    report = pm.validate_consistency(relation)
    if not report.ok:
        raise DbtRuntimeError(f"sqlflow: model '{model_id}': {report.format()}")
    return f"sqlflow: model '{model_id}': {report.format()}"
