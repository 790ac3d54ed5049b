"""Where a batch's time goes: per-phase timings and, when enabled, OpenTelemetry spans.

A batch's time is split into :data:`PHASES`; each phase is timed with ``perf_counter``
and added to the batch's ``phases`` (seconds by phase name). The same figures reach
``run_results.json``, the ``loads`` table and the ``sqlflow_batch_phase_seconds``
histogram.

Tracing is optional (the ``dbt-sqlflow[otel]`` extra) and off unless OpenTelemetry's
standard environment variables ask for it (:func:`tracing_requested`). Off, nothing of
the OpenTelemetry SDK is imported and a phase costs two ``perf_counter`` calls. On, each
model execution is a span, each batch a child span of it and each phase a child span of
its batch, all in one trace per dbt invocation, exported by the SDK's batch span
processor through OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``, ...) and flushed when dbt's
command completes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

PHASES = ("plan", "stage", "dml", "checks", "state", "commit")
"""A batch's phases, in order:

``plan``
    Choosing what the batch does: the run's plan (watermark, windows; counted in its first
    batch) and the batch's inspection (row and key checks, matched keys, the strategy).
``stage``
    Writing the batch's rows from the model's SQL into the staging table.
``dml``
    The strategy's statements on the target (a build: the CREATE TABLE AS).
``checks``
    The quality checks.
``state``
    sqlflow's state writes: partition statistics, intervals, the load row.
``commit``
    The batch's COMMIT.
"""

_TRUE = ("1", "true", "yes", "on")


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether OpenTelemetry's standard environment variables ask for traces.

    On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``), or when
    it is unset and an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); off for ``OTEL_TRACES_EXPORTER=none`` and
    ``OTEL_SDK_DISABLED=true``.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class Tracing:
    """One dbt invocation's traces: an SDK tracer provider of its own (never the global
    one), a root span for the invocation and the spans of its model executions.

    Built by :func:`start_tracing` only when tracing is requested and the extra is
    installed; every other module sees ``None`` instead and skips tracing.
    """

    def __init__(self, provider: Any, invocation_id: str, command: str) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("dbt-sqlflow")
        self.root = self.tracer.start_span(
            f"dbt {command}".strip(),
            attributes={"dbt.invocation_id": invocation_id, "dbt.command": command},
        )

    def start(self, name: str, parent: Any, attributes: Mapping[str, Any]) -> Any:
        """A started span, child of ``parent`` (the invocation's root span when None)."""
        context = self._trace.set_span_in_context(parent if parent is not None else self.root)
        return self.tracer.start_span(name, context=context, attributes=_attrs(attributes))

    def fail(self, span: Any, error: BaseException | str) -> None:
        """Record ``error`` on ``span`` (an exception event and an error status)."""
        from opentelemetry.trace import Status, StatusCode

        if isinstance(error, BaseException):
            span.record_exception(error)
            text = f"{type(error).__name__}: {error}"
        else:
            text = error
        span.set_status(Status(StatusCode.ERROR, text[:1000]))

    def shutdown(self, success: bool = True) -> None:
        """End the root span and flush and stop the exporter (end of the dbt command)."""
        if not success:
            self.fail(self.root, "the dbt command failed")
        self.root.end()
        self.provider.shutdown()


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes: OpenTelemetry takes str, bool, int and float, not None."""
    return {k: v for k, v in values.items() if v is not None}


def start_tracing(invocation_id: str, command: str = "") -> Tracing | None:
    """The invocation's :class:`Tracing`, or None when tracing is not requested or the
    ``otel`` extra is not installed (then a debug line says so).

    The trace id is dbt's invocation id (a UUID is 128 bits, as a trace id), so a trace
    is found from any log line or load row of its run.
    """
    if not tracing_requested():
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        from dbt.adapters.events.logging import AdapterLogger

        AdapterLogger("sqlflow").debug(
            "OpenTelemetry variables are set but the OpenTelemetry SDK is not installed:"
            " no traces. Fix: pip install 'dbt-sqlflow[otel]'"
        )
        return None
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; what it is
        # given wins over them, so the default name is given only when they name none.
        resource=Resource.create({} if named else {"service.name": "dbt-sqlflow"}),
        id_generator=_invocation_ids(invocation_id),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    return Tracing(provider, invocation_id, command)


def _exporter() -> Any:
    """The span exporter ``OTEL_TRACES_EXPORTER`` names: ``otlp`` (OTLP/HTTP protobuf,
    configured by the ``OTEL_EXPORTER_OTLP_*`` variables) or ``console``."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _invocation_ids(invocation_id: str) -> Any:
    """An id generator whose trace ids are the invocation id (random span ids)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class InvocationIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            try:
                return int(invocation_id.replace("-", ""), 16) or super().generate_trace_id()
            except ValueError:
                return super().generate_trace_id()

    return InvocationIds()


class BatchClock:
    """The phase timings of one batch (and its span and phase spans when tracing).

    Args:
        seconds: Where each phase's seconds are added (the batch's ``phases``).
        tracing: The invocation's tracing, or None.
        span: The batch's span (None without tracing).
    """

    __slots__ = ("seconds", "span", "started", "tracing")

    def __init__(
        self, seconds: dict[str, float], tracing: Tracing | None = None, span: Any = None
    ) -> None:
        self.seconds = seconds
        self.tracing = tracing
        self.span = span
        self.started = time.time()

    def phase(self, name: str) -> Phase:
        """A context manager timing one phase (adding to it if it ran before)."""
        return Phase(self, name)

    def end(self, attributes: Mapping[str, Any] = {}, error: BaseException | None = None) -> None:
        """End the batch's span (if any), with its final figures and error."""
        span, self.span = self.span, None
        if span is None or self.tracing is None:
            return
        span.set_attributes(_attrs(attributes))
        if error is not None:
            self.tracing.fail(span, error)
        span.end()


class Phase:
    """Times one phase of a batch; records an exception raised in it on its span."""

    __slots__ = ("clock", "name", "span", "started")

    def __init__(self, clock: BatchClock, name: str) -> None:
        self.clock = clock
        self.name = name
        self.span: Any = None
        self.started = 0.0

    def __enter__(self) -> Phase:
        tracing = self.clock.tracing
        if tracing is not None:
            self.span = tracing.start(
                f"sqlflow.phase.{self.name}", self.clock.span, {"sqlflow.phase": self.name}
            )
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        seconds = self.clock.seconds
        seconds[self.name] = seconds.get(self.name, 0.0) + time.perf_counter() - self.started
        if self.span is not None and self.clock.tracing is not None:
            if error is not None:
                self.clock.tracing.fail(self.span, error)
            self.span.end()


def rounded(phases: Mapping[str, float]) -> dict[str, float]:
    """The phases in :data:`PHASES` order, in seconds rounded to microseconds."""
    return {p: round(phases[p], 6) for p in PHASES if p in phases}


# -- memory: the DuckDB instance's peak buffer memory and spill, per batch ---------------------

PROFILE_METRICS = ("system.peak_buffer_memory", "system.total_bytes_spilled")
"""What a sqlflow run asks DuckDB's profiler for (DuckDB >= 1.5's ``tracked_metrics``)."""

PROFILE_ON = (
    f"set tracked_metrics = [{', '.join(repr(m) for m in PROFILE_METRICS)}]",
    "set profiling_coverage = 'ALL'",
    "set enable_profiling = 'no_output'",
)
"""Turn on the profile :class:`MemoryProbe` reads: only the two system metrics, for every
statement (not only SELECTs), printed nowhere. Measured on DuckDB 2.0.1: ~40 µs more per
statement, and ~10 µs to read a statement's profile."""

PROFILE_OFF = ("reset enable_profiling", "reset profiling_coverage", "reset tracked_metrics")

_PEAK = re.compile(r'"peak_buffer_memory":\s*(\d+)')
_SPILLED = re.compile(r'"total_bytes_spilled":\s*(\d+)')


class MemoryProbe:
    """The peak buffer memory of the DuckDB instance and the bytes it spilled to its
    temporary directory, over the statements observed since the last :meth:`take`.

    DuckDB keeps the profile of a connection's last statement only, so the session feeds
    each statement's profile (the JSON of ``get_profiling_information``) to
    :meth:`observe`; both figures come from DuckDB's buffer manager, which all threads
    share (the peak is the instance's, not the statement's own).
    """

    __slots__ = ("peak", "spilled")

    def __init__(self) -> None:
        self.peak: int | None = None
        self.spilled: int | None = None

    def observe(self, profile: str) -> None:
        """Take one statement's profile into the figures (a profile without the system
        metrics, e.g. of BEGIN, changes nothing)."""
        peak = _PEAK.search(profile)
        if peak is not None:
            value = int(peak.group(1))
            self.peak = value if self.peak is None else max(self.peak, value)
        spilled = _SPILLED.search(profile)
        if spilled is not None:
            self.spilled = (self.spilled or 0) + int(spilled.group(1))

    def take(self) -> tuple[int | None, int | None]:
        """``(peak bytes, spilled bytes)`` since the last take (None: nothing observed),
        and start again."""
        figures = (self.peak, self.spilled)
        self.peak = self.spilled = None
        return figures
