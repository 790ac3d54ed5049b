"""Output of sqlflow's metrics: text formats, JSON, textfile, Pushgateway.

Collection (:mod:`.collector`) and output are separate: the text formats and the textfile
are written from the run's families (:mod:`.exposition`), the Pushgateway is sent a
registry built by :func:`~.collector.build_registry`. The ``export_*``/``push_*``
functions at the end are what the CLI and the end-of-run hook call.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import push_to_gateway
from prometheus_client.registry import CollectorRegistry

from dbt.adapters.sqlflow.metrics.artifacts import (
    RunSummary,
    load_artifacts,
    summary_from_results,
)
from dbt.adapters.sqlflow.metrics.collector import build_registry, families
from dbt.adapters.sqlflow.metrics.exposition import json_text, openmetrics_text, prometheus_text
from dbt.adapters.sqlflow.metrics.records import LoadRecord
from dbt.adapters.sqlflow.metrics.settings import (
    DEFAULT_JOB,
    DEFAULT_TIMEOUT_SECONDS,
    MetricsSettings,
)

TEXTFILE_NAME = "dbt_sqlflow.prom"
FORMATS = ("prometheus", "openmetrics", "json", "cloudwatch-emf")
EMF = "cloudwatch-emf"


class ExportError(Exception):
    """Writing or pushing metrics failed; the message is one line naming the file or URL."""


_RENDERERS = {"prometheus": prometheus_text, "openmetrics": openmetrics_text, "json": json_text}


def render(summary: RunSummary, fmt: str = "prometheus") -> str:
    """The run's metrics as ``prometheus`` text (0.0.4), ``openmetrics`` or ``json``
    (``cloudwatch-emf``: :func:`.emf.render_emf`).

    The text is prometheus_client's for the collector's families (``generate_latest``),
    written by :mod:`.exposition` without building them.
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        if fmt == EMF:
            raise ValueError("cloudwatch-emf is rendered by emf.render_emf")
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderer(families(summary))


def write_textfile(summary: RunSummary, directory: str | Path) -> Path:
    """Write ``DIR/dbt_sqlflow.prom`` (Prometheus text) atomically: a hidden temp file in
    DIR (not ``*.prom``: the node exporter's textfile collector skips it), then a rename.

    Raises:
        ExportError: ``"<dir>: <cause>"`` when the folder is missing or unwritable.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ExportError(f"{folder}: textfile folder does not exist")
    path = folder / TEXTFILE_NAME
    try:
        _replace(path, render(summary, "prometheus"))
    except OSError as e:
        raise ExportError(f"{folder}: cannot write {TEXTFILE_NAME}: {e.strerror or e}") from e
    return path


def push(
    registry: CollectorRegistry,
    gateway: str,
    job: str = DEFAULT_JOB,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """PUT the registry's samples to a Pushgateway, replacing the ``job`` group.

    Raises:
        ExportError: ``"<url>: <cause>"`` when the gateway is unreachable or refuses.
    """
    try:
        push_to_gateway(gateway, job=job, registry=registry, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise ExportError(
            f"{gateway}: Pushgateway refused the push: HTTP {e.code} {e.reason}"
        ) from e
    except urllib.error.URLError as e:
        raise ExportError(f"{gateway}: Pushgateway unreachable: {e.reason}") from e
    except TimeoutError as e:
        raise ExportError(f"{gateway}: Pushgateway did not answer within {timeout:g} s") from e
    except (OSError, ValueError) as e:
        raise ExportError(f"{gateway}: push failed: {e}") from e


def write_output(text: str, output: str | Path) -> None:
    """Write ``text`` to a file (atomically: a temp file, then a rename).

    Raises:
        ExportError: ``"<file>: <cause>"``.
    """
    path = Path(output)
    try:
        _replace(path, text)
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror or e}") from e


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temp file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def export_artifacts(
    run_results: str | Path = "target/run_results.json",
    manifest: str | Path | None = "target/manifest.json",
    *,
    fmt: str = "prometheus",
    output: str | Path | None = None,
    textfile: str | Path | None = None,
    namespace: str = "dbt-sqlflow",
) -> str:
    """Export a finished run from its artifacts (``dbt-sqlflow metrics export``).

    Args:
        run_results: dbt's run_results.json.
        manifest: dbt's manifest.json; skipped when None or absent.
        fmt: ``prometheus``, ``openmetrics``, ``json`` or ``cloudwatch-emf`` (CloudWatch
            Embedded Metric Format, one JSON object a line).
        output: File to write the text to (atomically); None: only return it.
        textfile: Folder for ``dbt_sqlflow.prom`` (always Prometheus text).
        namespace: The CloudWatch namespace of ``cloudwatch-emf``.

    Returns:
        The rendered text; "" when only ``textfile`` was asked for (not rendered).

    Raises:
        ArtifactError: A missing or malformed artifact.
        ExportError: An unwritable output file or textfile folder, a namespace CloudWatch
            would refuse.
    """
    summary = load_artifacts(run_results, manifest)
    text = ""
    if output is not None or textfile is None:
        if fmt == EMF:
            from dbt.adapters.sqlflow.metrics.emf import render_emf

            try:
                text = render_emf(summary, namespace)
            except ValueError as e:
                raise ExportError(str(e)) from e
        else:
            text = render(summary, fmt)
    if output is not None:
        write_output(text, output)
    if textfile is not None:
        write_textfile(summary, textfile)
    return text


def push_artifacts(
    gateway: str,
    job: str = DEFAULT_JOB,
    run_results: str | Path = "target/run_results.json",
    manifest: str | Path | None = "target/manifest.json",
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RunSummary:
    """Push a finished run's metrics to a Pushgateway (``dbt-sqlflow metrics push``).

    Raises:
        ArtifactError: A missing or malformed artifact.
        ExportError: The gateway is unreachable or refused the push.
    """
    summary = load_artifacts(run_results, manifest)
    push(build_registry(summary), gateway, job, timeout)
    return summary


def export_from_results(
    results: Iterable[Any],
    *,
    invocation_id: str,
    dbt_version: str,
    target: str,
    settings: MetricsSettings | dict[str, Any] | None,
    elapsed: float | None,
    started_at: datetime | None = None,
    records: Sequence[LoadRecord] = (),
    warn: Callable[[str], Any] | None = None,
) -> list[str]:
    """Export a run from dbt's in-memory results, to the profile's ``sqlflow_metrics``.

    Called at the end of ``dbt run``/``dbt build``. Never raises for an export
    failure: an unreachable Pushgateway or an unwritable folder is logged as a
    warning, and the run's outcome stays as it is.

    Args:
        results: dbt's ``RunResult`` objects (the on-run-end ``results``) or
            run_results.json entries.
        invocation_id: dbt's invocation id.
        dbt_version: dbt-core's version.
        target: The profile target name.
        settings: The profile's ``sqlflow_metrics`` (parsed or raw).
        elapsed: Seconds since the run started, if known.
        started_at: When the run started, if known.
        records: The :class:`~.records.LoadRecorder` records of the invocation.
        warn: Called with each warning's text; default: dbt's adapter logger.

    Returns:
        The warnings (empty when every export succeeded).

    Raises:
        DbtConfigError: ``settings`` is invalid (a profile error, not an export failure).
    """
    parsed = MetricsSettings.parse(settings)
    if not parsed.enabled:
        return []
    try:
        summary = summary_from_results(
            results,
            invocation_id=invocation_id,
            dbt_version=dbt_version,
            target=target,
            elapsed=elapsed,
            started_at=started_at,
            records=records,
        )
    except Exception as e:  # a metrics bug must not fail the run
        warnings = [f"metrics not built: {type(e).__name__}: {e}"]
    else:
        warnings = export_summary(summary, parsed)
    _log_warnings(warnings, warn)
    return warnings


def _log_warnings(warnings: list[str], warn: Callable[[str], Any] | None) -> None:
    """Pass each warning to ``warn``, by default dbt's adapter logger (imported only then)."""
    if not warnings:
        return
    if warn is None:
        from dbt.adapters.events.logging import AdapterLogger

        warn = AdapterLogger("sqlflow").warning
    for message in warnings:
        warn(message)


def export_summary(summary: RunSummary, settings: MetricsSettings) -> list[str]:
    """Write the textfile and/or push, as ``settings`` say; return warnings, never raise."""
    warnings: list[str] = []
    try:
        if settings.textfile:
            try:
                write_textfile(summary, settings.textfile)
            except ExportError as e:
                warnings.append(f"metrics textfile not written: {e}")
        if settings.pushgateway:
            try:
                registry = build_registry(summary)
                push(registry, settings.pushgateway, settings.job, settings.timeout_seconds)
            except ExportError as e:
                warnings.append(f"metrics push failed: {e}")
    except Exception as e:  # a metrics bug must not fail the run
        warnings.append(f"metrics export failed: {type(e).__name__}: {e}")
    return warnings
