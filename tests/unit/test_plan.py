"""plan.py: the pure planning of a model run."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from dbt_common.exceptions import DbtConfigError, DbtRuntimeError
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.intervals import Interval, add_units, truncate
from dbt.adapters.sqlflow.plan import (
    BUILD,
    INCREMENTAL,
    LoadedState,
    LoadPlan,
    Variant,
    batch_order_by,
    build_plan,
    census_targets,
    direct_strategy,
    empty_indexes,
    explicit_range,
    jinja_plan,
    loaded_part,
    new_keys_strategy,
    parse_model_config,
    parse_now,
    pinned_now,
    plan_model_windows,
    snapshot_settings,
    variants,
)

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
        # sorted_by is the order, whatever the partitions.
        (
            {"partition_by": {"field": "event_ts", "granularity": "day"}, "sorted_by": "v desc"},
            [DAY_1],
            "v desc",
        ),
        ({"unique_key": "id", "sorted_by": ["id", "v"]}, [None], "id, v"),
        # A change feed's batch is aggregated per key: its order buys nothing.
        (
            {
                "event_time": "event_ts",
                "unique_key": "id",
                "incremental_strategy": "cdc",
                "cdc": {"sequence_by": "lsn", "operation": "op"},
            },
            [DAY_1],
            None,
        ),
    ],
)
def test_batch_order_by(
    raw: dict[str, object], batches: list[Interval | None], expected: str | None
) -> None:
    assert batch_order_by(SqlflowConfig.parse(MODEL, raw), batches) == expected


def config(**raw: Any) -> SqlflowConfig:
    return SqlflowConfig.parse(MODEL, raw)


WINDOWED = {"event_time": "event_ts"}


# -- the explicit backfill range -----------------------------------------------------------

RANGE_HEAD = f"sqlflow_incremental model '{MODEL}': bad backfill range (nothing was written):\n"
RANGE_FIX = (
    'Fix: pass both, e.g. --vars \'{"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-02-01"}\'.'
)
NOT_WINDOWED = (
    "an explicit backfill range was given, but the model has no event_time or time"
    " partition_by. Fix: set event_time, or run without sqlflow_start/end."
)


@pytest.mark.parametrize(
    ("raw", "run_vars", "event_time_range", "expected"),
    [
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-01-03T06:00"},
            (None, None),
            (dt("2025-01-01"), dt("2025-01-03T06:00")),
            id="vars",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-01-01T02:00:00+02:00", "sqlflow_end": "2025-01-02T00:00Z"},
            (None, None),
            (dt("2025-01-01"), dt("2025-01-02")),
            id="vars-with-offsets-in-utc",
        ),
        pytest.param(WINDOWED, {}, (None, None), None, id="nothing-given"),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "", "sqlflow_end": ""},
            (None, None),
            None,
            id="empty-vars-are-absent",
        ),
        pytest.param({}, {}, (None, None), None, id="not-windowed-nothing-given"),
        # dbt's --event-time-start/--event-time-end (datetimes) for windowed models only.
        pytest.param(
            WINDOWED,
            {},
            (dt("2025-01-05"), dt("2025-01-07")),
            (dt("2025-01-05"), dt("2025-01-07")),
            id="event-time-flags",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": ""},
            (
                datetime(2025, 1, 5, 1, tzinfo=timezone(timedelta(hours=1))),
                datetime(2025, 1, 7, tzinfo=UTC),
            ),
            (dt("2025-01-05"), dt("2025-01-07")),
            id="event-time-flags-aware",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-02-01", "sqlflow_end": "2025-02-02"},
            (dt("2025-01-05"), dt("2025-01-07")),
            (dt("2025-02-01"), dt("2025-02-02")),
            id="vars-win-over-event-time-flags",
        ),
        pytest.param(
            {"unique_key": "id"},
            {},
            (dt("2025-01-05"), dt("2025-01-07")),
            None,
            id="event-time-flags-ignored-without-windows",
        ),
        pytest.param(
            {"partition_by": {"field": "event_ts", "granularity": "month"}},
            {"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-03-01"},
            (None, None),
            (dt("2025-01-01"), dt("2025-03-01")),
            id="time-partition-is-windowed",
        ),
    ],
)
def test_explicit_range(
    raw: dict[str, Any],
    run_vars: dict[str, Any],
    event_time_range: tuple[Any, Any],
    expected: tuple[datetime, datetime] | None,
) -> None:
    assert explicit_range(MODEL, config(**raw), run_vars, *event_time_range) == expected


@pytest.mark.parametrize(
    ("raw", "run_vars", "event_time_range", "problems"),
    [
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-01-01"},
            (None, None),
            [f"sqlflow_end is missing. {RANGE_FIX}"],
            id="end-missing",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_end": "2025-01-01", "sqlflow_start": ""},
            (None, None),
            [f"sqlflow_start is missing. {RANGE_FIX}"],
            id="start-empty",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "first of may", "sqlflow_end": "2025-13-01"},
            (None, None),
            [
                f"sqlflow_start 'first of may' is not an ISO date or timestamp. {RANGE_FIX}",
                f"sqlflow_end '2025-13-01' is not an ISO date or timestamp. {RANGE_FIX}",
            ],
            id="both-unparsable",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": 20250101, "sqlflow_end": "2025-01-02"},
            (None, None),
            [f"sqlflow_start '20250101' is not an ISO date or timestamp. {RANGE_FIX}"],
            id="a-number",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-02-01", "sqlflow_end": "2025-01-01T12:00"},
            (None, None),
            [
                "sqlflow_start 2025-02-01T00:00:00 is not before sqlflow_end"
                " 2025-01-01T12:00:00 (the range [start, end) includes start, excludes end)."
                " Fix: swap them."
            ],
            id="reversed",
        ),
        pytest.param(
            WINDOWED,
            {"sqlflow_start": "2025-02-01", "sqlflow_end": "2025-02-01T00:00:00"},
            (None, None),
            [
                "sqlflow_start 2025-02-01T00:00:00 is not before sqlflow_end"
                " 2025-02-01T00:00:00 (the range [start, end) includes start, excludes end)."
                " Fix: swap them."
            ],
            id="empty-range",
        ),
        pytest.param(
            WINDOWED,
            {},
            (dt("2025-01-07"), dt("2025-01-05")),
            [
                "sqlflow_start 2025-01-07T00:00:00 is not before sqlflow_end"
                " 2025-01-05T00:00:00 (the range [start, end) includes start, excludes end)."
                " Fix: swap them."
            ],
            id="event-time-flags-reversed",
        ),
        pytest.param(
            {"unique_key": "id"},
            {"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-01-02"},
            (None, None),
            [NOT_WINDOWED],
            id="not-windowed",
        ),
        pytest.param(
            {"partition_by": "region"},
            {"sqlflow_end": "nope"},
            (None, None),
            [
                f"sqlflow_start is missing. {RANGE_FIX}",
                f"sqlflow_end 'nope' is not an ISO date or timestamp. {RANGE_FIX}",
                NOT_WINDOWED,
            ],
            id="every-problem-at-once",
        ),
    ],
)
def test_explicit_range_errors(
    raw: dict[str, Any],
    run_vars: dict[str, Any],
    event_time_range: tuple[Any, Any],
    problems: list[str],
) -> None:
    with pytest.raises(DbtConfigError) as info:
        explicit_range(MODEL, config(**raw), run_vars, *event_time_range)
    assert info.value.msg == RANGE_HEAD + "\n".join(f"  - {p}" for p in problems)


# -- the run's clock ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pinned", "expected"),
    [
        ("2025-03-01T00:00:00", dt("2025-03-01")),
        ("2025-03-01", dt("2025-03-01")),
        ("2025-03-01 05:30:00.5", dt("2025-03-01T05:30:00.5")),
        ("2025-03-01T02:30:00+02:00", dt("2025-03-01T00:30")),
        ("2025-03-01T00:30:00Z", dt("2025-03-01T00:30")),
        (date(2025, 3, 1), dt("2025-03-01")),
        (datetime(2025, 3, 1, 9, tzinfo=UTC), dt("2025-03-01T09:00")),
    ],
)
def test_parse_now_pinned(pinned: Any, expected: datetime) -> None:
    assert parse_now({"sqlflow_now": pinned}) == expected


@pytest.mark.parametrize("run_vars", [{}, {"sqlflow_now": None}, {"sqlflow_now": ""}])
def test_parse_now_unpinned_is_the_utc_clock(run_vars: dict[str, Any]) -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = parse_now(run_vars)
    after = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after


@pytest.mark.parametrize(
    ("pinned", "shown"), [("yesterday", "'yesterday'"), ("2025-02-30", "'2025-02-30'"), (7, "7")]
)
def test_parse_now_bad_value(pinned: Any, shown: str) -> None:
    with pytest.raises(DbtRuntimeError) as info:
        parse_now({"sqlflow_now": pinned})
    assert info.value.msg == (
        f"--vars sqlflow_now {shown} is not an ISO date or timestamp. Pass e.g."
        " SQLFLOW_NOW=2025-03-01T00:00:00 (or --vars"
        ' \'{"sqlflow_now": "2025-03-01T00:00:00"}\').'
    )


def test_sqlflow_now_environment_variable_pins_the_clock() -> None:
    # Read at run time in Python: unlike --vars it leaves dbt's partial parsing alone.
    env = {"SQLFLOW_NOW": "2025-03-01T05:00:00Z"}
    assert pinned_now({}, env) == parse_now({}, env) == dt("2025-03-01T05:00")
    # --vars wins over the environment; neither gives None (parse_now: the clock).
    assert pinned_now({"sqlflow_now": "2025-01-01"}, env) == dt("2025-01-01")
    assert pinned_now({}, {}) is None


def test_sqlflow_now_environment_variable_bad_value() -> None:
    with pytest.raises(DbtRuntimeError) as info:
        parse_now({}, {"SQLFLOW_NOW": "soon"})
    assert info.value.msg.startswith(
        "the environment variable SQLFLOW_NOW 'soon' is not an ISO date or timestamp."
    )


# -- the model's config and quality checks ---------------------------------------------------

NOW = dt("2025-03-01T12:00")
COLUMNS = {"id": "INTEGER", "event_ts": "TIMESTAMP", "v": "VARCHAR"}


def test_parse_model_config() -> None:
    raw = {
        "incremental_strategy": "merge",
        "unique_key": "id",
        "event_time": "event_ts",
        "quality_checks": [{"not_null": ["v"], "severity": "warn"}, {"row_count": {"min": 1}}],
    }
    parsed, checks = parse_model_config(MODEL, raw, COLUMNS, NOW)
    assert parsed == SqlflowConfig.parse(MODEL, raw, COLUMNS, now=NOW)
    assert [(c.kind, c.name, c.severity, c.scope) for c in checks] == [
        ("not_null", "not_null(v)", "warn", "batch"),
        ("row_count", "row_count", "error", "batch"),
    ]


def test_parse_model_config_gathers_config_and_quality_problems() -> None:
    raw = {
        "incremental_strategy": "merge",
        "begin": "2025-04-01",
        "quality_checks": [{"not_nul": ["id"]}, {"not_null": ["nope"]}],
    }
    with pytest.raises(DbtConfigError) as info:
        parse_model_config(MODEL, raw, COLUMNS, NOW)
    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}' has 5 configuration errors (nothing was written):\n"
        "  - begin '2025-04-01' lies in the future (now is 2025-03-01 12:00:00 UTC)."
        " Fix: set begin to the earliest time the model has data for.\n"
        "  - begin '2025-04-01' needs a time column to window on, and the model has neither"
        " event_time nor a time partition_by. Fix: set event_time (or partition_by with a"
        " granularity), or remove it.\n"
        "  - unique_key is required by incremental_strategy 'merge'. Fix: set unique_key to"
        " the column (or list of columns) that identifies a row.\n"
        "  - quality_checks[0] {'not_nul': ['id']}: unknown check 'not_nul'. Allowed checks:"
        " not_null, unique, accepted_values, row_count, expression, freshness,"
        " partition_consistency. Did you mean 'not_null'?\n"
        "  - quality_checks[1] {'not_null': ['nope']}: not_null names column 'nope', which the"
        " model does not produce. Model columns: id, event_ts, v. Fix the name, or add the"
        " column to the model."
    )


def test_parse_model_config_says_once_that_quality_checks_is_not_a_list() -> None:
    with pytest.raises(DbtConfigError) as info:
        parse_model_config(MODEL, {"quality_checks": "id"}, COLUMNS, NOW)
    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}' has 1 configuration error (nothing was written):\n"
        "  - quality_checks 'id' must be a list of checks. Fix: write"
        " quality_checks=[{'not_null': ['id']}, ...]."
    )


def test_parse_model_config_reports_misspelled_keys_with_the_other_problems() -> None:
    raw = {"look_back": 5, "quality_check": [{"not_null": ["id"]}], "quality_checks": "id"}
    with pytest.raises(DbtConfigError) as info:
        parse_model_config(MODEL, raw, COLUMNS, NOW)
    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}' has 3 configuration errors (nothing was written):\n"
        "  - unknown config `look_back` — did you mean `lookback`? look_back=5 would be ignored"
        " (sqlflow reads lookback). Fix: rename look_back to lookback.\n"
        "  - unknown config `quality_check` — did you mean `quality_checks`?"
        " quality_check=[{'not_null': ['id']}] would be ignored (sqlflow reads"
        " quality_checks). Fix: rename quality_check to quality_checks.\n"
        # quality_checks that are not a list: said once, by the config.
        "  - quality_checks 'id' must be a list of checks. Fix: write"
        " quality_checks=[{'not_null': ['id']}, ...]."
    )


def test_parse_model_config_passes_dbt_keys_on() -> None:
    raw = {"look_back": 5, "owner": "growth"}
    config, _ = parse_model_config(MODEL, raw, COLUMNS, NOW, dbt_keys={"look_back"})
    assert config.unknown_keys == ("owner",)


@pytest.mark.parametrize(
    ("raw", "only_config_problem"),
    [
        # The config fails, yet its event_time still serves the freshness check.
        ({"event_time": "event_ts", "lookback": -1}, True),
        ({"lookback": -1}, False),
    ],
)
def test_parse_model_config_quality_sees_the_raw_event_time(
    raw: dict[str, Any], only_config_problem: bool
) -> None:
    raw = {**raw, "quality_checks": [{"freshness": {"max_lag": "2 days"}}]}
    with pytest.raises(DbtConfigError) as info:
        parse_model_config(MODEL, raw, COLUMNS, NOW)
    assert ("quality_checks[0]" not in info.value.msg) is only_config_problem
    assert "lookback -1 must be an integer >= 0" in info.value.msg


# -- planning a windowed run ------------------------------------------------------------------


class DataStart:
    """A ``data_start`` callable that counts its calls."""

    def __init__(self, value: datetime | None) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> datetime | None:
        self.calls += 1
        return self.value


def days(*starts: str) -> list[Interval]:
    return [Interval(dt(s), dt(s) + timedelta(days=1)) for s in starts]


def iv(start: str, end: str) -> Interval:
    return Interval(dt(start), dt(end))


MERGE = {"incremental_strategy": "merge", "unique_key": "id", "event_time": "event_ts"}
APPEND = {"incremental_strategy": "append", "event_time": "event_ts"}
OVERWRITE = {
    "incremental_strategy": "insert_overwrite",
    "partition_by": {"field": "event_ts", "granularity": "day"},
}
AUTO_KEYED = {"unique_key": "id", "event_time": "event_ts"}
LOADED_TO_6AM = LoadedState(loaded=(iv("2025-01-01", "2025-01-03T06:00"),))


@pytest.mark.parametrize(
    ("raw", "now", "expected"),
    [
        # Re-reading strategies look back one day (lookback=1) and plan the whole day of now.
        pytest.param(
            MERGE, "2025-01-03T12:00", days("2025-01-02", "2025-01-03"), id="merge-lookback"
        ),
        pytest.param(
            OVERWRITE, "2025-01-03T12:00", days("2025-01-02", "2025-01-03"), id="overwrite"
        ),
        pytest.param(
            AUTO_KEYED, "2025-01-03T12:00", days("2025-01-02", "2025-01-03"), id="auto-undecided"
        ),
        pytest.param(
            {**MERGE, "lookback": 0},
            "2025-01-03T12:00",
            [iv("2025-01-03T06:00", "2025-01-04")],
            id="merge-no-lookback",
        ),
        pytest.param(
            {**MERGE, "lookback": 2},
            "2025-01-03T12:00",
            days("2025-01-01", "2025-01-02", "2025-01-03"),
            id="merge-lookback-2",
        ),
        # Append never looks back (lookback=1 is dbt's default) and stops at now.
        pytest.param(
            APPEND, "2025-01-03T12:00", [iv("2025-01-03T06:00", "2025-01-03T12:00")], id="append"
        ),
        pytest.param(
            {**APPEND, "lookback": 0},
            "2025-01-05T09:30",
            [
                iv("2025-01-03T06:00", "2025-01-04"),
                *days("2025-01-04"),
                iv("2025-01-05", "2025-01-05T09:30"),
            ],
            id="append-gap-days",
        ),
        # now on a unit boundary: the day that starts at now is not planned at all.
        pytest.param(
            APPEND, "2025-01-04T00:00", [iv("2025-01-03T06:00", "2025-01-04")], id="append-at-0h"
        ),
        pytest.param(
            {**APPEND, "batch_size": "hour"},
            "2025-01-03T08:15",
            [
                iv("2025-01-03T06:00", "2025-01-03T07:00"),
                iv("2025-01-03T07:00", "2025-01-03T08:00"),
                iv("2025-01-03T08:00", "2025-01-03T08:15"),
            ],
            id="append-hours",
        ),
    ],
)
def test_plan_model_windows_lookback_and_now(
    raw: dict[str, Any], now: str, expected: list[Interval]
) -> None:
    data_start = DataStart(dt("2020-01-01"))
    windows = plan_model_windows(
        config(**raw), INCREMENTAL, LOADED_TO_6AM, dt(now), None, data_start
    )
    assert windows == expected
    assert data_start.calls == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # An explicit range is reprocessed as given, for re-reading strategies to its end...
        (MERGE, days("2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05")),
        # ... and for append only up to now.
        (APPEND, [*days("2025-01-02", "2025-01-03"), iv("2025-01-04", "2025-01-04T12:00")]),
    ],
)
def test_plan_model_windows_explicit(raw: dict[str, Any], expected: list[Interval]) -> None:
    data_start = DataStart(dt("2020-01-01"))
    # The state would refuse a renamed model; an explicit range does not look at it.
    state = LoadedState(other_models=("model.proj.old_events",))
    explicit = (dt("2025-01-02"), dt("2025-01-06"))
    windows = plan_model_windows(
        config(**raw), INCREMENTAL, state, dt("2025-01-04T12:00"), explicit, data_start
    )
    assert windows == expected
    assert data_start.calls == 0


def test_plan_model_windows_refuses_a_renamed_model() -> None:
    state = LoadedState(other_models=("model.proj.old_events", "model.proj.older"))
    with pytest.raises(DbtRuntimeError) as info:
        plan_model_windows(
            config(**MERGE), INCREMENTAL, state, dt("2025-01-04"), None, DataStart(None)
        )
    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}': its table holds windows loaded as"
        " 'model.proj.old_events', 'model.proj.older' (a renamed model?) and none as"
        f" '{MODEL}', so every window would load again. Run it once with --full-refresh to"
        " rebuild the table under its new name."
    )


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        # A build (first run or full refresh) forgets the other names' windows.
        (BUILD, LoadedState(other_models=("model.proj.old_events",))),
        # Windows of its own: the model was loaded under this name (others share the table).
        (
            INCREMENTAL,
            LoadedState(loaded=tuple(days("2025-01-03")), other_models=("model.proj.old",)),
        ),
    ],
)
def test_plan_model_windows_renamed_model_allowed(mode: str, state: LoadedState) -> None:
    windows = plan_model_windows(
        config(**MERGE, begin="2025-01-03"),
        mode,
        state,
        dt("2025-01-03T12:00"),
        None,
        DataStart(None),
    )
    assert windows == days("2025-01-03")


@pytest.mark.parametrize(
    ("begin", "state", "expected"),
    [
        # begin is the lower bound: days before the loaded ones are owed.
        (
            "2024-12-30T06:00",
            LoadedState(loaded=(iv("2025-01-01", "2025-01-03"),)),
            [iv("2024-12-30T06:00", "2024-12-31"), *days("2024-12-31", "2025-01-03")],
        ),
        # Without begin: the earliest window ever loaded (a range invalidated at the very
        # start is still owed) ...
        (
            None,
            LoadedState(
                loaded=(iv("2025-01-02", "2025-01-03"),), first_window_start=dt("2024-12-31")
            ),
            days("2024-12-31", "2025-01-01", "2025-01-03"),
        ),
        # ... or the first loaded interval when it starts earlier or no load says otherwise.
        (
            None,
            LoadedState(
                loaded=(iv("2025-01-02", "2025-01-03"),), first_window_start=dt("2025-01-02T12:00")
            ),
            days("2025-01-03"),
        ),
        (None, LoadedState(loaded=(iv("2025-01-02", "2025-01-03"),)), days("2025-01-03")),
    ],
)
def test_plan_model_windows_lower_bound(
    begin: str | None, state: LoadedState, expected: list[Interval]
) -> None:
    raw = {**MERGE, "lookback": 0}
    if begin:
        raw["begin"] = begin
    data_start = DataStart(dt("2020-01-01"))
    windows = plan_model_windows(
        config(**raw), INCREMENTAL, state, dt("2025-01-03T12:00"), None, data_start
    )
    assert windows == expected
    assert data_start.calls == 0


@pytest.mark.parametrize(
    ("begin", "loaded", "value", "calls", "expected"),
    [
        ("2025-01-02", (), dt("2020-01-01"), 0, days("2025-01-02", "2025-01-03")),
        (None, tuple(days("2025-01-02")), dt("2020-01-01"), 0, days("2025-01-03")),
        # Neither begin nor a loaded interval: the data's start, truncated to its day.
        (None, (), dt("2025-01-02T05:00"), 1, days("2025-01-02", "2025-01-03")),
        # No data at all: nothing to plan.
        (None, (), None, 1, []),
        # Data that starts after now's day: nothing either.
        (None, (), dt("2025-01-04T00:00"), 1, []),
    ],
)
def test_plan_model_windows_asks_data_start_only_when_needed(
    begin: str | None,
    loaded: tuple[Interval, ...],
    value: datetime | None,
    calls: int,
    expected: list[Interval],
) -> None:
    raw = {**MERGE, "lookback": 0}
    if begin:
        raw["begin"] = begin
    data_start = DataStart(value)
    mode = INCREMENTAL if loaded else BUILD
    windows = plan_model_windows(
        config(**raw), mode, LoadedState(loaded=loaded), dt("2025-01-03T12:00"), None, data_start
    )
    assert (windows, data_start.calls) == (expected, calls)


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        (iv("2025-01-01", "2025-01-02"), "2025-01-03", iv("2025-01-01", "2025-01-02")),
        (iv("2025-01-01", "2025-01-02"), "2025-01-02", iv("2025-01-01", "2025-01-02")),
        (iv("2025-01-01", "2025-01-02"), "2025-01-01T07:30", iv("2025-01-01", "2025-01-01T07:30")),
        (iv("2025-01-01", "2025-01-02"), "2025-01-01", None),
        (iv("2025-01-01", "2025-01-02"), "2024-12-31", None),
    ],
)
def test_loaded_part(window: Interval, now: str, expected: Interval | None) -> None:
    assert loaded_part(window, dt(now)) == expected


# -- which tables a census counts, which windows are empty ------------------------------------

SNAPSHOT = {"strategy": "check", "check_cols": "all"}


@pytest.mark.parametrize(
    ("raw", "mode", "reads_window", "expected"),
    [
        # No event_time: no windows to judge.
        ({"unique_key": "id"}, INCREMENTAL, False, (False, False)),
        ({"partition_by": "region"}, INCREMENTAL, False, (False, False)),
        # A model that reads its window: one census over the whole range says nothing.
        (APPEND, INCREMENTAL, True, (False, False)),
        (OVERWRITE, INCREMENTAL, True, (False, False)),
        # A snapshot closes vanished keys on an empty batch: every window runs.
        (
            {
                "incremental_strategy": "snapshot",
                "unique_key": "id",
                "event_time": "event_ts",
                "snapshot": SNAPSHOT,
            },
            INCREMENTAL,
            False,
            (False, False),
        ),
        ({**AUTO_KEYED, "snapshot": SNAPSHOT}, INCREMENTAL, False, (False, False)),
        # Source rows decide; a strategy that replaces the window counts the target too.
        (APPEND, INCREMENTAL, False, (True, False)),
        (APPEND, BUILD, False, (True, False)),
        (MERGE, INCREMENTAL, False, (True, False)),
        ({**MERGE, "incremental_strategy": "delete+insert"}, INCREMENTAL, False, (True, False)),
        (OVERWRITE, INCREMENTAL, False, (True, True)),
        (OVERWRITE, BUILD, False, (True, False)),
        # auto with a key is undecided until a batch's data is seen: as if it replaced.
        (AUTO_KEYED, INCREMENTAL, False, (True, True)),
        (AUTO_KEYED, BUILD, False, (True, False)),
        # auto without a key on a time partition is insert_overwrite.
        (
            {"partition_by": {"field": "event_ts", "granularity": "day"}},
            INCREMENTAL,
            False,
            (True, True),
        ),
    ],
)
def test_census_targets(
    raw: dict[str, Any], mode: str, reads_window: bool, expected: tuple[bool, bool]
) -> None:
    assert census_targets(config(**raw), mode, reads_window) == expected


FOUR_DAYS = days("2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04")


@pytest.mark.parametrize(
    ("windows", "unit", "busy", "expected"),
    [
        (FOUR_DAYS, "day", {dt("2025-01-01"), dt("2025-01-03")}, {1, 3}),
        (FOUR_DAYS, "day", set(), {0, 1, 2, 3}),
        (FOUR_DAYS, "day", {dt(f"2025-01-0{d}") for d in range(1, 5)}, set()),
        # A window that starts inside its unit (begin at 06:00) is judged by its unit.
        (
            [iv("2025-01-01T06:00", "2025-01-02"), *days("2025-01-02")],
            "day",
            {dt("2025-01-01")},
            {1},
        ),
        # Busy units outside the windows change nothing.
        (FOUR_DAYS, "day", {dt("2024-12-31"), dt("2025-01-05")}, {0, 1, 2, 3}),
        (
            [iv("2025-01-01", "2025-02-01"), iv("2025-02-01", "2025-03-01")],
            "month",
            {dt("2025-02-01")},
            {0},
        ),
        ([], "day", {dt("2025-01-01")}, set()),
    ],
)
def test_empty_indexes(
    windows: list[Interval], unit: str, busy: set[datetime], expected: set[int]
) -> None:
    assert empty_indexes(windows, unit, busy) == expected


# -- the frozen plan --------------------------------------------------------------------------


def test_build_plan_splits_windows_into_batches_and_empty_windows() -> None:
    cfg = config(**MERGE)
    loaded = (iv("2024-12-01", "2025-01-02"),)
    plan = build_plan(cfg, INCREMENTAL, FOUR_DAYS, {1, 3}, loaded_at_start=loaded, direct=None)
    assert plan == LoadPlan(
        mode=INCREMENTAL,
        batches=tuple(days("2025-01-01", "2025-01-03")),
        empty_windows=tuple(days("2025-01-02", "2025-01-04")),
        loaded_at_start=loaded,
        order_by='"event_ts"',
        variants=(Variant("merge"), Variant("merge", True), Variant("append", True)),
        direct=None,
    )
    assert plan.windowed
    assert plan.overlaps_loaded(FOUR_DAYS[0])
    assert not plan.overlaps_loaded(FOUR_DAYS[1])


def test_build_plan_every_window_empty() -> None:
    plan = build_plan(config(**APPEND), INCREMENTAL, FOUR_DAYS, {0, 1, 2, 3})
    assert (plan.batches, plan.empty_windows, plan.windowed) == ((), tuple(FOUR_DAYS), True)


def test_build_plan_without_windows() -> None:
    plan = build_plan(config(unique_key="id"), BUILD, None, set())
    assert (plan.batches, plan.empty_windows) == ((None,), ())
    assert not plan.windowed
    assert plan.order_by is None


@pytest.mark.parametrize(
    ("raw", "mode", "windows", "batches"),
    [
        # --empty loads nothing into an existing table and records nothing ...
        (MERGE, INCREMENTAL, FOUR_DAYS, ()),
        ({"unique_key": "id"}, INCREMENTAL, None, ()),
        # ... a windowed build creates its table empty ...
        (APPEND, BUILD, FOUR_DAYS, ()),
        # ... and a build without windows builds the (empty) table in its one batch.
        ({"unique_key": "id"}, BUILD, None, (None,)),
    ],
)
def test_build_plan_with_dbts_empty_flag(
    raw: dict[str, Any], mode: str, windows: list[Interval] | None, batches: tuple
) -> None:
    plan = build_plan(config(**raw), mode, windows, {1}, empty_flag=True)
    assert (plan.batches, plan.empty_windows) == (batches, ())


@pytest.mark.parametrize(
    ("raw", "windows", "order_by"),
    [
        # Day windows of day partitions are in partition order as they come.
        (OVERWRITE, FOUR_DAYS, None),
        # Hour batches of day partitions too.
        ({**OVERWRITE, "batch_size": "hour"}, [iv("2025-01-01", "2025-01-01T01:00")], None),
        (APPEND, FOUR_DAYS, '"event_ts"'),
    ],
)
def test_build_plan_order_by(
    raw: dict[str, Any], windows: list[Interval], order_by: str | None
) -> None:
    assert build_plan(config(**raw), INCREMENTAL, windows, set()).order_by == order_by


@pytest.mark.parametrize(
    ("raw", "partitions_on_event_time", "batch_checks", "expected"),
    [
        # insert_overwrite on event_time partitions: the query goes straight in, checks or not.
        (OVERWRITE, True, False, "insert_overwrite"),
        (OVERWRITE, True, True, "insert_overwrite"),
        ({**OVERWRITE, "batch_size": "hour"}, True, False, "insert_overwrite"),
        # ... not on partitions of another column, nor with a key to check.
        (
            {
                **OVERWRITE,
                "partition_by": {"field": "event_date", "granularity": "day"},
                "event_time": "event_ts",
            },
            False,
            False,
            None,
        ),
        ({**OVERWRITE, "unique_key": "id"}, True, False, None),
        # Value partitions are not windows.
        ({"incremental_strategy": "insert_overwrite", "partition_by": "region"}, None, False, None),
        # append: without partitions, without batch checks (they would see the whole window).
        (APPEND, None, False, "append"),
        (APPEND, None, True, None),
        ({**APPEND, "unique_key": "id"}, None, False, "append"),
        # dedupe_by: the batch is staged, where rows tied for last are checked.
        ({**APPEND, "unique_key": "id", "dedupe_by": "v"}, None, False, None),
        ({"event_time": "event_ts"}, None, False, "append"),
        (
            {**APPEND, "partition_by": {"field": "event_ts", "granularity": "day"}},
            True,
            False,
            "append",
        ),
        ({**APPEND, "partition_by": {"field": "region"}}, False, False, None),
        # Keyed strategies always stage (their keys are checked); so does undecided auto.
        (MERGE, None, False, None),
        ({**MERGE, "incremental_strategy": "delete+insert"}, None, False, None),
        (AUTO_KEYED, None, False, None),
        ({"incremental_strategy": "append"}, None, False, None),
    ],
)
def test_direct_strategy(
    raw: dict[str, Any],
    partitions_on_event_time: bool | None,
    batch_checks: bool,
    expected: str | None,
) -> None:
    assert direct_strategy(config(**raw), partitions_on_event_time, batch_checks) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (MERGE, "merge"),
        ({**MERGE, "incremental_strategy": "delete+insert"}, "delete+insert"),
        # auto with a key: a batch whose keys are all new is a plain insert (append).
        (AUTO_KEYED, "append"),
        # Deduplicated per window, not over a group's range.
        ({**MERGE, "dedupe_by": "v"}, None),
        # No windows, no key, or a strategy that does not insert by key.
        ({"incremental_strategy": "merge", "unique_key": "id"}, None),
        (APPEND, None),
        ({**OVERWRITE, "event_time": "event_ts", "unique_key": "id"}, None),
        (
            {
                **MERGE,
                "incremental_strategy": "snapshot",
                "snapshot": {"strategy": "timestamp", "updated_at": "event_ts"},
            },
            None,
        ),
        ({**MERGE, "incremental_strategy": "cdc", "cdc": {"sequence_by": "event_ts"}}, None),
    ],
)
def test_new_keys_strategy(raw: dict[str, Any], expected: str | None) -> None:
    assert new_keys_strategy(config(**raw)) == expected


MERGE_VARIANTS = (Variant("merge"), Variant("merge", True), Variant("append", True))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (MERGE, MERGE_VARIANTS),
        (AUTO_KEYED, MERGE_VARIANTS),
        (
            {"unique_key": "id", "partition_by": {"field": "event_ts", "granularity": "day"}},
            MERGE_VARIANTS,
        ),
        (APPEND, (Variant("append"),)),
        ({}, (Variant("append"),)),
        (
            {"incremental_strategy": "delete+insert", "unique_key": "id"},
            (Variant("delete+insert"),),
        ),
        (OVERWRITE, (Variant("insert_overwrite"),)),
        ({"partition_by": "region"}, (Variant("insert_overwrite"),)),
        ({"unique_key": "id", "snapshot": SNAPSHOT}, (Variant("snapshot"),)),
    ],
)
def test_variants(raw: dict[str, Any], expected: tuple[Variant, ...]) -> None:
    assert variants(config(**raw)) == expected


def test_variant_key() -> None:
    assert [v.key for v in MERGE_VARIANTS] == ["merge:False", "merge:True", "append:True"]


# -- what Jinja sees ----------------------------------------------------------------------------


def test_jinja_plan_of_a_merge() -> None:
    cfg = config(
        incremental_strategy="merge",
        unique_key=["Order ID", 'a"b'],
        event_time="Event TS",
        dedupe_by="updated_at desc",
        merge_exclude_columns=["note"],
        incremental_predicates=["DBT_INTERNAL_DEST.v > 0"],
        on_schema_change="append_new_columns",
    )
    plan = build_plan(cfg, INCREMENTAL, days("2025-01-01"), set())
    columns = {"Order ID": "INTEGER", 'a"b': "VARCHAR", "Event TS": "TIMESTAMP WITH TIME ZONE"}
    assert jinja_plan("run-7", cfg, plan, columns) == {
        "batch_columns": [
            {"name": '"Order ID"', "type": "INTEGER"},
            {"name": '"a""b"', "type": "VARCHAR"},
            {"name": '"Event TS"', "type": "TIMESTAMP WITH TIME ZONE"},
        ],
        "id": "run-7",
        "mode": "incremental",
        "windowed": True,
        "has_batches": True,
        "unique_key": ['"Order ID"', '"a""b"'],
        "unique_key_names": ["Order ID", 'a"b'],
        "dedupe_by": ["updated_at desc"],
        "event_time": '"Event TS"',
        "order_by": '"Event TS"',
        "sorted_by": None,
        "on_schema_change": "append_new_columns",
        "merge_update_columns": [],
        "merge_exclude_columns": ["note"],
        "incremental_predicates": ["DBT_INTERNAL_DEST.v > 0"],
        "snapshot": None,
        "cdc": None,
        "variants": [
            {
                "strategy": "merge",
                "plain_insert": False,
                "key": "merge:False",
                "macro_name": "get_sqlflow_merge_sql",
            },
            {
                "strategy": "merge",
                "plain_insert": True,
                "key": "merge:True",
                "macro_name": "get_sqlflow_merge_sql",
            },
            {
                "strategy": "append",
                "plain_insert": True,
                "key": "append:True",
                "macro_name": "get_sqlflow_append_sql",
            },
        ],
        "direct": None,
        "new_keys": None,
        "new_keys_order_by": None,
    }


@pytest.mark.parametrize(
    ("raw", "direct", "macro_names", "expected_direct"),
    [
        (
            OVERWRITE,
            "insert_overwrite",
            ["get_sqlflow_insert_overwrite_sql"],
            {"strategy": "insert_overwrite", "macro_name": "get_sqlflow_insert_overwrite_sql"},
        ),
        (
            APPEND,
            "append",
            ["get_sqlflow_append_sql"],
            {"strategy": "append", "macro_name": "get_sqlflow_append_sql"},
        ),
        (
            {"incremental_strategy": "delete+insert", "unique_key": "id"},
            None,
            ["get_sqlflow_delete_insert_sql"],
            None,
        ),
    ],
)
def test_jinja_plan_macro_names_and_direct(
    raw: dict[str, Any],
    direct: str | None,
    macro_names: list[str],
    expected_direct: dict[str, str] | None,
) -> None:
    cfg = config(**raw)
    plan = build_plan(cfg, INCREMENTAL, days("2025-01-01"), set(), direct=direct)
    shown = jinja_plan("r", cfg, plan)
    assert [v["macro_name"] for v in shown["variants"]] == macro_names
    assert shown["direct"] == expected_direct


def test_jinja_plan_without_batches_or_windows() -> None:
    cfg = config(unique_key="id")
    shown = jinja_plan("r", cfg, build_plan(cfg, INCREMENTAL, None, set(), empty_flag=True))
    assert (shown["windowed"], shown["has_batches"], shown["event_time"]) == (False, False, None)
    assert shown["unique_key"] == ['"id"']


def test_snapshot_settings() -> None:
    cfg = config(
        unique_key="id",
        snapshot={"strategy": "timestamp", "updated_at": "updated_at"},
        hard_deletes="invalidate",
        dbt_valid_to_current="9999-12-31",
        snapshot_meta_column_names={"dbt_valid_to": "valid_to"},
    )
    assert snapshot_settings(cfg) == {
        "strategy": "timestamp",
        "updated_at": "updated_at",
        "check_cols": [],
        "hard_deletes": "invalidate",
        "dbt_valid_to_current": "9999-12-31",
        "columns": {
            "dbt_valid_from": "dbt_valid_from",
            "dbt_valid_to": "valid_to",
            "dbt_scd_id": "dbt_scd_id",
            "dbt_updated_at": "dbt_updated_at",
            "dbt_is_deleted": "dbt_is_deleted",
        },
    }
    checked = config(unique_key="id", snapshot=SNAPSHOT)
    assert snapshot_settings(checked)["check_cols"] == "all"  # type: ignore[index]
    assert snapshot_settings(config(unique_key="id")) is None


# -- properties of window planning ----------------------------------------------------------
#
# Configs are built by SqlflowConfig.parse; times are whole hours after BASE, except now,
# which may fall inside an hour. The expected coverage is judged instant by instant: every
# set involved is a union of half-open intervals whose ends are among the boundaries
# collected below, so checking the start of each piece between two neighbouring
# boundaries checks every instant.

BASE = datetime(2025, 1, 1)
UNITS = ("hour", "day", "week", "month")
KINDS = ("merge", "insert_overwrite", "auto", "append")


@dataclass(frozen=True)
class Scenario:
    raw: dict[str, Any]
    mode: str
    state: LoadedState
    now: datetime
    data_start: datetime | None

    @property
    def rereads(self) -> bool:
        return self.raw.get("incremental_strategy") != "append"


def hours(n: int) -> datetime:
    return BASE + timedelta(hours=n)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    unit = draw(st.sampled_from(UNITS))
    kind = draw(st.sampled_from(KINDS))
    raw: dict[str, Any] = {
        "merge": {**MERGE, "batch_size": unit},
        "insert_overwrite": {
            "incremental_strategy": "insert_overwrite",
            "partition_by": {"field": "event_ts", "granularity": unit},
        },
        "auto": {**AUTO_KEYED, "batch_size": unit},
        "append": {**APPEND, "batch_size": unit},
    }[kind]
    lookback = draw(st.sampled_from([None, 0, 1]) if kind == "append" else st.integers(0, 3))
    if lookback is not None:
        raw = {**raw, "lookback": lookback}
    now_hour = draw(st.integers(1, 24 * 80))
    now = hours(now_hour) + timedelta(minutes=draw(st.sampled_from([0, 17, 59])))
    begin = draw(st.none() | st.integers(-24 * 10, now_hour))
    if begin is not None:
        raw = {**raw, "begin": hours(begin).isoformat()}
    # Loaded intervals: disjoint, not touching, in order, all ending by now.
    ends = draw(st.lists(st.integers(-24 * 10, now_hour), unique=True, max_size=8))
    ends = sorted(ends)[: len(ends) // 2 * 2]
    loaded = tuple(Interval(hours(a), hours(b)) for a, b in zip(ends[::2], ends[1::2], strict=True))
    first = None
    if loaded:
        back = draw(st.none() | st.integers(0, 24 * 5))
        first = None if back is None else loaded[0].start - timedelta(hours=back)
    mode = INCREMENTAL if loaded else draw(st.sampled_from([BUILD, INCREMENTAL]))
    data_start = draw(st.none() | st.integers(-24 * 10, now_hour + 48).map(hours))
    state = LoadedState(loaded=loaded, first_window_start=first)
    return Scenario(raw, mode, state, now, data_start)


def expected_bounds(cfg: SqlflowConfig, s: Scenario) -> tuple[datetime | None, datetime]:
    """The planned range's lower bound (or None: nothing to plan) and its end."""
    unit = cfg.batch_size or "day"
    loaded, first = s.state.loaded, s.state.first_window_start
    if cfg.begin is not None:
        lower: datetime | None = cfg.begin
    elif loaded:
        lower = min(loaded[0].start, first) if first is not None else loaded[0].start
    elif s.data_start is not None:
        lower = truncate(s.data_start, unit)
    else:
        lower = None
    return lower, add_units(truncate(s.now, unit), unit, 1)


def reread_span(cfg: SqlflowConfig, s: Scenario) -> Interval | None:
    """The lookback units before the last loaded end, re-read although loaded."""
    unit = cfg.batch_size or "day"
    lookback = cfg.lookback if s.rereads else 0
    if not s.state.loaded or not lookback:
        return None
    last_end = s.state.loaded[-1].end
    return Interval(add_units(truncate(last_end, unit), unit, -lookback), last_end)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_planned_windows_cover_exactly_what_is_owed(s: Scenario) -> None:
    cfg = SqlflowConfig.parse(MODEL, s.raw, now=s.now)
    unit = cfg.batch_size or "day"
    data_start = DataStart(s.data_start)
    windows = plan_model_windows(cfg, s.mode, s.state, s.now, None, data_start)

    # Only asked when neither begin nor a loaded interval gives the lower bound.
    assert data_start.calls == (1 if cfg.begin is None and not s.state.loaded else 0)
    # Sorted, never overlapping, each within one batch_size unit.
    for before, after in itertools.pairwise(windows):
        assert before.end <= after.start
    for w in windows:
        assert w.end <= add_units(truncate(w.start, unit), unit, 1)
    if cfg.begin is not None:
        assert all(w.start >= cfg.begin for w in windows)
    if not s.rereads:
        # Append never plans at or after now, and never re-reads a loaded instant.
        assert all(w.start < s.now and w.end <= s.now for w in windows)
        assert not any(w.overlaps(done) for w in windows for done in s.state.loaded)

    lower, upper = expected_bounds(cfg, s)
    reread = reread_span(cfg, s)
    boundaries = {upper, s.now}
    for part in (*windows, *s.state.loaded, *([reread] if reread else [])):
        boundaries |= {part.start, part.end}
    if lower is not None:
        boundaries.add(lower)
    for point in sorted(boundaries):
        planned = any(w.contains(point) for w in windows)
        loaded = any(done.contains(point) for done in s.state.loaded)
        owed = (
            lower is not None
            and lower <= point < upper
            and (not loaded or (reread is not None and reread.contains(point)))
            and (s.rereads or point < s.now)
        )
        assert planned == owed, (point, lower, upper, reread, windows)
