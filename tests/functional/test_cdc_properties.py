"""Property test of the cdc strategy against the plain-Python reference (cdc_reference).

One ``dbt run`` per class renders the models' batch SQL from the real macros (the batch
loop is wrapped to keep what it was given); each hypothesis example then replays it on a
fresh in-memory DuckDB through sqlflow's own batch loop (``execution.load_batch``: stage,
checks, strategy steps, ledger, state), one transaction per batch, as a run does: random
event streams for a few keys (inserts, updates, deletes, re-inserts, snapshot reads,
truncates, exact duplicates, NULL values), shuffled and cut into random batches, must give
exactly the reference's table.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import duckdb
import pytest
from cdc_reference import Event, scd1_batches, scd1_in_order, scd2_in_order
from dbt.tests.util import run_dbt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlflow_testing import DuckSession, duck_services, raw_sources_yml

from dbt.adapters.sqlflow import execution
from dbt.adapters.sqlflow.plan import INCREMENTAL, LoadPlan
from dbt.adapters.sqlflow.run import ModelRun

BODY = "select id, v, w, lsn, op from {{ source('raw', 'feed') }}\n"
OPS = {"upsert": "u", "delete": "d", "truncate": "t"}
CONFIGS = {
    "scd1": "{'sequence_by': 'lsn', 'operation': 'op'}",
    "scd1_nulls": "{'sequence_by': 'lsn', 'operation': 'op', 'ignore_null_updates': True}",
    "scd2": "{'sequence_by': 'lsn', 'operation': 'op', 'stored_as': 'scd2'}",
}
NOW = datetime(2025, 1, 1)


def model(cdc: str) -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', incremental_strategy='cdc',"
        f" unique_key='id', cdc={cdc}) }}}}\n" + BODY
    )


@pytest.fixture(scope="class")
def models() -> dict:
    return {
        "sources.yml": raw_sources_yml("feed"),
        **{f"{n}.sql": model(c) for n, c in CONFIGS.items()},
    }


@pytest.fixture(scope="class")
def captured(project: Any) -> dict[str, tuple]:
    """Per model: its ModelRun, batch templates and stage, as the first dbt run gave them."""
    project.run_sql(
        "create or replace table {schema}.feed (id int, v int, w varchar, lsn bigint, op varchar)"
    )
    found: dict[str, tuple] = {}
    original = execution.run_batches

    def keep(
        run: ModelRun, session: Any, templates: Any, stage: str, *args: Any, **kw: Any
    ) -> None:
        found[run.config.model.split(".")[-1]] = (run, templates, stage)
        original(run, session, templates, stage, *args, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(execution, "run_batches", keep)
        run_dbt(["run"])
    return {name: (*found[name], project.test_schema) for name in CONFIGS}


def replay(captured: tuple, batches: list[list[Event]]) -> list[tuple]:
    """Apply the batches through the batch loop on a fresh database; the target's rows."""
    first, templates, stage, schema = captured
    con = duckdb.connect()
    con.execute("attach ':memory:' as sqlflow; use sqlflow")
    con.execute(f"create schema {schema}")
    con.execute(f"create table {schema}.feed (id int, v int, w varchar, lsn bigint, op varchar)")
    scd2 = first.config.cdc.stored_as == "scd2"
    extra = ", dbt_valid_from bigint, dbt_valid_to bigint" if scd2 else ""
    con.execute(f"create table {first.relation} (id int, v int, w varchar{extra})")
    session = DuckSession(con)
    services = duck_services(session, NOW)
    run = ModelRun(
        first.id,
        first.config,
        first.relation,
        LoadPlan(INCREMENTAL, batches=tuple(None for _ in batches)),
        services,
        "inv-1",
        compiled_code=first.compiled_code,
        cdc_ledger=first.cdc_ledger,
    )
    execution.reset_state(run)
    services.run.flush()
    session.commit()
    for batch in batches:
        session.execute(f"delete from {schema}.feed")
        if batch:
            values = ", ".join(
                f"({'null' if k is None else k}, {_lit(v[0])}, {_lit(v[1])}, {seq},"
                f" '{'r' if rank == 0 else OPS[op]}')"
                for k, seq, rank, op, v in batch
            )
            session.execute(f"insert into {schema}.feed values {values}")
        execution.load_batch(run, session, templates, stage, None)
        services.run.flush()
        session.commit()
        run.commit_group()
    order = "id, dbt_valid_from" if scd2 else "id"
    found = con.execute(f"select * from {first.relation} order by {order}").fetchall()
    con.close()
    return [tuple(r) for r in found]


def _lit(value: Any) -> str:
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


@st.composite
def feeds(draw: Any, truncates: bool = True) -> list[list[Event]]:
    """Events with distinct sequences for keys 1-3 (some repeated exactly), shuffled and
    cut into 1-4 batches."""
    count = draw(st.integers(1, 14))
    events: list[Event] = []
    for seq in range(1, count + 1):
        kinds = ["upsert", "upsert", "delete", "read"] + (["truncate"] if truncates else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "truncate":
            events.append((None, seq, 1, "truncate", (None, None)))
            continue
        key = draw(st.integers(1, 3))
        values = (
            draw(st.one_of(st.none(), st.integers(0, 2))),
            draw(st.one_of(st.none(), st.sampled_from(["a", "b"]))),
        )
        if kind == "delete":
            values = (None, None)
        rank = 0 if kind == "read" else 1
        events.append((key, seq, rank, "delete" if kind == "delete" else "upsert", values))
    dupes = draw(st.lists(st.sampled_from(events), max_size=3))
    shuffled = draw(st.permutations(events + dupes))
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=3)))
    bounds = [0, *cuts, len(shuffled)]
    return [list(shuffled[a:b]) for a, b in itertools.pairwise(bounds)]


PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


class TestCdcAgainstTheReference:
    @PROPERTY
    @given(batches=feeds())
    def test_scd1_is_every_event_applied_in_sequence_order(
        self, captured: dict, batches: list[list[Event]]
    ) -> None:
        expected = scd1_in_order(e for b in batches for e in b)
        assert scd1_batches(batches) == expected
        assert replay(captured["scd1"], batches) == [(k, *v) for k, v in sorted(expected.items())]

    @PROPERTY
    @given(batches=feeds())
    def test_scd1_with_ignore_null_updates(
        self, captured: dict, batches: list[list[Event]]
    ) -> None:
        expected = scd1_batches(batches, ignore_nulls=(0, 1))
        found = replay(captured["scd1_nulls"], batches)
        assert found == [(k, *v) for k, v in sorted(expected.items())]

    @PROPERTY
    @given(batches=feeds())
    # Found by a longer random run: the late upsert at 3 merges the version starting at
    # 12 (same values) into its own, and the truncate at 13 must still find the upsert at
    # 12 (the ledger remembers it as taken in place) to start the version [12, 13).
    @example(
        batches=[
            [(2, 12, 1, "upsert", (None, None))],
            [(2, 3, 1, "upsert", (None, None))],
            [(None, 6, 1, "truncate", (None, None)), (None, 13, 1, "truncate", (None, None))],
        ]
    )
    def test_scd2_history_is_every_event_in_sequence_order(
        self, captured: dict, batches: list[list[Event]]
    ) -> None:
        expected = scd2_in_order(e for b in batches for e in b)
        assert replay(captured["scd2"], batches) == expected


def test_the_generator_makes_late_events_and_duplicates() -> None:
    """The strategy reaches the cases the property is about (guards against a generator
    that never shuffles or never repeats)."""
    seen = {"late": False, "duplicate": False, "truncate": False}

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(batches=feeds())
    def look(batches: list[list[Event]]) -> None:
        flat = [e for b in batches for e in b]
        seen["duplicate"] |= len(flat) != len(set(flat))
        seen["truncate"] |= any(e[3] == "truncate" for e in flat)
        for i, batch in enumerate(batches):
            earlier = [e[1] for b in batches[:i] for e in b]
            seen["late"] |= bool(earlier) and any(e[1] < max(earlier) for e in batch)

    look()
    assert seen == {"late": True, "duplicate": True, "truncate": True}
