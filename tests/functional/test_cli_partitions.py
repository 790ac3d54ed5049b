"""`dbt-sqlflow partitions MODEL`: the partition table of real dbt runs, and every error.

A project with a day-partitioned model (two runs: a late row re-read through lookback and
a new day), a value-partitioned model, a view, an unpartitioned sqlflow model and a
partitioned model that never ran. The CLI reads a profiles.yml written here (its ``dev``
target is the test's DuckDB file, its path given through ``env_var()``), so its output is
checked against the data and sqlflow's ``loads`` table row by row.

The CLI runs in a subprocess: it opens the database read-only, which DuckDB refuses inside
a process that holds the same file open for writing (as dbt's adapter here does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import now, raw_sources_yml, release, rows

CLI = [str(Path(sys.executable).parent / "dbt-sqlflow")]

sources_yml = raw_sources_yml("events")

daily_sql = """
{{ config(materialized='sqlflow_incremental', incremental_strategy='insert_overwrite',
          partition_by={'field': 'event_ts', 'granularity': 'day'}, lookback=1) }}
select id, event_ts, region from {{ source('raw', 'events') }}
"""

by_region_sql = """
{{ config(materialized='sqlflow_incremental', incremental_strategy='insert_overwrite',
          partition_by={'field': 'region'}) }}
select id, region from {{ source('raw', 'events') }}
"""

never_run_sql = """
{{ config(materialized='sqlflow_incremental', incremental_strategy='insert_overwrite',
          partition_by={'field': 'event_ts', 'granularity': 'day'}) }}
select id, event_ts from {{ source('raw', 'events') }}
"""

unpartitioned_sql = """
{{ config(materialized='sqlflow_incremental', incremental_strategy='merge', unique_key='id') }}
select id, region from {{ source('raw', 'events') }}
"""

view_sql = "{{ config(materialized='view') }} select * from {{ source('raw', 'events') }}"


@pytest.fixture(scope="class")
def cli_profiles(project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A profiles.yml for the CLI: profile ``test`` with targets for each case."""
    folder = tmp_path_factory.mktemp("cli_profiles")
    empty = folder / "empty.duckdb"
    import duckdb

    duckdb.connect(str(empty)).close()
    database = Path(project.adapter.config.credentials.path)
    (folder / "profiles.yml").write_text(
        f"""
test:
  target: dev
  outputs:
    dev:
      type: sqlflow
      path: "{{{{ env_var('SQLFLOW_CLI_TEST_DB') }}}}"
      schema: {project.test_schema}
    empty:
      type: sqlflow
      path: "{empty}"
    missing:
      type: sqlflow
      path: "{folder / "nowhere.duckdb"}"
    memory:
      type: sqlflow
      path: ":memory:"
    other:
      type: duckdb
      path: "{database}"
    renamed_state:
      type: sqlflow
      path: "{database}"
      sqlflow_state_schema: elsewhere
"""
    )
    yield {"dir": folder, "database": database, "empty": empty}


def cli(
    project,
    profiles: dict[str, Any],
    *args: str,
    project_dir: str | None = None,
    in_process: bool = False,
    command: str = "partitions",
) -> subprocess.CompletedProcess:
    """Run ``dbt-sqlflow COMMAND ARGS`` (``partitions`` by default) against the test project.

    In a subprocess by default, as a user runs it; ``in_process`` uses click's runner
    (faster; only after :func:`release`, as the command opens the database file).
    """
    argv = [
        command,
        *args,
        "--project-dir",
        project_dir or str(project.project_root),
        "--profiles-dir",
        str(profiles["dir"]),
    ]
    env = {"SQLFLOW_CLI_TEST_DB": str(profiles["database"])}
    if in_process:
        from click.testing import CliRunner

        from dbt.adapters.sqlflow.cli import cli as command

        result = CliRunner(env=env).invoke(command, argv)
        return subprocess.CompletedProcess(argv, result.exit_code, result.stdout, result.stderr)
    return subprocess.run(
        [*CLI, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def expected_partitions(project, name: str) -> list[dict[str, Any]]:
    """Per day of the model: key, range, row count and the last load whose window holds it."""
    relation = f"{project.database}.{project.test_schema}.{name}"
    found = rows(
        project,
        f"""
        with days as (
            select date_trunc('day', event_ts) as day, count(*) as n from {relation} group by 1
        ),
        windows as (
            select load_id, window_start, window_end, finished_at from sqlflow_meta.loads
            where model = 'model.test.{name}'
        )
        select strftime(d.day, '%Y-%m-%d'), d.day, d.day + interval 1 day, d.n,
               arg_max(w.load_id, w.finished_at)
        from days as d join windows as w on d.day >= w.window_start and d.day < w.window_end
        group by all order by 1
        """,
    )
    return [
        {"key": k, "start": s, "end": e, "rows": n, "load_id": lid} for k, s, e, n, lid in found
    ]


def table_rows(output: str) -> list[list[str]]:
    """The data lines of the printed table (between the dashes and the summary)."""
    lines = output.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("---"))
    return [line.split() for line in lines[dashes + 1 : -1]]


def error_cases(project, profiles: dict[str, Any], tmp_path: Path) -> dict[str, tuple]:
    """Per failure: the CLI arguments, cli()'s keyword arguments and the whole message."""
    manifest = Path(project.project_root) / "target" / "manifest.json"
    database = profiles["database"]
    return {
        "no_manifest": (
            ["daily"],
            {"project_dir": str(tmp_path)},
            f"Error: {tmp_path / 'target' / 'manifest.json'}: no manifest. Fix: run"
            " `dbt parse` (or `dbt run`) in the project first, or pass --project-dir",
        ),
        "unknown_model": (
            ["nope"],
            {},
            f"Error: model 'nope': not in {manifest}; partitioned sqlflow models: by_region,"
            " daily, never_run. Fix: pass a model name or unique_id of this project (run"
            " `dbt parse` if the model is new)",
        ),
        "view": (
            ["plain_view"],
            {},
            "Error: model 'model.test.plain_view': materialized 'view', not"
            " 'sqlflow_incremental', so sqlflow keeps no partitions for it. Fix: choose a"
            " sqlflow_incremental model with partition_by",
        ),
        "unpartitioned": (
            ["unpartitioned"],
            {},
            "Error: model 'model.test.unpartitioned': has no partition_by, so it has no"
            " partitions. Fix: set partition_by, e.g. {'field': 'event_ts', 'granularity':"
            " 'day'}, and run it",
        ),
        "never_run": (
            ["never_run"],
            {},
            f"Error: model 'model.test.never_run': no partitions of"
            f' "sqlflow"."{project.test_schema}"."never_run" recorded in {database}'
            " (sqlflow_meta.partitions). Fix: run it first: dbt run -s never_run",
        ),
        "no_state": (
            ["daily", "--target", "empty"],
            {},
            f"Error: {profiles['empty']}: no sqlflow state (no table sqlflow_meta.partitions)."
            " Fix: run the model first: dbt run -s daily",
        ),
        "other_state_schema": (
            ["daily", "--target", "renamed_state"],
            {},
            f"Error: {database}: no sqlflow state (no table elsewhere.partitions). Fix: run"
            " the model first: dbt run -s daily",
        ),
        "missing_file": (
            ["daily", "--target", "missing"],
            {},
            f"Error: {profiles['dir'] / 'nowhere.duckdb'}: database file not found. Fix: run"
            " `dbt run -s daily` to create it, or check path in profiles.yml and the folder"
            " you run from",
        ),
        "in_memory": (
            ["daily", "--target", "memory"],
            {},
            f"Error: {profiles['dir'] / 'profiles.yml'}: target 'memory' has path ':memory:',"
            " not a DuckDB file this command can open, and its database 'memory' is no"
            " DuckLake under attach. Fix: point path at a DuckDB file, or set database to"
            " the alias of an attached 'ducklake:' path",
        ),
        "not_sqlflow": (
            ["daily", "--target", "other"],
            {},
            f"Error: {profiles['dir'] / 'profiles.yml'}: target 'other' of profile 'test' is"
            " type 'duckdb', not 'sqlflow'. Fix: pass --target with a sqlflow target",
        ),
        "unknown_target": (
            ["daily", "--target", "prod"],
            {},
            f"Error: {profiles['dir'] / 'profiles.yml'}: The profile 'test' does not have a"
            " target named 'prod'. The valid target names for this profile are: - dev -"
            " empty - missing - memory - other - renamed_state",
        ),
    }


ERROR_CASES = [
    "no_manifest",
    "unknown_model",
    "view",
    "unpartitioned",
    "never_run",
    "no_state",
    "other_state_schema",
    "missing_file",
    "in_memory",
    "not_sqlflow",
    "unknown_target",
]


class TestPartitionsCommand:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": sources_yml,
            "daily.sql": daily_sql,
            "by_region.sql": by_region_sql,
            "never_run.sql": never_run_sql,
            "unpartitioned.sql": unpartitioned_sql,
            "plain_view.sql": view_sql,
        }

    @pytest.fixture(scope="class")
    def loaded(self, project) -> dict[str, Any]:
        """Two runs of every model but never_run, and what the CLI must print of them."""
        project.run_sql(
            "create or replace table {schema}.events"
            " (id integer, event_ts timestamp, region varchar)"
        )
        project.run_sql(
            "insert into {schema}.events values"
            " (1, '2025-01-01 01:00', 'eu'), (2, '2025-01-01 05:00', 'us'),"
            " (3, '2025-01-02 01:00', 'eu'), (4, '2025-01-02 02:00', 'eu'),"
            " (5, '2025-01-02 03:00', null), (6, '2025-01-03 04:00', 'eu')"
        )
        run_dbt(["run", "--exclude", "never_run", *now("2025-01-03T12:00:00")])
        # Day 4 arrives, and a late row for day 3 (re-read through lookback).
        project.run_sql(
            "insert into {schema}.events values"
            " (7, '2025-01-04 01:00', 'us'), (8, '2025-01-03 09:00', 'apac')"
        )
        run_dbt(["run", "--exclude", "never_run", *now("2025-01-04T12:00:00")])

        relation = f'"sqlflow"."{project.test_schema}"."daily"'
        loaded_at = dict(
            rows(
                project,
                "select partition_key, strftime(last_loaded_at, '%Y-%m-%d %H:%M:%S')"
                f" from sqlflow_meta.partitions where relation = '{relation}'",
            )
        )
        loaded = {
            "expected": expected_partitions(project, "daily"),
            "relation": relation,
            "loaded_at": loaded_at,
            "newest_load": max(loaded_at.values()),
            "minmax": {
                k: (lo, hi)
                for k, lo, hi in rows(
                    project,
                    "select strftime(event_ts, '%Y-%m-%d'), min(event_ts)::varchar,"
                    " max(event_ts)::varchar from {schema}.daily group by 1",
                )
            },
            "counts": dict(
                rows(
                    project,
                    "select coalesce(region, '__null__'), count(*) from {schema}.by_region"
                    " group by 1",
                )
            ),
        }
        release(project)
        return loaded

    def test_two_runs_leave_four_day_partitions_of_four_loads(self, loaded) -> None:
        expected = loaded["expected"]
        assert [(p["key"], p["rows"]) for p in expected] == [
            ("2025-01-01", 2),
            ("2025-01-02", 3),
            ("2025-01-03", 2),
            ("2025-01-04", 1),
        ]
        # Days 1-2 keep the first run's loads; days 3-4 were reloaded by the second.
        assert len({p["load_id"] for p in expected}) == 4

    def test_table_lists_each_partition_row_by_row(self, project, cli_profiles, loaded) -> None:
        expected, relation, loaded_at = loaded["expected"], loaded["relation"], loaded["loaded_at"]
        release(project)
        done = cli(project, cli_profiles, "daily")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == (
            f"{relation} (day partitions on event_ts; state in sqlflow.duckdb:sqlflow_meta)"
        )
        assert lines[1].split() == [
            "partition",
            "range",
            "start",
            "range",
            "end",
            "rows",
            "last",
            "load",
            "loaded",
            "at",
            "(UTC)",
        ]
        printed = table_rows(done.stdout)
        assert [r[:6] for r in printed] == [
            [
                p["key"],
                *str(p["start"]).split(),
                *str(p["end"]).split(),
                str(p["rows"]),
            ]
            for p in expected
        ]
        assert [r[6] for r in printed] == [p["load_id"][:12] for p in expected]
        assert [" ".join(r[7:9]) for r in printed] == [loaded_at[p["key"]] for p in expected]
        assert lines[-1] == (
            "daily: 4 partitions, 8 rows, 2025-01-01 .. 2025-01-04, newest with rows"
            f" 2025-01-04, last load {loaded['newest_load']} UTC"
        )

    def test_last_selects_the_newest_rows_and_the_summary_covers_all(
        self, project, cli_profiles, loaded
    ) -> None:
        release(project)
        # The summary without --last (in process: only its last line is used here).
        lines = cli(project, cli_profiles, "daily", in_process=True).stdout.splitlines()
        # --last selects rows; the summary still covers all partitions.
        done = cli(project, cli_profiles, "model.test.daily", "--last", "2")
        assert done.returncode == 0, done.stderr
        assert [r[0] for r in table_rows(done.stdout)] == ["2025-01-03", "2025-01-04"]
        assert "the last 2 of 4 partitions" in done.stdout.splitlines()[0]
        assert done.stdout.splitlines()[-1] == lines[-1]

    def test_json_lists_each_partition_row_by_row(self, project, cli_profiles, loaded) -> None:
        expected, minmax = loaded["expected"], loaded["minmax"]
        release(project)
        done = cli(project, cli_profiles, "daily", "--json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert data["model"] == "model.test.daily"
        assert data["relation"] == loaded["relation"]
        assert data["partition_by"] == {"field": "event_ts", "granularity": "day"}
        assert data["database"] == str(cli_profiles["database"])
        assert data["state_schema"] == "sqlflow_meta"
        assert [
            (
                p["key"],
                p["range_start"],
                p["range_end"],
                p["rows"],
                p["last_load_id"],
                p["min_value"],
                p["max_value"],
            )
            for p in data["partitions"]
        ] == [
            (
                p["key"],
                p["start"].isoformat(),
                p["end"].isoformat(),
                p["rows"],
                p["load_id"],
                *minmax[p["key"]],
            )
            for p in expected
        ]
        summary = data["summary"]
        assert {
            k: v for k, v in summary.items() if k not in ("last_load_id", "last_loaded_at")
        } == {
            "partition_count": 4,
            "empty_partitions": 0,
            "total_rows": 8,
            "oldest_partition": "2025-01-01",
            "newest_partition": "2025-01-04",
            "newest_nonempty_partition": "2025-01-04",
        }
        assert summary["last_loaded_at"].replace("T", " ").startswith(loaded["newest_load"])

    def test_value_partitions_are_keyed_by_value_without_ranges(
        self, project, cli_profiles, loaded
    ) -> None:
        # Value partitions: no ranges; keys are the values (NULL as __null__).
        counts = loaded["counts"]
        release(project)
        done = cli(project, cli_profiles, "by_region", "--json")
        assert done.returncode == 0, done.stderr
        got = {
            p["key"]: (p["rows"], p["range_start"], p["range_end"])
            for p in json.loads(done.stdout)["partitions"]
        }
        assert got == {k: (n, None, None) for k, n in counts.items()}
        done = cli(project, cli_profiles, "by_region")
        assert "(value partitions on region;" in done.stdout.splitlines()[0]
        assert {r[0]: (r[1], r[2], r[3]) for r in table_rows(done.stdout)} == {
            k: ("-", "-", str(n)) for k, n in counts.items()
        }

    @pytest.mark.parametrize("case", ERROR_CASES)
    def test_error_says_what_failed_and_the_fix(
        self, project, cli_profiles, loaded, tmp_path: Path, case: str
    ) -> None:
        args, kwargs, message = error_cases(project, cli_profiles, tmp_path)[case]
        release(project)
        done = cli(project, cli_profiles, *args, **kwargs, in_process=True)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n"), args

    def test_locked_database(self, project, cli_profiles, loaded) -> None:
        """A dbt process writing to the file: the CLI says so instead of waiting or failing."""
        profiles = cli_profiles
        release(project)
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
                " print('ready', flush=True); time.sleep(60)",
                str(profiles["database"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            done = cli(project, profiles, "daily")
        finally:
            holder.kill()
            holder.wait()
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.startswith(f"Error: {profiles['database']}: locked by another process")
        assert done.stderr.endswith(
            "Fix: wait for the running dbt command to finish, then try again\n"
        )
        assert "Traceback" not in done.stderr
