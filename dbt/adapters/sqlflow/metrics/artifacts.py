"""Run artifacts (``run_results.json``, ``manifest.json``, dbt's in-memory results) as plain data.

Everything the exporters need is gathered here into a :class:`RunSummary`; the Prometheus
collector only turns that summary into metric families. Works on sqlflow runs (whose
``adapter_response`` carries row counts, strategy, watermarks, quality checks) and on
plain dbt-duckdb runs (statuses and durations only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dbt.adapters.sqlflow import intervals
from dbt.adapters.sqlflow.metrics.records import CheckOutcome, LoadRecord

QUALITY_FAILURE_PREFIX = "quality check failed: "

# Node statuses after which dbt exits non-zero.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "partial success"})

# Resource types that build a relation: they get the per-model metrics.
MODEL_RESOURCE_TYPES = frozenset({"model", "seed", "snapshot"})

# dbt commands (run_results.json ``args.which``) whose results build nothing: their
# model entries say "success" for a compile, not a load.
NON_BUILDING_COMMANDS = {
    "compile": "dbt compile",
    "generate": "dbt docs generate",
    "show": "dbt show",
    "freshness": "dbt source freshness",
    "run-operation": "dbt run-operation",
}

_INT_KEYS = (
    "rows_affected",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "rows_ignored",
    "partitions_touched",
    "batches",
    "commits",
)


class ArtifactError(Exception):
    """A run artifact is missing or malformed; the message is one line naming the file."""


@dataclass
class ModelRun:
    """One model (or seed, snapshot) of a run, as the metrics see it.

    Row counts, partitions, batches and watermarks are None when the run did not report
    them (plain dbt models, failed loads).
    """

    unique_id: str
    name: str
    resource_type: str
    status: str
    strategy: str
    duration_seconds: float
    rows_affected: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    rows_ignored: int | None = None
    partitions_touched: int | None = None
    batches: int | None = None
    commits: int | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    load_ids: list[str] = field(default_factory=list)
    quality_checks: list[CheckOutcome] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=dict)
    batch_phase_seconds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        """The checks that failed, one per check name."""
        seen: dict[str, CheckOutcome] = {}
        for check in self.quality_checks:
            if check.status == "fail" and check.check_name not in seen:
                seen[check.check_name] = check
        return list(seen.values())


@dataclass
class RunSummary:
    """One dbt invocation: run-level facts and its models.

    Attributes:
        invocation_id: dbt's invocation id ("" when unknown).
        dbt_version: dbt-core's version ("" when unknown).
        target: The profile target name ("" when the artifacts do not say).
        started_at: When the invocation started (UTC), if known.
        finished_at: When the results were written (UTC), if known.
        elapsed_seconds: dbt's elapsed time of the run.
        pinned_now: The run's ``sqlflow_now`` (``--vars``, or ``SQLFLOW_NOW`` as the models'
            ``adapter_response`` records it), when it pinned "now" (a
            replay or a test): watermark lags are measured from it, not from the end.
        models: Models, seeds and snapshots, in result order.
        node_statuses: ``(resource_type, status)`` of every node, tests and hooks included.
        error: Why the run ended before it ran any node (dbt wrote no run_results.json),
            else None.
    """

    invocation_id: str = ""
    dbt_version: str = ""
    target: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed_seconds: float | None = None
    pinned_now: datetime | None = None
    error: str | None = None
    models: list[ModelRun] = field(default_factory=list)
    node_statuses: list[tuple[str, str]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when the run ran and no node errored or failed (dbt's exit code 0)."""
        if self.error is not None:
            return False
        return not any(status in FAILED_STATUSES for _, status in self.node_statuses)


def parse_timestamp(value: Any, what: str) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime (naive means UTC); None stays None.

    The parsing is sqlflow's one (:func:`intervals.parse_timestamp`); artifacts want
    aware values and an error that names the field.

    Raises:
        ArtifactError: When ``value`` is not ISO-8601 text; ``what`` names it.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str | datetime):
        raise ArtifactError(f"{what} is {value!r}; expected an ISO-8601 timestamp")
    try:
        parsed = intervals.parse_timestamp(value)
    except ValueError as e:
        raise ArtifactError(f"{what} is {value!r}; expected an ISO-8601 timestamp") from e
    return parsed.replace(tzinfo=UTC)


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON artifact that must be an object.

    Raises:
        ArtifactError: ``"<path>: <cause>"`` for a missing, unreadable or malformed file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: file not found (expected dbt's {what})") from e
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{path}: not UTF-8 text ({e.reason})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(
            f"{path}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _manifest_nodes(manifest: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    if manifest is None:
        return {}
    nodes = manifest.get("nodes")
    if not isinstance(nodes, dict):
        raise ArtifactError(f"{source}: no 'nodes' object; is this dbt's manifest.json?")
    return nodes


def _as_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    # JSON (and protobuf structs) may carry counts as whole floats.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArtifactError(f"{what} is {value!r}; expected an integer")
    return value


def _checks(value: Any, what: str) -> list[CheckOutcome]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ArtifactError(f"{what} is {value!r}; expected a list of checks")
    checks = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("check"), str):
            raise ArtifactError(f"{what}[{i}] is {item!r}; expected an object with a 'check'")
        checks.append(
            CheckOutcome(
                check_name=item["check"],
                severity=str(item.get("severity") or "error"),
                status=str(item.get("status") or "fail"),
                failing_rows=_as_int(item.get("failing_rows"), f"{what}[{i}].failing_rows") or 0,
            )
        )
    return checks


def _phases(value: Any, what: str) -> dict[str, list[float]]:
    """``batch_phase_seconds``: seconds per batch, by phase (``{}`` when absent)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(v, list)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in value.values()
    ):
        raise ArtifactError(f"{what} is {value!r}; expected lists of seconds by phase")
    return {str(k): [float(x) for x in v] for k, v in value.items()}


def _strategy(response: Mapping[str, Any], node: Mapping[str, Any], resource_type: str) -> str:
    strategy = response.get("strategy")
    if isinstance(strategy, str) and strategy:
        return strategy
    config = node.get("config") or {}
    materialized = config.get("materialized")
    if materialized == "sqlflow_incremental":
        # A failed load (no adapter_response): its configured strategy, auto by default.
        return str(config.get("incremental_strategy") or "auto")
    if materialized == "incremental" and config.get("incremental_strategy"):
        return str(config["incremental_strategy"])
    if isinstance(materialized, str) and materialized:
        return materialized
    return resource_type if resource_type in ("seed", "snapshot") else ""


def model_run(
    result: Mapping[str, Any],
    node: Mapping[str, Any],
    source: str,
    loads: Sequence[LoadRecord] = (),
) -> ModelRun:
    """One result entry (run_results.json shape) as a :class:`ModelRun`.

    Args:
        result: The entry: ``unique_id``, ``status``, ``execution_time``,
            ``adapter_response``, ``message``.
        node: The manifest node (``name``, ``config``), or ``{}``.
        source: Names the artifact in error messages.
        loads: In-memory load records of this model: they supply the strategy and
            quality checks of a failed load, whose ``adapter_response`` is empty.
    """
    unique_id = result["unique_id"]
    what = f"{source}: {unique_id}"
    response = result.get("adapter_response") or {}
    if not isinstance(response, Mapping):
        raise ArtifactError(f"{what}: adapter_response is {response!r}; expected an object")
    resource_type = unique_id.split(".", 1)[0]
    duration = result.get("execution_time") or 0.0
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise ArtifactError(f"{what}: execution_time is {duration!r}; expected seconds")
    ints = {key: _as_int(response.get(key), f"{what}: adapter_response.{key}") for key in _INT_KEYS}
    committed = [load for load in loads if load.status == "success"]
    if not response and committed:
        # A windowed run that failed after some batches committed: their rows are in
        # the target, so they count.
        ints |= _committed_rows(committed)
    retries = _retries(response.get("retry_reasons"), loads, f"{what}: adapter_response")
    checks = _checks(response.get("quality_checks"), f"{what}: adapter_response.quality_checks")
    strategy = _strategy(response, node, resource_type)
    if loads and not response.get("strategy"):
        strategy = loads[-1].strategy
    if not checks and loads:
        checks = [c for r in loads for c in r.quality_checks]
    known = {c.check_name for c in checks if c.status == "fail"}
    from dbt.adapters.sqlflow.quality import failures_in_message

    for name, failing_rows in failures_in_message(result.get("message")):
        if name not in known:
            known.add(name)
            checks.append(CheckOutcome(name, "error", "fail", failing_rows))
    load_ids = response.get("load_ids") or []
    return ModelRun(
        batch_phase_seconds=_phases(
            response.get("batch_phase_seconds"), f"{what}: adapter_response.batch_phase_seconds"
        ),
        unique_id=unique_id,
        name=str(node.get("name") or unique_id.split(".", 2)[-1]),
        resource_type=resource_type,
        status=str(result.get("status") or ""),
        strategy=strategy,
        duration_seconds=float(duration),
        watermark_before=parse_timestamp(
            response.get("watermark_before"), f"{what}: adapter_response.watermark_before"
        ),
        watermark_after=parse_timestamp(
            response.get("watermark_after"), f"{what}: adapter_response.watermark_after"
        ),
        load_ids=[str(x) for x in load_ids] if isinstance(load_ids, list) else [],
        quality_checks=checks,
        retries=retries,
        **ints,
    )


def _committed_rows(loads: Sequence[LoadRecord]) -> dict[str, int | None]:
    """The row figures of the loads that committed before a run failed."""
    inserted = sum(r.rows_inserted for r in loads)
    updated = sum(r.rows_updated for r in loads)
    deleted = sum(r.rows_deleted for r in loads)
    return {
        "rows_affected": inserted + updated + deleted,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": deleted,
        "batches": len(loads),
    }


def _retries(raw: Any, loads: Sequence[LoadRecord], what: str) -> dict[str, int]:
    """Retries by reason: the adapter_response's ``retry_reasons``, or (a failed run
    reports none) the in-memory records'."""
    if raw is None:
        counts: dict[str, int] = {}
        for load in loads:
            for reason in load.retries:
                counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items()))
    if not isinstance(raw, Mapping):
        raise ArtifactError(f"{what}.retry_reasons is {raw!r}; expected an object")
    return {str(k): _as_int(v, f"{what}.retry_reasons.{k}") or 0 for k, v in sorted(raw.items())}


def summarize(
    results: Iterable[Mapping[str, Any]],
    *,
    nodes: Mapping[str, Any],
    source: str,
    records: Sequence[LoadRecord] = (),
    **run: Any,
) -> RunSummary:
    """A :class:`RunSummary` from result entries in run_results.json's shape.

    Args:
        results: Entries with ``unique_id`` and ``status`` at least.
        nodes: Manifest nodes by unique id (may be empty).
        source: Names the artifact in error messages.
        records: In-memory load records of the invocation (may be empty).
        **run: The :class:`RunSummary` run-level fields.
    """
    summary = RunSummary(**run)
    by_model: dict[str, list[LoadRecord]] = {}
    for load in records:
        by_model.setdefault(load.unique_id, []).append(load)
    for i, result in enumerate(results):
        unique_id = result.get("unique_id") if isinstance(result, Mapping) else None
        status = result.get("status") if isinstance(result, Mapping) else None
        if not isinstance(unique_id, str) or not isinstance(status, str):
            raise ArtifactError(f"{source}: result {i} has no unique_id and status")
        resource_type = unique_id.split(".", 1)[0]
        summary.node_statuses.append((resource_type, status))
        if resource_type in MODEL_RESOURCE_TYPES:
            node = nodes.get(unique_id) or {}
            summary.models.append(model_run(result, node, source, by_model.get(unique_id, ())))
    return summary


def summary_from_artifacts(
    run_results: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    *,
    run_results_source: str = "run_results.json",
    manifest_source: str = "manifest.json",
    records: Sequence[LoadRecord] = (),
) -> RunSummary:
    """A :class:`RunSummary` from parsed ``run_results.json`` (and optional ``manifest.json``).

    ``target`` comes from run_results' ``args.target`` (set when dbt got ``--target``),
    else from the manifest's metadata, else "". ``records`` (in-memory load records)
    fill in the strategy and quality checks of failed sqlflow loads.

    Raises:
        ArtifactError: Naming the artifact and what is wrong in it.
    """
    results = run_results.get("results")
    if not isinstance(results, list):
        raise ArtifactError(
            f"{run_results_source}: no 'results' list; is this dbt's run_results.json?"
        )
    args = run_results.get("args") or {}
    command = NON_BUILDING_COMMANDS.get(str(args.get("which")))
    if command is not None:
        raise ArtifactError(
            f"{run_results_source}: written by `{command}`, which loads no models;"
            " export the run_results.json of a `dbt run` or `dbt build` (right after it,"
            " or a copy of it passed with --run-results)"
        )
    nodes = _manifest_nodes(manifest, manifest_source)
    metadata = run_results.get("metadata") or {}
    manifest_meta = (manifest or {}).get("metadata") or {}
    target = args.get("target") or manifest_meta.get("target") or ""
    elapsed = run_results.get("elapsed_time")
    if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, (int, float))):
        raise ArtifactError(f"{run_results_source}: elapsed_time is {elapsed!r}; expected seconds")
    finished = parse_timestamp(metadata.get("generated_at"), f"{run_results_source}: generated_at")
    started = parse_timestamp(
        metadata.get("invocation_started_at"), f"{run_results_source}: invocation_started_at"
    )
    if started is None and finished is not None and elapsed is not None:
        started = finished - timedelta(seconds=float(elapsed))
    pinned = _pinned_now(args, results)
    return summarize(
        results,
        nodes=nodes,
        source=run_results_source,
        records=records,
        invocation_id=str(metadata.get("invocation_id") or ""),
        dbt_version=str(metadata.get("dbt_version") or ""),
        target=str(target),
        started_at=started,
        finished_at=finished,
        elapsed_seconds=float(elapsed) if elapsed is not None else None,
        pinned_now=parse_timestamp(pinned, f"{run_results_source}: args.vars.sqlflow_now"),
    )


def _pinned_now(args: Mapping[str, Any], results: Any) -> Any:
    """The run's pinned now: ``--vars sqlflow_now``, else (pinned through SQLFLOW_NOW) the
    ``sqlflow_now`` a sqlflow model's adapter_response records; None when not pinned."""
    run_vars = args.get("vars")
    pinned = run_vars.get("sqlflow_now") if isinstance(run_vars, Mapping) else None
    if pinned not in (None, ""):
        return pinned
    return next(
        (
            r["adapter_response"]["sqlflow_now"]
            for r in results
            if isinstance(r, Mapping)
            and isinstance(r.get("adapter_response"), Mapping)
            and r["adapter_response"].get("sqlflow_now")
        ),
        None,
    )


def load_artifacts(
    run_results_path: str | Path,
    manifest_path: str | Path | None,
    records: Sequence[LoadRecord] = (),
) -> RunSummary:
    """Read ``run_results.json`` and, when it exists, ``manifest.json``.

    A missing manifest is fine (labels then lack the materialization); a malformed one
    is an error.

    Raises:
        ArtifactError: ``"<path>: <cause>"``.
    """
    run_results = read_json(run_results_path, "run_results.json")
    manifest = None
    if manifest_path is not None and Path(manifest_path).exists():
        manifest = read_json(manifest_path, "manifest.json")
    return summary_from_artifacts(
        run_results,
        manifest,
        run_results_source=str(run_results_path),
        manifest_source=str(manifest_path),
        records=records,
    )


def result_entry(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dbt in-memory result (``RunResult`` or a run_results.json dict) as plain data.

    Returns:
        ``(entry, node)``: the entry in run_results.json's shape and the node's ``name``
        and ``config`` (``materialized``, ``incremental_strategy``) when known.
    """
    if isinstance(result, Mapping):
        return dict(result), {}
    node = getattr(result, "node", None)
    status = getattr(result, "status", "")
    response = getattr(result, "adapter_response", None) or {}
    entry = {
        "unique_id": getattr(node, "unique_id", "") if node is not None else "",
        "status": str(getattr(status, "value", status)),
        "execution_time": getattr(result, "execution_time", 0.0) or 0.0,
        "adapter_response": dict(response),
        "message": getattr(result, "message", None),
    }
    config = getattr(node, "config", None)
    node_data = {
        "name": getattr(node, "name", None),
        "config": {
            "materialized": getattr(config, "materialized", None),
            "incremental_strategy": getattr(config, "incremental_strategy", None),
        },
    }
    return entry, node_data


def summary_from_results(
    results: Iterable[Any],
    *,
    invocation_id: str,
    dbt_version: str,
    target: str,
    elapsed: float | None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    records: Sequence[LoadRecord] = (),
) -> RunSummary:
    """A :class:`RunSummary` from dbt's in-memory results (at the end of a run).

    ``finished_at`` defaults to now; ``started_at`` to ``finished_at - elapsed``.
    """
    finished = finished_at or datetime.now(UTC)
    if started_at is None and elapsed is not None:
        started_at = finished - timedelta(seconds=elapsed)
    entries = []
    nodes: dict[str, Any] = {}
    for result in results:
        entry, node = result_entry(result)
        entries.append(entry)
        if node:
            nodes[entry["unique_id"]] = node
    return summarize(
        entries,
        nodes=nodes,
        source="dbt results",
        records=records,
        invocation_id=invocation_id or "",
        dbt_version=dbt_version or "",
        target=target or "",
        started_at=parse_timestamp(started_at, "started_at"),
        finished_at=parse_timestamp(finished, "finished_at"),
        elapsed_seconds=elapsed,
    )
