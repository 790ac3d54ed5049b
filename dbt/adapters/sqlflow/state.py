"""sqlflow's state tables: every read and write of the ``sqlflow_meta`` schema.

Written through the caller's executor, so in production the state shares the model's
transaction and never disagrees with the data (this module never issues BEGIN, COMMIT or
ROLLBACK). Five tables and two views:

``loads``
    One row per committed load (batch): ids, model, strategy, window ``[start, end)``,
    times, status, row counts, partitions touched, watermarks, and the seconds of each
    phase of the batch (``<phase>_seconds``, see ``observe.PHASES``; NULL for empty
    windows and for loads recorded before these columns existed), the DuckDB instance's
    peak buffer memory and the bytes it spilled to disk while the batch ran, and the
    transient failures the batch was retried after (NULL likewise).
``load_summaries``
    The older rows of ``loads``, folded: :meth:`StateStore.compact_loads` keeps a model's
    newest loads in ``loads`` and replaces the rest by one row of counts, sums, medians and
    maxima per compaction (``loads`` stays bounded; nothing is summed twice).
``interval_log``
    Every change of a model's loaded time, in order: a range ``[interval_start,
    interval_end)`` (start inclusive, end exclusive) marked loaded by a load, or unmarked
    (``loaded`` false: an invalidation, a full refresh).
``intervals`` (view)
    The log laid out: per model, the ranges loaded now, each with the load that last
    covered it (disjoint rows); :meth:`StateStore.loaded_intervals` merges them.
``partition_log``
    Every refresh of a partition's figures (row counts, min/max) and every removal of one
    (``present`` false), in order.
``partitions`` (view)
    The recorded partitions of each relation: the newest row of each key, if present.
``quality_results``
    One row per quality check outcome of a load.
``cdc_<table>_<hash>``
    One per target of the ``cdc`` strategy (its ledger), typed like the target's key and
    sequence: per key the sequence applied last and whether it was a delete (``scd1``),
    or the deletes as tombstones (``scd2``); rows with a null key record truncates.

A batch's writes to the shared tables only ever insert. Several models load at once
(dbt's threads, other processes on a DuckLake); on DuckLake a transaction that deletes from
a table another transaction has inserted into since it began fails to commit ("Transaction
conflict - attempting to delete from table ... but another transaction has inserted into
it"), so no batch deletes or updates a shared table: a change of state is a new row, and
reads take the newest. The few other writes (a model's phase times and the folding of its
old loads after its run, a restore) run in transactions of their own, retried on a
conflict. The logs grow by a row per batch (and per touched partition);
:meth:`StateStore.compact` rewrites them to their current rows when no other writer runs.
(A ``cdc`` ledger belongs to one target, which one run at a time writes.) The one
exception is the undo of loads on a DuckLake (``restore.py``): it removes the undone
loads' rows, and is retried when a concurrent insert makes it conflict. No constraints
or indexes. Columns added in later versions (:data:`_ADDED`) are added to existing tables
by :meth:`StateStore.ensure`; readers select rows as structs, so a table without them (a
read-only copy of an older state) still reads, with None for the missing columns. All
timestamps are naive UTC.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from dbt.adapters.sqlflow.intervals import Interval, clip, merge, overlay
from dbt.adapters.sqlflow.observe import PHASES
from dbt.adapters.sqlflow.sql import (
    UNBOUNDED_END,
    UNBOUNDED_START,
    Executor,
    RowInsert,
    quote_identifier,
    sql_literal,
    sql_string,
    utc_now,
)

DEFAULT_SCHEMA = "sqlflow_meta"
LOAD_STATUSES = ("success", "warn")
_CHUNK = 500

# One column per phase of a batch (observe.PHASES), in loads and in load_summaries.
_PHASE_COLUMNS = tuple(f"{phase}_seconds" for phase in PHASES)
_PHASE_DDL = ",\n        ".join(f"{column} double" for column in _PHASE_COLUMNS)

_DDL: dict[str, str] = {
    "loads": f"""
        load_id varchar not null,
        invocation_id varchar,
        model varchar not null,
        relation varchar not null,
        strategy varchar not null,
        window_start timestamp,
        window_end timestamp,
        started_at timestamp not null,
        finished_at timestamp not null,
        status varchar not null,
        rows_inserted bigint,
        rows_updated bigint,
        rows_deleted bigint,
        partitions_touched integer,
        watermark_before varchar,
        watermark_after varchar,
        {_PHASE_DDL},
        peak_memory_bytes bigint,
        spilled_bytes bigint,
        retries integer,
        retry_reasons varchar""",
    "load_summaries": f"""
        model varchar not null,
        relation varchar,
        summarized_at timestamp not null,
        first_started_at timestamp,
        last_finished_at timestamp,
        window_start timestamp,
        window_end timestamp,
        loads bigint not null,
        batches bigint,
        rows_inserted bigint,
        rows_updated bigint,
        rows_deleted bigint,
        batch_seconds double,
        median_batch_seconds double,
        median_batch_rows double,
        {_PHASE_DDL},
        max_peak_memory_bytes bigint,
        spilled_batches bigint,
        spilled_bytes bigint,
        retries bigint,
        out_of_memory_retries bigint""",
    "interval_log": """
        model varchar not null,
        relation varchar,
        interval_start timestamp not null,
        interval_end timestamp not null,
        load_id varchar,
        loaded_at timestamp,
        loaded boolean not null,
        recorded_at timestamp not null""",
    "partition_log": """
        relation varchar not null,
        partition_key varchar not null,
        range_start timestamp,
        range_end timestamp,
        row_count bigint not null,
        min_value varchar,
        max_value varchar,
        last_load_id varchar,
        last_loaded_at timestamp,
        present boolean not null,
        recorded_at timestamp not null""",
    "quality_results": """
        load_id varchar,
        model varchar not null,
        check_name varchar not null,
        severity varchar,
        status varchar,
        failing_rows bigint,
        sample varchar,
        checked_at timestamp not null""",
}


_ADDED: dict[str, tuple[tuple[str, str], ...]] = {
    "loads": (
        *((c, "double") for c in _PHASE_COLUMNS),
        ("peak_memory_bytes", "bigint"),
        ("spilled_bytes", "bigint"),
        ("retries", "integer"),
        ("retry_reasons", "varchar"),
    ),
}
"""Columns added after a table's first version: ``ensure`` adds them where missing."""
_INTERVAL_COLUMNS = ("model", "relation", "interval_start", "interval_end", "load_id", "loaded_at")

# The newest row of each partition key (of the relations `where` selects), if present: on a
# tie (two processes in the same microsecond) a refresh wins over a removal.
_CURRENT_PARTITIONS = """select * exclude (present, recorded_at) from (
    select * from {log}{where} qualify row_number() over (
        partition by relation, partition_key order by recorded_at desc, present desc) = 1
) where present"""

# The interval log laid out in SQL, as StateStore.interval_rows does it in Python: the
# instants between consecutive bounds of a model's rows are owned by the newest row
# covering them; runs of one row's adjacent pieces become one row; unmarked ones go.
_CURRENT_INTERVALS = """with events as (
    select *, row_number() over (partition by model order by recorded_at, loaded) as seq
    from {log}
), points as (
    select model, interval_start as t from {log} union select model, interval_end from {log}
), pieces as (
    select model, t as s, lead(t) over (partition by model order by t) as e from points
), owned as (
    select p.model, p.s, p.e, max(v.seq) as seq from pieces p join events v
    on v.model = p.model and v.interval_start <= p.s and v.interval_end >= p.e
    where p.e is not null group by all
), runs as (
    select *, sum(starts) over (partition by model order by s) as run from (
        select *, case when seq = lag(seq) over w and s = lag(e) over w then 0 else 1 end
        as starts from owned window w as (partition by model order by s))
)
select v.model, v.relation, min(r.s) as interval_start, max(r.e) as interval_end,
    v.load_id, v.loaded_at
from runs r join events v on v.model = r.model and v.seq = r.seq
where v.loaded
group by v.model, v.relation, r.run, v.seq, v.load_id, v.loaded_at"""

_VIEWS: dict[str, tuple[str, str]] = {
    "intervals": ("interval_log", _CURRENT_INTERVALS),
    "partitions": ("partition_log", _CURRENT_PARTITIONS),
}
"""Each view: the log it lays out, and how."""

_clock = threading.Lock()
_last_stamp = datetime.min


def _stamp() -> datetime:
    """Now (naive UTC), strictly later than any earlier stamp of this process: the order
    of a process's log rows, even two written in the same microsecond."""
    global _last_stamp
    with _clock:
        now = utc_now()
        _last_stamp = now if now > _last_stamp else _last_stamp + timedelta(microseconds=1)
        return _last_stamp


# One row of load_summaries from the loads rows being folded (``l``); a batch is a load
# that wrote rows, as ``tune`` counts them.
_WROTE = "(coalesce(rows_inserted, 0) + coalesce(rows_updated, 0) + coalesce(rows_deleted, 0))"
_SUMMARY_SELECT = f"""model, any_value(relation), {{now}}, min(started_at), max(finished_at),
    min(window_start), max(window_end), count(*), count(*) filter (where {_WROTE} > 0),
    sum(rows_inserted), sum(rows_updated), sum(rows_deleted),
    sum(epoch(finished_at - started_at)) filter (where {_WROTE} > 0),
    median(epoch(finished_at - started_at)) filter (where {_WROTE} > 0),
    median({_WROTE}) filter (where {_WROTE} > 0),
    {", ".join(f"sum({c})" for c in _PHASE_COLUMNS)},
    max(peak_memory_bytes), count(*) filter (where spilled_bytes > 0), sum(spilled_bytes),
    sum(retries), count(*) filter (where retry_reasons like '%out_of_memory%')"""

_PARTITION_COLUMNS = (
    "partition_key",
    "range_start",
    "range_end",
    "row_count",
    "min_value",
    "max_value",
    "last_load_id",
    "last_loaded_at",
)


@dataclass
class PartitionInfo:
    """One recorded partition of a table.

    Attributes:
        key: The partition key (see the module table; the value as VARCHAR for value
            partitions).
        range_start: Start of the partition's range (inclusive); None for value partitions.
        range_end: End of the partition's range (exclusive); None for value partitions.
        row_count: Rows in the partition at its last refresh.
        min_value: Smallest field value, as VARCHAR (naive UTC for TIMESTAMPTZ); None when
            empty.
        max_value: Largest field value, as VARCHAR; None when empty.
        last_load_id: The load that last touched the partition; None when detected from
            data.
        last_loaded_at: When that load ran (naive UTC).
    """

    key: str
    range_start: datetime | None = None
    range_end: datetime | None = None
    row_count: int = 0
    min_value: str | None = None
    max_value: str | None = None
    last_load_id: str | None = None
    last_loaded_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class LoadRow:
    """One committed load (one batch of one model execution), a row of ``loads``.

    Attributes:
        load_id: Unique id of the load (:meth:`StateStore.new_load_id`).
        invocation_id: dbt's invocation id of the run.
        model: The model's unique_id.
        relation: The rendered target relation.
        strategy: The strategy the batch ran with.
        window_start: Start of the batch's window (inclusive); None without windows.
        window_end: End of the batch's window (exclusive); None without windows.
        started_at: When the batch started (naive UTC).
        finished_at: When it finished (naive UTC).
        status: ``success``, or ``warn`` when a quality check warned.
        rows_inserted: Rows inserted.
        rows_updated: Rows updated.
        rows_deleted: Rows deleted.
        partitions_touched: Number of partitions written.
        watermark_before: Largest event time before the load, as text; None if unknown.
        watermark_after: Largest event time after the load, as text.
        plan_seconds: Seconds the batch spent choosing what to do (the run's plan counts
            in its first batch); None for an empty window or an older row.
        stage_seconds: Seconds writing the staged batch.
        dml_seconds: Seconds in the strategy's statements.
        checks_seconds: Seconds in quality checks.
        state_seconds: Seconds in sqlflow's state writes (written after the run's last
            commit: None when the run failed before its end).
        commit_seconds: Seconds in the batch's COMMIT (written as ``state_seconds``).
        peak_memory_bytes: The DuckDB instance's peak buffer memory over the batch's
            statements (DuckDB's ``system.peak_buffer_memory``); None when not measured.
        spilled_bytes: Bytes DuckDB wrote to its temporary directory during them (0: no
            spill; ``system.total_bytes_spilled``); None when not measured.
        retries: Transient failures the batch's transaction was retried after.
        retry_reasons: Their reasons (``retry.classify``), comma-separated, oldest first;
            None without retries.
    """

    load_id: str
    invocation_id: str | None
    model: str
    relation: str
    strategy: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    started_at: datetime
    finished_at: datetime
    status: str = "success"
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    partitions_touched: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None
    plan_seconds: float | None = None
    stage_seconds: float | None = None
    dml_seconds: float | None = None
    checks_seconds: float | None = None
    state_seconds: float | None = None
    commit_seconds: float | None = None
    peak_memory_bytes: int | None = None
    spilled_bytes: int | None = None
    retries: int | None = None
    retry_reasons: str | None = None


@dataclass(frozen=True)
class IntervalRow:
    """A row of ``intervals``: a range ``[start, end)`` and the load that last covered it."""

    interval: Interval
    relation: str | None
    load_id: str | None
    loaded_at: datetime | None


@dataclass(frozen=True)
class CheckResult:
    """A row of ``quality_results``."""

    load_id: str | None
    model: str
    check_name: str
    severity: str | None
    status: str | None
    failing_rows: int | None
    sample: str | None
    checked_at: datetime


_LOAD_COLUMNS = tuple(f.name for f in fields(LoadRow))
_LOG_PARTITION = ("relation", *_PARTITION_COLUMNS)
_CHECK_COLUMNS = tuple(f.name for f in fields(CheckResult))


def _field(outcome: Any, name: str, default: Any = None) -> Any:
    if isinstance(outcome, Mapping):
        return outcome.get(name, default)
    return getattr(outcome, name, default)


def _sample_text(sample: Any) -> str | None:
    if sample is None or isinstance(sample, str):
        return sample
    return json.dumps(sample, default=str)


class StateStore:
    """Reads and writes sqlflow's state tables through an executor.

    Args:
        executor: Runs one SQL statement and returns its rows. In production it runs on
            dbt's connection inside the model's open transaction.
        schema: Schema of the state tables (profile key ``sqlflow_state_schema``).
        database: Catalog of the schema; None for the connection's current database.
        version: A DuckLake snapshot id: the store reads the state as it was then
            (``AT (VERSION => n)``) and cannot write. None: the current state.
    """

    TABLES: tuple[str, ...] = tuple(_DDL)
    VIEWS: tuple[str, ...] = tuple(_VIEWS)

    def __init__(
        self,
        executor: Executor,
        schema: str = DEFAULT_SCHEMA,
        *,
        database: str | None = None,
        version: int | None = None,
    ) -> None:
        self.executor = executor
        self.schema = schema
        self.database = database
        self.version = version

    # -- plumbing ----------------------------------------------------------------------

    def table(self, name: str) -> str:
        """The quoted name of one state table (e.g. ``"sqlflow_meta"."loads"``), read at
        the store's snapshot when it has one."""
        prefix = f"{quote_identifier(self.database)}." if self.database else ""
        return f"{prefix}{quote_identifier(self.schema)}.{quote_identifier(name)}{self._at()}"

    def _aliased(self, name: str, alias: str) -> str:
        """A state table with an alias, as a FROM clause (the alias goes before AT)."""
        table = self.table(name).removesuffix(self._at())
        return f"{table} as {quote_identifier(alias)}{self._at()}"

    def _at(self) -> str:
        return f" at (version => {int(self.version)})" if self.version is not None else ""

    def as_of(self, version: int) -> StateStore:
        """A read-only store of the state as it was at DuckLake snapshot ``version``."""
        return StateStore(self.executor, self.schema, database=self.database, version=version)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        types = _TYPES[table]
        held = getattr(self.executor, "insert_rows", None)
        if held is not None:
            # Held back and written with the table's other rows (as JSON when many).
            held(self.table(table), columns, [types[c] for c in columns], rows)
            return
        self.executor(
            RowInsert(
                self.table(table), tuple(columns), tuple(types[c] for c in columns), list(rows)
            ).sql()
        )

    def ensure(self) -> bool:
        """Create the schema, tables and views that do not exist yet, and add the columns
        of :data:`_ADDED` that an existing table (from an older version) lacks.

        One catalog query when everything exists. Run it once before models run in
        parallel: two transactions creating the same table conflict in DuckDB. State
        written by an older sqlflow (``intervals`` and ``partitions`` as tables) is moved
        into the logs, and the tables replaced by the views.

        Returns:
            True when something was created or added.
        """
        catalog = sql_string(self.database) if self.database else "current_database()"
        names = ", ".join(sql_string(t) for t in (*self.TABLES, *_VIEWS))
        rows = self.executor(
            "select t.table_name, t.table_type, c.column_name from information_schema.tables t"
            " join information_schema.columns c on c.table_catalog = t.table_catalog"
            " and c.table_schema = t.table_schema and c.table_name = t.table_name"
            f" where t.table_catalog = {catalog} and t.table_schema = {sql_string(self.schema)}"
            f" and t.table_name in ({names})"
        )
        kinds: dict[str, str] = {}
        present: dict[str, set[str]] = {}
        for table, kind, column in rows:
            kinds[str(table)] = str(kind)
            present.setdefault(str(table), set()).add(str(column))
        missing = [
            (table, column, kind)
            for table, added in _ADDED.items()
            if table in present
            for column, kind in added
            if column not in present[table]
        ]
        views_ok = all(kinds.get(v) == "VIEW" for v in _VIEWS)
        if set(kinds) >= set(self.TABLES) and views_ok and not missing:
            return False
        prefix = f"{quote_identifier(self.database)}." if self.database else ""
        self.executor(f"create schema if not exists {prefix}{quote_identifier(self.schema)}")
        for name, columns in _DDL.items():
            if name not in kinds:
                self.executor(f"create table if not exists {self.table(name)} ({columns}\n)")
        for table, column, kind in missing:
            self.executor(
                f"alter table {self.table(table)} add column if not exists"
                f" {quote_identifier(column)} {kind}"
            )
        for view, (log, _) in _VIEWS.items():
            if kinds.get(view) not in (None, "VIEW"):
                self._migrate(view, log)
            if kinds.get(view) != "VIEW":
                self.executor(f"create view {self.table(view)} as {self._current(view)}")
        return True

    def _current(self, view: str, where: str = "") -> str:
        """The SQL of a view's rows (of the log rows ``where`` selects)."""
        log, sql = _VIEWS[view]
        return sql.format(log=self.table(log), where=where)

    def _migrate(self, table: str, log: str) -> None:
        """Move an older sqlflow's ``intervals`` or ``partitions`` table into its log."""
        columns = ", ".join(_INTERVAL_COLUMNS if table == "intervals" else _LOG_PARTITION)
        flag = "loaded" if table == "intervals" else "present"
        self.executor(
            f"insert into {self.table(log)} ({columns}, {flag}, recorded_at)"
            f" select {columns}, true, {sql_literal(_stamp())} from {self.table(table)}"
        )
        self.executor(f"drop table {self.table(table)}")

    def compact(self) -> int:
        """Rewrite the logs to their current rows (what the views show); returns the rows
        removed.

        Deletes from the logs: run it only while no other transaction writes sqlflow's
        state (on DuckLake a concurrent load makes this commit fail, which changes
        nothing; try again later).
        """
        removed = 0
        for view, (log, _) in _VIEWS.items():
            flag = "loaded" if view == "intervals" else "present"
            before, cleared = self.executor(
                f"select count(*), count(*) filter (where not {flag}) from {self.table(log)}"
            )[0]
            current = int(self.executor(f"select count(*) from {self.table(view)}")[0][0])
            if int(before) == current and not cleared:
                continue
            stamp = sql_literal(_stamp())
            self.executor(
                f"create temporary table sqlflow_compacted as select * from {self.table(view)}"
            )
            self.executor(f"delete from {self.table(log)}")
            columns = _INTERVAL_COLUMNS if view == "intervals" else _LOG_PARTITION
            names = ", ".join(columns)
            self.executor(
                f"insert into {self.table(log)} ({names}, {flag}, recorded_at)"
                f" select {names}, true, {stamp} from sqlflow_compacted"
            )
            self.executor("drop table sqlflow_compacted")
            removed += int(before) - current
        return removed

    @staticmethod
    def new_load_id() -> str:
        """A new load id: 32 hex digits (uuid4)."""
        return uuid.uuid4().hex

    # -- loads ---------------------------------------------------------------------------

    def record_load(self, load: LoadRow) -> None:
        """Insert one row into ``loads``.

        Raises:
            ValueError: When ``load.status`` is not ``success`` or ``warn``.
        """
        if load.status not in LOAD_STATUSES:
            raise ValueError(
                f"load {load.load_id} of {load.model} has status {load.status!r}: a recorded "
                f"load is one of {', '.join(LOAD_STATUSES)} (failed loads are rolled back)"
            )
        self._insert("loads", _LOAD_COLUMNS, [[getattr(load, c) for c in _LOAD_COLUMNS]])

    def loads(self, model: str | None = None, *, invocation_id: str | None = None) -> list[LoadRow]:
        """Recorded loads, oldest first, optionally of one model and/or one invocation."""
        where = []
        if model is not None:
            where.append(f"model = {sql_string(model)}")
        if invocation_id is not None:
            where.append(f"invocation_id = {sql_string(invocation_id)}")
        clause = f" where {' and '.join(where)}" if where else ""
        rows = self.executor(
            f"select load_row from {self._aliased('loads', 'load_row')}{clause}"
            " order by started_at, window_start nulls first, finished_at, load_id"
        )
        return [_load_row(r[0]) for r in rows]

    def load_model(self, load_id: str) -> str | None:
        """The model of a recorded load, or None when ``loads`` has no such load."""
        rows = self.executor(
            f"select model from {self.table('loads')} where load_id = {sql_string(load_id)}"
        )
        return str(rows[0][0]) if rows else None

    def load_ids(self, model: str) -> list[str]:
        """The ids of the model's recorded loads, in load order."""
        return [load.load_id for load in self.loads(model)]

    def remove_loads(self, model: str, load_ids: Sequence[str]) -> None:
        """Delete the model's given loads and their quality results (an undo of them).

        The one delete from shared state tables: on DuckLake it conflicts with another
        writer's insert since the transaction began; the caller retries.
        """
        for i in range(0, len(load_ids), _CHUNK):
            ids = ", ".join(sql_string(x) for x in load_ids[i : i + _CHUNK])
            for table in ("loads", "quality_results"):
                self.executor(
                    f"delete from {self.table(table)}"
                    f" where model = {sql_string(model)} and load_id in ({ids})"
                )

    def copy_loads(self, source: StateStore, model: str, load_ids: Sequence[str]) -> None:
        """Insert the model's given loads and their quality results as ``source`` (the
        state at an earlier snapshot) holds them, by column name (columns added since are
        null)."""
        for i in range(0, len(load_ids), _CHUNK):
            ids = ", ".join(sql_string(x) for x in load_ids[i : i + _CHUNK])
            for table in ("loads", "quality_results"):
                self.executor(
                    f"insert into {self.table(table)} by name select * from"
                    f" {source.table(table)} where model = {sql_string(model)}"
                    f" and load_id in ({ids})"
                )

    def last_load(self, model: str) -> LoadRow | None:
        """The model's most recently finished load, or None."""
        rows = self.executor(
            f"select load_row from {self._aliased('loads', 'load_row')}"
            f" where model = {sql_string(model)}"
            " order by finished_at desc, started_at desc, window_end desc nulls last limit 1"
        )
        return _load_row(rows[0][0]) if rows else None

    def compact_loads(self, model: str, keep: int, *, slack: int = 0, now: datetime) -> int:
        """Fold the model's loads older than its ``keep`` newest into one row of
        ``load_summaries``, when it has more than ``keep + slack`` (the slack spares a
        compaction per run once the history is full).

        Newest by ``finished_at`` (then ``load_id``). One count when there is nothing to
        fold; else an INSERT of the summary and a DELETE of the folded rows, in the
        caller's transaction.

        Returns:
            How many loads were folded (0: none).
        """
        loads = self.table("loads")
        where = f"model = {sql_string(model)}"
        found = self.executor(f"select count(*) from {loads} where {where}")
        if int(found[0][0]) <= keep + slack:
            return 0
        older = (
            f"select * from {loads} where {where}"
            f" qualify row_number() over (order by finished_at desc, load_id desc) > {int(keep)}"
        )
        columns = ", ".join(_column_names(_DDL["load_summaries"]))
        self.executor(
            f"insert into {self.table('load_summaries')} ({columns})"
            f" select {_SUMMARY_SELECT.format(now=sql_literal(now))} from ({older}) group by model"
        )
        self.executor(
            f"delete from {loads} where {where} and load_id in (select load_id from ({older}))"
        )
        return int(found[0][0]) - keep

    def load_summaries(self, model: str) -> list[dict[str, Any]]:
        """The model's summaries of folded loads, oldest first, as column -> value."""
        names = _column_names(_DDL["load_summaries"])
        rows = self.executor(
            f"select {', '.join(names)} from {self.table('load_summaries')}"
            f" where model = {sql_string(model)} order by first_started_at, summarized_at"
        )
        return [dict(zip(names, r, strict=True)) for r in rows]

    def record_phase_times(
        self, times: Mapping[str, tuple[float | None, float | None]], *, since: datetime
    ) -> None:
        """Set ``state_seconds`` and ``commit_seconds`` of recorded loads.

        Args:
            times: ``(state, commit)`` seconds by load id.
            since: The earliest ``started_at`` of those loads (prunes the scan).
        """
        if not times:
            return
        values = ", ".join(
            f"({sql_string(load_id)}, {sql_literal(state)}::double, {sql_literal(commit)}::double)"
            for load_id, (state, commit) in times.items()
        )
        self.executor(
            f"update {self.table('loads')} as l set state_seconds = t.state_seconds,"
            " commit_seconds = t.commit_seconds"
            f" from (values {values}) as t(load_id, state_seconds, commit_seconds)"
            f" where l.started_at >= {sql_literal(since)} and l.load_id = t.load_id"
        )

    def first_window_start(self, model: str) -> datetime | None:
        """The earliest window start (inclusive) of any recorded load of the model."""
        rows = self.executor(
            f"select min(window_start) from {self.table('loads')} where model = {sql_string(model)}"
        )
        return rows[0][0] if rows else None

    # -- intervals ----------------------------------------------------------------------

    def add_interval(
        self,
        model: str,
        relation: str,
        interval: Interval,
        load_id: str | None,
        *,
        loaded_at: datetime | None = None,
        replace: bool = True,
    ) -> None:
        """Record ``[start, end)`` as loaded for ``model`` by ``load_id``.

        The model's rows stay disjoint as read: rows the new interval overlaps keep only
        their parts outside it (each keeping its load), so each instant maps to the load
        that last covered it. One INSERT, no read. ``replace`` is kept for callers that
        know the range overlaps nothing recorded; the log needs no cut either way.
        """
        del replace
        self._log_interval(model, relation, interval, load_id, loaded_at or utc_now(), True)

    def _log_interval(
        self,
        model: str,
        relation: str | None,
        interval: Interval,
        load_id: str | None,
        loaded_at: datetime | None,
        loaded: bool,
    ) -> None:
        row = [model, relation, interval.start, interval.end, load_id, loaded_at]
        self._insert(
            "interval_log",
            (*_INTERVAL_COLUMNS, "loaded", "recorded_at"),
            [[*row, loaded, _stamp()]],
        )

    def write_intervals(
        self, model: str, changes: Sequence[tuple[Interval, IntervalRow | None]]
    ) -> None:
        """Lay ranges of the model's intervals over the current ones, in one INSERT: each
        range gets the row's relation, load and time, or is unmarked (None).

        For an undo of loads: ``changes`` as ``intervals.differences`` returns them.
        """
        rows = []
        for piece, row in changes:
            if row is None:
                rows.append([model, None, piece.start, piece.end, None, None, False, _stamp()])
            else:
                payload = [row.relation, piece.start, piece.end, row.load_id, row.loaded_at]
                rows.append([model, *payload, True, _stamp()])
        if rows:
            self._insert("interval_log", (*_INTERVAL_COLUMNS, "loaded", "recorded_at"), rows)

    def interval_rows(self, model: str) -> list[IntervalRow]:
        """The model's loaded interval rows (disjoint, with their loads), in time order."""
        rows = self.executor(
            "select interval_start, interval_end, relation, load_id, loaded_at, loaded"
            f" from {self.table('interval_log')} where model = {sql_string(model)}"
            " order by recorded_at, loaded"
        )
        layers = [
            (Interval(s, e), (rel, lid, at) if ok else None) for s, e, rel, lid, at, ok in rows
        ]
        return [IntervalRow(piece, *payload) for piece, payload in overlay(layers)]

    def models_with_intervals(self, relation: str) -> list[str]:
        """The models with loaded intervals recorded for ``relation``, sorted."""
        rows = self.executor(
            f"select distinct model from {self.table('interval_log')}"
            f" where relation = {sql_string(relation)} order by model"
        )
        models = [str(r[0]) for r in rows]
        return [m for m in models if any(r.relation == relation for r in self.interval_rows(m))]

    def loaded_intervals(self, model: str) -> list[Interval]:
        """The model's loaded time, merged: sorted, disjoint ``[start, end)`` intervals."""
        return merge(r.interval for r in self.interval_rows(model))

    def invalidate(self, model: str, interval: Interval) -> list[Interval]:
        """Mark ``[start, end)`` as not loaded for ``model`` (the next run reloads it).

        Stored rows overlapping the range are cut; the parts outside it keep their load.

        Returns:
            The parts of the range that were loaded (merged), i.e. what was unmarked.
        """
        loaded = clip((r.interval for r in self.interval_rows(model)), interval)
        if loaded:
            self._log_interval(model, None, interval, None, None, False)
        return loaded

    # -- partitions ---------------------------------------------------------------------

    def partitions(
        self, relation: str, *, keys: Sequence[str] | None = None
    ) -> list[PartitionInfo]:
        """Recorded partitions of ``relation`` (only ``keys`` when given), in key order."""
        clause = f" where relation = {sql_string(relation)}"
        if keys is not None:
            if not keys:
                return []
            clause += f" and partition_key in ({', '.join(sql_string(k) for k in keys)})"
        rows = self.executor(
            f"select {', '.join(_PARTITION_COLUMNS)} from ({self._current('partitions', clause)})"
            " order by range_start nulls first, partition_key"
        )
        return [
            PartitionInfo(
                key=r[0],
                range_start=r[1],
                range_end=r[2],
                row_count=int(r[3]),
                min_value=r[4],
                max_value=r[5],
                last_load_id=r[6],
                last_loaded_at=r[7],
            )
            for r in rows
        ]

    def upsert_partitions(
        self, relation: str, infos: Iterable[PartitionInfo], *, new_keys: Iterable[str] = ()
    ) -> None:
        """Record partitions of ``relation``; they replace the rows with the same keys.

        One INSERT (``new_keys``, the keys the caller knows are new, needs no special
        handling: kept for callers).
        """
        del new_keys
        infos = list({p.key: p for p in infos}.values())
        if not infos:
            return
        stamp = _stamp()
        self._insert(
            "partition_log",
            (*_LOG_PARTITION, "present", "recorded_at"),
            [
                [relation, *(getattr(p, _attr(c)) for c in _PARTITION_COLUMNS), True, stamp]
                for p in infos
            ],
        )

    def delete_partitions(self, relation: str, keys: Iterable[str]) -> None:
        """Forget the given partitions of ``relation`` (unknown keys are ignored)."""
        stamp = _stamp()
        rows = [[relation, key, 0, False, stamp] for key in dict.fromkeys(keys)]
        if rows:
            self._insert(
                "partition_log",
                ("relation", "partition_key", "row_count", "present", "recorded_at"),
                rows,
            )

    # -- quality ------------------------------------------------------------------------

    def record_checks(
        self,
        load_id: str | None,
        model: str,
        outcomes: Iterable[Any],
        *,
        checked_at: datetime | None = None,
    ) -> int:
        """Record quality check outcomes of a load; return how many were written.

        Each outcome is an object or a mapping with ``check_name``, ``severity``,
        ``status``, ``failing_rows`` and ``sample`` (text, or anything JSON-serialisable,
        stored as JSON).

        Raises:
            ValueError: When an outcome has no ``check_name``.
        """
        stamp = checked_at or utc_now()
        rows = []
        for outcome in outcomes:
            name = _field(outcome, "check_name")
            if not name:
                raise ValueError(
                    f"quality outcome {outcome!r} of {model} has no check_name: give each "
                    "outcome check_name, severity, status, failing_rows and sample"
                )
            failing = _field(outcome, "failing_rows")
            rows.append(
                [
                    load_id,
                    model,
                    str(name),
                    _field(outcome, "severity"),
                    _field(outcome, "status"),
                    None if failing is None else int(failing),
                    _sample_text(_field(outcome, "sample")),
                    stamp,
                ]
            )
        if rows:
            self._insert("quality_results", _CHECK_COLUMNS, rows)
        return len(rows)

    def check_results(
        self, *, model: str | None = None, load_id: str | None = None
    ) -> list[CheckResult]:
        """Recorded check outcomes, oldest first, optionally of one model and/or load."""
        where = []
        if model is not None:
            where.append(f"model = {sql_string(model)}")
        if load_id is not None:
            where.append(f"load_id = {sql_string(load_id)}")
        clause = f" where {' and '.join(where)}" if where else ""
        rows = self.executor(
            f"select {', '.join(_CHECK_COLUMNS)} from {self.table('quality_results')}{clause}"
            " order by checked_at, check_name"
        )
        return [CheckResult(*r) for r in rows]

    # -- catalog ----------------------------------------------------------------------

    def catalog_stats(self) -> list[tuple[str, int | None, int | None, Any, Any]]:
        """Per relation with a recorded load: ``(relation, partitions, rows in them,
        last load's finish time, newest watermark)``; ``[]`` before any state exists.

        For ``dbt docs generate``: one catalog query, then one GROUP BY each of
        ``loads`` and ``partitions``.
        """
        catalog = sql_string(self.database) if self.database else "current_database()"
        present = self.executor(
            "select count(*) from duckdb_tables() where database_name = "
            f"{catalog} and schema_name = {sql_string(self.schema)}"
            " and table_name in ('partition_log', 'loads')"
        )
        if int(present[0][0]) < 2:
            return []
        return [
            tuple(r)  # type: ignore[misc]
            for r in self.executor(
                "select l.relation, p.partitions, p.total_rows, l.last_load, l.watermark"
                " from (select relation, max(finished_at) as last_load,"
                f" max(watermark_after) as watermark from {self.table('loads')} group by 1) l"
                " left join (select relation, count(*) as partitions, sum(row_count) as"
                f" total_rows from ({self._current('partitions')}) group by 1) p"
                " using (relation)"
            )
        ]

    # -- cdc ledgers --------------------------------------------------------------------

    def create_cdc_ledger(
        self, ledger: str, keys: Sequence[str], feed_sql: str, *, replace: bool
    ) -> bool:
        """Create the ledger of a cdc target (``replace``: anew, empty, for a rebuilt table).

        Args:
            ledger: The ledger's quoted name (:meth:`table` of ``cdc.ledger_table_name``).
            keys: The quoted key columns.
            feed_sql: A SELECT of the model's normalised change events (``sqlflow_seq``
                among its columns): only its types are read.
            replace: Drop an existing ledger.

        Returns:
            True when the ledger did not exist before.
        """
        found = self.executor(
            f"select count(*) from duckdb_tables() where {self._names_match(ledger)}"
        )
        existed = bool(found and int(found[0][0]))
        if existed and not replace:
            return False
        key_list = ", ".join(keys)
        self.executor(
            f"create or replace table {ledger} as select {key_list}, sqlflow_seq,"
            " cast('upsert' as varchar) as sqlflow_op,"
            " cast(null as timestamp) as sqlflow_changed_at"
            f" from ({feed_sql}\n) as sqlflow_feed limit 0"
        )
        return not existed

    def _names_match(self, ledger: str) -> str:
        name = ledger.rsplit(".", 1)[-1].strip('"').replace('""', '"')
        catalog = sql_string(self.database) if self.database else "current_database()"
        return (
            f"database_name = {catalog} and schema_name = {sql_string(self.schema)}"
            f" and table_name = {sql_string(name)}"
        )

    def record_cdc_batch(
        self,
        ledger: str,
        *,
        keys: Sequence[str],
        stage: str,
        changes: str,
        events: str,
        stored_as: str,
        now: datetime,
        retention: timedelta,
        valid_from: str = '"dbt_valid_from"',
    ) -> None:
        """Update a cdc ledger after a batch was applied, in the batch's transaction.

        ``scd1``: each key of ``changes`` (a row per key with ``sqlflow_last_seq``,
        ``sqlflow_last_op`` and ``sqlflow_action``) gets its applied sequence. ``scd2``:
        each delete of the batch (``stage``) becomes a tombstone, and each upsert a
        version takes in place (``events``: every event of the keys the batch touched,
        the batch's and the known ones; ``changes`` holds the versions, starting at the
        quoted column ``valid_from``) is remembered: also a known one whose version a
        late event of the batch merged into an earlier one. Then the batch's
        truncates are recorded (``scd1``: the latest, forgetting every key applied before
        it), and tombstones older than ``retention`` are removed.
        """
        key_list = ", ".join(keys)
        join = " and ".join(f"l.{k} = c.{k}" for k in keys)
        stamp = sql_literal(now)
        columns = f"{key_list}, sqlflow_seq, sqlflow_op, sqlflow_changed_at"
        if stored_as == "scd1":
            self.executor(
                f"delete from {ledger} as l using {changes} as c where {join}"
                " and l.sqlflow_op <> 'truncate' and c.sqlflow_action <> 'none'"
            )
            self.executor(
                f"insert into {ledger} ({columns}) select {key_list}, sqlflow_last_seq,"
                f" sqlflow_last_op, {stamp} from {changes} where sqlflow_action <> 'none'"
            )
            # Without a truncate in the batch there is nothing to record or forget: every
            # key it applied is newer than the last truncate (older events are stale).
            truncates = self.executor(f"select count(*) from {stage} where sqlflow_op = 'truncate'")
            if truncates and truncates[0][0]:
                self.executor(
                    f"insert into {ledger} (sqlflow_seq, sqlflow_op, sqlflow_changed_at)"
                    f" select max(sqlflow_seq), 'truncate', {stamp} from {stage}"
                    " where sqlflow_op = 'truncate'"
                )
                self.executor(
                    f"delete from {ledger} where sqlflow_seq < (select max(sqlflow_seq)"
                    f" from {ledger} where sqlflow_op = 'truncate')"
                )
        else:
            self.executor(
                f"insert into {ledger} ({columns}) select distinct {key_list}, sqlflow_seq,"
                f" sqlflow_op, {stamp} from {stage} as c where sqlflow_op = 'delete' and not"
                f" exists (select 1 from {ledger} as l where {join}"
                " and l.sqlflow_seq = c.sqlflow_seq)"
            )
            # The upserts a version took in place: without them a late delete or truncate
            # between two of them could not split the version where it must. Not only the
            # batch's: a late upsert can merge a known version into the one before it.
            self.executor(
                f"insert into {ledger} ({columns}) select distinct {key_list}, sqlflow_seq,"
                f" sqlflow_op, {stamp} from {events} as c where sqlflow_op = 'upsert'"
                " and not sqlflow_ignored"
                f" and not exists (select 1 from {changes} as l where {join}"
                f" and l.{valid_from} = c.sqlflow_seq"
                " and l.sqlflow_action <> 'delete')"
                f" and not exists (select 1 from {ledger} as l where {join}"
                " and l.sqlflow_seq = c.sqlflow_seq)"
            )
            self.executor(
                f"insert into {ledger} (sqlflow_seq, sqlflow_op, sqlflow_changed_at)"
                f" select distinct sqlflow_seq, 'truncate', {stamp} from {stage} as c"
                " where sqlflow_op = 'truncate' and not exists (select 1 from"
                f" {ledger} as l where l.sqlflow_op = 'truncate'"
                " and l.sqlflow_seq = c.sqlflow_seq)"
            )
        seconds = int(retention.total_seconds())
        # scd1's upserts are the applied sequences of live keys: kept while the key lives.
        expiring = "'delete'" if stored_as == "scd1" else "'delete', 'upsert'"
        self.executor(
            f"delete from {ledger} where sqlflow_op in ({expiring})"
            f" and sqlflow_changed_at < {stamp} - interval '{seconds} seconds'"
        )

    def drop_cdc_ledger(self, ledger: str) -> None:
        """Drop a cdc target's ledger, if it exists."""
        self.executor(f"drop table if exists {ledger}")

    # -- full refresh -------------------------------------------------------------------

    def forget_model(self, model: str, relation: str) -> None:
        """Unmark the model's loaded intervals, its relation's intervals (under any model
        name, e.g. before a rename) and forget its relation's partitions.

        For ``--full-refresh``: the table is rebuilt, so what was recorded about it no
        longer holds. Loads and quality results stay, as history.
        """
        everything = Interval(UNBOUNDED_START, UNBOUNDED_END)
        models = dict.fromkeys([model, *self.models_with_intervals(relation)])
        for name in models:
            if name != model or self.interval_rows(model):
                self._log_interval(name, relation, everything, None, None, False)
        self.delete_partitions(relation, [p.key for p in self.partitions(relation)])


def _load_row(row: Mapping[str, Any]) -> LoadRow:
    """A ``loads`` row read as a struct; columns the table lacks (older state) are None."""
    values: dict[str, Any] = {c: row.get(c) for c in _LOAD_COLUMNS}
    return LoadRow(**values)


def _column_names(ddl: str) -> list[str]:
    """The column names of one of :data:`_DDL`'s column lists."""
    return [line.split()[0] for line in ddl.strip().split(",\n")]


def _column_types(ddl: str) -> dict[str, str]:
    """The DuckDB type of each column of one of :data:`_DDL`'s column lists."""
    return {
        parts[0]: parts[1].upper() for parts in (line.split() for line in ddl.strip().split(",\n"))
    }


_TYPES = {table: _column_types(ddl) for table, ddl in _DDL.items()}
"""Each state table's column types (the JSON shape of its held rows)."""


def _attr(column: str) -> str:
    return "key" if column == "partition_key" else column
