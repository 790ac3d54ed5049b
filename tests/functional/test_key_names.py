"""unique_key columns whose names are not plain (a space, a capital letter): the key join
is quoted everywhere, so merge, delete+insert, snapshot and auto load them exactly."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import raw_sources_yml, rows, run_results

SOURCE = "select \"Order Id\", \"CustomerId\", v, ts from {{ source('raw', 'orders') }}"


def model(config: str) -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + SOURCE + "\n"


def reset(project, values: str) -> None:
    project.run_sql(
        'create or replace table {schema}.orders ("Order Id" integer, "CustomerId" integer,'
        " v varchar, ts integer)"
    )
    project.run_sql(f"insert into {{schema}}.orders values {values}")


def table(project, name: str) -> list[tuple]:
    return rows(
        project, f'select "Order Id", "CustomerId", v, ts from {{schema}}.{name} order by 1, 2'
    )


class TestKeysWithASpaceAndACapital:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("orders"),
            "k_merge.sql": model("incremental_strategy='merge', unique_key='Order Id'"),
            "k_merge_cols.sql": model(
                "incremental_strategy='merge', unique_key='Order Id', merge_update_columns=['v']"
            ),
            "k_delete_insert.sql": model(
                "incremental_strategy='delete+insert', unique_key=['Order Id', 'CustomerId']"
            ),
            "k_auto.sql": model("unique_key='CustomerId'"),
        }

    def test_second_run_updates_and_inserts_by_the_quoted_key(self, project) -> None:
        reset(project, "(1, 10, 'a', 1), (2, 20, 'b', 1)")
        run_dbt(["run", "--full-refresh"])
        reset(project, "(2, 20, 'B', 2), (3, 30, 'c', 2)")
        run_dbt(["run"])
        merged = [(1, 10, "a", 1), (2, 20, "B", 2), (3, 30, "c", 2)]
        assert table(project, "k_merge") == merged
        assert table(project, "k_delete_insert") == merged
        assert table(project, "k_auto") == merged
        # merge_update_columns=['v']: ts keeps its old value for the matched key.
        assert table(project, "k_merge_cols") == [(1, 10, "a", 1), (2, 20, "B", 1), (3, 30, "c", 2)]
        res = run_results(project)
        for name in ("k_merge", "k_merge_cols", "k_auto"):
            response = res[name]["adapter_response"]
            assert (response["rows_inserted"], response["rows_updated"]) == (1, 1), name
        response = res["k_delete_insert"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_deleted"]) == (2, 1)

    def test_duplicate_keys_are_refused_naming_the_key(self, project) -> None:
        reset(project, "(1, 10, 'a', 1), (2, 20, 'b', 1)")
        run_dbt(["run", "-s", "k_merge", "--full-refresh"])
        reset(project, "(5, 50, 'x', 3), (5, 50, 'y', 3)")
        result = run_dbt(["run", "-s", "k_merge"], expect_pass=False)
        message = result.results[0].message
        assert "Order Id=5" in message and "Nothing was written." in message
        assert table(project, "k_merge") == [(1, 10, "a", 1), (2, 20, "b", 1)]
