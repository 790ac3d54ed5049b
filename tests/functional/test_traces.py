"""OpenTelemetry traces of a real dbt run (issue 17): the OTLP/HTTP protobuf the SDK's
exporter sends is received on a loopback port and decoded with OpenTelemetry's own protos;
without the OTEL_* variables nothing of the SDK is imported."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_daily_events, now, raw_sources_yml, release, rows

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

NOW = "2025-01-04T00:00:00"
# One transaction per batch (commit_every=1): each batch span holds its own commit.
LOADED = (
    "{{ config(materialized='sqlflow_incremental', event_time='event_ts', batch_size='day',"
    " begin='2025-01-01', incremental_strategy='append', commit_every=1) }}\n"
    "select id, event_ts, v from {{ source('raw', 'events') }}\n"
)
# Day 3's batch fails its error check: its span, its batch's and its model's record it.
FAILED = LOADED.replace(
    "incremental_strategy='append'",
    "incremental_strategy='append', quality_checks=[{'expression': \"v <> 'd3e2'\"}]",
)


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server taking OTLP/HTTP posts; yields its URL and the bodies."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.path == "/v1/traces"
            assert self.headers["Content-Type"] == "application/x-protobuf"
            bodies.append(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def decoded_spans(bodies: list[bytes]) -> list[tuple[dict[str, Any], Span]]:
    """Every span received, with its resource's attributes."""
    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                spans += [(resource, span) for span in scope_spans.spans]
    return spans


def attributes(item: Any) -> dict[str, Any]:
    """A span's (or resource's) attributes as plain values."""
    found = {}
    for kv in item.attributes:
        kind = kv.value.WhichOneof("value")
        found[kv.key] = getattr(kv.value, kind)
    return found


class TestTraces:
    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {
            "sources.yml": raw_sources_yml("events"),
            "loaded.sql": LOADED,
            "failed.sql": FAILED,
        }

    def test_a_run_sends_one_trace_of_models_batches_and_phases(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_daily_events(project)
        with otlp_receiver() as (url, bodies):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly-dbt")
            # Batches are sent only when the processor is flushed: at the end of the
            # command, not on its 5 s schedule.
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
            run_dbt(["run", *now(NOW)], expect_pass=False)
            received = decoded_spans(bodies)
        invocation = json.loads(
            (Path(project.project_root) / "target" / "run_results.json").read_text()
        )["metadata"]["invocation_id"]
        assert received, "no spans received"
        assert {r["service.name"] for r, _ in received} == {"nightly-dbt"}
        spans = [s for _, s in received]
        assert {s.trace_id.hex() for s in spans} == {invocation.replace("-", "")}
        by_id = {s.span_id: s for s in spans}
        (root,) = [s for s in spans if not s.parent_span_id]
        assert root.name == "dbt run"
        models = {
            attributes(s)["dbt.unique_id"]: s for s in spans if s.parent_span_id == root.span_id
        }
        assert set(models) == {"model.test.loaded", "model.test.failed"}

        def children(parent: Span) -> list[Span]:
            return sorted(
                (s for s in spans if s.parent_span_id == parent.span_id),
                key=lambda s: s.start_time_unix_nano,
            )

        loaded = models["model.test.loaded"]
        assert attributes(loaded)["sqlflow.rows_inserted"] == 6
        assert loaded.status.code != Status.STATUS_CODE_ERROR
        names = [s.name for s in children(loaded)]
        assert names == ["sqlflow.phase.plan", *(f"sqlflow.batch {i}" for i in range(3))]
        batches = children(loaded)[1:]
        for index, batch in enumerate(batches):
            attrs = attributes(batch)
            assert attrs["dbt.invocation_id"] == invocation
            assert attrs["sqlflow.execution_id"] == attributes(loaded)["sqlflow.execution_id"]
            assert attrs["sqlflow.batch_index"] == index
            assert attrs["sqlflow.window_start"] == f"2025-01-0{index + 1}T00:00:00"
            assert attrs["sqlflow.strategy"] == "append"
            assert attrs["sqlflow.rows_inserted"] == 2
            assert len(attrs["sqlflow.load_id"]) == 32
            # Append without checks writes each batch straight from the model's query.
            phases = [s.name.rsplit(".", 1)[1] for s in children(batch)]
            assert phases == ["dml", "state", "checks", "state", "commit"]
            for child in children(batch):
                assert batch.start_time_unix_nano <= child.start_time_unix_nano
                assert child.end_time_unix_nano <= batch.end_time_unix_nano
        # The load ids on the spans are the loads table's.
        load_ids = {attributes(b)["sqlflow.load_id"] for b in batches}
        stored = rows(
            project, "select load_id from sqlflow_meta.loads where model = 'model.test.loaded'"
        )
        assert load_ids <= {r[0] for r in stored}

        failed = models["model.test.failed"]
        assert failed.status.code == Status.STATUS_CODE_ERROR
        failed_batches = [s for s in children(failed) if s.name.startswith("sqlflow.batch")]
        assert [b.status.code == Status.STATUS_CODE_ERROR for b in failed_batches] == [
            False,
            False,
            True,
        ]
        # With a check, batches are staged; the failed one never reaches its commit.
        staged = [s.name.rsplit(".", 1)[1] for s in children(failed_batches[0])]
        assert staged == ["stage", "plan", "dml", "state", "checks", "state", "commit"]
        phases = [s.name.rsplit(".", 1)[1] for s in children(failed_batches[2])]
        assert phases == ["stage", "plan", "dml", "state", "checks"]
        checks = next(s for s in children(failed_batches[2]) if s.name == "sqlflow.phase.checks")
        assert checks.status.code == Status.STATUS_CODE_ERROR
        (event,) = [e for e in checks.events if e.name == "exception"]
        assert (
            "quality check failed: expression(v <> 'd3e2')"
            in attributes(event)["exception.message"]
        )
        assert any(e.name == "exception" for e in failed_batches[2].events)
        assert by_id[failed.parent_span_id] is root

    def test_without_the_variables_no_sdk_is_imported(self, project: Any) -> None:
        create_daily_events(project)
        release(project)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        script = (
            "import json, sys\n"
            "from dbt.cli.main import dbtRunner\n"
            "result = dbtRunner().invoke(sys.argv[1:])\n"
            "print(json.dumps({'success': result.success,"
            " 'modules': sorted(m for m in sys.modules if m.startswith('opentelemetry'))}))\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                "run",
                "--select",
                "loaded",
                "--project-dir",
                project.project_root,
                "--profiles-dir",
                project.profiles_dir,
                *now(NOW),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["success"] is True
        # dbt-common itself imports the OpenTelemetry API's context module; nothing of the
        # SDK, the exporter, the protos or the tracing API is loaded.
        assert found["modules"], "expected dbt-common's opentelemetry.context import"
        loaded = [
            m
            for m in found["modules"]
            if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto"))
            or m == "opentelemetry.trace"
        ]
        assert loaded == []
