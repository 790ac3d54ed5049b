"""Undo of committed loads on a DuckLake: a model's table, and sqlflow's intervals,
partitions and loads for it, put back as they were at an earlier snapshot.

DuckLake keeps every committed snapshot (until ``ducklake_expire_snapshots`` removes it)
and reads any of them (``AT (VERSION => n)``). A load commits its rows and its ``loads``
row in one transaction, so the snapshot in which a load committed is the first one whose
``loads`` holds the row (found by binary search over the lake's snapshots: the row is
there from then on), and "before the load" is the snapshot just before that one. With
``--at TIMESTAMP`` it is the last snapshot committed at or before that time.

:func:`restore` then writes, in one transaction (one new snapshot; history is kept, the
undone loads stay readable by time travel until their snapshots expire):

- the table, rewritten from that snapshot: staged in a temporary table first (DuckLake
  1.5.5 reads no inlined rows of an older version once the same transaction deleted from
  the table), then deleted and inserted, so the table keeps its identity, partitioning
  and sort order;
- a cdc target's ledger, likewise;
- the model's intervals and its table's partitions, laid back by appending log rows
  only where they differ (state writes only insert: see ``state.py``);
- the model's loads committed since, and their quality results, removed; loads that
  existed then and not now (a restore to before an earlier restore) copied back.

A load of another model committed in the same snapshot is not touched: only this model's
table and state are written. The deletes from ``loads`` and ``quality_results`` conflict
on DuckLake with another writer's insert since the transaction began (conflicts are
checked per table): :func:`restore_with_retries` tries the whole transaction again under
the profile's ``sqlflow_retry``. The caller holds the model's claim (``claims.py``), so no
run of the model writes meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.cdc import ledger_table_name
from dbt.adapters.sqlflow.intervals import Interval, differences, to_utc_naive
from dbt.adapters.sqlflow.retry import RetrySettings, first_line, is_transient, retrying
from dbt.adapters.sqlflow.sql import quote_identifier, sql_string
from dbt.adapters.sqlflow.state import IntervalRow, PartitionInfo, StateStore

STAGE = "sqlflow_restore_stage"
"""The temporary table the old version of a table is staged in."""


class Session(Protocol):
    """dbt's connection as a restore uses it."""

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL in the open transaction (BEGIN first if none is open)."""

    def commit(self) -> None:
        """Commit the open transaction."""

    def rollback(self) -> None:
        """Roll back the open transaction."""


@dataclass(frozen=True)
class Target:
    """The model whose loads are undone.

    Attributes:
        model: Its unique_id.
        relation: Its table, rendered (``"lake"."main"."orders"``).
        database: The lake (the table's catalog, DuckLake's attachment alias).
        schema: The table's schema.
        identifier: The table's name.
    """

    model: str
    relation: str
    database: str
    schema: str
    identifier: str

    @property
    def name(self) -> str:
        """The model's name (the last part of its unique_id), for the fixes."""
        return self.model.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Snapshot:
    """One DuckLake snapshot: its id and commit time (naive UTC)."""

    id: int
    time: datetime


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did.

    Attributes:
        target: The model and its table.
        point: The snapshot the model was put back to.
        snapshot: The snapshot the restore committed; None when there was nothing to undo.
        undone: The loads removed (ids), in load order.
        redone: The loads copied back (they existed at ``point``, not before the restore).
        rows_before: The table's rows before the restore.
        rows_after: Its rows after.
        intervals: The interval ranges written: ``(range, True)`` marked loaded again,
            ``(range, False)`` unmarked.
        partitions_removed: Partition keys forgotten.
        partitions_restored: Partition keys whose figures were put back.
    """

    target: Target
    point: Snapshot
    snapshot: int | None = None
    undone: tuple[str, ...] = ()
    redone: tuple[str, ...] = ()
    rows_before: int = 0
    rows_after: int = 0
    intervals: tuple[tuple[Interval, bool], ...] = ()
    partitions_removed: tuple[str, ...] = ()
    partitions_restored: tuple[str, ...] = field(default=())

    def text(self) -> str:
        """The report as log lines."""
        where = f"snapshot {self.point.id} ({self.point.time.isoformat(sep=' ')} UTC)"
        if self.snapshot is None:
            return (
                f"sqlflow restore of {self.target.model}: nothing to undo; no load of it"
                f" committed after {where}"
            )
        lines = [
            f"sqlflow restore of {self.target.model}: {self.target.relation} is as it was at"
            f" {where}, committed as snapshot {self.snapshot}",
            f"  rows: {self.rows_before} -> {self.rows_after}",
            f"  loads undone: {len(self.undone)} ({', '.join(self.undone) or '-'})",
        ]
        if self.redone:
            lines.append(f"  loads brought back: {len(self.redone)} ({', '.join(self.redone)})")
        unmarked = [f"[{r.start}, {r.end})" for r, marked in self.intervals if not marked]
        marked = [f"[{r.start}, {r.end})" for r, marked in self.intervals if marked]
        if unmarked:
            lines.append(f"  unloaded again (the next run loads them): {', '.join(unmarked)}")
        if marked:
            lines.append(f"  loaded again by their earlier loads: {', '.join(marked)}")
        if self.partitions_removed or self.partitions_restored:
            lines.append(
                f"  partitions: {len(self.partitions_restored)} put back,"
                f" {len(self.partitions_removed)} forgotten"
            )
        return "\n".join(lines)


# -- pure parts ----------------------------------------------------------------------------


def first_present(ids: Sequence[int], present: Callable[[int], bool]) -> int | None:
    """The first of ``ids`` (ascending) for which ``present`` holds, by binary search:
    ``present`` is false up to some id and true from it on. None when it holds for none
    (it is asked about the last id first)."""
    if not ids or not present(ids[-1]):
        return None
    low, high = 0, len(ids) - 1
    while low < high:
        middle = (low + high) // 2
        if present(ids[middle]):
            high = middle
        else:
            low = middle + 1
    return ids[low]


def snapshot_at(snapshots: Sequence[Snapshot], at: datetime) -> Snapshot | None:
    """The last snapshot committed at or before ``at`` (naive UTC); None when every kept
    snapshot is later."""
    found = [s for s in snapshots if s.time <= at]
    return found[-1] if found else None


def partition_changes(
    now: Sequence[PartitionInfo], then: Sequence[PartitionInfo]
) -> tuple[list[str], list[PartitionInfo]]:
    """What makes the recorded partitions ``now`` what they were ``then``: the keys to
    forget (recorded now, not then) and the partitions to record again (as they were
    then, where they differ now)."""
    current = {p.key: p for p in now}
    earlier = {p.key: p for p in then}
    removed = [key for key in current if key not in earlier]
    restored = [p for key, p in earlier.items() if current.get(key) != p]
    return removed, restored


def interval_changes(
    now: Sequence[IntervalRow], then: Sequence[IntervalRow]
) -> list[tuple[Interval, IntervalRow | None]]:
    """The interval ranges to write so the model's intervals are what they were: each
    range with the row that covered it then (its load, relation, time), or None where
    nothing did (unmark it)."""

    def layout(rows: Sequence[IntervalRow]) -> list[tuple[Interval, Any]]:
        return [(r.interval, (r.relation, r.load_id, r.loaded_at)) for r in rows]

    rows = {(r.relation, r.load_id, r.loaded_at): r for r in then}
    return [
        (piece, None if payload is None else rows[payload])
        for piece, payload in differences(layout(now), layout(then))
    ]


def _fail(target: Target, problem: str, fix: str) -> DbtRuntimeError:
    return DbtRuntimeError(f"sqlflow restore of {target.model}: {problem}. Fix: {fix}")


def needs_ducklake(model: str, relation: str) -> DbtRuntimeError:
    """The error of a restore on a database that is not a DuckLake."""
    name = model.rsplit(".", 1)[-1]
    return DbtRuntimeError(
        f"sqlflow restore of {model}: undoing a load needs DuckLake's snapshots, and"
        f" {relation} is in a plain DuckDB database, which keeps no earlier versions. Fix:"
        " put the model in a DuckLake (README, DuckLake: attach it and make it the target"
        f" database); on this database, run `dbt run --full-refresh -s {name}` to rebuild it"
        " or `dbt run-operation sqlflow_invalidate` to reload a range"
    )


def loads_query(target: Target, store: StateStore) -> str:
    """The query that lists the model's loads, for the fixes."""
    return (
        f"select load_id, window_start, window_end, finished_at from {store.table('loads')}"
        f" where model = {sql_string(target.model)} order by finished_at desc"
    )


# -- the restore ---------------------------------------------------------------------------


class _Lake:
    """The lake's snapshots and catalog, read through the restore's transaction."""

    def __init__(self, session: Session, database: str) -> None:
        self.session = session
        self.database = database
        self.meta = quote_identifier(f"__ducklake_metadata_{database}")

    def snapshots(self) -> list[Snapshot]:
        rows = self.session.execute(
            "select snapshot_id, snapshot_time from"
            f" ducklake_snapshots({sql_string(self.database)}) order by snapshot_id"
        )
        return [Snapshot(int(i), to_utc_naive(t)) for i, t in rows]

    def _table_rows(self, schema: str, table: str) -> str:
        return (
            f"from {self.meta}.ducklake_table t join {self.meta}.ducklake_schema s"
            f" on s.schema_id = t.schema_id where s.schema_name = {sql_string(schema)}"
            f" and t.table_name = {sql_string(table)}"
        )

    def exists_at(self, schema: str, table: str, version: int) -> bool:
        """Whether the table existed at snapshot ``version``."""
        rows = self.session.execute(
            f"select count(*) {self._table_rows(schema, table)}"
            f" and t.begin_snapshot <= {version}"
            f" and (t.end_snapshot is null or t.end_snapshot > {version})"
            f" and s.begin_snapshot <= {version}"
            f" and (s.end_snapshot is null or s.end_snapshot > {version})"
        )
        return bool(rows[0][0])

    def created_at(self, schema: str, table: str) -> int | None:
        """The snapshot that created the table as it is now (None if it does not exist)."""
        rows = self.session.execute(
            f"select max(t.begin_snapshot) {self._table_rows(schema, table)}"
            " and t.end_snapshot is null"
        )
        return None if rows[0][0] is None else int(rows[0][0])


def _point_before_load(
    target: Target, store: StateStore, lake: _Lake, snapshots: list[Snapshot], load_id: str
) -> Snapshot:
    """The snapshot just before the one in which ``load_id`` committed.

    Raises:
        DbtRuntimeError: the load is unknown, of another model, or the snapshot before it
            was expired.
    """
    owner = store.load_model(load_id)
    if owner is None:
        raise _fail(
            target,
            f"no load '{load_id}' in {store.table('loads')} (an undone load is no longer there)",
            f"pass a load_id of the model, from: {loads_query(target, store)}",
        )
    if owner != target.model:
        other = owner.rsplit(".", 1)[-1]
        raise _fail(
            target,
            f"load '{load_id}' is a load of {owner}, not of {target.model}",
            f"undo it with `dbt-sqlflow restore {other} --before-load {load_id}`, or pick a"
            f" load of {target.name} from: {loads_query(target, store)}",
        )
    created = lake.created_at(store.schema, "loads") or 0
    ids = [s.id for s in snapshots if s.id >= created]

    def present(version: int) -> bool:
        then = store.as_of(version)
        found = then.executor(
            f"select count(*) from {then.table('loads')} where load_id = {sql_string(load_id)}"
        )
        return bool(found[0][0])

    committed = first_present(ids, present)
    previous = next((s for s in reversed(snapshots) if s.id < (committed or 0)), None)
    # Snapshot ids count up by one: a gap before the load's is an expired snapshot.
    if committed is None or previous is None or previous.id != committed - 1:
        oldest = snapshots[0]
        raise _fail(
            target,
            f"the snapshot before load '{load_id}' (committed in snapshot {committed}) was"
            " expired (ducklake_expire_snapshots); the lake keeps snapshots from"
            f" {oldest.id} ({oldest.time.isoformat(sep=' ')} UTC) on",
            "undo a later load of the model, or keep snapshots longer (a larger older_than"
            " for sqlflow_lake_maintenance)",
        )
    return previous


def _point_at(target: Target, snapshots: list[Snapshot], at: datetime) -> Snapshot:
    """The last snapshot at or before ``at``.

    Raises:
        DbtRuntimeError: every snapshot kept is later.
    """
    point = snapshot_at(snapshots, at)
    if point is None:
        oldest = snapshots[0]
        raise _fail(
            target,
            f"--at {at.isoformat(sep=' ')} is before the oldest snapshot the lake keeps"
            f" (snapshot {oldest.id}, {oldest.time.isoformat(sep=' ')} UTC): older ones were"
            " expired (ducklake_expire_snapshots) or the lake did not exist",
            f"pass --at {oldest.time.isoformat(sep=' ')} or later",
        )
    return point


def restore(
    session: Session,
    store: StateStore,
    target: Target,
    *,
    before_load: str | None = None,
    at: datetime | None = None,
) -> RestoreReport:
    """Put the model's table and state back as they were before ``before_load`` (or at
    ``at``, naive UTC), in one transaction, and commit it.

    Raises:
        DbtRuntimeError: naming the load, time or table that stops the restore, with the
            fix; a DuckLake conflict is raised as it is (the caller retries).
    """
    lake = _Lake(session, target.database)
    snapshots = lake.snapshots()
    if before_load is not None:
        point = _point_before_load(target, store, lake, snapshots, before_load)
        what = f"load '{before_load}'"
    else:
        assert at is not None
        point = _point_at(target, snapshots, at)
        what = f"--at {at.isoformat(sep=' ')}"
    if not lake.exists_at(target.schema, target.identifier, point.id):
        created = lake.created_at(target.schema, target.identifier)
        since = next((s for s in snapshots if s.id == created), None)
        first = f" (snapshot {since.id}, {since.time.isoformat(sep=' ')} UTC)" if since else ""
        problem = (
            f"{target.relation} did not exist before {what}: that load built it"
            if before_load is not None
            else f"{target.relation} did not exist at {what}; it was created later{first}"
        )
        raise _fail(
            target,
            problem,
            f"restore to a point after the table was built{first}, or start the model over"
            f" with `dbt run --full-refresh -s {target.name}`",
        )
    then = store.as_of(point.id)
    state_then = lake.exists_at(store.schema, "loads", point.id)
    loads_now = store.load_ids(target.model)
    loads_then = then.load_ids(target.model) if state_then else []
    undone = [x for x in loads_now if x not in set(loads_then)]
    redone = [x for x in loads_then if x not in set(loads_now)]
    if not undone and not redone:
        session.rollback()
        return RestoreReport(target, point)
    old = f"{target.relation} at (version => {point.id})"
    columns_now = session.execute(f"describe {target.relation}")
    columns_then = session.execute(f"describe select * from {old}")
    if [tuple(c[:2]) for c in columns_now] != [tuple(c[:2]) for c in columns_then]:
        raise _fail(
            target,
            f"the columns of {target.relation} changed since snapshot {point.id} (then:"
            f" {', '.join(f'{c[0]} {c[1]}' for c in columns_then)}; now:"
            f" {', '.join(f'{c[0]} {c[1]}' for c in columns_now)})",
            f"restore to a point after the change, or rebuild with `dbt run --full-refresh -s"
            f" {target.name}`",
        )
    rows_before = int(session.execute(f"select count(*) from {target.relation}")[0][0])
    _rewrite(session, target.relation, old)
    ledger = ledger_table_name(target.relation)
    if lake.created_at(store.schema, ledger) is not None:
        if lake.exists_at(store.schema, ledger, point.id):
            _rewrite(session, store.table(ledger), then.table(ledger))
        else:
            session.execute(f"delete from {store.table(ledger)}")
    rows_after = int(session.execute(f"select count(*) from {target.relation}")[0][0])
    intervals = interval_changes(
        store.interval_rows(target.model),
        then.interval_rows(target.model) if state_then else [],
    )
    store.write_intervals(target.model, intervals)
    removed, restored = partition_changes(
        store.partitions(target.relation),
        then.partitions(target.relation) if state_then else [],
    )
    store.delete_partitions(target.relation, removed)
    store.upsert_partitions(target.relation, restored)
    store.remove_loads(target.model, undone)
    if redone:
        store.copy_loads(then, target.model, redone)
    # The snapshot says what it is (DuckLake's snapshots() lists author and message); a
    # unique message finds it after the commit, whatever else committed meanwhile.
    message = f"sqlflow restore {uuid.uuid4().hex}: {target.model} as at snapshot {point.id}"
    session.execute(
        f"call {quote_identifier(target.database)}.set_commit_message('dbt-sqlflow',"
        f" {sql_string(message)})"
    )
    session.commit()
    committed = int(
        session.execute(
            f"select snapshot_id from ducklake_snapshots({sql_string(target.database)})"
            f" where commit_message = {sql_string(message)}"
        )[0][0]
    )
    session.commit()
    return RestoreReport(
        target,
        point,
        committed,
        tuple(undone),
        tuple(redone),
        rows_before,
        rows_after,
        tuple((piece, row is not None) for piece, row in intervals),
        tuple(removed),
        tuple(p.key for p in restored),
    )


def _rewrite(session: Session, table: str, old: str) -> None:
    """Replace a lake table's rows by those of ``old`` (its earlier version), staged first."""
    session.execute(f"create or replace temporary table {STAGE} as select * from {old}")
    session.execute(f"delete from {table}")
    session.execute(f"insert into {table} select * from {STAGE}")
    session.execute(f"drop table {STAGE}")


def restore_with_retries(
    session: Session,
    store: StateStore,
    target: Target,
    settings: RetrySettings,
    log: Callable[[str], None],
    *,
    before_load: str | None = None,
    at: datetime | None = None,
) -> RestoreReport:
    """:func:`restore`, tried again from the start (after a rollback) on a transient
    failure such as a DuckLake commit conflict, under ``settings``."""

    def before_sleep(state: Any) -> None:
        error = state.outcome.exception()
        log(
            f"sqlflow restore of {target.model}: {first_line(error)}; rolled back, trying"
            f" again in {state.next_action.sleep:.1f} s (try {state.attempt_number + 1} of"
            f" {settings.attempts})"
        )

    def attempt() -> RestoreReport:
        try:
            return restore(session, store, target, before_load=before_load, at=at)
        except BaseException:
            session.rollback()
            raise

    return retrying(settings, is_transient, before_sleep)(attempt)
