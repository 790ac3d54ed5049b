"""Strategy choice (every ``auto`` rule) and the key-problem messages of a batch."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from dbt_common.exceptions import DbtRuntimeError
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.strategies import (
    BITMAP_MAX_SPAN,
    BITMAP_SPAN_PER_ROW,
    KEYED_STRATEGIES,
    REGISTRY,
    STRATEGY_NAMES,
    BatchFacts,
    CountRole,
    MergeForm,
    StrategyChoice,
    choose_strategy,
    count_duplicate_keys,
    get_strategy,
    is_keyed,
    key_problems,
    merge_form,
    needs_matched_keys,
    raise_key_problems,
    resolve_static,
    target_duplicates,
)

MODEL = "model.proj.orders"
COLUMNS = {"id": "INTEGER", "region": "VARCHAR", "v": "VARCHAR", "event_ts": "TIMESTAMP"}
DAY = {"field": "event_ts", "granularity": "day"}
SNAPSHOT = {"strategy": "check", "check_cols": "all"}


def config(**raw: Any) -> SqlflowConfig:
    return SqlflowConfig.parse(MODEL, raw, COLUMNS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"unique_key": "id", "snapshot": SNAPSHOT},
            StrategyChoice("snapshot", "snapshot config present"),
            id="auto-snapshot",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": SNAPSHOT, "partition_by": "region"},
            StrategyChoice("snapshot", "snapshot config present"),
            id="auto-snapshot-beats-partition",
        ),
        pytest.param(
            {"partition_by": DAY},
            StrategyChoice("insert_overwrite", "partition_by set without unique_key"),
            id="auto-time-partition",
        ),
        pytest.param(
            {"partition_by": "region"},
            StrategyChoice("insert_overwrite", "partition_by set without unique_key"),
            id="auto-value-partition",
        ),
        pytest.param(
            {}, StrategyChoice("append", "no unique_key, no partition_by"), id="auto-nothing"
        ),
        pytest.param(
            {"event_time": "event_ts"},
            StrategyChoice("append", "no unique_key, no partition_by"),
            id="auto-event-time-only",
        ),
        pytest.param({"unique_key": "id"}, None, id="auto-key-needs-data"),
        pytest.param(
            {"unique_key": "id", "partition_by": DAY}, None, id="auto-key-and-partition-needs-data"
        ),
        pytest.param(
            {"incremental_strategy": "merge", "unique_key": "id"},
            StrategyChoice("merge", "configured"),
            id="merge",
        ),
        pytest.param(
            {"incremental_strategy": "delete+insert", "unique_key": "id"},
            StrategyChoice("delete+insert", "configured"),
            id="delete-insert",
        ),
        pytest.param(
            {"incremental_strategy": "append", "unique_key": "id"},
            StrategyChoice("append", "configured"),
            id="append-with-key",
        ),
        pytest.param(
            {"incremental_strategy": "insert_overwrite", "partition_by": "region"},
            StrategyChoice("insert_overwrite", "configured"),
            id="insert-overwrite",
        ),
    ],
)
def test_resolve_static(raw: dict[str, Any], expected: StrategyChoice | None) -> None:
    assert resolve_static(config(**raw)) == expected


@pytest.mark.parametrize(
    ("raw", "facts", "expected"),
    [
        pytest.param(
            {"unique_key": "id"},
            BatchFacts(rows=10_000, matched_keys=1_204),
            StrategyChoice("merge", "unique_key set, 1,204 of 10,000 batch keys exist"),
            id="auto-merge-when-keys-exist",
        ),
        pytest.param(
            {"unique_key": ["id", "region"], "partition_by": DAY},
            BatchFacts(rows=3, matched_keys=3),
            StrategyChoice("merge", "unique_key set, 3 of 3 batch keys exist"),
            id="auto-merge-partitioned",
        ),
        pytest.param(
            {"unique_key": "id"},
            BatchFacts(rows=2, matched_keys=0),
            StrategyChoice(
                "append", "unique_key set, 0 of 2 batch keys exist: plain insert", plain_insert=True
            ),
            id="auto-plain-insert-when-no-key-exists",
        ),
        pytest.param(
            {"unique_key": "id"},
            BatchFacts(rows=5, matched_keys=None, target_exists=False),
            StrategyChoice(
                "append", "unique_key set, 0 of 5 batch keys exist: plain insert", plain_insert=True
            ),
            id="auto-plain-insert-without-target",
        ),
        pytest.param(
            {"incremental_strategy": "merge", "unique_key": "id"},
            BatchFacts(rows=4, matched_keys=3),
            StrategyChoice("merge", "unique_key set, 3 of 4 batch keys exist"),
            id="merge-with-matches",
        ),
        pytest.param(
            {"incremental_strategy": "merge", "unique_key": "id"},
            BatchFacts(rows=2, matched_keys=0),
            StrategyChoice(
                "merge", "unique_key set, 0 of 2 batch keys exist: plain insert", plain_insert=True
            ),
            id="merge-all-new-is-plain-insert",
        ),
        pytest.param(
            {"unique_key": "id", "snapshot": SNAPSHOT},
            BatchFacts(rows=2, matched_keys=0),
            StrategyChoice("snapshot", "snapshot config present"),
            id="auto-snapshot-ignores-facts",
        ),
        pytest.param(
            {"partition_by": "region"},
            BatchFacts(rows=2, matched_keys=None),
            StrategyChoice("insert_overwrite", "partition_by set without unique_key"),
            id="auto-insert-overwrite-ignores-facts",
        ),
        pytest.param(
            {},
            BatchFacts(rows=0),
            StrategyChoice("append", "no unique_key, no partition_by"),
            id="auto-append-ignores-facts",
        ),
        pytest.param(
            {"incremental_strategy": "delete+insert", "unique_key": "id"},
            BatchFacts(rows=2, matched_keys=0),
            StrategyChoice("delete+insert", "configured"),
            id="delete-insert-never-plain",
        ),
    ],
)
def test_choose_strategy(raw: dict[str, Any], facts: BatchFacts, expected: StrategyChoice) -> None:
    assert choose_strategy(config(**raw), facts) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"unique_key": "id"}, True),
        ({"incremental_strategy": "merge", "unique_key": "id"}, True),
        ({"incremental_strategy": "delete+insert", "unique_key": "id"}, False),
        ({"incremental_strategy": "append", "unique_key": "id"}, False),
        ({}, False),
        ({"partition_by": "region"}, False),
    ],
)
def test_needs_matched_keys(raw: dict[str, Any], expected: bool) -> None:
    assert needs_matched_keys(config(**raw)) is expected


HEAD = f"sqlflow_incremental model '{MODEL}': the batch cannot be loaded by key"
DEDUPE_FIX = (
    "Set dedupe_by (e.g. dedupe_by='updated_at') to keep the last row per key,"
    " or fix the duplicates upstream."
)


@pytest.mark.parametrize(
    ("key", "facts", "expected"),
    [
        pytest.param(
            ("id",),
            {"null_key_rows": 0, "duplicate_keys": 2, "samples": [(1, 3), (3, 2)]},
            f"{HEAD} (id). 2 key value(s) occur more than once in the batch, e.g."
            f" id=1 (3 rows); id=3 (2 rows). {DEDUPE_FIX} Nothing was written.",
            id="duplicates",
        ),
        pytest.param(
            ("id", "region"),
            {
                "null_key_rows": 3,
                "duplicate_keys": 0,
                "samples": [],
                "tied_keys": 7,
                "tied_samples": [(1, "eu", 3), (2, "us", 2)],
                "dedupe_by": ("updated_at", "seq desc"),
            },
            f"{HEAD} (id, region). 7 key value(s) have different rows tied for last by"
            " dedupe_by (updated_at, seq desc), e.g. (id=1, region='eu') (3 rows);"
            " (id=2, region='us') (2 rows): which of them to keep is undefined. Add a column"
            " to dedupe_by that breaks the tie (e.g. dedupe_by=['updated_at', 'seq desc',"
            " 'seq']), or fix the duplicates upstream (rows equal in every column are kept"
            " once). 3 row(s) have a null in the key column(s) id, region. Filter them out"
            " in the model or fill the key. Nothing was written.",
            id="dedupe-ties-and-nulls",
        ),
        pytest.param(
            ("code",),
            {"null_key_rows": 0, "duplicate_keys": 1, "samples": [("a'b", 2)]},
            f"{HEAD} (code). 1 key value(s) occur more than once in the batch, e.g."
            f""" code="a'b" (2 rows). {DEDUPE_FIX} Nothing was written.""",
            id="string-key-repr",
        ),
        pytest.param(
            ("id", "region"),
            {
                "null_key_rows": 0,
                "duplicate_keys": 12_345,
                "samples": [(1, "eu", 4), (2, "us", 2)],
            },
            f"{HEAD} (id, region). 12,345 key value(s) occur more than once in the batch, e.g."
            f" (id=1, region='eu') (4 rows); (id=2, region='us') (2 rows). {DEDUPE_FIX}"
            " Nothing was written.",
            id="composite-key-thousands",
        ),
        pytest.param(
            ("id",),
            {"null_key_rows": 1_500, "duplicate_keys": 0, "samples": []},
            f"{HEAD} (id). 1,500 row(s) have a null in the key column(s) id. Filter them out in"
            " the model or fill the key. Nothing was written.",
            id="null-keys",
        ),
        pytest.param(
            ("id", "region"),
            {"null_key_rows": 2, "duplicate_keys": 1, "samples": [(7, "eu", 2)]},
            f"{HEAD} (id, region). 1 key value(s) occur more than once in the batch, e.g."
            f" (id=7, region='eu') (2 rows). {DEDUPE_FIX} 2 row(s) have a null in the key"
            " column(s) id, region. Filter them out in the model or fill the key."
            " Nothing was written.",
            id="both",
        ),
    ],
)
def test_key_problems(key: tuple[str, ...], facts: dict[str, Any], expected: str) -> None:
    assert key_problems(MODEL, key, **facts) == expected
    with pytest.raises(DbtRuntimeError) as info:
        raise_key_problems(MODEL, key, **facts)
    assert info.value.msg == expected


def test_no_key_problems() -> None:
    assert key_problems(MODEL, ("id",), null_key_rows=0, duplicate_keys=0, samples=[]) is None
    # Returns normally: nothing to refuse.
    assert raise_key_problems(MODEL, ("id",), null_key_rows=0, duplicate_keys=0, samples=[]) is None


def test_target_duplicates_message() -> None:
    message = target_duplicates("model.shop.orders", ("order_id",), '"db"."main"."orders"', 3, 5)
    assert message == (
        "sqlflow_incremental model 'model.shop.orders': the merge on unique_key (order_id)"
        ' matched 3 key value(s) of the batch to 5 rows of "db"."main"."orders", so the target'
        " holds 2 extra row(s) with an existing key: unique_key is not unique in the target"
        ' table. Find them with `select order_id, count(*) from "db"."main"."orders" group by'
        " all having count(*) > 1`, then rebuild the table (dbt run --full-refresh -s orders)"
        " or choose a key that is unique. Nothing was written."
    )


@pytest.mark.parametrize(("matched", "deleted"), [(0, 0), (4, 4)])
def test_target_duplicates_none_when_one_row_per_key(matched: int, deleted: int) -> None:
    assert target_duplicates("model.shop.orders", ("order_id",), "t", matched, deleted) is None


@pytest.mark.parametrize("pass_rows", [1_000_000, 1000, 7, 1])
def test_count_duplicate_keys_is_exact_in_any_number_of_passes(pass_rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    # 1,000 keys (a, b): 37 of them twice, 5 three times, plus null keys (not counted).
    con.execute(
        "create table t as select range % 10 as a, range // 10 as b from range(1000)"
        " union all select range % 10, range // 10 from range(37)"
        " union all select range % 10, range // 10 from range(900, 905)"
        " union all select range % 10, range // 10 from range(900, 905)"
        " union all select null, 1 from range(3)"
    )

    def run(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    rows = run("select count(*) from t")[0][0]
    found = count_duplicate_keys(
        run, "t", ['"a"', '"b"'], '"a" is null or "b" is null', rows, pass_rows=pass_rows
    )
    assert found == 42


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(min_value=-300, max_value=300)), max_size=60),
    kind=st.sampled_from(["tinyint", "integer", "bigint", "ubigint", "varchar", "double"]),
    spread=st.sampled_from([1, 10**9]),
)
def test_count_duplicate_keys_of_one_column_is_exact(
    values: list[int | None], kind: str, spread: int
) -> None:
    # One key column of any type, dense or sparse (spread): the bitmap proves a dense
    # integer key unique; every other case, and a repeated value, is counted by sorting.
    import duckdb

    if kind in ("tinyint", "ubigint"):
        values = [None if v is None else abs(v) % 100 for v in values]
    con = duckdb.connect()
    con.execute(f"create table t (k {kind})")
    cast = [
        None if v is None else (v * spread if kind in ("bigint", "double") else v) for v in values
    ]
    if cast:
        con.executemany("insert into t values (?)", [[v] for v in cast])
    statements: list[str] = []

    def run(sql: str) -> list[tuple]:
        statements.append(sql)
        return con.execute(sql).fetchall()

    rows = len(values)
    found = count_duplicate_keys(run, "t", ['"k"'], '"k" is null', rows)
    present = [v for v in cast if v is not None]
    expected = sum(1 for v in set(present) if present.count(v) > 1)
    assert found == expected
    # The bitmap ran exactly for an integer key whose range is narrow enough.
    integer = kind in ("tinyint", "integer", "bigint", "ubigint")
    span = max(present) - min(present) + 1 if present else 0
    narrow = span <= min(BITMAP_MAX_SPAN, BITMAP_SPAN_PER_ROW * len(present))
    assert any("bitstring_agg" in sql for sql in statements) == (
        integer and narrow and bool(present)
    )


# -- the registry: what each strategy is -------------------------------------------------------

REGISTRY_TABLE = {
    # name: (keyed, rereads_window, replaces_window, writes_when_empty, may_skip_staging,
    #        judges_empty_windows, macro)
    "append": (False, False, False, False, True, True, "get_sqlflow_append_sql"),
    "merge": (True, True, False, False, False, True, "get_sqlflow_merge_sql"),
    "delete+insert": (True, True, False, False, False, True, "get_sqlflow_delete_insert_sql"),
    "insert_overwrite": (False, True, True, True, True, True, "get_sqlflow_insert_overwrite_sql"),
    "snapshot": (True, True, False, True, False, False, "get_sqlflow_snapshot_sql"),
    "cdc": (True, True, False, False, False, True, "get_sqlflow_cdc_sql"),
}


def test_registry_holds_exactly_the_listed_strategies() -> None:
    assert list(REGISTRY) == list(REGISTRY_TABLE)
    assert STRATEGY_NAMES == (*REGISTRY_TABLE, "auto")
    assert KEYED_STRATEGIES == ("merge", "delete+insert", "snapshot", "cdc")


@pytest.mark.parametrize(("name", "expected"), REGISTRY_TABLE.items())
def test_registry_record(name: str, expected: tuple[Any, ...]) -> None:
    s = REGISTRY[name]
    assert s.name == name
    assert get_strategy(name) is s
    assert (
        s.keyed,
        s.rereads_window,
        s.replaces_window,
        s.writes_when_empty,
        s.may_skip_staging,
        s.judges_empty_windows,
        s.macro,
    ) == expected
    assert s.change_feed is (name == "cdc")


def installed_macros() -> set[str]:
    """Names of the macros the installed package ships."""
    from dbt.include.sqlflow import PACKAGE_PATH

    found: set[str] = set()
    for path in Path(PACKAGE_PATH, "macros").rglob("*.sql"):
        found |= set(re.findall(r"{%-?\s*macro\s+(\w+)\s*\(", path.read_text()))
    return found


def test_every_strategy_macro_is_shipped_with_a_dispatch_implementation() -> None:
    macros = installed_macros()
    for strategy in REGISTRY.values():
        assert strategy.macro in macros
        assert f"sqlflow__{strategy.macro}" in macros


def test_a_strategy_record_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["append"].keyed = True  # type: ignore[misc]


KNOWN = (
    "append, merge, delete+insert, insert_overwrite, snapshot, cdc"
    " ('auto' chooses one of them per batch)"
)


@pytest.mark.parametrize("name", ["upsert", "Merge", "delete_insert", "", "auto"])
def test_get_strategy_error(name: str) -> None:
    # 'auto' has no record: it is a choice among the records, made per batch.
    with pytest.raises(DbtRuntimeError) as info:
        get_strategy(name)
    assert info.value.msg == (
        f"sqlflow: unknown incremental strategy {name!r}; known: {KNOWN}."
        " Set incremental_strategy to one of them."
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, False),
        ({"partition_by": "region"}, False),
        ({"incremental_strategy": "append"}, False),
        ({"unique_key": "id"}, True),
        ({"unique_key": ["id", "region"], "partition_by": DAY}, True),
        ({"incremental_strategy": "merge", "unique_key": "id"}, True),
        ({"incremental_strategy": "delete+insert", "unique_key": "id"}, True),
        ({"incremental_strategy": "snapshot", "unique_key": "id", "snapshot": SNAPSHOT}, True),
        # A key that the strategy does not write by is not checked.
        ({"incremental_strategy": "append", "unique_key": "id"}, False),
        (
            {"incremental_strategy": "insert_overwrite", "unique_key": "id", "partition_by": DAY},
            False,
        ),
    ],
)
def test_is_keyed(raw: dict[str, Any], expected: bool) -> None:
    assert is_keyed(config(**raw)) is expected


@pytest.mark.parametrize(
    ("key", "batch", "target", "update", "exclude", "expected"),
    [
        # Every column of every matched row replaced: delete + insert.
        (["id"], ["id", "v", "w"], ["id", "v", "w"], None, None, MergeForm.DELETE_INSERT),
        (["ID"], ["Id", "V"], ["id", "v"], None, None, MergeForm.DELETE_INSERT),
        (["id"], ["id", "v", "w"], ["id", "v"], None, None, MergeForm.DELETE_INSERT),
        (["id"], ["id", "v"], ["id", "v"], [], [], MergeForm.DELETE_INSERT),
        # Some columns kept: MERGE ... UPDATE.
        (["id"], ["id", "v", "w"], ["id", "v", "w"], ["v"], None, MergeForm.MERGE),
        (["id"], ["id", "v", "w"], ["id", "v", "w"], None, ["w"], MergeForm.MERGE),
        (["id"], ["id", "v", "w"], ["id", "v", "w"], ["v", "w"], None, MergeForm.MERGE),
        # A target column the batch lacks (on_schema_change kept it) keeps its values.
        (["id"], ["id", "v"], ["id", "v", "note"], None, None, MergeForm.MERGE),
        # Nothing to update: a MERGE that only inserts.
        (["id"], ["id"], ["id"], None, None, MergeForm.INSERT_ONLY),
        (["a", "B"], ["A", "b"], ["a", "b"], None, None, MergeForm.INSERT_ONLY),
        (["id"], ["id", "v", "w"], ["id", "v", "w"], None, ["V", "w"], MergeForm.INSERT_ONLY),
        (["id"], ["id", "v"], ["id", "v"], ["ID"], None, MergeForm.INSERT_ONLY),
    ],
)
def test_merge_form(
    key: list[str],
    batch: list[str],
    target: list[str],
    update: list[str] | None,
    exclude: list[str] | None,
    expected: MergeForm,
) -> None:
    assert merge_form(key, batch, target, update, exclude) is expected


def test_count_role_and_merge_form_values() -> None:
    # The strategy macros name them by value (``'count': 'replaced'``).
    assert {r.name: r.value for r in CountRole} == {
        "INSERTED": "inserted",
        "UPDATED": "updated",
        "DELETED": "deleted",
        "MERGED": "merged",
        "REPLACED": "replaced",
        "UPSERTED": "upserted",
        "IGNORED": "ignored",
        "NONE": "none",
    }
    assert CountRole("upserted") is CountRole.UPSERTED
    assert CountRole.REPLACED == "replaced"
    assert {f.name: f.value for f in MergeForm} == {
        "DELETE_INSERT": "delete_insert",
        "MERGE": "merge",
        "INSERT_ONLY": "insert_only",
    }
    with pytest.raises(ValueError, match="'counted' is not a valid CountRole"):
        CountRole("counted")


def test_count_roles_used_by_the_shipped_strategy_macros_are_known() -> None:
    from dbt.include.sqlflow import PACKAGE_PATH

    used: set[str] = set()
    for path in Path(PACKAGE_PATH, "macros", "strategies").glob("*.sql"):
        used |= set(re.findall(r"'count':\s*'(\w+)'", path.read_text()))
    assert used <= {r.value for r in CountRole}
    assert {"inserted", "deleted", "replaced", "upserted"} <= used
