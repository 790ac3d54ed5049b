"""plan.py: the pure planning of a model run."""

from __future__ import annotations

from datetime import datetime

import pytest

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.plan import batch_order_by

MODEL = "model.proj.events"


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the order of a batch's rows ----------------------------------------------------------

DAY_1 = Interval(dt("2025-01-01"), dt("2025-01-02"))
DAY_2 = Interval(dt("2025-01-02"), dt("2025-01-03"))
HOUR = Interval(dt("2025-01-01T05:00"), dt("2025-01-01T06:00"))
WEEK = Interval(dt("2025-01-06"), dt("2025-01-13"))


@pytest.mark.parametrize(
    ("raw", "batches", "expected"),
    [
        # Each batch lies in one day partition: written as it comes.
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [DAY_1, DAY_2], None),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [HOUR], None),
        ({"partition_by": {"field": "Event_TS", "granularity": "day"}}, [DAY_1], None),
        # A batch spanning several partitions, or a build without a window: sorted.
        (
            {"partition_by": {"field": "event_ts", "granularity": "day"}},
            [DAY_1, WEEK],
            '"event_ts"',
        ),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [None], '"event_ts"'),
        ({"partition_by": {"field": "event_ts", "granularity": "day"}}, [], '"event_ts"'),
        (
            {"partition_by": {"field": "event_ts", "granularity": "hour"}, "batch_size": "day"},
            [DAY_1],
            '"event_ts"',
        ),
        # Windows on another column than the partition field, and value partitions.
        (
            {
                "partition_by": {"field": "event_date", "granularity": "day"},
                "event_time": "event_ts",
            },
            [DAY_1],
            '"event_date"',
        ),
        ({"partition_by": {"field": "region"}, "event_time": "event_ts"}, [DAY_1], '"region"'),
        # No partitions: event_time order, or none at all.
        ({"event_time": "event_ts"}, [DAY_1], '"event_ts"'),
        ({"unique_key": "id"}, [None], None),
    ],
)
def test_batch_order_by(
    raw: dict[str, object], batches: list[Interval | None], expected: str | None
) -> None:
    assert batch_order_by(SqlflowConfig.parse(MODEL, raw), batches) == expected
