"""The cdc parts of the batch loop that a dbt run rarely reaches: a target without a
ledger, and the source SQL of Debezium envelopes (on DuckDB, no dbt)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtRuntimeError
from sqlflow_testing import DuckSession, duck_services

from dbt.adapters.sqlflow import cdc, execution
from dbt.adapters.sqlflow.config import SqlflowConfig

CONFIG = SqlflowConfig.parse(
    "model.proj.customers",
    {"incremental_strategy": "cdc", "unique_key": "id", "cdc": {"sequence_by": "lsn"}},
    {"id": "INTEGER", "name": "VARCHAR", "lsn": "BIGINT"},
)
FEED = "select * from (values (1, 'a', 10)) as f(id, name, lsn)"


class Connection:
    """``describe`` and ``execute`` on a DuckDB connection, as the adapter's session."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def describe(self, sql: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.con.execute(f"describe ({sql})").fetchall()]

    def execute(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()


def test_a_table_with_rows_but_no_ledger_is_refused() -> None:
    con = duckdb.connect()
    con.execute("create table customers as select 1 as id, 'a' as name")
    services = duck_services(DuckSession(con), datetime(2025, 1, 1))
    with pytest.raises(DbtRuntimeError) as info:
        execution._cdc_ledger(CONFIG, services, "customers", FEED, incremental=True)
    assert info.value.msg.startswith(
        "sqlflow_incremental model 'model.proj.customers': customers has rows but no cdc ledger"
    )
    assert "dbt run --full-refresh -s customers. Nothing was written." in info.value.msg
    con.execute("delete from customers")
    ledger = execution._cdc_ledger(CONFIG, services, "customers", FEED, incremental=True)
    assert ledger == '"sqlflow_meta"."' + cdc.ledger_table_name("customers") + '"'
    found = con.execute(f"describe {ledger}").fetchall()
    assert [(r[0], r[1]) for r in found] == [
        ("id", "INTEGER"),
        ("sqlflow_seq", "INTEGER"),
        ("sqlflow_op", "VARCHAR"),
        ("sqlflow_changed_at", "TIMESTAMP"),
    ]


def test_model_source_of_plain_and_debezium_models() -> None:
    con = Connection(duckdb.connect())
    assert execution.model_source(con, FEED, {"sequence_by": "lsn"}, None) == (
        FEED,
        {"id": "INTEGER", "name": "VARCHAR", "lsn": "INTEGER"},
    )
    envelopes = (
        "select * from (values ('{\"id\": 1}'::json, null::json, 'c',"
        " '{\"lsn\": 7}'::json)) as e(after, before, op, source)"
    )
    flat, columns = execution.model_source(con, envelopes, {"debezium": True}, None)
    assert columns == {
        "id": "UBIGINT",
        cdc.DBZ_OP: "VARCHAR",
        cdc.DBZ_COMMIT: "UBIGINT",
        cdc.DBZ_LSN: "UBIGINT",
    }
    # An incremental run takes the target's types.
    existing = [("id", "INTEGER"), ("dbt_valid_from", "STRUCT(a INTEGER)")]
    flat, columns = execution.model_source(con, envelopes, {"debezium": True}, lambda: existing)
    assert columns["id"] == "INTEGER" and "dbt_valid_from" not in columns
    assert con.execute(flat) == [(1, "c", 7, 7)]
    empty = envelopes.replace("(values", "(select * from (values").replace(
        "as e(after", "as x(after, before, op, source) where false) as e(after"
    )
    with pytest.raises(DbtRuntimeError, match="has no row image yet"):
        execution.model_source(con, empty, {"debezium": True}, None)
