"""Issue 16's bench: a change feed applied in daily batches, sqlflow ``cdc`` against the
merge users hand-write on dbt-duckdb today, measured in the same run.

The feed (``--rows`` events, default 10M, over ``--days`` days; generated in SQL): the
first 10 % are inserts of new keys, then 80 % updates and 5 % deletes of random earlier
keys and 15 % inserts of new ones, one log position (``lsn``) each; 1 % of the events
arrive a day late (their ``changed_at``, the batch they land in, is a day after their
position says). Both models are built from every day but the last, then one incremental
run applies the last day; its node time (``run_results.json``'s ``execution_time``) is
the figure, the median of ``--reps`` runs from the same copy of the database, alternating.

- sqlflow: ``incremental_strategy='cdc'``, ``sequence_by='lsn'``, ``operation='op'``,
  ``event_time='changed_at'``, daily batches, ``lookback=0``.
- dbt-duckdb: ``materialized='incremental'``, ``incremental_strategy='merge'``, the day's
  events deduplicated with ``qualify row_number() over (partition by id order by lsn
  desc) = 1``, then a post-hook ``delete ... where op = 'd'`` (the hand-written pattern).

After the runs each target is compared with the reference (every event applied in ``lsn``
order, in SQL): sqlflow must match; the hand-written merge lets a late event overwrite a
newer one, and the mismatching keys are counted. Results are printed (and written to
``bench/results/cdc-rows-N.json`` unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
from run_bench import (
    BENCH_DIR,
    RESULTS_DIR,
    copy_settled,
    dbt_cmd,
    median,
    node_result,
    run_process,
    say,
)

FIRST = date(2025, 1, 1)
COLUMNS = "id, name, amount, lsn, op, changed_at"

SOURCES_YML = """version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: feed
"""
SQLFLOW_MODEL = (
    "{{ config(materialized='sqlflow_incremental', incremental_strategy='cdc',"
    " unique_key='id', event_time='changed_at', batch_size='day', lookback=0,"
    " begin='" + FIRST.isoformat() + "',"
    " cdc={'sequence_by': 'lsn', 'operation': 'op'}) }}\n"
    "select id, name, amount, lsn, op, changed_at from {{ source('raw', 'feed') }}\n"
)
DUCKDB_MODEL = """{{ config(materialized='incremental', incremental_strategy='merge',
    unique_key='id', post_hook="delete from {{ this }} where op = 'd'") }}
select id, name, amount, lsn, op, changed_at from {{ source('raw', 'feed') }}
where changed_at >= '{{ var('start') }}' and changed_at < '{{ var('end') }}'
qualify row_number() over (partition by id order by lsn desc) = 1
"""


def generate(db: Path, rows: int, days: int) -> None:
    """The feed, in SQL (see the module docstring)."""
    seed = rows // 10
    con = duckdb.connect(str(db))
    con.execute("select setseed(0.16)")
    con.execute("create schema raw")
    con.execute(
        f"""
        create table raw.feed as
        with ev as (
          select i as lsn, random() as r, random() as pick, random() as late
          from range({rows}) t(i)
        ),
        typed as (
          select lsn, late,
                 case when lsn < {seed} or r < 0.15 then 'c' when r < 0.95 then 'u' else 'd' end
                   as op, pick
          from ev
        ),
        keyed as (
          select *, case when op = 'c'
                      then (sum((op = 'c')::integer) over (
                             order by lsn rows between unbounded preceding and current row)
                            - 1)::bigint
                      else floor(pick * greatest(1, {seed} + 0.15 * (lsn - {seed})))::bigint
                    end as id
          from typed
        )
        select id, case when op = 'd' then null else 'n' || (lsn % 997) end as name,
               case when op = 'd' then null else (lsn % 10007) / 100.0 end as amount,
               lsn, op,
               timestamp '{FIRST}' + to_microseconds(
                 (lsn::hugeint * {days} * 86400000000 // {rows})::bigint)
                 + case when late < 0.01 then interval 1 day else interval 0 day end
                 as changed_at
        from keyed order by changed_at, lsn
        """
    )
    con.close()


def reference_sql(until: str) -> str:
    """The live rows after applying every event before ``until`` in lsn order."""
    return (
        "select id, name, amount from raw.feed where changed_at < timestamp '" + until + "'"
        " qualify row_number() over (partition by id order by lsn desc) = 1 and op <> 'd'"
    )


def mismatches(db: Path, table: str, until: str) -> int:
    """Keys whose row in ``table`` differs from the reference (missing, extra or other)."""
    con = duckdb.connect(str(db), read_only=True)
    found = con.execute(
        f"select count(*) from (select id, name, amount from {table}"
        f" except all ({reference_sql(until)})"
        f" union all (({reference_sql(until)}) except all"
        f" select id, name, amount from {table}))"
    ).fetchone()
    con.close()
    return int(found[0])


def write_project(root: Path, adapter: str, db: Path) -> None:
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
        "model-paths: ['models']\nflags:\n  send_anonymous_usage_stats: false\n"
    )
    (root / "profiles.yml").write_text(
        f"bench:\n  target: bench\n  outputs:\n    bench:\n      type: {adapter}\n"
        f"      path: '{db}'\n      schema: {'sf' if adapter == 'sqlflow' else 'dd'}\n"
        "      threads: 1\n"
    )
    (root / "models" / "sources.yml").write_text(SOURCES_YML)
    body = SQLFLOW_MODEL if adapter == "sqlflow" else DUCKDB_MODEL
    (root / "models" / "feed_state.sql").write_text(body)


def args_for(adapter: str, start: date, end: date) -> list[str]:
    """The dbt arguments that apply the days ``[start, end)``: sqlflow's explicit range
    (a pinned now would also load the current day up to its end), the hand-written
    model's own vars."""
    if adapter == "sqlflow":
        bounds = {"sqlflow_start": start.isoformat(), "sqlflow_end": end.isoformat()}
        return ["--vars", json.dumps(bounds)]
    return ["--vars", json.dumps({"start": start.isoformat(), "end": end.isoformat()})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work-cdc")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True)
    db, snapshot = work / "run.duckdb", work / "built.duckdb"
    say(f"generating {args.rows:,} change events over {args.days} days")
    generate(db, args.rows, args.days)
    last = FIRST + timedelta(days=args.days - 1)
    end = FIRST + timedelta(days=args.days)
    projects = {a: work / "projects" / a for a in ("sqlflow", "duckdb")}
    for adapter, project in projects.items():
        write_project(project, adapter, db)
        cmd = dbt_cmd(project, ["run", *args_for(adapter, FIRST, last)])
        code, wall, _ = run_process(
            cmd, project, work / "logs" / f"build-{adapter}.out", args.timeout
        )
        if code:
            raise SystemExit(f"building {adapter} failed: see {work}/logs/build-{adapter}.out")
        say(f"  built {adapter} from days 1-{args.days - 1} in {wall:.1f} s")
    shutil.copyfile(db, snapshot)
    figures: dict[str, list[float]] = {"sqlflow": [], "duckdb": []}
    responses: dict[str, Any] = {}
    for rep in range(args.reps):
        order = ("sqlflow", "duckdb") if rep % 2 == 0 else ("duckdb", "sqlflow")
        for adapter in order:
            copy_settled(snapshot, db)
            project = projects[adapter]
            cmd = dbt_cmd(project, ["run", *args_for(adapter, last, end)])
            log = work / "logs" / f"day-{adapter}-{rep}.out"
            code, wall, rss = run_process(cmd, project, log, args.timeout)
            node, response, error = node_result(project, "feed_state")
            if code or node is None:
                raise SystemExit(f"{adapter} failed: {error} (see {log})")
            figures[adapter].append(node)
            responses[adapter] = response
            say(f"  rep {rep} {adapter:<8} node {node:7.3f} s  wall {wall:6.2f} s  {rss:4.0f} MB")
    # The check: both models apply the last day once more, from the same copy.
    shutil.copyfile(snapshot, db)
    for adapter, project in projects.items():
        cmd = dbt_cmd(project, ["run", *args_for(adapter, last, end)])
        run_process(cmd, project, work / "logs" / f"check-{adapter}.out", args.timeout)
    until = end.isoformat() + " 00:00:00"
    wrong = {
        "sqlflow": mismatches(db, "sf.feed_state", until),
        "duckdb": mismatches(db, "dd.feed_state", until),
    }
    sf, dd = median(figures["sqlflow"]), median(figures["duckdb"])
    counted = ("rows_inserted", "rows_updated", "rows_deleted", "rows_ignored", "batches")
    result = {
        "rows": args.rows,
        "days": args.days,
        "reps": args.reps,
        "node_seconds": {"sqlflow": sf, "duckdb": dd},
        "ratio": (sf / dd) if sf and dd else None,
        "mismatching_rows": wrong,
        "sqlflow_response": {k: responses["sqlflow"].get(k) for k in counted},
    }
    say(json.dumps(result, indent=1))
    if not args.no_write:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / f"cdc-rows-{args.rows}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
