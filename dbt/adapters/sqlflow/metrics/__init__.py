"""sqlflow's metrics: in-memory load records, run artifacts and Prometheus export.

Importing this package is cheap: it loads only the record types. The exporters
(``collector``, ``export``) import prometheus_client and are imported on use.
"""

from __future__ import annotations

from dbt.adapters.sqlflow.metrics.records import CheckOutcome, LoadRecord, LoadRecorder

__all__ = ["CheckOutcome", "LoadRecord", "LoadRecorder"]
