"""Unit tests of DuckLake maintenance's pure parts: ages, settings, the steps' SQL, the
file counts' query, the report and the errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dbt_common.exceptions import DbtRuntimeError

from dbt.adapters.sqlflow.maintenance import (
    FileCounts,
    MaintenanceReport,
    MaintenanceSettings,
    age_text,
    file_counts_sql,
    needs_ducklake,
    parse_age,
    steps,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 days", timedelta(days=7)),
        ("1 day", timedelta(days=1)),
        ("12 Hours", timedelta(hours=12)),
        ("30 minutes", timedelta(minutes=30)),
        ("0 seconds", timedelta(0)),
        ("2 weeks", timedelta(weeks=2)),
        (" 1.5 hours ", timedelta(minutes=90)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "7", "a week", "7 fortnights", "-1 days", "0s", 7, None])
def test_parse_age_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="is not an age like '7 days'"):
        parse_age(text)


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (timedelta(days=7), "1 week"),
        (timedelta(days=3), "3 days"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(0), "0 seconds"),
        (timedelta(seconds=1.5), "1.5 seconds"),
    ],
)
def test_age_text_reads_back(age: timedelta, text: str) -> None:
    assert age_text(age) == text
    assert parse_age(text) == age


def test_settings_default_and_parse() -> None:
    assert MaintenanceSettings.parse(None, None) == MaintenanceSettings(
        timedelta(days=7), timedelta(hours=1)
    )
    assert MaintenanceSettings.parse("1 day", "0 seconds") == MaintenanceSettings(
        timedelta(days=1), timedelta(0)
    )


def test_settings_name_every_bad_age() -> None:
    with pytest.raises(DbtRuntimeError) as raised:
        MaintenanceSettings.parse("soon", "later")
    text = str(raised.value)
    assert "older_than: 'soon' is not an age like '7 days'" in text
    assert "delete_files_older_than: 'later' is not an age" in text
    assert "Fix: e.g. --args" in text


def test_steps_run_duckdb_lakes_functions_in_order() -> None:
    found = steps("lake", MaintenanceSettings(timedelta(days=7), timedelta(hours=1)))
    assert [name for name, _, _ in found] == [
        "flush inlined data",
        "merge adjacent files",
        "expire snapshots",
        "clean up old files",
    ]
    sql = [s for _, s, _ in found]
    assert sql[0] == "select * from ducklake_flush_inlined_data('lake')"
    assert "ducklake_merge_adjacent_files('lake')" in sql[1]
    assert sql[2] == (
        "select * from ducklake_expire_snapshots('lake',"
        " older_than => now() - to_microseconds(604800000000))"
    )
    assert sql[3] == (
        "select * from ducklake_cleanup_old_files('lake',"
        " older_than => now() - to_microseconds(3600000000))"
    )
    describe = [d for _, _, d in found]
    assert describe[0]([("main", "t", 3), ("main", "u", 4)]) == "7 inlined rows written to files"
    assert describe[1]([(4, 1), (3, 1)]) == "7 files merged into 2"
    assert describe[2]([]) == "older than 1 week"
    assert describe[3]([]) == "files scheduled for deletion more than 1 hour ago deleted"


def test_file_counts_read_the_lakes_catalog() -> None:
    sql = file_counts_sql("lake")
    assert '"__ducklake_metadata_lake".ducklake_data_file where end_snapshot is null' in sql
    assert '"__ducklake_metadata_lake".ducklake_files_scheduled_for_deletion' in sql
    assert "ducklake_snapshots('lake')" in sql


def test_report_text() -> None:
    report = MaintenanceReport(
        "lake", FileCounts(74, 0, 98, 30), FileCounts(5, 0, 5, 1), ("merge adjacent files: x",)
    )
    assert report.text().splitlines() == [
        "sqlflow lake maintenance of lake:",
        "  data files read by a query now: 74 -> 5 (delete files: 0 -> 0)",
        "  files in storage: 98 -> 5",
        "  snapshots kept: 30 -> 1",
        "  merge adjacent files: x",
    ]


def test_needs_ducklake_names_the_database_and_the_fix() -> None:
    text = str(needs_ducklake("memory"))
    assert "database 'memory' is not a DuckLake" in text
    assert "Fix: pass the alias of a DuckLake attachment" in text
