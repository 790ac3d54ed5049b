"""sqlflow's metric families over one :class:`RunSummary`, and a prometheus_client
collector of them.

The families are data (:data:`FAMILIES`): a name, a help text, labels and a function that
reads the samples off the summary. :func:`families` reads them into plain :class:`Family`
and :class:`Histogram` values; :class:`RunCollector` turns those into prometheus_client
families (for a registry and the Pushgateway), and :mod:`.exposition` writes the text
formats from them directly (a prometheus_client ``Sample`` per sample is most of the cost
of a large run's export). Neither touches the database or the file system.

``collect()`` builds fresh metric families from the summary on every call. Register the
collector on a registry of our own (:func:`build_registry`), never on prometheus_client's
global one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter
from typing import ClassVar

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

Samples = list[tuple[tuple[str, ...], float]]
"""A family's samples: (label values, value) pairs in output order. Tuples, not lists:
CPython's garbage collector stops tracking a tuple of strings, and a large run has many."""


@dataclass(frozen=True)
class Family:
    """A counter or gauge family of one run as plain data.

    Attributes:
        name: The family name (a counter's samples are called ``<name>_total``).
        type: ``counter`` or ``gauge`` (prometheus_client's family types).
        doc: The help text.
        labels: Label names, in the order of each sample's label values.
        samples: (label values, value) pairs in output order.
    """

    name: str
    type: str
    doc: str
    labels: Sequence[str]
    samples: Samples

    @property
    def sample_name(self) -> str:
        """The name of the family's samples."""
        return f"{self.name}_total" if self.type == "counter" else self.name

    def metric(self) -> Metric:
        """The family as a prometheus_client family."""
        labels = list(self.labels)
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(self.name, self.doc, labels=labels)
            if self.type == "counter"
            else GaugeMetricFamily(self.name, self.doc, labels=labels)
        )
        for values, value in self.samples:
            family.add_metric(values, value)
        return family


Series = tuple[tuple[str, ...], tuple[int, ...], float]
"""One histogram series: label values, the cumulative count of each bucket (the last,
``+Inf``, is the series' count) and the sum of the observed values."""


@dataclass(frozen=True)
class Histogram:
    """A histogram family of one run as plain data.

    Attributes:
        name: The family name (samples ``<name>_bucket``, ``_count``, ``_sum``).
        doc: The help text.
        labels: Label names, in the order of each series' label values (``le`` is added
            to the buckets' labels, last).
        bounds: Each bucket's ``le`` label value, ``+Inf`` last.
        series: The series in output order.
    """

    name: str
    doc: str
    labels: Sequence[str]
    bounds: Sequence[str]
    series: list[Series]
    type: ClassVar[str] = "histogram"

    def metric(self) -> HistogramMetricFamily:
        """The family as a prometheus_client family.

        Samples are appended directly (``add_metric`` copies the labels three ways per
        bucket): the histogram holds most of a large run's samples.
        """
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        bucket, count, total = f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"
        append = family.samples.append
        for values, counts, sum_ in self.series:
            labels = dict(zip(self.labels, values, strict=True))
            for le, seen in zip(self.bounds, counts, strict=True):
                append(Sample(bucket, {**labels, "le": le}, seen))
            append(Sample(count, labels, counts[-1]))
            append(Sample(total, labels, sum_))
        return family


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

    def build(self, summary: RunSummary) -> Family:
        """The family holding the summary's samples (perhaps none)."""
        kind = "counter" if self.counter else "gauge"
        return Family(self.name, kind, self.doc, self.labels, self.samples(summary))


def _per_model(read: Callable[[ModelRun], float | None]) -> Callable[[RunSummary], Samples]:
    """Samples of one figure per model, labelled by the model; models without it are skipped."""

    def samples(summary: RunSummary) -> Samples:
        found = ((m.unique_id, read(m)) for m in summary.models)
        return [((model,), value) for model, value in found if value is not None]

    return samples


def _per_run(read: Callable[[RunSummary], float | None]) -> Callable[[RunSummary], Samples]:
    """The one unlabelled sample of a run-level figure; none when the run lacks it."""

    def samples(summary: RunSummary) -> Samples:
        value = read(summary)
        return [] if value is None else [((), value)]

    return samples


def _model_runs(summary: RunSummary) -> Samples:
    counts = Counter((m.unique_id, m.strategy, m.status) for m in summary.models)
    return [(labels, count) for labels, count in sorted(counts.items())]


def _durations(summary: RunSummary) -> Samples:
    # Every model has a duration (even one that failed).
    return [((m.unique_id,), m.duration_seconds) for m in summary.models]


def _watermark(model: ModelRun) -> float | None:
    return model.watermark_after.timestamp() if model.watermark_after is not None else None


def _watermark_lags(summary: RunSummary) -> Samples:
    now = summary.pinned_now or summary.finished_at
    if now is None:
        return []
    return [
        ((m.unique_id,), (now - m.watermark_after).total_seconds())
        for m in summary.models
        if m.watermark_after is not None
    ]


def _checks_failed(summary: RunSummary) -> Samples:
    return [((m.unique_id, c.check_name), 1) for m in summary.models for c in m.failed_checks]


def _check_failing_rows(summary: RunSummary) -> Samples:
    return [
        ((m.unique_id, c.check_name), c.failing_rows)
        for m in summary.models
        for c in m.failed_checks
    ]


def _retries(summary: RunSummary) -> Samples:
    return [
        ((m.unique_id, reason), count)
        for m in summary.models
        for reason, count in m.retries.items()
    ]


def _nodes(summary: RunSummary) -> Samples:
    counts = sorted(Counter(summary.node_statuses).items())
    return [((resource_type, status), count) for (resource_type, status), count in counts]


def _finished(summary: RunSummary) -> float | None:
    return summary.finished_at.timestamp() if summary.finished_at is not None else None


def _info(summary: RunSummary) -> Samples:
    return [((summary.invocation_id, summary.dbt_version, summary.target), 1.0)]


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
milliseconds to a DML of minutes, one bucket a decade (60 s: a phase of a batch taking over a
minute). With 6 phases each model gets 48 samples (5,000 models: 240,000, most of a large
run's export). Not fewer: a bucket less saves an eighth of them, and one a decade is as
coarse as the dashboard's ``histogram_quantile`` stays useful with; the export's cost was
prometheus_client's per-sample objects and rendering, which :mod:`.exposition` avoids."""


def phase_histogram(summary: RunSummary) -> Histogram:
    """``sqlflow_batch_phase_seconds{model, phase}``: each batch's seconds in each phase
    (``observe.PHASES``), observed once per batch of the run."""
    bounds = [*(repr(b) for b in PHASE_BUCKETS), "+Inf"]
    series: list[Series] = []
    for model in summary.models:
        for phase, values in model.batch_phase_seconds.items():
            counts = [0] * len(bounds)
            for value in values:
                counts[bisect_left(PHASE_BUCKETS, value)] += 1
            series.append(((model.unique_id, phase), tuple(accumulate(counts)), sum(values)))
    return Histogram(
        "sqlflow_batch_phase_seconds",
        "Seconds each batch of the model spent in each phase (plan, stage, dml, checks,"
        " state, commit) in the run.",
        [MODEL, "phase"],
        bounds,
        series,
    )


def families(summary: RunSummary) -> list[Family | Histogram]:
    """The run's families that have samples, in output order."""
    found: list[Family | Histogram] = [spec.build(summary) for spec in FAMILIES]
    found.append(phase_histogram(summary))
    return [f for f in found if (f.samples if isinstance(f, Family) else f.series)]


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
        # Every family is read before the first is yielded: a summary that cannot be
        # read fails the whole collection, not half of it.
        for family in families(self.summary):
            yield family.metric()


def build_registry(summary: RunSummary) -> CollectorRegistry:
    """A new registry (not prometheus_client's global one) holding a :class:`RunCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(summary))
    return registry
