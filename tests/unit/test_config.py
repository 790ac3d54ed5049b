"""``SqlflowConfig.parse``: every error message, problems gathered into one, and defaults."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from dbt_common.exceptions import DbtConfigError

from dbt.adapters.sqlflow.config import (
    SQLFLOW_KEYS,
    PartitionBy,
    SnapshotSpec,
    SqlflowConfig,
    _Parser,
    partition_by_mapping,
)

MODEL = "model.proj.fct_events"
COLUMNS = {
    "id": "INTEGER",
    "region": "VARCHAR",
    "v": "VARCHAR",
    "event_ts": "TIMESTAMP",
    "event_date": "DATE",
    "event_tz": "TIMESTAMP WITH TIME ZONE",
    "updated_at": "TIMESTAMP",
}
COLUMN_LIST = "id, region, v, event_ts, event_date, event_tz, updated_at"
NOW = datetime(2025, 3, 1, 12, 0)
DAY = {"field": "event_ts", "granularity": "day"}
CHECK_ALL = {"strategy": "check", "check_cols": "all"}
HEADER_1 = f"sqlflow_incremental model '{MODEL}' has 1 configuration error (nothing was written):"


def parse(raw: dict[str, Any], columns: dict[str, str] | None = COLUMNS) -> SqlflowConfig:
    return SqlflowConfig.parse(MODEL, raw, columns, now=NOW)


def problems(raw: dict[str, Any], columns: dict[str, str] | None = COLUMNS) -> list[str]:
    """The problem lines of the one error ``parse`` raises (header checked separately)."""
    with pytest.raises(DbtConfigError) as info:
        parse(raw, columns)
    header, *lines = str(info.value.msg).split("\n")
    noun = "error" if len(lines) == 1 else "errors"
    assert header == (
        f"sqlflow_incremental model '{MODEL}' has {len(lines)} configuration {noun}"
        " (nothing was written):"
    )
    assert all(line.startswith("  - ") for line in lines)
    return [line[4:] for line in lines]


def missing(key: str, name: str, hint: str | None) -> str:
    did = f" (did you mean '{hint}'?)" if hint else ""
    return (
        f"{key} '{name}' names a column the model does not produce{did}; its columns are:"
        f" {COLUMN_LIST}. Fix: select {name} in the model or change {key}."
    )


def time_key_without_column(key: str, value: Any) -> str:
    return (
        f"{key} {value!r} needs a time column to window on, and the model has neither"
        " event_time nor a time partition_by. Fix: set event_time (or partition_by with a"
        " granularity), or remove it."
    )


def time_key_on_values(key: str, value: Any, field: str = "region") -> str:
    return (
        f"{key} {value!r} is a time-window key, but partition_by {{'field': '{field}'}} makes"
        " value partitions and the model has no event_time. Fix: remove it, or set"
        " event_time to the model's time column."
    )


LOOKBACK = (
    "must be an integer >= 0 (batch_size units re-read before the last loaded end)."
    " Fix: set lookback=1, or 0 to re-read nothing."
)
WRONG_TIME_TYPE = "not DATE, TIMESTAMP or TIMESTAMPTZ"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"incremental_strategy": "merg"},
            "incremental_strategy 'merg' is not one of: append, merge, delete+insert,"
            " insert_overwrite, snapshot, cdc, auto (did you mean 'merge'?)."
            " Fix: set incremental_strategy to one of them.",
            id="strategy-did-you-mean",
        ),
        pytest.param(
            {"incremental_strategy": "delete_insert", "unique_key": "id"},
            "incremental_strategy 'delete_insert' is not one of: append, merge, delete+insert,"
            " insert_overwrite, snapshot, cdc, auto (did you mean 'delete+insert'?)."
            " Fix: set incremental_strategy to one of them.",
            id="strategy-did-you-mean-delete-insert",
        ),
        pytest.param(
            {"incremental_strategy": "upsert"},
            "incremental_strategy 'upsert' is not one of: append, merge, delete+insert,"
            " insert_overwrite, snapshot, cdc, auto. Fix: set incremental_strategy to one of them.",
            id="strategy-no-close-match",
        ),
        pytest.param(
            {"incremental_strategy": "merge"},
            "unique_key is required by incremental_strategy 'merge'. Fix: set unique_key to"
            " the column (or list of columns) that identifies a row.",
            id="merge-without-key",
        ),
        pytest.param(
            {"incremental_strategy": "delete+insert", "unique_key": []},
            "unique_key is required by incremental_strategy 'delete+insert'. Fix: set"
            " unique_key to the column (or list of columns) that identifies a row.",
            id="delete-insert-empty-key",
        ),
        pytest.param(
            {"unique_key": "idd"}, missing("unique_key", "idd", "id"), id="unique-key-missing"
        ),
        pytest.param(
            {"unique_key": ["id", "ID"]},
            "unique_key ['id', 'ID'] lists a column twice. Fix: list each column once.",
            id="unique-key-twice",
        ),
        pytest.param(
            {"unique_key": 7},
            "unique_key 7 must be a string or a list of strings. Fix: write unique_key=['col'].",
            id="unique-key-not-a-string",
        ),
        pytest.param(
            {"unique_key": "id", "dedupe_by": "updated desc"},
            missing("dedupe_by", "updated", "updated_at"),
            id="dedupe-by-missing",
        ),
        pytest.param(
            {"unique_key": "id", "dedupe_by": ['"zz" desc nulls last']},
            missing("dedupe_by", "zz", None),
            id="dedupe-by-quoted-missing",
        ),
        pytest.param(
            {"dedupe_by": ["updated_at"]},
            "dedupe_by ('updated_at',) has no effect without unique_key. Fix: set unique_key"
            " to the columns that identify a row, or remove dedupe_by.",
            id="dedupe-by-without-key",
        ),
        pytest.param(
            {"unique_key": "id", "merge_update_columns": ["v"], "merge_exclude_columns": ["v"]},
            "merge_update_columns ['v'] conflicts with merge_exclude_columns. Fix: set only"
            " one of merge_update_columns and merge_exclude_columns.",
            id="merge-columns-conflict",
        ),
        pytest.param(
            {"unique_key": "id", "merge_update_columns": ["ID", "v"]},
            "merge_update_columns ['ID', 'v'] names the unique_key column(s) ['ID'], which a"
            " merge never updates. Fix: remove ['ID'] from merge_update_columns.",
            id="merge-update-names-key",
        ),
        pytest.param(
            {"unique_key": "id", "merge_exclude_columns": ["vv"]},
            missing("merge_exclude_columns", "vv", "v"),
            id="merge-exclude-missing",
        ),
        pytest.param(
            {"on_schema_change": "drop"},
            "on_schema_change 'drop' is not one of: ignore, fail, append_new_columns,"
            " sync_all_columns. Fix: set on_schema_change to one of them.",
            id="on-schema-change",
        ),
        pytest.param(
            {"on_schema_change": "append_new_column"},
            "on_schema_change 'append_new_column' is not one of: ignore, fail,"
            " append_new_columns, sync_all_columns (did you mean 'append_new_columns'?)."
            " Fix: set on_schema_change to one of them.",
            id="on-schema-change-did-you-mean",
        ),
        pytest.param(
            {"partition_by": {"field": "event_ts", "granularity": "fortnight"}},
            "partition_by.granularity 'fortnight' is not one of: hour, day, week, month, year."
            " Fix: set granularity to one of them, or remove it for value partitions.",
            id="unknown-granularity",
        ),
        pytest.param(
            {"event_time": "event_ts", "batch_size": "days"},
            "batch_size 'days' is not one of: hour, day, week, month, year (did you mean"
            " 'day'?). Fix: set batch_size to one of them.",
            id="batch-size-did-you-mean",
        ),
        pytest.param(
            {"event_time": "event_ts", "batch_size": 7},
            "batch_size 7 is not one of: hour, day, week, month, year."
            " Fix: set batch_size to one of them.",
            id="batch-size-not-a-string",
        ),
        pytest.param(
            {"partition_by": {"field": "evnt_ts", "granularity": "day"}},
            missing("partition_by.field", "evnt_ts", "event_ts"),
            id="partition-field-missing",
        ),
        pytest.param(
            {"partition_by": {"field": "region", "granularity": "day"}},
            f"partition_by.field 'region' is of type VARCHAR, {WRONG_TIME_TYPE}. Fix: cast"
            " region to a timestamp in the model, or choose a time column.",
            id="partition-field-wrong-type",
        ),
        pytest.param(
            {"partition_by": {"field": "region", "grain": "day"}},
            "partition_by {'field': 'region', 'grain': 'day'} has unknown key(s) ['grain']."
            " Fix: use only 'field' and 'granularity', as in {'field': 'event_ts',"
            " 'granularity': 'day'} or {'field': 'region'}.",
            id="partition-unknown-key",
        ),
        pytest.param(
            {"partition_by": ["region"]},
            "partition_by ['region'] must be a dict with a 'field'. Fix: write {'field':"
            " 'event_ts', 'granularity': 'day'} or {'field': 'region'}.",
            id="partition-not-a-dict",
        ),
        pytest.param(
            {"partition_by": {"field": "event_date", "granularity": "hour"}},
            "partition_by.granularity 'hour' cannot partition the DATE column event_date (a"
            " date has no hours). Fix: use granularity 'day' (or coarser), or partition a"
            " TIMESTAMP column.",
            id="hour-partitions-of-a-date",
        ),
        pytest.param(
            {"event_time": "event_date", "batch_size": "hour"},
            "batch_size 'hour' cannot cut the DATE column event_date into hours (a date has"
            " no hours). Fix: use batch_size 'day' (or coarser), or a TIMESTAMP event_time.",
            id="hour-batches-of-a-date",
        ),
        pytest.param(
            {"event_time": "event_ts", "incremental_strategy": "append", "lookback": 2},
            "lookback 2 cannot be used with append: re-read rows would be appended a second"
            " time. Fix: remove lookback (append loads each window once, up to now), or use"
            " insert_overwrite or merge to re-read late data.",
            id="append-with-lookback",
        ),
        pytest.param(
            {"event_time": "evnt_ts"},
            missing("event_time", "evnt_ts", "event_ts"),
            id="event-time-missing",
        ),
        pytest.param(
            {"event_time": "id"},
            f"event_time 'id' is of type INTEGER, {WRONG_TIME_TYPE}. Fix: cast id to a"
            " timestamp in the model, or choose a time column.",
            id="event-time-wrong-type",
        ),
        pytest.param(
            {"partition_by": DAY, "lookback": -1}, f"lookback -1 {LOOKBACK}", id="lookback-neg"
        ),
        pytest.param(
            {"partition_by": DAY, "lookback": "2"}, f"lookback '2' {LOOKBACK}", id="lookback-str"
        ),
        pytest.param(
            {"partition_by": DAY, "lookback": 1.5}, f"lookback 1.5 {LOOKBACK}", id="lookback-float"
        ),
        pytest.param(
            {"partition_by": DAY, "lookback": True}, f"lookback True {LOOKBACK}", id="lookback-bool"
        ),
        pytest.param(
            {"partition_by": DAY, "begin": "yesterday"},
            "begin 'yesterday' is not an ISO date or timestamp. Fix: write begin='2025-01-01'"
            " or begin='2025-01-01T00:00:00'.",
            id="begin-unparsable",
        ),
        pytest.param(
            {"partition_by": DAY, "begin": "2025-13-01"},
            "begin '2025-13-01' is not an ISO date or timestamp. Fix: write begin='2025-01-01'"
            " or begin='2025-01-01T00:00:00'.",
            id="begin-bad-month",
        ),
        pytest.param(
            {"partition_by": DAY, "begin": "2025-03-01T12:00:01"},
            "begin '2025-03-01T12:00:01' lies in the future (now is 2025-03-01 12:00:00 UTC)."
            " Fix: set begin to the earliest time the model has data for.",
            id="begin-future",
        ),
        pytest.param(
            {"partition_by": DAY, "begin": "2025-03-01T14:00:00+01:00"},
            "begin '2025-03-01T14:00:00+01:00' lies in the future (now is 2025-03-01 12:00:00"
            " UTC). Fix: set begin to the earliest time the model has data for.",
            id="begin-future-with-offset",
        ),
        pytest.param(
            {"partition_by": {"field": "region"}, "batch_size": "day"},
            time_key_on_values("batch_size", "day"),
            id="value-partitions-batch-size",
        ),
        pytest.param(
            {"partition_by": "region", "begin": "2025-01-01"},
            time_key_on_values("begin", "2025-01-01"),
            id="value-partitions-begin",
        ),
        pytest.param(
            {"partition_by": {"field": "region"}, "lookback": 0},
            time_key_on_values("lookback", 0),
            id="value-partitions-lookback",
        ),
        pytest.param(
            {"batch_size": "day"},
            time_key_without_column("batch_size", "day"),
            id="batch-size-without-time-column",
        ),
        pytest.param(
            {"begin": "2025-01-01"},
            time_key_without_column("begin", "2025-01-01"),
            id="begin-without-time-column",
        ),
        pytest.param(
            {"lookback": 3},
            time_key_without_column("lookback", 3),
            id="lookback-without-time-column",
        ),
        pytest.param(
            {"incremental_strategy": "insert_overwrite"},
            "partition_by is required by incremental_strategy 'insert_overwrite'. Fix: set"
            " partition_by, e.g. {'field': 'event_ts', 'granularity': 'day'}.",
            id="insert-overwrite-without-partition",
        ),
        pytest.param(
            {"quality_checks": "not_null"},
            "quality_checks 'not_null' must be a list of checks. Fix: write"
            " quality_checks=[{'not_null': ['id']}, ...].",
            id="quality-checks-not-a-list",
        ),
    ],
)
def test_single_error(raw: dict[str, Any], expected: str) -> None:
    assert problems(raw) == [expected]


SNAPSHOT_HELP = (
    "Fix: set snapshot={'strategy': 'timestamp', 'updated_at': 'updated_at'} or"
    " {'strategy': 'check', 'check_cols': 'all'}."
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"incremental_strategy": "snapshot", "unique_key": "id"},
            f"snapshot is required by incremental_strategy 'snapshot'. {SNAPSHOT_HELP}",
            id="snapshot-missing",
        ),
        pytest.param(
            {"incremental_strategy": "snapshot", "unique_key": "id", "snapshot": "check"},
            "snapshot 'check' must be a dict. Fix: write {'strategy': 'check', ...}.",
            id="snapshot-not-a-dict",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": {"strategy": "timestmp"}},
            "snapshot.strategy 'timestmp' is not one of: timestamp, check. Fix: set"
            " snapshot.strategy to 'timestamp' (with updated_at) or 'check' (with check_cols).",
            id="snapshot-strategy",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": {"strategy": "timestamp"}},
            "snapshot.updated_at is required by the timestamp strategy. Fix: set updated_at"
            " to the column that records when a row last changed.",
            id="updated-at-required",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": {"strategy": "timestamp", "updated_at": "updated"}},
            missing("snapshot.updated_at", "updated", "updated_at"),
            id="updated-at-missing-column",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": {"strategy": "check", "check_cols": []}},
            "snapshot.check_cols [] must be 'all' or a non-empty list of columns. Fix: set"
            " check_cols='all' or check_cols=['status', ...].",
            id="check-cols-empty",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": {"strategy": "check", "check_cols": ["vv"]}},
            missing("snapshot.check_cols", "vv", "v"),
            id="check-cols-missing-column",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": CHECK_ALL, "hard_deletes": "delete"},
            "hard_deletes 'delete' is not one of: ignore, invalidate, new_record."
            " Fix: set hard_deletes to one of them.",
            id="hard-deletes-unknown",
        ),
        pytest.param(
            {
                "unique_key": "id",
                "snapshot": CHECK_ALL,
                "snapshot_meta_column_names": {"valid_from": "vf"},
            },
            "snapshot_meta_column_names {'valid_from': 'vf'} may only rename dbt_valid_from,"
            " dbt_valid_to, dbt_scd_id, dbt_updated_at, dbt_is_deleted. Fix: write"
            " {'dbt_valid_from': 'valid_from', ...}.",
            id="meta-column-names",
        ),
        pytest.param(
            {"incremental_strategy": "merge", "unique_key": "id", "snapshot": CHECK_ALL},
            "snapshot {'strategy': 'check', 'check_cols': 'all'} is set, but"
            " incremental_strategy is 'merge'. Fix: set incremental_strategy='snapshot' (or"
            " 'auto'), or remove snapshot.",
            id="snapshot-with-merge",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": CHECK_ALL, "on_schema_change": "fail"},
            "on_schema_change 'fail' cannot be used with the snapshot strategy, whose history"
            " table holds snapshot meta columns the model's SQL does not return. Fix: set"
            " on_schema_change='append_new_columns' (new model columns are added) or 'ignore'.",
            id="snapshot-on-schema-change-fail",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": CHECK_ALL, "on_schema_change": "sync_all_columns"},
            "on_schema_change 'sync_all_columns' cannot be used with the snapshot strategy,"
            " whose history table holds snapshot meta columns the model's SQL does not return."
            " Fix: set on_schema_change='append_new_columns' (new model columns are added) or"
            " 'ignore'.",
            id="snapshot-on-schema-change-sync",
        ),
        pytest.param(
            {
                "unique_key": "id",
                "snapshot": CHECK_ALL,
                "hard_deletes": "invalidate",
                "event_time": "event_ts",
            },
            "hard_deletes 'invalidate' cannot be used with event_time 'event_ts': a batch holds"
            " one time window, so every key outside it would look deleted. Fix: remove"
            " event_time (and partition_by's time field) so each run reads the whole source, or"
            " set hard_deletes='ignore'.",
            id="hard-deletes-with-event-time",
        ),
        pytest.param(
            {
                "unique_key": "id",
                "snapshot": CHECK_ALL,
                "hard_deletes": "new_record",
                "partition_by": {"field": "event_date", "granularity": "month"},
            },
            "hard_deletes 'new_record' cannot be used with event_time 'event_date': a batch"
            " holds one time window, so every key outside it would look deleted. Fix: remove"
            " event_time (and partition_by's time field) so each run reads the whole source, or"
            " set hard_deletes='ignore'.",
            id="hard-deletes-with-time-partition",
        ),
    ],
)
def test_snapshot_error(raw: dict[str, Any], expected: str) -> None:
    assert problems(raw) == [expected]


def test_snapshot_strategy_without_key_or_snapshot_reports_both() -> None:
    assert problems({"incremental_strategy": "snapshot"}) == [
        f"snapshot is required by incremental_strategy 'snapshot'. {SNAPSHOT_HELP}",
        "unique_key is required by incremental_strategy 'snapshot'. Fix: set unique_key to"
        " the column (or list of columns) that identifies a row.",
    ]


def test_every_problem_in_one_message() -> None:
    found = problems(
        {
            "incremental_strategy": "merge",
            "dedupe_by": "updatd_at",
            "on_schema_change": "drop",
            "partition_by": {"field": "region", "granularity": "day"},
            "lookback": -2,
            "begin": "soon",
        }
    )
    assert found == [
        missing("dedupe_by", "updatd_at", "updated_at"),
        "dedupe_by ('updatd_at',) has no effect without unique_key. Fix: set unique_key to"
        " the columns that identify a row, or remove dedupe_by.",
        "on_schema_change 'drop' is not one of: ignore, fail, append_new_columns,"
        " sync_all_columns. Fix: set on_schema_change to one of them.",
        f"partition_by.field 'region' is of type VARCHAR, {WRONG_TIME_TYPE}. Fix: cast region"
        " to a timestamp in the model, or choose a time column.",
        f"lookback -2 {LOOKBACK}",
        "begin 'soon' is not an ISO date or timestamp. Fix: write begin='2025-01-01' or"
        " begin='2025-01-01T00:00:00'.",
        "unique_key is required by incremental_strategy 'merge'. Fix: set unique_key to the"
        " column (or list of columns) that identifies a row.",
    ]


def test_time_keys_without_time_column_each_named() -> None:
    assert problems({"batch_size": "week", "begin": "2025-01-01", "lookback": 0}) == [
        time_key_without_column("batch_size", "week"),
        time_key_without_column("begin", "2025-01-01"),
        time_key_without_column("lookback", 0),
    ]


def test_single_error_header_is_singular() -> None:
    with pytest.raises(DbtConfigError) as info:
        parse({"on_schema_change": "drop"})
    assert str(info.value.msg).split("\n")[0] == HEADER_1


def test_unknown_granularity_is_one_error_even_with_time_keys() -> None:
    found = problems(
        {
            "partition_by": {"field": "event_ts", "granularity": "days"},
            "batch_size": "day",
            "begin": "2025-01-01",
        }
    )
    assert found == [
        "partition_by.granularity 'days' is not one of: hour, day, week, month, year."
        " Fix: set granularity to one of them, or remove it for value partitions."
    ]


def test_columns_unknown_skips_column_checks() -> None:
    config = parse({"unique_key": "anything", "event_time": "whenever"}, columns=None)
    assert (config.unique_key, config.event_time) == (("anything",), "whenever")


def test_begin_in_future_not_checked_without_now() -> None:
    config = SqlflowConfig.parse(MODEL, {"partition_by": DAY, "begin": "2999-01-01"}, COLUMNS)
    assert config.begin == datetime(2999, 1, 1)


# -- successful parses ----------------------------------------------------------------------


def test_defaults() -> None:
    assert parse({}) == SqlflowConfig(
        model=MODEL,
        strategy="auto",
        unique_key=(),
        dedupe_by=(),
        merge_update_columns=None,
        merge_exclude_columns=None,
        on_schema_change="ignore",
        partition_by=None,
        event_time=None,
        batch_size=None,
        begin=None,
        lookback=1,
        snapshot=None,
        quality_checks=(),
        incremental_predicates=(),
    )
    assert parse({}).windowed is False


def test_dbt_defaults_are_accepted() -> None:
    # dbt's NodeConfig always hands lookback=1 and None for the other microbatch keys.
    config = parse({"lookback": 1, "batch_size": None, "begin": None, "event_time": None})
    assert (config.event_time, config.batch_size, config.lookback) == (None, None, 1)


@pytest.mark.parametrize(
    ("partition_by", "event_time", "batch_size", "expected"),
    [
        ({"field": "event_ts", "granularity": "month"}, None, None, ("event_ts", "month")),
        ({"field": "event_ts", "granularity": "HOUR"}, None, None, ("event_ts", "hour")),
        ({"field": "event_date", "granularity": "week"}, None, "month", ("event_date", "month")),
        ({"field": "event_tz", "granularity": "year"}, None, None, ("event_tz", "year")),
        ({"field": "event_ts", "granularity": "day"}, "updated_at", None, ("updated_at", "day")),
        ({"field": "region"}, "event_ts", None, ("event_ts", "day")),
        (None, "event_date", None, ("event_date", "day")),
        (None, "event_ts", "Hour", ("event_ts", "hour")),
    ],
)
def test_event_time_and_batch_size_defaults(
    partition_by: Any, event_time: str | None, batch_size: str | None, expected: tuple
) -> None:
    raw = {"partition_by": partition_by, "event_time": event_time, "batch_size": batch_size}
    config = parse(raw)
    assert (config.event_time, config.batch_size) == expected
    assert config.time_unit == expected[1]
    assert config.windowed is True


def test_partition_by_records_type_and_granularity() -> None:
    assert parse({"partition_by": "region"}).partition_by == PartitionBy("region", None, "VARCHAR")
    time_part = parse({"partition_by": {"field": "EVENT_TZ", "granularity": "Day"}}).partition_by
    assert time_part == PartitionBy("EVENT_TZ", "day", "TIMESTAMP WITH TIME ZONE")
    assert time_part.is_time
    assert not PartitionBy("region").is_time


def test_value_partitions_with_event_time_take_window_keys() -> None:
    config = parse(
        {
            "partition_by": {"field": "region"},
            "event_time": "event_ts",
            "batch_size": "week",
            "begin": "2025-01-01T06:00:00+02:00",
            "lookback": 0,
        }
    )
    assert (config.batch_size, config.begin, config.lookback) == (
        "week",
        datetime(2025, 1, 1, 4, 0),
        0,
    )


def test_full_config_is_normalised() -> None:
    config = parse(
        {
            "incremental_strategy": "MERGE",
            "unique_key": ["id", "region"],
            "dedupe_by": "coalesce(updated_at, event_ts) desc",
            "merge_exclude_columns": ["event_ts"],
            "on_schema_change": "Append_New_Columns",
            "incremental_predicates": "DBT_INTERNAL_DEST.event_ts > now() - interval 7 day",
            "quality_checks": [{"not_null": ["id"]}],
            "begin": "2025-03-01T12:00:00",
            "event_time": "event_ts",
        }
    )
    assert config.strategy == "merge"
    assert config.unique_key == ("id", "region")
    # An expression is not a bare column, so it is not checked against the columns.
    assert config.dedupe_by == ("coalesce(updated_at, event_ts) desc",)
    assert (config.merge_update_columns, config.merge_exclude_columns) == (None, ("event_ts",))
    assert config.on_schema_change == "append_new_columns"
    assert config.incremental_predicates == ("DBT_INTERNAL_DEST.event_ts > now() - interval 7 day",)
    assert config.quality_checks == ({"not_null": ["id"]},)
    # begin equal to now is allowed.
    assert config.begin == NOW


def test_snapshot_spec() -> None:
    config = parse(
        {
            "unique_key": "id",
            "snapshot": {"strategy": "timestamp", "updated_at": "updated_at"},
            "hard_deletes": "New_Record",
            "dbt_valid_to_current": "'9999-12-31'::timestamp",
            "snapshot_meta_column_names": {"dbt_valid_from": "valid_from"},
        }
    )
    assert config.strategy == "auto"
    assert config.snapshot == SnapshotSpec(
        strategy="timestamp",
        updated_at="updated_at",
        check_cols=(),
        hard_deletes="new_record",
        valid_to_current="'9999-12-31'::timestamp",
        column_names={"dbt_valid_from": "valid_from"},
    )
    assert config.snapshot.column("dbt_valid_from") == "valid_from"
    assert config.snapshot.column("dbt_valid_to") == "dbt_valid_to"
    check = parse(
        {
            "incremental_strategy": "snapshot",
            "unique_key": "id",
            "snapshot": {"strategy": "check", "check_cols": ["v", "region"]},
        }
    ).snapshot
    assert check == SnapshotSpec(strategy="check", check_cols=("v", "region"))


@pytest.mark.parametrize("key", ["Order Id", "OrderId", 'we"ird'])
def test_unique_key_may_be_any_column_name(key: str) -> None:
    # The key join is quoted everywhere (merge.sql, delete_insert.sql, the Python checks).
    columns = {**COLUMNS, key: "INTEGER"}
    config = parse({"unique_key": key, "incremental_strategy": "merge"}, columns)
    assert config.unique_key == (key,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("event_ts", {"field": "event_ts"}),
        ({"field": "d", "granularity": "day"}, {"field": "d", "granularity": "day"}),
        ({"granularity": "day"}, None),
        ({"field": 3}, None),
        (["d"], None),
        (None, None),
    ],
)
def test_partition_by_mapping(value: object, expected: dict | None) -> None:
    # The one normalisation of partition_by (config, the CLI and sqlflow_check_partitions).
    assert partition_by_mapping(value) == expected


# -- unknown keys ----------------------------------------------------------------------------


def unknown(key: str, value: Any, meant: str) -> str:
    return (
        f"unknown config `{key}` — did you mean `{meant}`? {key}={value!r} would be ignored"
        f" (sqlflow reads {meant}). Fix: rename {key} to {meant}."
    )


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("look_back", "lookback"),
        ("dedup_by", "dedupe_by"),
        ("quality_check", "quality_checks"),
        ("LookBack", "lookback"),
        ("batch-size", "batch_size"),
        ("evnet_time", "event_time"),
        ("uniqe_key", "unique_key"),
        ("begn", "begin"),
        ("incremental_stratgey", "incremental_strategy"),
        ("merge_exclude_column", "merge_exclude_columns"),
        ("snapshot_meta_columns_name", "snapshot_meta_column_names"),
    ],
)
def test_misspelled_key_is_an_error(key: str, meant: str) -> None:
    assert problems({key: 5}) == [unknown(key, 5, meant)]


def test_misspelled_keys_join_the_other_problems() -> None:
    raw = {
        "look_back": 5,
        "event_time": "event_ts",
        "lookback": -1,
        "dedup_by": "updated_at",
        "quality_check": [],
    }
    assert problems(raw) == [
        unknown("look_back", 5, "lookback"),
        unknown("dedup_by", "updated_at", "dedupe_by"),
        unknown("quality_check", [], "quality_checks"),
        "lookback -1 must be an integer >= 0 (batch_size units re-read before the last loaded"
        " end). Fix: set lookback=1, or 0 to re-read nothing.",
    ]


def test_long_values_of_misspelled_keys_are_clipped() -> None:
    (line,) = problems({"quality_check": [{"not_null": [f"c{i}" for i in range(40)]}]})
    assert (
        "quality_check=[{'not_null': ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', ... would" in line
    )


@pytest.mark.parametrize(
    "key",
    # (partitions: dbt-bigquery's key, two edits from partition_by.)
    ["owner_team", "event_type", "lookup", "beginning", "snap", "materialized", "partitions"],
)
def test_other_unknown_keys_are_kept_and_listed(key: str) -> None:
    assert parse({key: "x", "lookback": 1}).unknown_keys == (key,)


def test_keys_dbt_knows_are_never_misspellings() -> None:
    config = SqlflowConfig.parse(MODEL, {"look_back": 5}, COLUMNS, dbt_keys={"look_back"})
    assert config.lookback == 1
    assert config.unknown_keys == ()


def test_none_of_dbts_own_keys_is_unknown() -> None:
    from dbt.adapters.sqlflow.dbt_config import dbt_config_keys
    from dbt.adapters.sqlflow.impl import SqlflowAdapter

    dbt_keys = dbt_config_keys(SqlflowAdapter.AdapterSpecificConfigs)
    assert {"materialized", "pre-hook", "post_hook", "lookback", "indexes", "docs"} <= dbt_keys
    assert "_extra" not in dbt_keys
    # Not even without dbt's list: none of dbt's keys is close to a sqlflow key.
    raw = {key: None for key in dbt_keys}
    assert set(parse(raw).unknown_keys) == dbt_keys - set(SQLFLOW_KEYS)
    assert SqlflowConfig.parse(MODEL, raw, COLUMNS, dbt_keys=dbt_keys).unknown_keys == ()


def test_parse_reads_only_listed_keys() -> None:
    parser = _Parser(MODEL, {"look_back": 5}, COLUMNS)
    assert parser.get("lookback") is None
    with pytest.raises(KeyError, match="not in SQLFLOW_KEYS"):
        parser.get("look_back")


def test_every_sqlflow_key_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert [key for key in SQLFLOW_KEYS if f"| `{key}` |" not in readme] == []


def test_sorted_by_is_the_write_order() -> None:
    assert SqlflowConfig.parse(MODEL, {"sorted_by": "v desc"}).sorted_by == ("v desc",)
    assert SqlflowConfig.parse(MODEL, {"sorted_by": ["a", " b desc "]}).sorted_by == (
        "a",
        "b desc",
    )
    config, problems = SqlflowConfig.check(MODEL, {"sorted_by": [3]})
    assert config.sorted_by == ()
    assert problems == [
        "sorted_by [3] must be a string or a list of strings. Fix: write sorted_by=['col']."
    ]
