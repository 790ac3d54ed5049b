"""run.py: a model run's figures and its adapter_response."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlflow_testing import sample_run

from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.quality import CheckOutcome
from dbt.adapters.sqlflow.run import SqlflowAdapterResponse

MODEL = "model.proj.events"


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- ModelRun figures --------------------------------------------------------------------


def test_response_sums_batches() -> None:
    load = sample_run(unique_key="id", event_time="event_ts")
    load.watermark_before = dt("2025-01-02T23:00:00")
    first = load.start_batch("merge", Interval(dt("2025-01-02"), dt("2025-01-03")))
    load.add_count("updated", 3)
    load.add_count("inserted", 1)
    load.retries.append("conflict")  # the first batch was tried twice
    first.partitions_touched = 1
    first.checks = [
        CheckOutcome("not_null(id)", "error", "pass", 0, [], "0 rows"),
        CheckOutcome("row_count", "warn", "fail", 0, [], "the batch has 4 rows"),
    ]
    load.commit_group()
    second = load.start_batch("merge", Interval(dt("2025-01-03"), dt("2025-01-04")))
    load.add_count("inserted", 5)
    load.add_count("deleted", 2)
    load.add_count("inserted", None)
    second.partitions_touched = 2
    second.checks = [CheckOutcome("not_null(id)", "error", "pass", 0, [], "0 rows")]
    load.commit_group()
    load.watermark_after = dt("2025-01-03T08:30:00")

    assert load.response() == SqlflowAdapterResponse(
        _message="merge: 6 inserted, 3 updated, 2 deleted; 1 quality check(s) warned",
        rows_affected=11,
        rows_inserted=6,
        rows_updated=3,
        rows_deleted=2,
        strategy="merge",
        partitions_touched=3,
        batches=2,
        watermark_before="2025-01-02T23:00:00",
        watermark_after="2025-01-03T08:30:00",
        load_ids=[first.load_id, second.load_id],
        retries=1,
        retry_reasons={"conflict": 1},
        commits=2,
        quality_checks=[
            {
                "check": "not_null(id)",
                "severity": "error",
                "status": "pass",
                "failing_rows": 0,
                "window_start": "2025-01-02T00:00:00",
                "window_end": "2025-01-03T00:00:00",
                "load_id": first.load_id,
            },
            {
                "check": "row_count",
                "severity": "warn",
                "status": "fail",
                "failing_rows": 0,
                "window_start": "2025-01-02T00:00:00",
                "window_end": "2025-01-03T00:00:00",
                "load_id": first.load_id,
            },
            {
                "check": "not_null(id)",
                "severity": "error",
                "status": "pass",
                "failing_rows": 0,
                "window_start": "2025-01-03T00:00:00",
                "window_end": "2025-01-04T00:00:00",
                "load_id": second.load_id,
            },
        ],
    )
    assert len({first.load_id, second.load_id, load.id}) == 3
    assert load.in_flight is None


def test_response_names_every_strategy_of_the_run() -> None:
    load = sample_run(unique_key="id")
    load.start_batch("merge", None)
    load.add_count("updated", 1)
    load.commit_group()
    load.start_batch("append", None)
    load.add_count("inserted", 2)
    load.commit_group()
    response = load.response()
    assert (response.strategy, response._message) == (
        "append,merge",
        "append,merge: 2 inserted, 1 updated, 0 deleted",
    )
    assert (response.rows_affected, response.batches, response.quality_checks) == (3, 2, None)


def test_check_of_a_load_without_window_names_its_load() -> None:
    load = sample_run(unique_key="id")
    built = load.start_batch("full_refresh", None)
    built.checks = [CheckOutcome("unique(id)", "error", "pass", 0, [], "0 rows")]
    load.commit_group()
    assert load.response().quality_checks == [
        {
            "check": "unique(id)",
            "severity": "error",
            "status": "pass",
            "failing_rows": 0,
            "window_start": None,
            "window_end": None,
            "load_id": built.load_id,
        }
    ]


def test_response_of_a_run_without_batches() -> None:
    response = sample_run().response()
    assert response == SqlflowAdapterResponse(
        _message="noop: 0 inserted, 0 updated, 0 deleted",
        rows_affected=0,
        rows_inserted=0,
        rows_updated=0,
        rows_deleted=0,
        retries=0,
        commits=0,
        strategy=None,
        partitions_touched=0,
        batches=0,
        watermark_before=None,
        watermark_after=None,
        load_ids=[],
        quality_checks=None,
    )


def test_uncommitted_batch_is_not_counted() -> None:
    load = sample_run()
    load.start_batch("append", None)
    load.add_count("inserted", 4)
    load.commit_group()
    load.start_batch("append", None)
    load.add_count("inserted", 99)
    response = load.response()
    assert (response.rows_inserted, response.batches) == (4, 1)


def test_add_count_rejects_an_unknown_role_and_ignores_no_batch() -> None:
    load = sample_run()
    load.add_count("inserted", 5)  # no batch open: nothing to count into
    load.start_batch("append", None)
    with pytest.raises(ValueError, match="unknown count role 'merged'"):
        load.add_count("merged", 1)
    load.commit_group()
    assert load.response().rows_inserted == 0


def test_log_context() -> None:
    load = sample_run()
    assert load.log_context() == f"[invocation_id=inv-1 model={MODEL} load_id=-]"
    batch = load.start_batch("append", None)
    assert load.log_context() == f"[invocation_id=inv-1 model={MODEL} load_id={batch.load_id}]"
    assert load.log_context("x") == f"[invocation_id=inv-1 model={MODEL} load_id=x]"


def test_partitions_touched_counts_distinct_partitions() -> None:
    # Daily batches of one monthly partition touch one partition, not one per batch.
    load = sample_run(partition_by={"field": "event_ts", "granularity": "month"}, batch_size="day")
    for day in ("2025-01-01", "2025-01-02", "2025-01-03"):
        batch = load.start_batch("insert_overwrite", (dt(day), dt(day) + timedelta(days=1)))
        batch.partitions_touched = 1
        batch.keys = ["2025-01"]
        load.commit_group()
    batch = load.start_batch("insert_overwrite", (dt("2025-02-01"), dt("2025-02-02")))
    batch.partitions_touched = 1
    batch.keys = ["2025-02"]
    load.commit_group()
    response = load.response()
    assert (response.partitions_touched, response.batches) == (2, 4)


def test_a_cdc_run_counts_ignored_events() -> None:
    from dbt.adapters.sqlflow.run import metrics_fields

    load = sample_run(incremental_strategy="cdc", unique_key="id", cdc={"sequence_by": "lsn"})
    batch = load.start_batch("cdc", None)
    load.add_count("inserted", 2)
    load.add_count("ignored", 7)
    assert metrics_fields(load, batch, "success")["rows_ignored"] == 7
    assert metrics_fields(load, batch, "error")["rows_ignored"] == 0
    load.commit_group()
    response = load.response()
    assert response._message == "cdc: 2 inserted, 0 updated, 0 deleted, 7 ignored"
    assert (response.rows_ignored, response.rows_affected) == (7, 2)
    assert sample_run(unique_key="id").response().rows_ignored is None
