"""`dbt-sqlflow tune`: recommendations from the load history real dbt runs recorded.

Hour batches of a few rows each (tiny: mostly per-batch overhead), with commit_every=1,
get coarser batches and commit_every='auto', each with its evidence; a model with
too few batches gets nothing; the JSON has the same figures.
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
DAILY = events_model("incremental_strategy='append', event_time='event_ts', begin='2025-01-01'")


def tune(project, profiles: dict[str, Any], *args: str):
    return _cli(project, profiles, *args, command="tune", in_process=True)


class TestTuneCommand:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {"sources.yml": raw_sources_yml("events"), "hourly.sql": HOURLY, "daily.sql": DAILY}

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
        hourly = [line.split("  ") for line in lines[2:4]]
        assert [[c.strip() for c in row if c.strip()][:4] for row in hourly] == [
            ["model.test.hourly", "batch_size", "hour", "year"],
            ["model.test.hourly", "commit_every", "1", "auto"],
        ]
        assert (
            "median 3 rows and" in lines[2]
            and "per hour batch over the last 12 batches" in lines[2]
        )
        assert lines[4] == (
            "model.test.daily: nothing to recommend (only 1 batches recorded (needs 10))"
        )

        as_json = json.loads(tune(project, cli_profiles, "hourly", "--json").stdout)
        assert [a["model"] for a in as_json] == ["model.test.hourly"]
        assert as_json[0]["batches"] == 12
        assert [(r["key"], r["recommended"]) for r in as_json[0]["recommendations"]] == [
            ("batch_size", "year"),
            ("commit_every", "auto"),
        ]

        # --ab: both arms measured on copies; the production file stays byte-identical.
        import hashlib

        database = Path(cli_profiles["database"])
        before = hashlib.sha256(database.read_bytes()).hexdigest()
        done = tune(project, cli_profiles, "hourly", "--ab", "--runs", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == (
            "model.test.hourly: its latest load [2025-01-01T00:00:00, 2025-01-01T12:00:00)"
            " on a copy of the database"
        )
        arms = {line.split()[0]: line for line in lines[3:5]}
        assert "(as configured)" in arms["current"]
        assert "batch_size=year, commit_every=auto" in arms["recommended"]
        assert all(line.split()[-4] == "2" for line in arms.values())  # runs
        assert lines[5].startswith(
            ("no real difference", "recommended settings faster", "current settings faster")
        )
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before
