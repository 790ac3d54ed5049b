"""sqlflow's figures in dbt's catalog: partitions, rows, last load and watermark per table.

``dbt docs generate`` shows them as table stats of each sqlflow model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from dbt.adapters.sqlflow.intervals import parse_timestamp

STAT_LABELS = {
    "sqlflow_partitions": ("Partitions", "Partitions recorded by dbt-sqlflow"),
    "sqlflow_rows": ("Rows in partitions", "Rows counted in the recorded partitions"),
    "sqlflow_last_load": ("Last sqlflow load", "When the last committed load finished"),
    "sqlflow_watermark": ("Watermark", "Newest event_time loaded"),
}


def split_relation(relation: str) -> tuple[str, ...]:
    """The lower-cased, unquoted parts of a rendered relation (``"db"."schema"."table"``)."""
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', relation)
    return tuple((p[1:-1].replace('""', '"') if p.startswith('"') else p).lower() for p in parts)


def stats_by_relation(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, ...], dict[str, str]]:
    """``StateStore.catalog_stats`` rows as text figures keyed by relation parts."""
    out: dict[tuple[str, ...], dict[str, str]] = {}
    for relation, partitions, total_rows, last_load, watermark in rows:
        figures = {
            "sqlflow_partitions": partitions,
            "sqlflow_rows": total_rows,
            "sqlflow_last_load": utc_text(last_load),
            "sqlflow_watermark": utc_text(watermark),
        }
        out[split_relation(relation)] = {k: str(v) for k, v in figures.items() if v is not None}
    return out


def utc_text(value: Any) -> str | None:
    """A time as the catalog shows it: UTC, to the second (``2026-12-04 18:06:29 UTC``).

    ``value`` is a naive UTC or an aware ``datetime`` (a load's finish time) or ISO text
    (a watermark); text that is no timestamp is shown as it is, None stays None.
    """
    if value is None:
        return None
    if not isinstance(value, (str, date)):
        return str(value)
    try:
        moment = parse_timestamp(value)
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def with_sqlflow_stats(table: Any, rows: Sequence[Sequence[Any]]) -> Any:
    """dbt's catalog table (agate) with sqlflow's figures as ``stats:`` columns."""
    import agate

    stats = stats_by_relation(rows)
    if not stats:
        return table
    columns = list(table.column_names)
    types = list(table.column_types)
    for stat in STAT_LABELS:
        columns += [f"stats:{stat}:label", f"stats:{stat}:value"]
        columns += [f"stats:{stat}:description", f"stats:{stat}:include"]
        types += [agate.Text(), agate.Text(), agate.Text(), agate.Boolean()]
    out = []
    for row in table.rows:
        key = (str(row["table_database"]), str(row["table_schema"]), str(row["table_name"]))
        found = stats.get(tuple(k.lower() for k in key))
        extra: list[Any] = []
        for stat, (label, description) in STAT_LABELS.items():
            value = found.get(stat) if found else None
            extra += [label, value, description, value is not None]
        out.append([*row.values(), *extra])
    return agate.Table(out, columns, types)
