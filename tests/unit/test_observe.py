"""observe.py and events.py: phase clocks, tracing switches and spans (on the real
OpenTelemetry SDK, exported in memory), structured log events; the phase histogram."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from dbt_common.events.base_types import msg_from_base_event
from dbt_common.events.event_catcher import EventCatcher
from dbt_common.events.event_manager_client import add_callback_to_manager, get_event_manager
from dbt_common.events.functions import msg_to_json
from sqlflow_testing import sample_run

from dbt.adapters.sqlflow import events, observe
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.metrics.artifacts import ArtifactError, ModelRun, RunSummary, model_run
from dbt.adapters.sqlflow.metrics.collector import phase_histogram
from dbt.adapters.sqlflow.observe import BatchClock, Tracing, start_tracing, tracing_requested
from dbt.adapters.sqlflow.recovery import retry_event

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_tracing_is_on_only_when_the_variables_ask(env: dict[str, str], on: bool) -> None:
    assert tracing_requested(env) is on


def test_a_phase_adds_its_seconds_without_tracing() -> None:
    seconds: dict[str, float] = {"plan": 0.5}
    clock = BatchClock(seconds)
    with clock.phase("state"):
        pass
    with clock.phase("state"):
        pass
    with pytest.raises(ZeroDivisionError), clock.phase("checks"):
        _ = 1 / 0
    assert set(seconds) == {"plan", "state", "checks"}
    assert seconds["plan"] == 0.5 and 0 <= seconds["state"] < 0.1
    clock.end()  # no span: nothing to do
    assert observe.rounded({"dml": 1.23456789, "plan": 2.0}) == {"plan": 2.0, "dml": 1.234568}


@pytest.fixture
def traced() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=observe._invocation_ids("0" * 31 + "f"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, "0" * 31 + "f", "run"), exporter


def test_spans_of_a_model_batch_and_phases(traced: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = traced
    run = sample_run(event_time="event_ts")
    run.services.tracing = tracing
    run.span = tracing.start("sqlflow.model m", None, {"dbt.unique_id": "m"})
    window = Interval(datetime(2025, 1, 1), datetime(2025, 1, 2))
    clock = run.begin_batch(0, window)
    with clock.phase("stage"):
        pass
    run.start_batch("append", window)
    run.add_count("inserted", 4)
    with pytest.raises(ValueError), run.phase("dml"):
        raise ValueError("boom")
    run.close_batch()
    run.commit_group()
    run.fail("DbtRuntimeError")
    tracing.shutdown(success=False)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {
        "dbt run",
        "sqlflow.model m",
        "sqlflow.batch 0",
        "sqlflow.phase.stage",
        "sqlflow.phase.dml",
    }
    assert {s.context.trace_id for s in spans.values()} == {15}
    batch = spans["sqlflow.batch 0"]
    assert (
        batch.parent is not None
        and batch.parent.span_id == spans["sqlflow.model m"].context.span_id
    )
    assert batch.attributes["sqlflow.rows_inserted"] == 4
    assert batch.attributes["sqlflow.window_start"] == "2025-01-01T00:00:00"
    dml = spans["sqlflow.phase.dml"]
    assert dml.status.status_code is StatusCode.ERROR and dml.events[0].name == "exception"
    assert spans["sqlflow.model m"].status.description == "DbtRuntimeError"
    assert spans["dbt run"].status.status_code is StatusCode.ERROR


def test_a_non_uuid_invocation_id_gets_a_random_trace_id() -> None:
    ids = observe._invocation_ids("not hex")
    assert ids.generate_trace_id() != ids.generate_trace_id()
    assert observe._invocation_ids("0" * 32).generate_trace_id() != 0


def test_start_tracing_picks_the_exporter_and_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert start_tracing("inv") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert type(observe._exporter()).__name__ == "ConsoleSpanExporter"
    tracing = start_tracing("12345678-1234-1234-1234-123456789abc", "build")
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "dbt-sqlflow"
    assert tracing.root.name == "dbt build"
    assert tracing.root.get_span_context().trace_id == 0x12345678123412341234123456789ABC
    tracing.provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly")
    assert type(observe._exporter()).__name__ == "OTLPSpanExporter"
    tracing = start_tracing("inv")
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "nightly"
    tracing.provider.shutdown()


def test_start_tracing_without_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    # An absent package: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    catcher = EventCatcher()
    add_callback_to_manager(catcher.catch)
    try:
        assert start_tracing("inv") is None
    finally:
        get_event_manager().callbacks.remove(catcher.catch)
    assert any("pip install 'dbt-sqlflow[otel]'" in e.info.msg for e in catcher.caught_events)


# -- events ---------------------------------------------------------------------------


def test_an_event_keeps_its_text_and_carries_its_fields() -> None:
    event = events.adapter_event(
        "warning", "set {TimeZone: UTC} or {{ x }}", {"rows": 3, "w": None}
    )
    assert event.message() == "sqlflow adapter: set {TimeZone: UTC} or {{ x }}"
    line = json.loads(msg_to_json(msg_from_base_event(event)))
    assert line["data"]["args"] == [{"sqlflow": {"rows": 3.0, "w": None}}]
    assert line["info"]["level"] == "warn"


def test_the_retry_event() -> None:
    run = sample_run(event_time="event_ts")
    batch = run.start_batch("merge", None)
    catcher = EventCatcher()
    add_callback_to_manager(catcher.catch)
    try:
        retry_event(run, batch, "batch 1 failed; retrying", attempt=2, reason="conflict")
    finally:
        get_event_manager().callbacks.remove(catcher.catch)
    (caught,) = [e for e in catcher.caught_events if e.info.name == "AdapterEventWarning"]
    fields = dict(caught.data.args[0]["sqlflow"])
    assert fields["event"] == "retry" and fields["attempt"] == 2
    assert fields["reason"] == "conflict" and fields["load_id"] == batch.load_id
    assert fields["execution_id"] == run.id
    assert caught.info.msg == "sqlflow adapter: batch 1 failed; retrying"


# -- the histogram ----------------------------------------------------------------------


LES = ("0.01", "0.1", "1.0", "10.0", "60.0")


def test_the_phase_histogram_counts_each_batch() -> None:
    model = ModelRun("model.p.m", "m", "model", "success", "merge", 1.0)
    model.batch_phase_seconds = {"dml": [0.001, 0.002, 2.0, 1000.0], "commit": [0.0]}
    family = phase_histogram(RunSummary(models=[model])).metric()
    samples = {(s.name, s.labels["phase"], s.labels.get("le")): s.value for s in family.samples}
    assert [samples[("sqlflow_batch_phase_seconds_bucket", "dml", le)] for le in LES] == [
        2,
        2,
        2,
        3,
        3,
    ]
    assert samples[("sqlflow_batch_phase_seconds_bucket", "dml", "+Inf")] == 4
    assert samples[("sqlflow_batch_phase_seconds_count", "dml", None)] == 4
    assert samples[("sqlflow_batch_phase_seconds_sum", "dml", None)] == pytest.approx(1002.003)
    assert samples[("sqlflow_batch_phase_seconds_count", "commit", None)] == 1


@pytest.mark.parametrize("bad", [[1, 2], {"dml": 3}, {"dml": ["x"]}, {"dml": [True]}])
def test_bad_batch_phase_seconds_are_refused(bad: Any) -> None:
    result = {
        "unique_id": "model.p.m",
        "status": "success",
        "adapter_response": {"batch_phase_seconds": bad},
    }
    with pytest.raises(ArtifactError, match=r"adapter_response\.batch_phase_seconds is"):
        model_run(result, {}, "run_results.json")


# -- the memory probe, on DuckDB's real profile --------------------------------------------


def test_the_memory_probe_reads_peak_and_spill_from_duckdb(tmp_path: Any) -> None:
    import duckdb

    from dbt.adapters.sqlflow.observe import PROFILE_OFF, PROFILE_ON, MemoryProbe

    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    con.execute("set memory_limit = '100MB'")
    con.execute("set threads = 2")
    for sql in PROFILE_ON:
        con.execute(sql)
    probe = MemoryProbe()
    assert probe.take() == (None, None)  # nothing observed
    probe.observe('{"result": "disabled"}')  # a profile without the system metrics
    assert probe.take() == (None, None)
    # 3M distinct strings grouped under 100 MB: the hash table spills.
    con.execute(
        "create table g as select s, count(*) as n from (select md5(i::varchar) as s"
        " from range(3000000) as t(i)) group by s"
    )
    probe.observe(con.get_profiling_information())
    con.execute("select count(*) from g").fetchall()
    probe.observe(con.get_profiling_information())
    peak, spilled = probe.take()
    assert peak is not None and 50 << 20 < peak <= 100 << 20
    assert spilled is not None and spilled > 100 << 20
    con.execute("select 1").fetchall()  # a result is profiled once fetched
    probe.observe(con.get_profiling_information())
    peak, spilled = probe.take()  # started again: only the last statement
    assert peak is not None and spilled == 0
    for sql in PROFILE_OFF:
        con.execute(sql)
    assert con.execute("select current_setting('enable_profiling')").fetchone() == (None,)
    con.close()
