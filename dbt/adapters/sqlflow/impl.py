"""The sqlflow adapter: dbt-duckdb's adapter plus a thin bridge from Jinja to sqlflow's Python."""

from __future__ import annotations

from collections.abc import Sequence

from dbt.adapters.duckdb.impl import DuckDBAdapter

from dbt.adapters.sqlflow.connections import SqlflowConnectionManager


class SqlflowAdapter(DuckDBAdapter):
    """dbt-duckdb's adapter under ``type: sqlflow``.

    Everything dbt-duckdb does keeps working; sqlflow's materialization reaches its
    Python (config parsing, strategy choice, state, metrics) through the ``@available``
    methods below, each returning plain data.
    """

    ConnectionManager = SqlflowConnectionManager

    def valid_incremental_strategies(self) -> Sequence[str]:
        """dbt-duckdb's strategies for ``materialized='incremental'``.

        A new list on every call: dbt's base code appends ``"default"`` to it.
        """
        return list(super().valid_incremental_strategies())
