"""A run's metrics in CloudWatch Embedded Metric Format (EMF): one JSON object a line.

A log shipper (the CloudWatch agent, Fluent Bit, a Lambda's stdout) delivers the lines to
CloudWatch Logs, which extracts the metrics: no AWS API call from the run. The figures are
the Prometheus export's (the same families, :func:`~.collector.families`): each
sample's labels become dimensions, with the model's ``strategy`` added to every per-model
figure, and the samples sharing their dimensions go into one line::

    {"_aws": {"Timestamp": 1735862400000, "CloudWatchMetrics": [{"Namespace": "dbt-sqlflow",
      "Dimensions": [["model", "strategy"]], "Metrics": [{"Name": "sqlflow_rows_inserted_total",
      "Unit": "Count"}, ...]}]}, "model": "model.shop.orders", "strategy": "merge",
     "sqlflow_rows_inserted_total": 120.0, ..., "invocation_id": "...", "target": "prod"}

Run-level figures have the empty dimension set; ``sqlflow_run_info``'s labels
(``invocation_id``, ``dbt_version``, ``target``) are plain members of every line, for
joining with logs, not dimensions (an invocation id would make a new metric per run).
Histogram buckets are left out (CloudWatch computes percentiles itself); their ``_sum`` and
``_count`` are kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dbt.adapters.sqlflow.metrics.artifacts import RunSummary
from dbt.adapters.sqlflow.metrics.collector import Histogram, families

NAMESPACE = "dbt-sqlflow"
MAX_METRICS_PER_DIRECTIVE = 100
"""The EMF specification's limit of metric definitions in one directive."""

RUN_INFO = "sqlflow_run_info"
DIMENSION_ORDER = ("model", "strategy", "status", "check", "resource_type")


def unit(sample_name: str) -> str:
    """The CloudWatch unit of a sample: ``Seconds`` for durations, ``None`` for points in
    time and flags, ``Count`` for the rest (rows, partitions, batches, runs, checks)."""
    if sample_name.endswith("_timestamp_seconds") or sample_name == "sqlflow_run_success":
        return "None"
    if sample_name.endswith(("_seconds", "_seconds_sum")):
        return "Seconds"
    return "Count"


def _dimension_key(name: str) -> tuple[int, str]:
    order = DIMENSION_ORDER.index(name) if name in DIMENSION_ORDER else len(DIMENSION_ORDER)
    return order, name


def render_emf(summary: RunSummary, namespace: str = NAMESPACE) -> str:
    """The run's metrics as EMF JSON lines (each ends with a newline).

    Args:
        summary: The run (``artifacts.load_artifacts`` or ``summary_from_results``).
        namespace: The CloudWatch namespace of the metrics.

    Raises:
        ValueError: for a namespace CloudWatch would refuse.
    """
    check_namespace(namespace)
    finished = summary.finished_at or datetime.now(UTC)
    timestamp = int(finished.timestamp() * 1000)
    strategies = {m.unique_id: m.strategy or "unknown" for m in summary.models}
    groups: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    properties: dict[str, str] = {}
    orders: dict[tuple[str, ...], list[str]] = {}  # the dimension order of each label set
    for family, name, sample_labels, value in _samples(summary):
        if family == RUN_INFO:
            properties.update(sample_labels)
            continue
        if not math.isfinite(value):
            continue  # EMF takes finite numbers only
        labels = {k: v or "none" for k, v in sample_labels.items()}
        if "model" in labels:
            labels.setdefault("strategy", strategies.get(labels["model"], "unknown"))
        names = tuple(labels)
        order = orders.get(names)
        if order is None:
            order = orders[names] = sorted(names, key=_dimension_key)
        key = tuple([(label, labels[label]) for label in order])
        groups.setdefault(key, {})[name] = float(value)
    # Most models' lines have the same dimension and metric names: one directive list each.
    shared: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
    lines = []
    for key, metrics in groups.items():
        dimensions = dict(key)
        both = (tuple(dimensions), tuple(metrics))
        directives = shared.get(both)
        if directives is None:
            directives = shared[both] = emf_directives(*both, namespace)
        record = emf_record(dimensions, metrics, namespace, timestamp, properties, directives)
        lines.append(json.dumps(record))
    return "".join(line + "\n" for line in lines)


def _samples(summary: RunSummary) -> Iterator[tuple[str, str, Mapping[str, str], float]]:
    """(family name, sample name, labels, value) of the run's samples, in the Prometheus
    export's order, without histogram buckets."""
    for family in families(summary):
        if isinstance(family, Histogram):
            count, total = f"{family.name}_count", f"{family.name}_sum"
            for values, counts, sum_ in family.series:
                labels = dict(zip(family.labels, values, strict=True))
                yield family.name, count, labels, counts[-1]
                yield family.name, total, labels, sum_
        else:
            name = family.sample_name
            for values, value in family.samples:
                yield family.name, name, dict(zip(family.labels, values, strict=True)), value


def emf_record(
    dimensions: dict[str, str],
    metrics: dict[str, float],
    namespace: str,
    timestamp: int,
    properties: dict[str, str],
    directives: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One EMF log event.

    Args:
        dimensions: Dimension name -> value (the one dimension set of its directives).
        metrics: Metric name -> value; more than :data:`MAX_METRICS_PER_DIRECTIVE` are split
            into several directives with the same dimensions.
        namespace: The CloudWatch namespace.
        timestamp: Milliseconds since the epoch.
        properties: Plain members (not metrics, not dimensions) for joining with logs.
        directives: :func:`emf_directives` of these dimension and metric names, when built
            already (the lines of a run share them); None: built here.

    Returns:
        ``{"_aws": {...}, <dimensions>, <metrics>, <properties>}``.
    """
    if directives is None:
        directives = emf_directives(list(dimensions), list(metrics), namespace)
    record: dict[str, Any] = {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": directives}}
    record.update(dimensions)
    record.update(metrics)
    for key, value in properties.items():
        record.setdefault(key, value)
    return record


def emf_directives(
    dimensions: Sequence[str], metrics: Sequence[str], namespace: str
) -> list[dict[str, Any]]:
    """The ``CloudWatchMetrics`` directives of an event: its dimension names as the one
    dimension set, its metrics with their units, :data:`MAX_METRICS_PER_DIRECTIVE` a
    directive."""
    return [
        {
            "Namespace": namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [{"Name": name, "Unit": unit(name)} for name in chunk],
        }
        for chunk in _chunks(metrics, MAX_METRICS_PER_DIRECTIVE)
    ]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_NAMESPACE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/#: "
)


def check_namespace(namespace: str) -> None:
    """Refuse a namespace CloudWatch would refuse: empty, over 255 characters, outside
    letters, digits and ``. - _ / # :`` (and spaces), or starting with ``AWS/``.

    Raises:
        ValueError: naming the namespace and the fix.
    """
    problem = None
    if not namespace.strip():
        problem = "is empty"
    elif len(namespace) > 255:
        problem = "is longer than 255 characters"
    elif not set(namespace) <= _NAMESPACE_CHARS:
        problem = "has characters other than letters, digits, spaces and . - _ / # :"
    elif namespace.startswith("AWS/"):
        problem = "starts with AWS/ (reserved for AWS services)"
    if problem:
        raise ValueError(
            f"CloudWatch namespace {namespace!r} {problem}; pass e.g. --namespace dbt-sqlflow"
        )
