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
