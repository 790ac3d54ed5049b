"""tune.py: recommendations from crafted load histories, each with its evidence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dbt.adapters.sqlflow.tune import Batch, batches_from_loads, recommend

T0 = datetime(2025, 1, 1)
MODEL = "model.shop.events"


def history(count: int, rows: int, seconds: float) -> list[Batch]:
    return [
        Batch(T0 + timedelta(hours=i), T0 + timedelta(hours=i, seconds=seconds), rows)
        for i in range(count)
    ]


def test_tiny_hour_batches_get_coarser_batches_with_the_evidence() -> None:
    # 300 rows an hour: a month of them is 216,000 rows, a year 2.6M (over a million).
    found = recommend(MODEL, {"batch_size": "hour"}, history(48, 300, 0.05))
    assert [(r.key, r.current, r.recommended) for r in found] == [("batch_size", "hour", "month")]
    assert found[0].evidence == (
        "median 300 rows and 0.05 s per hour batch over the last 48 batches"
    )
    assert found[0].expected_gain == (
        "about 720x fewer batches (~216,000 rows each): up to 35.95 s less per month of"
        " data, the per-batch overhead of the batches saved"
    )


def test_the_coarsest_unit_that_stays_under_a_million_rows() -> None:
    # 2,000 rows a day: a week is 14,000, a month ~60,000, a year ~720,000.
    found = recommend(MODEL, {"batch_size": "day"}, history(30, 2_000, 0.1))
    assert [(r.key, r.recommended) for r in found] == [("batch_size", "year")]
    found = recommend(MODEL, {"batch_size": "day"}, history(30, 50_000, 0.3))
    assert [(r.key, r.recommended) for r in found] == [("batch_size", "week")]


def test_commit_every_1_with_tiny_batches_gets_auto() -> None:
    found = recommend(MODEL, {"batch_size": "year", "commit_every": 1}, history(12, 10, 0.02))
    assert [(r.key, r.current, r.recommended) for r in found] == [("commit_every", "1", "auto")]
    assert found[0].evidence.endswith("over the last 12 batches: one commit for each")


def test_huge_batches_get_a_finer_unit() -> None:
    found = recommend(MODEL, {"partition_by": {"granularity": "month"}}, history(12, 9e7, 600))
    assert [(r.key, r.current, r.recommended) for r in found] == [("batch_size", "month", "week")]
    assert "redoes 140 s instead of 600 s" in found[0].expected_gain


@pytest.mark.parametrize(
    ("config", "batches"),
    [
        ({"batch_size": "day"}, history(30, 400_000, 1.5)),  # well tuned
        ({"batch_size": "hour"}, history(9, 10, 0.01)),  # too few batches to tell
        ({"batch_size": "year"}, history(30, 10, 0.01)),  # no coarser unit, auto commits
    ],
    ids=["well-tuned", "too-new", "coarsest"],
)
def test_nothing_to_recommend(config: dict, batches: list[Batch]) -> None:
    assert recommend(MODEL, config, batches) == []


def test_batches_leave_out_empty_windows_and_loads_without_windows() -> None:
    from dbt.adapters.sqlflow.state import LoadRow

    def load(start: datetime | None, rows: int) -> LoadRow:
        return LoadRow(
            load_id="x",
            invocation_id="i",
            model=MODEL,
            relation="r",
            strategy="append",
            window_start=start,
            window_end=start,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=2),
            status="success",
            rows_inserted=rows,
        )

    found = batches_from_loads([load(T0, 5), load(T0, 0), load(None, 9)])
    assert found == [Batch(T0, T0 + timedelta(seconds=2), 5)]
    assert found[0].seconds == 2.0
