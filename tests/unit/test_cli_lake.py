"""The state commands on a DuckLake: which profiles are a lake and how they are attached,
passwords kept out of messages, and each partition's data files from the lake's catalog
rows (the lake suite runs the commands on a real lake)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbt.adapters.sqlflow.cli_partitions import (
    FileStats,
    ModelTarget,
    PartitionReport,
    file_stats,
    format_json,
    format_table,
)
from dbt.adapters.sqlflow.cli_state import (
    LakeAttachment,
    StateLocation,
    hide_password,
    lake_attachment,
)
from dbt.adapters.sqlflow.credentials import SqlflowCredentials
from dbt.adapters.sqlflow.lake import data_files_sql
from dbt.adapters.sqlflow.partitions import NULL_KEY, lake_file_key
from dbt.adapters.sqlflow.state import PartitionInfo

PG = "ducklake:postgres:dbname=l host=/s user=u"


def creds(**kwargs: Any) -> SqlflowCredentials:
    return SqlflowCredentials.from_dict({"path": ":memory:", "schema": "main", **kwargs})


def test_a_postgres_catalog_lake_is_attached_read_only_with_its_options() -> None:
    attach = [{"path": PG, "alias": "lake", "options": {"data_path": "/d/", "read_only": False}}]
    found = lake_attachment(creds(database="lake", attach=attach))
    assert found == LakeAttachment(
        "lake", PG, f"ATTACH IF NOT EXISTS '{PG}' AS lake (READ_ONLY, DATA_PATH '/d/')"
    )
    assert found.extensions == ("ducklake", "postgres")


def test_a_duckdb_file_catalog_needs_only_ducklake() -> None:
    laptop = {"path": "ducklake:/data/lake.ducklake", "alias": "lake"}
    found = lake_attachment(creds(database="lake", attach=[laptop]))
    assert found is not None and found.extensions == ("ducklake",)
    assert (
        found.attach_sql
        == "ATTACH IF NOT EXISTS 'ducklake:/data/lake.ducklake' AS lake (READ_ONLY)"
    )


def test_a_lake_as_the_path_itself() -> None:
    found = lake_attachment(creds(path="ducklake:/data/shop.ducklake"))
    assert found == LakeAttachment(
        "shop",
        "ducklake:/data/shop.ducklake",
        "attach 'ducklake:/data/shop.ducklake' as \"shop\" (read_only)",
    )


@pytest.mark.parametrize(
    "profile",
    [
        {},  # :memory: alone
        {"attach": [{"path": PG, "alias": "lake"}]},  # attached, not the target
        {"database": "files", "attach": [{"path": "/data/f.duckdb", "alias": "files"}]},
    ],
)
def test_no_lake(profile: dict[str, Any]) -> None:
    assert lake_attachment(creds(**profile)) is None


def test_a_lake_flagged_or_typed_without_the_scheme() -> None:
    flagged = {"path": "md:lake", "alias": "lake", "is_ducklake": True}
    assert lake_attachment(creds(database="lake", attach=[flagged])) is not None


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (
            "ducklake:postgres:dbname=l host=h user=u password=s3cret sslmode=require",
            "ducklake:postgres:dbname=l host=h user=u password=*** sslmode=require",
        ),
        ("ducklake:postgres:password='a b' host=h", "ducklake:postgres:password=*** host=h"),
        ("ducklake:postgres:postgresql://u:pw@h/l", "ducklake:postgres:postgresql://u:***@h/l"),
        ('at "postgres:dbname=l PASSWORD=pw"Unable', 'at "postgres:dbname=l PASSWORD=***"Unable'),
        (PG, PG),
    ],
)
def test_passwords_stay_out_of_messages(path: str, shown: str) -> None:
    assert hide_password(path) == shown


def test_the_location_names_the_lake() -> None:
    lake = LakeAttachment("lake", PG + " password=x", "attach ...")
    location = StateLocation(None, "meta", "dev", lake)
    assert location.source == f"lake 'lake' ({PG} password=***)"
    assert location.label == "lake"
    file = StateLocation(Path("/data/x.duckdb"), "meta", "dev")
    assert (file.source, file.label) == ("/data/x.duckdb", "x.duckdb")


@pytest.mark.parametrize(
    ("values", "granularity", "key"),
    [
        ({"year": "2025", "month": "1", "day": "3"}, "day", "2025-01-03"),
        ({"year": "2025", "month": "1", "day": "3", "hour": "7"}, "hour", "2025-01-03T07"),
        ({"year": "2025", "month": "1", "day": "3", "hour": "7"}, "day", "2025-01-03"),
        ({"year": "2025", "month": "1"}, "month", "2025-01"),
        ({"year": "2025"}, "year", "2025"),
        # Weeks are laid out by day; Monday 2024-12-30 is in 2025-W01.
        ({"year": "2024", "month": "12", "day": "30"}, "week", "2025-W01"),
        # Too coarse, no partition, another layout, a value that is no number.
        ({"year": "2025", "month": "1"}, "day", None),
        ({}, "day", None),
        ({"identity": "2025-01-03"}, "day", None),
        ({"year": "x", "month": "1", "day": "1"}, "day", None),
        ({"identity": "eu"}, None, "eu"),
        ({"identity": None}, None, NULL_KEY),
        ({"year": "2025"}, None, None),
    ],
)
def test_a_lake_files_partition_key(
    values: dict[str, str | None], granularity: str | None, key: str | None
) -> None:
    assert lake_file_key(values, granularity) == key


DAY = {"field": "ts", "granularity": "day"}


def test_file_stats_add_files_and_bytes_per_partition() -> None:
    day = [("year", "ts", "2025"), ("month", "ts", "1")]
    rows = [
        *[(1, 100, *p) for p in [*day, ("day", "ts", "1")]],
        *[(2, 50, *p) for p in [*day, ("day", "ts", "1")]],
        *[(3, 70, *p) for p in [*day, ("day", "ts", "2")]],
        (4, 999, None, None, None),  # written before the table was partitioned
        *[(5, 30, *p) for p in [*day, ("day", "other", "1")]],  # another column's day
    ]
    assert file_stats(rows, DAY) == {
        "2025-01-01": FileStats(2, 150),
        "2025-01-02": FileStats(1, 70),
    }


def test_data_files_sql_reads_the_lakes_catalog() -> None:
    sql = data_files_sql("lake", "main", "o'rders")
    assert '"__ducklake_metadata_lake".ducklake_data_file f' in sql
    assert "ducklake_file_partition_value" in sql and "'o''rders'" in sql
    assert "f.end_snapshot is null" in sql


def report(files: dict[str, FileStats] | None) -> PartitionReport:
    model = ModelTarget("model.p.m", "m", '"lake"."main"."m"', DAY, "lake", "main", "m")
    infos = [
        PartitionInfo("2025-01-01", None, None, 3, None, None, "a" * 32, None),
        PartitionInfo("2025-01-02", None, None, 1, None, None, "b" * 32, None),
    ]
    lake = LakeAttachment("lake", PG, "attach ...")
    return PartitionReport(model, StateLocation(None, "sqlflow_meta", "dev", lake), infos, files)


def test_the_table_shows_files_and_bytes_on_a_lake() -> None:
    text = format_table(report({"2025-01-01": FileStats(2, 1234)}))
    lines = text.splitlines()
    assert lines[0] == '"lake"."main"."m" (day partitions on ts; state in lake:sqlflow_meta)'
    assert lines[1] == (
        "partition   range start  range end  rows  files  bytes  last load     loaded at (UTC)"
    )
    assert lines[3].split()[:4] == ["2025-01-01", "-", "-", "3"]
    assert lines[3].split()[4:6] == ["2", "1,234"]
    assert lines[4].split()[4:6] == ["0", "0"]  # no file (yet): inlined in the catalog
    assert "4 rows in 2 data files (1,234 bytes)" in lines[-1]


def test_json_shows_files_and_bytes_on_a_lake_only() -> None:
    import json

    data = json.loads(format_json(report({"2025-01-02": FileStats(1, 10)})))
    assert data["database"] == f"lake 'lake' ({PG})"
    assert [(p["data_files"], p["data_file_bytes"]) for p in data["partitions"]] == [
        (0, 0),
        (1, 10),
    ]
    assert (data["summary"]["data_files"], data["summary"]["data_file_bytes"]) == (1, 10)
    plain = json.loads(format_json(report(None)))
    assert "data_files" not in plain["partitions"][0] and "data_files" not in plain["summary"]
