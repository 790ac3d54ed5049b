"""Hooks with inside_transaction=True run at fixed points whatever the number of batches:
pre-hooks in the first batch's transaction, post-hooks in the last batch's, just before
it commits; with no batch to load, in the transaction that records the empty windows."""

from __future__ import annotations

import json

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, raw_sources_yml, rows

HOOKS = (
    "pre_hook={'sql': \"insert into {{ target.schema }}.hook_log"
    " select 'pre', count(*) from {{ this }}\", 'transaction': true},"
    " post_hook={'sql': \"insert into {{ target.schema }}.hook_log select 'post', count(*)"
    " from {{ this }} where {{ 'error(''post-hook failed'') is null and' if var('fail_hook',"
    " false) else '' }} true\", 'transaction': true},"
)


def run_vars(now: str, fail: bool = False) -> list[str]:
    return ["--vars", json.dumps({"sqlflow_now": now, "fail_hook": fail})]


def hook_log(project) -> list[tuple]:
    return rows(project, "select phase, n from {schema}.hook_log order by rowid")


def intervals(project) -> list[tuple]:
    return rows(
        project,
        "select interval_start::date::varchar, interval_end::date::varchar"
        " from sqlflow_meta.intervals where model = 'model.test.daily' order by 1",
    )


class TestInsideTransactionHooks:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("events"),
            "daily.sql": events_model(
                HOOKS + " event_time='event_ts', batch_size='day', lookback=0,"
                " incremental_strategy='insert_overwrite',"
                " partition_by={'field': 'event_ts', 'granularity': 'day'},"
                # One transaction per batch: where the hooks run is seen batch by batch.
                " begin='2025-01-01', commit_every=1"
            ),
        }

    def setup_source(self, project) -> None:
        create_events(project)
        project.run_sql("create or replace table {schema}.hook_log (phase varchar, n bigint)")
        project.run_sql(
            "insert into {schema}.events values (1, '2025-01-01 10:00', 'a'),"
            " (2, '2025-01-02 10:00', 'b'), (3, '2025-01-03 10:00', 'c')"
        )

    def test_post_hook_sees_every_batch_and_pre_hook_the_first_state(self, project) -> None:
        self.setup_source(project)
        run_dbt(["run", "--full-refresh", *run_vars("2025-01-04T00:00:00")])
        # Three daily batches: the pre-hook ran once before the first (an empty table),
        # the post-hook once, in the last batch's transaction, seeing all three rows.
        assert hook_log(project) == [("pre", 0), ("post", 3)]

    def test_failing_post_hook_rolls_back_only_the_last_batch(self, project) -> None:
        self.setup_source(project)
        run_dbt(
            ["run", "--full-refresh", *run_vars("2025-01-04T00:00:00", fail=True)],
            expect_pass=False,
        )
        # Batches of days 1 and 2 committed before the last one; day 3 rolled back with the
        # post-hook, and its window is not recorded as loaded.
        assert rows(project, "select id from {schema}.daily order by id") == [(1,), (2,)]
        assert intervals(project) == [("2025-01-01", "2025-01-02"), ("2025-01-02", "2025-01-03")]
        assert hook_log(project) == [("pre", 0)]
        # The next run loads what is owed: day 3.
        run_dbt(["run", *run_vars("2025-01-04T00:00:00")])
        assert rows(project, "select id from {schema}.daily order by id") == [(1,), (2,), (3,)]
        assert intervals(project)[-1] == ("2025-01-03", "2025-01-04")

    def test_hooks_run_when_there_is_no_batch_to_load(self, project) -> None:
        self.setup_source(project)
        run_dbt(["run", "--full-refresh", *run_vars("2025-01-04T00:00:00")])
        project.run_sql("delete from {schema}.hook_log")
        # A day later with no new rows: the one owed window is empty, no batch loads.
        run_dbt(["run", *run_vars("2025-01-05T00:00:00")])
        assert hook_log(project) == [("pre", 3), ("post", 3)]
        assert intervals(project)[-1] == ("2025-01-04", "2025-01-05")
