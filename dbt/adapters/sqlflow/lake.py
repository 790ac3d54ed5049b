"""DuckLake: how a model's ``partition_by`` and ``sorted_by`` become the lake's own layout.

DuckLake partitions a table natively (``ALTER TABLE t SET PARTITIONED BY (year(ts),
month(ts), day(ts))`` or a value column), writing each partition's Parquet files under
hive-style folders (``year=2025/month=1/day=3/``), and sorts the rows it writes by
``SET SORTED BY``. Both apply to the writes that follow the ALTER only. sqlflow builds a
lake table in place (created empty, laid out, then filled in the same transaction), so
the first files already follow the layout, and lays an existing table out again when its
configured layout changed.

Pure: the layout as SQL fragments, decided from the config; no SQL runs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbt_common.exceptions import DbtConfigError

from dbt.adapters.sqlflow.config import PartitionBy
from dbt.adapters.sqlflow.sql import quote_identifier

# DuckLake's partition transforms are year, month, day and hour: a granularity becomes its
# chain down from year. DuckLake has no week transform: a week partition is laid out by day
# (each of sqlflow's week partitions is then seven day folders; pruning stays exact).
_TRANSFORMS: dict[str, tuple[str, ...]] = {
    "year": ("year",),
    "month": ("year", "month"),
    "week": ("year", "month", "day"),
    "day": ("year", "month", "day"),
    "hour": ("year", "month", "day", "hour"),
}


@dataclass(frozen=True)
class LakeLayout:
    """A lake table's layout, as the ALTER TABLE clauses take it.

    Attributes:
        partitioned_by: ``SET PARTITIONED BY``'s list (``year("ts"), month("ts")``), or
            None for an unpartitioned table.
        sorted_by: ``SET SORTED BY``'s list, or None.
        notes: Lines worth logging about how the config was mapped.
    """

    partitioned_by: str | None = None
    sorted_by: str | None = None
    notes: tuple[str, ...] = ()

    def as_jinja(self) -> dict[str, Any]:
        """The layout as plain data for the materialization."""
        return {"partitioned_by": self.partitioned_by, "sorted_by": self.sorted_by}


def partition_clause(model: str, partition_by: PartitionBy | None) -> tuple[str | None, list[str]]:
    """``SET PARTITIONED BY``'s list for a model's ``partition_by``, and notes to log."""
    if partition_by is None:
        return None, []
    column = quote_identifier(partition_by.field)
    if partition_by.granularity is None:
        return column, []
    transforms = _TRANSFORMS[partition_by.granularity]
    notes = []
    if partition_by.granularity == "week":
        notes.append(
            f"{model}: DuckLake has no week partitioning; the table's files are partitioned"
            f" by day of {partition_by.field} (sqlflow still tracks week partitions)"
        )
    return ", ".join(f"{t}({column})" for t in transforms), notes


def sorted_clause(model: str, sorted_by: Any) -> str | None:
    """``SET SORTED BY``'s list for dbt-duckdb's ``sorted_by`` config (a column or
    expression, or a list of them, each optionally with ASC/DESC and NULLS FIRST/LAST).

    Raises:
        DbtConfigError: when ``sorted_by`` is not a string or a list of strings.
    """
    if sorted_by is None or sorted_by == "":
        return None
    parts = [sorted_by] if isinstance(sorted_by, str) else sorted_by
    if (
        not isinstance(parts, list | tuple)
        or not parts
        or not all(isinstance(p, str) and p.strip() for p in parts)
    ):
        raise DbtConfigError(
            f"{model}: sorted_by is {sorted_by!r}; it must be a column or expression, or a list"
            " of them, e.g. sorted_by=['event_ts', 'id desc']. Fix: set it so, or remove it"
        )
    return ", ".join(p.strip() for p in parts)


def lake_layout(model: str, partition_by: PartitionBy | None, sorted_by: Any) -> LakeLayout:
    """The DuckLake layout of a model's table.

    Raises:
        DbtConfigError: for a bad ``sorted_by``.
    """
    partitioned, notes = partition_clause(model, partition_by)
    return LakeLayout(partitioned, sorted_clause(model, sorted_by), tuple(notes))


def current_layout_sql(database: str, schema: str, table: str) -> str:
    """The query of a lake table's current partitioning and sort order, from DuckLake's
    catalog (attached as ``__ducklake_metadata_<database>``): rows ``(kind, position,
    transform or direction, column or expression)``, kind ``partition`` or ``sort``."""
    meta, table_id = _metadata(database, schema, table)
    return (
        "select 'partition', pc.partition_key_index, pc.transform, c.column_name"
        f" from {meta}.ducklake_partition_info p"
        f" join {meta}.ducklake_partition_column pc on pc.partition_id = p.partition_id"
        " and pc.table_id = p.table_id"
        f" join {meta}.ducklake_column c on c.table_id = p.table_id"
        " and c.column_id = pc.column_id and c.end_snapshot is null"
        f" where p.end_snapshot is null and p.table_id = {table_id}"
        " union all select 'sort', e.sort_key_index, e.sort_direction, e.expression"
        f" from {meta}.ducklake_sort_info i join {meta}.ducklake_sort_expression e"
        " on e.sort_id = i.sort_id and e.table_id = i.table_id"
        f" where i.end_snapshot is null and i.table_id = {table_id}"
        " order by 1, 2"
    )


def _metadata(database: str, schema: str, table: str) -> tuple[str, str]:
    """DuckLake's catalog schema of the lake ``database`` and the subquery of the table's
    current id in it."""
    from dbt.adapters.sqlflow.sql import sql_string

    meta = quote_identifier(f"__ducklake_metadata_{database}")
    table_id = (
        f"(select t.table_id from {meta}.ducklake_table t join {meta}.ducklake_schema s"
        " on s.schema_id = t.schema_id and s.end_snapshot is null"
        f" where t.end_snapshot is null and s.schema_name = {sql_string(schema)}"
        f" and t.table_name = {sql_string(table)})"
    )
    return meta, table_id


def data_files_sql(database: str, schema: str, table: str) -> str:
    """The query of a lake table's live data files and where DuckLake partitioned them,
    from its catalog: rows ``(data_file_id, file_size_bytes, transform, column_name,
    partition_value)``, one per partition value of each file (a file written unpartitioned
    has one row, its last three columns null). Rows still inlined in the catalog (not
    flushed) are in no file."""
    meta, table_id = _metadata(database, schema, table)
    return (
        "select f.data_file_id, f.file_size_bytes, pc.transform, c.column_name,"
        f" v.partition_value from {meta}.ducklake_data_file f"
        f" left join {meta}.ducklake_file_partition_value v"
        " on v.data_file_id = f.data_file_id and v.table_id = f.table_id"
        f" left join {meta}.ducklake_partition_column pc on pc.partition_id = f.partition_id"
        " and pc.table_id = f.table_id and pc.partition_key_index = v.partition_key_index"
        f" left join {meta}.ducklake_column c on c.table_id = f.table_id"
        " and c.column_id = pc.column_id and c.end_snapshot is null"
        f" where f.end_snapshot is null and f.table_id = {table_id}"
        " order by f.data_file_id, v.partition_key_index"
    )


def _normal(clause: str | None) -> str:
    text = " ".join((clause or "").replace('"', "").lower().split()).replace(" ,", ",")
    return text.replace(" nulls first", "").replace(" nulls last", "")


def relayout(
    model: str, relation: str, wanted: LakeLayout, rows: list[tuple[Any, ...]]
) -> list[tuple[str, str]]:
    """The ALTER statements that lay an existing lake table out as configured, each with
    the line to log; ``[]`` when it already is.

    Args:
        rows: The table's current layout (:func:`current_layout_sql`).
    """
    partitions = [r for r in rows if r[0] == "partition"]
    current_partition = ", ".join(
        quote_identifier(str(r[3])) if r[2] == "identity" else f"{r[2]}({quote_identifier(r[3])})"
        for r in partitions
    )
    sorts = [r for r in rows if r[0] == "sort"]
    current_sort = ", ".join(f"{r[3]} {r[2]}" for r in sorts)
    wanted_sort = ", ".join(
        p if p.split()[-1].lower() in ("asc", "desc") else f"{p} asc"
        for p in (wanted.sorted_by or "").split(", ")
        if p
    )
    statements = []
    if _normal(current_partition) != _normal(wanted.partitioned_by):
        if wanted.partitioned_by:
            sql = f"alter table {relation} set partitioned by ({wanted.partitioned_by})"
            what = f"partitioned by ({wanted.partitioned_by})"
        else:
            sql, what = f"alter table {relation} reset partitioned by", "no longer partitioned"
        statements.append(
            (
                sql,
                f"{model}: partition_by changed: the lake table is now {what} (was"
                f" {current_partition or 'unpartitioned'}); DuckLake applies it to the files"
                " written from now on, the existing files keep their layout (a"
                " --full-refresh rewrites them)",
            )
        )
    if _normal(current_sort) != _normal(wanted_sort):
        if wanted.sorted_by:
            sql = f"alter table {relation} set sorted by ({wanted.sorted_by})"
        else:
            sql = f"alter table {relation} reset sorted by"
        statements.append(
            (
                sql,
                f"{model}: sorted_by changed to {wanted.sorted_by or 'none'}; DuckLake sorts"
                " the rows it writes from now on",
            )
        )
    return statements
