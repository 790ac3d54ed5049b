"""``adapter_response.rows_affected`` carries DuckDB's real counts (dbt-duckdb issue 496)."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import raw_sources_yml, rows, run_results

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

    def test_rows_affected(self, project) -> None:
        project.run_sql("create table {schema}.src as select range as id, 'x' as v from range(4)")
        run_dbt(["seed"])
        assert run_results(project)["people"]["adapter_response"]["rows_affected"] == 3

        run_dbt(["run"])
        res = run_results(project)
        assert res["five"]["adapter_response"]["rows_affected"] == 5
        assert rows(project, "select count(*) from {schema}.five") == [(5,)]
        for name in ("inc_merge", "inc_delete_insert", "inc_append"):
            assert res[name]["adapter_response"]["rows_affected"] == 4, name
        run_dbt(["snapshot"])
        assert run_results(project)["snap"]["adapter_response"]["rows_affected"] == 4

        # Change two rows, add one: ids 0..3 with 1 and 2 changed, plus 4.
        project.run_sql("update {schema}.src set v = 'y' where id in (1, 2)")
        project.run_sql("insert into {schema}.src values (4, 'x')")
        run_dbt(["run"])
        res = run_results(project)
        # MERGE: 5 rows matched or inserted (4 updated in place, 1 inserted).
        assert res["inc_merge"]["adapter_response"]["rows_affected"] == 5
        # delete+insert: 4 deleted, then 5 inserted.
        assert res["inc_delete_insert"]["adapter_response"]["rows_affected"] == 9
        # append: only the new id.
        assert res["inc_append"]["adapter_response"]["rows_affected"] == 1
        assert rows(project, "select count(*) from {schema}.inc_append") == [(5,)]
        assert rows(project, "select id, v from {schema}.inc_merge order by id") == [
            (0, "x"),
            (1, "y"),
            (2, "y"),
            (3, "x"),
            (4, "x"),
        ]

        run_dbt(["snapshot"])
        # Two current rows closed, two new versions and one new key inserted.
        assert run_results(project)["snap"]["adapter_response"]["rows_affected"] == 5
        assert rows(
            project,
            "select count(*) filter (where dbt_valid_to is null), count(*) from {schema}.snap",
        ) == [(5, 7)]
