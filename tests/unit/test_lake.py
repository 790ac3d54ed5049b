"""lake.py: partition_by and sorted_by as DuckLake's native layout, and their errors."""

from __future__ import annotations

import pytest
from dbt_common.exceptions import DbtConfigError

from dbt.adapters.sqlflow.config import PartitionBy
from dbt.adapters.sqlflow.lake import (
    current_layout_sql,
    lake_layout,
    partition_clause,
    relayout,
    sorted_clause,
)

M = "model.p.m"


@pytest.mark.parametrize(
    ("granularity", "expected"),
    [
        ("year", 'year("ts")'),
        ("month", 'year("ts"), month("ts")'),
        ("day", 'year("ts"), month("ts"), day("ts")'),
        ("hour", 'year("ts"), month("ts"), day("ts"), hour("ts")'),
        (None, '"ts"'),
    ],
)
def test_partition_by_becomes_duckdb_transforms(granularity: str | None, expected: str) -> None:
    assert partition_clause(M, PartitionBy("ts", granularity)) == (expected, [])


def test_week_is_laid_out_by_day_and_says_so() -> None:
    clause, notes = partition_clause(M, PartitionBy("ts", "week"))
    assert clause == 'year("ts"), month("ts"), day("ts")'
    assert notes == [
        "model.p.m: DuckLake has no week partitioning; the table's files are partitioned"
        " by day of ts (sqlflow still tracks week partitions)"
    ]


def test_no_partition_by_no_layout() -> None:
    layout = lake_layout(M, None, None)
    assert layout.as_jinja() == {"partitioned_by": None, "sorted_by": None}


@pytest.mark.parametrize(
    ("sorted_by", "expected"),
    [
        ("event_ts", "event_ts"),
        (["event_ts", " id desc nulls last "], "event_ts, id desc nulls last"),
        ("", None),
        (None, None),
    ],
)
def test_sorted_by(sorted_by: object, expected: str | None) -> None:
    assert sorted_clause(M, sorted_by) == expected


@pytest.mark.parametrize("bad", [[], [1], ["a", " "], {"a": 1}, 3])
def test_a_bad_sorted_by_is_refused_with_the_fix(bad: object) -> None:
    with pytest.raises(DbtConfigError) as info:
        lake_layout(M, PartitionBy("ts", "day"), bad)
    assert f"model.p.m: sorted_by is {bad!r}; it must be a column or expression" in str(info.value)
    assert "Fix:" in str(info.value)


def test_current_layout_reads_duckdb_catalog_tables() -> None:
    sql = current_layout_sql("lake", "main", "o'rders")
    assert '"__ducklake_metadata_lake".ducklake_partition_column' in sql
    assert "t.table_name = 'o''rders'" in sql and "s.schema_name = 'main'" in sql


DAY = lake_layout(M, PartitionBy("ts", "day"), "v desc")
AS_DAY = [
    ("partition", 0, "year", "ts"),
    ("partition", 1, "month", "ts"),
    ("partition", 2, "day", "ts"),
    ("sort", 0, "DESC", "v"),
]


def test_a_table_laid_out_as_configured_is_left_alone() -> None:
    assert relayout(M, "t", DAY, AS_DAY) == []


def test_a_changed_layout_is_altered_and_logged() -> None:
    month = lake_layout(M, PartitionBy("ts", "month"), ["v", "id desc nulls last"])
    found = relayout(M, '"l"."s"."t"', month, AS_DAY)
    assert [sql for sql, _ in found] == [
        'alter table "l"."s"."t" set partitioned by (year("ts"), month("ts"))',
        'alter table "l"."s"."t" set sorted by (v, id desc nulls last)',
    ]
    assert found[0][1] == (
        'model.p.m: partition_by changed: the lake table is now partitioned by (year("ts"),'
        ' month("ts")) (was year("ts"), month("ts"), day("ts")); DuckLake applies it to the'
        " files written from now on, the existing files keep their layout (a --full-refresh"
        " rewrites them)"
    )


def test_a_removed_layout_is_reset() -> None:
    found = relayout(M, "t", lake_layout(M, None, None), AS_DAY)
    assert [sql for sql, _ in found] == [
        "alter table t reset partitioned by",
        "alter table t reset sorted by",
    ]
    assert "now no longer partitioned (was" in found[0][1]
    value = lake_layout(M, PartitionBy("kind"), None)
    assert relayout(M, "t", value, [("partition", 0, "identity", "kind")]) == []
