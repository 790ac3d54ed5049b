"""The sqlflow_incremental materialization: strategies, dedupe, keys, schema changes, atomicity.

Every scenario runs real ``dbt run``s on a DuckDB file and asserts the whole target table
after each run against the expected rows.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import Scenario, Step, raw_sources_yml, rows, run_results, table_hash

sources_yml = raw_sources_yml("src", "dup_src")


def model(config: str, body: str = "select * from {{ source('raw', 'src') }}") -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + body + "\n"


def reset_src(project, values: str) -> None:
    project.run_sql("create or replace table {schema}.src (id integer, v varchar, ts integer)")
    if values:
        project.run_sql(f"insert into {{schema}}.src values {values}")


def table(project, name: str) -> list[tuple]:
    return rows(project, f"select id, v, ts from {{schema}}.{name} order by id, ts")


def fill_raw_ts_src(project) -> None:
    """``src`` with 1000 rows whose ``raw_ts`` text casts to an integer."""
    project.run_sql("create or replace table {schema}.src (id integer, v varchar, raw_ts varchar)")
    project.run_sql(
        "insert into {schema}.src select range, 'v' || range, range::varchar from range(1000)"
    )


STRATEGY_MODELS = ("m_append", "m_merge", "m_delete_insert", "m_auto", "m_merge_cols")


def strategy_run(values: str) -> Step:
    """Scenario step: the source holds ``values``; ``dbt run``; every model read back."""

    def step(project) -> dict:
        reset_src(project, values)
        _, log = run_dbt_and_capture(["run"])
        results = run_results(project)
        return {
            "tables": {name: table(project, name) for name in STRATEGY_MODELS},
            "responses": {name: results[name]["adapter_response"] for name in STRATEGY_MODELS},
            "log": log,
        }

    return step


FIRST_RUN = strategy_run("(1, 'a', 1), (2, 'b', 1), (3, 'c', 1)")
# id 2 changes, id 4 arrives.
SECOND_RUN = strategy_run("(1, 'a', 1), (2, 'B', 2), (3, 'c', 1), (4, 'd', 2)")
# Only new keys.
THIRD_RUN = strategy_run("(5, 'e', 3), (6, 'f', 3)")
FIRST = [(1, "a", 1), (2, "b", 1), (3, "c", 1)]
SECOND = [(1, "a", 1), (2, "B", 2), (3, "c", 1), (4, "d", 2)]
THIRD = [*SECOND, (5, "e", 3), (6, "f", 3)]


class TestStrategies:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        append_body = (
            "select * from {{ source('raw', 'src') }}\n"
            "{% if is_incremental() %} where ts > (select max(ts) from {{ this }}) {% endif %}"
        )
        return {
            "sources.yml": sources_yml,
            "m_append.sql": model("incremental_strategy='append'", append_body),
            "m_merge.sql": model("incremental_strategy='merge', unique_key='id'"),
            "m_delete_insert.sql": model("incremental_strategy='delete+insert', unique_key='id'"),
            "m_auto.sql": model("unique_key='id'"),
            "m_merge_cols.sql": model(
                "incremental_strategy='merge', unique_key='id', merge_update_columns=['v']"
            ),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, FIRST_RUN, SECOND_RUN, THIRD_RUN)

    def test_first_run_builds_every_model_in_full(self, scenario) -> None:
        first = scenario.after(FIRST_RUN)
        for name in STRATEGY_MODELS:
            assert first["tables"][name] == FIRST, name
        assert first["responses"]["m_merge"]["rows_inserted"] == 3
        assert first["responses"]["m_merge"]["strategy"] == "full_refresh"

    def test_merge_updates_matched_keys_and_inserts_new_ones(self, scenario) -> None:
        second = scenario.after(SECOND_RUN)
        assert second["tables"]["m_merge"] == SECOND, "m_merge"
        merge = second["responses"]["m_merge"]
        assert (merge["rows_inserted"], merge["rows_updated"], merge["rows_deleted"]) == (1, 3, 0)
        assert merge["strategy"] == "merge"
        third = scenario.after(THIRD_RUN)
        assert third["tables"]["m_merge"] == THIRD, "m_merge"
        assert third["responses"]["m_merge"]["rows_inserted"] == 2

    def test_delete_insert_replaces_the_batch_keys(self, scenario) -> None:
        second = scenario.after(SECOND_RUN)
        assert second["tables"]["m_delete_insert"] == SECOND, "m_delete_insert"
        di = second["responses"]["m_delete_insert"]
        assert (di["rows_inserted"], di["rows_updated"], di["rows_deleted"]) == (4, 0, 3)
        third = scenario.after(THIRD_RUN)
        assert third["tables"]["m_delete_insert"] == THIRD, "m_delete_insert"
        assert third["responses"]["m_delete_insert"]["rows_deleted"] == 0

    def test_merge_update_columns_leaves_the_other_columns(self, scenario) -> None:
        # merge_update_columns=['v'] leaves ts as it was.
        assert scenario.after(SECOND_RUN)["tables"]["m_merge_cols"] == [
            (1, "a", 1),
            (2, "B", 1),
            (3, "c", 1),
            (4, "d", 2),
        ]

    def test_append_reads_only_new_rows_through_is_incremental(self, scenario) -> None:
        second = scenario.after(SECOND_RUN)
        # append reads only ts > max(ts) through is_incremental().
        assert second["tables"]["m_append"] == sorted(
            [*FIRST, (2, "B", 2), (4, "d", 2)], key=lambda r: (r[0], r[2])
        )
        app = second["responses"]["m_append"]
        assert (app["rows_inserted"], app["strategy"]) == (2, "append")
        assert scenario.after(THIRD_RUN)["tables"]["m_append"] == sorted(
            [*FIRST, (2, "B", 2), (4, "d", 2), (5, "e", 3), (6, "f", 3)],
            key=lambda r: (r[0], r[2]),
        )

    def test_auto_merges_when_batch_keys_exist(self, scenario) -> None:
        second = scenario.after(SECOND_RUN)
        assert second["tables"]["m_auto"] == SECOND, "m_auto"
        auto = second["responses"]["m_auto"]
        assert auto["strategy"] == "merge"
        assert (auto["rows_inserted"], auto["rows_updated"]) == (1, 3)
        assert (
            "m_auto strategy auto -> merge (unique_key set, 3 of 4 batch keys exist)"
            in second["log"]
        )

    def test_auto_appends_when_no_batch_key_exists(self, scenario) -> None:
        # Only new keys: auto runs a plain insert.
        third = scenario.after(THIRD_RUN)
        assert third["tables"]["m_auto"] == THIRD, "m_auto"
        assert third["responses"]["m_auto"]["strategy"] == "append"
        assert (
            "m_auto strategy auto -> append (unique_key set, 0 of 2 batch keys exist"
            in third["log"]
        )

    def test_full_refresh_rebuilds(self, project, scenario) -> None:
        scenario.after(THIRD_RUN)  # m_merge exists, with the scenario's rows
        reset_src(project, "(7, 'g', 4)")
        run_dbt(["run", "--full-refresh", "-s", "m_merge"])
        assert table(project, "m_merge") == [(7, "g", 4)]


KEY_MODELS = ("m_dedupe", "m_nodedupe", "m_di_dedupe")


def keys_first_build(project) -> dict:
    project.run_sql("create table {schema}.src (id integer)")
    project.run_sql("create or replace table {schema}.dup_src (id integer, v varchar, ts integer)")
    project.run_sql("insert into {schema}.dup_src values (1, 'a', 1), (2, 'b', 1)")
    run_dbt(["run"])
    return {
        "tables": {name: table(project, name) for name in KEY_MODELS},
        "nodedupe_hash": table_hash(project, "{schema}.m_nodedupe"),
    }


def duplicate_keys_run(project) -> dict:
    # Key 1 three times, key 3 twice: dedupe keeps the last by ts (or first by ts desc).
    project.run_sql("delete from {schema}.dup_src")
    project.run_sql(
        "insert into {schema}.dup_src values (1, 'x', 5), (1, 'y', 7), (1, 'z', 6),"
        " (3, 'p', 2), (3, 'q', 1)"
    )
    results, _ = run_dbt_and_capture(["run"], expect_pass=False)
    return {
        "results": results,
        "tables": {name: table(project, name) for name in KEY_MODELS},
        "nodedupe_hash": table_hash(project, "{schema}.m_nodedupe"),
    }


def null_keys_run(project) -> dict:
    project.run_sql("delete from {schema}.dup_src")
    project.run_sql(
        "insert into {schema}.dup_src values (null, 'n', 1), (null, 'm', 2), (4, 'd', 1)"
    )
    results = run_dbt(["run", "-s", "m_dedupe"], expect_pass=False)
    return {"results": results, "dedupe": table(project, "m_dedupe")}


class TestDuplicateAndNullKeys:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        body = "select * from {{ source('raw', 'dup_src') }}"
        return {
            "sources.yml": sources_yml,
            "m_dedupe.sql": model(
                "incremental_strategy='merge', unique_key='id', dedupe_by='ts'", body
            ),
            "m_nodedupe.sql": model("incremental_strategy='merge', unique_key='id'", body),
            "m_di_dedupe.sql": model(
                "incremental_strategy='delete+insert', unique_key=['id'], dedupe_by=['ts desc']",
                body,
            ),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, keys_first_build, duplicate_keys_run, null_keys_run)

    def test_first_build_loads_unique_keys(self, scenario) -> None:
        tables = scenario.after(keys_first_build)["tables"]
        for name in KEY_MODELS:
            assert tables[name] == [(1, "a", 1), (2, "b", 1)]

    def test_dedupe_by_keeps_the_last_row_of_each_key(self, scenario) -> None:
        tables = scenario.after(duplicate_keys_run)["tables"]
        assert tables["m_dedupe"] == [(1, "y", 7), (2, "b", 1), (3, "p", 2)]

    def test_dedupe_by_desc_keeps_the_first_row_of_each_key(self, scenario) -> None:
        tables = scenario.after(duplicate_keys_run)["tables"]
        assert tables["m_di_dedupe"] == [(1, "x", 5), (2, "b", 1), (3, "q", 1)]

    def test_duplicate_keys_without_dedupe_by_are_refused(self, scenario) -> None:
        before = scenario.after(keys_first_build)["nodedupe_hash"]
        duplicates = scenario.after(duplicate_keys_run)
        failed = [r for r in duplicates["results"] if r.status == "error"]
        assert [r.node.name for r in failed] == ["m_nodedupe"]
        message = failed[0].message
        assert "model.test.m_nodedupe" in message
        assert "(id)" in message
        assert "2 key value(s) occur more than once" in message
        assert "id=1 (3 rows); id=3 (2 rows)" in message
        assert "dedupe_by" in message
        assert duplicates["nodedupe_hash"] == before

    def test_null_keys_are_refused_with_their_count(self, scenario) -> None:
        nulls = scenario.after(null_keys_run)
        assert "2 row(s) have a null in the key column(s) id" in nulls["results"][0].message
        assert nulls["dedupe"] == [(1, "y", 7), (2, "b", 1), (3, "p", 2)]


def tie_message(name: str, keys: str, n: int = 1) -> str:
    """The refusal of a batch whose rows tied for last by dedupe_by='ts' differ."""
    return (
        f"sqlflow_incremental model 'model.test.{name}': the batch cannot be loaded by key"
        f" (id). {n} key value(s) have different rows tied for last by dedupe_by (ts), e.g."
        f" {keys}: which of them to keep is undefined. Add a column to dedupe_by that breaks"
        " the tie (e.g. dedupe_by=['ts', 'seq']), or fix the duplicates upstream (rows equal"
        " in every column are kept once). Nothing was written."
    )


class TestDedupeTies:
    """Rows of one key tied for last by dedupe_by: equal ones collapse, different ones are
    refused (first build, incremental batch, full refresh; merge, snapshot and append)."""

    NAMES = ("t_merge", "t_snapshot", "t_append")

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        body = "select * from {{ source('raw', 'dup_src') }}"
        return {
            "sources.yml": sources_yml,
            "t_merge.sql": model(
                "incremental_strategy='merge', unique_key='id', dedupe_by='ts'", body
            ),
            "t_snapshot.sql": model(
                "incremental_strategy='snapshot', unique_key='id', dedupe_by='ts',"
                " snapshot={'strategy': 'check', 'check_cols': 'all'}",
                body,
            ),
            "t_append.sql": model(
                "incremental_strategy='append', unique_key='id', dedupe_by='ts'", body
            ),
        }

    def set_source(self, project, values: str) -> None:
        project.run_sql(
            "create or replace table {schema}.dup_src (id integer, v varchar, ts integer)"
        )
        project.run_sql(f"insert into {{schema}}.dup_src values {values}")

    def snapshot_rows(self, project) -> list[tuple]:
        return rows(
            project,
            "select id, v, ts, dbt_valid_to is null from {schema}.t_snapshot order by all",
        )

    def test_ties(self, project) -> None:
        project.run_sql("create table {schema}.src (id integer)")
        # First build: id 1's two last rows are equal in every column: kept once.
        self.set_source(project, "(1, 'old', 0), (1, 'a', 1), (1, 'a', 1), (2, 'b', 1)")
        run_dbt(["run"])
        first = [(1, "a", 1), (2, "b", 1)]
        assert table(project, "t_merge") == first
        assert table(project, "t_append") == first
        assert self.snapshot_rows(project) == [(1, "a", 1, True), (2, "b", 1, True)]
        res = run_results(project)
        for name in self.NAMES:
            assert res[name]["adapter_response"]["rows_inserted"] == 2, name

        # An incremental batch: id 1's last rows tie on ts and differ: refused.
        before = {n: table_hash(project, f"{{schema}}.{n}") for n in self.NAMES}
        tie = "(1, 'x', 5), (1, 'y', 5), (2, 'c', 3), (3, 'd', 1), (3, 'd', 1)"
        self.set_source(project, tie)
        results = run_dbt(["run"], expect_pass=False)
        assert {r.node.name: r.status for r in results} == dict.fromkeys(self.NAMES, "error")
        for result in results:
            name = result.node.name
            assert result.message == (
                f"Runtime Error in model {name} (models/{name}.sql)\n  "
                + tie_message(name, "id=1 (2 rows)")
            )
            assert table_hash(project, f"{{schema}}.{name}") == before[name], name

        # A full refresh of the same source is refused too; the old table stays.
        results = run_dbt(["run", "--full-refresh", "-s", "t_merge"], expect_pass=False)
        assert tie_message("t_merge", "id=1 (2 rows)") in results[0].message
        assert table_hash(project, "{schema}.t_merge") == before["t_merge"]

        # Fixed upstream: the tied rows are equal now and load once.
        self.set_source(project, "(1, 'y', 5), (1, 'y', 5), (2, 'c', 3), (3, 'd', 1), (3, 'd', 1)")
        run_dbt(["run"])
        assert table(project, "t_merge") == [(1, "y", 5), (2, "c", 3), (3, "d", 1)]
        merge = run_results(project)["t_merge"]["adapter_response"]
        assert (merge["rows_inserted"], merge["rows_updated"]) == (1, 2)
        assert self.snapshot_rows(project) == [
            (1, "a", 1, False),
            (1, "y", 5, True),
            (2, "b", 1, False),
            (2, "c", 3, True),
            (3, "d", 1, True),
        ]


schema_body = "select * from {{ source('raw', 'src') }}"
SCHEMA_MODELS = ("m_ignore", "m_fail", "m_append_new", "m_sync")


def schema_first_run(project) -> None:
    reset_src(project, "(1, 'a', 1)")
    run_dbt(["run"])


def new_column_run(project) -> dict:
    project.run_sql("alter table {schema}.src add column extra varchar")
    project.run_sql("insert into {schema}.src values (2, 'b', 2, 'x')")
    results = run_dbt(["run"], expect_pass=False)
    return {
        "status": {r.node.name: r.status for r in results},
        "tables": {
            name: rows(project, f"select * from {{schema}}.{name} order by id")
            for name in SCHEMA_MODELS
        },
    }


def dropped_column_run(project) -> dict:
    project.run_sql("create or replace table {schema}.src as select id, v, extra from {schema}.src")
    project.run_sql("insert into {schema}.src values (3, 'c', 'y')")
    run_dbt(["run", "-s", "m_sync", "m_append_new"])
    return {
        name: rows(project, f"select * from {{schema}}.{name} order by id")
        for name in ("m_sync", "m_append_new")
    }


class TestOnSchemaChange:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        cfg = "incremental_strategy='merge', unique_key='id', on_schema_change='{}'"
        return {
            "sources.yml": sources_yml,
            "m_ignore.sql": model(cfg.format("ignore"), schema_body),
            "m_fail.sql": model(cfg.format("fail"), schema_body),
            "m_append_new.sql": model(cfg.format("append_new_columns"), schema_body),
            "m_sync.sql": model(cfg.format("sync_all_columns"), schema_body),
        }

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, schema_first_run, new_column_run, dropped_column_run)

    def test_only_fail_refuses_a_new_column(self, scenario) -> None:
        assert scenario.after(new_column_run)["status"] == {
            "m_ignore": "success",
            "m_fail": "error",
            "m_append_new": "success",
            "m_sync": "success",
        }

    def test_ignore_loads_the_rows_without_the_new_column(self, scenario) -> None:
        assert scenario.after(new_column_run)["tables"]["m_ignore"] == [(1, "a", 1), (2, "b", 2)]

    def test_fail_leaves_the_table_as_it_was(self, scenario) -> None:
        assert scenario.after(new_column_run)["tables"]["m_fail"] == [(1, "a", 1)]

    def test_append_new_columns_adds_the_new_column(self, scenario) -> None:
        assert scenario.after(new_column_run)["tables"]["m_append_new"] == [
            (1, "a", 1, None),
            (2, "b", 2, "x"),
        ]

    def test_sync_all_columns_adds_the_new_column(self, scenario) -> None:
        assert scenario.after(new_column_run)["tables"]["m_sync"] == [
            (1, "a", 1, None),
            (2, "b", 2, "x"),
        ]

    def test_sync_all_columns_removes_a_dropped_column(self, scenario) -> None:
        assert scenario.after(dropped_column_run)["m_sync"] == [
            (1, "a", None),
            (2, "b", "x"),
            (3, "c", "y"),
        ]

    def test_append_new_columns_keeps_a_dropped_column(self, scenario) -> None:
        assert scenario.after(dropped_column_run)["m_append_new"] == [
            (1, "a", 1, None),
            (2, "b", 2, "x"),
            (3, "c", None, "y"),
        ]


class TestAtomicity:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        body = "select id, v, cast(raw_ts as integer) as ts from {{ source('raw', 'src') }}"
        return {
            "sources.yml": sources_yml,
            "m_atomic.sql": model("incremental_strategy='merge', unique_key='id'", body),
            "m_protected.sql": model("unique_key='id', full_refresh=false", body),
        }

    def test_failed_run_leaves_target_untouched(self, project) -> None:
        fill_raw_ts_src(project)
        run_dbt(["run"])
        before = table_hash(project, "{schema}.m_atomic")
        assert before[0] == 1000
        # Update every row, and make the very last one fail its cast.
        project.run_sql("update {schema}.src set v = 'new', raw_ts = (id + 1)::varchar")
        project.run_sql("insert into {schema}.src values (5000, 'bad', 'not a number')")
        results = run_dbt(["run", "-s", "m_atomic"], expect_pass=False)
        assert results[0].status == "error"
        assert "not a number" in results[0].message
        assert table_hash(project, "{schema}.m_atomic") == before
        leftovers = rows(
            project,
            "select table_name from duckdb_tables()"
            " where table_name like '%sqlflow_stage%' or table_name like '%dbt_tmp%'"
            " or table_name like '%dbt_backup%'",
        )
        assert leftovers == []

    def test_full_refresh_false_protects(self, project) -> None:
        fill_raw_ts_src(project)
        run_dbt(["run", "-s", "m_protected"])
        count = rows(project, "select count(*) from {schema}.m_protected")
        project.run_sql("delete from {schema}.src where id < 10")
        run_dbt(["run", "--full-refresh", "-s", "m_protected"])
        # Not rebuilt: the deleted source rows are still in the table.
        assert rows(project, "select count(*) from {schema}.m_protected") == count


class TestConfigErrors:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": sources_yml,
            "bad_strategy.sql": model("incremental_strategy='upsert'"),
            "no_key.sql": model("incremental_strategy='delete+insert'"),
            "missing_col.sql": model("incremental_strategy='merge', unique_key='idd'"),
            "bad_dedupe.sql": model("unique_key='id', dedupe_by='updated'"),
            "conflict.sql": model(
                "unique_key='id', merge_update_columns=['v'], merge_exclude_columns=['ts']"
            ),
            "many.sql": model("incremental_strategy='merge', on_schema_change='drop'"),
        }

    def test_every_config_error_is_reported_and_nothing_is_created(self, project) -> None:
        reset_src(project, "(1, 'a', 1)")
        results = run_dbt(["run"], expect_pass=False)
        msg = {r.node.name: r.message for r in results}
        assert all(r.status == "error" for r in results)
        assert (
            "incremental_strategy 'upsert' is not one of: append, merge, delete+insert,"
            " insert_overwrite, snapshot, cdc, auto" in msg["bad_strategy"]
        )
        assert "model.test.bad_strategy" in msg["bad_strategy"]
        assert "unique_key is required by incremental_strategy 'delete+insert'" in msg["no_key"]
        assert "unique_key 'idd' names a column the model does not produce" in msg["missing_col"]
        assert "(did you mean 'id'?)" in msg["missing_col"]
        assert "its columns are: id, v, ts" in msg["missing_col"]
        assert "dedupe_by 'updated' names a column the model does not produce" in msg["bad_dedupe"]
        assert "merge_update_columns ['v'] conflicts with merge_exclude_columns" in msg["conflict"]
        assert "has 2 configuration errors" in msg["many"]
        assert "on_schema_change 'drop' is not one of" in msg["many"]
        assert "unique_key is required by incremental_strategy 'merge'" in msg["many"]
        # Nothing was created.
        assert rows(
            project,
            "select count(*) from duckdb_tables() where schema_name = '{schema}'"
            " and table_name <> 'src'",
        ) == [(0,)]
