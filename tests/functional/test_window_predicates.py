"""incremental_predicates relative to the batch's window: ``sqlflow_window_start()`` in a
predicate is each batch's own start (as in the model's SQL), in the MERGE and in the
count of matched keys."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, raw_sources_yml, rows

# Each key's born_ts is fixed (its first day); the merge only looks for a key among the
# target rows born at most two days before the batch's window.
MODEL = """{{ config(materialized='sqlflow_incremental', incremental_strategy='merge',
    unique_key='id', event_time='event_ts', batch_size='day', begin='2025-01-01',
    incremental_predicates=["DBT_INTERNAL_DEST.born_ts >= "
        ~ sqlflow_window_start() ~ " - interval 2 day"]) }}
select id, event_ts, timestamp '2025-01-01' + (id - 1) * interval 1 day as born_ts, v
from {{ source('raw', 'events') }}
"""


class TestPredicateOnTheWindow:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"sources.yml": raw_sources_yml("events"), "recent.sql": MODEL}

    def test_each_batch_matches_with_its_own_window(
        self, project, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_events(project)
        project.run_sql(
            "insert into {schema}.events select i, timestamp '2025-01-01' + (i - 1)"
            " * interval 1 day + interval 1 hour, 'v' || i from range(1, 6) as t(i)"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-06T00:00:00")
        run_dbt(["run"])
        # Changes of key 2 (born 2025-01-02) and key 5 (born 2025-01-05) on 2025-01-07:
        # that window's merge looks among rows born from 2025-01-05 on, so it updates key
        # 5 and inserts key 2 again.
        project.run_sql(
            "insert into {schema}.events values (2, '2025-01-07 10:00', 'changed'),"
            " (5, '2025-01-07 11:00', 'changed')"
        )
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-08T00:00:00")
        run_dbt(["run"])
        assert rows(project, "select id, v from {schema}.recent order by id, v") == [
            (1, "v1"),
            (2, "changed"),
            (2, "v2"),
            (3, "v3"),
            (4, "v4"),
            (5, "changed"),
        ]
        loaded = rows(
            project,
            "select rows_inserted, rows_updated from sqlflow_meta.loads"
            " where window_start = '2025-01-07' and model = 'model.test.recent'",
        )
        assert loaded == [(1, 1)]
