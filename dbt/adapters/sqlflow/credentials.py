"""Profile fields of ``type: sqlflow``: every dbt-duckdb field, plus sqlflow's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials

DEFAULT_STATE_SCHEMA = "sqlflow_meta"


@dataclass
class SqlflowCredentials(DuckDBCredentials):
    """DuckDB credentials with sqlflow's settings; every dbt-duckdb field keeps its meaning."""

    # Schema (in the target database) that holds sqlflow's state tables: partitions,
    # loaded intervals, loads and quality check outcomes.
    sqlflow_state_schema: str = DEFAULT_STATE_SCHEMA

    # Automatic metrics export at the end of `dbt run` / `dbt build`:
    # {"textfile": DIR} and/or {"pushgateway": URL, "job": NAME}.
    sqlflow_metrics: dict[str, Any] | None = None

    # Retries of transient failures (a DuckDB file locked by another process):
    # {"attempts": 5, "initial_seconds": 1, "max_seconds": 30}; {"attempts": 1} retries nothing.
    sqlflow_retry: dict[str, Any] | None = None

    # Personal data redacted in the row values sqlflow shows (check samples, key examples,
    # DuckDB errors): {"columns": [...], "patterns": [...], "kinds": [...]}; built-in kinds
    # (email, phone, card, iban, ip) are on by default, {"kinds": []} turns them off.
    sqlflow_redact: dict[str, Any] | None = None

    # Loads kept in detail per model in the loads table; older ones are folded into
    # load_summaries after a run that finds more than this plus a tenth. 0 keeps every load.
    sqlflow_load_history: int = 1000

    @property
    def type(self) -> str:
        """The adapter type named in profiles.yml."""
        return "sqlflow"

    def _connection_keys(self) -> tuple[str, ...]:
        return (
            *super()._connection_keys(),
            "sqlflow_state_schema",
            "sqlflow_metrics",
            "sqlflow_retry",
            "sqlflow_redact",
            "sqlflow_load_history",
        )
