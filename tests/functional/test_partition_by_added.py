"""partition_by added to a model whose table already has rows: its existing partitions
are registered the first time, so the consistency check passes without a full refresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, write_file
from sqlflow_testing import raw_sources_yml, rows

BODY = "select id, region, v from {{ source('raw', 'src') }}\n"


def model(config: str) -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + BODY


class TestValuePartitionByAddedLater:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("src"), "m.sql": model("unique_key='id'")}

    def test_existing_partitions_are_registered(self, project) -> None:
        project.run_sql("create or replace table {schema}.src (id int, region varchar, v int)")
        project.run_sql("insert into {schema}.src values (1, 'a', 1), (2, 'b', 1), (3, null, 1)")
        run_dbt(["run"])
        # The model gains value partitions; the next run loads only a change in region b.
        write_file(
            model("unique_key='id', partition_by={'field': 'region'}"),
            Path(project.project_root) / "models" / "m.sql",
        )
        project.run_sql("update {schema}.src set v = 2 where id = 2")
        run_dbt(["run"])
        recorded = rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            " where relation like '%\"m\"' order by 1",
        )
        assert recorded == [("__null__", 1), ("a", 1), ("b", 1)]
        run_dbt(["run-operation", "sqlflow_check_partitions", "--args", "{model: m}"])
        assert rows(project, "select id, region, v from {schema}.m order by id") == [
            (1, "a", 1),
            (2, "b", 2),
            (3, None, 1),
        ]
