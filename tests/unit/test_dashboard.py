"""contrib/grafana/dbt_sqlflow_dashboard.json: the panels for batch phases and retries exist,
and every panel's PromQL is valid and computes what its title says (promtool evaluates
each new panel's queries on series shaped like the exporter's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

BOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "dbt_sqlflow_dashboard.json"


def panels() -> list[dict[str, Any]]:
    return json.loads(BOARD.read_text())["panels"]


def expr(panel_id: int, ref: str = "A") -> str:
    """A panel's query with the board's variables set to "any job, any model"."""
    panel = next(p for p in panels() if p["id"] == panel_id)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    return target["expr"].replace("$job", ".*").replace("$model", ".*")


def test_phase_and_retry_panels() -> None:
    by_metric: dict[str, list[str]] = {}
    for panel in panels():
        for target in panel["targets"]:
            for name in re.findall(r"sqlflow_[a-z_]+", target["expr"]):
                by_metric.setdefault(name, []).append(panel["title"])
    assert by_metric["sqlflow_batch_phase_seconds_sum"]
    assert by_metric["sqlflow_batch_phase_seconds_bucket"]
    assert by_metric["sqlflow_retries_total"]
    # They follow the board's variables like every other panel.
    for panel in panels():
        for target in panel["targets"]:
            if "sqlflow_batch_phase" in target["expr"] or "sqlflow_retries" in target["expr"]:
                assert 'job=~"$job",model=~"$model"' in target["expr"]
    # Panels do not overlap on the grid.
    cells = [
        (x, y)
        for p in panels()
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool binary not found (Debian package 'prometheus'; make services)")
    return found


# Two batches of model.a: dml took 0.2 s and 0.8 s, checks 0.01 s and 0.03 s; retries: a
# lock twice on model.a, once on model.b, and an io reason on model.b that never happened.
SERIES = {
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="dml",le="0.1"}': 0,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="dml",le="0.5"}': 1,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="dml",le="1.0"}': 2,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="dml",le="+Inf"}': 2,
    'sqlflow_batch_phase_seconds_sum{model="model.a",phase="dml"}': 1.0,
    'sqlflow_batch_phase_seconds_count{model="model.a",phase="dml"}': 2,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="checks",le="0.01"}': 1,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="checks",le="0.05"}': 2,
    'sqlflow_batch_phase_seconds_bucket{model="model.a",phase="checks",le="+Inf"}': 2,
    'sqlflow_batch_phase_seconds_sum{model="model.a",phase="checks"}': 0.04,
    'sqlflow_batch_phase_seconds_count{model="model.a",phase="checks"}': 2,
    'sqlflow_retries_total{model="model.a",reason="lock"}': 2,
    'sqlflow_retries_total{model="model.b",reason="lock"}': 1,
    'sqlflow_retries_total{model="model.b",reason="io"}': 0,
}


def expected(panel_id: int, ref: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "expr": expr(panel_id, ref),
        "eval_time": "1m",
        "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


@pytest.mark.promtool
def test_the_new_panels_compute_what_they_say(tmp_path: Path) -> None:
    series = [
        {"series": name.replace("{", '{job="dbt",', 1), "values": f"{value}x2"}
        for name, value in SERIES.items()
    ]
    tests = [
        expected(13, "A", [('{phase="checks"}', 0.04), ('{phase="dml"}', 1.0)]),
        expected(
            14,
            "A",
            [('{model="model.a",phase="checks"}', 0.04), ('{model="model.a",phase="dml"}', 1.0)],
        ),
        # p95: rank 1.9 of 2 falls in dml's (0.5, 1.0] (0.95), checks' (0.01, 0.05] (0.046).
        expected(15, "A", [('{phase="checks"}', 0.046), ('{phase="dml"}', 0.95)]),
        expected(15, "B", [('{phase="checks"}', 0.02), ('{phase="dml"}', 0.5)]),
        expected(
            16,
            "A",
            [('{model="model.a",reason="lock"}', 2), ('{model="model.b",reason="lock"}', 1)],
        ),
        expected(17, "A", [('{reason="io"}', 0), ('{reason="lock"}', 3)]),
    ]
    test_file = tmp_path / "dashboard_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
            }
        )
    )
    done = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.promtool
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"panel_{p['id']}_{t['refId']}", "expr": expr(p["id"], t["refId"])}
        for p in panels()
        for t in p["targets"]
    ]
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
