"""lake.py: partition_by and sorted_by as DuckLake's native layout, and their errors."""

from __future__ import annotations

import pytest
from dbt_common.exceptions import DbtConfigError

from dbt.adapters.sqlflow.config import PartitionBy
from dbt.adapters.sqlflow.lake import lake_layout, partition_clause, sorted_clause

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
