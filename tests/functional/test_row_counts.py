"""``adapter_response.rows_affected`` carries DuckDB's real counts (dbt-duckdb issue 496)."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import Scenario, raw_sources_yml, rows, run_results

seed_csv = """id,name
1,a
2,b
3,c
"""

table_sql = "{{ config(materialized='table') }} select range as id from range(5)"

merge_sql = """
{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id') }}
select * from {{ source('raw', 'src') }}
"""

delete_insert_sql = """
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}
select * from {{ source('raw', 'src') }}
"""

append_sql = """
{{ config(materialized='incremental', incremental_strategy='append') }}
select * from {{ source('raw', 'src') }}
{% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
"""

snapshot_sql = """
{% snapshot snap %}
{{ config(unique_key='id', strategy='check', check_cols=['v'], target_schema=schema) }}
select * from {{ source('raw', 'src') }}
{% endsnapshot %}
"""

sources_yml = raw_sources_yml("src")


INCREMENTALS = ("inc_merge", "inc_delete_insert", "inc_append")


def rows_affected(project) -> dict[str, int]:
    """The last run's rows_affected, by node name."""
    return {n: r["adapter_response"]["rows_affected"] for n, r in run_results(project).items()}


def seed(project) -> int:
    project.run_sql("create table {schema}.src as select range as id, 'x' as v from range(4)")
    run_dbt(["seed"])
    return run_results(project)["people"]["adapter_response"]["rows_affected"]


def first_run(project) -> dict:
    run_dbt(["run"])
    return {
        "affected": rows_affected(project),
        "five": rows(project, "select count(*) from {schema}.five"),
    }


def snapshot(project) -> dict:
    run_dbt(["snapshot"])
    return {
        "affected": run_results(project)["snap"]["adapter_response"]["rows_affected"],
        "current_and_all": rows(
            project,
            "select count(*) filter (where dbt_valid_to is null), count(*) from {schema}.snap",
        ),
    }


def second_run(project) -> dict:
    # Change two rows, add one: ids 0..3 with 1 and 2 changed, plus 4.
    project.run_sql("update {schema}.src set v = 'y' where id in (1, 2)")
    project.run_sql("insert into {schema}.src values (4, 'x')")
    run_dbt(["run"])
    return {
        "affected": rows_affected(project),
        "append_count": rows(project, "select count(*) from {schema}.inc_append"),
        "merge": rows(project, "select id, v from {schema}.inc_merge order by id"),
    }


def second_snapshot(project) -> dict:
    """The same as :func:`snapshot`, as a step of its own after :func:`second_run`."""
    return snapshot(project)


class TestRowsAffected:
    @pytest.fixture(scope="class")
    def seeds(self) -> dict:
        return {"people.csv": seed_csv}

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "five.sql": table_sql,
            "inc_merge.sql": merge_sql,
            "inc_delete_insert.sql": delete_insert_sql,
            "inc_append.sql": append_sql,
        }

    @pytest.fixture(scope="class")
    def snapshots(self) -> dict:
        return {"snap.sql": snapshot_sql}

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, seed, first_run, snapshot, second_run, second_snapshot)

    def test_seed_counts_its_rows(self, scenario) -> None:
        assert scenario.after(seed) == 3

    def test_table_counts_its_rows(self, scenario) -> None:
        first = scenario.after(first_run)
        assert first["affected"]["five"] == 5
        assert first["five"] == [(5,)]

    def test_incremental_first_builds_count_every_row(self, scenario) -> None:
        affected = scenario.after(first_run)["affected"]
        for name in INCREMENTALS:
            assert affected[name] == 4, name

    def test_snapshot_first_build_counts_every_row(self, scenario) -> None:
        assert scenario.after(snapshot)["affected"] == 4

    def test_merge_counts_matched_and_inserted_rows(self, scenario) -> None:
        second = scenario.after(second_run)
        # MERGE: 5 rows matched or inserted (4 updated in place, 1 inserted).
        assert second["affected"]["inc_merge"] == 5
        assert second["merge"] == [
            (0, "x"),
            (1, "y"),
            (2, "y"),
            (3, "x"),
            (4, "x"),
        ]

    def test_delete_insert_counts_deleted_and_inserted_rows(self, scenario) -> None:
        # delete+insert: 4 deleted, then 5 inserted.
        assert scenario.after(second_run)["affected"]["inc_delete_insert"] == 9

    def test_append_counts_only_new_rows(self, scenario) -> None:
        second = scenario.after(second_run)
        # append: only the new id.
        assert second["affected"]["inc_append"] == 1
        assert second["append_count"] == [(5,)]

    def test_snapshot_counts_closed_rows_and_new_versions(self, scenario) -> None:
        second = scenario.after(second_snapshot)
        # Two current rows closed, two new versions and one new key inserted.
        assert second["affected"] == 5
        assert second["current_and_all"] == [(5, 7)]
