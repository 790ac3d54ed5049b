"""Our output checked by the real tools: promtool and a Prometheus Pushgateway on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlflow_testing import running_pushgateway
from test_metrics import (
    CUSTOMERS,
    ORDERS,
    T_FINISHED,
    T_WATERMARK,
    manifest,
    odd_run_results,
    run_results,
)

from dbt.adapters.sqlflow.metrics.artifacts import summary_from_artifacts
from dbt.adapters.sqlflow.metrics.collector import build_registry
from dbt.adapters.sqlflow.metrics.export import push, push_artifacts, render


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real prometheus-pushgateway on 127.0.0.1 (skipped when the binary is missing)."""
    with running_pushgateway(tmp_path) as url:
        yield url


def gateway_samples(url: str, job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Our samples on the gateway's /metrics page, by (name, labels without job/instance)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("sqlflow_") and s.labels.get("job") == job:
                labels = {k: v for k, v in s.labels.items() if k not in ("job", "instance")}
                out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


@pytest.mark.promtool
@pytest.mark.parametrize(
    ("data", "with_manifest"),
    [(run_results, True), (run_results, False), (odd_run_results, True)],
)
def test_promtool_accepts_prometheus_text(
    tmp_path: Path, data: Callable[[], Any], with_manifest: bool
) -> None:
    """Our text, the phase histogram and odd label values included (odd_run_results)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool binary not found (Debian package 'prometheus'; make services)")
    summary = summary_from_artifacts(data(), manifest() if with_manifest else None)
    text = render(summary)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@pytest.mark.pushgateway
def test_pushgateway_receives_our_samples(pushgateway: str) -> None:
    summary = summary_from_artifacts(run_results(), manifest())
    push(build_registry(summary), pushgateway, job="dbt_unit", timeout=5)
    got = gateway_samples(pushgateway, "dbt_unit")
    assert got[key("sqlflow_rows_inserted_total", model=ORDERS)] == 100
    assert got[key("sqlflow_rows_updated_total", model=ORDERS)] == 50
    assert got[key("sqlflow_rows_deleted_total", model=ORDERS)] == 25
    assert (
        got[key("sqlflow_model_runs_total", model=CUSTOMERS, strategy="merge", status="error")] == 1
    )
    assert got[key("sqlflow_quality_checks_failed_total", model=CUSTOMERS, check="unique_id")] == 1
    assert got[key("sqlflow_watermark_lag_seconds", model=ORDERS)] == T_FINISHED - T_WATERMARK
    assert got[key("sqlflow_run_success")] == 0
    assert (
        got[key("sqlflow_run_info", invocation_id="inv-1", dbt_version="1.11.16", target="prod")]
        == 1
    )


@pytest.mark.pushgateway
def test_push_replaces_the_group(pushgateway: str, tmp_path: Path) -> None:
    data = run_results()
    path = tmp_path / "run_results.json"
    path.write_text(json.dumps(data))
    push_artifacts(pushgateway, "dbt_replace", path, None, timeout=5)
    data["results"] = data["results"][2:3]  # the next run: one plain model, success
    data["metadata"]["invocation_id"] = "inv-2"
    path.write_text(json.dumps(data))
    push_artifacts(pushgateway, "dbt_replace", path, None, timeout=5)
    got = gateway_samples(pushgateway, "dbt_replace")
    assert got[key("sqlflow_run_success")] == 1
    assert not any(k[0] == "sqlflow_rows_inserted_total" for k in got)
    assert (
        got[key("sqlflow_run_info", invocation_id="inv-2", dbt_version="1.11.16", target="prod")]
        == 1
    )
    assert len([k for k in got if k[0] == "sqlflow_run_info"]) == 1
