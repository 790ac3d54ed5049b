"""Metrics of real `dbt run`s: export from run_results.json, push to a real Pushgateway."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from prometheus_client.parser import text_string_to_metric_families
from sqlflow_testing import file_target, free_port, running_pushgateway

from dbt.adapters.sqlflow.metrics.export import export_artifacts, push_artifacts

table_sql = "{{ config(materialized='table') }} select range as id from range(5)"

incremental_sql = """
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}
select id from {{ ref('five') }}
{% if is_incremental() %} where id >= 3 {% endif %}
"""

broken_sql = "{{ config(materialized='table') }} select * from no_such_table"

sqlflow_sql = """
{{ config(materialized='sqlflow_incremental', unique_key='id', event_time='ts', batch_size='day',
          quality_checks=[{'not_null': ['id']}, {'expression': 'id < 4', 'severity': 'warn'}]) }}
select range::int as id, timestamp '2025-01-01' + to_hours(range * 10) as ts from range(5)
"""

Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def parse(text: str, job: str | None = None) -> dict[Key, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith("sqlflow_") or (job and s.labels.get("job") != job):
                continue
            labels = {k: v for k, v in s.labels.items() if k not in ("job", "instance")}
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


@pytest.fixture(scope="class")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real prometheus-pushgateway on 127.0.0.1 (skipped when the binary is missing)."""
    with running_pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
        yield url


def gateway(url: str, job: str) -> dict[Key, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return parse(response.read().decode(), job)


class TestExportFromRunResults:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"five.sql": table_sql, "inc.sql": incremental_sql, "broken.sql": broken_sql}

    @pytest.fixture(scope="class")
    def artifacts(self, project: Any) -> Path:
        """dbt's target folder after two runs (the second is inc's incremental run)."""
        run_dbt(["run"], expect_pass=False)
        run_dbt(["run"], expect_pass=False)  # inc's incremental run: ids 3 and 4 again
        return Path(project.project_root) / "target"

    def test_export_reads_each_model_run_from_run_results(self, artifacts: Path) -> None:
        text = export_artifacts(artifacts / "run_results.json", artifacts / "manifest.json")
        got = parse(text)
        runs = {k[1]: v for k, v in got.items() if k[0] == "sqlflow_model_runs_total"}
        by_model = {dict(labels)["model"].split(".")[-1]: dict(labels) for labels in runs}
        assert set(by_model) == {"five", "inc", "broken"}
        assert by_model["five"]["status"] == "success"
        assert by_model["five"]["strategy"] == "table"
        assert by_model["inc"]["strategy"] == "delete+insert"
        assert by_model["broken"]["status"] == "error"
        five = by_model["five"]["model"]
        inc = by_model["inc"]["model"]
        assert five.startswith("model.") and inc.startswith("model.")
        assert got[key("sqlflow_rows_affected_total", model=five)] == 5
        # delete+insert of 2 rows: 2 deleted, 2 inserted (DuckDB's counts, summed).
        assert got[key("sqlflow_rows_affected_total", model=inc)] == 4
        assert got[key("sqlflow_model_duration_seconds", model=five)] > 0
        assert got[key("sqlflow_run_success")] == 0
        assert got[key("sqlflow_run_duration_seconds")] > 0
        assert got[key("sqlflow_run_nodes_total", resource_type="model", status="error")] == 1
        info = [dict(k[1]) for k in got if k[0] == "sqlflow_run_info"]
        assert len(info) == 1 and info[0]["dbt_version"] == "1.11.16"

    def test_push_sends_the_export_to_the_pushgateway(
        self, artifacts: Path, pushgateway: str
    ) -> None:
        run_results, manifest = artifacts / "run_results.json", artifacts / "manifest.json"
        exported = parse(export_artifacts(run_results, manifest))
        five, inc = model_label(exported, "five"), model_label(exported, "inc")
        push_artifacts(pushgateway, "dbt_functional", run_results, manifest, timeout=5)
        pushed = gateway(pushgateway, "dbt_functional")
        assert pushed[key("sqlflow_rows_affected_total", model=inc)] == 4
        assert pushed[key("sqlflow_run_success")] == 0
        assert (
            pushed[key("sqlflow_model_runs_total", model=five, strategy="table", status="success")]
            == 1
        )


class TestAutoExport:
    """`sqlflow_metrics` in the profile: every `dbt run` writes the textfile and pushes."""

    @pytest.fixture(scope="class")
    def textfile_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(
        self, tmp_path_factory: pytest.TempPathFactory, textfile_dir: Path, pushgateway: str
    ) -> dict:
        return file_target(
            tmp_path_factory,
            sqlflow_metrics={
                "textfile": str(textfile_dir),
                "pushgateway": pushgateway,
                "job": "dbt_auto",
                "timeout_seconds": 5,
            },
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"five.sql": table_sql, "inc.sql": incremental_sql, "flow.sql": sqlflow_sql}

    def test_run_exports_textfile_and_pushes(
        self, project: Any, textfile_dir: Path, pushgateway: str
    ) -> None:
        results = run_dbt(["run", "--vars", '{"sqlflow_now": "2025-01-02T12:00:00"}'])
        assert len(results) == 3  # the export adds no hook result to the run
        invocation_id = run_results_metadata(project)["invocation_id"]
        prom = parse((textfile_dir / "dbt_sqlflow.prom").read_text())
        pushed = gateway(pushgateway, "dbt_auto")
        for got in (prom, pushed):
            flow = model_label(got, "flow")
            # Two daily batches (Jan 1 and 2) inserted the 5 rows, one warning check failed.
            assert got[key("sqlflow_rows_inserted_total", model=flow)] == 5
            assert got[key("sqlflow_partitions_touched", model=flow)] == 0
            assert got[key("sqlflow_model_batches", model=flow)] == 2
            assert (
                got[key("sqlflow_watermark_timestamp_seconds", model=flow)] == 1735833600.0
            )  # 2025-01-02T16:00Z
            assert (
                got[
                    key(
                        "sqlflow_quality_checks_failed_total",
                        model=flow,
                        check="expression(id < 4)",
                    )
                ]
                == 1
            )
            five = model_label(got, "five")
            assert got[key("sqlflow_rows_affected_total", model=five)] == 5
            assert (
                got[key("sqlflow_model_runs_total", model=five, strategy="table", status="success")]
                == 1
            )
            assert got[key("sqlflow_run_success")] == 1
            assert (
                got[
                    key(
                        "sqlflow_run_info",
                        invocation_id=invocation_id,
                        dbt_version="1.11.16",
                        target="default",
                    )
                ]
                == 1
            )
        assert sorted(p.name for p in textfile_dir.iterdir()) == ["dbt_sqlflow.prom"]


class TestAutoExportFailedPush:
    """An unreachable Pushgateway logs a warning; the run passes and the textfile is written."""

    @pytest.fixture(scope="class")
    def textfile_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(
        self, tmp_path_factory: pytest.TempPathFactory, textfile_dir: Path
    ) -> dict:
        return file_target(
            tmp_path_factory,
            sqlflow_metrics={
                "textfile": str(textfile_dir),
                "pushgateway": f"http://127.0.0.1:{free_port()}",
                "timeout_seconds": 2,
            },
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"five.sql": table_sql}

    def test_failed_push_only_warns(self, project: Any, textfile_dir: Path) -> None:
        _, log = run_dbt_and_capture(["run"])
        assert "metrics push failed: http://127.0.0.1:" in log
        assert "Pushgateway unreachable" in log
        got = parse((textfile_dir / "dbt_sqlflow.prom").read_text())
        assert got[key("sqlflow_run_success")] == 1


def run_results_metadata(project: Any) -> dict[str, Any]:
    path = Path(project.project_root) / "target" / "run_results.json"
    return dict(json.loads(path.read_text())["metadata"])


def model_label(got: dict[Key, float], name: str) -> str:
    return next(
        dict(k[1])["model"]
        for k in got
        if k[0] == "sqlflow_model_runs_total" and dict(k[1])["model"].endswith("." + name)
    )
