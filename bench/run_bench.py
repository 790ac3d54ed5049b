"""dbt-sqlflow against dbt-duckdb's built-in strategies on the same generated data.

``make bench`` (``ROWS=`` sets the size) runs, for ``type: sqlflow`` and ``type: duckdb``
on the same source of N event rows over 365 days, in the same run, alternating, each
figure the median of ``--reps`` runs:

1. full build (sqlflow merge model / dbt-duckdb incremental model, first run);
2. incremental run with 1% new rows (a new day) and 1% updated rows (existing keys):
   merge vs merge, delete+insert vs delete+insert;
3. replace one day: sqlflow insert_overwrite with an explicit range (``--vars
   sqlflow_start/sqlflow_end``) vs dbt-duckdb microbatch limited to that day
   (``--event-time-start/--event-time-end``);
4. backfill of 365 days: sqlflow ``batch_size='day'`` vs dbt-duckdb microbatch;
5. the same operations as plain DuckDB SQL in one Python process (the floor);
6. ``dbt run`` of a trivial model under each adapter type.

Each dbt command runs as its own process against a fresh copy of a prepared DuckDB file,
so every run of a scenario starts from the same state. Figures: wall seconds of the
process, the model's ``execution_time`` from ``run_results.json`` (node time), the
process's peak RSS (GNU time's ``%M``), and a check that the
target holds exactly the expected rows (count and order-independent sum of row hashes,
compared with the source). Results go to ``bench/results/rows-N.json`` and
``bench/results.md`` (every size measured so far). Nothing holds table data in Python:
generation, changes and checks are SQL, so the same code path runs at 100M rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "results.md"
#: The DuckLake section of results.md (``bench_lake.py`` writes it; kept here as it is).
LAKE_SECTION = ("<!-- bench_lake.py: begin -->", "<!-- bench_lake.py: end -->")

ADAPTERS = ("sqlflow", "duckdb")
SCHEMA = {"sqlflow": "sf", "duckdb": "dd", "floor": "fl"}
COLUMNS = "id, event_ts, customer_id, event_type, amount, status, updated_at"
FIRST_DAY = "2025-01-01"
END_DAY = "2026-01-01"  # exclusive: 365 days of 2025
NEW_DAY = "2026-01-01"  # the day of the incremental scenario's new rows
TRIVIAL_REPS = 5
REPLACE_DAY = ("2025-07-01", "2025-07-02")
BACKFILL_NOW = "2025-12-31T12:00:00"
WMERGE_NOW = "2026-01-02"  # the windowed merge's incremental run: the new day, whole
#: DuckDB settings of scenario 4m (profile ``settings:`` for dbt, ``config`` for the floor).
CAPPED = {"memory_limit": "1GB"}

# -- the dbt projects -------------------------------------------------------------------

SOURCES_YML = """version: 2
sources:
  - name: raw
    schema: raw
    tables:
      - name: events
        config:
          event_time: event_ts
      - name: events_changes
        identifier: events
"""

INCREMENTAL_BODY = f"""
select {COLUMNS}
from {{{{ source('raw', 'events') }}}}
{{% if is_incremental() %}}
where updated_at > (select max(updated_at) from {{{{ this }}}})
{{% endif %}}
"""

DAY_BODY = f"""
select {COLUMNS}
from {{{{ source('raw', 'events') }}}}
"""

# The windowed merge reads the table as a change feed: its windows are on updated_at (the
# model's event_time), not on the source's event_ts.
CHANGES_BODY = f"""
select {COLUMNS}
from {{{{ source('raw', 'events_changes') }}}}
"""

TRIVIAL = "{{ config(materialized='table') }}\nselect 1 as id\n"

MODELS: dict[str, dict[str, str]] = {
    "sqlflow": {
        "events_merge": "{{ config(materialized='sqlflow_incremental',"
        " incremental_strategy='merge', unique_key='id') }}" + INCREMENTAL_BODY,
        "events_di": "{{ config(materialized='sqlflow_incremental',"
        " incremental_strategy='delete+insert', unique_key='id') }}" + INCREMENTAL_BODY,
        "events_day": "{{ config(materialized='sqlflow_incremental',"
        " incremental_strategy='insert_overwrite',"
        " partition_by={'field': 'event_ts', 'granularity': 'day'},"
        f" batch_size='day', begin='{FIRST_DAY}') }}}}" + DAY_BODY,
        # Issue 15's windowed merge: day batches of changes (updated_at), 5 days re-read,
        # day partitions on event_ts (a key stays in its partition, as merge's pruning
        # assumes).
        "events_wmerge": "{{ config(materialized='sqlflow_incremental',"
        " incremental_strategy='merge', unique_key='id', event_time='updated_at',"
        " partition_by={'field': 'event_ts', 'granularity': 'day'}, lookback=5,"
        f" batch_size='day', begin='{FIRST_DAY}') }}}}" + CHANGES_BODY,
        "trivial": TRIVIAL,
    },
    "duckdb": {
        "events_merge": "{{ config(materialized='incremental',"
        " incremental_strategy='merge', unique_key='id') }}" + INCREMENTAL_BODY,
        "events_di": "{{ config(materialized='incremental',"
        " incremental_strategy='delete+insert', unique_key='id') }}" + INCREMENTAL_BODY,
        "events_day": "{{ config(materialized='incremental', incremental_strategy='microbatch',"
        f" event_time='event_ts', batch_size='day', begin='{FIRST_DAY}') }}}}" + DAY_BODY,
        # The same merge model as events_merge: what a user has before adding windows.
        "events_wmerge": "{{ config(materialized='incremental',"
        " incremental_strategy='merge', unique_key='id') }}" + INCREMENTAL_BODY,
        "trivial": TRIVIAL,
    },
}


@dataclass(frozen=True)
class Scenario:
    """One comparison: the same model run under both adapters from the same snapshot."""

    key: str
    title: str
    model: str
    snapshot: str
    args: dict[str, list[str]]
    floor: str | None
    settings: dict[str, str] = field(default_factory=dict)


SCENARIOS = (
    Scenario(
        "full_build",
        "1. full build",
        "events_merge",
        "base",
        {"sqlflow": [], "duckdb": []},
        "full_build",
    ),
    Scenario(
        "merge",
        "2a. incremental merge (1% new + 1% updated)",
        "events_merge",
        "incr",
        {"sqlflow": [], "duckdb": []},
        "merge",
    ),
    Scenario(
        "wmerge_build",
        "1b. first build of a windowed merge (day partitions, lookback 5) vs the merge model's",
        "events_wmerge",
        "base",
        {"sqlflow": ["--vars", json.dumps({"sqlflow_now": END_DAY})], "duckdb": []},
        "full_build",
    ),
    Scenario(
        "wmerge",
        "2c. incremental windowed merge (lookback 5; 1% new + 1% updated) vs merge",
        "events_wmerge",
        "incr",
        {"sqlflow": ["--vars", json.dumps({"sqlflow_now": WMERGE_NOW})], "duckdb": []},
        "merge",
    ),
    Scenario(
        "delete_insert",
        "2b. incremental delete+insert (1% new + 1% updated)",
        "events_di",
        "incr",
        {"sqlflow": [], "duckdb": []},
        "delete_insert",
    ),
    Scenario(
        "replace_day",
        "3. replace one day (sqlflow insert_overwrite vs microbatch)",
        "events_day",
        "day",
        {
            "sqlflow": [
                "--vars",
                json.dumps({"sqlflow_start": REPLACE_DAY[0], "sqlflow_end": REPLACE_DAY[1]}),
            ],
            "duckdb": ["--event-time-start", REPLACE_DAY[0], "--event-time-end", REPLACE_DAY[1]],
        },
        "replace_day",
    ),
    Scenario(
        "backfill",
        "4. backfill 365 days (sqlflow batch_size=day vs microbatch)",
        "events_day",
        "base",
        {
            "sqlflow": ["--vars", json.dumps({"sqlflow_now": BACKFILL_NOW})],
            "duckdb": ["--event-time-start", FIRST_DAY, "--event-time-end", END_DAY],
        },
        "backfill",
    ),
    Scenario(
        "backfill_capped",
        "4m. backfill 365 days, profile settings memory_limit: 1GB (both; the floor too)",
        "events_day",
        "base",
        {
            "sqlflow": ["--vars", json.dumps({"sqlflow_now": BACKFILL_NOW})],
            "duckdb": ["--event-time-start", FIRST_DAY, "--event-time-end", END_DAY],
        },
        "backfill",
        CAPPED,
    ),
    Scenario(
        "trivial",
        "6. dbt run of a trivial model",
        "trivial",
        "base",
        {"sqlflow": [], "duckdb": []},
        None,
    ),
)


def write_project(
    root: Path, adapter: str, db_path: Path, settings: dict[str, str] | None = None
) -> None:
    """A dbt project with the four bench models and a profile of ``adapter`` type."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
        "model-paths: ['models']\nflags:\n  send_anonymous_usage_stats: false\n"
    )
    profile = (
        "bench:\n  target: bench\n  outputs:\n    bench:\n"
        f"      type: {adapter}\n      path: '{db_path}'\n"
        f"      schema: {SCHEMA[adapter]}\n      threads: 1\n"
    )
    if settings:
        profile += "      settings:\n" + "".join(
            f"        {k}: '{v}'\n" for k, v in settings.items()
        )
    (root / "profiles.yml").write_text(profile)
    (root / "models" / "sources.yml").write_text(SOURCES_YML)
    for name, sql in MODELS[adapter].items():
        (root / "models" / f"{name}.sql").write_text(sql + "\n")


# -- running processes ------------------------------------------------------------------


@dataclass
class Run:
    """One measured process."""

    scenario: str
    who: str  # sqlflow, duckdb or floor
    rep: int
    wall: float
    node: float | None
    rss_mb: float
    ok: bool
    fingerprint: tuple[int, str] | None = None
    matches: bool | None = None
    response: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


TIME = Path("/usr/bin/time")


def copy_settled(source: Path, target: Path) -> None:
    """Copy a database file and flush it to disk before the next timed run: the copy's
    write-back would otherwise land inside that run (in the cdc bench at 10M the
    hand-written merge's node time ranged 0.44-0.72 s over 9 runs without the flush,
    0.41-0.49 s with it)."""
    shutil.copyfile(source, target)
    os.sync()


def run_process(
    cmd: list[str], cwd: Path, log: Path, timeout: float, extra_env: dict[str, str] | None = None
) -> tuple[int, float, float]:
    """Run ``cmd`` (with ``extra_env`` added to the environment); return exit code,
    wall seconds and peak RSS in MB of the process.

    The peak RSS is GNU time's "%M" (the kernel's ``ru_maxrss`` of the command). Not
    ``os.wait4`` on our own child: Linux folds the RSS of the process that spawned the
    child (this one, with DuckDB loaded) into the child's maximum. Without
    ``/usr/bin/time``, psutil polls the process tree every 20 ms.
    """
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    env.update(extra_env or {})
    env.pop("DBT_PROFILES_DIR", None)
    rss_file = log.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    if TIME.exists():
        # CPU seconds (user, system) first, for cpu_seconds(); the peak RSS stays last.
        cmd = [str(TIME), "-f", "%U %S %M", "-o", str(rss_file), *cmd]
    peak = 0
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            if TIME.exists():
                proc.wait(timeout)
            else:
                peak = _poll_rss(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - start
    if TIME.exists() and rss_file.exists():
        # GNU time writes "Command exited with non-zero status N" before the figure.
        peak = int(rss_file.read_text().split()[-1]) * 1024
    return proc.returncode, wall, peak / 1024 / 1024


def cpu_seconds(log: Path) -> float | None:
    """User plus system CPU seconds of the process :func:`run_process` ran with ``log``
    (GNU time's ``%U`` and ``%S``), or None without ``/usr/bin/time``."""
    rss_file = log.with_suffix(".rss")
    if not rss_file.exists():
        return None
    user, system = rss_file.read_text().split()[-3:-1]
    return float(user) + float(system)


def _poll_rss(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``proc``, polling the summed RSS of its process tree; the peak in bytes."""
    import psutil

    deadline = time.monotonic() + timeout
    peak = 0
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    return peak


def dbt_cmd(project: Path, args: list[str]) -> list[str]:
    dbt = Path(sys.executable).parent / "dbt"
    return [str(dbt), *args, "--project-dir", str(project), "--profiles-dir", str(project)]


def node_result(project: Path, model: str) -> tuple[float | None, dict[str, Any], str | None]:
    """The model's execution_time, adapter_response and error message from run_results."""
    path = project / "target" / "run_results.json"
    if not path.exists():
        return None, {}, "no run_results.json"
    for result in json.loads(path.read_text())["results"]:
        if result["unique_id"] == f"model.bench.{model}":
            error = None if result["status"] == "success" else str(result.get("message"))
            return result["execution_time"], result.get("adapter_response") or {}, error
    return None, {}, f"model.bench.{model} not in run_results.json"


COMMENT_RE = re.compile(r"/\* \{.*?\} \*/")


def statement_class(sql: str) -> str:
    """A statement with its literals, numbers and generated names blanked, for grouping."""
    text = " ".join(COMMENT_RE.sub("", sql).split())
    text = re.sub(r"'[^']*'", "?", text)
    text = re.sub(r"\d+", "N", text)
    return text[:90]


def timed_dbt_main(out: Path, args: list[str]) -> None:
    """Run dbt in this process, timing every DuckDB statement (both adapters' and
    sqlflow's own, which bypass dbt.log) by statement class; write them to ``out``."""
    from dbt.adapters.duckdb.environments import local

    stats: dict[str, list[float]] = {}
    original = local.DuckDBCursorWrapper.execute

    def execute(self: Any, sql: str, bindings: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return original(self, sql, bindings)
        finally:
            entry = stats.setdefault(statement_class(sql), [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    local.DuckDBCursorWrapper.execute = execute  # type: ignore[method-assign]
    from dbt.cli.main import cli

    code = 0
    try:
        cli(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out.write_text(json.dumps(stats))
    sys.exit(code)


# -- data -------------------------------------------------------------------------------


def fingerprint_sql(table: str, columns: str = COLUMNS) -> str:
    """Count and order-independent hash sum of ``columns`` of ``table``."""
    return f"select count(*), sum(hash({columns}))::varchar from {table}"


def fingerprint(db: Path, table: str, columns: str = COLUMNS) -> tuple[int, str] | None:
    """``fingerprint_sql`` of a table, or None when it cannot be read."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        count, total = con.execute(fingerprint_sql(table, columns)).fetchone()
        return int(count), str(total)
    except duckdb.Error:
        return None
    finally:
        con.close()


def generate_source(db: Path, rows: int) -> None:
    """N events over the 365 days of 2025, written in time order (id order too)."""
    micros = 365 * 86_400 * 1_000_000
    con = duckdb.connect(str(db))
    con.execute("create schema raw")
    con.execute(
        f"""
        create table raw.events as
        select
            i as id,
            ts as event_ts,
            (hash(i) % 200000)::integer as customer_id,
            (['view', 'click', 'cart', 'purchase'])[(hash(i * 7) % 4)::integer + 1] as event_type,
            ((hash(i * 3) % 100000) / 100)::decimal(12, 2) as amount,
            (['new', 'paid', 'shipped'])[(hash(i * 11) % 3)::integer + 1] as status,
            ts as updated_at
        from (
            select range as i,
                timestamp '{FIRST_DAY}'
                    + to_microseconds((range::hugeint * {micros} // {rows})::bigint) as ts
            from range({rows})
        )
        order by i
        """
    )
    con.close()


def change_for_incremental(db: Path, rows: int) -> None:
    """1% updated rows (random existing keys) and 1% new rows on a new day."""
    con = duckdb.connect(str(db))
    con.execute(
        f"""
        update raw.events
        set status = 'updated', amount = amount + 1,
            updated_at = timestamp '{NEW_DAY}' + to_microseconds((id % 86400000000)::bigint)
        where hash(id) % 100 = 0
        """
    )
    new = rows // 100
    con.execute(
        f"""
        insert into raw.events
        select
            {rows} + range,
            ts, (hash(range) % 200000)::integer, 'view', 1.00, 'new', ts
        from (
            select range,
                timestamp '{NEW_DAY}'
                    + to_microseconds((range::hugeint * 86400000000 // {new})::bigint) as ts
            from range({new})
        )
        order by range
        """
    )
    con.close()


def change_one_day(db: Path) -> None:
    """In the replaced day: 10% of rows changed, 1% gone (its rows no longer there)."""
    day = f"event_ts >= timestamp '{REPLACE_DAY[0]}' and event_ts < timestamp '{REPLACE_DAY[1]}'"
    con = duckdb.connect(str(db))
    con.execute(
        f"update raw.events set status = 'fixed', amount = amount + 2"
        f" where {day} and hash(id) % 10 = 0"
    )
    con.execute(f"delete from raw.events where {day} and hash(id) % 100 = 1")
    con.close()


# -- the floor: plain DuckDB SQL in one process ------------------------------------------

SET_COLS = ", ".join(f"{c} = s.{c}" for c in COLUMNS.split(", ") if c != "id")
S_COLS = ", ".join(f"s.{c}" for c in COLUMNS.split(", "))


def floor_statements(op: str, table: str) -> list[str]:
    """The plain SQL of one floor operation on ``table`` (schema fl)."""
    src = "raw.events"
    stage = f"create temp table stage as select {COLUMNS} from {src}" + (
        f" where updated_at > (select max(updated_at) from {table})"
    )
    if op == "full_build":
        return [f"create table {table} as select {COLUMNS} from {src}"]
    if op == "merge":
        return [
            stage,
            f"merge into {table} as t using stage as s on t.id = s.id"
            f" when matched then update set {SET_COLS}"
            f" when not matched then insert ({COLUMNS}) values ({S_COLS})",
        ]
    if op == "delete_insert":
        return [
            stage,
            f"delete from {table} where id in (select id from stage)",
            f"insert into {table} select {COLUMNS} from stage",
        ]
    if op == "replace_day":
        day = (
            f"event_ts >= timestamp '{REPLACE_DAY[0]}' and event_ts < timestamp '{REPLACE_DAY[1]}'"
        )
        return [
            f"delete from {table} where {day}",
            f"insert into {table} select {COLUMNS} from {src} where {day}",
        ]
    raise ValueError(op)


def floor_main(op: str, db: Path, table: str, settings: dict[str, str]) -> None:
    """Run one floor operation (in this process) and print its SQL seconds as JSON."""
    con = duckdb.connect(str(db), config=settings)
    start = time.perf_counter()
    if op == "backfill":
        con.execute(f"create table {table} as select {COLUMNS} from raw.events limit 0")
        days = con.execute(
            f"select range::timestamp from range(timestamp '{FIRST_DAY}',"
            f" timestamp '{END_DAY}', interval 1 day)"
        ).fetchall()
        for (day,) in days:
            con.execute("begin")
            con.execute(
                f"insert into {table} select {COLUMNS} from raw.events"
                f" where event_ts >= ? and event_ts < ? + interval 1 day",
                [day, day],
            )
            con.execute("commit")
    else:
        con.execute("begin")
        for sql in floor_statements(op, table):
            con.execute(sql)
        con.execute("commit")
    seconds = time.perf_counter() - start
    con.close()
    print(json.dumps({"seconds": seconds}))


# -- the bench --------------------------------------------------------------------------


class Bench:
    def __init__(self, rows: int, reps: int, work: Path, timeout: float) -> None:
        self.rows = rows
        self.reps = reps
        self.work = work
        self.timeout = timeout
        self.db = work / "run.duckdb"
        self.logs = work / "logs"
        self.runs: list[Run] = []
        self.expected: dict[str, tuple[int, str]] = {}
        self.prep_seconds: dict[str, float] = {}
        self.sql: dict[str, dict[str, Any]] = {}

    def project(self, adapter: str, scenario: str) -> Path:
        # One project per (adapter, scenario): each always sees the same --vars, so
        # dbt's partial parsing stays valid and no run pays a full re-parse.
        return self.work / "projects" / f"{adapter}-{scenario}"

    def snapshot(self, name: str) -> Path:
        return self.work / f"{name}.duckdb"

    def restore(self, name: str) -> None:
        for suffix in ("", ".wal"):
            Path(str(self.db) + suffix).unlink(missing_ok=True)
        copy_settled(self.snapshot(name), self.db)

    def save(self, name: str) -> None:
        shutil.copyfile(self.db, self.snapshot(name))

    def dbt(self, adapter: str, scenario: Scenario, label: str) -> tuple[int, float, float, Path]:
        project = self.project(adapter, scenario.key)
        (project / "logs" / "dbt.log").unlink(missing_ok=True)
        (project / "target" / "run_results.json").unlink(missing_ok=True)
        cmd = dbt_cmd(project, ["run", "-s", scenario.model, *scenario.args[adapter]])
        log = self.logs / f"{label}.out"
        code, wall, rss = run_process(cmd, project, log, self.timeout)
        shutil.copyfile(project / "logs" / "dbt.log", self.logs / f"{label}.dbt.log")
        return code, wall, rss, log

    def floor(
        self, op: str, table: str, label: str, settings: dict[str, str]
    ) -> tuple[int, float, float, float | None]:
        cmd = [sys.executable, __file__, "--floor", op, "--db", str(self.db), "--table", table]
        cmd += ["--settings", json.dumps(settings)]
        log = self.logs / f"{label}.out"
        code, wall, rss = run_process(cmd, self.work, log, self.timeout)
        seconds = None
        if code == 0:
            seconds = json.loads(log.read_text().strip().splitlines()[-1])["seconds"]
        return code, wall, rss, seconds

    def expect(self, name: str) -> tuple[int, str]:
        found = fingerprint(self.db, "raw.events")
        assert found is not None
        self.expected[name] = found
        return found

    # -- preparation --------------------------------------------------------------

    def prepare(self, only: set[str] | None = None) -> None:
        """Generate the source and the snapshots the scenarios to measure start from
        (``only``: those scenarios; the others' snapshots are not prepared)."""
        needed = {s.snapshot for s in SCENARIOS if only is None or s.key in only}
        if self.work.exists():
            shutil.rmtree(self.work)
        self.logs.mkdir(parents=True)
        say(f"generating {self.rows:,} source rows")
        start = time.perf_counter()
        generate_source(self.db, self.rows)
        self.prep_seconds["generate"] = time.perf_counter() - start
        self.save("base")
        self.expected["base"] = fingerprint(self.db, "raw.events")  # type: ignore[assignment]
        for adapter in ADAPTERS:
            for scenario in SCENARIOS:
                project = self.project(adapter, scenario.key)
                write_project(project, adapter, self.db, scenario.settings)
                parse = ["parse", *_vars_only(scenario.args[adapter])]
                code, _, _ = run_process(
                    dbt_cmd(project, parse), project, self.logs / "parse.out", self.timeout
                )
                if code != 0:
                    raise SystemExit(f"dbt parse failed in {project}: see {self.logs}/parse.out")

        by_key = {s.key: s for s in SCENARIOS}
        if "incr" in needed:
            self._prepare_incremental(by_key)
        if "day" in needed:
            self._prepare_day(by_key)
        self.db.unlink()

    def _prepare_incremental(self, by_key: dict[str, Scenario]) -> None:
        say("preparing the incremental snapshot (both models built, then 1% new + 1% updated)")
        start = time.perf_counter()
        self.restore("base")
        for adapter in ADAPTERS:
            for model in ("events_merge", "events_di"):
                scenario = Scenario("prep", "", model, "base", {adapter: []}, None)
                self._prep_dbt(adapter, scenario, by_key["merge"], f"prep-incr-{adapter}-{model}")
            build = by_key["wmerge_build"]
            self._prep_dbt(adapter, build, build, f"prep-incr-{adapter}-events_wmerge")
        con = duckdb.connect(str(self.db))
        con.execute("create schema fl")
        for model in ("events_merge", "events_di", "events_wmerge"):
            con.execute(f"create table fl.{model} as select {COLUMNS} from raw.events")
        con.close()
        change_for_incremental(self.db, self.rows)
        self.expect("incr")
        self.save("incr")
        self.prep_seconds["incr"] = time.perf_counter() - start

    def _prepare_day(self, by_key: dict[str, Scenario]) -> None:
        say("preparing the one-day snapshot (365 days backfilled by both, then one day changed)")
        start = time.perf_counter()
        self.restore("base")
        for adapter in ADAPTERS:
            scenario = by_key["backfill"]
            self._prep_dbt(adapter, scenario, scenario, f"prep-day-{adapter}")
        con = duckdb.connect(str(self.db))
        con.execute("create schema fl")
        con.execute(
            f"create table fl.events_day as select {COLUMNS} from raw.events order by event_ts"
        )
        con.close()
        change_one_day(self.db)
        self.expect("day")
        self.save("day")
        self.prep_seconds["day"] = time.perf_counter() - start

    def _prep_dbt(self, adapter: str, scenario: Scenario, home: Scenario, label: str) -> None:
        project = self.project(adapter, home.key)
        cmd = dbt_cmd(project, ["run", "-s", scenario.model, *scenario.args[adapter]])
        code, _, _ = run_process(cmd, project, self.logs / f"{label}.out", self.timeout)
        if code != 0:
            raise SystemExit(f"preparation failed: {' '.join(cmd)} (see {self.logs}/{label}.out)")

    # -- measurement ----------------------------------------------------------------

    def measure(self, only: set[str] | None) -> None:
        scenarios = [s for s in SCENARIOS if only is None or s.key in only]
        # The trivial model is all start-up, the noisiest figure and the cheapest: it
        # gets at least TRIVIAL_REPS runs.
        for rep in range(max(self.reps, TRIVIAL_REPS)):
            for scenario in scenarios:
                if rep >= self.reps and scenario.key != "trivial":
                    continue
                order = ADAPTERS if rep % 2 == 0 else ADAPTERS[::-1]
                for who in (*order, "floor"):
                    if who == "floor" and scenario.floor is None:
                        continue
                    self.measure_one(scenario, who, rep)

    def sql_profiles(self, only: set[str] | None) -> None:
        """Where each adapter's node time goes: one extra run per scenario with every
        DuckDB statement timed in-process (``--timed-dbt``); not part of the figures."""
        for scenario in SCENARIOS:
            if only is not None and scenario.key not in only:
                continue
            for adapter in ADAPTERS:
                self.restore(scenario.snapshot)
                project = self.project(adapter, scenario.key)
                out = self.logs / f"{scenario.key}-{adapter}.sql.json"
                (project / "target" / "run_results.json").unlink(missing_ok=True)
                args = ["run", "-s", scenario.model, *scenario.args[adapter]]
                cmd = [
                    sys.executable,
                    __file__,
                    "--timed-dbt",
                    str(out),
                    *dbt_cmd(project, args)[1:],
                ]
                code, wall, _ = run_process(
                    cmd, project, self.logs / f"{scenario.key}-{adapter}.sql.out", self.timeout
                )
                node, _, error = node_result(project, scenario.model)
                profile = sql_profile(out, code, node, wall, error)
                self.sql[f"{scenario.key}-{adapter}"] = profile
                if "error" not in profile:
                    say(
                        f"  {scenario.key:<14} {adapter:<8} node {_fmt(node)} s,"
                        f" SQL {profile['sql_seconds']:.3f} s in {profile['statements']} statements"
                    )

    def measure_one(self, scenario: Scenario, who: str, rep: int) -> None:
        label = f"{scenario.key}-{who}-{rep}"
        self.restore(scenario.snapshot)
        table = f"{SCHEMA[who]}.{scenario.model}"
        response: dict[str, Any] = {}
        error = None
        if who == "floor":
            assert scenario.floor is not None
            if scenario.floor == "full_build" or scenario.floor == "backfill":
                _ensure_schema(self.db, "fl")
            code, wall, rss, node = self.floor(scenario.floor, table, label, scenario.settings)
            if code != 0:
                error = f"floor {scenario.floor} exited {code}: see {self.logs}/{label}.out"
        else:
            code, wall, rss, log = self.dbt(who, scenario, label)
            node, response, error = node_result(self.project(who, scenario.key), scenario.model)
            if code != 0 and error is None:
                error = f"dbt exited {code}: see {log}"
        columns = "id" if scenario.key == "trivial" else COLUMNS
        found = fingerprint(self.db, table, columns) if error is None else None
        expected = (
            TRIVIAL_FINGERPRINT
            if scenario.key == "trivial"
            else self.expected.get(scenario.snapshot)
        )
        matches = found is not None and found == expected
        run = Run(
            scenario=scenario.key,
            who=who,
            rep=rep,
            wall=wall,
            node=node,
            rss_mb=rss,
            ok=error is None,
            fingerprint=found,
            matches=matches,
            response={k: response.get(k) for k in RESPONSE_KEYS if k in response},
            error=error,
        )
        self.runs.append(run)
        node_s = f"{node:7.3f}" if node is not None else "      -"
        status = (
            "ok" if run.ok and matches else f"MISMATCH {found} != {expected}" if run.ok else error
        )
        say(
            f"  rep {rep} {scenario.key:<14} {who:<8} wall {wall:7.2f} s  node {node_s} s"
            f"  rss {rss:7.0f} MB  {status}"
        )


RESPONSE_KEYS = ("rows_inserted", "rows_updated", "rows_deleted", "batches", "strategy")


def sql_profile(
    out: Path, code: int, node: float | None, wall: float, error: str | None
) -> dict[str, Any]:
    """The statement timings a ``--timed-dbt`` run wrote to ``out``, summed: node and wall
    seconds, statement count, SQL seconds and the six costliest statement classes."""
    if code != 0 or not out.exists():
        return {"error": error or f"exit {code}"}
    stats = json.loads(out.read_text())
    top = sorted(stats.items(), key=lambda kv: -kv[1][1])[:6]
    return {
        "node": node,
        "wall": wall,
        "statements": sum(int(v[0]) for v in stats.values()),
        "sql_seconds": sum(v[1] for v in stats.values()),
        "top": [(int(v[0]), v[1], k) for k, v in top],
    }


def sql_profile_lines(profiles: dict[str, dict[str, Any]], level: str) -> list[str]:
    """The "Where the node time goes" table of ``sql_profile`` records keyed
    ``scenario-adapter``, under a heading of ``level`` (``###``); none without records."""
    if not profiles:
        return []
    lines = [
        f"{level} Where the node time goes",
        "",
        "One extra run per scenario and adapter (not in the figures above), with every"
        " DuckDB statement timed in the dbt process, sqlflow's own direct-cursor"
        " statements included (they are not in dbt.log). *outside SQL* is node time"
        " minus statement time: Python, Jinja and dbt's per-statement events. A"
        " multi-statement script (sqlflow sends each batch's state writes as one) is"
        " listed under its first statement.",
        "",
        "| scenario | adapter | node s | SQL s | statements | outside SQL s |"
        " top statements (count x total s: statement) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for key, prof in profiles.items():
        scenario, adapter = key.rsplit("-", 1)
        if "error" in prof:
            lines.append(f"| {scenario} | {adapter} | failed: {prof['error']} | | | | |")
            continue
        node = prof.get("node")
        outside = None if node is None else node - prof["sql_seconds"]
        top = "<br>".join(
            f"{n} x {sec:.3f}: `{sql[:70].replace('|', '/')}`" for n, sec, sql in prof["top"][:4]
        )
        lines.append(
            f"| {scenario} | {adapter} | {_fmt(node)} | {prof['sql_seconds']:.3f} |"
            f" {prof['statements']} | {_fmt(outside)} | {top} |"
        )
    lines.append("")
    return lines


def _trivial_fingerprint() -> tuple[int, str]:
    con = duckdb.connect()
    found = con.execute(fingerprint_sql("(select 1 as id)", "id")).fetchone()
    con.close()
    return int(found[0]), str(found[1])


TRIVIAL_FINGERPRINT = _trivial_fingerprint()


def _ensure_schema(db: Path, schema: str) -> None:
    con = duckdb.connect(str(db))
    con.execute(f"create schema if not exists {schema}")
    con.close()


def _vars_only(args: list[str]) -> list[str]:
    return args[:2] if args[:1] == ["--vars"] else []


def say(message: str) -> None:
    print(message, flush=True)


# -- summary and report -----------------------------------------------------------------


def response_and_failure_lines(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The report's lines on sqlflow's own counts (last run's adapter_response) and failures."""
    lines: list[str] = []
    responses = {
        s: w["sqlflow"]["response"]
        for s, w in summary.items()
        if "sqlflow" in w and w["sqlflow"]["response"]
    }
    if responses:
        lines += ["sqlflow's own counts (adapter_response of the last run):", ""]
        lines += [f"- {s}: {json.dumps(r)}" for s, r in responses.items()]
        lines.append("")
    errors = [
        (s, who, w["error"])
        for s, group in summary.items()
        for who, w in group.items()
        if w["error"]
    ]
    if errors:
        lines += ["Failures:", "", *(f"- {s} / {who}: {e}" for s, who, e in errors), ""]
    return lines


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> who -> medians, run count, failures and the data check."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        for who in (*ADAPTERS, "floor"):
            mine = [r for r in runs if r.scenario == scenario.key and r.who == who]
            if not mine:
                continue
            ok = [r for r in mine if r.ok]
            out.setdefault(scenario.key, {})[who] = {
                "runs": len(mine),
                "failed": len(mine) - len(ok),
                "wall": median([r.wall for r in ok]),
                "node": median([r.node for r in ok]),
                "rss_mb": median([r.rss_mb for r in ok]),
                "data_ok": bool(ok) and all(r.matches for r in mine),
                "response": ok[-1].response if ok else {},
                "error": next((r.error for r in mine if r.error), None),
            }
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(rows: int, summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows; a goal for another size says so."""

    def get(scenario: str, who: str, key: str) -> float | None:
        return summary.get(scenario, {}).get(who, {}).get(key)

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else "MET" if ok else "NOT MET"

    out: list[tuple[str, str, str]] = []
    merge = ratio(get("merge", "sqlflow", "node"), get("merge", "duckdb", "node"))
    big = rows >= 100_000_000
    target = 0.5 if big else 1.0
    at = "100M" if big else "10M"
    note = "" if rows in (10_000_000, 100_000_000) else f" (measured at {rows:,} rows)"
    out.append(
        (
            f"incremental merge node time <= {target}x dbt-duckdb at {at}",
            _fmt_ratio(merge) + note,
            verdict(None if merge is None else merge <= target),
        )
    )
    first = ratio(get("wmerge_build", "sqlflow", "node"), get("wmerge_build", "duckdb", "node"))
    out.append(
        (
            "first build of a windowed merge <= 1.2x node time of dbt-duckdb's build of the merge",
            _fmt_ratio(first) + note,
            verdict(None if first is None else first <= 1.2),
        )
    )
    windowed = ratio(get("wmerge", "sqlflow", "node"), get("wmerge", "duckdb", "node"))
    out.append(
        (
            "incremental windowed merge (lookback 5) <= 1.0x node time of dbt-duckdb's merge",
            _fmt_ratio(windowed) + note,
            verdict(None if windowed is None else windowed <= 1.0),
        )
    )
    build = ratio(get("full_build", "sqlflow", "node"), get("full_build", "duckdb", "node"))
    build_rss = ratio(get("full_build", "sqlflow", "rss_mb"), get("full_build", "duckdb", "rss_mb"))
    out.append(
        (
            "full build (keys checked) <= 1.05x node time and <= 1.1x peak RSS of dbt-duckdb",
            f"{_fmt_ratio(build)} time, {_fmt_ratio(build_rss)} RSS{note}",
            verdict(
                None if build is None or build_rss is None else build <= 1.05 and build_rss <= 1.1
            ),
        )
    )
    day = get("replace_day", "sqlflow", "node")
    # The goal is set at 10M; above that it does not apply (a day holds 10x the rows).
    day_note = "" if rows == 10_000_000 else f" (measured at {rows:,} rows)"
    out.append(
        (
            "one-day replace < 1 s node time at 10M",
            (f"{day:.3f} s" if day is not None else "-") + day_note,
            verdict(None if day is None or rows > 10_000_000 else day < 1.0),
        )
    )
    backfill = ratio(get("backfill", "sqlflow", "node"), get("backfill", "duckdb", "node"))
    floor = ratio(get("backfill", "floor", "node"), get("backfill", "duckdb", "node"))
    # The floor commits each day (one transaction per batch); sqlflow's commit_every
    # (auto) carries many days in one transaction, and below the floor.
    floor_note = f" (plain DuckDB, one transaction per day: {_fmt_ratio(floor)})" if floor else ""
    out.append(
        (
            "365-day backfill node time <= 0.3x dbt-duckdb microbatch",
            _fmt_ratio(backfill) + floor_note,
            verdict(None if backfill is None else backfill <= 0.3),
        )
    )
    out.append(
        (
            "365-day backfill node time <= 0.15x dbt-duckdb microbatch at 10M (commit grouping)",
            _fmt_ratio(backfill) + note,
            verdict(None if backfill is None or rows != 10_000_000 else backfill <= 0.15),
        )
    )
    capped = get("backfill_capped", "sqlflow", "rss_mb")
    rss = get("backfill", "sqlflow", "rss_mb")
    if capped is not None:
        measured = f"{capped:.0f} MB with memory_limit {CAPPED['memory_limit']} at {rows:,} rows"
        if rss is not None:
            measured += (
                f"; {rss:.0f} MB without it (dbt-duckdb"
                f" {_fmt(get('backfill', 'duckdb', 'rss_mb'), 0)}, plain DuckDB"
                f" {_fmt(get('backfill', 'floor', 'rss_mb'), 0)}: DuckDB's buffer cache)"
            )
    else:
        measured = f"{rss:.0f} MB at {rows:,} rows" if rss is not None else "-"
    best = capped if capped is not None else rss
    out.append(
        (
            "100M-row backfill peak RSS < 1.5 GB",
            measured,
            verdict(None if best is None or not big else best < 1536),
        )
    )
    trivial = ratio(get("trivial", "sqlflow", "wall"), get("trivial", "duckdb", "wall"))
    out.append(
        (
            "trivial model wall time <= 1.1x type duckdb",
            _fmt_ratio(trivial),
            verdict(None if trivial is None else trivial <= 1.1),
        )
    )
    checks = all(w.get("data_ok") for s in summary.values() for w in s.values())
    out.append(
        (
            "every target holds exactly the expected rows",
            "all runs" if checks else "see the data column",
            verdict(checks),
        )
    )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_lines(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The results as a Markdown table."""
    lines = [
        "| scenario | who | wall s | node s | peak RSS MB | node ratio | wall ratio |"
        " RSS ratio | data |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scenario in SCENARIOS:
        group = summary.get(scenario.key)
        if not group:
            continue
        base = group.get("duckdb", {})
        for who, fig in group.items():
            compared = who == "sqlflow"
            data = "ok" if fig["data_ok"] else "FAILED" if fig["failed"] else "MISMATCH"
            lines.append(
                f"| {scenario.title if who == next(iter(group)) else ''} | {who} |"
                f" {_fmt(fig['wall'], 2)} | {_fmt(fig['node'])} | {_fmt(fig['rss_mb'], 0)} |"
                f" {_fmt_ratio(ratio(fig['node'], base.get('node'))) if compared else ''} |"
                f" {_fmt_ratio(ratio(fig['wall'], base.get('wall'))) if compared else ''} |"
                f" {_fmt_ratio(ratio(fig['rss_mb'], base.get('rss_mb'))) if compared else ''} |"
                f" {data} |"
            )
    return lines


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    versions = {}
    for package in ("dbt-core", "dbt-duckdb", "dbt-sqlflow", "duckdb"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "dbt"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    if commit and dirty:
        commit += " with uncommitted changes"
    # The checkout may hold uncommitted work: a digest of the installed package's files
    # says which code was measured.
    digest = hashlib.sha256()
    installed = Path(metadata.distribution("dbt-sqlflow").locate_file("dbt"))
    for path in sorted((installed / "adapters" / "sqlflow").rglob("*.py")) + sorted(
        (installed / "include" / "sqlflow").rglob("*.sql")
    ):
        digest.update(path.read_bytes())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit or "unknown",
        "package_digest": digest.hexdigest()[:12],
    }


def run_metrics_bench(write: bool) -> str:
    """The output of bench_metrics.py (issue 6: recording and export costs), kept in
    ``bench/results/metrics.json`` when ``write``."""
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "bench_metrics.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = (proc.stdout + proc.stderr).strip() or f"exited {proc.returncode} with no output"
    if write:
        RESULTS_DIR.mkdir(exist_ok=True)
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        record = {"when": when, "commit": machine()["commit"], "output": output}
        (RESULTS_DIR / "metrics.json").write_text(json.dumps(record, indent=1))
    return output


def carry_over(record: dict[str, Any], earlier: dict[str, Any]) -> None:
    """Keep the scenarios of an earlier record of the same size that ``record`` (an
    ``--only`` run) did not measure, each with when, at which commit and how many runs it
    was measured; the goals are recomputed over the whole."""
    kept = [k for k in earlier["summary"] if k not in record["summary"]]
    if not kept:
        return
    before = earlier.get("provenance") or {}
    for key in kept:
        record["provenance"][key] = before.get(key) or {
            "when": earlier["when"],
            "commit": earlier["machine"]["commit"],
            "reps": earlier["reps"],
        }
    merged = {**{k: earlier["summary"][k] for k in kept}, **record["summary"]}
    order = [s.key for s in SCENARIOS]
    record["summary"] = {k: merged[k] for k in sorted(merged, key=order.index)}
    record["runs"] = [r for r in earlier.get("runs", []) if r["scenario"] in kept] + record["runs"]
    profiles = earlier.get("sql_profiles") or {}
    record["sql_profiles"] = {
        **{k: v for k, v in profiles.items() if k.rsplit("-", 1)[0] in kept},
        **record["sql_profiles"],
    }
    record["goals"] = goals(record["rows"], record["summary"])


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def provenance_lines(result: dict[str, Any]) -> list[str]:
    """A note naming the scenarios kept from an earlier run of the same size, if any."""
    older: dict[tuple[str, str, int], list[str]] = {}
    for key, where in (result.get("provenance") or {}).items():
        if (where["when"], where["commit"]) != (result["when"], result["machine"]["commit"]):
            older.setdefault((where["when"], where["commit"], where["reps"]), []).append(key)
    lines = []
    for (when, commit, reps), keys in older.items():
        lines += [
            "",
            f"Scenarios {', '.join(keys)}: kept from the run of {when} (commit {commit},"
            f" {_runs(reps)} per figure); this run measured only the others.",
        ]
    return lines


def stored_results(pattern: str) -> list[dict[str, Any]]:
    """The results stored in bench/results/ whose file name matches ``pattern``
    (``rows-*.json``), smallest size first."""
    found = (json.loads(p.read_text()) for p in RESULTS_DIR.glob(pattern))
    return sorted(found, key=lambda r: r["rows"])


def write_markdown() -> None:
    """bench/results.md from every bench/results/rows-N.json, smallest size first."""
    results = stored_results("rows-*.json")
    if not results:
        return
    lines = [
        "# dbt-sqlflow benchmark",
        "",
        "Written by `bench/run_bench.py` (`make bench`, `ROWS=` sets the size); see"
        " `bench/README.md` for what each scenario runs. Each figure is the median of the"
        " runs shown; sqlflow and dbt-duckdb alternate and every run starts from a copy of"
        " the same prepared DuckDB file. *node s* is the model's `execution_time` in"
        " `run_results.json` (for the floor: the seconds of its SQL); *wall s* is the whole"
        " process, dbt's start-up included; *peak RSS* is the process's maximum resident set"
        " (GNU time's `%M`). Ratios are sqlflow / dbt-duckdb. *data*"
        " is `ok` when every run's target equalled the expected rows (count and"
        " order-independent sum of row hashes, against the source).",
        "",
    ]
    for result in results:
        m = result["machine"]
        lines += [
            f"## {result['rows']:,} rows",
            "",
            f"Measured {result['when']} on {m['cores']} cores ({m['cpu']}), {m['ram']} RAM,"
            f" {m['os']}, Python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
            + f"; commit {m['commit']}, installed dbt-sqlflow files sha256"
            f" {m.get('package_digest', '?')}. {_runs(result['reps'])} per figure; load average"
            f" {result['load_before']} before, {result['load_after']} after (other jobs"
            " shared the machine, so figures are noisy).",
            *provenance_lines(result),
            "",
            *table_lines(result["summary"]),
            "",
            "### Goals",
            "",
            "| goal | measured | verdict |",
            "|---|---|---|",
            *(
                f"| {g} | {m_} | {v} |"
                # Recomputed from the stored figures, so goal rules stay current.
                for g, m_, v in goals(result["rows"], result["summary"])
            ),
            "",
        ]
        lines += response_and_failure_lines(result["summary"])
        lines += sql_profile_lines(result.get("sql_profiles") or {}, "###")
    metrics_file = RESULTS_DIR / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        lines += [
            "## Metrics recording and export",
            "",
            f"`bench/bench_metrics.py` (issue 6; independent of the table size), run"
            f" {metrics['when']} at commit {metrics['commit']}:",
            "",
            "```",
            metrics["output"],
            "```",
            "",
        ]
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    begin, end = LAKE_SECTION
    if begin in old and end in old:
        lines += [begin + old.split(begin, 1)[1].split(end, 1)[0] + end, ""]
    RESULTS_MD.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work")
    parser.add_argument(
        "--only", help="comma-separated scenarios: " + ",".join(s.key for s in SCENARIOS)
    )
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per process")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results")
    parser.add_argument("--skip-metrics", action="store_true", help="skip bench_metrics.py")
    parser.add_argument(
        "--metrics-only", action="store_true", help="only run bench_metrics.py (any size)"
    )
    parser.add_argument(
        "--no-sql-profile",
        action="store_true",
        help="skip the extra run per scenario that times every SQL statement",
    )
    parser.add_argument("--timed-dbt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.timed_dbt:
        timed_dbt_main(args.timed_dbt, rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.floor:
        floor_main(args.floor, args.db, args.table, json.loads(args.settings))
        return

    if args.metrics_only:
        say(run_metrics_bench(write=not args.no_write))
        if not args.no_write:
            write_markdown()
        return
    only = set(args.only.split(",")) if args.only else None
    bench = Bench(args.rows, args.reps, args.work.resolve(), args.timeout)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    started = datetime.now(UTC)
    # Which code is measured: taken before the runs (the checkout may change meanwhile).
    measured_code = machine()
    bench.prepare(only)
    say(f"prepared in {sum(bench.prep_seconds.values()):.0f} s; measuring ({args.reps} reps)")
    bench.measure(only)
    if not args.no_sql_profile:
        say("one more run of each dbt scenario, every SQL statement timed (not in the figures)")
        bench.sql_profiles(only)
    summary = summarise(bench.runs)
    result_goals = goals(args.rows, summary)
    say("")
    say(f"{args.rows:,} rows, medians of {args.reps}:")
    for line in table_lines(summary):
        say(line)
    say("")
    for goal, measured, verdict in result_goals:
        say(f"{verdict:<8} {goal}: {measured}")
    metrics_out = "" if args.skip_metrics else run_metrics_bench(write=not args.no_write)
    if metrics_out:
        say("")
        say(metrics_out)
    if args.no_write:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    record = {
        "rows": args.rows,
        "reps": args.reps,
        "when": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "machine": measured_code,
        "prep_seconds": bench.prep_seconds,
        "summary": summary,
        "goals": result_goals,
        "runs": [asdict(r) for r in bench.runs],
        "sql_profiles": bench.sql,
    }
    record["provenance"] = {
        key: {"when": record["when"], "commit": record["machine"]["commit"], "reps": args.reps}
        for key in summary
    }
    path = RESULTS_DIR / f"rows-{args.rows}.json"
    if only is not None and path.exists():
        carry_over(record, json.loads(path.read_text()))
    path.write_text(json.dumps(record, indent=1, default=str))
    write_markdown()
    say(f"wrote {RESULTS_MD.relative_to(REPO)}")


if __name__ == "__main__":
    main()
