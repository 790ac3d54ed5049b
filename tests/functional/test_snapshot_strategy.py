"""The snapshot strategy against dbt's own snapshots, side by side in one project.

Each ``sqlflow_incremental`` snapshot model has a dbt ``snapshot`` twin with the same
settings. After every source state, ``dbt run`` and ``dbt snapshot`` run and each pair must
hold the same rows. Values from the source (``updated_at`` and the hashes of it) are compared
as they are; snapshot times, which differ between the two runs, are compared by their rank
order within each table, and every ``dbt_scd_id`` is checked to be dbt's hash of what it
must hash (the key and ``dbt_updated_at``, or the closed version's id and the deletion time).
The source states are one scenario; each test checks one behaviour of one pair in every state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from dbt.tests.util import run_dbt
from sqlflow_testing import Scenario, Step, raw_sources_yml, rows, run_results, table_hash

T0, T1, T2, T3, T5 = (datetime(2024, 1, d) for d in (1, 2, 3, 4, 6))
DATA_TIMES = {T0, T1, T2, T3, T5}
VALID_TO_CURRENT = datetime(9999, 12, 31)
META = ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to", "dbt_is_deleted")

# (label, rows of src as (id, name, status, updated_at)).
S2 = [(1, "a", "open", T2), (2, "b", "new", T1), (3, "C", "new", T2), (4, "d", "new", T2)]
S3 = [r for r in S2 if r[0] != 2]
S5 = [(1, "a", "open", T2), (2, "b", "new", T1), (3, "C", "new", T2), (4, "d", "new", T3)]
S6 = [(1, "a", "closed", T2), (2, "b", "new", T1), (3, "C2", "new", T2), (4, "d", "new", T3)]
S7 = [r for r in S6 if r[0] in (1, 3)]
STATES = [
    ("initial", [(1, "a", "new", T1), (2, "b", "new", T1), (3, "c", "new", T1)]),
    ("changes and a new key", S2),
    ("a delete", S3),
    ("unchanged, a key deleted", S3),
    ("re-insert of the deleted key, an updated_at-only change", S5),
    ("a change of check columns only", S6),
    ("two deletes, one of a re-inserted key", S7),
    ("unchanged", S7),
]
UNCHANGED = {"unchanged, a key deleted", "unchanged"}

sources_yml = raw_sources_yml("src", "dup_src")


@dataclass(frozen=True)
class Pair:
    """A snapshot model and its dbt snapshot twin, and the settings both share."""

    name: str
    strategy: str
    hard_deletes: str
    check_cols: Any = None
    source: str = "src"
    names: dict[str, str] = field(default_factory=dict)
    valid_to_current: str | None = None
    dedupe: bool = False
    keys: tuple[str, ...] = ("id",)

    def column(self, meta: str) -> str:
        return self.names.get(meta, meta)

    def settings(self) -> dict[str, Any]:
        """Config shared by the model and the snapshot, as Python values."""
        key = self.keys[0] if len(self.keys) == 1 else list(self.keys)
        cfg: dict[str, Any] = {"unique_key": key, "hard_deletes": self.hard_deletes}
        if self.valid_to_current:
            cfg["dbt_valid_to_current"] = self.valid_to_current
        if self.names:
            cfg["snapshot_meta_column_names"] = self.names
        return cfg

    def strategy_config(self) -> dict[str, Any]:
        if self.strategy == "timestamp":
            return {"strategy": "timestamp", "updated_at": "updated_at"}
        return {"strategy": "check", "check_cols": self.check_cols}

    def model_sql(self) -> str:
        cfg = {
            "materialized": "sqlflow_incremental",
            "incremental_strategy": "snapshot",
            "snapshot": self.strategy_config(),
            **self.settings(),
        }
        if self.dedupe:
            cfg["dedupe_by"] = "updated_at"
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        return f"{{{{ config({args}) }}}}\nselect * from {{{{ source('raw', '{self.source}') }}}}\n"

    def snapshot_sql(self) -> str:
        cfg = {**self.strategy_config(), **self.settings()}
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        query = f"select * from {{{{ source('raw', '{self.source}') }}}}"
        if self.dedupe:
            query += " qualify row_number() over (partition by id order by updated_at desc) = 1"
        head = f"{{% snapshot s_{self.name} %}}\n{{{{ config({args}) }}}}\n"
        return head + query + "\n{% endsnapshot %}\n"


PAIRS = [
    Pair("timestamp_ignore", "timestamp", "ignore"),
    Pair("timestamp_invalidate", "timestamp", "invalidate"),
    Pair("timestamp_new_record", "timestamp", "new_record"),
    Pair("check_ignore", "check", "ignore", check_cols=["status"]),
    Pair("check_invalidate", "check", "invalidate", check_cols="all"),
    Pair("check_new_record", "check", "new_record", check_cols=["status", "name"]),
    Pair(
        "named",
        "check",
        "new_record",
        check_cols="all",
        names={
            "dbt_scd_id": "scd_id",
            "dbt_updated_at": "changed_at",
            "dbt_valid_from": "valid_from",
            "dbt_valid_to": "valid_to",
            "dbt_is_deleted": "is_deleted",
        },
        valid_to_current="'9999-12-31'::timestamp",
    ),
    Pair("dedupe", "timestamp", "new_record", source="dup_src", dedupe=True),
    # A status change is a new key: the old (id, status) is deleted.
    Pair("composite", "timestamp", "invalidate", keys=("id", "status")),
]


def set_sources(project, src: list[tuple]) -> None:
    """src as given; dup_src with extra, older rows of keys 1 and 3 and a newer one of 4."""
    for table in ("src", "dup_src"):
        project.run_sql(
            f"create or replace table {{schema}}.{table}"
            " (id integer, name varchar, status varchar, updated_at timestamp)"
        )
    values = ", ".join(f"({i}, '{n}', '{s}', '{t}'::timestamp)" for i, n, s, t in src)
    project.run_sql(f"insert into {{schema}}.src values {values}")
    project.run_sql("insert into {schema}.dup_src select * from {schema}.src")
    project.run_sql(
        "insert into {schema}.dup_src select id, 'stale', 'old', updated_at - interval 1 day"
        " from {schema}.src where id in (1, 3)"
    )
    project.run_sql(
        f"insert into {{schema}}.dup_src select id, 'late', status, '{T5}'::timestamp"
        " from {schema}.src where id = 4"
    )


def dbt_hash(*args: str) -> str:
    """dbt's snapshot_hash_arguments, written out: md5 of the values joined by '|'."""
    parts = " || '|' || ".join(f"coalesce(cast({a} as varchar), '')" for a in args)
    return f"md5({parts})"


def history(project, pair: Pair, relation: str) -> list[dict[str, Any]]:
    """The rows of a history table, the meta columns under dbt's names, with two facts
    about dbt_scd_id: whether it is dbt's hash of (key, dbt_updated_at), and the id of the
    version of the same key it is the hash of (with dbt_updated_at), if any.
    """
    c = pair.column
    metas = [m for m in META if pair.hard_deletes == "new_record" or m != "dbt_is_deleted"]
    select = ", ".join(f"t.{c(m)} as {m}" for m in metas)
    scd, updated_at = f"t.{c('dbt_scd_id')}", f"t.{c('dbt_updated_at')}"
    same_key = " and ".join(f"p.{k} = t.{k}" for k in pair.keys)
    sql = (
        f"select t.id, t.name, t.status, t.updated_at, {select},"
        f" {scd} = {dbt_hash(*(f't.{k}' for k in pair.keys), updated_at)} as key_hash,"
        f" (select min(p.{c('dbt_scd_id')}) from {relation} as p where {same_key}"
        f"  and {scd} = {dbt_hash('p.' + c('dbt_scd_id'), updated_at)}) as prev_scd"
        f" from {relation} as t"
    )
    names = ["id", "name", "status", "updated_at", *metas, "key_hash", "prev_scd"]
    return [dict(zip(names, r, strict=True)) for r in rows(project, sql)]


def normalized(pair: Pair, table: list[dict[str, Any]]) -> list[tuple]:
    """The rows with snapshot times replaced by their rank in the table, sorted."""
    fixed = DATA_TIMES | {None, VALID_TO_CURRENT}
    times = ("dbt_updated_at", "dbt_valid_from", "dbt_valid_to")
    own = sorted({r[t] for r in table for t in times} - fixed)

    def when(value: datetime | None) -> Any:
        return value if value in fixed else f"snapshot time #{own.index(value)}"

    version = {r["dbt_scd_id"]: when(r["dbt_updated_at"]) for r in table}
    out = []
    for r in table:
        if r["key_hash"]:
            # A source time: dbt's exact hash value; a snapshot time: its hash, checked.
            scd = r["dbt_scd_id"] if r["dbt_updated_at"] in DATA_TIMES else "hash(id, time)"
        elif r["prev_scd"] is not None:
            scd = f"hash(version of {version[r['prev_scd']]}, time)"
        else:
            scd = f"not a dbt hash: {r['dbt_scd_id']}"
        row = {k: when(v) if k in times else v for k, v in r.items()}
        row.update(dbt_scd_id=scd, key_hash=None, prev_scd=None)
        out.append(tuple(row.values()))
    return sorted(out, key=repr)


def current_counts(project, pair: Pair, relation: str) -> dict[tuple, int]:
    """How many current versions each key has."""
    valid_to = pair.column("dbt_valid_to")
    current = f"{valid_to} is null"
    if pair.valid_to_current:
        current += f" or {valid_to} = {pair.valid_to_current}"
    keys = ", ".join(pair.keys)
    found = rows(project, f"select {keys}, count(*) from {relation} where {current} group by all")
    return {tuple(r[:-1]): r[-1] for r in found}


def source_state(step: int) -> Step:
    """Scenario step: the sources hold state ``step`` of :data:`STATES`; ``dbt run`` and
    ``dbt snapshot``; each pair's two tables read back."""
    _, src = STATES[step]

    def run(project) -> dict[str, dict[str, Any]]:
        set_sources(project, src)
        hashes = {p.name: table_hash(project, f"{{schema}}.m_{p.name}") for p in PAIRS if step}
        run_dbt(["run"])
        results = run_results(project)
        run_dbt(["snapshot"])
        seen = {}
        for p in PAIRS:
            model = f"{{schema}}.m_{p.name}"
            seen[p.name] = {
                "ours": history(project, p, model),
                "theirs": history(project, p, f"{{schema}}.s_{p.name}"),
                "currents": current_counts(project, p, model),
                "response": results[f"m_{p.name}"]["adapter_response"],
                "hash_before": hashes.get(p.name),
                "hash_after": table_hash(project, model),
            }
        return seen

    run.__name__ = f"state_{step + 1}"
    return run


SOURCE_STATES = [source_state(step) for step in range(len(STATES))]
each_pair = pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])


def where(pair: Pair, step: int) -> str:
    return f"{pair.name} after state {step + 1} ({STATES[step][0]})"


def sizes(seen: dict[str, Any]) -> tuple[int, int]:
    """(rows, current rows) of one pair's model."""
    return len(seen["ours"]), sum(seen["currents"].values())


class TestSnapshotStrategyMatchesDbtSnapshots:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {f"m_{p.name}.sql": p.model_sql() for p in PAIRS}
        return {"sources.yml": sources_yml, **files}

    @pytest.fixture(scope="class")
    def snapshots(self) -> dict:
        return {f"s_{p.name}.sql": p.snapshot_sql() for p in PAIRS}

    @pytest.fixture(scope="class")
    def scenario(self, project) -> Scenario:
        return Scenario(project, *SOURCE_STATES)

    @each_pair
    def test_same_rows_as_dbt_snapshots(self, scenario, pair: Pair) -> None:
        for step, state in enumerate(SOURCE_STATES):
            seen = scenario.after(state)[pair.name]
            ours, theirs = seen["ours"], seen["theirs"]
            assert normalized(pair, ours) == normalized(pair, theirs), where(pair, step)
            assert all(not r["dbt_scd_id"].startswith("not") for r in theirs), where(pair, step)

    @each_pair
    def test_one_current_version_per_key(self, scenario, pair: Pair) -> None:
        for step, state in enumerate(SOURCE_STATES):
            currents = scenario.after(state)[pair.name]["currents"]
            assert set(currents.values()) <= {1}, where(pair, step)

    @each_pair
    def test_counts_are_new_rows_and_closed_versions(self, scenario, pair: Pair) -> None:
        # Counts: inserted rows are new rows; each closed version is an update.
        old_total, old_current = 0, 0
        for step, state in enumerate(SOURCE_STATES):
            seen = scenario.after(state)[pair.name]
            response = seen["response"]
            total, current = sizes(seen)
            inserted = total - old_total
            assert response["rows_inserted"] == inserted, where(pair, step)
            assert response["rows_updated"] == old_current - current + inserted, where(pair, step)
            assert response["rows_deleted"] == 0, where(pair, step)
            assert response["strategy"] == ("snapshot" if step else "full_refresh"), where(
                pair, step
            )
            old_total, old_current = total, current

    @each_pair
    def test_unchanged_source_changes_nothing(self, scenario, pair: Pair) -> None:
        for step, state in enumerate(SOURCE_STATES):
            if STATES[step][0] not in UNCHANGED:
                continue
            seen = scenario.after(state)[pair.name]
            assert seen["response"]["rows_affected"] == 0, where(pair, step)
            assert seen["hash_after"] == seen["hash_before"], where(pair, step)

    def test_dedupe_by_writes_each_key_once(self, scenario) -> None:
        # dedupe_by: 5 rows of 3 keys in dup_src, each key written once.
        assert sizes(scenario.after(SOURCE_STATES[0])["dedupe"]) == (3, 3)

    def test_ignore_keeps_deleted_keys_current(self, scenario) -> None:
        assert sizes(scenario.after(SOURCE_STATES[-1])["timestamp_ignore"])[1] == 4

    def test_no_work_tables_are_left(self, project, scenario) -> None:
        scenario.after(SOURCE_STATES[-1])
        leftovers = rows(
            project, "select table_name from duckdb_tables() where table_name like '%sqlflow%'"
        )
        assert leftovers == []

    def test_named_meta_columns_and_valid_to_current(self, project, scenario) -> None:
        scenario.after(SOURCE_STATES[-1])
        check_names_and_valid_to_current(project)


def check_names_and_valid_to_current(project) -> None:
    """m_named after the last state: renamed meta columns, current rows at 9999-12-31."""
    columns = rows(
        project,
        "select column_name from information_schema.columns"
        " where table_schema = '{schema}' and table_name = 'm_named' order by ordinal_position",
    )
    assert [c for (c,) in columns] == [
        "id",
        "name",
        "status",
        "updated_at",
        "scd_id",
        "changed_at",
        "valid_from",
        "valid_to",
        "is_deleted",
    ]
    current = rows(
        project,
        "select id, is_deleted from {schema}.m_named"
        " where valid_to = '9999-12-31'::timestamp order by id",
    )
    assert current == [(1, "False"), (2, "True"), (3, "False"), (4, "True")]
    assert rows(project, "select count(*) from {schema}.m_named where valid_to is null") == [(0,)]
