"""Undo of committed loads on a DuckLake with a PostgreSQL catalog (``dbt-sqlflow restore``).

Two runs load a windowed append model and a windowed merge model (with a reference copy
of each that is never restored); then the second run's loads are undone, one model by
``--before-load`` through the ``dbt-sqlflow`` command in its own process, the other by
``at`` through the run-operation. Each model's table and its state rows (loads, intervals
with their loads, partitions with their figures, quality results) must be exactly as they
were after the first run, in one new snapshot; the next run loads the undone windows
again and ends equal, row by row, to the reference models.
"""

from __future__ import annotations

from typing import Any

import pytest
from dbt.tests.util import run_dbt_and_capture
from lake_testing import DAY_ROWS, add_events, create_events, release, run_lake_dbt, target
from sqlflow_testing import Scenario, dbt_sqlflow, events_model, now, raw_sources_yml, rows

DAILY = "event_time='event_ts', batch_size='day', partition_by={'field': 'event_ts',"
DAILY += " 'granularity': 'day'}"
APPEND = events_model(f"incremental_strategy='append', {DAILY}")
MERGE = events_model(
    f"incremental_strategy='merge', unique_key='id', {DAILY}, lookback=1,"
    " quality_checks=[{'not_null': ['v']}]"
)
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "appended.sql": APPEND,
    "appended_ref.sql": APPEND,
    "merged.sql": MERGE,
    "merged_ref.sql": MERGE,
}
META = "{database}.sqlflow_meta"


def full_state(project: Any, name: str) -> dict[str, list[tuple]]:
    """Every state row of one model, with ids and times (what a restore must put back)."""
    model = f"'model.test.{name}'"
    return {
        "loads": rows(
            project,
            f"select * exclude (state_seconds, commit_seconds) from {META}.loads"
            f" where model = {model} order by all",
        ),
        "intervals": rows(
            project,
            f"select interval_start, interval_end, relation, load_id, loaded_at from"
            f" {META}.intervals where model = {model} order by all",
        ),
        "partitions": rows(
            project,
            f"select * from {META}.partitions where relation like '%\"{name}\"' order by all",
        ),
        "quality": rows(
            project, f"select * from {META}.quality_results where model = {model} order by all"
        ),
    }


def snapshots(project: Any) -> list[tuple]:
    return rows(
        project,
        "select snapshot_id, snapshot_time, commit_message from ducklake_snapshots('lake')"
        " order by snapshot_id",
    )


def record(project: Any) -> dict:
    release(project)
    found = {
        name: {"rows": target(project, name), "state": full_state(project, name)}
        for name in ("appended", "appended_ref", "merged", "merged_ref")
    }
    found["snapshots"] = snapshots(project)
    release(project)
    return found


SCENARIO_TIMES: dict[str, str] = {}


def first_run(project: Any) -> dict:
    create_events(project)
    run_lake_dbt(project, ["run", *now("2025-01-03T18:00:00")])
    found = record(project)
    SCENARIO_TIMES["first"] = found["snapshots"][-1][1].isoformat()
    return found


def second_run(project: Any) -> dict:
    add_events(project, [(33, "2025-01-03 20:00:00", "d3e3"), *DAY_ROWS[4]])
    project.run_sql("update {database}.{schema}.events set v = 'd3e1!' where id = 31")
    run_lake_dbt(project, ["run", *now("2025-01-04T18:00:00")])
    return record(project)


def second_loads(project: Any, name: str) -> list[str]:
    """The load ids of the model's second run, in load order."""
    found = rows(
        project,
        f"select load_id from {META}.loads where model = 'model.test.{name}'"
        " and invocation_id = (select invocation_id from"
        f" {META}.loads where model = 'model.test.{name}' order by started_at desc limit 1)"
        " order by started_at",
    )
    return [r[0] for r in found]


def restored(project: Any) -> dict:
    second = [second_loads(project, name) for name in ("appended", "merged")]
    release(project)
    # appended: by load id, through the command line, in its own process.
    cli = dbt_sqlflow(project, "restore", "appended", "--before-load", second[0][0])
    # merged: by time, that of the lake's last snapshot before the second run's changes.
    last_first = SCENARIO_TIMES["first"]
    _, log = run_dbt_and_capture(
        ["run-operation", "sqlflow_restore", "--args", f"{{model: merged, at: '{last_first}'}}"]
    )
    found = record(project)
    found.update(cli=cli, log=log, second=second)
    return found


def rerun(project: Any) -> dict:
    run_lake_dbt(project, ["run", *now("2025-01-04T18:00:00")])
    return record(project)


class TestRestoreOnTheLake:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_run, second_run, restored, rerun)

    def test_the_second_run_changed_both_models(self, scenario):
        first, second = scenario.after(first_run), scenario.after(second_run)
        for name in ("appended", "merged"):
            assert second[name]["rows"] != first[name]["rows"], name
            assert len(second[name]["state"]["loads"]) > len(first[name]["state"]["loads"])

    def test_the_command_reports_what_it_undid(self, scenario):
        found = scenario.after(restored)
        assert found["cli"].returncode == 0, found["cli"].stdout + found["cli"].stderr
        out = found["cli"].stdout
        assert "sqlflow restore of model.test.appended" in out, out
        assert f"loads undone: {len(found['second'][0])} (" in out, out
        assert "unloaded again (the next run loads them): [2025-01-03 18:00:00," in out, out
        assert "sqlflow restore of model.test.merged" in found["log"]
        assert f"loads undone: {len(found['second'][1])} (" in found["log"]

    @pytest.mark.parametrize("name", ["appended", "merged"])
    def test_table_and_state_are_as_after_the_first_run(self, scenario, name):
        first, found = scenario.after(first_run), scenario.after(restored)
        assert found[name]["rows"] == first[name]["rows"]
        assert found[name]["state"] == first[name]["state"]

    def test_the_references_are_untouched(self, scenario):
        second, found = scenario.after(second_run), scenario.after(restored)
        for name in ("appended_ref", "merged_ref"):
            assert found[name] == second[name], name

    def test_each_restore_is_one_new_snapshot_and_history_stays(self, scenario, project):
        second, found = scenario.after(second_run), scenario.after(restored)
        new = found["snapshots"][len(second["snapshots"]) :]
        assert [s[:1] for s in found["snapshots"][: len(second["snapshots"])]] == [
            s[:1] for s in second["snapshots"]
        ]
        messages = [s[2] or "" for s in new]
        assert len(new) == 2, new
        assert "model.test.appended as at snapshot" in messages[0]
        assert "model.test.merged as at snapshot" in messages[1]
        # The undone rows are still readable by time travel.
        before = new[0][0] - 1
        old = rows(
            project,
            "select id, event_ts::varchar, v from"
            f" {{database}}.{{schema}}.appended at (version => {before}) order by all",
        )
        assert old == second["appended"]["rows"]

    @pytest.mark.parametrize("name", ["appended", "merged"])
    def test_the_next_run_loads_the_undone_windows_again(self, scenario, name):
        second, found = scenario.after(second_run), scenario.after(rerun)
        assert found[name]["rows"] == found[f"{name}_ref"]["rows"]
        assert found[name]["rows"] == second[name]["rows"]
        intervals = [r[:2] for r in found[name]["state"]["intervals"]]
        assert intervals == [r[:2] for r in second[name]["state"]["intervals"]]
        partitions = [(r[1], r[4]) for r in found[name]["state"]["partitions"]]
        assert partitions == [(r[1], r[4]) for r in second[name]["state"]["partitions"]]
        windows = sorted(r[5:7] for r in found[name]["state"]["loads"])
        assert windows == sorted(r[5:7] for r in second[name]["state"]["loads"])


def failed_restore(project: Any, args: str) -> str:
    """The log of a sqlflow_restore run-operation that must fail."""
    release(project)
    try:
        _, log = run_dbt_and_capture(
            ["run-operation", "sqlflow_restore", "--args", args], expect_pass=False
        )
    finally:
        release(project)
    return " ".join(log.split())


class TestRestoreErrors:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": MODELS["sources.yml"], "appended.sql": APPEND, "merged.sql": MERGE}

    @pytest.fixture(scope="class")
    def loaded(self, project) -> dict:
        create_events(project)
        run_lake_dbt(project, ["run", *now("2025-01-03T18:00:00")])
        found = {
            name: [
                r[0]
                for r in rows(
                    project,
                    f"select load_id from {META}.loads where model ="
                    f" 'model.test.{name}' order by started_at",
                )
            ]
            for name in ("appended", "merged")
        }
        found["snapshots"] = snapshots(project)
        found["state"] = full_state(project, "appended")
        release(project)
        return found

    def test_an_unknown_load_is_named(self, project, loaded):
        log = failed_restore(project, "{model: appended, before_load: nosuchload}")
        assert "sqlflow restore of model.test.appended: no load 'nosuchload' in" in log, log
        assert "Fix: pass a load_id of the model, from: select load_id" in log, log

    def test_a_load_of_another_model_is_named(self, project, loaded):
        other = loaded["appended"][0]
        log = failed_restore(project, f"{{model: merged, before_load: {other}}}")
        assert (
            f"load '{other}' is a load of model.test.appended, not of model.test.merged" in log
        ), log
        assert f"dbt-sqlflow restore appended --before-load {other}" in log, log

    def test_a_time_before_the_table_existed_is_named(self, project, loaded):
        # The lake's first snapshot: the schema, before any table.
        at = loaded["snapshots"][0][1].isoformat()
        log = failed_restore(project, f"{{model: appended, at: '{at}'}}")
        assert '."appended" did not exist at --at' in log, log
        assert "it was created later (snapshot" in log, log
        assert "dbt run --full-refresh -s appended" in log, log

    def test_a_time_before_every_snapshot_is_named(self, project, loaded):
        log = failed_restore(project, "{model: appended, at: '2001-02-03'}")
        assert "--at 2001-02-03 00:00:00 is before the oldest snapshot the lake keeps" in log, log

    def test_a_bad_time_and_both_points_are_refused(self, project, loaded):
        log = failed_restore(project, "{model: appended, at: 'yesterday'}")
        assert "at 'yesterday' is not an ISO date or timestamp" in log, log
        log = failed_restore(project, "{model: appended, at: '2025-01-01', before_load: x}")
        assert "pass exactly one of before_load and at" in log, log

    def test_the_command_needs_one_point(self, project, loaded):
        found = dbt_sqlflow(project, "restore", "appended")
        assert found.returncode == 2
        assert "pass exactly one of --before-load LOAD_ID and --at TIMESTAMP" in found.stderr

    def test_failed_restores_change_nothing(self, project, loaded):
        release(project)
        assert snapshots(project) == loaded["snapshots"]
        assert full_state(project, "appended") == loaded["state"]

    def test_undoing_the_first_load_empties_the_table_and_the_next_run_reloads(
        self, project, loaded
    ):
        # The build created the table empty in a snapshot of its own: before the first
        # load the table existed, with no rows and nothing recorded.
        rows_before = target(project, "appended")
        release(project)
        run_lake_dbt(
            project,
            [
                "run-operation",
                "sqlflow_restore",
                "--args",
                f"{{model: appended, before_load: {loaded['appended'][0]}}}",
            ],
        )
        assert target(project, "appended") == []
        assert full_state(project, "appended") == {
            "loads": [],
            "intervals": [],
            "partitions": [],
            "quality": [],
        }
        release(project)
        run_lake_dbt(project, ["run", "-s", "appended", *now("2025-01-03T18:00:00")])
        assert target(project, "appended") == rows_before
        windows = rows(
            project,
            f"select window_start::varchar from {META}.loads where model = 'model.test.appended'"
            " order by 1",
        )
        assert windows == [
            ("2025-01-01 00:00:00",),
            ("2025-01-02 00:00:00",),
            ("2025-01-03 00:00:00",),
        ]
