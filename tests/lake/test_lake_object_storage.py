"""A DuckLake whose data files are in object storage (S3), as in production: the catalog in
PostgreSQL, the Parquet files in a bucket.

The bucket is a real S3 API served on loopback (moto's server, started by the test), and
DuckDB reaches it through its httpfs extension with the profile's ``secrets``, as it would
reach AWS, GCS or MinIO. Windowed append and merge models load into it (native day
partitions), a second ``dbt run`` in its own process loads into the same lake, a batch
that fails its quality check rolls back, and the next run loads on. Every data file the
lake lists must be an object in the bucket, in the partition folders, and every table holds
exactly the expected rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import lake_profile
from dbt.tests.util import run_dbt_and_capture
from lake_testing import DAY_ROWS, add_events, create_events, release, state, target
from sqlflow_testing import Scenario, events_model, now, own_process, raw_sources_yml, rows

BUCKET = "sqlflow-lake"
DAILY = (
    "event_time='event_ts', batch_size='day',"
    " partition_by={'field': 'event_ts', 'granularity': 'day'}"
)
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "appended.sql": events_model(f"incremental_strategy='append', {DAILY}"),
    "merged.sql": events_model(
        f"incremental_strategy='merge', unique_key='id', {DAILY}, lookback=1,"
        " quality_checks=[{'expression': \"v <> 'broken'\"}]"
    ),
}


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """An S3 API on loopback (moto's server) with the bucket, and a client of it."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        keys = {"aws_access_key_id": "sqlflow", "aws_secret_access_key": "sqlflow-secret"}
        client = boto3.client(
            "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", **keys
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"endpoint": f"{host}:{port}", "client": client, **keys}
    finally:
        server.stop()


def objects(s3: dict[str, Any], prefix: str) -> set[str]:
    """The keys of the bucket's objects under ``prefix``, as ``s3://`` paths."""
    found: set[str] = set()
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    for page in pages:
        found.update(f"s3://{BUCKET}/{o['Key']}" for o in page.get("Contents", []))
    return found


def live_files(project: Any, table: str) -> list[str]:
    """The table's data files as the lake lists them."""
    found = rows(
        project,
        f"select data_file from ducklake_list_files('lake', '{table}', schema => '{{schema}}')"
        " order by 1",
    )
    return [str(r[0]) for r in found]


def expected(days: tuple[int, ...], changed: dict[int, str] | None = None) -> list[tuple]:
    """The rows of these days of :data:`DAY_ROWS`, with ``changed`` values by id."""
    changed = changed or {}
    return sorted((i, ts, changed.get(i, v)) for d in days for i, ts, v in DAY_ROWS[d])


def snapshot(project: Any, s3: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Rows, state and files of both models, and the bucket's objects."""
    release(project)
    found = {
        name: {
            "rows": target(project, name),
            "state": state(project, name),
            "files": live_files(project, name),
        }
        for name in ("appended", "merged")
    }
    release(project)
    return {"models": found, "objects": objects(s3, prefix)}


def first_runs(project: Any) -> dict[str, Any]:
    create_events(project)
    release(project)
    run_dbt_and_capture(["run", *now("2025-01-03T18:00:00")])
    return snapshot(project, project.s3, project.prefix)


def other_process(project: Any) -> dict[str, Any]:
    # Day 4 arrives and a day-3 row is corrected; a dbt run in its own process loads both
    # models into the same lake (catalog and bucket).
    add_events(project, DAY_ROWS[4])
    project.run_sql("update {database}.{schema}.events set v = 'fixed' where id = 31")
    completed = own_process(project, "dbt", "run", env={"SQLFLOW_NOW": "2025-01-04T18:00:00"})
    return {"code": completed.returncode, "out": completed.stdout + completed.stderr}


def failed_batch(project: Any) -> dict[str, Any]:
    before = snapshot(project, project.s3, project.prefix)
    # Day 5 holds a row the merge model's check refuses: its batch rolls back.
    add_events(project, [(51, "2025-01-05 01:00:00", "broken"), (52, "2025-01-05 02:00:00", "e")])
    release(project)
    results, _ = run_dbt_and_capture(
        ["run", "-s", "merged", *now("2025-01-05T18:00:00")], expect_pass=False
    )
    return {
        "before": before,
        "after": snapshot(project, project.s3, project.prefix),
        "message": results[0].message,
    }


def repaired(project: Any) -> dict[str, Any]:
    project.run_sql("update {database}.{schema}.events set v = 'e1' where id = 51")
    release(project)
    run_dbt_and_capture(["run", *now("2025-01-05T18:00:00")])
    return snapshot(project, project.s3, project.prefix)


class TestObjectStorage:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, lake: dict[str, Any], s3: dict[str, Any]) -> dict[str, Any]:
        profile = lake_profile(lake, inline=False)
        prefix = f"{lake['catalog']}/"
        profile["attach"][0]["options"]["data_path"] = f"s3://{BUCKET}/{prefix}"
        profile["secrets"] = [
            {
                "type": "s3",
                "key_id": s3["aws_access_key_id"],
                "secret": s3["aws_secret_access_key"],
                "endpoint": s3["endpoint"],
                "url_style": "path",
                "use_ssl": "false",
                "region": "us-east-1",
            }
        ]
        return profile

    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project: Any, lake: dict[str, Any], s3: dict[str, Any]) -> Scenario:
        project.s3, project.prefix = s3, f"{lake['catalog']}/"
        return Scenario(project, first_runs, other_process, failed_batch, repaired)

    def test_batches_write_their_parquet_files_to_the_bucket(self, scenario: Scenario) -> None:
        found = scenario.after(first_runs)
        for name, model in found["models"].items():
            assert model["rows"] == expected((1, 2, 3)), name
            assert model["files"], name
            # Every live file is an object in the bucket, in its day's partition folder.
            assert set(model["files"]) <= found["objects"], name
            assert {f.split(f"/{name}/")[1].rsplit("/", 1)[0] for f in model["files"]} == {
                f"year=2025/month=1/day={d}" for d in (1, 2, 3)
            }, name
            assert model["state"]["intervals"] == [("2025-01-01 00:00:00", "2025-01-03 18:00:00")]

    def test_a_run_in_another_process_loads_into_the_same_bucket(self, scenario: Scenario) -> None:
        ran = scenario.after(other_process)
        assert ran["code"] == 0, ran["out"]
        found = scenario.after(failed_batch)["before"]
        appended, merged = found["models"]["appended"], found["models"]["merged"]
        # append adds the rest of day 3 (none) and day 4; the merge re-reads day 3 (lookback)
        # and takes the corrected row.
        assert appended["rows"] == expected((1, 2, 3, 4))
        assert merged["rows"] == expected((1, 2, 3, 4), {31: "fixed"})
        for model in (appended, merged):
            assert set(model["files"]) <= found["objects"]

    def test_a_failed_batch_leaves_table_state_and_live_files_unchanged(
        self, scenario: Scenario
    ) -> None:
        failed = scenario.after(failed_batch)
        assert "model.test.merged" in failed["message"], failed["message"]
        assert failed["after"]["models"] == failed["before"]["models"]

    def test_the_next_run_loads_on(self, scenario: Scenario) -> None:
        found = scenario.after(repaired)
        day5 = [(51, "2025-01-05 01:00:00", "e1"), (52, "2025-01-05 02:00:00", "e")]
        merged = found["models"]["merged"]
        assert merged["rows"] == sorted(expected((1, 2, 3, 4), {31: "fixed"}) + day5)
        assert set(merged["files"]) <= found["objects"]
        assert merged["state"]["intervals"] == [("2025-01-01 00:00:00", "2025-01-05 18:00:00")]
