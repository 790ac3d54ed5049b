"""A failing check of severity 'warn' is visible where dbt users look (the node's result
line, the end of the run's output), and dbt's --warn-error / --warn-error-options turn it
into a failure that rolls the load back like an 'error' check."""

from __future__ import annotations

import json

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import raw_sources_yml, rows, run_results

MODEL = (
    "{{ config(materialized='sqlflow_incremental', unique_key='id',"
    " quality_checks=[{'expression': 'amount > 0', 'severity': 'warn'}]) }}\n"
    "select id, amount from {{ source('raw', 'pay') }}\n"
)


def reset(project, values: str) -> None:
    project.run_sql("create or replace table {schema}.pay (id integer, amount integer)")
    project.run_sql(f"insert into {{schema}}.pay values {values}")


def target(project) -> list[tuple]:
    return rows(project, "select id, amount from {schema}.payments order by id")


class TestWarnChecks:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("pay"), "payments.sql": MODEL}

    def test_a_warning_shows_in_the_result_line_and_at_the_end(self, project) -> None:
        reset(project, "(1, 10), (2, -5)")
        _, log = run_dbt_and_capture(["run", "--full-refresh"])
        assert target(project) == [(1, 10), (2, -5)]  # a warning loads the rows
        result = run_results(project)["payments"]
        assert result["status"] == "success"
        assert result["adapter_response"]["_message"].endswith("; 1 quality check(s) warned")
        assert "; 1 quality check(s) warned" in log  # the node's result line
        end = log[log.index("Completed successfully") :]
        assert (
            "1 quality check(s) of severity 'warn' failed in this run: model.test.payments:"
            " expression(amount > 0) (1 failing rows, load "
        ) in end

    @pytest.mark.parametrize(
        "flags",
        [
            ["--warn-error"],
            ["--warn-error-options", json.dumps({"error": ["AdapterEventWarning"]})],
        ],
        ids=["warn-error", "warn-error-options"],
    )
    def test_warn_error_rolls_the_load_back(self, project, flags: list[str]) -> None:
        reset(project, "(1, 10)")
        run_dbt(["run", "--full-refresh"])
        loads = rows(project, "select count(*) from sqlflow_meta.loads")
        reset(project, "(1, 10), (2, -5), (3, 7)")
        results = run_dbt([*flags, "run"], expect_pass=False)
        message = results.results[0].message
        assert "quality check failed: expression(amount > 0) (1 failing rows)" in message
        assert "(checks of severity 'warn', failing under dbt's --warn-error)" in message
        # Rolled back: the target and sqlflow's state are as before the run.
        assert target(project) == [(1, 10)]
        assert rows(project, "select count(*) from sqlflow_meta.loads") == loads
        # Without the flag the same data loads, with its warning.
        run_dbt(["run"])
        assert target(project) == [(1, 10), (2, -5), (3, 7)]
