"""execution.py: the batch loop on a real DuckDB (stage, strategy steps, checks, state, commits)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import pytest
from dbt_common.exceptions import DbtRuntimeError
from sqlflow_testing import CommitLog, DuckSession, Recorder, duck_services, sample_run

from dbt.adapters.sqlflow.config import SqlflowConfig
from dbt.adapters.sqlflow.execution import (
    BatchTemplates,
    build_table,
    count_rows,
    finish_run,
    run_batches,
    start_run,
    summary_line,
)
from dbt.adapters.sqlflow.intervals import Interval
from dbt.adapters.sqlflow.quality import QualityCheck, parse_quality_checks
from dbt.adapters.sqlflow.run import ModelRun
from dbt.adapters.sqlflow.sql import TEMPLATE_TOKENS
from dbt.adapters.sqlflow.state import StateStore

MODEL = "model.proj.events"


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the batch loop on a real DuckDB ------------------------------------------------------------
#
# A source table ``src`` and a target ``events`` in an in-memory DuckDB, sqlflow's state
# tables beside them, and batch templates written by hand with sql.TEMPLATE_TOKENS where
# each batch differs (what the strategy macros render). The session commits as dbt's
# connection does; what another connection sees is what was committed.

Row = tuple[int, datetime, "str | None"]
COLUMNS = {"id": "INTEGER", "event_ts": "TIMESTAMP", "v": "VARCHAR"}
T = TEMPLATE_TOKENS
SOURCE_SQL = "select id, event_ts, v from src"
STAGE = (
    "create or replace temporary table stage as select * from"
    f" ({T['model_sql']}) as m where event_ts >= {T['start']} and event_ts < {T['end']}"
    " order by event_ts"
)
INSERT = {"sql": "insert into events select * from stage", "count": "inserted"}
KEYED_DELETE = (
    "delete from events as DBT_INTERNAL_DEST using stage as DBT_INTERNAL_SOURCE"
    f" where DBT_INTERNAL_DEST.id = DBT_INTERNAL_SOURCE.id and {T['target_predicate']}"
)
STAGED_APPEND = BatchTemplates(STAGE, {"append:False": [INSERT]})
DIRECT_APPEND = BatchTemplates(
    STAGE,
    {
        "direct": [
            {
                "sql": f"insert into events select * from ({T['model_sql']}) as m"
                f" where {T['overwrite_predicate']} order by event_ts",
                "count": "inserted",
            }
        ]
    },
)
OVERWRITE_DIRECT = [
    {"sql": f"delete from events where {T['overwrite_predicate']}", "count": "deleted"},
    *DIRECT_APPEND.variants["direct"],
]
DELETE_INSERT = BatchTemplates(
    STAGE, {"delete+insert:False": [{"sql": KEYED_DELETE, "count": "deleted"}, INSERT]}
)
MERGE_BY_DELETE_INSERT = BatchTemplates(
    STAGE,
    {
        "merge:False": [
            {"sql": KEYED_DELETE, "count": "replaced"},
            {"sql": INSERT["sql"], "count": "upserted"},
        ],
        "merge:True": [INSERT],
        "append:True": [INSERT],
    },
)
MERGE_STATEMENT = BatchTemplates(
    STAGE,
    {
        "merge:False": [
            {
                "sql": "merge into events as DBT_INTERNAL_DEST using stage as DBT_INTERNAL_SOURCE"
                " on (DBT_INTERNAL_DEST.id = DBT_INTERNAL_SOURCE.id)"
                " when matched then update set v = DBT_INTERNAL_SOURCE.v"
                " when not matched then insert (id, event_ts, v) values"
                " (DBT_INTERNAL_SOURCE.id, DBT_INTERNAL_SOURCE.event_ts, DBT_INTERNAL_SOURCE.v)",
                "count": "merged",
            }
        ],
        "merge:True": [INSERT],
    },
)
# commit_every=1: these tests follow each batch's own transaction (grouping has its own).
APPEND = {
    "incremental_strategy": "append",
    "event_time": "event_ts",
    "begin": "2025-01-01",
    "commit_every": 1,
}
KEYED = {"event_time": "event_ts", "unique_key": "id", "begin": "2025-01-01", "commit_every": 1}


def database(source: list[Row], target: list[Row] | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, data in (("src", source), ("events", target or [])):
        con.execute(f"create table {name} (id integer, event_ts timestamp, v varchar)")
        if data:
            con.executemany(f"insert into {name} values (?, ?, ?)", data)
    return con


def begin_run(
    con: duckdb.DuckDBPyConnection,
    raw: dict[str, Any],
    now: str,
    checks: list[QualityCheck] | None = None,
    *,
    day_partitions: bool = False,
    run_vars: dict[str, Any] | None = None,
) -> tuple[ModelRun, DuckSession]:
    """An incremental run of ``events`` from ``src``, planned by ``start_run`` (with a
    partition manager of day partitions on event_ts if asked)."""
    from dbt.adapters.sqlflow.partitions import PartitionManager, PartitionSpec

    session = DuckSession(con)
    services = duck_services(session, dt(now), checks=checks or [])
    if day_partitions:
        spec = PartitionSpec("event_ts", "day", "TIMESTAMP")
        services.partitions = PartitionManager(services.run, services.state, spec)
    session.commits = 0  # count the run's own commits
    cfg = SqlflowConfig.parse(MODEL, raw, COLUMNS, now=dt(now))
    run = start_run(
        cfg,
        services,
        relation="events",
        incremental=True,
        compiled_code=SOURCE_SQL,
        run_vars=run_vars or {},
        invocation_id="inv-1",
    )
    return run, session


def committed(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Rows of ``sql`` as another connection sees them: only what was committed."""
    return con.cursor().execute(sql).fetchall()


def target_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return committed(con, "select id, event_ts, v from events order by id, v")


def committed_state(con: duckdb.DuckDBPyConnection) -> StateStore:
    return StateStore(Recorder(con.cursor()))


def loads(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """The committed loads: strategy, window, figures, status (in window order)."""
    return [
        (
            r.strategy,
            r.window_start,
            r.window_end,
            r.rows_inserted,
            r.rows_updated,
            r.rows_deleted,
            r.status,
            r.invocation_id,
        )
        for r in sorted(committed_state(con).loads(MODEL), key=lambda r: r.window_start)
    ]


def r(id_: int, ts: str, v: str | None) -> Row:
    return (id_, dt(ts), v)


FOUR_DAYS_SOURCE = [
    r(1, "2025-01-01T08:00", "a"),
    r(2, "2025-01-01T09:00", "b"),
    r(3, "2025-01-02T10:00", "c"),
    r(4, "2025-01-03T07:00", "d"),
    r(5, "2025-01-03T09:00", "e"),
    r(6, "2025-01-04T08:00", "f"),
    r(7, "2025-01-04T13:00", "g"),  # after now: not loaded yet
]


def day(text: str) -> Interval:
    return Interval(dt(text), dt(text) + timedelta(days=1))


@pytest.mark.parametrize("templates", [STAGED_APPEND, DIRECT_APPEND], ids=["staged", "direct"])
def test_batches_commit_one_by_one_and_the_last_waits_for_finish_run(
    templates: BatchTemplates,
) -> None:
    con = database(FOUR_DAYS_SOURCE)
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")
    today = Interval(dt("2025-01-04"), dt("2025-01-04T12:00"))
    assert run.plan.batches == (day("2025-01-01"), day("2025-01-02"), day("2025-01-03"), today)
    assert run.plan.direct == "append"
    log = CommitLog()

    run_batches(run, session, templates, "stage", log)

    # Every batch but the last committed, each in its own transaction ...
    assert session.commits == 3
    assert log.windows == [day("2025-01-01"), day("2025-01-02"), day("2025-01-03")]
    assert [quiet for _, quiet in log.calls] == [False, True, True]
    assert [row[0] for row in target_rows(con)] == [1, 2, 3, 4, 5]
    assert len(loads(con)) == 3
    # ... the last one's transaction is open: its rows and state are not committed yet.
    assert session.open
    assert [batch.window for batch in run.uncommitted] == [today]
    assert con.execute("select count(*) from events").fetchall() == [(6,)]

    finish_run(run, session, log)

    # The last batch's commit, then the one that writes the batches' state and commit
    # seconds into their loads rows (known only once they committed).
    assert (session.commits, session.open, run.in_flight, run.uncommitted) == (5, False, None, [])
    assert run.response().commits == 4
    timed = con.execute(
        "select count(*) from sqlflow_meta.loads where state_seconds > 0"
        " and commit_seconds > 0 and dml_seconds > 0"
    ).fetchall()
    assert timed == [(4,)]
    assert log.windows[-1] == today and log.calls[-1][1] is True
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]
    assert loads(con) == [
        ("append", dt("2025-01-01"), dt("2025-01-02"), 2, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-02"), dt("2025-01-03"), 1, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-03"), dt("2025-01-04"), 2, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-04"), dt("2025-01-04T12:00"), 1, 0, 0, "success", "inv-1"),
    ]
    state = committed_state(con)
    assert state.loaded_intervals(MODEL) == [Interval(dt("2025-01-01"), dt("2025-01-04T12:00"))]
    assert [(row.interval, row.relation, row.load_id) for row in state.interval_rows(MODEL)] == [
        (done.window, "events", done.load_id) for done, _ in log.calls
    ]
    response = run.response()
    assert (response.rows_inserted, response.batches, response.strategy) == (6, 4, "append")
    assert response.load_ids == [done.load_id for done, _ in log.calls]


def test_the_rest_of_the_templates_is_rendered_once_when_a_batch_first_needs_it() -> None:
    con = database(FOUR_DAYS_SOURCE)
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")
    rendered: list[int] = []

    def later() -> BatchTemplates:
        rendered.append(1)
        return STAGED_APPEND

    log = CommitLog()
    # Nothing for a group loaded at once: every batch is staged, from what later renders.
    run_batches(run, session, BatchTemplates(None, {}), "stage", log, later=later)
    finish_run(run, session, log)
    assert rendered == [1]
    assert run.loop.staged
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]


def test_templates_rendered_later_are_not_rendered_when_no_batch_needs_them() -> None:
    con = database(FOUR_DAYS_SOURCE)
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")

    def later() -> BatchTemplates:
        raise AssertionError("rendered although every batch went straight in")

    log = CommitLog()
    run_batches(
        run, session, BatchTemplates(None, DIRECT_APPEND.variants), "stage", log, later=later
    )
    finish_run(run, session, log)
    assert not run.loop.staged  # no staging table to drop
    assert target_rows(con) == FOUR_DAYS_SOURCE[:6]


@pytest.mark.parametrize(
    "templates",
    [
        STAGED_APPEND,
        # An append without partition_by goes unstaged too (it had no watermark).
        DIRECT_APPEND,
    ],
    ids=["staged", "direct"],
)
def test_each_load_advances_the_watermark(templates: BatchTemplates) -> None:
    con = database(FOUR_DAYS_SOURCE)
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")
    log = CommitLog()
    run_batches(run, session, templates, "stage", log)
    finish_run(run, session, log)
    watermarks = [
        (row.window_start, row.watermark_before, row.watermark_after)
        for row in committed_state(con).loads(MODEL)
    ]
    assert watermarks == [
        (dt("2025-01-01"), None, "2025-01-01T09:00:00"),
        (dt("2025-01-02"), "2025-01-01T09:00:00", "2025-01-02T10:00:00"),
        (dt("2025-01-03"), "2025-01-02T10:00:00", "2025-01-03T09:00:00"),
        (dt("2025-01-04"), "2025-01-03T09:00:00", "2025-01-04T08:00:00"),
    ]
    assert run.response().watermark_after == "2025-01-04T08:00:00"


def test_a_batch_with_a_duplicate_key_rolls_back_alone() -> None:
    source = [
        r(1, "2025-01-01T08:00", "a"),
        r(2, "2025-01-02T08:00", "b"),
        r(4, "2025-01-03T07:00", "d"),
        r(4, "2025-01-03T09:00", "d2"),
    ]
    target = [r(1, "2024-12-31T08:00", "old")]
    con = database(source, target)
    run, session = begin_run(
        con, {**KEYED, "incremental_strategy": "delete+insert"}, "2025-01-04T12:00"
    )
    # 2025-01-04 has no source rows: an empty window, recorded with the batch before it.
    assert run.plan.empty_windows == (day("2025-01-04"),)
    log = CommitLog()

    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, DELETE_INSERT, "stage", log)
    session.rollback()

    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}': the batch cannot be loaded by key (id)."
        " 1 key value(s) occur more than once in the batch, e.g. id=4 (2 rows)."
        " Set dedupe_by (e.g. dedupe_by='updated_at') to keep the last row per key,"
        " or fix the duplicates upstream. Nothing was written."
    )
    assert session.commits == 2
    assert log.windows == [day("2025-01-01"), day("2025-01-02")]
    # The earlier batches stay committed and recorded; the window after the failed
    # batch is not marked loaded.
    assert target_rows(con) == [r(1, "2025-01-01T08:00", "a"), r(2, "2025-01-02T08:00", "b")]
    assert loads(con) == [
        ("delete+insert", dt("2025-01-01"), dt("2025-01-02"), 1, 0, 1, "success", "inv-1"),
        ("delete+insert", dt("2025-01-02"), dt("2025-01-03"), 1, 0, 0, "success", "inv-1"),
    ]
    assert committed_state(con).loaded_intervals(MODEL) == [
        Interval(dt("2025-01-01"), dt("2025-01-03"))
    ]
    assert run.response().batches == 2


# What stage.sql renders with dedupe_by: every row tied for last by it is kept.
LAST_BY_EVENT_TS = (
    "qualify id is null"
    " or count(*) over (partition by id order by event_ts) = count(*) over (partition by id)"
)
DEDUPE_DELETE_INSERT = BatchTemplates(
    "create or replace temporary table stage as select * from"
    f" ({T['model_sql']}) as m where event_ts >= {T['start']} and event_ts < {T['end']}"
    f" {LAST_BY_EVENT_TS} order by event_ts",
    DELETE_INSERT.variants,
)
DEDUPED = {**KEYED, "incremental_strategy": "delete+insert", "dedupe_by": "event_ts"}
TIE_MESSAGE = (
    f"sqlflow_incremental model '{MODEL}': the batch cannot be loaded by key (id)."
    " {n} key value(s) have different rows tied for last by dedupe_by (event_ts), e.g. {keys}:"
    " which of them to keep is undefined. Add a column to dedupe_by that breaks the tie"
    " (e.g. dedupe_by=['event_ts', 'seq']), or fix the duplicates upstream (rows equal in"
    " every column are kept once). Nothing was written."
)


def test_rows_tied_by_dedupe_by_that_differ_are_refused() -> None:
    source = [
        r(1, "2025-01-01T08:00", "a"),
        # 2025-01-02: id 2's last rows tie at 10:00 and differ; id 3's earlier row is
        # dropped and its two last rows tie and differ; id 4 ties with equal rows.
        r(2, "2025-01-02T08:00", "old"),
        r(2, "2025-01-02T10:00", "x"),
        r(2, "2025-01-02T10:00", "y"),
        r(3, "2025-01-02T07:00", "old"),
        r(3, "2025-01-02T09:00", "p"),
        r(3, "2025-01-02T09:00", "q"),
        r(3, "2025-01-02T09:00", "q"),
        r(4, "2025-01-02T11:00", "same"),
        r(4, "2025-01-02T11:00", "same"),
    ]
    con = database(source)
    run, session = begin_run(con, DEDUPED, "2025-01-02T12:00")
    log = CommitLog()

    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, DEDUPE_DELETE_INSERT, "stage", log)
    session.rollback()

    assert info.value.msg == TIE_MESSAGE.format(n=2, keys="id=3 (3 rows); id=2 (2 rows)")
    # The first day stays committed; nothing of the second was written.
    assert log.windows == [day("2025-01-01")]
    assert target_rows(con) == [r(1, "2025-01-01T08:00", "a")]
    assert [row[1] for row in loads(con)] == [dt("2025-01-01")]


def test_rows_tied_by_dedupe_by_that_are_equal_collapse_to_one() -> None:
    source = [
        r(1, "2025-01-01T08:00", "old"),
        r(1, "2025-01-01T09:00", "a"),
        r(1, "2025-01-01T09:00", "a"),
        r(1, "2025-01-01T09:00", "a"),
        r(2, "2025-01-01T10:00", "b"),
        r(3, "2025-01-01T11:00", None),
        r(3, "2025-01-01T11:00", None),
    ]
    con = database(source, [r(2, "2024-12-31T08:00", "older")])
    run, session = begin_run(con, DEDUPED, "2025-01-01T12:00")
    log = CommitLog()
    run_batches(run, session, DEDUPE_DELETE_INSERT, "stage", log)
    finish_run(run, session, log)

    assert target_rows(con) == [
        r(1, "2025-01-01T09:00", "a"),
        r(2, "2025-01-01T10:00", "b"),
        r(3, "2025-01-01T11:00", None),
    ]
    assert loads(con) == [
        ("delete+insert", dt("2025-01-01"), dt("2025-01-02"), 3, 0, 1, "success", "inv-1")
    ]


def build_run(con: duckdb.DuckDBPyConnection) -> tuple[ModelRun, DuckSession]:
    """A first build (no windows) of ``events`` from ``src``, deduplicated by event_ts."""
    session = DuckSession(con)
    services = duck_services(session, dt("2025-01-03T00:00"))
    raw = {"unique_key": "id", "dedupe_by": "event_ts"}
    cfg = SqlflowConfig.parse(MODEL, raw, COLUMNS, now=dt("2025-01-03T00:00"))
    run = start_run(
        cfg,
        services,
        relation="events",
        incremental=False,
        compiled_code=SOURCE_SQL,
        run_vars={},
        invocation_id="inv-1",
    )
    return run, session


BUILD = f"create table built as select * from ({SOURCE_SQL}) as m {LAST_BY_EVENT_TS}"


def test_a_build_collapses_equal_tied_rows_and_counts_what_it_holds() -> None:
    source = [
        r(1, "2025-01-01T08:00", "a"),
        r(1, "2025-01-01T08:00", "a"),
        r(2, "2025-01-01T09:00", "b"),
    ]
    con = database(source)
    run, session = build_run(con)
    build_table(run, session, BUILD, "built")
    assert session.execute("select id, v from built order by id") == [(1, "a"), (2, "b")]
    assert run.in_flight is not None
    assert (run.in_flight.rows_inserted, run.in_flight.batch_rows) == (2, 2)


def test_a_build_refuses_different_tied_rows() -> None:
    source = [
        r(1, "2025-01-01T08:00", "a"),
        r(1, "2025-01-01T08:00", "b"),
        r(2, "2025-01-01T09:00", "b"),
    ]
    con = database(source)
    run, session = build_run(con)
    with pytest.raises(DbtRuntimeError) as info:
        build_table(run, session, BUILD, "built")
    assert info.value.msg == TIE_MESSAGE.format(n=1, keys="id=1 (2 rows)")


def test_a_failing_quality_check_rolls_back_its_batch_and_the_empty_window_before_it() -> None:
    source = [
        r(1, "2025-01-01T08:00", "a"),
        # 2025-01-02: no rows (an empty window, recorded with the next batch)
        r(3, "2025-01-03T07:00", None),
        r(4, "2025-01-03T09:00", "d"),
    ]
    checks = parse_quality_checks([{"not_null": ["v"]}], model=MODEL, columns=list(COLUMNS))
    con = database(source)
    run, session = begin_run(con, APPEND, "2025-01-03T12:00", checks)
    today = Interval(dt("2025-01-03"), dt("2025-01-03T12:00"))
    assert run.plan.batches == (day("2025-01-01"), today)
    assert run.plan.empty_windows == (day("2025-01-02"),)
    log = CommitLog()

    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, STAGED_APPEND, "stage", log)
    session.rollback()

    assert info.value.msg == (
        f"Model '{MODEL}': 1 quality check of severity 'error' failed, so the load was rolled"
        " back and the target and sqlflow's state are unchanged. Fix the data or the check,"
        " or set severity: 'warn' on a check to load despite it.\n"
        "quality check failed: not_null(v) (1 failing rows)\n"
        "  1 rows of the batch have a null in v\n"
        "  - v=NULL, id=3, event_ts=2025-01-03 07:00:00\n"
        "The rolled-back load was the batch [2025-01-03 00:00:00, 2025-01-03 12:00:00);"
        " the 1 batch(es) before it were committed and stay loaded."
    )
    assert (session.commits, log.windows) == (1, [day("2025-01-01")])
    assert target_rows(con) == [r(1, "2025-01-01T08:00", "a")]
    assert loads(con) == [
        ("append", dt("2025-01-01"), dt("2025-01-02"), 1, 0, 0, "success", "inv-1")
    ]
    state = committed_state(con)
    assert state.loaded_intervals(MODEL) == [day("2025-01-01")]
    assert [(c.check_name, c.status, c.failing_rows) for c in state.check_results()] == [
        ("not_null(v)", "pass", 0)
    ]


def test_empty_windows_are_recorded_with_the_batch_after_them() -> None:
    source = [r(1, "2025-01-01T08:00", "a"), r(3, "2025-01-03T07:00", "c")]
    con = database(source)
    run, session = begin_run(con, APPEND, "2025-01-04T12:00")
    today = Interval(dt("2025-01-04"), dt("2025-01-04T12:00"))
    assert run.plan.batches == (day("2025-01-01"), day("2025-01-03"))
    assert run.plan.empty_windows == (day("2025-01-02"), today)
    log = CommitLog()

    run_batches(run, session, STAGED_APPEND, "stage", log)

    # 2025-01-02 waits for the batch after it (2025-01-03, the last, still open), which
    # also records the empty windows after it.
    assert [w.window for w in run.pending_empty] == [day("2025-01-02"), today]
    assert [row[1] for row in loads(con)] == [dt("2025-01-01")]

    finish_run(run, session, log)

    # The last batch's commit, then the one of its state and commit seconds.
    assert session.commits == 3
    assert loads(con) == [
        ("append", dt("2025-01-01"), dt("2025-01-02"), 1, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-02"), dt("2025-01-03"), 0, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-03"), dt("2025-01-04"), 1, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-04"), dt("2025-01-04T12:00"), 0, 0, 0, "success", "inv-1"),
    ]
    assert committed_state(con).loaded_intervals(MODEL) == [
        Interval(dt("2025-01-01"), dt("2025-01-04T12:00"))
    ]
    assert [result.window for result in run.results] == [
        day("2025-01-01"),
        day("2025-01-03"),
        day("2025-01-02"),
        today,
    ]
    assert (run.empty_done, run.loaded_batches, run.response().batches) == (2, 2, 4)
    assert target_rows(con) == source
    # The run's summary names batches and empty windows apart (one transaction each).
    assert summary_line(run, "m") == f"{MODEL} 2 batch(es) (+2 empty window(s)): m"
    run.commits = 1
    assert summary_line(run, "m") == (
        f"{MODEL} 2 batch(es) (+2 empty window(s)) in 1 transaction(s): m"
    )


def test_a_run_without_batches_records_its_empty_windows_in_finish_run() -> None:
    con = database([r(1, "2024-12-31T08:00", "old")])
    run, session = begin_run(con, APPEND, "2025-01-02T12:00")
    assert run.plan.batches == ()
    log = CommitLog()

    finish_run(run, session, log)

    assert (session.commits, log.calls) == (1, [])
    assert loads(con) == [
        ("append", dt("2025-01-01"), dt("2025-01-02"), 0, 0, 0, "success", "inv-1"),
        ("append", dt("2025-01-02"), dt("2025-01-02T12:00"), 0, 0, 0, "success", "inv-1"),
    ]
    assert committed_state(con).loaded_intervals(MODEL) == [
        Interval(dt("2025-01-01"), dt("2025-01-02T12:00"))
    ]
    assert (run.empty_done, run.loaded_batches) == (2, 0)
    assert target_rows(con) == []


# -- merge batches and their counts ---------------------------------------------------------


def test_merge_counts_replaced_rows_as_updates_and_plain_inserts_new_keys() -> None:
    target = [r(1, "2025-01-01T01:00", "a"), r(2, "2025-01-01T02:00", "b")]
    source = [
        r(2, "2025-01-01T02:00", "B"),
        r(3, "2025-01-01T03:00", "c"),
        r(10, "2025-01-02T01:00", "x"),
        r(11, "2025-01-02T02:00", "y"),
    ]
    con = database(source, target)
    run, session = begin_run(con, {**KEYED, "incremental_strategy": "merge"}, "2025-01-02T12:00")
    log = CommitLog()
    run_batches(run, session, MERGE_BY_DELETE_INSERT, "stage", log)
    finish_run(run, session, log)

    assert target_rows(con) == [target[0], *source]
    # Day 1: one key matched (its row replaced: 1 updated), one new; day 2: all new, a
    # plain insert (no keyed delete ran).
    assert loads(con) == [
        ("merge", dt("2025-01-01"), dt("2025-01-02"), 1, 1, 0, "success", "inv-1"),
        ("merge", dt("2025-01-02"), dt("2025-01-03"), 2, 0, 0, "success", "inv-1"),
    ]
    deletes = [s for s in session.record.statements if s.startswith("delete from events")]
    assert len(deletes) == 1
    assert [(d.matched, d.batch_rows) for d, _ in log.calls] == [(1, 2), (0, 2)]


def test_merge_refuses_a_target_whose_key_is_not_unique() -> None:
    target = [r(1, "2025-01-01T01:00", "a"), r(1, "2025-01-01T05:00", "a2")]
    con = database([r(1, "2025-01-01T01:00", "A")], target)
    run, session = begin_run(con, {**KEYED, "incremental_strategy": "merge"}, "2025-01-01T12:00")
    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, MERGE_BY_DELETE_INSERT, "stage", CommitLog())
    session.rollback()

    assert info.value.msg == (
        f"sqlflow_incremental model '{MODEL}': the merge on unique_key (id) matched 1 key"
        " value(s) of the batch to 2 rows of events, so the target holds 1 extra row(s) with"
        " an existing key: unique_key is not unique in the target table. Find them with"
        " `select id, count(*) from events group by all having count(*) > 1`, then rebuild"
        " the table (dbt run --full-refresh -s events) or choose a key that is unique."
        " Nothing was written."
    )
    assert target_rows(con) == target
    assert loads(con) == []
    assert session.commits == 0


def test_a_merge_statement_count_splits_into_inserted_and_updated() -> None:
    # A key held twice by the target: MERGE updates both rows, and counts them both.
    target = [r(2, "2025-01-01T02:00", "b"), r(2, "2025-01-01T04:00", "b2")]
    source = [r(2, "2025-01-01T02:00", "B"), r(3, "2025-01-01T03:00", "c")]
    con = database(source, target)
    run, session = begin_run(con, {**KEYED, "incremental_strategy": "merge"}, "2025-01-01T12:00")
    log = CommitLog()
    run_batches(run, session, MERGE_STATEMENT, "stage", log)
    finish_run(run, session, log)

    assert target_rows(con) == [
        r(2, "2025-01-01T02:00", "B"),
        r(2, "2025-01-01T04:00", "B"),
        r(3, "2025-01-01T03:00", "c"),
    ]
    assert loads(con) == [
        ("merge", dt("2025-01-01"), dt("2025-01-02"), 1, 2, 0, "success", "inv-1")
    ]


@pytest.mark.parametrize(
    ("role", "result", "batch_rows", "matched", "returned", "figures"),
    [
        ("inserted", [(3,)], None, 0, 3, (3, 0, 0)),
        ("updated", [(2,)], None, 0, 2, (0, 2, 0)),
        ("deleted", [(4,)], None, 0, 4, (0, 0, 4)),
        # A helper statement: its count is returned, not added.
        ("none", [(9,)], None, 0, 9, (0, 0, 0)),
        # MERGE: the batch rows without a match were inserted, the rest of the count updated.
        ("merged", [(5,)], 5, 2, 5, (3, 2, 0)),
        ("merged", [(6,)], 5, 2, 6, (3, 3, 0)),
        ("merged", [(2,)], 5, 0, 2, (2, 0, 0)),
        ("merged", [(4,)], None, 1, 4, (3, 1, 0)),
        # A merge's keyed delete (one row per matched key) and the insert after it.
        ("replaced", [(2,)], 3, 2, 2, (0, 2, 0)),
        ("upserted", [(3,)], 3, 2, 3, (1, 0, 0)),
        # Statements without a count row count nothing.
        ("inserted", [], None, 0, 0, (0, 0, 0)),
        ("inserted", [("OK",)], None, 0, 0, (0, 0, 0)),
        ("inserted", [(1, 2)], None, 0, 0, (0, 0, 0)),
    ],
)
def test_count_rows(
    role: str,
    result: list[tuple],
    batch_rows: int | None,
    matched: int,
    returned: int,
    figures: tuple[int, int, int],
) -> None:
    load = sample_run(unique_key="id", incremental_strategy="merge")
    batch = load.start_batch("merge", None)
    batch.batch_rows, batch.matched = batch_rows, matched
    assert count_rows(load, role, result) == returned
    assert (batch.rows_inserted, batch.rows_updated, batch.rows_deleted) == figures


def test_count_rows_refuses_more_replaced_rows_than_matched_keys() -> None:
    load = sample_run(unique_key="id", incremental_strategy="merge")
    batch = load.start_batch("merge", None)
    batch.matched = 2
    with pytest.raises(DbtRuntimeError, match="matched 2 key value\\(s\\) of the batch to 3 rows"):
        count_rows(load, "replaced", [(3,)])
    assert batch.rows_updated == 0


def test_count_rows_rejects_an_unknown_role() -> None:
    load = sample_run()
    load.start_batch("append", None)
    with pytest.raises(ValueError, match="'counted' is not a valid CountRole"):
        count_rows(load, "counted", [(1,)])


def test_one_query_may_count_several_roles() -> None:
    # cdc counts each kind of change in its change table with one query: a row, a column
    # per role.
    con = database([r(1, "2025-01-01T01:00", "a"), r(2, "2025-01-01T02:00", "b")])
    run, session = begin_run(
        con, {"event_time": "event_ts", "begin": "2025-01-01"}, "2025-01-01T12:00"
    )
    counted = BatchTemplates.from_jinja(
        {
            "stage": STAGE,
            "variants": {
                "append:False": [
                    {"sql": "insert into events select * from stage", "count": "none"},
                    {
                        "sql": "select count(*), count(*) - 1, 0 from stage",
                        "count": "inserted, deleted,updated",
                    },
                ]
            },
        }
    )
    assert counted.variants["append:False"][1]["count"] == "inserted,deleted,updated"
    log = CommitLog()
    run_batches(run, session, counted, "stage", log)
    finish_run(run, session, log)

    assert loads(con) == [
        ("append", dt("2025-01-01"), dt("2025-01-01T12:00"), 2, 0, 1, "success", "inv-1")
    ]


def test_batch_templates_refuse_an_unknown_count_role() -> None:
    steps = [{"sql": "select 1, 2", "count": "inserted,counted"}]
    with pytest.raises(ValueError, match="'counted' is not a valid CountRole"):
        BatchTemplates.from_jinja({"stage": STAGE, "variants": {"append:False": steps}})


# -- commit grouping (commit_every) -----------------------------------------------------------

SIX_DAYS_SOURCE = [
    r(d * 10 + i, f"2025-01-0{d}T0{i}:00", f"d{d}e{i}") for d in range(1, 7) for i in (1, 2)
]


def full_run(raw: dict[str, Any], templates: BatchTemplates, source: list[Row]) -> tuple:
    """A whole run; what it leaves: target rows, load rows, intervals, commits, the log."""
    con = database(source)
    run, session = begin_run(con, raw, "2025-01-07T00:00")
    log = CommitLog()
    run_batches(run, session, templates, "stage", log)
    finish_run(run, session, log)
    state = committed_state(con)
    return (
        target_rows(con),
        loads(con),
        state.loaded_intervals(MODEL),
        session.commits - 1,  # less the one that records the loads' phase times
        [(done.window, done.rows_inserted, done.rows_deleted) for done, _ in log.calls],
    )


@pytest.mark.parametrize(
    ("raw", "templates"),
    [
        (APPEND, STAGED_APPEND),
        (APPEND, DIRECT_APPEND),
        ({**KEYED, "incremental_strategy": "delete+insert"}, DELETE_INSERT),
        ({**KEYED, "incremental_strategy": "merge"}, MERGE_BY_DELETE_INSERT),
    ],
    ids=["append", "append-direct", "delete+insert", "merge"],
)
@pytest.mark.parametrize("every", [2, 4, {"rows": 3}, "auto"], ids=str)
def test_grouped_batches_leave_what_one_commit_per_batch_leaves(
    raw: dict[str, Any], templates: BatchTemplates, every: Any
) -> None:
    rows_, loads_, intervals, commits, calls = full_run(
        {**raw, "commit_every": every}, templates, SIX_DAYS_SOURCE
    )
    one = full_run({**raw, "commit_every": 1}, templates, SIX_DAYS_SOURCE)
    assert (rows_, loads_, intervals, calls) == (one[0], one[1], one[2], one[4])
    assert len(calls) == 6 and one[3] == 6
    # 2 batches a group: 3 commits; 4: 2; 3 rows (2 a batch): 3; auto, tiny batches: 1.
    assert commits == {"2": 3, "4": 2, "{'rows': 3}": 3, "auto": 1}[str(every)]


@pytest.mark.parametrize(
    ("every", "inserts"), [(1, 6), (2, 3), (4, 2), ("auto", 1), ({"seconds": 60}, 6)], ids=str
)
def test_a_direct_group_loads_at_once(every: Any, inserts: int) -> None:
    """Unstaged batches of a group (the model does not read its window, no check) run as
    one INSERT over the group's range; a seconds target is measured batch by batch."""
    con = database(SIX_DAYS_SOURCE)
    run, session = begin_run(con, {**APPEND, "commit_every": every}, "2025-01-07T00:00")
    log = CommitLog()
    run_batches(run, session, DIRECT_APPEND, "stage", log)
    finish_run(run, session, log)
    statements = [s for s in session.record.statements if s.startswith("insert into events")]
    assert len(statements) == inserts
    assert target_rows(con) == SIX_DAYS_SOURCE
    assert [(done.window, done.rows_inserted) for done, _ in log.calls] == [
        (day(f"2025-01-0{d}"), 2) for d in range(1, 7)
    ]


def test_a_group_at_once_replaces_windows_and_counts_each_batch() -> None:
    """insert_overwrite on day partitions over windows that hold rows: each batch's
    deleted and inserted rows, partitions and the watermark after it are what one
    transaction per batch gives."""
    target = [
        r(1, "2025-01-01T05:00", "old"),
        r(2, "2025-01-03T23:00", "old"),
        r(9, "2025-01-09T01:00", "far"),
    ]
    raw = {
        "incremental_strategy": "insert_overwrite",
        "event_time": "event_ts",
        "partition_by": {"field": "event_ts", "granularity": "day"},
        "begin": "2025-01-01",
    }
    overwrite = BatchTemplates(STAGE, {"direct": OVERWRITE_DIRECT})
    outcomes = []
    for every in (1, "auto"):
        con = database(SIX_DAYS_SOURCE[:6], target)
        run, session = begin_run(
            con,
            {**raw, "commit_every": every},
            "2025-01-04T00:00",
            day_partitions=True,
            run_vars={"sqlflow_start": "2025-01-01", "sqlflow_end": "2025-01-04"},
        )
        log = CommitLog()
        run_batches(run, session, overwrite, "stage", log)
        finish_run(run, session, log)
        outcomes.append(
            (
                target_rows(con),
                loads(con),
                [
                    (d.window, d.rows_inserted, d.rows_deleted, d.watermark_after, d.keys)
                    for d, _ in log.calls
                ],
                [
                    (p.key, p.row_count, p.min_value, p.max_value)
                    for p in committed_state(con).partitions("events")
                ],
                session.commits - 1,  # less the one that records the loads' phase times
            )
        )
    assert outcomes[0][:4] == outcomes[1][:4]
    assert (outcomes[0][4], outcomes[1][4]) == (3, 1)
    assert [row[3:6] for row in outcomes[0][1]] == [(2, 0, 1), (2, 0, 0), (2, 0, 1)]
    # The watermark after the first batch is the far row outside the range.
    assert [d[3] for d in outcomes[1][2]] == [dt("2025-01-09T01:00")] * 3


def test_a_failure_in_the_third_group_keeps_the_first_two() -> None:
    source = [*SIX_DAYS_SOURCE[:9], r(52, "2025-01-05T02:00", None), *SIX_DAYS_SOURCE[10:]]
    checks = parse_quality_checks([{"not_null": ["v"]}], model=MODEL, columns=list(COLUMNS))
    con = database(source)
    run, session = begin_run(con, {**APPEND, "commit_every": 2}, "2025-01-07T00:00", checks)
    log = CommitLog()

    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, STAGED_APPEND, "stage", log)
    session.rollback()

    # The third group's first batch failed: nothing of the group was written.
    assert info.value.msg.endswith(
        "The rolled-back load was the batch [2025-01-05 00:00:00, 2025-01-06 00:00:00);"
        " the 4 batch(es) before it were committed and stay loaded."
    )
    assert session.commits == 2
    assert log.windows == [day(f"2025-01-0{d}") for d in range(1, 5)]
    assert target_rows(con) == source[:8]
    assert [row[1] for row in loads(con)] == [dt(f"2025-01-0{d}") for d in range(1, 5)]
    assert committed_state(con).loaded_intervals(MODEL) == [
        Interval(dt("2025-01-01"), dt("2025-01-05"))
    ]


def test_a_failure_in_the_second_batch_of_a_group_rolls_back_the_whole_group() -> None:
    source = [*SIX_DAYS_SOURCE[:11], r(62, "2025-01-06T02:00", None)]
    checks = parse_quality_checks([{"not_null": ["v"]}], model=MODEL, columns=list(COLUMNS))
    con = database(source)
    run, session = begin_run(con, {**APPEND, "commit_every": 2}, "2025-01-07T00:00", checks)

    with pytest.raises(DbtRuntimeError) as info:
        run_batches(run, session, STAGED_APPEND, "stage", CommitLog())
    session.rollback()

    assert info.value.msg.endswith(
        "The rolled-back load was the batches [2025-01-05 00:00:00, 2025-01-07 00:00:00)"
        " of its transaction (2 batches, commit_every=2); the 4 batch(es) before it were"
        " committed and stay loaded."
    )
    assert target_rows(con) == source[:8]


@pytest.mark.parametrize(
    ("batches", "rows", "seconds", "due"),
    [
        (50, 5_000, 0.5, False),  # tiny batches: keep grouping
        (1, 20_000_000, 0.5, True),  # a huge batch commits alone (rows)
        (1, 10, 3.0, True),  # a slow batch commits alone (seconds)
        (400, 400, 2.0, True),  # a few seconds of work
    ],
)
def test_auto_groups_by_seconds_and_rows(
    batches: int, rows: int, seconds: float, due: bool
) -> None:
    from dbt.adapters.sqlflow.config import AUTO_COMMIT

    assert AUTO_COMMIT.due(batches, rows, seconds) is due


def test_census_counts_map_to_the_windows_of_a_group() -> None:
    from dbt.adapters.sqlflow.execution import _rows_by_window

    counts = {dt("2025-01-02"): 5, dt("2025-01-03"): 2, dt("2025-01-04"): 3, dt("2025-01-05"): 7}
    # A run's first window starts at the last run's "now"; its last ends at this "now".
    partial = [
        Interval(dt("2025-01-03T12:00"), dt("2025-01-04")),
        Interval(dt("2025-01-04"), dt("2025-01-04T12:00")),
    ]
    assert _rows_by_window(counts, partial) == {
        dt("2025-01-03T12:00"): 2,
        dt("2025-01-04"): 3,
    }
    # A later group of the run: the units before it belong to earlier groups.
    later = [day("2025-01-04"), day("2025-01-05")]
    assert _rows_by_window(counts, later) == {dt("2025-01-04"): 3, dt("2025-01-05"): 7}
