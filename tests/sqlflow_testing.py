"""Helpers shared by sqlflow's functional tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_results(project: Any) -> dict[str, dict[str, Any]]:
    """The last run's results from ``target/run_results.json``, by node name."""
    path = Path(project.project_root) / "target" / "run_results.json"
    data = json.loads(path.read_text())
    return {r["unique_id"].split(".")[-1]: r for r in data["results"]}


def rows(project: Any, sql: str) -> list[tuple]:
    """All rows of a query, as tuples (``{schema}`` is the test schema)."""
    return [tuple(r) for r in project.run_sql(sql, fetch="all")]


def table_hash(project: Any, relation: str) -> tuple[int, int | None]:
    """Row count and an order-independent content hash of a table."""
    result = project.run_sql(f"select count(*), sum(hash(t)) from {relation} as t", fetch="one")
    return int(result[0]), result[1]
