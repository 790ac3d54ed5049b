"""``dbt-sqlflow partitions MODEL``: a model's partition table, read from sqlflow's state.

The model's relation and ``partition_by`` come from ``target/manifest.json`` in the dbt
project, the database (a DuckDB file or a DuckLake) and the state schema from the profile
(both through :mod:`~dbt.adapters.sqlflow.cli_state`); the database is opened read-only.
On a DuckLake, each partition's data files and their bytes come from the lake's own
catalog (:func:`~dbt.adapters.sqlflow.lake.data_files_sql`).

Every failure is a :class:`~dbt.adapters.sqlflow.cli_state.StateCommandError` whose
message is one line naming the thing that is missing or wrong and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow.cli_state import (
    ModelKind,
    StateCommandError,
    StateLocation,
    is_sqlflow,
    iso,
    manifest_path,
    model_node,
    open_state,
    project_dirs,
    resolve_state_location,
    text_table,
    when,
)
from dbt.adapters.sqlflow.config import partition_by_mapping
from dbt.adapters.sqlflow.lake import data_files_sql
from dbt.adapters.sqlflow.partitions import PartitionInfo, lake_file_key

LOAD_ID_CHARS = 12


@dataclass(frozen=True)
class ModelTarget:
    """A partitioned sqlflow model as the manifest describes it.

    Attributes:
        unique_id: The model's unique_id (``model.<project>.<name>``).
        name: The model's name.
        relation: The rendered relation (``"db"."schema"."table"``), as sqlflow's state
            records it.
        partition_by: The model's ``partition_by`` config (``field``, ``granularity``).
        database: The table's database, schema and name, unquoted (the manifest's
            ``database``, ``schema``, ``alias``).
    """

    unique_id: str
    name: str
    relation: str
    partition_by: Mapping[str, Any]
    database: str = ""
    schema: str = ""
    table: str = ""


@dataclass(frozen=True)
class FileStats:
    """A partition's data files in a DuckLake, from the lake's catalog.

    Attributes:
        files: Live Parquet data files.
        size_bytes: Their size in bytes (delete files not counted).
    """

    files: int = 0
    size_bytes: int = 0


@dataclass(frozen=True)
class PartitionReport:
    """A model's recorded partitions, in time (or key) order."""

    model: ModelTarget
    location: StateLocation
    partitions: list[PartitionInfo]
    files: dict[str, FileStats] | None = None
    """Per partition key, its data files on a DuckLake; None on a DuckDB file."""

    def file_stats(self, key: str) -> FileStats | None:
        """A partition's data files (none written yet: zero), or None off a lake."""
        return None if self.files is None else self.files.get(key, FileStats())

    def summary(self) -> dict[str, Any]:
        """Figures over all the partitions.

        Returns:
            ``partition_count``, ``empty_partitions``, ``total_rows``,
            ``oldest_partition`` and ``newest_partition`` (first and last keys),
            ``newest_nonempty_partition``, ``last_load_id`` and ``last_loaded_at`` (the
            most recent load recorded on any partition, naive UTC).
        """
        parts = self.partitions
        nonempty = [p for p in parts if p.row_count > 0]
        loaded = [p for p in parts if p.last_loaded_at is not None]
        last = max(loaded, key=lambda p: p.last_loaded_at or datetime.min) if loaded else None
        return {
            "partition_count": len(parts),
            "empty_partitions": len(parts) - len(nonempty),
            "total_rows": sum(p.row_count for p in parts),
            "oldest_partition": parts[0].key if parts else None,
            "newest_partition": parts[-1].key if parts else None,
            "newest_nonempty_partition": nonempty[-1].key if nonempty else None,
            "last_load_id": last.last_load_id if last else None,
            "last_loaded_at": last.last_loaded_at if last else None,
            **(
                {}
                if self.files is None
                else {
                    "data_files": sum(f.files for f in self.files.values()),
                    "data_file_bytes": sum(f.size_bytes for f in self.files.values()),
                }
            ),
        }

    def shown(self, last: int | None = None, non_empty: bool = False) -> list[PartitionInfo]:
        """The partitions to show: without empty ones if asked, then the last ``last``."""
        parts = [p for p in self.partitions if p.row_count > 0] if non_empty else self.partitions
        return parts[-last:] if last else list(parts)


# -- manifest ----------------------------------------------------------------------------


def _is_partitioned(config: Mapping[str, Any]) -> bool:
    return is_sqlflow(config) and bool(config.get("partition_by"))


PARTITIONED = ModelKind("partitioned", "partitions", "partition_by", _is_partitioned)


def find_model(manifest: Path, model: str) -> ModelTarget:
    """The partitioned sqlflow model named ``model`` (a name or a unique_id) in a manifest.

    Raises:
        StateCommandError: The manifest is missing or unreadable, no model (or several)
            has that name, or the model is not a partitioned sqlflow_incremental model.
    """
    node = model_node(manifest, model, PARTITIONED)
    unique_id = node["unique_id"]
    config = node.get("config") or {}
    partition_by = partition_by_mapping(config.get("partition_by"))
    if partition_by is None or not partition_by["field"]:
        # A windowed model without partitions still has its loaded windows recorded.
        windows = (
            f"; its loaded windows: dbt-sqlflow intervals {node['name']}"
            if config.get("event_time")
            else ""
        )
        raise StateCommandError(
            f"model '{unique_id}': has no partition_by, so it has no partitions{windows}."
            " Fix: set partition_by, e.g. {'field': 'event_ts', 'granularity': 'day'}, and"
            " run it"
        )
    return ModelTarget(
        unique_id,
        node["name"],
        node["relation_name"],
        dict(partition_by),
        str(node.get("database") or ""),
        str(node.get("schema") or ""),
        str(node.get("alias") or node["name"]),
    )


# -- state -------------------------------------------------------------------------------


def file_stats(
    rows: Sequence[tuple[Any, ...]], partition_by: Mapping[str, Any]
) -> dict[str, FileStats]:
    """Data files and bytes per partition key, from the lake's catalog rows
    (:func:`~dbt.adapters.sqlflow.lake.data_files_sql`); files whose partition values do not
    tell their key (written unpartitioned or under another layout) are left out."""
    by_file: dict[Any, tuple[int, dict[str, str | None]]] = {}
    for file_id, size, transform, column, value in rows:
        _, values = by_file.setdefault(file_id, (int(size or 0), {}))
        if transform is not None and column == partition_by["field"]:
            values[str(transform)] = None if value is None else str(value)
    stats: dict[str, FileStats] = {}
    for size, values in by_file.values():
        key = lake_file_key(values, partition_by.get("granularity"))
        if key is not None:
            old = stats.get(key, FileStats())
            stats[key] = FileStats(old.files + 1, old.size_bytes + size)
    return stats


def read_partitions(
    location: StateLocation, model: ModelTarget
) -> tuple[list[PartitionInfo], dict[str, FileStats] | None]:
    """The model's recorded partitions, from the database opened read-only, and on a
    DuckLake (the model's table in the lake) each partition's data files.

    Raises:
        StateCommandError: The file is missing or locked by a running dbt, the lake
            cannot be attached, it holds no sqlflow state, or no partitions of the model.
    """
    files = None
    with open_state(location, model.name, "partitions") as store:
        partitions = store.partitions(model.relation)
        if partitions and location.lake and model.database == location.lake.alias:
            sql = data_files_sql(model.database, model.schema, model.table)
            files = file_stats(store.executor(sql), model.partition_by)
    if not partitions:
        raise StateCommandError(
            f"model '{model.unique_id}': no partitions of {model.relation} recorded in"
            f" {location.source} ({location.state_schema}.partitions). Fix: run it first: dbt"
            f" run -s {model.name}"
        )
    return partitions, files


def load_report(
    model: str,
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
) -> PartitionReport:
    """Everything ``dbt-sqlflow partitions`` shows.

    Args:
        model: A model name or unique_id.
        project_dir: The dbt project (default: as dbt, the nearest folder with
            dbt_project.yml).
        profiles_dir: The folder of profiles.yml (default: as dbt).
        target: The profile target (default: the profile's).

    Raises:
        StateCommandError: With a one-line message naming what is wrong and the fix.
    """
    project, profiles = project_dirs(project_dir, profiles_dir)
    found = find_model(manifest_path(project), model)
    location = resolve_state_location(project, profiles, target)
    return PartitionReport(found, location, *read_partitions(location, found))


# -- output ------------------------------------------------------------------------------


def _describe(report: PartitionReport) -> str:
    part = report.model.partition_by
    granularity = part.get("granularity")
    kind = f"{granularity} partitions" if granularity else "value partitions"
    return f"{kind} on {part['field']}"


def summary_line(report: PartitionReport) -> str:
    """One line: partition count, rows (and data files on a lake), range of keys, newest
    partition with rows, last load."""
    s = report.summary()
    empty = f" ({s['empty_partitions']:,} empty)" if s["empty_partitions"] else ""
    files = (
        f" in {s['data_files']:,} data files ({s['data_file_bytes']:,} bytes)"
        if "data_files" in s
        else ""
    )
    return (
        f"{report.model.name}: {s['partition_count']:,} partitions{empty},"
        f" {s['total_rows']:,} rows{files}, {s['oldest_partition']} .. {s['newest_partition']},"
        f" newest with rows {s['newest_nonempty_partition'] or '-'},"
        f" last load {when(s['last_loaded_at'])} UTC"
    )


def format_table(report: PartitionReport, last: int | None = None, non_empty: bool = False) -> str:
    """The partition table as text: a title, a header, one line per partition, the summary."""
    headers = ["partition", "range start", "range end", "rows", "last load", "loaded at (UTC)"]
    shown = report.shown(last, non_empty)
    lines: list[list[str]] = [
        [
            p.key,
            when(p.range_start),
            when(p.range_end),
            f"{p.row_count:,}",
            (p.last_load_id or "-")[:LOAD_ID_CHARS],
            when(p.last_loaded_at),
        ]
        for p in shown
    ]
    right: tuple[int, ...] = (3,)
    if report.files is not None:
        headers[4:4] = ["files", "bytes"]
        right = (3, 4, 5)
        for p, line in zip(shown, lines, strict=True):
            stats = report.file_stats(p.key) or FileStats()
            line[4:4] = [f"{stats.files:,}", f"{stats.size_bytes:,}"]
    total = len(report.partitions)
    selection = ""
    if len(shown) != total:
        which = "non-empty " if non_empty else ""
        selection = f"; the last {len(shown)} {which}of {total} partitions"
    title = (
        f"{report.model.relation} ({_describe(report)}; state in"
        f" {report.location.label}:{report.location.state_schema}{selection})"
    )
    body = text_table(headers, lines, right=right)
    return "\n".join([title, *body, summary_line(report)]) + "\n"


def format_json(report: PartitionReport, last: int | None = None, non_empty: bool = False) -> str:
    """The partition table as JSON: model, relation, partition_by, partitions, summary."""
    summary = report.summary()
    summary["last_loaded_at"] = iso(summary["last_loaded_at"])
    data = {
        "model": report.model.unique_id,
        "relation": report.model.relation,
        "partition_by": dict(report.model.partition_by),
        "database": report.location.source,
        "state_schema": report.location.state_schema,
        "partitions": [
            {
                "key": p.key,
                "range_start": iso(p.range_start),
                "range_end": iso(p.range_end),
                "rows": p.row_count,
                "min_value": p.min_value,
                "max_value": p.max_value,
                "last_load_id": p.last_load_id,
                "last_loaded_at": iso(p.last_loaded_at),
                **_files_json(report.file_stats(p.key)),
            }
            for p in report.shown(last, non_empty)
        ],
        "summary": summary,
    }
    return json.dumps(data, indent=2) + "\n"


def _files_json(stats: FileStats | None) -> dict[str, int]:
    return {} if stats is None else {"data_files": stats.files, "data_file_bytes": stats.size_bytes}
