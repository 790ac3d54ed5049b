"""`dbt-sqlflow tune MODEL --ab --apply` on a real project: the recommended settings are
written into the model's properties YAML (the rest of the file kept) only when the A/B
found them faster beyond the runs' spread; the source database stays byte-identical.

``daily`` loaded 300 one-row days in one run, one transaction each (``commit_every: 1``
in its YAML): ``commit_every: auto`` loads them as one statement, far beyond the noise.
``quiet`` has the same history but its latest run loaded one day: both arms load that
one day, so the difference is noise and nothing is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, raw_sources_yml, release
from test_cli_partitions import cli as _cli
from test_cli_partitions import cli_profiles  # noqa: F401 (a fixture)

MODEL = events_model("incremental_strategy='append', event_time='event_ts', begin='2025-01-01'")
PROPERTIES = """version: 2
# properties of the tuned models
models:
  - name: daily
    description: "one row a day"  # kept
    config:
      commit_every: 1
  - name: quiet
    config:
      commit_every: 1
"""


def tune(project: Any, profiles: dict[str, Any], *args: str) -> Any:
    return _cli(project, profiles, *args, command="tune", in_process=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestTuneApply:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("events"),
            "daily.sql": MODEL,
            "quiet.sql": MODEL,
            "properties.yml": PROPERTIES,
        }

    def test_applied_when_real_not_when_noise(
        self,
        project: Any,
        cli_profiles: dict[str, Any],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select i, timestamp '2025-01-01' + i * interval 1 day"
            " + interval 1 hour, 'v' from range(300) as t(i)"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-10-27T00:00:00")
        run_dbt(["run", "-s", "quiet"])
        monkeypatch.setenv("SQLFLOW_NOW", "2025-10-28T00:00:00")
        run_dbt(["run"])  # daily: 300 days at once; quiet: its one new day
        release(project)
        database = Path(cli_profiles["database"])
        properties = Path(project.project_root) / "models" / "properties.yml"
        before = digest(database)

        done = tune(project, cli_profiles, "quiet", "--ab", "--runs", "5", "--apply")
        assert done.returncode == 0, done.stdout + done.stderr
        # Its latest run loaded one more day (no rebuild).
        assert "[2025-10-27T00:00:00, 2025-10-28T00:00:00) on a copy" in done.stdout
        assert done.stdout.splitlines()[-1].startswith("not applied: no real difference")
        assert properties.read_text() == PROPERTIES
        assert digest(database) == before

        done = tune(project, cli_profiles, "daily", "--ab", "--runs", "2", "--apply")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert "(it built the table: rebuilt, --full-refresh)" in lines[0]
        assert lines[-2].startswith("recommended settings faster")
        assert lines[-1] == (f"applied to {properties}: commit_every: auto (config of daily)")
        assert properties.read_text() == PROPERTIES.replace(
            "      commit_every: 1\n  - name: quiet",
            '      commit_every: "auto"\n  - name: quiet',
        )
        assert digest(database) == before
        # dbt reads the new config.
        manifest = run_dbt(["parse"])
        config = manifest.nodes["model.test.daily"].config
        assert (config.get("batch_size"), config.get("commit_every")) == (None, "auto")
        assert manifest.nodes["model.test.quiet"].config.get("commit_every") == 1
