"""Quality checks: parsing and every error text, running against real DuckDB tables, messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtConfigError, DbtRuntimeError

from dbt.adapters.sqlflow.quality import (
    FAILURE_PREFIX,
    CheckOutcome,
    QualityCheck,
    failed_errors,
    failed_warnings,
    failures_in_message,
    format_failure,
    format_warning,
    parse_interval,
    parse_quality_checks,
    quality_check_problems,
    run_quality_checks,
)

MODEL = "model.proj.orders"
COLUMNS = ["order_id", "customer_id", "amount", "status", "event_ts"]
ALLOWED = (
    "Allowed checks: not_null, unique, accepted_values, row_count, expression, freshness, "
    "partition_consistency."
)
LAG_HELP = (
    "A lag is a DuckDB interval of weeks, days, hours, minutes, seconds, milliseconds or "
    "microseconds, e.g. '2 days', '6 hours', '1 day 12 hours', '90 minutes'."
)
NOW = dt.datetime(2024, 1, 4, 0, 0)


def parse(raw: object, **kwargs: Any) -> list[QualityCheck]:
    options: dict[str, Any] = {"columns": COLUMNS, "event_time": "event_ts"}
    options.update(kwargs)
    return parse_quality_checks(raw, model=MODEL, **options)


def config_error(raw: object, **kwargs: Any) -> str:
    with pytest.raises(DbtConfigError) as info:
        parse(raw, **kwargs)
    return str(info.value.msg)


def one_error(*problems: str) -> str:
    """The config error of ``MODEL`` listing ``problems``: the same block as the config's."""
    noun = "error" if len(problems) == 1 else "errors"
    return (
        f"sqlflow_incremental model '{MODEL}' has {len(problems)} configuration {noun}"
        " (nothing was written):\n" + "\n".join(f"  - {p}" for p in problems)
    )


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "name", "scope"),
    [
        ({"not_null": ["customer_id", "amount"]}, "not_null(customer_id,amount)", "batch"),
        ({"unique": ["order_id"]}, "unique(order_id)", "target"),
        (
            {"accepted_values": {"column": "status", "values": ["placed", "shipped"]}},
            "accepted_values(status)",
            "batch",
        ),
        ({"row_count": {"min": 1, "max": 10}}, "row_count", "batch"),
        ({"row_count": {"max": 0}}, "row_count", "batch"),
        ({"expression": "amount >= 0"}, "expression(amount >= 0)", "batch"),
        ({"expression": "  amount\n  >= 0 "}, "expression(amount >= 0)", "batch"),
        ({"freshness": {"max_lag": "2 days"}}, "freshness(event_ts)", "target"),
        ({"partition_consistency": True}, "partition_consistency", "target"),
    ],
)
def test_parse_names_and_scopes(entry: dict, name: str, scope: str) -> None:
    (check,) = parse([entry], has_partitions=True)
    assert (check.name, check.scope, check.severity) == (name, scope, "error")


def test_parse_settings() -> None:
    checks = parse(
        [
            {"not_null": ["Customer_ID"], "severity": "warn"},
            {"accepted_values": {"column": "status", "values": ["a", 1, 2.5, True]}},
            {"row_count": {"min": 2}},
            {"freshness": {"max_lag": "1 day 12 hours"}, "severity": "ERROR"},
        ]
    )
    assert [c.severity for c in checks] == ["warn", "error", "error", "error"]
    assert checks[0].columns == ("customer_id",)  # spelled as the model produces it
    assert checks[1].values == ("a", 1, 2.5, True)
    assert (checks[2].min_rows, checks[2].max_rows) == (2, None)
    assert checks[3].max_lag == dt.timedelta(days=1, hours=12)
    assert checks[3].max_lag_text == "1 day 12 hours"
    assert [c.index for c in checks] == [0, 1, 2, 3]


def test_parse_without_config_or_columns() -> None:
    assert parse_quality_checks(None, model=MODEL) == []
    assert parse_quality_checks([], model=MODEL) == []
    (check,) = parse_quality_checks([{"not_null": ["anything"]}], model=MODEL)
    assert check.name == "not_null(anything)"


def test_long_expression_names_are_short_stable_and_distinct() -> None:
    first = "amount >= 0 and quantity >= 0 and discount between 0 and 1 and price > 0"
    second = "amount >= 0 and quantity >= 0 and discount between 0 and 1 and price > 1"
    a, b = parse([{"expression": first}, {"expression": second}])
    assert a.name == "expression(amount >= 0 and quantity >= 0 and discount betwe... #3ba4c9)"
    assert len(a.name) <= 72
    assert a.name != b.name
    assert a.name == parse([{"expression": first}])[0].name
    assert a.expression == first


@pytest.mark.parametrize(
    ("raw", "kwargs", "message"),
    [
        pytest.param(
            [{"not_null": ["id"]}, {"unique": ["id"]}, {"not_nul": ["id"]}],
            {"columns": None},
            f"quality_checks[2] {{'not_nul': ['id']}}: unknown check 'not_nul'. {ALLOWED} "
            "Did you mean 'not_null'?",
            id="unknown-check-suggested",
        ),
        pytest.param(
            [{"bogus": 1}],
            {},
            f"quality_checks[0] {{'bogus': 1}}: unknown check 'bogus'. {ALLOWED}",
            id="unknown-check-no-suggestion",
        ),
        pytest.param(
            [{"not_null": ["order_id"], "sevrity": "warn"}],
            {},
            "quality_checks[0] {'not_null': ['order_id'], 'sevrity': 'warn'}: unknown key "
            "'sevrity' next to check 'not_null'. An entry holds one check and an optional "
            "'severity'. Did you mean 'severity'?",
            id="unknown-key-next-to-check",
        ),
        pytest.param(
            [{"not_null": ["order_id"], "unique": ["order_id"]}],
            {},
            "quality_checks[0] {'not_null': ['order_id'], 'unique': ['order_id']}: holds 2 "
            "checks (not_null, unique); an entry holds exactly one. Put each check in its own "
            "entry: {'not_null': ...}, {'unique': ...}.",
            id="two-checks-in-one-entry",
        ),
        pytest.param(
            [{"severity": "warn"}],
            {},
            "quality_checks[0] {'severity': 'warn'}: holds no check. Add one of: not_null, "
            "unique, accepted_values, row_count, expression, freshness, partition_consistency, "
            "e.g. {'not_null': ['id'], 'severity': 'warn'}.",
            id="no-check",
        ),
        pytest.param(
            ["not_null"],
            {},
            "quality_checks[0] 'not_null': each entry must be a mapping of one check to its "
            "settings plus an optional 'severity', got 'not_null' (a string). "
            f"{ALLOWED} Write e.g. {{'not_null': ['id']}}.",
            id="entry-not-a-mapping",
        ),
        pytest.param(
            ["partition_consistency"],
            {"has_partitions": True},
            "quality_checks[0] 'partition_consistency': each entry must be a mapping of one "
            "check to its settings plus an optional 'severity', got 'partition_consistency' "
            f"(a string). {ALLOWED} Write e.g. {{'partition_consistency': True}}.",
            id="bare-partition-consistency",
        ),
        pytest.param(
            [{"not_null": ["order_id"], "severity": "warning"}],
            {},
            "quality_checks[0] {'not_null': ['order_id'], 'severity': 'warning'}: severity "
            "'warning' (a string) is not allowed. Allowed severities: error, warn (default "
            "error). Did you mean 'warn'?",
            id="bad-severity-suggested",
        ),
        pytest.param(
            [{"not_null": ["order_id"], "severity": 2}],
            {},
            "quality_checks[0] {'not_null': ['order_id'], 'severity': 2}: severity 2 (an "
            "integer) is not allowed. Allowed severities: error, warn (default error).",
            id="severity-wrong-type",
        ),
        pytest.param(
            [{"not_null": "order_id"}],
            {},
            "quality_checks[0] {'not_null': 'order_id'}: not_null must be a list of column "
            "names, got 'order_id' (a string). Write {'not_null': ['order_id']}.",
            id="not-null-string",
        ),
        pytest.param(
            [{"unique": []}],
            {},
            "quality_checks[0] {'unique': []}: unique must be a non-empty list of column "
            "names, got [] (a list). Write e.g. {'unique': ['id']}.",
            id="unique-empty",
        ),
        pytest.param(
            [{"not_null": ["order_id", 3]}],
            {},
            "quality_checks[0] {'not_null': ['order_id', 3]}: not_null[1] is 3 (an integer); "
            "every item must be a column name (a non-empty string).",
            id="not-null-item-type",
        ),
        pytest.param(
            [{"unique": ["order_id", "ORDER_ID"]}],
            {},
            "quality_checks[0] {'unique': ['order_id', 'ORDER_ID']}: unique lists column "
            "'ORDER_ID' twice. List each column once.",
            id="unique-column-twice",
        ),
        pytest.param(
            [{"not_null": ["custmer_id"]}],
            {},
            "quality_checks[0] {'not_null': ['custmer_id']}: not_null names column "
            "'custmer_id', which the model does not produce. Model columns: order_id, "
            "customer_id, amount, status, event_ts. Did you mean 'customer_id'?",
            id="unknown-column-suggested",
        ),
        pytest.param(
            [{"unique": ["zzz"]}],
            {},
            "quality_checks[0] {'unique': ['zzz']}: unique names column 'zzz', which the model "
            "does not produce. Model columns: order_id, customer_id, amount, status, event_ts. "
            "Fix the name, or add the column to the model.",
            id="unknown-column",
        ),
        pytest.param(
            [{"accepted_values": ["placed"]}],
            {},
            "quality_checks[0] {'accepted_values': ['placed']}: accepted_values must be a "
            "mapping with keys 'column' and 'values', got ['placed'] (a list). Write e.g. "
            "{'accepted_values': {'column': 'status', 'values': ['placed', 'shipped']}}.",
            id="accepted-values-not-mapping",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status"}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status'}}: accepted_values is "
            "missing 'values'. Write e.g. {'accepted_values': {'column': 'status', 'values': "
            "['placed', 'shipped']}}.",
            id="accepted-values-missing-values",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status", "value": ["a"], "values": ["a"]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status', 'value': ['a'], "
            "'values': ['a']}}: accepted_values has unknown key 'value'. Allowed keys: column, "
            "values. Did you mean 'values'?",
            id="accepted-values-unknown-key",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status", "values": ["placed", None]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status', 'values': ['placed', "
            "None]}}: accepted_values.values[1] is null; a null never matches a value list "
            "(nulls pass accepted_values). Remove it, and to forbid nulls add "
            "{'not_null': ['status']}.",
            id="accepted-values-null",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status", "values": "placed"}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status', 'values': 'placed'}}: "
            "accepted_values.values must be a non-empty list of strings, numbers or booleans, "
            "got 'placed' (a string). Write e.g. 'values': ['placed', 'shipped'].",
            id="accepted-values-values-string",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status", "values": [["a"]]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status', 'values': [['a']]}}: "
            "accepted_values.values[0] is ['a'] (a list); each value must be a string, number, "
            "boolean or date.",
            id="accepted-values-item-type",
        ),
        pytest.param(
            [{"accepted_values": {"column": "status", "values": [float("nan")]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'status', 'values': [nan]}}: "
            "accepted_values.values[0] is nan; values must be finite numbers, strings or "
            "booleans.",
            id="accepted-values-nan",
        ),
        pytest.param(
            [{"accepted_values": {"column": "state", "values": ["a"]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 'state', 'values': ['a']}}: "
            "accepted_values.column names column 'state', which the model does not produce. "
            "Model columns: order_id, customer_id, amount, status, event_ts. Did you mean "
            "'status'?",
            id="accepted-values-unknown-column",
        ),
        pytest.param(
            [{"accepted_values": {"column": 1, "values": ["a"]}}],
            {},
            "quality_checks[0] {'accepted_values': {'column': 1, 'values': ['a']}}: "
            "accepted_values.column must be a column name (a non-empty string), got 1 (an "
            "integer). Write e.g. {'accepted_values': {'column': 'status', 'values': "
            "['placed', 'shipped']}}.",
            id="accepted-values-column-type",
        ),
        pytest.param(
            [{"row_count": 5}],
            {},
            "quality_checks[0] {'row_count': 5}: row_count must be a mapping with 'min' and/or "
            "'max', got 5 (an integer). Write e.g. {'row_count': {'min': 1, 'max': 1000000}}.",
            id="row-count-not-mapping",
        ),
        pytest.param(
            [{"row_count": {"min": 10, "max": 5}}],
            {},
            "quality_checks[0] {'row_count': {'min': 10, 'max': 5}}: row_count.min 10 is "
            "greater than row_count.max 5; no batch could pass. Make min <= max.",
            id="row-count-min-above-max",
        ),
        pytest.param(
            [{"row_count": {"min": -1}}],
            {},
            "quality_checks[0] {'row_count': {'min': -1}}: row_count.min must be a whole number "
            ">= 0, got -1 (an integer). Write e.g. {'row_count': {'min': 1, 'max': 1000000}}.",
            id="row-count-negative",
        ),
        pytest.param(
            [{"row_count": {"max": "10"}}],
            {},
            "quality_checks[0] {'row_count': {'max': '10'}}: row_count.max must be a whole "
            "number >= 0, got '10' (a string). Write e.g. {'row_count': {'min': 1, 'max': "
            "1000000}}.",
            id="row-count-string",
        ),
        pytest.param(
            [{"row_count": {"min": True}}],
            {},
            "quality_checks[0] {'row_count': {'min': True}}: row_count.min must be a whole "
            "number >= 0, got True (a boolean). Write e.g. {'row_count': {'min': 1, 'max': "
            "1000000}}.",
            id="row-count-boolean",
        ),
        pytest.param(
            [{"row_count": {"minimum": 1}}],
            {},
            "quality_checks[0] {'row_count': {'minimum': 1}}: row_count has unknown key "
            "'minimum'. Allowed keys: min, max. Did you mean 'min'?",
            id="row-count-unknown-key",
        ),
        pytest.param(
            [{"expression": ""}],
            {},
            "quality_checks[0] {'expression': ''}: expression must be a SQL boolean expression "
            "(a non-empty string), got '' (a string). Write e.g. {'expression': 'amount >= 0'}.",
            id="expression-empty",
        ),
        pytest.param(
            [{"expression": ["amount >= 0"]}],
            {},
            "quality_checks[0] {'expression': ['amount >= 0']}: expression must be a SQL "
            "boolean expression (a non-empty string), got ['amount >= 0'] (a list). Write e.g. "
            "{'expression': 'amount >= 0'}.",
            id="expression-list",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "2 days"}}],
            {"event_time": None},
            "quality_checks[0] {'freshness': {'max_lag': '2 days'}}: freshness checks the "
            "newest event_time of the target, but the model has no event_time. Set "
            "event_time='<timestamp column>' in the model's config, or remove this check.",
            id="freshness-without-event-time",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "2 days"}}],
            {"event_time": "loaded_at"},
            "quality_checks[0] {'freshness': {'max_lag': '2 days'}}: freshness (the model's "
            "event_time) names column 'loaded_at', which the model does not produce. Model "
            "columns: order_id, customer_id, amount, status, event_ts. Fix the name, or add "
            "the column to the model.",
            id="freshness-event-time-not-a-column",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "2 dayz"}}],
            {},
            "quality_checks[0] {'freshness': {'max_lag': '2 dayz'}}: freshness.max_lag "
            f"'2 dayz' is not a valid interval: unknown unit 'dayz'. {LAG_HELP}",
            id="freshness-bad-unit",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "soon"}}],
            {},
            "quality_checks[0] {'freshness': {'max_lag': 'soon'}}: freshness.max_lag 'soon' is "
            f"not a valid interval: cannot read 'soon'. {LAG_HELP}",
            id="freshness-unreadable",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "1 month"}}],
            {},
            "quality_checks[0] {'freshness': {'max_lag': '1 month'}}: freshness.max_lag "
            "'1 month' is not a valid interval: 'month' has no fixed length; use days or "
            f"weeks. {LAG_HELP}",
            id="freshness-months",
        ),
        pytest.param(
            [{"freshness": {"max_lag": "0 hours"}}],
            {},
            "quality_checks[0] {'freshness': {'max_lag': '0 hours'}}: freshness.max_lag "
            f"'0 hours' must be longer than zero. {LAG_HELP}",
            id="freshness-zero",
        ),
        pytest.param(
            [{"freshness": {"max_lag": 2}}],
            {},
            "quality_checks[0] {'freshness': {'max_lag': 2}}: freshness.max_lag must be a "
            f"string, got 2 (an integer). {LAG_HELP}",
            id="freshness-lag-type",
        ),
        pytest.param(
            [{"freshness": "2 days"}],
            {},
            "quality_checks[0] {'freshness': '2 days'}: freshness must be a mapping with "
            "'max_lag', got '2 days' (a string). Write e.g. {'freshness': {'max_lag': "
            "'2 days'}}.",
            id="freshness-not-mapping",
        ),
        pytest.param(
            [{"freshness": {}}],
            {},
            "quality_checks[0] {'freshness': {}}: freshness is missing 'max_lag'. Write e.g. "
            "{'freshness': {'max_lag': '2 days'}}.",
            id="freshness-missing-lag",
        ),
        pytest.param(
            [{"partition_consistency": True}],
            {"has_partitions": False},
            "quality_checks[0] {'partition_consistency': True}: partition_consistency checks "
            "the partitions a load touched, but the model is not partitioned. Configure "
            "partition_by on the model, or remove this check.",
            id="partition-consistency-unpartitioned",
        ),
        pytest.param(
            [{"partition_consistency": "yes"}],
            {"has_partitions": True},
            "quality_checks[0] {'partition_consistency': 'yes'}: partition_consistency must be "
            "true, got 'yes' (a string). Write {'partition_consistency': True} (true in YAML), "
            "or remove the entry to skip the check.",
            id="partition-consistency-not-true",
        ),
        pytest.param(
            [{"unique": ["order_id"]}, {"unique": ["ORDER_ID"]}],
            {},
            "quality_checks[1] {'unique': ['ORDER_ID']}: repeats quality_checks[0] "
            "(unique(order_id)). Remove one of the two entries.",
            id="duplicate-check",
        ),
    ],
)
def test_config_error_texts(raw: object, kwargs: dict, message: str) -> None:
    assert config_error(raw, **kwargs) == one_error(message)


def test_config_must_be_a_list() -> None:
    assert config_error({"not_null": ["order_id"]}) == one_error(
        "quality_checks must be a list of checks, got {'not_null': "
        "['order_id']} (a mapping). Write a list of entries, e.g. quality_checks="
        "[{'not_null': ['id']}, {'row_count': {'min': 1}}]."
    )


def test_every_problem_is_gathered_into_one_error() -> None:
    raw = [
        {"not_nul": ["order_id"]},
        {"not_null": ["order_id"]},
        {"row_count": {"min": 3, "max": 1}, "severity": "fatal"},
        {"freshness": {"max_lag": "2 days"}},
        {"accepted_values": {"column": "sttus", "values": [None]}},
    ]
    assert config_error(raw, event_time=None) == one_error(
        f"quality_checks[0] {{'not_nul': ['order_id']}}: unknown check 'not_nul'. {ALLOWED} "
        "Did you mean 'not_null'?",
        "quality_checks[2] {'row_count': {'min': 3, 'max': 1}, 'severity': 'fatal'}: "
        "severity 'fatal' (a string) is not allowed. Allowed severities: error, warn (default "
        "error).",
        "quality_checks[2] {'row_count': {'min': 3, 'max': 1}, 'severity': 'fatal'}: "
        "row_count.min 3 is greater than row_count.max 1; no batch could pass. Make min <= "
        "max.",
        "quality_checks[3] {'freshness': {'max_lag': '2 days'}}: freshness checks the "
        "newest event_time of the target, but the model has no event_time. Set "
        "event_time='<timestamp column>' in the model's config, or remove this check.",
        "quality_checks[4] {'accepted_values': {'column': 'sttus', 'values': [None]}}: "
        "accepted_values.column names column 'sttus', which the model does not produce. Model "
        "columns: order_id, customer_id, amount, status, event_ts. Did you mean 'status'?",
        "quality_checks[4] {'accepted_values': {'column': 'sttus', 'values': [None]}}: "
        "accepted_values.values[0] is null; a null never matches a value list (nulls pass "
        "accepted_values). Remove it, and to forbid nulls add {'not_null': ['sttus']}.",
    )


def test_problems_are_returned_as_lines() -> None:
    raw = [{"not_null": ["order_id"]}, {"not_nul": ["order_id"]}, {"unique": ["order_id"]}]
    checks, problems = quality_check_problems(raw, columns=COLUMNS)
    assert [check.name for check in checks] == ["not_null(order_id)", "unique(order_id)"]
    assert problems == [
        f"quality_checks[1] {{'not_nul': ['order_id']}}: unknown check 'not_nul'. {ALLOWED} "
        "Did you mean 'not_null'?"
    ]
    assert quality_check_problems(None) == ([], [])
    assert quality_check_problems("id")[1] == [
        "quality_checks must be a list of checks, got 'id' (a string). Write a list of"
        " entries, e.g. quality_checks=[{'not_null': ['id']}, {'row_count': {'min': 1}}]."
    ]


def test_long_entries_are_clipped_in_messages() -> None:
    message = config_error([{"bogus": "x" * 200}])
    header, line = message.split("\n")
    assert header == one_error("").split("\n")[0]
    assert line.startswith("  - quality_checks[0] {'bogus': 'xxx")
    assert "xxx...: unknown check 'bogus'." in line
    assert len(line) < 300


# --------------------------------------------------------------------------------------------
# Intervals and SQL text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2 days",
        "6 hours",
        "30 minutes",
        "1 day 12 hours",
        "1 DAY",
        "2days",
        "1.5 hours",
        "90 s",
        "3 hrs",
        "2 mins",
        "1 week 2 d",
        "10 ms",
        "5 us",
        "01:30:00",
        "1 day 02:00",
        "1 day 1 day",
    ],
)
def test_parse_interval_agrees_with_duckdb(text: str) -> None:
    expected = duckdb.connect().execute(f"select interval '{text}'").fetchone()
    assert expected is not None
    assert parse_interval(text) == expected[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("2 fortnights", "unknown unit 'fortnights'"),
        ("1 year", "'year' has no fixed length; use days or weeks"),
        ("2 days, 3 hours", "cannot read ', 3 hours'"),
        ("1 minute 30", "cannot read '30'"),
        ("P1D", "cannot read 'P1D'"),
    ],
)
def test_parse_interval_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_interval(text)
    assert str(info.value) == reason


# --------------------------------------------------------------------------------------------
# Running against DuckDB
# --------------------------------------------------------------------------------------------

ORDERS = """
    (order_id integer, customer_id integer, amount decimal(10, 2), status varchar,
     event_ts timestamp)
"""
BATCH_ROWS = """
    (1, 10, 5.00, 'placed', '2024-01-01 10:00:00'),
    (2, null, 7.50, 'shipped', '2024-01-02 00:00:00'),
    (3, 11, -1.00, 'lost', '2024-01-02 12:00:00'),
    (4, null, null, 'it''s', '2024-01-03 00:00:00'),
    (5, 12, 3.00, null, '2024-01-03 06:00:00')
"""
TARGET_ROWS = """
    (1, 10, 5.00, 'placed', '2024-01-01 10:00:00'),
    (1, 10, 5.00, 'placed', '2024-01-01 10:00:00'),
    (2, 20, 7.50, 'shipped', '2024-01-02 00:00:00'),
    (3, 11, 1.00, 'lost', '2024-01-02 12:00:00'),
    (3, 11, 2.00, 'lost', '2024-01-02 12:00:00'),
    (3, 11, 3.00, 'placed', '2024-01-02 12:00:00'),
    (null, 11, 3.00, 'placed', '2024-01-03 06:00:00'),
    (null, 11, 3.00, 'placed', '2024-01-03 06:00:00')
"""

ROW_1 = "order_id=1, customer_id=10, amount=5.00, status='placed', event_ts=2024-01-01 10:00:00"
ROW_2 = "order_id=2, customer_id=NULL, amount=7.50, status='shipped', event_ts=2024-01-02 00:00:00"
ROW_3 = "order_id=3, customer_id=11, amount=-1.00, status='lost', event_ts=2024-01-02 12:00:00"
ROW_4 = "order_id=4, customer_id=NULL, amount=NULL, status='it''s', event_ts=2024-01-03 00:00:00"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "quality.duckdb"))
    connection.execute(f"create table batch {ORDERS}")
    connection.execute(f"insert into batch values {BATCH_ROWS}")
    connection.execute(f"create table target {ORDERS}")
    connection.execute(f"insert into target values {TARGET_ROWS}")
    connection.execute("create table empty_target as select * from target where false")
    yield connection
    connection.close()


def executor_for(con: duckdb.DuckDBPyConnection) -> Callable[[str], list[tuple]]:
    return lambda sql: con.execute(sql).fetchall()


def run(
    con: duckdb.DuckDBPyConnection,
    entries: list[dict],
    *,
    target: str = "target",
    now: dt.datetime = NOW,
    **kwargs: Any,
) -> list[CheckOutcome]:
    checks = parse(entries, has_partitions=True)
    options: dict[str, Any] = {"event_time": "event_ts"}
    options.update(kwargs)
    return run_quality_checks(
        executor_for(con),
        checks,
        batch_relation="batch",
        target_relation=target,
        now=now,
        **options,
    )


def run_one(con: duckdb.DuckDBPyConnection, entry: dict, **kwargs: Any) -> CheckOutcome:
    (outcome,) = run(con, [entry], **kwargs)
    return outcome


@pytest.mark.parametrize(
    ("entry", "kwargs", "failing_rows", "sample", "message"),
    [
        pytest.param(
            {"not_null": ["customer_id", "amount"]},
            {},
            2,
            [
                "customer_id=NULL, amount=7.50, order_id=2, status='shipped', "
                "event_ts=2024-01-02 00:00:00",
                "customer_id=NULL, amount=NULL, order_id=4, status='it''s', "
                "event_ts=2024-01-03 00:00:00",
            ],
            "2 rows of the batch have a null in customer_id or amount",
            id="not-null",
        ),
        pytest.param(
            {"not_null": ["customer_id"]},
            {"batch_filter": "order_id <= 3"},
            1,
            [
                "customer_id=NULL, order_id=2, amount=7.50, status='shipped', "
                "event_ts=2024-01-02 00:00:00"
            ],
            "1 rows of the batch have a null in customer_id",
            id="not-null-batch-filter",
        ),
        pytest.param(
            {"accepted_values": {"column": "status", "values": ["placed", "shipped", "it's"]}},
            {},
            1,
            [
                "status='lost', order_id=3, customer_id=11, amount=-1.00, "
                "event_ts=2024-01-02 12:00:00"
            ],
            "1 rows of the batch have status outside the accepted values "
            "['placed', 'shipped', 'it''s']",
            id="accepted-values",
        ),
        pytest.param(
            {"accepted_values": {"column": "customer_id", "values": [10, 12]}},
            {},
            1,
            [
                "customer_id=11, order_id=3, amount=-1.00, status='lost', "
                "event_ts=2024-01-02 12:00:00"
            ],
            "1 rows of the batch have customer_id outside the accepted values [10, 12]",
            id="accepted-values-numbers",
        ),
        pytest.param(
            {"expression": "amount >= 0"},
            {},
            2,
            [ROW_3, ROW_4],
            "2 rows of the batch make (amount >= 0) false or null",
            id="expression-false-or-null",
        ),
        pytest.param(
            {"row_count": {"min": 6}},
            {},
            0,
            [],
            "the batch has 5 rows; row_count requires at least 6",
            id="row-count-min",
        ),
        pytest.param(
            {"row_count": {"max": 4}},
            {},
            0,
            [],
            "the batch has 5 rows; row_count requires at most 4",
            id="row-count-max",
        ),
        pytest.param(
            {"row_count": {"min": 3, "max": 10}},
            {"batch_filter": "order_id = 1"},
            0,
            [],
            "the batch has 1 rows; row_count requires between 3 and 10",
            id="row-count-batch-filter",
        ),
        pytest.param(
            {"unique": ["order_id"]},
            {},
            5,
            ["order_id=3 (3 rows)", "order_id=1 (2 rows)"],
            "5 rows of the target share 2 duplicated (order_id) values",
            id="unique",
        ),
        pytest.param(
            {"unique": ["order_id", "status"]},
            {},
            4,
            ["order_id=1, status='placed' (2 rows)", "order_id=3, status='lost' (2 rows)"],
            "4 rows of the target share 2 duplicated (order_id,status) values",
            id="unique-combination",
        ),
        pytest.param(
            {"freshness": {"max_lag": "12 hours"}},
            {},
            0,
            ["newest event_ts=2024-01-03 06:00:00"],
            "the newest event_ts in the target, 2024-01-03 06:00:00, is older than "
            "2024-01-03 12:00:00 (now (2024-01-04 00:00:00) minus max_lag '12 hours')",
            id="freshness-stale",
        ),
        pytest.param(
            {"freshness": {"max_lag": "1 day"}},
            {"target": "empty_target"},
            0,
            [],
            "the target has no rows with a non-null event_ts, so none is newer than "
            "2024-01-03 00:00:00 (now (2024-01-04 00:00:00) minus max_lag '1 day')",
            id="freshness-empty-target",
        ),
    ],
)
def test_check_fails(
    con: duckdb.DuckDBPyConnection,
    entry: dict,
    kwargs: dict,
    failing_rows: int,
    sample: list[str],
    message: str,
) -> None:
    outcome = run_one(con, entry, **kwargs)
    assert outcome.status == "fail"
    assert outcome.failing_rows == failing_rows
    assert outcome.sample == sample
    assert outcome.message == message


@pytest.mark.parametrize(
    ("entry", "kwargs", "message"),
    [
        pytest.param(
            {"not_null": ["order_id", "event_ts"]},
            {},
            "0 rows of the batch have a null in order_id or event_ts",
            id="not-null",
        ),
        pytest.param(
            {"not_null": ["customer_id"]},
            {"batch_filter": "order_id in (1, 3, 5)"},
            "0 rows of the batch have a null in customer_id",
            id="not-null-batch-filter",
        ),
        pytest.param(
            {
                "accepted_values": {
                    "column": "status",
                    "values": ["placed", "shipped", "lost", "it's"],
                }
            },
            {},
            "0 rows of the batch have status outside the accepted values "
            "['placed', 'shipped', 'lost', 'it''s']",
            id="accepted-values-nulls-pass",
        ),
        pytest.param(
            {"expression": "order_id between 1 and 5"},
            {},
            "0 rows of the batch make (order_id between 1 and 5) false or null",
            id="expression",
        ),
        pytest.param(
            {"row_count": {"min": 5, "max": 5}},
            {},
            "the batch has 5 rows; row_count allows between 5 and 5",
            id="row-count-bounds-inclusive",
        ),
        pytest.param(
            {"row_count": {"max": 0}},
            {"batch_filter": "false"},
            "the batch has 0 rows; row_count allows at most 0",
            id="row-count-empty-batch",
        ),
        pytest.param(
            {"unique": ["order_id"]},
            {"target": "batch"},
            "no (order_id) value occurs twice",
            id="unique",
        ),
        pytest.param(
            {"unique": ["customer_id"]},
            {"target": "batch"},
            "no (customer_id) value occurs twice",
            id="unique-nulls-not-compared",
        ),
        pytest.param(
            {"freshness": {"max_lag": "18 hours"}},
            {},
            "the newest event_ts in the target, 2024-01-03 06:00:00, is within max_lag "
            "'18 hours' of now",
            id="freshness-boundary",
        ),
    ],
)
def test_check_passes(
    con: duckdb.DuckDBPyConnection, entry: dict, kwargs: dict, message: str
) -> None:
    outcome = run_one(con, entry, **kwargs)
    assert (outcome.status, outcome.failing_rows, outcome.sample) == ("pass", 0, [])
    assert outcome.message == message
    assert not outcome.failed


def test_samples_are_capped_at_five(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("insert into batch select i, null, 1, 'x', '2024-01-01' from range(10, 20) t(i)")
    outcome = run_one(con, {"not_null": ["customer_id"]})
    assert outcome.failing_rows == 12
    assert [s.split(", ")[1] for s in outcome.sample] == [
        "order_id=2",
        "order_id=4",
        "order_id=10",
        "order_id=11",
        "order_id=12",
    ]


def test_awkward_identifiers_and_literals(con: duckdb.DuckDBPyConnection) -> None:
    con.execute('create table odd ("we""ird" varchar, "Amount" integer)')
    con.execute("""insert into odd values ('o''k', 1), ('bad', null), (null, -2)""")
    checks = parse_quality_checks(
        [
            {"not_null": ['we"ird']},
            {"accepted_values": {"column": 'WE"IRD', "values": ["o'k"]}},
            {"expression": '"Amount" > 0'},
        ],
        model=MODEL,
        columns=['we"ird', "Amount"],
    )
    outcomes = run_quality_checks(
        executor_for(con),
        checks,
        batch_relation="odd",
        target_relation="odd",
        event_time=None,
        now=NOW,
    )
    assert [(o.check_name, o.failing_rows, o.sample) for o in outcomes] == [
        ('not_null(we"ird)', 1, ['we"ird=NULL, Amount=-2']),
        ('accepted_values(we"ird)', 1, ["we\"ird='bad', Amount=NULL"]),
        ('expression("Amount" > 0)', 2, ["we\"ird='bad', Amount=NULL", 'we"ird=NULL, Amount=-2']),
    ]


@pytest.mark.parametrize(
    ("column_type", "value", "status"),
    [
        ("timestamptz", "2024-01-03 06:00:00+00", "pass"),
        ("timestamptz", "2024-01-03 06:00:00+07", "fail"),
        ("date", "2024-01-03", "pass"),
        ("date", "2024-01-02", "fail"),
    ],
)
def test_freshness_column_types(
    con: duckdb.DuckDBPyConnection, column_type: str, value: str, status: str
) -> None:
    con.execute(f"create table events (ts {column_type})")
    con.execute(f"insert into events values ('{value}')")
    (check,) = parse_quality_checks(
        [{"freshness": {"max_lag": "1 day"}}], model=MODEL, event_time="ts"
    )
    (outcome,) = run_quality_checks(
        executor_for(con),
        [check],
        batch_relation="events",
        target_relation="events",
        event_time="ts",
        now=NOW,
    )
    assert outcome.status == status


def test_freshness_on_a_non_time_column_is_a_runtime_error(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(DbtRuntimeError) as info:
        run(con, [{"freshness": {"max_lag": "1 day"}}], event_time="status")
    assert str(info.value.msg) == (
        "quality check freshness(event_ts): the newest event_time is 'shipped' (str); "
        "freshness needs a DATE, TIMESTAMP or TIMESTAMPTZ column. Point event_time at such "
        "a column, or remove the check."
    )


def test_partition_consistency(con: duckdb.DuckDBPyConnection) -> None:
    problems = [f"partition 2024-01-0{i}: 3 rows recorded, 2 found" for i in range(1, 8)]
    (failed,) = run(con, [{"partition_consistency": True}], partition_check=lambda: problems)
    assert (failed.status, failed.failing_rows) == ("fail", 0)
    assert failed.sample == problems[:5]
    assert failed.message == "the partition consistency check found 7 problems"
    (passed,) = run(con, [{"partition_consistency": True}], partition_check=list)
    assert (passed.status, passed.sample) == ("pass", [])
    assert passed.message == "the touched partitions are consistent"


def test_partition_consistency_needs_the_partition_check(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(DbtRuntimeError, match="needs the partition manager's consistency"):
        run(con, [{"partition_consistency": True}])


def test_a_check_that_cannot_run_names_itself(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(DbtRuntimeError) as info:
        run(con, [{"row_count": {"min": 1}}, {"expression": "discount >= 0"}])
    message = str(info.value.msg)
    assert message.startswith(
        "quality check expression(discount >= 0) (quality_checks[1]) could not run against "
        "batch: Binder Error"
    )
    assert "Check the column names and SQL of this check" in message
    assert isinstance(info.value.__cause__, duckdb.Error)


def test_checks_see_the_open_transaction(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("begin")
    con.execute("insert into target values (7, 1, 1, 'x', '2024-01-03 23:00:00')")
    (outcome,) = run(con, [{"freshness": {"max_lag": "1 hour"}}])
    con.execute("rollback")
    assert outcome.status == "pass"
    assert con.execute("select count(*) from target where order_id = 7").fetchone() == (0,)


def test_aware_now_is_converted_to_utc(con: duckdb.DuckDBPyConnection) -> None:
    aware = dt.datetime(2024, 1, 4, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    (outcome,) = run(con, [{"freshness": {"max_lag": "18 hours"}}], now=aware)
    assert outcome.status == "pass"


# --------------------------------------------------------------------------------------------
# Decisions and messages
# --------------------------------------------------------------------------------------------


def test_failure_and_warning_messages(con: duckdb.DuckDBPyConnection) -> None:
    outcomes = run(
        con,
        [
            {"not_null": ["customer_id"]},
            {"expression": "amount >= 0", "severity": "warn"},
            {"row_count": {"min": 1}},
            {"unique": ["order_id"]},
        ],
    )
    assert [o.status for o in outcomes] == ["fail", "fail", "pass", "fail"]
    assert [o.check_name for o in failed_errors(outcomes)] == [
        "not_null(customer_id)",
        "unique(order_id)",
    ]
    assert [o.check_name for o in failed_warnings(outcomes)] == ["expression(amount >= 0)"]

    assert format_failure(MODEL, outcomes) == (
        f"Model '{MODEL}': 2 quality checks of severity 'error' failed, so the load was rolled "
        "back and the target and sqlflow's state are unchanged. Fix the data or the check, or "
        "set severity: 'warn' on a check to load despite it.\n"
        "quality check failed: not_null(customer_id) (2 failing rows)\n"
        "  2 rows of the batch have a null in customer_id\n"
        "  - customer_id=NULL, order_id=2, amount=7.50, status='shipped', "
        "event_ts=2024-01-02 00:00:00\n"
        "  - customer_id=NULL, order_id=4, amount=NULL, status='it''s', "
        "event_ts=2024-01-03 00:00:00\n"
        "quality check failed: unique(order_id) (5 failing rows)\n"
        "  5 rows of the target share 2 duplicated (order_id) values\n"
        "  - order_id=3 (3 rows)\n"
        "  - order_id=1 (2 rows)"
    )
    assert format_warning(MODEL, failed_warnings(outcomes)[0]) == (
        f"Model '{MODEL}': a quality check of severity 'warn' failed; the load was committed.\n"
        "quality check warned: expression(amount >= 0) (2 failing rows)\n"
        "  2 rows of the batch make (amount >= 0) false or null\n"
        f"  - {ROW_3}\n"
        f"  - {ROW_4}"
    )


def test_failure_lines_parse_back_to_checks_and_counts(con: duckdb.DuckDBPyConnection) -> None:
    outcomes = run(
        con,
        [
            {"not_null": ["customer_id", "amount"]},
            {"accepted_values": {"column": "status", "values": ["placed"]}},
            {"expression": "amount - 1 > (0)"},
            {"freshness": {"max_lag": "1 hour"}},
        ],
    )
    message = format_failure(MODEL, outcomes)
    expected = [
        ("not_null(customer_id,amount)", 2),
        ("accepted_values(status)", 3),
        ("expression(amount - 1 > (0))", 2),
        ("freshness(event_ts)", 0),
    ]
    assert failures_in_message(message) == expected
    assert [
        (line.removeprefix(FAILURE_PREFIX).rsplit(" (", 1)[0])
        for line in message.splitlines()
        if line.startswith(FAILURE_PREFIX)
    ] == [name for name, _ in expected]
    assert failures_in_message(format_warning(MODEL, outcomes[0])) == []
    assert failures_in_message(None) == []


def test_format_failure_needs_a_failed_error() -> None:
    passed = CheckOutcome("row_count", "error", "pass", 0, [], "ok")
    warned = CheckOutcome("row_count", "warn", "fail", 0, [], "low")
    with pytest.raises(ValueError):
        format_failure(MODEL, [passed, warned])


def test_samples_are_rendered_compactly(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create table wide as select 'x' || repeat('y', 100) as note, null as c0")
    for i in range(1, 30):
        con.execute(f"alter table wide add column c{i} integer default {i}")
    (outcome,) = run_quality_checks(
        executor_for(con),
        parse_quality_checks([{"not_null": ["c0"]}], model=MODEL),
        batch_relation="wide",
        target_relation="wide",
        event_time=None,
        now=NOW,
    )
    (row,) = outcome.sample
    assert row.startswith("c0=NULL, note='xyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy..., c1=1, c2=2")
    assert len(row) == 200
    assert row.endswith("...")
