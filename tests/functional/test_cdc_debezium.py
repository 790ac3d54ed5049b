"""Debezium change events shaped like the PostgreSQL connector's (create, update, delete,
snapshot read, truncate), as JSON columns, as STRUCT columns and as one JSON column with
the converter's ``{schema, payload}`` wrapper: each model unpacks them and must hold the
same rows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import raw_sources_yml, rows, run_results

ROW = '{"id": "INTEGER", "name": "VARCHAR", "email": "VARCHAR"}'
SOURCE = (
    '{"version": "VARCHAR", "connector": "VARCHAR", "name": "VARCHAR", "ts_ms": "BIGINT",'
    ' "snapshot": "VARCHAR", "db": "VARCHAR", "sequence": "VARCHAR", "schema": "VARCHAR",'
    ' "table": "VARCHAR", "txId": "BIGINT", "lsn": "BIGINT", "xmin": "BIGINT"}'
)


def event(op: str, before: Any, after: Any, last_commit: int | None, lsn: int) -> dict:
    """One change event as the PostgreSQL connector writes its payload."""
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 1_735_689_600_000 + lsn,
            "snapshot": "true" if op == "r" else "false",
            "db": "shop",
            "sequence": json.dumps([None if last_commit is None else str(last_commit), str(lsn)]),
            "schema": "public",
            "table": "customers",
            "txId": 700 + lsn,
            "lsn": lsn,
            "xmin": None,
        },
        "op": op,
        # When the connector processed it: not the order of the changes.
        "ts_ms": 1_735_700_000_000 - lsn,
        "transaction": None,
    }


def row(i: int, name: str, email: str) -> dict:
    return {"id": i, "name": name, "email": email}


RUNS = [
    [
        event("r", None, row(1, "ann", "a@x"), None, 100),
        event("r", None, row(2, "bob", "b@x"), None, 100),
        event("c", None, row(3, "cy", "c@x"), 100, 110),
        event("u", row(1, "ann", "a@x"), row(1, "ann", "ann@x"), 110, 140),
        event("d", row(2, "bob", "b@x"), None, 140, 150),
    ],
    [
        # A snapshot read arriving after newer streaming changes: never overwrites them.
        event("r", None, row(1, "ann", "a@x"), None, 100),
        # Two changes of 3: by lsn alone the second is newer; by commit position, then
        # lsn, the first is.
        event("u", row(3, "cy", "c@x"), row(3, "cy", "c2@x"), 200, 160),
        event("u", row(3, "cy", "c@x"), row(3, "cy", "c3@x"), 150, 170),
    ],
    [
        event("t", None, None, 200, 300),
        event("c", None, row(4, "dee", "d@x"), 300, 310),
    ],
]
EXPECTED = [
    [(1, "ann", "ann@x"), (3, "cy", "c@x")],
    [(1, "ann", "ann@x"), (3, "cy", "c2@x")],
    [(4, "dee", "d@x")],
]
MODELS = {
    "from_json": ("dbz_json", "true"),
    "from_struct": ("dbz_struct", "true"),
    "from_value": ("dbz_value", "'value'"),
}


def model(source: str, debezium: str, extra: str = "") -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', incremental_strategy='cdc',"
        f" unique_key='id', cdc={{'debezium': {debezium}{extra}}}) }}}}\n"
        f"select * from {{{{ source('raw', '{source}') }}}}\n"
    )


def braces(text: str) -> str:
    """``text`` with its braces doubled (``project.run_sql`` formats ``{schema}``)."""
    return text.replace("{", "{{").replace("}", "}}")


def load(project: Any, events: list[dict]) -> None:
    """The events as each source table holds them."""
    values = ", ".join(
        "("
        + ", ".join(
            "null" if e[k] is None else f"'{braces(json.dumps(e[k]))}'::json"
            for k in ("before", "after", "source")
        )
        + f", '{e['op']}', {e['ts_ms']})"
        for e in events
    )
    project.run_sql(
        "create or replace table {schema}.dbz_json (before json, after json, source json,"
        " op varchar, ts_ms bigint)"
    )
    project.run_sql(f"insert into {{schema}}.dbz_json values {values}")
    project.run_sql(
        "create or replace table {schema}.dbz_struct as select"
        f" json_transform(before, '{braces(ROW)}') as before,"
        f" json_transform(after, '{braces(ROW)}') as after,"
        f" json_transform(source, '{braces(SOURCE)}') as source, op, ts_ms"
        " from {schema}.dbz_json"
    )
    wrapped = ", ".join(
        "('" + braces(json.dumps({"schema": {"type": "struct"}, "payload": e})) + "'::json)"
        for e in events
    )
    project.run_sql("create or replace table {schema}.dbz_value (value json)")
    project.run_sql(f"insert into {{schema}}.dbz_value values {wrapped}")


class TestDebeziumEnvelopes:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        found = {"sources.yml": raw_sources_yml("dbz_json", "dbz_struct", "dbz_value")}
        for name, (source, debezium) in MODELS.items():
            found[f"{name}.sql"] = model(source, debezium)
        found["history.sql"] = model("dbz_struct", "true", ", 'stored_as': 'scd2'")
        return found

    def test_every_shape_applies_the_changes(self, project: Any) -> None:
        for events, expected in zip(RUNS, EXPECTED, strict=True):
            load(project, events)
            run_dbt(["run"])
            for name in MODELS:
                found = rows(project, f"select * from {{schema}}.{name} order by id")
                assert found == expected, name
        history = rows(
            project,
            "select id, email, dbt_valid_from, dbt_valid_to from {schema}.history"
            " order by id, dbt_valid_from",
        )

        def at(commit: int, lsn: int) -> dict[str, int]:
            """A version's bound: the source position (commit, then lsn) it was valid from/to."""
            return {"sqlflow_dbz_commit": commit, "sqlflow_dbz_lsn": lsn}

        assert history == [
            (1, "a@x", at(100, 100), at(110, 140)),
            (1, "ann@x", at(110, 140), at(200, 300)),
            (2, "b@x", at(100, 100), at(140, 150)),
            (3, "c@x", at(100, 110), at(150, 170)),
            (3, "c3@x", at(150, 170), at(200, 160)),
            (3, "c2@x", at(200, 160), at(200, 300)),
            (4, "d@x", at(300, 310), None),
        ]
        columns = rows(
            project,
            "select column_name from information_schema.columns where table_name = 'from_json'"
            " and table_schema = '{schema}' order by ordinal_position",
        )
        assert columns == [("id",), ("name",), ("email",)]
        response = run_results(project)["from_struct"]["adapter_response"]
        assert (response["rows_inserted"], response["rows_deleted"]) == (1, 2)
