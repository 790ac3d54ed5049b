"""sqlflow's features beyond the strategies on a DuckLake with a PostgreSQL catalog,
``threads: 4``: the ``cdc`` strategy (scd1 and scd2, deletes, events out of order across
runs), a quality check rolling a batch back, ``sqlflow_invalidate`` and a backfill range
reloading exactly their windows, the ``partitions`` and ``intervals`` commands reading the
lake (and the partitions' data files from its catalog), and the metrics export of the runs.

Each run's data is asserted row by row against a reference kept here (the cdc reference in
plain Python), and sqlflow's state in the lake with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cdc_reference import scd1_batches, scd2_in_order
from conftest import lake_profile
from dbt.tests.util import run_dbt_and_capture
from lake_testing import DAY_ROWS, create_events, release, run_lake_dbt, state, target
from sqlflow_testing import Scenario, events_model, now, raw_sources_yml, rows, run_results

CLI = str(Path(sys.executable).parent / "dbt-sqlflow")


def cli(project: Any, *args: str, profiles_dir: str | None = None) -> subprocess.CompletedProcess:
    """``dbt-sqlflow ARGS`` in its own process; the state commands on the test project and
    its profile."""
    where = ["--project-dir", str(project.project_root)]
    where += ["--profiles-dir", profiles_dir or str(project.profiles_dir)]
    return subprocess.run(
        [CLI, *args, *([] if args[0] == "metrics" else where)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
    )


# -- cdc ----------------------------------------------------------------------------------

CDC_BODY = "select id, name, lsn, op from {{ source('raw', 'feed') }}\n"


def cdc_model(extra: str = "") -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', incremental_strategy='cdc',"
        f" unique_key='id', cdc={{'sequence_by': 'lsn', 'operation': 'op'{extra}}}) }}}}\n"
        + CDC_BODY
    )


# Events (id, name, lsn, op) of each run's feed. Run 2 brings events older than ones run 1
# applied: an update of 1 (stale for scd1, a version in between for scd2), an upsert of the
# deleted key 2 before its delete, and a re-read of an applied event; run 3 deletes 3 and
# brings back 2 after its delete, with a stale re-read of 1's newest change; run 4
# truncates (every row goes) and brings 4 back, with a change of 2 before the truncate.
FEEDS = [
    [(1, "ann", 10, "c"), (2, "bob", 11, "c"), (1, "anne", 20, "u"), (2, None, 30, "d")],
    [(1, "annie", 15, "u"), (2, "bobby", 25, "u"), (1, "anne", 20, "u"), (3, "cy", 31, "c")],
    [(3, None, 40, "d"), (2, "rob", 41, "c"), (1, "anne", 20, "u"), (4, "dee", 42, "r")],
    [(None, None, 50, "t"), (4, "dora", 51, "u"), (2, "robert", 49, "u")],
]
OPS = {"c": "upsert", "u": "upsert", "r": "upsert", "d": "delete", "t": "truncate"}


def reference_events(feed: list[tuple]) -> list[tuple]:
    """A feed as cdc_reference's events: (key, seq, rank, op, values)."""
    return [(i, lsn, 0 if op == "r" else 1, OPS[op], (name,)) for i, name, lsn, op in feed]


def cdc_run(number: int) -> Any:
    def step(project: Any) -> dict:
        project.run_sql(
            "create or replace table {database}.{schema}.feed"
            " (id integer, name varchar, lsn bigint, op varchar)"
        )
        values = ", ".join(
            f"({'null' if i is None else i}, {'null' if n is None else repr(n)}, {lsn}, '{op}')"
            for i, n, lsn, op in FEEDS[number - 1]
        )
        project.run_sql(f"insert into {{database}}.{{schema}}.feed values {values}")
        run_lake_dbt(project, ["run", *now(f"2025-02-0{number}T00:00:00")])
        results = run_results(project)
        return {
            "scd1": target(project, "scd1", "id, name"),
            "scd2": target(project, "scd2", "id, name, dbt_valid_from, dbt_valid_to"),
            "counts": {
                m: tuple(
                    results[m]["adapter_response"][f"rows_{c}"]
                    for c in ("inserted", "updated", "deleted", "ignored")
                )
                for m in ("scd1", "scd2")
            },
            "ledger": {m: ledger(project, m) for m in ("scd1", "scd2")},
            "loads": {
                m: rows(
                    project,
                    "select strategy, status, rows_inserted, rows_updated, rows_deleted"
                    " from {database}.sqlflow_meta.loads"
                    f" where model = 'model.test.{m}' order by started_at",
                )
                for m in ("scd1", "scd2")
            },
        }

    step.__name__ = f"cdc_run_{number}"
    return step


CDC_RUNS = [cdc_run(n) for n in (1, 2, 3, 4)]


def ledger(project: Any, name: str) -> list[tuple]:
    """A cdc model's ledger in the lake: (id, sequence, operation)."""
    (table,) = rows(
        project,
        "select table_name from duckdb_tables() where database_name = 'lake'"
        f" and schema_name = 'sqlflow_meta' and table_name like 'cdc_{name}_%'",
    )
    return rows(
        project,
        f'select id, sqlflow_seq, sqlflow_op from {{database}}.sqlflow_meta."{table[0]}"'
        " order by all",
    )


class TestCdcOnTheLake:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("feed"),
            "scd1.sql": cdc_model(),
            "scd2.sql": cdc_model(", 'stored_as': 'scd2'"),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, *CDC_RUNS)

    @pytest.mark.parametrize("run", [1, 2, 3, 4])
    def test_scd1_holds_the_newest_change_per_key(self, scenario, run):
        found = scenario.after(CDC_RUNS[run - 1])["scd1"]
        batches = [reference_events(f) for f in FEEDS[:run]]
        expected = scd1_batches(batches)
        assert found == sorted((k, *v) for k, v in expected.items())

    @pytest.mark.parametrize("run", [1, 2, 3, 4])
    def test_scd2_holds_every_version_in_sequence_order(self, scenario, run):
        found = scenario.after(CDC_RUNS[run - 1])["scd2"]
        events = [e for f in FEEDS[:run] for e in reference_events(f)]
        assert found == sorted(scd2_in_order(events))

    def test_counts_and_loads(self, scenario):
        found = [scenario.after(step) for step in CDC_RUNS]
        # (inserted, updated, deleted, ignored) per run.
        assert [f["counts"]["scd1"] for f in found] == [
            (1, 0, 0, 0),  # 1 lives; 2 is created and deleted in the batch
            (1, 0, 0, 3),  # 3 new; 1@15, 2@25 and the re-read 1@20 are stale
            (2, 0, 1, 1),  # 3 deleted; 2 and 4 new; 1@20 stale
            (1, 0, 3, 0),  # the truncate deletes 1, 2 and 4 (2@49 before it); 4 new
        ]
        assert [f["counts"]["scd2"] for f in found] == [
            (3, 0, 0, 0),  # ann, anne; bob closed at 30
            # annie@15 splits ann (10..15, updated) and bobby@25 bob (11..25): two new
            # versions, and cy; the re-read 1@20 ignored
            (3, 2, 0, 1),
            (2, 1, 0, 1),  # cy closed; rob, dee
            # robert@49 splits rob; the truncate closes anne, robert and dee; dora
            (2, 3, 0, 0),
        ]
        loads = found[-1]["loads"]
        assert loads["scd1"] == [
            ("cdc", "success", 1, 0, 0),
            ("cdc", "success", 1, 0, 0),
            ("cdc", "success", 2, 0, 1),
            ("cdc", "success", 1, 0, 3),
        ]
        assert [r[:2] for r in loads["scd2"]] == [("cdc", "success")] * 4

    def test_ledgers(self, scenario):
        first = scenario.after(CDC_RUNS[0])["ledger"]
        assert first["scd1"] == [(1, 20, "upsert"), (2, 30, "delete")]
        assert first["scd2"] == [(2, 30, "delete")]
        last = scenario.after(CDC_RUNS[2])["ledger"]
        assert last["scd1"] == [
            (1, 20, "upsert"),
            (2, 41, "upsert"),
            (3, 40, "delete"),
            (4, 42, "upsert"),
        ]
        assert last["scd2"] == [(2, 30, "delete"), (3, 40, "delete")]
        # A truncate is a row without a key; scd1 forgets what lies before it.
        truncated = scenario.after(CDC_RUNS[3])["ledger"]
        assert truncated["scd1"] == [(4, 51, "upsert"), (None, 50, "truncate")]
        assert truncated["scd2"] == [*last["scd2"], (None, 50, "truncate")]


# -- checks, invalidate, backfill, the command line, metrics --------------------------------

DAILY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
# No lookback: a run loads only what is new, invalidated or asked for.
CHECKED = "lookback=0, quality_checks=[{'not_null': ['v']}]"
FEATURE_MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "daily.sql": events_model(f"incremental_strategy='insert_overwrite', {DAILY}, {CHECKED}"),
    "merged.sql": events_model(
        f"incremental_strategy='merge', unique_key='id', event_time='event_ts', {CHECKED}"
    ),
}
BAD = (41, "2025-01-04 01:00:00", None)


def keep(project: Any, name: str) -> Path:
    """A copy of the last command's run_results.json (the next command rewrites it)."""
    folder = Path(project.project_root) / "target"
    copy = folder / f"run_results_{name}.json"
    shutil.copyfile(folder / "run_results.json", copy)
    return copy


def snapshot(project: Any) -> dict:
    return {
        "daily": target(project, "daily"),
        "merged": target(project, "merged"),
        "state": {m: state(project, m) for m in ("daily", "merged")},
        "checks": rows(
            project,
            "select model, check_name, status from {database}.sqlflow_meta.quality_results"
            " order by all",
        ),
    }


def set_v(project: Any, ids: tuple[int, ...]) -> None:
    """Change v of these source rows (v || '!'): a reload shows it, a load left alone not."""
    listed = ", ".join(str(i) for i in ids)
    project.run_sql(
        f"update {{database}}.{{schema}}.events set v = v || '!' where id in ({listed})"
    )


def first_load(project: Any) -> dict:
    create_events(project)
    run_lake_dbt(project, ["run", *now("2025-01-04T00:00:00")])
    keep(project, "first")
    return snapshot(project)


def failed_check(project: Any) -> dict:
    # Day 4 brings a row with a null v: both models' batch of day 4 fails its check.
    text = ", ".join(
        f"({i}, timestamp '{ts}', {'null' if v is None else repr(v)})"
        for i, ts, v in [BAD, DAY_ROWS[4][1]]
    )
    project.run_sql(f"insert into {{database}}.{{schema}}.events values {text}")
    release(project)
    _, log = run_dbt_and_capture(["run", *now("2025-01-04T18:00:00")], expect_pass=False)
    release(project)
    keep(project, "failed")
    return {**snapshot(project), "log": log}


def invalidated(project: Any) -> dict:
    # Rows change on days 1, 2 and 3; only day 2 is invalidated: only it (and the new day
    # 4, now with a good row) is loaded.
    project.run_sql("update {database}.{schema}.events set v = 'd4e1' where id = 41")
    set_v(project, (11, 21, 31))
    run_lake_dbt(
        project,
        [
            "run-operation",
            "sqlflow_invalidate",
            "--args",
            "{model: daily, start: '2025-01-02', end: '2025-01-03'}",
        ],
    )
    run_lake_dbt(project, ["run", *now("2025-01-04T18:00:00")])
    keep(project, "invalidated")
    return snapshot(project)


def backfilled(project: Any) -> dict:
    # An explicit range reloads day 1 of daily only; day 3's change stays out.
    backfill = {"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-01-02"}
    backfill["sqlflow_now"] = "2025-01-04T18:00:00"
    run_lake_dbt(project, ["run", "-s", "daily", "--vars", json.dumps(backfill)])
    keep(project, "backfilled")
    return snapshot(project)


def day_rows(day: int, changed: tuple[int, ...] = ()) -> list[tuple]:
    return [(i, ts, f"{v}!" if i in changed else v) for i, ts, v in DAY_ROWS[day]]


FIRST = [r for d in (1, 2, 3) for r in day_rows(d)]


class TestWindowedFeaturesOnTheLake:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, lake: dict) -> dict:
        # Every write a Parquet file, so the partitions have data files to show.
        return lake_profile(lake, inline=False)

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return FEATURE_MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_load, failed_check, invalidated, backfilled)

    def test_first_load(self, scenario):
        found = scenario.after(first_load)
        assert found["daily"] == FIRST and found["merged"] == FIRST
        assert found["state"]["daily"]["intervals"] == [
            ("2025-01-01 00:00:00", "2025-01-04 00:00:00")
        ]
        assert found["state"]["daily"]["partitions"] == [
            ("2025-01-01", 2),
            ("2025-01-02", 2),
            ("2025-01-03", 2),
        ]

    def test_a_failed_check_leaves_target_and_state_as_they_were(self, scenario):
        before = scenario.after(first_load)
        after = scenario.after(failed_check)
        assert "quality check failed: not_null(v) (1 failing rows)" in after["log"]
        for key in ("daily", "merged", "state", "checks"):
            assert after[key] == before[key], key

    def test_invalidate_reloads_exactly_the_invalidated_range(self, scenario):
        found = scenario.after(invalidated)
        assert found["daily"] == [
            *day_rows(1),
            *day_rows(2, changed=(21,)),
            *day_rows(3),
            *day_rows(4),
        ]
        # merged was not invalidated: only day 4 is new.
        assert found["merged"] == [*FIRST, *day_rows(4)]
        daily = found["state"]["daily"]
        assert daily["intervals"] == [("2025-01-01 00:00:00", "2025-01-04 18:00:00")]
        before = scenario.after(failed_check)["state"]["daily"]["loads"]
        # Loads have whole windows; the interval of the current day ends at now.
        assert [r for r in daily["loads"] if r not in before] == [
            ("2025-01-02 00:00:00", "2025-01-03 00:00:00", "insert_overwrite", 2, 0, 2),
            ("2025-01-04 00:00:00", "2025-01-05 00:00:00", "insert_overwrite", 2, 0, 0),
        ]
        assert len(daily["loads"]) == len(before) + 2

    def test_a_backfill_range_reloads_exactly_that_range(self, scenario):
        before = scenario.after(invalidated)
        found = scenario.after(backfilled)
        assert found["daily"] == [
            *day_rows(1, changed=(11,)),
            *day_rows(2, changed=(21,)),
            *day_rows(3),
            *day_rows(4),
        ]
        assert found["merged"] == before["merged"]
        loads = found["state"]["daily"]["loads"]
        assert len(loads) == len(before["state"]["daily"]["loads"]) + 1
        assert [r for r in loads if r not in before["state"]["daily"]["loads"]] == [
            ("2025-01-01 00:00:00", "2025-01-02 00:00:00", "insert_overwrite", 2, 0, 2)
        ]
        assert found["state"]["daily"]["partitions"] == [
            ("2025-01-01", 2),
            ("2025-01-02", 2),
            ("2025-01-03", 2),
            ("2025-01-04", 2),
        ]

    def test_partitions_command_reads_the_lake_and_its_data_files(self, scenario):
        project = scenario.project
        scenario.after(backfilled)
        release(project)
        done = cli(project, "partitions", "daily", "--json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        recorded = rows(
            project,
            "select partition_key, row_count, last_load_id from {database}.sqlflow_meta.partitions"
            f' where relation = \'"lake"."{project.test_schema}"."daily"\' order by 1',
        )
        assert [(p["key"], p["rows"], p["last_load_id"]) for p in data["partitions"]] == recorded
        # Each day's live data files, as DuckLake lists them, by their hive folder.
        listed = rows(
            project,
            "select regexp_extract(data_file, 'year=(\\d+)/month=(\\d+)/day=(\\d+)',"
            " ['y', 'm', 'd']) as p, count(*), sum(data_file_size_bytes)::bigint"
            " from ducklake_list_files('lake', 'daily', schema => '{schema}') group by p",
        )
        files = {
            f"{int(p['y']):04d}-{int(p['m']):02d}-{int(p['d']):02d}": (n, size)
            for p, n, size in listed
        }
        assert sorted(files) == ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"]
        assert {
            p["key"]: (p["data_files"], p["data_file_bytes"]) for p in data["partitions"]
        } == files
        assert data["summary"]["data_files"] == sum(n for n, _ in files.values())
        assert data["database"].startswith("lake 'lake' (ducklake:postgres:dbname=")
        text = cli(project, "partitions", "daily").stdout.splitlines()
        assert text[0] == (
            f'"lake"."{project.test_schema}"."daily" (day partitions on event_ts; state in'
            " lake:sqlflow_meta)"
        )
        assert "files  bytes" in text[1]

    def test_intervals_command_reads_the_lake(self, scenario):
        project = scenario.project
        scenario.after(backfilled)
        release(project)
        done = cli(project, "intervals", "merged", "--json", "--now", "2025-01-05")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        newest = rows(
            project,
            "select load_id, finished_at from {database}.sqlflow_meta.loads"
            " where model = 'model.test.merged' order by finished_at desc limit 1",
        )[0]
        assert data["loaded"] == [
            {
                "start": "2025-01-01T00:00:00",
                "end": "2025-01-04T18:00:00",
                "last_load_id": newest[0],
                "last_finished_at": newest[1].isoformat(),
            }
        ]
        assert data["gaps"] == [{"start": "2025-01-04T18:00:00", "end": "2025-01-05T00:00:00"}]

    def test_tune_reads_the_lake(self, scenario):
        # --ab on a lake: test_lake_tune_ab.py.
        project = scenario.project
        scenario.after(backfilled)
        done = cli(project, "tune", "daily", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["model"] == "model.test.daily"

    def test_an_unreachable_lake_is_named_with_the_fix(self, scenario, tmp_path):
        project = scenario.project
        scenario.after(first_load)
        profile = lake_profile(
            {
                "dsn": "dbname=nowhere host=/nonexistent user=u password=pw",
                "data_path": "/tmp/none/",
            }
        )
        profile["schema"] = project.test_schema
        (tmp_path / "profiles.yml").write_text(
            yaml.safe_dump({"test": {"target": "default", "outputs": {"default": profile}}})
        )
        done = cli(project, "partitions", "daily", profiles_dir=str(tmp_path))
        assert done.returncode == 2
        assert done.stderr.startswith(
            "Error: lake 'lake' (ducklake:postgres:dbname=nowhere host=/nonexistent user=u"
            " password=***): cannot attach it read-only ("
        )
        assert "pw" not in done.stderr.replace("password", "")
        assert done.stderr.rstrip().endswith(
            "Fix: check that attach path and its options in profiles.yml (target 'default'),"
            " and that its catalog and data path are reachable from here"
        )

    def test_metrics_export_shows_the_loads(self, scenario):
        project = scenario.project
        scenario.after(backfilled)
        folder = Path(project.project_root) / "target"

        def export(name: str) -> dict:
            done = cli(
                project,
                "metrics",
                "export",
                "--format",
                "json",
                "--run-results",
                str(folder / f"run_results_{name}.json"),
                "--manifest",
                str(folder / "manifest.json"),
            )
            assert done.returncode == 0, done.stderr
            return {
                (s["name"], s["labels"].get("model", "").split(".")[-1]): s["value"]
                for family in json.loads(done.stdout)["metrics"]
                for s in family["samples"]
            }

        loaded = export("invalidated")
        results = json.loads((folder / "run_results_invalidated.json").read_text())
        for result in results["results"]:
            name = result["unique_id"].split(".")[-1]
            response = result["adapter_response"]
            assert loaded[("sqlflow_rows_inserted_total", name)] == response["rows_inserted"]
            assert loaded[("sqlflow_model_batches", name)] == response["batches"]
        # daily: the invalidated day 2 and the new day 4, two rows each.
        assert loaded[("sqlflow_rows_inserted_total", "daily")] == 4
        assert loaded[("sqlflow_model_batches", "daily")] == 2
        failed = export("failed")
        assert failed[("sqlflow_quality_checks_failed_total", "daily")] == 1
        assert failed[("sqlflow_run_success", "")] == 0


class TestCommandLineOnADuckdbFileCatalog:
    """The laptop lake: its catalog in a DuckDB file, which the writing process locks."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        folder = tmp_path_factory.mktemp("file_lake")
        return {
            "type": "sqlflow",
            "path": ":memory:",
            "database": "lake",
            "threads": 4,
            "attach": [
                {
                    "path": f"ducklake:{folder}/catalog.ducklake",
                    "alias": "lake",
                    "options": {"data_path": f"{folder}/data/", "data_inlining_row_limit": 0},
                }
            ],
        }

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("events"), "daily.sql": FEATURE_MODELS["daily.sql"]}

    def test_partitions_and_intervals(self, project):
        create_events(project)
        run_lake_dbt(project, ["run", *now("2025-01-04T00:00:00")])
        # This process still has the catalog open: the command says to wait.
        project.run_sql("select 1")
        locked = cli(project, "partitions", "daily")
        assert locked.returncode == 2
        assert "its catalog is locked by another process" in locked.stderr
        assert locked.stderr.rstrip().endswith(
            "Fix: wait for the running dbt command to finish, then try again"
        )
        release(project)
        done = cli(project, "partitions", "daily", "--json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert [(p["key"], p["rows"], p["data_files"]) for p in data["partitions"]] == [
            ("2025-01-01", 2, 1),
            ("2025-01-02", 2, 1),
            ("2025-01-03", 2, 1),
        ]
        done = cli(project, "intervals", "daily", "--json", "--now", "2025-01-04")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert [(r["start"], r["end"]) for r in data["loaded"]] == [
            ("2025-01-01T00:00:00", "2025-01-04T00:00:00")
        ]
        assert data["gaps"] == []
