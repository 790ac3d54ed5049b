"""Bounded load history: with ``sqlflow_load_history: 5`` a model's loads beyond its five
newest are folded into ``load_summaries`` after its run, in the transaction that writes
the run's phase times; the detail and the summaries together still count every row, and
the next run loads only what is new (the intervals are untouched)."""

from __future__ import annotations

from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import create_events, events_model, file_target, raw_sources_yml, rows

HOURLY = events_model(
    "incremental_strategy='append', event_time='event_ts', batch_size='hour',"
    " begin='2025-01-01', commit_every=1"
)


def add_hours(project: Any, first: int, hours: int) -> None:
    """Three events an hour for ``hours`` hours from hour ``first`` of 2025-01-01."""
    project.run_sql(
        "insert into {schema}.events select i, timestamp '2025-01-01' + i * interval 20"
        f" minute, 'v' from range({first * 3}, {(first + hours) * 3}) as t(i)"
    )


class TestLoadHistory:
    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        return file_target(
            tmp_path_factory,
            sqlflow_load_history=5,
        )

    @pytest.fixture(scope="class")
    def models(self) -> dict[str, str]:
        return {"sources.yml": raw_sources_yml("events"), "hourly.sql": HOURLY}

    def test_older_loads_fold_into_summaries(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        create_events(project)
        add_hours(project, 0, 12)
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-01T12:00:00")
        run_dbt(["run"])

        detail = "select count(*), sum(rows_inserted) from sqlflow_meta.loads"
        folded = (
            "select loads, batches, rows_inserted, window_start::varchar, window_end::varchar,"
            " median_batch_rows from sqlflow_meta.load_summaries order by first_started_at"
        )
        # 12 hour batches: the 5 newest stay, the 7 oldest are one summary row.
        assert rows(project, detail) == [(5, 15)]
        assert rows(project, folded) == [
            (7, 7, 21, "2025-01-01 00:00:00", "2025-01-01 07:00:00", 3.0)
        ]
        assert rows(project, "select min(window_start)::varchar from sqlflow_meta.loads") == [
            ("2025-01-01 07:00:00",)
        ]

        # Six more hours: 11 loads (> 5 + 1) fold to 5 again; every row counted once.
        add_hours(project, 12, 6)
        monkeypatch.setenv("SQLFLOW_NOW", "2025-01-01T18:00:00")
        run_dbt(["run"])
        assert rows(project, detail) == [(5, 15)]
        assert [r[:3] for r in rows(project, folded)] == [(7, 7, 21), (6, 6, 18)]
        assert rows(project, "select count(*) from {schema}.hourly") == [(54,)]
        # The intervals are untouched: one loaded range, the 18 hours.
        assert rows(
            project,
            "select min(interval_start)::varchar, max(interval_end)::varchar"
            " from sqlflow_meta.intervals",
        ) == [("2025-01-01 00:00:00", "2025-01-01 18:00:00")]
