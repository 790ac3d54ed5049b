"""``dbt docs generate``: a partitioned sqlflow model's catalog entry carries sqlflow's stats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dbt.tests.util import run_dbt

events_sql = """
{{ config(materialized='sqlflow_incremental', incremental_strategy='insert_overwrite',
          partition_by={'field': 'event_ts', 'granularity': 'day'}) }}
select range::int as id, timestamp '2025-01-01' + to_hours(range * 8) as event_ts
from range(9)
"""

plain_sql = "{{ config(materialized='table') }} select 1 as id"


class TestCatalogStats:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"events.sql": events_sql, "plain.sql": plain_sql}

    def test_stats_in_catalog(self, project) -> None:
        run_dbt(["run", "--vars", '{"sqlflow_now": "2025-01-03T12:00:00"}'])
        run_dbt(["docs", "generate"])
        catalog = json.loads((Path(project.project_root) / "target" / "catalog.json").read_text())
        stats = catalog["nodes"]["model.test.events"]["stats"]
        assert stats["sqlflow_partitions"]["value"] == "3"
        assert stats["sqlflow_partitions"]["label"] == "Partitions"
        assert stats["sqlflow_rows"]["value"] == "9"
        assert stats["sqlflow_watermark"]["value"] == "2025-01-03 16:00:00 UTC"
        # The last load is the real time of the run: UTC, to the second, as the watermark.
        last_load = stats["sqlflow_last_load"]["value"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", last_load), last_load
        assert stats["has_stats"]["value"] is True
        plain = catalog["nodes"]["model.test.plain"]["stats"]
        assert set(plain) == {"has_stats"} and plain["has_stats"]["value"] is False


class TestCatalogWritesNothing:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"plain.sql": plain_sql}

    def test_docs_generate_creates_no_state_tables(self, project) -> None:
        run_dbt(["run"])
        run_dbt(["docs", "generate"])
        schemas = project.run_sql(
            "select count(*) from information_schema.schemata where schema_name = 'sqlflow_meta'",
            fetch="one",
        )
        assert schemas[0] == 0
        catalog = json.loads((Path(project.project_root) / "target" / "catalog.json").read_text())
        node = catalog["nodes"]["model.test.plain"]
        assert not any(key.startswith("sqlflow_") for key in node["stats"])
