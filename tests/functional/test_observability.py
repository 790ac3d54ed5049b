"""Observability of a real multi-batch run (issue 17): structured fields in dbt's JSON log,
joined to the metrics and the loads table by the README's jq line; per-phase timings in
run_results.json, the loads table and the Prometheus histogram. The run has a retried batch
(a real write-write conflict, ``SQLFLOW_FAULTS``), a failed warn check and a failed error
check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import (
    FAST_RETRY,
    Scenario,
    create_daily_events,
    file_target,
    now,
    raw_sources_yml,
    rows,
)

from dbt.adapters.sqlflow.metrics.export import export_artifacts
from dbt.adapters.sqlflow.observe import PHASES

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = "2025-01-04T00:00:00"

# Three daily batches each; a warn check fails on day 2 (the run goes on), an error check
# on day 3 (that batch rolls back; days 1 and 2 stay loaded).
WARNED = (
    "{{ config(materialized='sqlflow_incremental', event_time='event_ts', batch_size='day',"
    " begin='2025-01-01', unique_key='id',"
    " quality_checks=[{'expression': \"v <> 'd2e1'\", 'severity': 'warn'}]) }}\n"
    "select id, event_ts, v from {{ source('raw', 'events') }}\n"
)
FAILED = WARNED.replace("d2e1", "d3e2").replace("'warn'", "'error'")
# Append straight from the query, no checks: commit_every's default loads the three batches
# with one statement (a group loaded at once).
AT_ONCE = (
    "{{ config(materialized='sqlflow_incremental', event_time='event_ts', batch_size='day',"
    " begin='2025-01-01', incremental_strategy='append') }}\n"
    "select id, event_ts, v from {{ source('raw', 'events') }}\n"
)
# The same with no rows on day 2: one group of two batches and an empty window.
GAPPY = AT_ONCE + "where event_ts::date <> date '2025-01-02'\n"
# No event_time: the first run builds the table in one statement (the build path).
BUILT = (
    "{{ config(materialized='sqlflow_incremental', unique_key='id',"
    " quality_checks=[{'not_null': ['id']}]) }}\n"
    "select id, event_ts, v from {{ source('raw', 'events') }}\n"
)


def sqlflow_events(log: Path) -> list[dict[str, Any]]:
    """The sqlflow fields of every JSON log line that has them, in order."""
    found = []
    for line in log.read_text().splitlines():
        data = json.loads(line).get("data") or {}
        args = data.get("args")
        if isinstance(args, list) and args and isinstance(args[0], dict) and "sqlflow" in args[0]:
            found.append(args[0]["sqlflow"])
    return found


def result_of(found: dict[str, Any], name: str) -> dict[str, Any]:
    """A model's entry in the run's run_results.json."""
    return next(
        r for r in found["run_results"]["results"] if r["unique_id"] == f"model.test.{name}"
    )


def readme_jq() -> str:
    """The jq program of the README's join (the line after `jq -c`, up to its quote)."""
    text = README.read_text()
    found = re.search(r"^jq -c (.*?)'\n(.*?)'", text, re.M | re.S)
    assert found, "README.md has no `jq -c` join"
    return found.group(2)


def multi_batch_run(project: Any) -> dict[str, Any]:
    create_daily_events(project)
    logs = Path(project.project_root) / "json_logs"
    flags = ["--log-path", str(logs), "--log-format-file", "json"]
    # The second batch of `warned` meets a write-write conflict on its first try.
    os.environ["SQLFLOW_FAULTS"] = "warned:conflict@1"
    try:
        results = run_dbt([*flags, "run", *now(NOW)], expect_pass=False)
    finally:
        del os.environ["SQLFLOW_FAULTS"]
    log = logs / "dbt.log"
    target = Path(project.project_root) / "target"
    return {
        "results": {r.node.name: r for r in results.results},
        "run_results": json.loads((target / "run_results.json").read_text()),
        "events": sqlflow_events(log),
        "log": log,
        "metrics": export_artifacts(
            target / "run_results.json", target / "manifest.json", fmt="json"
        ),
    }


class TestObservability:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        return file_target(
            tmp_path_factory,
            sqlflow_retry=FAST_RETRY,
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("events"),
            "warned.sql": WARNED,
            "failed.sql": FAILED,
            "built.sql": BUILT,
            "at_once.sql": AT_ONCE,
            "gappy.sql": GAPPY,
        }

    @pytest.fixture(scope="class")
    def scenario(self, project: Any) -> Scenario:
        return Scenario(project, multi_batch_run)

    def test_events_carry_the_ids_window_strategy_rows_and_seconds(
        self, scenario: Scenario
    ) -> None:
        found = scenario.after(multi_batch_run)
        invocation = found["run_results"]["metadata"]["invocation_id"]
        mine = [e for e in found["events"] if e["unique_id"] == "model.test.warned"]
        assert {e["invocation_id"] for e in mine} == {invocation}
        assert len({e["execution_id"] for e in mine}) == 1
        kinds = [e["event"] for e in mine]
        assert kinds[0] == "plan" and kinds[-1] == "summary"
        # commit_every's default (auto) loads these small batches in one transaction: the
        # conflict in batch 1 rolls back the group and its batches start again.
        starts = [e["batch_index"] for e in mine if e["event"] == "batch_start"]
        assert starts == [0, 1, 0, 1, 2]
        assert kinds.count("batch_end") == 3
        ends = [e for e in mine if e["event"] == "batch_end"]
        assert [(e["batch_index"], e["window_start"], e["window_end"]) for e in ends] == [
            (0, "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
            (1, "2025-01-02T00:00:00", "2025-01-03T00:00:00"),
            (2, "2025-01-03T00:00:00", "2025-01-04T00:00:00"),
        ]
        for end in ends:
            assert end["strategy"] == "append" and end["rows_inserted"] == 2
            assert set(end["phase_seconds"]) | {"commit"} == set(PHASES)
            assert 0 < sum(end["phase_seconds"].values())
            assert end["seconds"] > 0
        assert [e["status"] for e in ends] == ["success", "warn", "success"]
        # One transaction: its COMMIT counts in its last batch.
        assert ["commit" in e["phase_seconds"] for e in ends] == [False, False, True]
        assert all("retries" in e for e in ends)
        # The retry: a warning with its batch's position and window (the fault struck
        # before the try had a load id) and why, which try comes next and when.
        (retry,) = [e for e in mine if e["event"] == "retry"]
        assert (retry["batch_index"], retry["reason"], retry["attempt"]) == (1, "conflict", 2)
        assert retry["window_start"] == "2025-01-02T00:00:00" and "load_id" not in retry
        assert retry["error_type"] == "DbtRuntimeError" and retry["wait_seconds"] < 1
        # Each batch's outcomes in one event (the rolled-back try of batch 0 had its own).
        committed = {e["load_id"] for e in ends}
        checks = [e for e in mine if e["event"] == "checks" and e["load_id"] in committed]
        assert len([e for e in mine if e["event"] == "checks"]) == 4
        assert [[c["check_status"] for c in e["checks"]] for e in checks] == [
            ["pass"],
            ["fail"],
            ["pass"],
        ]
        assert [e["load_id"] for e in checks] == [e["load_id"] for e in ends]
        # The failed warn check: a warning with its fields, in its batch.
        warned = [e for e in mine if e["event"] == "check" and e["check_status"] == "fail"]
        assert [
            (w["check"], w["severity"], w["failing_rows"], w["batch_index"]) for w in warned
        ] == [("expression(v <> 'd2e1')", "warn", 1, 1)]

    def test_a_failed_error_check_and_its_batch_are_events(self, scenario: Scenario) -> None:
        found = scenario.after(multi_batch_run)
        assert found["results"]["failed"].status == "error"
        mine = [e for e in found["events"] if e["unique_id"] == "model.test.failed"]
        failed = [e for e in mine if e["event"] == "check" and e["check_status"] == "fail"]
        assert [(f["check"], f["severity"], f["batch_index"]) for f in failed] == [
            ("expression(v <> 'd3e2')", "error", 2)
        ]
        error = [e for e in mine if e["event"] == "batch_error"]
        assert [(e["batch_index"], e["error_type"], e["window_start"]) for e in error] == [
            (2, "DbtRuntimeError", "2025-01-03T00:00:00")
        ]
        assert error[0]["load_id"] == failed[0]["load_id"]

    def test_the_text_log_reads_as_before(self, scenario: Scenario) -> None:
        found = scenario.after(multi_batch_run)
        line = next(
            json.loads(x)["info"]["msg"]
            for x in found["log"].read_text().splitlines()
            if '"batch_end"' in x and "model.test.warned" in x
        )
        assert re.fullmatch(
            r"sqlflow adapter: model\.test\.warned append"
            r" \[2025-01-01 00:00:00, 2025-01-02 00:00:00\):"
            r" 2 inserted, 0 updated, 0 deleted \[invocation_id=\S+ model=model\.test\.warned"
            r" load_id=[0-9a-f]{32}\]",
            line,
        )

    def test_phase_timings_in_run_results_loads_and_metrics(
        self, project: Any, scenario: Scenario
    ) -> None:
        found = scenario.after(multi_batch_run)
        result = result_of(found, "warned")
        response = result["adapter_response"]
        phases = response["phase_seconds"]
        assert list(phases) == list(PHASES)
        assert all(v >= 0 for v in phases.values()) and phases["dml"] > 0
        # No phase is counted twice: together they take no longer than the node.
        assert sum(phases.values()) <= result["execution_time"]
        per_batch = response["batch_phase_seconds"]
        assert {p: len(v) for p, v in per_batch.items()} == {p: 3 for p in PHASES}
        for phase in PHASES:
            assert sum(per_batch[phase]) == pytest.approx(phases[phase], abs=1e-5)
        # The loads table: each batch's row holds its phases, the same figures.
        stored = rows(
            project,
            "select " + ", ".join(f"{p}_seconds" for p in PHASES) + " from sqlflow_meta.loads"
            " where model = 'model.test.warned' order by window_start",
        )
        assert [list(r) for r in stored[:3]] == [
            pytest.approx([per_batch[p][i] for p in PHASES], abs=1e-5) for i in range(3)
        ]
        assert stored[3:] == [(None,) * len(PHASES)]  # the empty window after them
        # The histogram: one observation per batch and phase.
        samples = {
            (s["name"], s["labels"].get("phase"), s["labels"].get("le")): s["value"]
            for f in json.loads(found["metrics"])["metrics"]
            if f["name"] == "sqlflow_batch_phase_seconds"
            for s in f["samples"]
            if s["labels"]["model"] == "model.test.warned"
        }
        for phase in PHASES:
            assert samples[("sqlflow_batch_phase_seconds_count", phase, None)] == 3
            assert samples[("sqlflow_batch_phase_seconds_bucket", phase, "+Inf")] == 3
            assert samples[("sqlflow_batch_phase_seconds_sum", phase, None)] == pytest.approx(
                phases[phase], abs=1e-5
            )

    def test_a_built_table_has_its_phases_too(self, project: Any, scenario: Scenario) -> None:
        found = scenario.after(multi_batch_run)
        result = result_of(found, "built")
        phases = result["adapter_response"]["phase_seconds"]
        assert list(phases) == list(PHASES)
        assert phases["stage"] == 0  # a build writes the table in its DML, unstaged
        assert all(phases[p] > 0 for p in ("plan", "dml", "checks", "state", "commit"))
        assert sum(phases.values()) <= result["execution_time"]
        stored = rows(
            project,
            "select " + ", ".join(f"{p}_seconds" for p in PHASES) + " from sqlflow_meta.loads"
            " where model = 'model.test.built'",
        )
        assert [list(r) for r in stored] == [pytest.approx(list(phases.values()), abs=1e-5)]

    def test_a_group_loaded_at_once_counts_its_phases_in_its_first_batch(
        self, project: Any, scenario: Scenario
    ) -> None:
        found = scenario.after(multi_batch_run)
        result = result_of(found, "at_once")
        response = result["adapter_response"]
        assert response["commits"] == 1 and response["batches"] == 3
        per_batch = response["batch_phase_seconds"]
        assert per_batch["dml"][0] > 0 and per_batch["commit"][0] > 0
        # One statement, one timed load: the others have no phases of their own.
        assert {len(v) for v in per_batch.values()} == {1}
        assert sum(response["phase_seconds"].values()) <= result["execution_time"]
        stored = rows(
            project,
            "select dml_seconds > 0, commit_seconds > 0 from sqlflow_meta.loads"
            " where model = 'model.test.at_once' and rows_inserted > 0 order by window_start",
        )
        assert stored == [(True, True), (None, None), (None, None)]

    def test_a_group_loaded_at_once_ends_as_one_batch_end(
        self, project: Any, scenario: Scenario
    ) -> None:
        found = scenario.after(multi_batch_run)
        ends = [
            e
            for e in found["events"]
            if e["unique_id"] == "model.test.at_once" and e["event"] == "batch_end"
        ]
        assert len(ends) == 1
        end = ends[0]
        stored = rows(
            project,
            "select load_id, rows_inserted from sqlflow_meta.loads"
            " where model = 'model.test.at_once' and rows_inserted > 0 order by window_start",
        )
        assert len(stored) == 3
        assert end["load_ids"] == [load_id for load_id, _ in stored]
        assert end["load_id"] == stored[0][0]
        assert (end["batch_count"], end["batch_index"], end["batches"]) == (3, 0, 3)
        assert (end["window_start"], end["window_end"]) == (
            "2025-01-01T00:00:00",
            "2025-01-04T00:00:00",
        )
        assert end["rows_inserted"] == sum(n for _, n in stored)
        assert (end["rows_updated"], end["rows_deleted"], end["status"]) == (0, 0, "success")
        assert end["phase_seconds"]["dml"] > 0
        result = result_of(found, "at_once")
        assert end["load_ids"] == result["adapter_response"]["load_ids"]

    def test_a_groups_empty_windows_are_logged_once(self, scenario: Scenario) -> None:
        found = scenario.after(multi_batch_run)
        mine = [e for e in found["events"] if e["unique_id"] == "model.test.gappy"]
        kinds = [e["event"] for e in mine]
        # The two batches of the group loaded at once end as one statement: one batch_end.
        assert kinds.count("batch_end") == 1
        empty = [e for e in mine if e["event"] == "empty_windows"]
        assert [(e["empty_windows"], e["window_start"]) for e in empty] == [
            (1, "2025-01-03T00:00:00")
        ]

    @pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed")
    def test_the_readme_jq_line_joins_events_metrics_and_loads(
        self, project: Any, scenario: Scenario, tmp_path: Path
    ) -> None:
        found = scenario.after(multi_batch_run)
        loads = tmp_path / "loads.json"
        project.run_sql(
            f"copy (select * from sqlflow_meta.loads) to '{loads}' (format json, array true)"
        )
        metrics = tmp_path / "metrics.json"
        metrics.write_text(found["metrics"])
        joined = subprocess.run(
            [
                "jq",
                "-c",
                "--slurpfile",
                "loads",
                str(loads),
                "--slurpfile",
                "metrics",
                str(metrics),
                "--arg",
                "model",
                "model.test.warned",
                readme_jq(),
                str(found["log"]),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        out = [json.loads(line) for line in joined.splitlines()]
        ends = [o for o in out if o["event"] == "batch_end"]
        assert len(ends) == 3
        for end in ends:
            assert end["load"]["load_id"] == end["load_id"]
            assert end["load"]["window_start"].startswith(end["window_start"][:10])
            assert end["load"]["rows_inserted"] == end["rows_inserted"]
            assert end["load"]["dml_seconds"] == pytest.approx(
                end["phase_seconds"]["dml"], abs=1e-5
            )
            names = {m["name"] for m in end["metrics"]}
            assert {"sqlflow_rows_inserted_total", "sqlflow_batch_phase_seconds_sum"} <= names
        warned = [o for o in out if o["event"] == "check" and o["check_status"] == "fail"]
        assert warned[0]["load"]["status"] == "warn"
