"""`dbt-sqlflow tune`: recommendations from the load history real dbt runs recorded.

Hour batches of a few rows each (tiny: mostly per-batch overhead): with commit_every=1
they get commit_every='auto' (which loads them a group at a time); loaded batch by batch
in grouped commits (a quality check judges each), coarser batches; each with its
evidence. A model with too few batches gets nothing; the JSON has the same figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, raw_sources_yml
from test_cli_partitions import cli as _cli
from test_cli_partitions import cli_profiles, release  # noqa: F401 (a fixture)

HOURLY = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='hour',"
    " begin='2025-01-01', commit_every=1"
)
CHECKED = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='hour',"
    " begin='2025-01-01', quality_checks=[{'not_null': ['id']}]"
)
DAILY = events_model("incremental_strategy='append', event_time='event_ts', begin='2025-01-01'")


def tune(project, profiles: dict[str, Any], *args: str):
    return _cli(project, profiles, *args, command="tune", in_process=True)


class TestTuneCommand:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("events"),
            "hourly.sql": HOURLY,
            "checked.sql": CHECKED,
            "daily.sql": DAILY,
        }

    def test_recommendations_with_their_evidence(
        self,
        project,
        cli_profiles,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        create_events(project)
        # Three events an hour for 12 hours of 2025-01-01.
        project.run_sql(
            "insert into {schema}.events select i, timestamp '2025-01-01' + i * interval 20"
            " minute, 'v' from range(36) as t(i)"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-01T12:00:00")
        run_dbt(["run"])
        release(project)

        done = tune(project, cli_profiles)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].split() == [
            "model",
            "key",
            "now",
            "recommended",
            "evidence",
            "expected",
            "gain",
        ]
        found = [line.split("  ") for line in lines[2:4]]
        assert sorted([c.strip() for c in row if c.strip()][:4] for row in found) == [
            ["model.test.checked", "batch_size", "hour", "year"],
            ["model.test.hourly", "commit_every", "1", "auto"],
        ]
        for line in lines[2:4]:
            assert "median 3 rows and" in line, line
            assert "per hour batch over the last 12 batches" in line, line
        assert lines[4] == (
            "model.test.daily: nothing to recommend (only 1 batches recorded (needs 10))"
        )

        as_json = json.loads(tune(project, cli_profiles, "hourly", "--json").stdout)
        assert [a["model"] for a in as_json] == ["model.test.hourly"]
        assert as_json[0]["batches"] == 12
        assert [(r["key"], r["recommended"]) for r in as_json[0]["recommendations"]] == [
            ("commit_every", "auto"),
        ]

        # --ab: both arms measured on copies; the production file stays byte-identical.
        import hashlib

        database = Path(cli_profiles["database"])
        before = hashlib.sha256(database.read_bytes()).hexdigest()
        done = tune(project, cli_profiles, "hourly", "--ab", "--runs", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        # Its one run built the table: each A/B run rebuilds it.
        assert lines[0] == (
            "model.test.hourly: its latest load [2025-01-01T00:00:00, 2025-01-01T12:00:00)"
            " (it built the table: rebuilt, --full-refresh) on a copy of the database"
        )
        arms = {line.split()[0]: line for line in lines[3:5]}
        assert "(as configured)" in arms["current"]
        assert "commit_every=auto" in arms["recommended"]
        assert all(line.split()[-4] == "2" for line in arms.values())  # runs
        assert lines[5].startswith(
            ("no real difference", "recommended settings faster", "current settings faster")
        )
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before


# Orders created in time order over 40 days and changed 3 hours later (the last day's a
# day later again): a merge on their change time (event_ts) looks for each day's keys in
# the whole table; their created_at lies at most 27 hours before their day: a predicate
# of 3 days (twice that, in whole days).
ORDERS = """{{ config(materialized='sqlflow_incremental', incremental_strategy='merge',
    unique_key='id', event_time='event_ts', batch_size='day', begin='2025-01-01'
    PREDICATES) }}
select id, created_at, event_ts, v from {{ source('raw', 'orders') }}
"""
ADVISED = (
    ', incremental_predicates=["DBT_INTERNAL_DEST.created_at >= "'
    ' ~ sqlflow_window_start() ~ " - interval 3 day"]'
)


class TestPredicateAdvice:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("orders"),
            "orders_merged.sql": ORDERS.replace("PREDICATES", ""),
            "orders_advised.sql": ORDERS.replace("PREDICATES", ADVISED),
        }

    def test_a_merge_on_recent_keys_gets_a_window_relative_predicate(
        self,
        project,
        cli_profiles,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # 1.2M orders (10 row groups), one every 2.88 s from 2025-01-01.
        project.run_sql(
            "create table {schema}.orders as select i as id,"
            " timestamp '2025-01-01' + i * interval 2880 millisecond as created_at,"
            " timestamp '2025-01-01' + i * interval 2880 millisecond + interval 3 hour"
            " as event_ts, 'v' as v from range(1200000) as t(i)"
        )
        # The model as it is and as tune will advise it (the predicate in its config()).
        monkeypatch.setenv("SQLFLOW_NOW", "2025-02-07T00:00:00")
        run_dbt(["run"])
        # Changes to recent orders: a new version of each order created on 2025-02-06.
        project.run_sql(
            "insert into {schema}.orders select id, created_at, event_ts + interval 1 day,"
            " 'changed' from {schema}.orders where created_at >= '2025-02-06'"
            " and created_at < '2025-02-07'"
        )
        project.run_sql("delete from {schema}.orders where v = 'v' and created_at >= '2025-02-06'")
        monkeypatch.setenv("SQLFLOW_NOW", "2025-02-09T00:00:00")
        run_dbt(["run"])
        release(project)

        done = tune(project, cli_profiles, "orders_merged", "--json")
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)[0]["recommendations"]
        assert [(r["key"], r["scope"]) for r in found] == [("incremental_predicates", "sql")]
        assert found[0]["recommended"] == (
            '["DBT_INTERNAL_DEST.created_at >= " ~ sqlflow_window_start() ~'
            ' " - interval 3 day"] in the model\'s config()'
        )
        assert "before their window's start on created_at" in found[0]["evidence"]
        skipped = int(found[0]["expected_gain"].split("% of the table's row groups")[0][-2:])
        assert skipped >= 50

        # The advised model left the same rows.
        same = project.run_sql(
            "select count(*) from ((select * from {schema}.orders_merged except all"
            " select * from {schema}.orders_advised) union all (select * from"
            " {schema}.orders_advised except all select * from {schema}.orders_merged))",
            fetch="one",
        )
        assert same[0] == 0
        changed = project.run_sql(
            "select count(*), count(distinct id) from {schema}.orders_advised where v = 'changed'",
            fetch="one",
        )
        assert changed[0] == changed[1] == 30000
