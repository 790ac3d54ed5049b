"""Automatic export at the end of ``dbt run`` / ``dbt build`` (profile ``sqlflow_metrics``).

dbt fires an ``ArtifactWritten`` event right after it writes ``run_results.json``; a
callback added to dbt's event manager when the adapter is created exports that file
(with the ``manifest.json`` beside it) to the textfile folder and/or the Pushgateway.
dbt builds a new adapter, and resets its callbacks, for every invocation, so each run
exports once.

Why not an ``on-run-end`` hook in the adapter's own ``dbt_project.yml``: dbt-core 1.11
does run it, but adds its result to every run, seed, snapshot, test and build (the
``len(results)`` checks of dbt-tests-adapter then fail) and shows a "project hook" line
in every command's output.

This module imports nothing heavy: prometheus_client is loaded on the first export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow.metrics.records import LoadRecord
from dbt.adapters.sqlflow.metrics.settings import MetricsSettings

EXPORT_COMMANDS = frozenset({"run", "build"})
RUN_RESULTS_ARTIFACT = "RunExecutionResult"


def export_run_results_file(
    path: str | Path,
    settings: MetricsSettings,
    *,
    target: str = "",
    records: Sequence[LoadRecord] = (),
    warn: Callable[[str], Any] | None = None,
) -> list[str]:
    """Export a just-written ``run_results.json`` of ``dbt run``/``build``; never raises.

    Other commands' results (``args.which`` not ``run``/``build``) are ignored. A bad
    artifact, an unwritable folder or an unreachable Pushgateway is a warning.

    Args:
        path: The run_results.json dbt just wrote; ``manifest.json`` is read beside it.
        settings: Parsed ``sqlflow_metrics``.
        target: The profile target name, used when run_results.json does not say.
        records: The invocation's in-memory load records.
        warn: Called with each warning; default: dbt's adapter logger.

    Returns:
        The warnings (empty when everything was exported or there was nothing to do).
    """
    from dbt.adapters.sqlflow.metrics.artifacts import ArtifactError, read_json
    from dbt.adapters.sqlflow.metrics.export import export_summary

    run_results_path = Path(path)
    try:
        if (read_json(run_results_path, "run_results.json").get("args") or {}).get(
            "which"
        ) not in EXPORT_COMMANDS:
            return []
    except ArtifactError as e:
        return _warn([f"metrics not exported: {e}"], warn)
    from dbt.adapters.sqlflow.metrics.artifacts import load_artifacts

    try:
        summary = load_artifacts(
            run_results_path, run_results_path.with_name("manifest.json"), records
        )
    except ArtifactError as e:
        return _warn([f"metrics not exported: {e}"], warn)
    if not summary.target:
        summary.target = target
    return _warn(export_summary(summary, settings), warn)


def _warn(messages: list[str], warn: Callable[[str], Any] | None) -> list[str]:
    if messages and warn is None:
        from dbt.adapters.events.logging import AdapterLogger

        warn = AdapterLogger("sqlflow").warning
    if warn is not None:
        for message in messages:
            warn(message)
    return messages


class RunResultsExporter:
    """A dbt event callback: exports when dbt announces ``run_results.json``."""

    def __init__(
        self,
        settings: MetricsSettings,
        target: str = "",
        records: Callable[[], Sequence[LoadRecord]] | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.records = records
        self.exported: list[str] = []

    def __call__(self, msg: Any) -> None:
        """Handle one dbt event message; an exception here would break dbt's logging."""
        try:
            if msg.info.name == "MainEncounteredError":
                self.export_failed_run(str(getattr(msg.data, "exc", "") or "dbt failed"))
                return
            if msg.info.name != "ArtifactWritten":
                return
            if msg.data.artifact_type != RUN_RESULTS_ARTIFACT:
                return
            path = msg.data.artifact_path
            export_run_results_file(
                path,
                self.settings,
                target=self.target,
                records=self.records() if self.records is not None else (),
            )
            self.exported.append(path)
        except Exception as e:  # a metrics bug must never fail or break the run
            try:
                _warn([f"metrics export failed: {type(e).__name__}: {e}"], None)
            except Exception:
                pass

    def export_failed_run(self, error: str) -> list[str]:
        """Export a failed run when ``dbt run``/``build`` ended before writing
        run_results.json (e.g. the database file locked by another process), so
        ``sqlflow_run_success`` says 0 instead of keeping the previous run's 1."""
        from dbt.flags import get_flags

        if self.exported or str(getattr(get_flags(), "WHICH", "")) not in EXPORT_COMMANDS:
            return []
        from datetime import datetime

        from dbt.version import __version__ as dbt_version
        from dbt_common.invocation import get_invocation_id

        from dbt.adapters.sqlflow.metrics.artifacts import RunSummary
        from dbt.adapters.sqlflow.metrics.export import export_summary

        summary = RunSummary(
            invocation_id=get_invocation_id(),
            dbt_version=str(dbt_version),
            target=self.target,
            finished_at=datetime.now(UTC),
            error=error,
        )
        self.exported.append("(failed before run_results.json)")
        return _warn(export_summary(summary, self.settings), None)


def install_export_callback(
    raw_settings: Any,
    *,
    target: str = "",
    records: Callable[[], Sequence[LoadRecord]] | None = None,
) -> RunResultsExporter | None:
    """Add the end-of-run exporter to dbt's event manager when ``sqlflow_metrics`` is set.

    Call it when the adapter is created (once per dbt invocation).

    Args:
        raw_settings: The profile's ``sqlflow_metrics`` value.
        target: The profile target name.
        records: Returns the invocation's in-memory load records.

    Returns:
        The callback, or None when the profile exports nothing.

    Raises:
        DbtConfigError: ``sqlflow_metrics`` is invalid.
    """
    settings = MetricsSettings.parse(raw_settings)
    if not settings.enabled:
        return None
    from dbt_common.events.event_manager_client import add_callback_to_manager

    exporter = RunResultsExporter(settings, target, records)
    add_callback_to_manager(exporter)
    return exporter
