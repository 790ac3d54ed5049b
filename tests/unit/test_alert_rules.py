"""contrib/prometheus/sqlflow_alerts.yml: valid rules (promtool check rules), each rule
fires when it should and only then (promtool test rules), on metric names the exporter
really writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dbt.adapters.sqlflow.metrics.collector import FAMILIES

RULES_DIR = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool binary not found (Debian package 'prometheus'; make services)")
    return found


@pytest.mark.promtool
@pytest.mark.parametrize(
    "args",
    [["check", "rules", "sqlflow_alerts.yml"], ["test", "rules", "sqlflow_alerts_test.yml"]],
    ids=["check", "test"],
)
def test_promtool_accepts_the_rules(args: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_use_only_metrics_the_exporter_writes() -> None:
    counters = {f.name + "_total" for f in FAMILIES if f.counter}
    gauges = {f.name for f in FAMILIES if not f.counter}
    groups = yaml.safe_load((RULES_DIR / "sqlflow_alerts.yml").read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bsqlflow_[a-z_]+", expr)}
    assert used, "no sqlflow metric in the rules"
    assert used <= counters | gauges, sorted(used - counters - gauges)
