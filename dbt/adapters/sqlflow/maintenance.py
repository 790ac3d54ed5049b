"""DuckLake maintenance: the small files of many small batches compacted, old snapshots
expired, and the files nothing reads any more deleted.

Every batch on a lake commits at least one Parquet file per table and partition it writes
(or inlined rows, with data inlining), and sqlflow's state tables get a few rows a batch:
hourly batches into day partitions leave 24 files a day, and every query opens them all.
:func:`maintain` runs DuckLake's own functions, in this order, each in its own
transaction (retried on a commit conflict with a concurrent writer, as loads are):

1. ``ducklake_flush_inlined_data``: inlined rows written out as Parquet files;
2. ``ducklake_merge_adjacent_files``: small files of one table and partition merged into
   fewer (a new snapshot; the old files stay for the snapshots that read them);
3. ``ducklake_expire_snapshots(older_than => now - older_than)``: snapshots older than the
   retention are dropped (DuckLake never drops the latest); the files only they read are
   scheduled for deletion. This bounds how far back time travel, and so
   ``dbt-sqlflow restore``, can go;
4. ``ducklake_cleanup_old_files(older_than => now - delete_files_older_than)``: the files
   scheduled for deletion longer ago than that are deleted from storage (the delay lets
   queries that started on an expired snapshot finish).

It counts the lake's files before and after from DuckLake's catalog: the data and delete
files of the current snapshot (what a query opens) and every file in storage (those of
the kept snapshots and those awaiting deletion).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.retry import RetrySettings, first_line, is_transient, retrying
from dbt.adapters.sqlflow.sql import quote_identifier, sql_string

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


class Session(Protocol):
    """dbt's connection as maintenance uses it."""

    def execute(self, sql: str) -> list[tuple]:
        """Run SQL in the open transaction (BEGIN first if none is open)."""

    def commit(self) -> None:
        """Commit the open transaction."""

    def rollback(self) -> None:
        """Roll back the open transaction."""


def parse_age(text: Any) -> timedelta:
    """A retention such as ``7 days``, ``12 hours``, ``30 minutes``, ``2 weeks`` or
    ``0 seconds``.

    Raises:
        ValueError: for anything else.
    """
    found = _AGE.match(str(text)) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not an age like '7 days'")
    return timedelta(seconds=float(found[1]) * _UNITS[found[2].lower()])


def age_text(age: timedelta) -> str:
    """An age as :func:`parse_age` reads it, in the largest unit that divides it."""
    seconds = age.total_seconds()
    for unit in ("week", "day", "hour", "minute"):
        if seconds and seconds % _UNITS[unit] == 0:
            count = int(seconds // _UNITS[unit])
            return f"{count} {unit}{'s' * (count != 1)}"
    return f"{seconds:g} second{'s' * (seconds != 1)}"


@dataclass(frozen=True)
class MaintenanceSettings:
    """How much history a lake keeps.

    Attributes:
        older_than: Snapshots older than this are expired.
        delete_files_older_than: Files scheduled for deletion longer ago than this are
            deleted from storage.
    """

    older_than: timedelta = timedelta(days=7)
    delete_files_older_than: timedelta = timedelta(hours=1)

    @classmethod
    def parse(cls, older_than: Any, delete_files_older_than: Any) -> MaintenanceSettings:
        """The settings from the run-operation's arguments (None: the default).

        Raises:
            DbtRuntimeError: naming every bad argument, what is allowed and the fix.
        """
        values: dict[str, timedelta] = {}
        problems = []
        for key, raw in (
            ("older_than", older_than),
            ("delete_files_older_than", delete_files_older_than),
        ):
            if raw is None:
                continue
            try:
                values[key] = parse_age(raw)
            except ValueError as e:
                problems.append(f"{key}: {e}")
        if problems:
            raise DbtRuntimeError(
                f"sqlflow_lake_maintenance: {'; '.join(problems)}; an age is a number and one"
                " of second(s), minute(s), hour(s), day(s), week(s). Fix: e.g. --args"
                ' \'{older_than: "7 days", delete_files_older_than: "1 hour"}\''
            )
        return cls(**values)


@dataclass(frozen=True)
class FileCounts:
    """A lake's files, from its catalog.

    Attributes:
        data_files: Data files of the current snapshot.
        delete_files: Delete files of the current snapshot.
        stored_files: Every file in storage: those of all kept snapshots, and those
            awaiting deletion.
        snapshots: Snapshots kept.
    """

    data_files: int
    delete_files: int
    stored_files: int
    snapshots: int


@dataclass(frozen=True)
class MaintenanceReport:
    """What :func:`maintain` did: the counts before and after, and each step's line."""

    database: str
    before: FileCounts
    after: FileCounts
    steps: tuple[str, ...]

    def text(self) -> str:
        """The report as log lines."""
        b, a = self.before, self.after
        return "\n".join(
            [
                f"sqlflow lake maintenance of {self.database}:",
                f"  data files read by a query now: {b.data_files} -> {a.data_files}"
                f" (delete files: {b.delete_files} -> {a.delete_files})",
                f"  files in storage: {b.stored_files} -> {a.stored_files}",
                f"  snapshots kept: {b.snapshots} -> {a.snapshots}",
                *(f"  {line}" for line in self.steps),
            ]
        )


def file_counts_sql(database: str) -> str:
    """The query of a lake's :class:`FileCounts`, from its catalog (attached as
    ``__ducklake_metadata_<database>``)."""
    meta = quote_identifier(f"__ducklake_metadata_{database}")
    return (
        "select"
        f" (select count(*) from {meta}.ducklake_data_file where end_snapshot is null),"
        f" (select count(*) from {meta}.ducklake_delete_file where end_snapshot is null),"
        f" (select count(*) from {meta}.ducklake_data_file)"
        f" + (select count(*) from {meta}.ducklake_delete_file)"
        f" + (select count(*) from {meta}.ducklake_files_scheduled_for_deletion),"
        f" (select count(*) from ducklake_snapshots({sql_string(database)}))"
    )


def _cutoff(age: timedelta) -> str:
    # now() is the start of the step's own transaction: the cleanup counts back from
    # after the expiry committed, so "0 seconds" deletes what the expiry just freed.
    return f"now() - to_microseconds({int(age / timedelta(microseconds=1))})"


def steps(
    database: str, settings: MaintenanceSettings
) -> list[tuple[str, str, Callable[[list[tuple]], str]]]:
    """The steps in order: ``(name, SQL, how its rows read in the report)``; the
    retentions count back from the start of each step."""
    lake = sql_string(database)
    return [
        (
            "flush inlined data",
            f"select * from ducklake_flush_inlined_data({lake})",
            lambda rows: f"{sum(int(r[-1] or 0) for r in rows)} inlined rows written to files",
        ),
        (
            "merge adjacent files",
            f"select files_processed, files_created from ducklake_merge_adjacent_files({lake})",
            lambda rows: (
                f"{sum(int(r[0]) for r in rows)} files merged into {sum(int(r[1]) for r in rows)}"
            ),
        ),
        (
            "expire snapshots",
            f"select * from ducklake_expire_snapshots({lake},"
            f" older_than => {_cutoff(settings.older_than)})",
            lambda rows: f"older than {age_text(settings.older_than)}",
        ),
        (
            "clean up old files",
            f"select * from ducklake_cleanup_old_files({lake},"
            f" older_than => {_cutoff(settings.delete_files_older_than)})",
            lambda rows: (
                "files scheduled for deletion more than"
                f" {age_text(settings.delete_files_older_than)} ago deleted"
            ),
        ),
    ]


def counts(session: Session, database: str) -> FileCounts:
    """The lake's files now (read in a transaction of their own)."""
    row = session.execute(file_counts_sql(database))[0]
    session.commit()
    return FileCounts(*(int(v) for v in row))


def maintain(
    session: Session,
    database: str,
    settings: MaintenanceSettings,
    retry: RetrySettings,
    log: Callable[[str], None],
) -> MaintenanceReport:
    """Run the maintenance :func:`steps` on the lake ``database``, each in a transaction
    of its own, retried on a transient failure (a commit conflict with a writer).

    Raises:
        DbtRuntimeError: the database's error of a step that failed for good.
    """
    before = counts(session, database)
    lines = []
    for name, sql, describe in steps(database, settings):

        def attempt(sql: str = sql) -> list[tuple]:
            try:
                rows = session.execute(sql)
                session.commit()
                return rows
            except BaseException:
                session.rollback()
                raise

        def before_sleep(state: Any, name: str = name) -> None:
            log(
                f"sqlflow lake maintenance of {database}: {name} failed"
                f" ({first_line(state.outcome.exception())}); trying again in"
                f" {state.next_action.sleep:.1f} s"
            )

        started = time.monotonic()
        rows = retrying(retry, is_transient, before_sleep)(attempt)
        lines.append(f"{name}: {describe(rows)} ({time.monotonic() - started:.1f} s)")
        log(f"sqlflow lake maintenance of {database}: {lines[-1]}")
    return MaintenanceReport(database, before, counts(session, database), tuple(lines))


def needs_ducklake(database: str) -> DbtRuntimeError:
    """The error of maintenance on a database that is not a DuckLake."""
    return DbtRuntimeError(
        f"sqlflow_lake_maintenance: database '{database}' is not a DuckLake (its snapshots"
        " and files are what this maintains). Fix: pass the alias of a DuckLake attachment"
        " of the profile, e.g. --args '{database: lake}', or leave it out to maintain the"
        " target database when that is the lake"
    )
