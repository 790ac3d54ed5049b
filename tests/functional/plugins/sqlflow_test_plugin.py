"""A dbt-duckdb plugin used by the environment test: a UDF and a source loader."""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin


class Plugin(BasePlugin):
    """Registers ``triple(x)`` on the connection and loads a three-row source."""

    def configure_connection(self, conn: Any) -> None:
        conn.execute("create or replace macro triple(x) as x * 3")
        self._conn = conn

    def load(self, source_config: Any) -> Any:
        return self._conn.sql("select range as n from range(1, 4)")
