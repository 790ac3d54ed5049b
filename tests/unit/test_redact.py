"""Redaction of personal data: the detectors, the settings and every error text, and the
places that render row values (check samples on real DuckDB tables, key examples, config)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtConfigError, DbtRuntimeError

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.quality import parse_quality_checks, run_quality_checks
from dbt.adapters.sqlflow.redact import (
    COLUMN_MARK,
    DEFAULT,
    KINDS,
    NOTHING,
    PATTERN_MARK,
    Redactor,
    RedactSettings,
    iban_valid,
    luhn_valid,
)
from dbt.adapters.sqlflow.strategies import key_problems

# One real-looking value of each kind, and the placeholder that must replace it.
PII: list[tuple[str, str]] = [
    ("ann.lee+news@example.co.uk", "email"),
    ("bob@mail.example.org", "email"),
    ("+1 415-555-2671", "phone"),
    ("+4915112345678", "phone"),
    ("(415) 555-2671", "phone"),
    ("415.555.2671", "phone"),
    ("020 7946 0958", "phone"),
    ("06 12 34 56 78", "phone"),
    ("0612345678", "phone"),
    ("4111 1111 1111 1111", "card"),
    ("4111-1111-1111-1111", "card"),
    ("5500005555555559", "card"),
    ("378282246310005", "card"),
    ("3782 822463 10005", "card"),
    ("GB82 WEST 1234 5698 7654 32", "iban"),
    ("DE89370400440532013000", "iban"),
    ("fr1420041010050500013m02606", "iban"),
    ("192.168.1.20", "ip"),
    ("8.8.4.4", "ip"),
    ("2001:db8::8a2e:370:7334", "ip"),
    ("fe80::1", "ip"),
]

# Text that looks a little like personal data and must stay as it is: dates, times,
# versions, ids, amounts, SQL casts, numbers failing Luhn or mod 97.
NOT_PII = [
    "2025-01-03",
    "2025-01-03 03:00:00",
    "2025-01-03T03:00:00.123456",
    "[2025-01-02 08:00:00, 2025-01-03 00:00:00)",
    "2025-01-03 2025-01-04",
    "12:30:45",
    "dbt 1.11.16",
    "DuckDB v1.4.0.0",
    "3f2a9c0b1d4e4f5a8b7c6d5e4f3a2b1c",
    "id=4, amount=-5",
    "1234567890",
    "20250103",
    "1735689600000",
    "-0.000123",
    "4111111111111112",
    "DE89370400440532013001",
    "select id::varchar, x::int",
    "::1",
    "user at example dot com",
]


@pytest.mark.parametrize(("value", "kind"), PII, ids=[v for v, _ in PII])
def test_each_kind_is_redacted_alone_and_inside_text(value: str, kind: str) -> None:
    assert DEFAULT.text(value) == f"<redacted:{kind}>"
    sentence = f"customer 42 wrote from {value}; see load 7"
    assert DEFAULT.text(sentence) == f"customer 42 wrote from <redacted:{kind}>; see load 7"


@pytest.mark.parametrize("text", NOT_PII)
def test_text_without_personal_data_is_unchanged(text: str) -> None:
    assert DEFAULT.text(text) == text


def test_duckdb_errors_keep_their_words() -> None:
    con = duckdb.connect()
    con.execute("create table u (email varchar primary key)")
    con.execute("insert into u values ('ann@example.com')")
    with pytest.raises(duckdb.Error) as dup:
        con.execute("insert into u values ('ann@example.com')")
    with pytest.raises(duckdb.Error) as cast:
        con.execute("select cast(email || ' 192.168.1.20' as integer) from u")
    assert DEFAULT.text(str(dup.value)) == (
        'Constraint Error: Duplicate key "email: <redacted:email>" violates primary key constraint.'
    )
    assert DEFAULT.text(str(cast.value)).startswith(
        "Conversion Error: Could not convert string '<redacted:email> <redacted:ip>' to INT32"
    )


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("79927398713", True), ("4111111111111112", False)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("GB82WEST12345698765432", True),
        ("GB83WEST12345698765432", False),
        ("GB82WEST1234", False),
    ],
)
def test_iban(text: str, valid: bool) -> None:
    assert iban_valid(text) is valid


def test_kinds_choose_the_detectors() -> None:
    only_email = Redactor(RedactSettings(kinds=("email",)))
    assert only_email.text("ann@example.com 192.168.1.20") == "<redacted:email> 192.168.1.20"
    assert NOTHING.text("ann@example.com 192.168.1.20") == "ann@example.com 192.168.1.20"
    assert not NOTHING.active and DEFAULT.active


def test_columns_and_patterns() -> None:
    redactor = RedactSettings(columns=("Full_Name",), patterns=(r"EMP-\d{6}",)).redactor()
    assert redactor.listed("full_name")
    assert redactor.value("FULL_NAME", "Ann Lee") == COLUMN_MARK
    assert redactor.value("full_name", None) == COLUMN_MARK
    assert redactor.value("note", "badge EMP-004211, ann@example.com") == (
        f"badge {PATTERN_MARK}, <redacted:email>"
    )


def test_values_that_are_not_text() -> None:
    assert DEFAULT.value("card", 4111111111111111) == "<redacted:card>"
    assert DEFAULT.value("id", 42) == 42
    assert DEFAULT.value("ok", True) is True
    assert DEFAULT.value("day", dt.date(2025, 1, 3)) == dt.date(2025, 1, 3)


def test_merged_adds_columns_and_patterns_and_the_model_chooses_kinds() -> None:
    profile = RedactSettings(kinds=("email",), columns=("a",), patterns=("x+",))
    model = RedactSettings(columns=("b", "a"), patterns=("y+",))
    assert profile.merged(model) == RedactSettings(("email",), ("a", "b"), ("x+", "y+"))
    assert profile.merged(RedactSettings(kinds=())).kinds == ()
    assert RedactSettings().merged(RedactSettings()).redactor().text("8.8.8.8") == "<redacted:ip>"


def test_parse_reads_every_key() -> None:
    raw = {"kinds": ["email", "ip"], "columns": "ssn", "patterns": [r"EMP-\d+"]}
    assert RedactSettings.parse(raw) == RedactSettings(("email", "ip"), ("ssn",), (r"EMP-\d+",))
    assert RedactSettings.parse(None) == RedactSettings()
    assert RedactSettings.parse({"kinds": []}).redactor().text("ann@example.com") == (
        "ann@example.com"
    )


FIX = "Fix: write sqlflow_redact: {columns: [full_name], patterns: ['EMP-[0-9]{6}']}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["ssn"], f"profile key sqlflow_redact ['ssn'] must be a mapping. {FIX}"),
        (
            {"column": ["ssn"]},
            "profile key sqlflow_redact has unknown key 'column' (allowed: kinds, columns,"
            f" patterns). {FIX}",
        ),
        (
            {"kinds": ["email", "phones"]},
            "profile key sqlflow_redact.kinds ['email', 'phones'] names unknown kind(s)"
            " ['phones']. Fix: list some of email, phone, card, iban, ip ([] redacts none of"
            " them)",
        ),
        (
            {"columns": [1]},
            "profile key sqlflow_redact.columns [1] must be a list of non-empty strings."
            " Fix: write e.g. sqlflow_redact: {columns: [full_name], patterns:"
            " ['EMP-[0-9]{6}']}",
        ),
        (
            {"patterns": ["EMP-(", "a*"]},
            "profile key sqlflow_redact.patterns entry 'EMP-(' is not a valid regular"
            " expression (missing ), unterminated subpattern at position 4). Fix: write a"
            " Python regular expression that matches the sensitive text, e.g. 'EMP-[0-9]{6}';"
            " profile key sqlflow_redact.patterns entry 'a*' matches the empty string (it"
            " would redact between every character). Fix: write a Python regular expression"
            " that matches the sensitive text, e.g. 'EMP-[0-9]{6}'",
        ),
    ],
)
def test_parse_errors(raw: Any, expected: str) -> None:
    with pytest.raises(DbtConfigError) as info:
        RedactSettings.parse(raw)
    assert info.value.msg == expected


def test_model_config_errors_name_the_model_key_value_and_fix() -> None:
    with pytest.raises(DbtConfigError) as info:
        SqlflowConfig.parse(
            "model.proj.people",
            {"sqlflow_redact": {"columns": ["full_nam"], "kinds": "all"}},
            {"id": "INTEGER", "full_name": "VARCHAR"},
        )
    assert info.value.msg == (
        "sqlflow_incremental model 'model.proj.people' has 2 configuration errors (nothing was"
        " written):\n"
        "  - sqlflow_redact.kinds ['all'] names unknown kind(s) ['all']. Fix: list some of"
        " email, phone, card, iban, ip ([] redacts none of them)\n"
        "  - sqlflow_redact.columns 'full_nam' names a column the model does not produce (did"
        " you mean 'full_name'?); its columns are: id, full_name. Fix: select full_nam in the"
        " model or change sqlflow_redact.columns."
    )


def test_model_config_is_read() -> None:
    config = SqlflowConfig.parse(
        "model.proj.people",
        {"sqlflow_redact": {"columns": ["full_name"], "kinds": []}},
        {"id": "INTEGER", "full_name": "VARCHAR"},
    )
    assert config.redact == RedactSettings(kinds=(), columns=("full_name",))


def test_every_kind_is_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert all(f"`<redacted:{kind}>`" in readme for kind in KINDS)


# -- where row values are rendered ------------------------------------------------------------

PEOPLE = [
    (1, "Ann Lee", "ann@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "ok"),
    (2, "Bob Ray", "bob@example.org", "415-555-2671", "GB82 WEST 1234 5698 7654 32", None),
    (3, "Cy Doe", "cy@example.net", "10.1.2.3", "2001:db8::1", None),
]


@pytest.fixture
def people() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "create table people (id int, full_name varchar, email varchar, phone varchar,"
        " account varchar, status varchar)"
    )
    con.executemany("insert into people values (?, ?, ?, ?, ?, ?)", PEOPLE)
    con.execute("insert into people select * from people where id = 2")
    return con


def run_checks(con: duckdb.DuckDBPyConnection, redactor: Redactor) -> list[Any]:
    checks = parse_quality_checks(
        [{"not_null": ["status"]}, {"unique": ["email"]}, {"expression": "length(phone) < 3"}],
        model="model.proj.people",
    )

    def execute(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    return run_quality_checks(
        execute,
        checks,
        batch_relation="people",
        target_relation="people",
        event_time=None,
        now=dt.datetime(2025, 1, 3),
        redactor=redactor,
    )


def test_check_samples_are_redacted(people: duckdb.DuckDBPyConnection) -> None:
    redactor = RedactSettings(columns=("full_name",)).redactor()
    not_null, unique, expression = run_checks(people, redactor)
    assert not_null.sample == [
        "status=NULL, id=2, full_name=<redacted:column>, email='<redacted:email>',"
        " phone='<redacted:phone>', account='<redacted:iban>'",
        "status=NULL, id=2, full_name=<redacted:column>, email='<redacted:email>',"
        " phone='<redacted:phone>', account='<redacted:iban>'",
        "status=NULL, id=3, full_name=<redacted:column>, email='<redacted:email>',"
        " phone='<redacted:ip>', account='<redacted:ip>'",
    ]
    assert unique.sample == ["email='<redacted:email>' (2 rows)"]
    assert expression.sample[0] == (
        "id=1, full_name=<redacted:column>, email='<redacted:email>', phone='<redacted:phone>',"
        " account='<redacted:card>', status='ok'"
    )


def test_check_samples_without_redaction(people: duckdb.DuckDBPyConnection) -> None:
    unique = run_checks(people, NOTHING)[1]
    assert unique.sample == ["email='bob@example.org' (2 rows)"]


def test_a_failing_check_query_is_redacted(people: duckdb.DuckDBPyConnection) -> None:
    checks = parse_quality_checks(
        [{"expression": "cast(email as integer) > 0"}], model="model.proj.people"
    )
    with pytest.raises(DbtRuntimeError) as info:
        run_quality_checks(
            lambda sql: people.execute(sql).fetchall(),
            checks,
            batch_relation="people",
            target_relation="people",
            event_time=None,
            now=dt.datetime(2025, 1, 3),
        )
    assert "Could not convert string '<redacted:email>' to INT32" in info.value.msg
    assert "@example" not in info.value.msg
    # The cause would carry DuckDB's text as it was.
    assert info.value.__cause__ is None


def test_key_examples_are_redacted() -> None:
    message = key_problems(
        "model.proj.people",
        ("email", "full_name"),
        null_key_rows=0,
        duplicate_keys=1,
        samples=[("ann@example.com", "Ann Lee", 2)],
        tied_keys=1,
        tied_samples=[("bob@example.org", "Bob Ray", 3)],
        dedupe_by=("updated_at",),
        redactor=RedactSettings(columns=("full_name",)).redactor(),
    )
    assert message is not None
    assert "e.g. (email='<redacted:email>', full_name=<redacted:column>) (2 rows)." in message
    assert "e.g. (email='<redacted:email>', full_name=<redacted:column>) (3 rows):" in message
    assert "example" not in message and "Lee" not in message
