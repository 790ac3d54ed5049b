"""A prometheus_client collector over one :class:`RunSummary`.

``collect()`` builds fresh metric families from the summary on every call; it never
touches the database or the file system. Register it on a registry of our own
(:func:`build_registry`), never on prometheus_client's global one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from dbt.adapters.sqlflow.metrics.artifacts import RunSummary

MODEL = "model"


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
        s = self.summary

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        runs = counter(
            "sqlflow_model_runs",
            "Model executions in the run, by model, strategy and dbt status.",
            [MODEL, "strategy", "status"],
        )
        duration = GaugeMetricFamily(
            "sqlflow_model_duration_seconds",
            "Execution time of the model in the run.",
            labels=[MODEL],
        )
        rows = {
            key: counter(f"sqlflow_{key}", f"Rows {verb} by the model in the run.", [MODEL])
            for key, verb in (
                ("rows_affected", "changed (inserted, updated or deleted)"),
                ("rows_inserted", "inserted"),
                ("rows_updated", "updated"),
                ("rows_deleted", "deleted"),
            )
        }
        partitions = GaugeMetricFamily(
            "sqlflow_partitions_touched",
            "Partitions of the target the model wrote in the run.",
            labels=[MODEL],
        )
        batches = GaugeMetricFamily(
            "sqlflow_model_batches",
            "Windows (batches) the model's run processed, empty windows included.",
            labels=[MODEL],
        )
        watermark = GaugeMetricFamily(
            "sqlflow_watermark_timestamp_seconds",
            "The model's watermark after the run (Unix time).",
            labels=[MODEL],
        )
        lag = GaugeMetricFamily(
            "sqlflow_watermark_lag_seconds",
            "Data freshness: end of the run (or its pinned sqlflow_now) minus the watermark.",
            labels=[MODEL],
        )
        checks_failed = counter(
            "sqlflow_quality_checks_failed",
            "Quality checks that failed on the model in the run, by check.",
            [MODEL, "check"],
        )
        failing_rows = GaugeMetricFamily(
            "sqlflow_quality_check_failing_rows",
            "Rows that failed the quality check in the run.",
            labels=[MODEL, "check"],
        )

        run_counts: Counter[tuple[str, str, str]] = Counter()
        for m in s.models:
            run_counts[(m.unique_id, m.strategy, m.status)] += 1
            duration.add_metric([m.unique_id], m.duration_seconds)
            for key, family in rows.items():
                value = getattr(m, key)
                if value is not None:
                    family.add_metric([m.unique_id], value)
            if m.partitions_touched is not None:
                partitions.add_metric([m.unique_id], m.partitions_touched)
            if m.batches is not None:
                batches.add_metric([m.unique_id], m.batches)
            if m.watermark_after is not None:
                watermark.add_metric([m.unique_id], m.watermark_after.timestamp())
                now = s.pinned_now or s.finished_at
                if now is not None:
                    lag.add_metric([m.unique_id], (now - m.watermark_after).total_seconds())
            for check in m.failed_checks:
                checks_failed.add_metric([m.unique_id, check.check], 1)
                failing_rows.add_metric([m.unique_id, check.check], check.failing_rows)
        for labels, count in sorted(run_counts.items()):
            runs.add_metric(list(labels), count)

        nodes = counter(
            "sqlflow_run_nodes",
            "Nodes of the run (models, tests, seeds, snapshots, hooks) by type and status.",
            ["resource_type", "status"],
        )
        for (resource_type, status), count in sorted(Counter(s.node_statuses).items()):
            nodes.add_metric([resource_type, status], count)

        run_duration = GaugeMetricFamily(
            "sqlflow_run_duration_seconds", "Elapsed time of the dbt run."
        )
        if s.elapsed_seconds is not None:
            run_duration.add_metric([], s.elapsed_seconds)
        success = GaugeMetricFamily(
            "sqlflow_run_success", "1 if no node of the run errored or failed, else 0."
        )
        success.add_metric([], 1.0 if s.success else 0.0)
        finished = GaugeMetricFamily(
            "sqlflow_run_finished_timestamp_seconds", "When the run finished (Unix time)."
        )
        if s.finished_at is not None:
            finished.add_metric([], s.finished_at.timestamp())
        info = GaugeMetricFamily(
            "sqlflow_run_info",
            "Always 1; labels identify the run.",
            labels=["invocation_id", "dbt_version", "target"],
        )
        info.add_metric([s.invocation_id, s.dbt_version, s.target], 1.0)

        families: tuple[Metric, ...] = (
            runs,
            duration,
            *rows.values(),
            partitions,
            batches,
            watermark,
            lag,
            checks_failed,
            failing_rows,
            nodes,
            run_duration,
            success,
            finished,
            info,
        )
        for metric in families:
            if metric.samples:
                yield metric


def build_registry(summary: RunSummary) -> CollectorRegistry:
    """A new registry (not prometheus_client's global one) holding a :class:`RunCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(summary))
    return registry
