"""Value partitions (``partition_by`` without a granularity): a batch replaces the partitions
it holds, NULL has a partition of its own, dbt-duckdb's own partition_by never interferes.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import Scenario, events_model, model_state, raw_sources_yml, rows, run_results

sources_yml = raw_sources_yml("events")


def first_run(project) -> str:
    project.run_sql("create table {schema}.events (id integer, region varchar, v varchar)")
    project.run_sql(
        "insert into {schema}.events values (1, 'eu', 'a'), (2, 'eu', 'b'), (3, 'us', 'c'),"
        " (4, 'apac', 'd')"
    )
    _, log = run_dbt_and_capture(["run"])
    return log


def second_run(project) -> dict:
    # The next batch holds only 'eu' (one row fewer) and a new region.
    project.run_sql("delete from {schema}.events")
    project.run_sql("insert into {schema}.events values (5, 'eu', 'e'), (6, 'latam', 'f')")
    run_dbt(["run"])
    return {
        "target": rows(project, "select id, region, v from {schema}.by_region order by id"),
        "response": run_results(project)["by_region"]["adapter_response"],
        "partitions": rows(
            project,
            "select partition_key, row_count from sqlflow_meta.partitions"
            " where relation like '%by_region%' order by 1",
        ),
    }


class TestValuePartitions:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        body = "select id, region, v from {{ source('raw', 'events') }}"
        return {
            "sources.yml": sources_yml,
            "by_region.sql": events_model(
                "incremental_strategy='insert_overwrite', partition_by={'field': 'region'}", body
            ),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, first_run, second_run)

    def test_dbt_duckdb_partition_by_warning_never_shows(self, scenario) -> None:
        # dbt-duckdb's own partition_by handling (DuckLake only) never sees our models.
        assert "only supported for DuckLake" not in scenario.after(first_run)

    def test_batch_replaces_only_the_partitions_it_holds(self, scenario) -> None:
        second = scenario.after(second_run)
        assert second["target"] == [
            (3, "us", "c"),
            (4, "apac", "d"),
            (5, "eu", "e"),
            (6, "latam", "f"),
        ]
        res = second["response"]
        assert (res["rows_deleted"], res["rows_inserted"], res["partitions_touched"]) == (2, 2, 2)
        assert second["partitions"] == [("apac", 1), ("eu", 1), ("latam", 1), ("us", 1)]


class TestNullKeyValuePartition:
    """A text value '__null__' shares the NULL value partition; replacing it replaces both."""

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "regions.sql": events_model(
                "incremental_strategy='insert_overwrite', partition_by={'field': 'region'}",
                "select * from (values (1, 'eu'), (2, null), (3, '__null__')) t(id, region)",
            )
        }

    def test_reruns_replace_null_and_text_null_rows_together(self, project) -> None:
        for _ in range(3):
            run_dbt(["run"])
        got = rows(project, "select id, region from {schema}.regions order by id")
        assert got == [(1, "eu"), (2, None), (3, "__null__")]
        assert model_state(project, "regions")["partitions"] == [("__null__", 2), ("eu", 1)]
