"""`dbt-sqlflow metrics export --format cloudwatch-emf`: every line obeys the rules of the
CloudWatch Embedded Metric Format specification (written down here as a validator), and
carries the same figures as the Prometheus export of the same run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from dbt.adapters.sqlflow.cli import cli
from dbt.adapters.sqlflow.metrics.artifacts import summary_from_artifacts
from dbt.adapters.sqlflow.metrics.emf import MAX_METRICS_PER_DIRECTIVE as LIMIT
from dbt.adapters.sqlflow.metrics.emf import emf_record, render_emf, unit
from dbt.adapters.sqlflow.metrics.export import export_artifacts, render

# -- the specification's rules -----------------------------------------------------------------

UNITS = frozenset(
    "Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits"
    " Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second"
    " Megabytes/Second Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second"
    " Megabits/Second Gigabits/Second Terabits/Second Count/Second None".split()
)
MAX_EVENT_BYTES = 1_000_000
MAX_DIMENSIONS_PER_SET = 30
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
NAMESPACE = re.compile(r"[A-Za-z0-9._#:/ -]{1,255}")


def emf_problems(line: str) -> list[str]:
    """Every way one log event breaks the EMF specification (empty when it is valid)."""
    problems: list[str] = []
    if len(line.encode()) > MAX_EVENT_BYTES:
        problems.append("event larger than 1 MB")
    try:
        root = json.loads(line)
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if not isinstance(root, dict):
        return ["the root is not an object"]
    meta = root.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws object"]
    timestamp = meta.get("Timestamp")
    # Milliseconds since the epoch: an integer, after 2001 (seconds would be 1000x smaller).
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 10**12:
        problems.append(f"_aws.Timestamp {timestamp!r} is not a time in milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "_aws.CloudWatchMetrics is not a non-empty array"]
    for i, directive in enumerate(directives):
        where = f"CloudWatchMetrics[{i}]"
        if not isinstance(directive, dict):
            problems.append(f"{where} is not an object")
            continue
        extra = set(directive) - {"Namespace", "Dimensions", "Metrics"}
        if extra:
            problems.append(f"{where} has members the spec does not define: {sorted(extra)}")
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
            problems.append(f"{where}.Namespace {namespace!r} is not a valid namespace")
        dimension_names: set[str] = set()
        sets = directive.get("Dimensions")
        if not isinstance(sets, list) or not sets:
            problems.append(f"{where}.Dimensions is not an array of dimension sets")
            sets = []
        for dimension_set in sets:
            if not isinstance(dimension_set, list):
                problems.append(f"{where}: dimension set {dimension_set!r} is not an array")
                continue
            if len(dimension_set) > MAX_DIMENSIONS_PER_SET:
                problems.append(f"{where}: a dimension set has more than 30 dimensions")
            for name in dimension_set:
                dimension_names.add(name)
                value = root.get(name)
                if not isinstance(name, str) or not 0 < len(name) <= 250 or name[0] == ":":
                    problems.append(f"{where}: dimension name {name!r} is not valid")
                elif not isinstance(value, str) or not value.strip() or len(value) > 1024:
                    problems.append(f"dimension {name} is {value!r}, not a string member")
                elif not value.isascii():
                    problems.append(f"dimension {name} {value!r} is not ASCII")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or not metrics:
            problems.append(f"{where}.Metrics is not a non-empty array")
            continue
        if len(metrics) > MAX_METRICS_PER_DIRECTIVE:
            problems.append(f"{where}.Metrics has more than 100 metrics")
        names = [m.get("Name") if isinstance(m, dict) else None for m in metrics]
        if len(set(names)) != len(names):
            problems.append(f"{where}.Metrics names a metric twice")
        for metric in metrics:
            if not isinstance(metric, dict) or set(metric) - {"Name", "Unit", "StorageResolution"}:
                problems.append(f"{where}: metric definition {metric!r} is not valid")
                continue
            name = metric.get("Name")
            if not isinstance(name, str) or not 0 < len(name) <= 1024:
                problems.append(f"{where}: metric name {name!r} is not valid")
                continue
            if name in dimension_names:
                problems.append(f"{where}: {name} is both a metric and a dimension")
            if "Unit" in metric and metric["Unit"] not in UNITS:
                problems.append(f"{where}: {name} has unit {metric['Unit']!r}")
            if metric.get("StorageResolution", 60) not in (1, 60):
                problems.append(f"{where}: {name} has a StorageResolution other than 1 or 60")
            value = root.get(name)
            values = value if isinstance(value, list) else [value]
            if len(values) > MAX_VALUES_PER_METRIC or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            ):
                problems.append(f"{where}: the value of {name} is {value!r}, not numbers")
    return problems


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("[]", "the root is not an object"),
        ('{"a": 1}', "no _aws object"),
        (
            '{"_aws": {"Timestamp": 1700000000, "CloudWatchMetrics": []}}',
            "_aws.Timestamp 1700000000 is not a time in milliseconds",
        ),
        (
            '{"_aws": {"Timestamp": 1700000000000, "CloudWatchMetrics": [{"Namespace": "n",'
            ' "Dimensions": [["model"]], "Metrics": [{"Name": "m", "Unit": "Rows"}]}]},'
            ' "model": 3, "m": "7"}',
            "dimension model is 3, not a string member",
        ),
    ],
)
def test_the_validator_finds_broken_events(event: str, problem: str) -> None:
    assert problem in emf_problems(event)


# -- a run -----------------------------------------------------------------------------------

ORDERS = "model.shop.orders"
CUSTOMERS = "model.shop.customers"


def artifacts() -> tuple[dict[str, Any], dict[str, Any]]:
    """run_results.json and manifest.json of a build: a sqlflow merge with a warned check
    and phase timings, a sqlflow model whose error checks failed, a plain table, a test."""
    run_results = {
        "metadata": {
            "dbt_version": "1.11.16",
            "generated_at": "2026-03-01T10:05:00Z",
            "invocation_id": "inv-1",
            "invocation_started_at": "2026-03-01T10:00:00Z",
        },
        "elapsed_time": 12.5,
        "args": {"which": "build", "target": "prod"},
        "results": [
            {
                "unique_id": ORDERS,
                "status": "success",
                "execution_time": 3.25,
                "message": "OK",
                "adapter_response": {
                    "rows_affected": 175,
                    "rows_inserted": 100,
                    "rows_updated": 50,
                    "rows_deleted": 25,
                    "strategy": "merge",
                    "partitions_touched": 3,
                    "batches": 2,
                    "watermark_after": "2026-03-01T09:00:00+00:00",
                    "batch_phase_seconds": {"dml": [0.5, 2.0], "commit": [0.001, 0.002]},
                    "quality_checks": [
                        {
                            "check": "expression(amount > 0)",
                            "severity": "warn",
                            "status": "fail",
                            "failing_rows": 7,
                        },
                    ],
                },
            },
            {
                "unique_id": CUSTOMERS,
                "status": "error",
                "execution_time": 1.5,
                "message": "quality check failed: not_null(email) (3 failing rows)",
                "adapter_response": {},
            },
            {
                "unique_id": "model.shop.plain",
                "status": "success",
                "execution_time": 0.5,
                "adapter_response": {"rows_affected": 5},
            },
            {"unique_id": "test.shop.t.abc", "status": "pass", "execution_time": 0.1},
        ],
    }
    manifest = {
        "metadata": {"project_name": "shop"},
        "nodes": {
            CUSTOMERS: {"name": "customers", "config": {"materialized": "sqlflow_incremental"}},
            "model.shop.plain": {"name": "plain", "config": {"materialized": "table"}},
        },
    }
    return run_results, manifest


def events(namespace: str = "dbt-sqlflow") -> list[dict[str, Any]]:
    text = render_emf(summary_from_artifacts(*artifacts()), namespace)
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_every_line_obeys_the_specification() -> None:
    text = render_emf(summary_from_artifacts(*artifacts()))
    assert [(line, emf_problems(line)) for line in text.splitlines() if emf_problems(line)] == []


def test_dimensions_are_model_and_strategy() -> None:
    found = {
        tuple(d for s in e["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in s): e
        for e in events()
        if e.get("model") == ORDERS and e.get("phase") in (None, "dml")
    }
    assert set(found) == {
        ("model", "strategy"),
        ("model", "strategy", "status"),
        ("model", "strategy", "check"),
        ("model", "strategy", "phase"),
    }
    # A phase: its batches' count and seconds (no buckets).
    dml = found[("model", "strategy", "phase")]
    assert [m["Name"] for m in dml["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "sqlflow_batch_phase_seconds_count",
        "sqlflow_batch_phase_seconds_sum",
    ]
    assert (dml["sqlflow_batch_phase_seconds_count"], dml["sqlflow_batch_phase_seconds_sum"]) == (
        2,
        2.5,
    )
    figures = found[("model", "strategy")]
    assert figures["strategy"] == "merge"
    assert figures["sqlflow_rows_inserted_total"] == 100
    assert figures["sqlflow_model_duration_seconds"] == 3.25
    assert {m["Name"]: m["Unit"] for m in figures["_aws"]["CloudWatchMetrics"][0]["Metrics"]}[
        "sqlflow_watermark_timestamp_seconds"
    ] == "None"
    assert figures["_aws"]["Timestamp"] == 1772359500000  # 2026-03-01T10:05:00Z
    # The run's identity is in every line, not a dimension.
    assert (figures["invocation_id"], figures["dbt_version"], figures["target"]) == (
        "inv-1",
        "1.11.16",
        "prod",
    )
    check = found[("model", "strategy", "check")]
    assert (check["check"], check["sqlflow_quality_check_failing_rows"]) == (
        "expression(amount > 0)",
        7,
    )
    # A failed model: its configured strategy (auto), its failing checks from the message.
    failed = [e for e in events() if e.get("model") == CUSTOMERS and "check" in e]
    assert [
        (e["strategy"], e["check"], e["sqlflow_quality_checks_failed_total"]) for e in failed
    ] == [("auto", "not_null(email)", 1)]


def test_the_same_figures_as_the_prometheus_export() -> None:
    summary = summary_from_artifacts(*artifacts())
    strategies = {m.unique_id: m.strategy for m in summary.models}
    prometheus = {}
    for family in text_string_to_metric_families(render(summary)):
        for s in family.samples:
            if family.name == "sqlflow_run_info" or "le" in s.labels:
                continue  # the run's identity, histogram buckets: not EMF metrics
            labels = dict(s.labels)
            if "model" in labels:
                labels["strategy"] = strategies[labels["model"]]
            prometheus[(s.name, tuple(sorted(labels.items())))] = s.value
    emf = {}
    for event in events():
        for directive in event["_aws"]["CloudWatchMetrics"]:
            dims = tuple(sorted((d, event[d]) for s in directive["Dimensions"] for d in s))
            for metric in directive["Metrics"]:
                emf[(metric["Name"], dims)] = event[metric["Name"]]
    assert emf == prometheus
    assert len(emf) > 20


def test_run_figures_have_no_dimensions() -> None:
    run = [e for e in events() if e["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]]
    assert len(run) == 1
    assert run[0]["sqlflow_run_success"] == 0
    assert run[0]["sqlflow_run_duration_seconds"] == 12.5


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sqlflow_model_duration_seconds", "Seconds"),
        ("sqlflow_batch_phase_seconds_sum", "Seconds"),
        ("sqlflow_batch_phase_seconds_count", "Count"),
        ("sqlflow_run_finished_timestamp_seconds", "None"),
        ("sqlflow_run_success", "None"),
        ("sqlflow_rows_inserted_total", "Count"),
    ],
)
def test_units(name: str, expected: str) -> None:
    assert unit(name) == expected


def write_artifacts(tmp_path: Path) -> tuple[Path, Path]:
    run_results, manifest = artifacts()
    rr, mf = tmp_path / "run_results.json", tmp_path / "manifest.json"
    rr.write_text(json.dumps(run_results))
    mf.write_text(json.dumps(manifest))
    return rr, mf


def test_cli_writes_the_lines(tmp_path: Path) -> None:
    rr, mf = write_artifacts(tmp_path)
    out = tmp_path / "emf.jsonl"
    args = ["metrics", "export", "--run-results", str(rr), "--manifest", str(mf)]
    result = CliRunner().invoke(
        cli, [*args, "--format", "cloudwatch-emf", "--namespace", "shop/dbt", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines and all(emf_problems(line) == [] for line in lines)
    assert {json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Namespace"] for line in lines} == {
        "shop/dbt"
    }
    assert out.read_text() == export_artifacts(rr, mf, fmt="cloudwatch-emf", namespace="shop/dbt")


@pytest.mark.parametrize(
    ("namespace", "problem"),
    [
        ("AWS/Logs", "starts with AWS/ (reserved for AWS services)"),
        ("dbt sqlflow!", "has characters other than letters, digits, spaces and . - _ / # :"),
        (" ", "is empty"),
    ],
)
def test_cli_refuses_a_namespace_cloudwatch_would_refuse(
    tmp_path: Path, namespace: str, problem: str
) -> None:
    rr, mf = write_artifacts(tmp_path)
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            "export",
            "--run-results",
            str(rr),
            "--manifest",
            str(mf),
            "--format",
            "cloudwatch-emf",
            "--namespace",
            namespace,
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: CloudWatch namespace {namespace!r} {problem}; pass e.g. --namespace dbt-sqlflow"
    )


def test_more_than_100_metrics_are_split_into_directives() -> None:
    metrics = {f"sqlflow_figure_{i}_total": float(i) for i in range(250)}
    record = emf_record(
        {"model": "m", "strategy": "merge"}, metrics, "dbt-sqlflow", 1772359500000, {}
    )
    directives = record["_aws"]["CloudWatchMetrics"]
    assert [len(d["Metrics"]) for d in directives] == [LIMIT, LIMIT, 50]
    assert emf_problems(json.dumps(record)) == []
    assert {m["Name"] for d in directives for m in d["Metrics"]} == set(metrics)
