"""Unit tests of sqlflow's metrics: records, artifacts, the collector, output formats, CLI."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from dbt_common.exceptions import DbtConfigError
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from dbt.adapters.sqlflow.cli import cli
from dbt.adapters.sqlflow.metrics import CheckOutcome, LoadRecorder
from dbt.adapters.sqlflow.metrics.artifacts import (
    ArtifactError,
    RunSummary,
    summary_from_artifacts,
)
from dbt.adapters.sqlflow.metrics.autoexport import RunResultsExporter, install_export_callback
from dbt.adapters.sqlflow.metrics.collector import build_registry
from dbt.adapters.sqlflow.metrics.export import export_artifacts, export_from_results, render
from dbt.adapters.sqlflow.metrics.settings import MetricsSettings

STARTED = "2026-03-01T10:00:00Z"
FINISHED = "2026-03-01T10:05:00Z"
T_FINISHED = datetime(2026, 3, 1, 10, 5, tzinfo=UTC).timestamp()
WATERMARK = "2026-03-01T09:00:00+00:00"
T_WATERMARK = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp()

ORDERS = "model.shop.orders"
CUSTOMERS = "model.shop.customers"
EVENTS = "model.shop.events"
PLAIN = "model.shop.plain"


def run_results() -> dict[str, Any]:
    """A hand-made run_results.json: sqlflow models, a plain dbt-duckdb one, a test, a hook."""
    return {
        "metadata": {
            "dbt_version": "1.11.16",
            "generated_at": FINISHED,
            "invocation_id": "inv-1",
            "invocation_started_at": STARTED,
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
                    "_message": "OK",
                    "rows_affected": 175,
                    "rows_inserted": 100,
                    "rows_updated": 50,
                    "rows_deleted": 25,
                    # (a cdc model's figure; the other strategies report none)
                    "rows_ignored": 4,
                    "strategy": "merge",
                    "partitions_touched": 3,
                    "batches": 2,
                    "watermark_before": "2026-02-28T09:00:00+00:00",
                    "watermark_after": WATERMARK,
                    "load_ids": ["l1", "l2"],
                    "quality_checks": [
                        {
                            "check": "not_null_id",
                            "severity": "error",
                            "status": "pass",
                            "failing_rows": 0,
                        },
                        {
                            "check": "amount_positive",
                            "severity": "warn",
                            "status": "fail",
                            "failing_rows": 7,
                            # The load's window and id (read past: extra keys are fine).
                            "window_start": "2026-03-01T00:00:00",
                            "window_end": "2026-03-02T00:00:00",
                            "load_id": "l2",
                        },
                    ],
                },
            },
            {
                "unique_id": CUSTOMERS,
                "status": "error",
                "execution_time": 1.5,
                "message": "Runtime Error in model customers\n"
                "quality check failed: unique_id (0 failing rows)\n"
                "  quality check failed: email_format (3 failing rows)\n",
                "adapter_response": {},
            },
            {
                "unique_id": PLAIN,
                "status": "success",
                "execution_time": 0.5,
                "message": "OK",
                "adapter_response": {"_message": "OK", "rows_affected": 5},
            },
            {
                "unique_id": EVENTS,
                "status": "skipped",
                "execution_time": 0,
                "message": None,
                "adapter_response": {},
            },
            {
                "unique_id": "test.shop.not_null_orders_id.abc",
                "status": "pass",
                "execution_time": 0.1,
                "adapter_response": {},
            },
            {
                "unique_id": "operation.shop.shop-on-run-end-0",
                "status": "success",
                "execution_time": 0.0,
                "adapter_response": {},
            },
        ],
    }


def manifest() -> dict[str, Any]:
    return {
        "metadata": {"dbt_version": "1.11.16"},
        "nodes": {
            PLAIN: {"name": "plain", "config": {"materialized": "table"}},
            CUSTOMERS: {
                "name": "customers",
                "config": {"materialized": "sqlflow_incremental", "incremental_strategy": "merge"},
            },
            EVENTS: {
                "name": "events",
                "config": {"materialized": "incremental", "incremental_strategy": "append"},
            },
        },
    }


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of Prometheus text, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


@pytest.fixture
def text() -> str:
    return render(summary_from_artifacts(run_results(), manifest()))


# --- records ---------------------------------------------------------------------------


def test_record_keeps_loads_in_order_per_model() -> None:
    collector = LoadRecorder()
    wm1 = datetime(2026, 1, 1, tzinfo=UTC)
    wm2 = datetime(2026, 1, 2)  # naive: taken as UTC
    collector.record(
        ORDERS,
        strategy="merge",
        status="success",
        duration_seconds=1.0,
        rows_inserted=3,
        rows_updated=2,
        partitions_touched=1,
        watermark_before=wm1,
        watermark_after=wm1,
        load_id="a",
        quality_checks=[("nn", "error", "pass", 0)],
    )
    collector.record(CUSTOMERS, strategy="append", status="success", duration_seconds=1.0)
    collector.record(
        ORDERS,
        strategy="merge",
        status="success",
        duration_seconds=2.0,
        rows_deleted=4,
        partitions_touched=2,
        watermark_after=wm2,
        load_id="b",
        quality_checks=[CheckOutcome("pos", "warn", "fail", 9)],
    )
    assert len(collector) == 3
    loads = collector.records(ORDERS)
    assert [r.load_id for r in loads] == ["a", "b"]
    assert loads[0].quality_checks == (CheckOutcome("nn", "error", "pass", 0),)
    collector.clear()
    assert collector.records() == []


@pytest.mark.parametrize(
    ("which", "command"),
    [("generate", "dbt docs generate"), ("compile", "dbt compile"), ("show", "dbt show")],
)
def test_artifacts_of_commands_that_load_nothing_are_refused(which: str, command: str) -> None:
    artifact = run_results()
    artifact["args"]["which"] = which
    with pytest.raises(ArtifactError) as e:
        summary_from_artifacts(artifact, manifest(), run_results_source="target/run_results.json")
    assert str(e.value) == (
        f"target/run_results.json: written by `{command}`, which loads no models; export the"
        " run_results.json of a `dbt run` or `dbt build` (right after it, or a copy of it"
        " passed with --run-results)"
    )


def test_strategy_of_a_failed_sqlflow_model_comes_from_its_config() -> None:
    nodes = manifest()
    summary = summary_from_artifacts(run_results(), nodes)
    assert [(m.unique_id, m.strategy) for m in summary.models if m.status == "error"] == [
        (CUSTOMERS, "merge")
    ]
    del nodes["nodes"][CUSTOMERS]["config"]["incremental_strategy"]
    summary = summary_from_artifacts(run_results(), nodes)
    assert [(m.unique_id, m.strategy) for m in summary.models if m.status == "error"] == [
        (CUSTOMERS, "auto")
    ]


@pytest.mark.parametrize("which", ["run", "build", "seed", "snapshot", "retry", None])
def test_artifacts_of_loading_commands_are_read(which: str | None) -> None:
    artifact = run_results()
    artifact["args"]["which"] = which
    assert [m.unique_id for m in summary_from_artifacts(artifact, manifest()).models] == [
        ORDERS,
        CUSTOMERS,
        PLAIN,
        EVENTS,
    ]


# --- collector output, value by value -------------------------------------------------


def test_prometheus_text_values(text: str) -> None:
    got = samples(text)
    expected = {
        key("sqlflow_model_runs_total", model=ORDERS, strategy="merge", status="success"): 1,
        key("sqlflow_model_runs_total", model=CUSTOMERS, strategy="merge", status="error"): 1,
        key("sqlflow_model_runs_total", model=PLAIN, strategy="table", status="success"): 1,
        key("sqlflow_model_runs_total", model=EVENTS, strategy="append", status="skipped"): 1,
        key("sqlflow_model_duration_seconds", model=ORDERS): 3.25,
        key("sqlflow_model_duration_seconds", model=CUSTOMERS): 1.5,
        key("sqlflow_model_duration_seconds", model=PLAIN): 0.5,
        key("sqlflow_model_duration_seconds", model=EVENTS): 0.0,
        key("sqlflow_rows_affected_total", model=ORDERS): 175,
        key("sqlflow_rows_affected_total", model=PLAIN): 5,
        key("sqlflow_rows_inserted_total", model=ORDERS): 100,
        key("sqlflow_rows_updated_total", model=ORDERS): 50,
        key("sqlflow_rows_deleted_total", model=ORDERS): 25,
        key("sqlflow_rows_ignored_total", model=ORDERS): 4,
        key("sqlflow_partitions_touched", model=ORDERS): 3,
        key("sqlflow_model_batches", model=ORDERS): 2,
        key("sqlflow_watermark_timestamp_seconds", model=ORDERS): T_WATERMARK,
        key("sqlflow_watermark_lag_seconds", model=ORDERS): T_FINISHED - T_WATERMARK,
        key("sqlflow_quality_checks_failed_total", model=ORDERS, check="amount_positive"): 1,
        key("sqlflow_quality_checks_failed_total", model=CUSTOMERS, check="unique_id"): 1,
        key("sqlflow_quality_checks_failed_total", model=CUSTOMERS, check="email_format"): 1,
        key("sqlflow_quality_check_failing_rows", model=ORDERS, check="amount_positive"): 7,
        key("sqlflow_quality_check_failing_rows", model=CUSTOMERS, check="unique_id"): 0,
        key("sqlflow_quality_check_failing_rows", model=CUSTOMERS, check="email_format"): 3,
        key("sqlflow_run_nodes_total", resource_type="model", status="success"): 2,
        key("sqlflow_run_nodes_total", resource_type="model", status="error"): 1,
        key("sqlflow_run_nodes_total", resource_type="model", status="skipped"): 1,
        key("sqlflow_run_nodes_total", resource_type="test", status="pass"): 1,
        key("sqlflow_run_nodes_total", resource_type="operation", status="success"): 1,
        key("sqlflow_run_duration_seconds"): 12.5,
        key("sqlflow_run_success"): 0,
        key("sqlflow_run_finished_timestamp_seconds"): T_FINISHED,
        key("sqlflow_run_info", invocation_id="inv-1", dbt_version="1.11.16", target="prod"): 1,
    }
    for k, value in expected.items():
        assert got.get(k) == pytest.approx(value), k
    assert set(got) == set(expected)  # nothing else, no _created samples


def test_labels_are_bounded(text: str) -> None:
    allowed = {
        "model",
        "strategy",
        "status",
        "check",
        "resource_type",
        "invocation_id",
        "dbt_version",
        "target",
    }
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("sqlflow_")
        for s in family.samples:
            assert set(s.labels) <= allowed, s


def test_names_need_no_escaping() -> None:
    """exposition.py writes names as they are: every one must be legacy-valid."""
    import re

    from dbt.adapters.sqlflow.metrics.collector import FAMILIES, phase_histogram

    metric_name = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
    label_name = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
    histogram = phase_histogram(RunSummary())
    for name, labels in [*((f.name, f.labels) for f in FAMILIES), (histogram.name, ["le"])]:
        assert metric_name.fullmatch(name), name
        assert all(label_name.fullmatch(x) and not x.startswith("__") for x in labels), labels
    assert all(label_name.fullmatch(x) for x in histogram.labels)


def test_success_and_plain_dbt_duckdb_run() -> None:
    data = {
        "metadata": {"dbt_version": "1.11.16", "generated_at": FINISHED, "invocation_id": "x"},
        "elapsed_time": 2.0,
        "results": [
            {
                "unique_id": "model.p.a",
                "status": "success",
                "execution_time": 1.0,
                "adapter_response": {"_message": "OK"},
            },
            {
                "unique_id": "seed.p.s",
                "status": "success",
                "execution_time": 0.25,
                "adapter_response": {"_message": "INSERT 3", "rows_affected": 3},
            },
        ],
    }
    got = samples(render(summary_from_artifacts(data)))
    assert got[key("sqlflow_run_success")] == 1
    assert (
        got[key("sqlflow_model_runs_total", model="model.p.a", strategy="", status="success")] == 1
    )
    assert (
        got[key("sqlflow_model_runs_total", model="seed.p.s", strategy="seed", status="success")]
        == 1
    )
    assert got[key("sqlflow_rows_affected_total", model="seed.p.s")] == 3
    assert got[key("sqlflow_run_info", invocation_id="x", dbt_version="1.11.16", target="")] == 1
    assert not any(k[0].startswith("sqlflow_rows_inserted") for k in got)


def test_openmetrics_text(text: str) -> None:
    assert text  # the Prometheus fixture renders
    om = render(summary_from_artifacts(run_results(), manifest()), "openmetrics")
    assert om.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(om)}
    assert families["sqlflow_model_runs"].type == "counter"
    assert families["sqlflow_run_info"].type == "gauge"
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert got[key("sqlflow_rows_inserted_total", model=ORDERS)] == 100
    assert not any(name.endswith("_created") for name, _ in got)
    assert got[key("sqlflow_watermark_lag_seconds", model=ORDERS)] == T_FINISHED - T_WATERMARK
    assert got[key("sqlflow_run_success")] == 0


def odd_run_results() -> dict[str, Any]:
    """The fixture run plus what a text writer must get right: a quote, a backslash, a
    newline and non-ASCII in label values, phase timings below, between, on and above the
    bucket bounds, a phase without batches, a NaN and an infinite value."""
    data = run_results()
    odd = 'model.shop.we"ird\\na\nme_\u00e9'
    phases = {"dml": [0.1, 0.25, 61.0, 1e-7, 10.0], "plan": [], "commit": [0.0]}
    data["results"][0]["adapter_response"]["batch_phase_seconds"] = {"dml": [0.5], "state": [2.0]}
    data["results"] += [
        {
            "unique_id": odd,
            "status": "success",
            "execution_time": float("nan"),
            "adapter_response": {
                "rows_inserted": 3,
                "strategy": "merge",
                "batch_phase_seconds": phases,
                "quality_checks": [{"check": 'c"\\\n\u00e9', "status": "fail"}],
            },
        },
        {"unique_id": "model.shop.inf", "status": "success", "execution_time": float("inf")},
    ]
    return data


def prometheus_client_text(summary: RunSummary, fmt: str) -> str:
    """What prometheus_client writes for the collector's families (and the JSON of their
    samples as export wrote it from them): what render() must write."""
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    registry = build_registry(summary)
    if fmt == "prometheus":
        return generate_latest(registry).decode("utf-8")
    if fmt == "openmetrics":
        return generate_openmetrics(registry).decode("utf-8")
    families = [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples
            ],
        }
        for family in registry.collect()
    ]
    return '{"metrics": [\n' + ",\n".join(json.dumps(f) for f in families) + "\n]}\n"


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics", "json"])
@pytest.mark.parametrize("data", [run_results, odd_run_results])
def test_render_writes_prometheus_clients_text(fmt: str, data: Callable[[], Any]) -> None:
    """render() writes the text itself (exposition.py, for speed); byte for byte the text
    prometheus_client writes for the collector's families, histogram included."""
    summary = summary_from_artifacts(data(), manifest())
    text = render(summary, fmt)
    assert text == prometheus_client_text(summary, fmt)
    assert ("sqlflow_batch_phase_seconds_bucket" in text) == (data is odd_run_results)


def test_json_format() -> None:
    data = json.loads(render(summary_from_artifacts(run_results(), manifest()), "json"))
    families = {f["name"]: f for f in data["metrics"]}
    assert families["sqlflow_rows_deleted"]["type"] == "counter"
    assert {
        "name": "sqlflow_rows_deleted_total",
        "labels": {"model": ORDERS},
        "value": 25.0,
    } in families["sqlflow_rows_deleted"]["samples"]
    assert families["sqlflow_run_duration_seconds"]["samples"][0]["value"] == 12.5


def test_collect_is_fresh_and_registry_is_private() -> None:
    from prometheus_client import REGISTRY, generate_latest

    summary = summary_from_artifacts(run_results(), manifest())
    registry = build_registry(summary)
    assert registry is not REGISTRY
    first = generate_latest(registry)
    assert generate_latest(registry) == first
    summary.models[0].rows_inserted = 101
    assert b'sqlflow_rows_inserted_total{model="model.shop.orders"} 101.0' in generate_latest(
        registry
    )
    assert b"sqlflow_" not in generate_latest(REGISTRY)


# --- in-memory results (end of run) ---------------------------------------------------


def fake_result(unique_id: str, status: str, response: dict[str, Any], message: str = "OK"):
    node = SimpleNamespace(
        unique_id=unique_id,
        name=unique_id.split(".")[-1],
        config=SimpleNamespace(materialized="table", incremental_strategy=None),
    )
    return SimpleNamespace(
        node=node,
        status=SimpleNamespace(value=status),
        execution_time=1.25,
        adapter_response=response,
        message=message,
    )


def test_export_from_results_writes_textfile(tmp_path: Path) -> None:
    results = [
        fake_result(ORDERS, "success", {"rows_inserted": 4, "strategy": "merge"}),
        fake_result(CUSTOMERS, "error", {}, "quality check failed: nn (4 failing rows)"),
        run_results()["results"][2],  # a run_results.json dict works too
    ]
    collector = LoadRecorder()
    collector.record(
        CUSTOMERS,
        strategy="append",
        status="error",
        duration_seconds=1,
        quality_checks=[("nn", "error", "fail", 6)],
        error_type="QualityError",
    )
    warnings = export_from_results(
        results,
        invocation_id="inv",
        dbt_version="1.11.16",
        target="dev",
        settings={"textfile": str(tmp_path)},
        elapsed=3.0,
        records=collector.records(),
    )
    assert warnings == []
    got = samples((tmp_path / "dbt_sqlflow.prom").read_text())
    assert got[key("sqlflow_rows_inserted_total", model=ORDERS)] == 4
    assert (
        got[key("sqlflow_model_runs_total", model=CUSTOMERS, strategy="append", status="error")]
        == 1
    )
    assert got[key("sqlflow_quality_check_failing_rows", model=CUSTOMERS, check="nn")] == 6
    assert got[key("sqlflow_model_runs_total", model=PLAIN, strategy="", status="success")] == 1
    assert got[key("sqlflow_run_duration_seconds")] == 3.0
    assert got[key("sqlflow_run_success")] == 0
    assert (
        got[key("sqlflow_run_info", invocation_id="inv", dbt_version="1.11.16", target="dev")] == 1
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_export_from_results_failures_only_warn(tmp_path: Path) -> None:
    logged: list[str] = []
    warnings = export_from_results(
        [fake_result(ORDERS, "success", {})],
        invocation_id="i",
        dbt_version="v",
        target="t",
        elapsed=None,
        warn=logged.append,
        settings={
            "textfile": str(tmp_path / "missing"),
            "pushgateway": f"http://127.0.0.1:{free_port()}",
            "timeout_seconds": 2,
        },
    )
    assert logged == warnings and len(warnings) == 2
    assert warnings[0] == (
        f"metrics textfile not written: {tmp_path / 'missing'}: textfile folder does not exist"
    )
    assert warnings[1].startswith("metrics push failed: http://127.0.0.1:")
    assert "Pushgateway unreachable" in warnings[1]
    assert (
        export_from_results(
            [], invocation_id="i", dbt_version="v", target="t", elapsed=None, settings=None
        )
        == []
    )


def artifact_event(path: Path) -> SimpleNamespace:
    return SimpleNamespace(
        info=SimpleNamespace(name="ArtifactWritten"),
        data=SimpleNamespace(artifact_type="RunExecutionResult", artifact_path=str(path)),
    )


@pytest.mark.parametrize(
    "which, exported", [("run", True), ("build", True), ("test", False), ("seed", False)]
)
def test_run_results_exporter(tmp_path: Path, which: str, exported: bool) -> None:
    data = run_results()
    data["args"] = {"which": which}
    path = tmp_path / "run_results.json"
    path.write_text(json.dumps(data))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    out = tmp_path / "prom"
    out.mkdir()
    exporter = RunResultsExporter(MetricsSettings(textfile=str(out)), target="ci")
    exporter(SimpleNamespace(info=SimpleNamespace(name="MainReportVersion")))
    exporter(artifact_event(path))
    prom = out / "dbt_sqlflow.prom"
    assert prom.exists() is exported
    if exported:
        got = samples(prom.read_text())
        assert (
            got[key("sqlflow_run_info", invocation_id="inv-1", dbt_version="1.11.16", target="ci")]
            == 1
        )
        assert (
            got[key("sqlflow_model_runs_total", model=PLAIN, strategy="table", status="success")]
            == 1
        )


def test_run_results_exporter_never_raises(tmp_path: Path) -> None:
    exporter = RunResultsExporter(MetricsSettings(textfile=str(tmp_path)))
    exporter(artifact_event(tmp_path / "absent.json"))  # logs a warning
    exporter(object())  # not an event at all
    assert not (tmp_path / "dbt_sqlflow.prom").exists()


def test_install_export_callback() -> None:
    from dbt_common.events.event_manager_client import get_event_manager

    assert install_export_callback(None) is None
    assert install_export_callback({"job": "x"}) is None
    manager = get_event_manager()
    before = list(manager.callbacks)
    try:
        exporter = install_export_callback({"textfile": "/tmp"}, target="dev")
        assert exporter is not None and manager.callbacks[-1] is exporter
    finally:
        manager.callbacks[:] = before


# --- settings -------------------------------------------------------------------------


def test_settings_parse() -> None:
    assert MetricsSettings.parse(None) == MetricsSettings()
    assert not MetricsSettings.parse(None).enabled
    parsed = MetricsSettings.parse(
        {
            "textfile": "/d",
            "pushgateway": "http://127.0.0.1:9091",
            "job": "nightly",
            "timeout_seconds": 3,
        }
    )
    assert parsed == MetricsSettings("/d", "http://127.0.0.1:9091", "nightly", 3.0)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("dir", "sqlflow_metrics: got 'dir'; expected a mapping such as"),
        (
            {"textfil": "/d"},
            "unknown key 'textfil' (allowed: textfile, pushgateway, job, timeout_seconds)",
        ),
        ({"textfile": ""}, "textfile is ''; expected a folder path"),
        (
            {"pushgateway": "127.0.0.1:9091"},
            "pushgateway is '127.0.0.1:9091'; expected an "
            "http(s) URL such as 'http://127.0.0.1:9091'",
        ),
        ({"textfile": "/d", "job": "a/b"}, "job is 'a/b'; expected a non-empty name without '/'"),
        ({"textfile": "/d", "timeout_seconds": 0}, "timeout_seconds is 0; expected a positive"),
    ],
)
def test_settings_errors(raw: Any, message: str) -> None:
    with pytest.raises(DbtConfigError, match="sqlflow_metrics") as e:
        MetricsSettings.parse(raw)
    assert message in str(e.value)


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(DbtConfigError) as e:
        MetricsSettings.parse({"textfile": 1, "job": "", "extra": 1})
    assert str(e.value).count(";") >= 2


# --- CLI ------------------------------------------------------------------------------


@pytest.fixture
def artifacts(tmp_path: Path) -> tuple[Path, Path]:
    rr = tmp_path / "run_results.json"
    mf = tmp_path / "manifest.json"
    rr.write_text(json.dumps(run_results()))
    mf.write_text(json.dumps(manifest()))
    return rr, mf


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics", "json"])
def test_cli_export_stdout_matches_library(artifacts: tuple[Path, Path], fmt: str) -> None:
    rr, mf = artifacts
    result = invoke(
        "metrics", "export", "--run-results", str(rr), "--manifest", str(mf), "--format", fmt
    )
    assert result.exit_code == 0, result.output
    assert result.output == export_artifacts(rr, mf, fmt=fmt)


def test_cli_export_output_and_textfile(artifacts: tuple[Path, Path], tmp_path: Path) -> None:
    rr, mf = artifacts
    out = tmp_path / "out.txt"
    prom = tmp_path / "prom"
    prom.mkdir()
    result = invoke(
        "metrics",
        "export",
        "--run-results",
        str(rr),
        "--manifest",
        str(mf),
        "--format",
        "json",
        "--output",
        str(out),
        "--textfile",
        str(prom),
    )
    assert result.exit_code == 0 and result.output == ""
    assert json.loads(out.read_text())["metrics"]
    assert samples((prom / "dbt_sqlflow.prom").read_text())[key("sqlflow_run_success")] == 0
    assert sorted(p.name for p in prom.iterdir()) == ["dbt_sqlflow.prom"]  # no temp file left


def test_cli_defaults_and_optional_manifest(
    artifacts: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    rr, _ = artifacts
    (rr.parent / "target").mkdir()
    rr.rename(rr.parent / "target" / "run_results.json")
    monkeypatch.chdir(rr.parent)
    result = invoke("metrics", "export")
    assert result.exit_code == 0
    assert "sqlflow_run_info" in result.output


def test_cli_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and "dbt-sqlflow" in result.output


def cli_error(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_cli_error_missing_run_results(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert cli_error("metrics", "export", "--run-results", str(path)) == (
        f"Error: {path}: file not found (expected dbt's run_results.json)"
    )


@pytest.mark.parametrize(
    "content, cause",
    [
        (
            "{not json",
            "malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ("[]", "expected a JSON object, found list"),
        ("{}", "no 'results' list; is this dbt's run_results.json?"),
        ('{"results": [{"status": "success"}]}', "result 0 has no unique_id and status"),
        (
            '{"results": [{"unique_id": "model.p.a", "status": "success", '
            '"adapter_response": {"rows_inserted": "many"}}]}',
            "model.p.a: adapter_response.rows_inserted is 'many'; expected an integer",
        ),
        (
            '{"results": [{"unique_id": "model.p.a", "status": "success", '
            '"adapter_response": {"watermark_after": "yesterday"}}]}',
            "model.p.a: adapter_response.watermark_after is 'yesterday'; expected an ISO-8601 "
            "timestamp",
        ),
    ],
)
def test_cli_error_malformed_run_results(tmp_path: Path, content: str, cause: str) -> None:
    path = tmp_path / "run_results.json"
    path.write_text(content)
    line = cli_error(
        "metrics", "export", "--run-results", str(path), "--manifest", str(tmp_path / "none.json")
    )
    assert line == f"Error: {path}: {cause}"


def test_cli_error_malformed_manifest(artifacts: tuple[Path, Path]) -> None:
    rr, mf = artifacts
    mf.write_text('{"metadata": {}}')
    assert cli_error("metrics", "export", "--run-results", str(rr), "--manifest", str(mf)) == (
        f"Error: {mf}: no 'nodes' object; is this dbt's manifest.json?"
    )
    mf.write_text("")
    assert cli_error(
        "metrics",
        "push",
        "--gateway",
        "http://127.0.0.1:1",
        "--run-results",
        str(rr),
        "--manifest",
        str(mf),
    ).startswith(f"Error: {mf}: malformed JSON")


def test_cli_error_textfile_folder(artifacts: tuple[Path, Path], tmp_path: Path) -> None:
    rr, _ = artifacts
    missing = tmp_path / "missing"
    assert (
        cli_error("metrics", "export", "--run-results", str(rr), "--textfile", str(missing))
        == f"Error: {missing}: textfile folder does not exist"
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable_despite_mode(locked):
            line = cli_error(
                "metrics", "export", "--run-results", str(rr), "--textfile", str(locked)
            )
            assert line == f"Error: {locked}: cannot write dbt_sqlflow.prom: Permission denied"
        not_a_dir = tmp_path / "file"
        not_a_dir.write_text("")
        assert (
            cli_error("metrics", "export", "--run-results", str(rr), "--textfile", str(not_a_dir))
            == f"Error: {not_a_dir}: textfile folder does not exist"
        )
    finally:
        locked.chmod(0o700)


def _writable_despite_mode(path: Path) -> bool:
    """Root ignores directory modes; then fall back to a path under a regular file."""
    import os

    return os.access(path, os.W_OK)


def test_cli_error_unwritable_textfile_as_root(
    artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    rr, _ = artifacts
    # A folder named like the target file makes the final rename fail, for any user.
    prom = tmp_path / "prom"
    (prom / "dbt_sqlflow.prom").mkdir(parents=True)
    line = cli_error("metrics", "export", "--run-results", str(rr), "--textfile", str(prom))
    assert line.startswith(f"Error: {prom}: cannot write dbt_sqlflow.prom: ")
    assert sorted(p.name for p in prom.iterdir()) == ["dbt_sqlflow.prom"]


def test_cli_error_output_file(artifacts: tuple[Path, Path], tmp_path: Path) -> None:
    rr, _ = artifacts
    out = tmp_path / "no" / "such" / "dir" / "m.txt"
    assert cli_error("metrics", "export", "--run-results", str(rr), "--output", str(out)) == (
        f"Error: {out}: cannot write: No such file or directory"
    )


def test_cli_error_unreachable_gateway(artifacts: tuple[Path, Path]) -> None:
    rr, mf = artifacts
    url = f"http://127.0.0.1:{free_port()}"
    line = cli_error(
        "metrics",
        "push",
        "--gateway",
        url,
        "--run-results",
        str(rr),
        "--manifest",
        str(mf),
        "--timeout",
        "2",
    )
    assert line == f"Error: {url}: Pushgateway unreachable: [Errno 111] Connection refused"


def test_cli_usage_error_exit_code() -> None:
    result = CliRunner().invoke(cli, ["metrics", "export", "--format", "xml"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["metrics", "push"])
    assert result.exit_code == 2 and "--gateway" in result.output


def test_importing_the_package_stays_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dbt.adapters.sqlflow.metrics, dbt.adapters.sqlflow.metrics.autoexport;"
        "print(sorted(m for m in sys.modules if m.startswith(('prometheus_client', 'click'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_grafana_dashboard_uses_our_metrics() -> None:
    import re

    path = Path(__file__).parents[2] / "contrib" / "grafana" / "dbt_sqlflow_dashboard.json"
    dashboard = json.loads(path.read_text())
    assert dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(re.findall(r"sqlflow_[a-z_]+", " ".join(exprs)))
    registry = build_registry(summary_from_artifacts(run_results(), manifest()))
    exported = {s.name for f in registry.collect() for s in f.samples}
    # Families this fixture has no samples of (retries) count by their declared names.
    from dbt.adapters.sqlflow.metrics.collector import FAMILIES

    declared = {f"{f.name}_total" if f.counter else f.name for f in FAMILIES}
    # The phase panels (issue 17) read the histogram the per-phase timings work adds
    # beside the board; once merged, the exporter writes it and this set goes.
    coming = {
        "sqlflow_batch_phase_seconds_bucket",
        "sqlflow_batch_phase_seconds_sum",
        "sqlflow_batch_phase_seconds_count",
    }
    known = exported | declared | coming
    assert used and used <= known, used - known


def test_cli_refuses_the_artifacts_of_docs_generate(artifacts: tuple[Path, Path]) -> None:
    rr, mf = artifacts
    data = json.loads(rr.read_text())
    data["args"]["which"] = "generate"
    rr.write_text(json.dumps(data))
    assert cli_error("metrics", "export", "--run-results", str(rr), "--manifest", str(mf)) == (
        f"Error: {rr}: written by `dbt docs generate`, which loads no models; export the"
        " run_results.json of a `dbt run` or `dbt build` (right after it, or a copy of it"
        " passed with --run-results)"
    )


def test_watermark_lag_from_a_pinned_now() -> None:
    artifact = run_results()
    artifact["args"]["vars"] = {"sqlflow_now": "2026-03-01T12:00:00"}
    got = samples(render(summary_from_artifacts(artifact, manifest())))
    pinned = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    assert got[key("sqlflow_watermark_lag_seconds", model=ORDERS)] == pinned - T_WATERMARK
    # The run's own timestamps stay those of the run.
    assert got[key("sqlflow_run_finished_timestamp_seconds")] == T_FINISHED


def test_a_failed_windowed_run_counts_its_committed_batches_and_its_retries() -> None:
    recorder = LoadRecorder()
    for rows, retries in ((3, ("conflict",)), (4, ())):
        recorder.record(
            EVENTS,
            strategy="append",
            status="success",
            duration_seconds=0.1,
            rows_inserted=rows,
            retries=retries,
        )
    # The third batch failed for good after two retries; its rows were rolled back.
    recorder.record(
        EVENTS,
        strategy="append",
        status="error",
        duration_seconds=0.1,
        rows_inserted=9,
        retries=("conflict", "conflict"),
        error_type="DbtRuntimeError",
    )
    results = run_results()
    results["results"] = [
        {"unique_id": EVENTS, "status": "error", "execution_time": 1, "adapter_response": {}},
        {
            "unique_id": ORDERS,
            "status": "success",
            "execution_time": 1,
            "adapter_response": {
                "rows_inserted": 1,
                "batches": 30,
                "commits": 3,
                "retries": 2,
                "retry_reasons": {"lock": 1, "out_of_memory": 1},
            },
        },
    ]
    summary = summary_from_artifacts(results, manifest(), records=recorder.records())
    got = samples(render(summary))
    assert got[key("sqlflow_rows_inserted_total", model=EVENTS)] == 7
    assert got[key("sqlflow_model_batches", model=EVENTS)] == 2
    assert got[key("sqlflow_model_commits", model=ORDERS)] == 3
    assert {k: v for k, v in got.items() if k[0] == "sqlflow_retries_total"} == {
        key("sqlflow_retries_total", model=EVENTS, reason="conflict"): 3,
        key("sqlflow_retries_total", model=ORDERS, reason="lock"): 1,
        key("sqlflow_retries_total", model=ORDERS, reason="out_of_memory"): 1,
    }
