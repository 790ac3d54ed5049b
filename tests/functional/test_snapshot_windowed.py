"""A windowed snapshot (event_time on updated_at, daily batches): built and kept window by
window, its history equals the same snapshot read whole."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import raw_sources_yml, rows

SNAPSHOT = (
    "incremental_strategy='snapshot', unique_key='id',"
    " snapshot={'strategy': 'timestamp', 'updated_at': 'updated_at'}"
)
BODY = "select id, name, updated_at from {{ source('raw', 'src') }}\n"
COLUMNS = "id, name, updated_at, dbt_scd_id, dbt_updated_at, dbt_valid_from, dbt_valid_to"


def model(config: str) -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + BODY


def reset(project, values: str) -> None:
    project.run_sql(
        "create or replace table {schema}.src (id int, name varchar, updated_at timestamp)"
    )
    project.run_sql(f"insert into {{schema}}.src values {values}")


def history(project, name: str) -> list[tuple]:
    return rows(project, f"select {COLUMNS} from {{schema}}.{name} order by id, dbt_valid_from")


class TestWindowedSnapshot:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {
            "sources.yml": raw_sources_yml("src"),
            "whole.sql": model(SNAPSHOT),
            "windowed.sql": model(
                SNAPSHOT + ", event_time='updated_at', batch_size='day', begin='2024-01-01'"
            ),
        }

    def test_windowed_history_equals_the_whole_one(
        self, project, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        reset(
            project,
            "(1, 'a', '2024-01-01 10:00'), (2, 'b', '2024-01-02 10:00'),"
            " (3, 'c', '2024-01-03 10:00')",
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2024-01-04T00:00:00")
        run_dbt(["run", "--full-refresh"])
        first = history(project, "whole")
        assert [(r[0], r[1], r[6]) for r in first] == [
            (1, "a", None),
            (2, "b", None),
            (3, "c", None),
        ]
        assert history(project, "windowed") == first
        # A change of key 1 (a later updated_at) and a new key, a day later.
        reset(
            project,
            "(1, 'a2', '2024-01-04 09:00'), (2, 'b', '2024-01-02 10:00'),"
            " (3, 'c', '2024-01-03 10:00'), (4, 'd', '2024-01-04 11:00')",
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2024-01-05T00:00:00")
        run_dbt(["run"])
        whole = history(project, "whole")
        assert len(whole) == 5  # key 1: the closed and the new version
        closed = [r for r in whole if r[0] == 1 and r[6] is not None]
        assert [(r[1], str(r[6])) for r in closed] == [("a", "2024-01-04 09:00:00")]
        assert history(project, "windowed") == whole
