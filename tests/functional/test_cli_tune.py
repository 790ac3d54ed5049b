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
        assert lines[0] == (
            "model.test.hourly: its latest load [2025-01-01T00:00:00, 2025-01-01T12:00:00)"
            " on a copy of the database"
        )
        arms = {line.split()[0]: line for line in lines[3:5]}
        assert "(as configured)" in arms["current"]
        assert "commit_every=auto" in arms["recommended"]
        assert all(line.split()[-4] == "2" for line in arms.values())  # runs
        assert lines[5].startswith(
            ("no real difference", "recommended settings faster", "current settings faster")
        )
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before
