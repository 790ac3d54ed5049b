"""A prometheus_client collector over one :class:`RunSummary`.

``collect()`` builds fresh metric families from the summary on every call; it never
touches the database or the file system. Register it on a registry of our own
(:func:`build_registry`), never on prometheus_client's global one.

The families are data (:data:`FAMILIES`): a name, a help text, labels and a function that
reads the samples off the summary.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from dbt.adapters.sqlflow.metrics.artifacts import ModelRun, RunSummary

MODEL = "model"

Samples = list[tuple[list[str], float]]
"""A family's samples: (label values, value) pairs in output order."""


@dataclass(frozen=True)
class FamilySpec:
    """One metric family: what it is called and how its samples are read from a run.

    Attributes:
        name: The family name (a counter's ``_total`` is added on output).
        doc: The help text.
        labels: Label names, in the order of each sample's label values.
        samples: Reads the family's samples off a :class:`RunSummary`.
        counter: True for a counter, False for a gauge.
    """

    name: str
    doc: str
    labels: Sequence[str]
    samples: Callable[[RunSummary], Samples]
    counter: bool = False

    def build(self, summary: RunSummary) -> Metric:
        """A fresh family holding the summary's samples (perhaps none)."""
        labels = list(self.labels)
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(self.name, self.doc, labels=labels)
            if self.counter
            else GaugeMetricFamily(self.name, self.doc, labels=labels)
        )
        for values, value in self.samples(summary):
            family.add_metric(values, value)
        return family


def _per_model(read: Callable[[ModelRun], float | None]) -> Callable[[RunSummary], Samples]:
    """Samples of one figure per model, labelled by the model; models without it are skipped."""

    def samples(summary: RunSummary) -> Samples:
        found = ((m.unique_id, read(m)) for m in summary.models)
        return [([model], value) for model, value in found if value is not None]

    return samples


def _per_run(read: Callable[[RunSummary], float | None]) -> Callable[[RunSummary], Samples]:
    """The one unlabelled sample of a run-level figure; none when the run lacks it."""

    def samples(summary: RunSummary) -> Samples:
        value = read(summary)
        return [] if value is None else [([], value)]

    return samples


def _model_runs(summary: RunSummary) -> Samples:
    counts = Counter((m.unique_id, m.strategy, m.status) for m in summary.models)
    return [(list(labels), count) for labels, count in sorted(counts.items())]


def _durations(summary: RunSummary) -> Samples:
    # Every model has a duration (even one that failed).
    return [([m.unique_id], m.duration_seconds) for m in summary.models]


def _watermark(model: ModelRun) -> float | None:
    return model.watermark_after.timestamp() if model.watermark_after is not None else None


def _watermark_lags(summary: RunSummary) -> Samples:
    now = summary.pinned_now or summary.finished_at
    if now is None:
        return []
    return [
        ([m.unique_id], (now - m.watermark_after).total_seconds())
        for m in summary.models
        if m.watermark_after is not None
    ]


def _checks_failed(summary: RunSummary) -> Samples:
    return [([m.unique_id, c.check_name], 1) for m in summary.models for c in m.failed_checks]


def _check_failing_rows(summary: RunSummary) -> Samples:
    return [
        ([m.unique_id, c.check_name], c.failing_rows)
        for m in summary.models
        for c in m.failed_checks
    ]


def _retries(summary: RunSummary) -> Samples:
    return [
        ([m.unique_id, reason], count)
        for m in summary.models
        for reason, count in m.retries.items()
    ]


def _nodes(summary: RunSummary) -> Samples:
    counts = sorted(Counter(summary.node_statuses).items())
    return [([resource_type, status], count) for (resource_type, status), count in counts]


def _finished(summary: RunSummary) -> float | None:
    return summary.finished_at.timestamp() if summary.finished_at is not None else None


def _info(summary: RunSummary) -> Samples:
    return [([summary.invocation_id, summary.dbt_version, summary.target], 1.0)]


_ROWS = (
    ("rows_affected", "changed (inserted, updated or deleted)"),
    ("rows_inserted", "inserted"),
    ("rows_updated", "updated"),
    ("rows_deleted", "deleted"),
    ("rows_ignored", "ignored (change events of the cdc strategy not applied)"),
)

FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        "sqlflow_model_runs",
        "Model executions in the run, by model, strategy and dbt status.",
        [MODEL, "strategy", "status"],
        _model_runs,
        counter=True,
    ),
    FamilySpec(
        "sqlflow_model_duration_seconds",
        "Execution time of the model in the run.",
        [MODEL],
        _durations,
    ),
    *(
        FamilySpec(
            f"sqlflow_{key}",
            f"Rows {verb} by the model in the run.",
            [MODEL],
            _per_model(attrgetter(key)),
            counter=True,
        )
        for key, verb in _ROWS
    ),
    FamilySpec(
        "sqlflow_partitions_touched",
        "Partitions of the target the model wrote in the run.",
        [MODEL],
        _per_model(attrgetter("partitions_touched")),
    ),
    FamilySpec(
        "sqlflow_model_batches",
        "Windows (batches) the model's run processed, empty windows included.",
        [MODEL],
        _per_model(attrgetter("batches")),
    ),
    FamilySpec(
        "sqlflow_model_commits",
        "Transactions the model's run committed (commit_every groups batches).",
        [MODEL],
        _per_model(attrgetter("commits")),
    ),
    FamilySpec(
        "sqlflow_watermark_timestamp_seconds",
        "The model's watermark after the run (Unix time).",
        [MODEL],
        _per_model(_watermark),
    ),
    FamilySpec(
        "sqlflow_watermark_lag_seconds",
        "Data freshness: end of the run (or its pinned sqlflow_now) minus the watermark.",
        [MODEL],
        _watermark_lags,
    ),
    FamilySpec(
        "sqlflow_quality_checks_failed",
        "Quality checks that failed on the model in the run, by check.",
        [MODEL, "check"],
        _checks_failed,
        counter=True,
    ),
    FamilySpec(
        "sqlflow_quality_check_failing_rows",
        "Rows that failed the quality check in the run.",
        [MODEL, "check"],
        _check_failing_rows,
    ),
    FamilySpec(
        "sqlflow_retries",
        "Transactions of the model retried after a transient failure, by reason"
        " (lock, conflict, connection, out_of_memory).",
        [MODEL, "reason"],
        _retries,
        counter=True,
    ),
    FamilySpec(
        "sqlflow_run_nodes",
        "Nodes of the run (models, tests, seeds, snapshots, hooks) by type and status.",
        ["resource_type", "status"],
        _nodes,
        counter=True,
    ),
    FamilySpec(
        "sqlflow_run_duration_seconds",
        "Elapsed time of the dbt run.",
        [],
        _per_run(attrgetter("elapsed_seconds")),
    ),
    FamilySpec(
        "sqlflow_run_success",
        "1 if no node of the run errored or failed, else 0.",
        [],
        _per_run(lambda s: 1.0 if s.success else 0.0),
    ),
    FamilySpec(
        "sqlflow_run_finished_timestamp_seconds",
        "When the run finished (Unix time).",
        [],
        _per_run(_finished),
    ),
    FamilySpec(
        "sqlflow_run_info",
        "Always 1; labels identify the run.",
        ["invocation_id", "dbt_version", "target"],
        _info,
    ),
)
"""sqlflow's metric families, in output order."""


PHASE_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0)
"""Upper bounds (seconds) of ``sqlflow_batch_phase_seconds``: from a state write of a few
milliseconds to a DML of minutes. Few buckets: with 6 phases each model gets 48 samples
(5,000 models: 240,000, most of a large run's export)."""


def phase_histogram(summary: RunSummary) -> HistogramMetricFamily:
    """``sqlflow_batch_phase_seconds{model, phase}``: each batch's seconds in each phase
    (``observe.PHASES``), observed once per batch of the run.

    Samples are appended directly (``add_metric`` copies the labels three ways per
    bucket): the histogram holds most of a large run's samples.
    """
    name = "sqlflow_batch_phase_seconds"
    family = HistogramMetricFamily(
        name,
        "Seconds each batch of the model spent in each phase (plan, stage, dml, checks,"
        " state, commit) in the run.",
        labels=[MODEL, "phase"],
    )
    bounds = [*(repr(b) for b in PHASE_BUCKETS), "+Inf"]
    bucket, count, total = f"{name}_bucket", f"{name}_count", f"{name}_sum"
    append = family.samples.append
    for model in summary.models:
        for phase, values in model.batch_phase_seconds.items():
            counts = [0] * len(bounds)
            for value in values:
                counts[bisect_left(PHASE_BUCKETS, value)] += 1
            labels = {MODEL: model.unique_id, "phase": phase}
            for le, seen in zip(bounds, accumulate(counts), strict=True):
                append(Sample(bucket, {**labels, "le": le}, seen))
            append(Sample(count, labels, len(values)))
            append(Sample(total, labels, sum(values)))
    return family


class RunCollector(Collector):
    """Yields sqlflow's metric families for one dbt run.

    Counters (``*_total``) count what this run did: the textfile and the Pushgateway
    group are replaced by each run, so the exposed value is the last run's figure.
    No ``_created`` samples: they would double the series for no use here.
    """

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the summary (only families with samples)."""
        # Every family is built before the first is yielded: a summary that cannot be
        # read fails the whole collection, not half of it.
        families = [spec.build(self.summary) for spec in FAMILIES]
        families.append(phase_histogram(self.summary))
        for metric in families:
            if metric.samples:
                yield metric


def build_registry(summary: RunSummary) -> CollectorRegistry:
    """A new registry (not prometheus_client's global one) holding a :class:`RunCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(summary))
    return registry
