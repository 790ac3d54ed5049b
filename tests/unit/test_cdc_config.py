"""The cdc strategy's config (``cdc.*``), its feed layout and its error texts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtConfigError
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt.adapters.sqlflow import cdc
from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.plan import LoadPlan, Variant, jinja_plan, variants
from dbt.adapters.sqlflow.strategies import REGISTRY

MODEL = "model.proj.customers"
COLUMNS = {
    "id": "INTEGER",
    "name": "VARCHAR",
    "email": "VARCHAR",
    "lsn": "BIGINT",
    "serial": "INTEGER",
    "op": "VARCHAR",
    "changed_at": "TIMESTAMP",
}
BASE = {"incremental_strategy": "cdc", "unique_key": "id"}
STRUCT_ORDER = "struct_pack(sqlflow_seq := s.sqlflow_seq, sqlflow_rank := s.sqlflow_rank)"


def parse(cdc_config: Any, columns: dict[str, str] | None = COLUMNS, **raw: Any) -> SqlflowConfig:
    return SqlflowConfig.parse(MODEL, {**BASE, "cdc": cdc_config, **raw}, columns)


def problems(cdc_config: Any, **raw: Any) -> list[str]:
    with pytest.raises(DbtConfigError) as info:
        parse(cdc_config, **raw)
    text = str(info.value.msg)
    assert text.startswith(f"sqlflow_incremental model '{MODEL}' has ")
    assert "(nothing was written)" in text
    return [line[4:] for line in text.split("\n")[1:]]


def test_defaults_fit_debezium_op_codes() -> None:
    config = parse({"sequence_by": "lsn", "operation": "op"})
    spec = config.cdc
    assert spec is not None
    assert spec.operation == "op"
    assert spec.operation_values == {
        "insert": ("c",),
        "update": ("u",),
        "delete": ("d",),
        "truncate": ("t",),
        "snapshot": ("r",),
    }
    assert spec.stored_as == "scd1"
    assert spec.tombstone_retention == timedelta(days=7)
    assert spec.has_truncates
    assert REGISTRY["cdc"].change_feed and REGISTRY["cdc"].keyed


def test_every_key_parsed() -> None:
    spec = parse(
        {
            "sequence_by": ["lsn", "serial"],
            "operation": {"column": "op", "insert": "I", "update": ["U", "u"], "delete": "D"},
            "ignore_null_updates": ["email"],
            "except_columns": ["changed_at"],
            "stored_as": "scd2",
            "track_history_columns": ["name"],
            "tombstone_retention": "36 hours",
        }
    ).cdc
    assert spec == cdc.CdcSpec(
        sequence_by=("lsn", "serial"),
        operation="op",
        operation_values={
            "insert": ("I",),
            "update": ("U", "u"),
            "delete": ("D",),
            "truncate": ("t",),
            "snapshot": ("r",),
        },
        ignore_null_updates=("email",),
        except_columns=("changed_at",),
        stored_as="scd2",
        track_history_columns=("name",),
        tombstone_retention=timedelta(hours=36),
    )


@pytest.mark.parametrize(
    ("cdc_config", "raw", "expected"),
    [
        (
            None,
            {},
            "cdc is required by incremental_strategy 'cdc'. Fix: set"
            " cdc={'sequence_by': 'lsn', 'operation': 'op'}.",
        ),
        (
            "lsn",
            {},
            "cdc 'lsn' must be a dict. Fix: write cdc={'sequence_by': 'lsn', 'operation': 'op'}.",
        ),
        (
            {"operation": "op"},
            {},
            "cdc.sequence_by is required by incremental_strategy 'cdc'. Fix: set"
            " cdc.sequence_by to the column (or list of columns) giving the order of changes,"
            " e.g. {'sequence_by': ['commit_lsn', 'lsn']}.",
        ),
        (
            {"sequence_by": "lsm"},
            {},
            "cdc.sequence_by 'lsm' names a column the model does not produce; its columns are:"
            " id, name, email, lsn, serial, op, changed_at. Fix: select lsm in the model or"
            " change cdc.sequence_by.",
        ),
        (
            {"sequence_by": "lsn", "stored_as": "scd3"},
            {},
            "cdc.stored_as 'scd3' is not one of: scd1, scd2. Fix: set cdc.stored_as='scd1' or"
            " 'scd2'.",
        ),
        (
            {"sequence_by": "lsn", "operation": "op", "apply_as_deletes": "op = 'D'"},
            {},
            "cdc.operation 'op' cannot be combined with cdc.apply_as_deletes /"
            " cdc.apply_as_truncates. Fix: use the operation column, or the conditions, not"
            " both.",
        ),
        (
            {"sequence_by": "lsn", "operation": {"column": "op", "delete": "u"}},
            {},
            "cdc.operation.delete 'u' also means update. Fix: give each operation its own values.",
        ),
        (
            {"sequence_by": "lsn", "tombstone_retention": "a while"},
            {},
            "cdc.tombstone_retention 'a while' is not a positive duration. Fix: write e.g."
            " '7 days', '12 hours', '30 minutes' or a number of seconds.",
        ),
        (
            {"sequence_by": "lsn", "track_history_columns": ["name"]},
            {},
            "cdc.track_history_columns ['name'] only applies to cdc.stored_as='scd2'. Fix: set"
            " cdc.stored_as='scd2' or remove cdc.track_history_columns.",
        ),
        (
            {"sequence_by": "lsn", "columns": ["name"], "except_columns": ["email"]},
            {},
            "cdc.columns ['name'] conflicts with cdc.except_columns. Fix: set only one of"
            " cdc.columns and cdc.except_columns.",
        ),
        (
            {"sequence_by": "lsn", "except_columns": ["id"]},
            {},
            "cdc.except_columns ['id'] drops the unique_key column(s) ['id']. Fix: keep the key"
            " in the target.",
        ),
        (
            {"sequence_by": ["id", "lsn"]},
            {},
            "cdc.sequence_by ['id', 'lsn'] names the unique_key column(s) ['id']. Fix: order"
            " changes by a log position or a change time.",
        ),
        (
            {"sequence_by": "lsn", "keys": ["id"]},
            {},
            "cdc ['keys'] has unknown key(s); sqlflow reads sequence_by, operation,"
            " apply_as_deletes, apply_as_truncates, ignore_null_updates, columns,"
            " except_columns, stored_as, track_history_columns, tombstone_retention,"
            " debezium. Fix: remove or rename them.",
        ),
        (
            {"sequence_by": "lsn"},
            {"dedupe_by": "lsn"},
            "dedupe_by 'lsn' cannot be used with incremental_strategy 'cdc'. Fix: cdc applies"
            " every change in cdc.sequence_by order; remove dedupe_by.",
        ),
        (
            {"sequence_by": "lsn"},
            {"on_schema_change": "append_new_columns"},
            "on_schema_change 'append_new_columns' is not supported with incremental_strategy"
            " 'cdc' (the target's columns are not the feed's). Fix: set"
            " on_schema_change='ignore' and run with --full-refresh after a change of the"
            " target's columns.",
        ),
    ],
)
def test_error_texts(cdc_config: Any, raw: dict[str, Any], expected: str) -> None:
    assert problems(cdc_config, **raw) == [expected]


def test_a_bad_debezium_value() -> None:
    assert problems({"debezium": 1}) == [
        "cdc.debezium 1 must be true (the model selects before, after, op, source) or the"
        " name of the column holding the envelope. Fix: write cdc.debezium=true or"
        " cdc.debezium='value'.",
        "cdc.sequence_by is required by incremental_strategy 'cdc'. Fix: set"
        " cdc.sequence_by to the column (or list of columns) giving the order of changes,"
        " e.g. {'sequence_by': ['commit_lsn', 'lsn']}.",
    ]


def test_event_time_must_reach_the_target() -> None:
    found = problems({"sequence_by": "changed_at"}, event_time="changed_at")
    assert found == [
        "event_time 'changed_at' does not reach the cdc target (it is a sequence or operation"
        " column, or left out by cdc.columns / cdc.except_columns). Fix: window on a column"
        " the target keeps, or list it in cdc.columns."
    ]


def test_cdc_on_another_strategy_and_unique_key_missing_gathered() -> None:
    with pytest.raises(DbtConfigError) as info:
        SqlflowConfig.parse(
            MODEL, {"incremental_strategy": "merge", "unique_key": "id", "cdc": {}}, COLUMNS
        )
    assert "cdc {} is set, but incremental_strategy is 'merge'" in str(info.value.msg)
    with pytest.raises(DbtConfigError) as info:
        SqlflowConfig.parse(
            MODEL, {"incremental_strategy": "cdc", "cdc": {"sequence_by": "x"}}, COLUMNS
        )
    text = str(info.value.msg)
    assert "has 2 configuration errors" in text
    assert "unique_key is required by incremental_strategy 'cdc'" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7 days", timedelta(days=7)),
        ("1 week", timedelta(weeks=1)),
        (" 30 minutes ", timedelta(minutes=30)),
        ("12 hour", timedelta(hours=12)),
        (3600, timedelta(hours=1)),
        (0, None),
        ("0 days", None),
        (True, None),
        ("soon", None),
        (1.5, None),
    ],
)
def test_parse_retention(value: Any, expected: timedelta | None) -> None:
    assert cdc.parse_retention(value) == expected


def test_target_columns_drop_the_sequence_and_operation() -> None:
    spec = parse({"sequence_by": ["lsn", "serial"], "operation": "op"}).cdc
    assert cdc.target_columns(spec, ("id",), list(COLUMNS)) == [
        "id",
        "name",
        "email",
        "changed_at",
    ]
    chosen = parse({"sequence_by": "lsn", "columns": ["email", "lsn"]}).cdc
    assert cdc.target_columns(chosen, ("id",), list(COLUMNS)) == ["id", "email", "lsn"]
    excepted = parse({"sequence_by": "lsn", "except_columns": ["email"]}).cdc
    assert cdc.target_columns(excepted, ("id",), list(COLUMNS)) == [
        "id",
        "name",
        "serial",
        "op",
        "changed_at",
    ]


FEED = (
    "select * from (values (1, 'x', 'a', 5, 1, 'u', null::timestamp),"
    " (2, 'y', 'b', 5, 2, 'r', null), (3, 'z', 'c', 6, 1, 'd', null),"
    " (null, null, null, 7, 1, 't', null), (4, 'w', 'd', 8, 1, '?', null),"
    " (5, 'v', 'e', 9, 1, null, null))"
    " as f(id, name, email, lsn, serial, op, changed_at)"
)


def test_layout_normalises_each_event_in_duckdb() -> None:
    spec = parse({"sequence_by": ["lsn", "serial"], "operation": "op"}).cdc
    shape = cdc.layout(spec, ("id",), list(COLUMNS))
    assert shape.columns == ('"id"', '"name"', '"email"', '"changed_at"')
    assert shape.values == ('"name"', '"email"', '"changed_at"')
    found = duckdb.sql(
        f"select id, sqlflow_seq, sqlflow_rank, sqlflow_op, {cdc.UNKNOWN_OP_SQL},"
        f" case when {cdc.UNKNOWN_OP_SQL} then {cdc.UNKNOWN_OP_VALUE_SQL} end,"
        f" ({cdc.sequence_null_sql(spec)})"
        f" from (select {shape.stage_select} from ({FEED}))"
    ).fetchall()
    # An operation value the config does not name (here '?', and NULL) is kept behind
    # cdc.UNKNOWN_OP, for the error that names it.
    assert found == [
        (1, {"lsn": 5, "serial": 1}, 1, "upsert", False, None, False),
        (2, {"lsn": 5, "serial": 2}, 0, "upsert", False, None, False),
        (3, {"lsn": 6, "serial": 1}, 1, "delete", False, None, False),
        (None, {"lsn": 7, "serial": 1}, 1, "truncate", False, None, False),
        (4, {"lsn": 8, "serial": 1}, 1, "??", True, "?", False),
        (5, {"lsn": 9, "serial": 1}, 1, None, True, None, False),
    ]


@pytest.mark.parametrize(
    ("cdc_config", "order"),
    [
        ({"sequence_by": "lsn", "operation": "op"}, "hugeint"),
        ({"sequence_by": "serial", "operation": "op"}, "hugeint"),
        ({"sequence_by": "changed_at", "operation": "op"}, "epoch"),
        ({"sequence_by": "name", "operation": "op"}, "struct"),
        ({"sequence_by": ["lsn", "serial"], "operation": "op"}, "struct"),
        ({"sequence_by": "name", "apply_as_deletes": "op = 'd'"}, "sequence"),
        ({"sequence_by": "lsn", "operation": {"column": "op", "snapshot": []}}, "sequence"),
    ],
    ids=["bigint", "integer", "timestamp", "varchar", "two-columns", "no-op-column", "no-snapshot"],
)
def test_a_key_s_events_are_ordered_by_a_scalar_where_one_orders_as_the_struct(
    cdc_config: dict[str, Any], order: str
) -> None:
    """The order of (sequence, snapshot read first): a STRUCT in general, the sequence when
    no event is a snapshot read, ``sequence * 2 + rank`` for one integer or timestamp."""
    spec = parse(cdc_config).cdc
    found = cdc.layout(spec, ("id",), list(COLUMNS), COLUMNS).order
    expected = {
        "hugeint": "(cast(s.sqlflow_seq as hugeint) * 2 + s.sqlflow_rank)",
        "epoch": "(cast(epoch_us(s.sqlflow_seq) as hugeint) * 2 + s.sqlflow_rank)",
        "struct": STRUCT_ORDER,
        "sequence": "s.sqlflow_seq",
    }[order]
    assert found == expected
    # Without the column types only the STRUCT (or the bare sequence) is safe.
    untyped = cdc.layout(spec, ("id",), list(COLUMNS)).order
    assert untyped == (expected if order == "sequence" else STRUCT_ORDER)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.integers(0, 3),  # key
            st.integers(-(2**62), 2**62),  # sequence (BIGINT)
            st.integers(0, 1),  # rank: 0 a snapshot read
        ),
        min_size=1,
        max_size=40,
        unique=True,
    ),
    as_timestamp=st.booleans(),
)
def test_the_scalar_order_picks_the_same_last_event_as_the_struct(
    events: list[tuple[int, int, int]], as_timestamp: bool
) -> None:
    """DuckDB's arg_max over the scalar order and over the STRUCT pick the same event for
    every key, and the same greatest sequence (as BIGINT and as a microsecond timestamp)."""
    if as_timestamp:
        events = [(k, seq % (2**50), rank) for k, seq, rank in events]
        events = list({(k, seq, rank): None for k, seq, rank in events})
    seq = "make_timestamp(seq)" if as_timestamp else "seq"
    spec = parse({"sequence_by": "changed_at" if as_timestamp else "lsn", "operation": "op"}).cdc
    scalar = cdc.order_sql(spec, COLUMNS)
    struct = STRUCT_ORDER
    assert scalar != struct
    rows = ", ".join(f"({k}, {s_}, {r}, {n})" for n, (k, s_, r) in enumerate(events))
    sql = (
        "select k, arg_max(n, {order}), max(sqlflow_seq) from (select k, n, sqlflow_rank,"
        f" {seq} as sqlflow_seq from (values {rows}) as v(k, seq, sqlflow_rank, n)) as s"
        " group by k order by k"
    )
    assert (
        duckdb.sql(sql.format(order=scalar)).fetchall()
        == duckdb.sql(sql.format(order=struct)).fetchall()
    )


def test_conditions_instead_of_an_operation_column() -> None:
    spec = parse(
        {
            "sequence_by": "lsn",
            "apply_as_deletes": "op = 'd'",
            "apply_as_truncates": "op = 't'",
            "ignore_null_updates": True,
        }
    ).cdc
    shape = cdc.layout(spec, ("id",), list(COLUMNS))
    assert spec.has_truncates
    assert shape.ignore_nulls == shape.values
    found = duckdb.sql(
        f"select sqlflow_op, sqlflow_rank, sqlflow_seq from (select {shape.stage_select}"
        f" from ({FEED}))"
    ).fetchall()
    assert [r[0] for r in found] == ["upsert", "upsert", "delete", "truncate", "upsert", "upsert"]
    assert {r[1] for r in found} == {1}
    assert cdc.operation_sql(parse({"sequence_by": "lsn"}).cdc) == "'upsert'"
    assert not parse({"sequence_by": "lsn"}).cdc.has_truncates


def test_jinja_plan_carries_the_layout() -> None:
    config = parse({"sequence_by": "lsn", "operation": "op", "stored_as": "scd2"})
    plan = jinja_plan("abcdef0123456789", config, LoadPlan("incremental"), COLUMNS, '"l"')
    settings = plan["cdc"]
    assert settings["ledger"] == '"l"'
    assert settings["stored_as"] == "scd2"
    assert settings["tracked"] == ['"name"', '"email"', '"serial"', '"changed_at"']
    assert settings["changes"] == '"sqlflow_cdc_changes_abcdef012345"'
    assert variants(config) == (Variant("cdc"),)
    assert jinja_plan("x", parse({"sequence_by": "lsn"}), LoadPlan("build"))["cdc"]["columns"] == []


def test_feed_problems_name_keys_values_and_fixes() -> None:
    spec = parse({"sequence_by": "lsn", "operation": "op"}).cdc
    assert (
        cdc.feed_problems(
            MODEL,
            ("id",),
            spec,
            null_keys=0,
            null_sequences=[],
            null_sequence_rows=0,
            unknown_operations=[],
            conflicts=[],
            conflict_keys=0,
        )
        is None
    )
    text = cdc.feed_problems(
        MODEL,
        ("id",),
        spec,
        null_keys=2,
        null_sequences=[(7,)],
        null_sequence_rows=3,
        unknown_operations=[("x", 4)],
        conflicts=[(5, 100)],
        conflict_keys=1,
    )
    assert text == (
        f"sqlflow_incremental model '{MODEL}': the change events cannot be applied."
        " 2 event(s) have a null in the key column(s) id. Filter them out in the model or"
        " fill the key."
        " 3 event(s) have a NULL in cdc.sequence_by (lsn), e.g. of the key(s) id=7: their"
        " order is unknown. Fill the sequence in the model (e.g. coalesce with a log"
        " position) or filter those events out."
        " cdc.operation column op holds value(s) the config does not name: 'x' (4 rows)"
        " (named: insert=['c'], update=['u'], delete=['d'], truncate=['t'], snapshot=['r'])."
        " Map them in cdc.operation, e.g. {'column': ..., 'update': ['u', 'U']}, or filter"
        " them out in the model."
        " 1 key(s) have different changes with the same sequence (lsn), e.g. id=5 at"
        " sequence 100: which one applies last is undefined. Add a column to"
        " cdc.sequence_by that orders them (e.g. a serial within the transaction), or fix"
        " the duplicates upstream (identical events are applied once)."
        " Nothing was written."
    )


def test_ledger_names_are_per_relation() -> None:
    a = cdc.ledger_table_name('"db"."main"."customers"')
    b = cdc.ledger_table_name('"db"."other"."customers"')
    assert a.startswith("cdc_customers_") and b.startswith("cdc_customers_") and a != b
    assert cdc.ledger_table_name('"db"."main"."a-b c"').startswith("cdc_a_b_c_")


FLAT = {
    "id": "INTEGER",
    "name": "VARCHAR",
    cdc.DBZ_OP: "VARCHAR",
    cdc.DBZ_COMMIT: "UBIGINT",
    cdc.DBZ_LSN: "UBIGINT",
}


def test_debezium_derives_sequence_and_operation() -> None:
    config = SqlflowConfig.parse(
        MODEL, {**BASE, "cdc": {"debezium": True, "stored_as": "scd2"}}, FLAT
    )
    spec = config.cdc
    assert spec.debezium == ""
    assert spec.sequence_by == (cdc.DBZ_COMMIT, cdc.DBZ_LSN)
    assert spec.operation == cdc.DBZ_OP
    assert cdc.target_columns(spec, ("id",), list(FLAT)) == ["id", "name"]
    assert cdc.envelope_of({"debezium": "value"}) == "value"
    assert cdc.envelope_of({"debezium": False}) is None
    assert cdc.envelope_of("x") is None
    with pytest.raises(DbtConfigError) as info:
        SqlflowConfig.parse(MODEL, {**BASE, "cdc": {"debezium": True, "sequence_by": "lsn"}}, FLAT)
    assert (
        "cdc.sequence_by 'lsn' cannot be combined with cdc.debezium (the envelope's op and"
        " source position give them). Fix: remove cdc.sequence_by."
    ) in str(info.value.msg)


ENVELOPES = (
    "select * from (values"
    " ({'id': 1, 'name': 'a'}, null::STRUCT(id INTEGER, name VARCHAR), 'c',"
    "  {'lsn': 10, 'sequence': '[\"5\",\"10\"]'}),"
    " (null, {'id': 1, 'name': 'a'}, 'd', {'lsn': 12, 'sequence': '[null,\"12\"]'}),"
    " (null, null, 't', {'lsn': 14, 'sequence': null}))"
    " as e(after, before, op, source)"
)


def test_struct_envelopes_flatten_in_duckdb() -> None:
    con = duckdb.connect()
    columns = dict((r[0], r[1]) for r in con.sql(f"describe {ENVELOPES}").fetchall())
    flat = cdc.debezium_feed_sql(ENVELOPES, columns, "")
    assert con.sql(flat).fetchall() == [
        (1, "a", "c", 5, 10),
        (1, "a", "d", 12, 12),
        (None, None, "t", 14, 14),
    ]
    assert not cdc.envelope_is_json(columns, "")
    one = (
        "select struct_pack(after := after, before := before, op := op, source := source)"
        f" as v from ({ENVELOPES})"
    )
    columns = dict((r[0], r[1]) for r in con.sql(f"describe {one}").fetchall())
    assert con.sql(cdc.debezium_feed_sql(one, columns, "v")).fetchall() == [
        (1, "a", "c", 5, 10),
        (1, "a", "d", 12, 12),
        (None, None, "t", 14, 14),
    ]


def test_json_envelopes_flatten_in_duckdb() -> None:
    con = duckdb.connect()
    wrapped = (
        'select * from (values (\'{"payload": {"after": {"id": 2, "name": "b"},'
        ' "before": null, "op": "u", "source": {"lsn": 30,'
        ' "sequence": "[\\"20\\",\\"30\\"]"}}}\'::json)) as e(value)'
    )
    structure = con.sql(cdc.debezium_image_sql(wrapped, "value")).fetchall()[0][0]
    assert json.loads(structure) == {"id": "UBIGINT", "name": "VARCHAR"}
    columns = {"value": "JSON"}
    assert cdc.envelope_is_json(columns, "value")
    flat = cdc.debezium_feed_sql(
        wrapped,
        columns,
        "value",
        cdc.json_image_structure([("id", "INTEGER"), ("name", "VARCHAR")]),
    )
    assert con.sql(flat).fetchall() == [(2, "b", "u", 20, 30)]
