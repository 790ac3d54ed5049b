"""dbt-sqlflow against dbt-duckdb on a DuckLake: ``make bench-lake`` (``ROWS=`` sets the size).

Runs on the lake stack (``.venv-lake``: DuckDB 1.5.5 with the DuckLake and postgres
extension packages). The lake's catalog is a PostgreSQL database on a throwaway server
(``tests/lake/lake_stack.py``: Debian's packages, a unix socket) when one can be started
here, else a DuckDB file (``--catalog`` chooses); its data files are under
``bench/work-lake/lake/``. The source, ``raw.events`` (N rows over the 365 days of 2025,
as ``run_bench.py`` generates it), lives in the lake; sqlflow writes schema ``sf``,
dbt-duckdb ``dd``, each from a project of its own (same SQL, ``threads: 1``).

1. incremental merge: both targets hold 2025, then 10% of the rows of its last two days
   are corrected (late data) and 1% new rows arrive on 2026-01-01; sqlflow ``merge`` in day
   batches with ``lookback=2`` against dbt-duckdb's ``merge`` reading the same three days
   (``event_ts >= last day - 1 day``);
2. backfill of the 365 days into an empty table: sqlflow windowed ``append`` (daily
   batches, default commit grouping) against dbt-duckdb's ``microbatch``;
3. four sqlflow backfill models (scenario 2's, 4 x N rows): one ``dbt run`` loading them
   in turn against two ``dbt run`` processes at once loading two each (and, for the
   record, one process with ``--threads 4``); the throughput ratio. Needs a PostgreSQL
   catalog (a DuckDB-file catalog takes one writing process at a time);
4. data files: after scenario 1's and 2's runs (plus sqlflow's backfill with
   ``commit_every=1``), DuckLake's live data and delete files per table
   (``ducklake_list_files``) and the Parquet files on disk, then DuckLake's maintenance
   called directly (flush inlined data, rewrite files with deletes, merge adjacent files,
   expire snapshots, clean up old files), and the same counts again.

Every measured run starts from a copy of a prepared lake (the catalog database or file
and the data folder); figures are medians of ``--reps`` runs, sqlflow and dbt-duckdb
alternating. Node time is the model's ``execution_time`` in ``run_results.json``. After
every run each target's count and order-independent hash sum must equal the source's
(as ``run_bench.py`` checks), and again after maintenance. Results go to
``bench/results/lake-rows-N.json`` and the DuckLake section of ``bench/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from run_bench import (
    BENCH_DIR,
    COLUMNS,
    END_DAY,
    FIRST_DAY,
    LAKE_SECTION,
    REPO,
    RESPONSE_KEYS,
    RESULTS_DIR,
    RESULTS_MD,
    SOURCES_YML,
    _fmt,
    _fmt_ratio,
    _runs,
    cpu_seconds,
    dbt_cmd,
    fingerprint_sql,
    generate_source,
    machine,
    median,
    node_result,
    ratio,
    response_and_failure_lines,
    run_process,
    say,
    sql_profile,
    sql_profile_lines,
    stored_results,
)

sys.path.insert(0, str(REPO / "tests" / "lake"))
from lake_stack import PostgresServer, install_extensions, missing_extensions, missing_postgres

ADAPTERS = ("sqlflow", "duckdb")
SCHEMA = {"sqlflow": "sf", "duckdb": "dd"}
CATALOG_DB = "lake_bench"
#: sqlflow's "now" (``SQLFLOW_NOW``) when the merge targets are built: 2025 is loaded.
BUILT_NOW = END_DAY + "T00:00:00"
#: ... and in the measured merge run: 2026-01-01 is complete, 12-30 and 12-31 re-read.
MERGE_NOW = "2026-01-02T00:00:00"
LATE_DAYS = ("2025-12-30", END_DAY)  # the two days corrected late: [start, end)
NEW_DAY = END_DAY
PARALLEL_MODELS = ("load_a", "load_b", "load_c", "load_d")
#: Scenario 3's two processes with one DuckDB thread each (profile ``settings``).
TWO_ONE_THREAD = "two processes, DuckDB threads: 1 each"
#: The maintenance calls of scenario 4, in order, on the whole lake.
MAINTENANCE = (
    ("flush inlined data", "call ducklake_flush_inlined_data('lake')"),
    ("rewrite files with deletes", "call ducklake_rewrite_data_files('lake')"),
    ("merge adjacent files", "call ducklake_merge_adjacent_files('lake')"),
    ("expire snapshots", "call ducklake_expire_snapshots('lake', older_than => now())"),
    ("clean up old files", "call ducklake_cleanup_old_files('lake', cleanup_all => true)"),
)
MARKER_BEGIN, MARKER_END = LAKE_SECTION

# -- the dbt projects -------------------------------------------------------------------

BODY = f"\nselect {COLUMNS}\nfrom {{{{ source('raw', 'events') }}}}\n"
WINDOWED = f"event_time='event_ts', batch_size='day', begin='{FIRST_DAY}'"
SQLFLOW_APPEND = (
    f"{{{{ config(materialized='sqlflow_incremental', incremental_strategy='append', {WINDOWED})"
    " }}" + BODY
)

MODELS: dict[str, dict[str, str]] = {
    "sqlflow": {
        "events_merge": "{{ config(materialized='sqlflow_incremental',"
        f" incremental_strategy='merge', unique_key='id', {WINDOWED}, lookback=2) }}}}" + BODY,
        "events_day": SQLFLOW_APPEND,
        "events_day_each": SQLFLOW_APPEND.replace(") }}", ", commit_every=1) }}", 1),
        **dict.fromkeys(PARALLEL_MODELS, SQLFLOW_APPEND),
        "warmup": "{{ config(materialized='sqlflow_incremental', incremental_strategy='append')"
        " }}\nselect 1 as id\n",
    },
    "duckdb": {
        # The same three days sqlflow's lookback=2 re-reads: the last loaded day and the
        # one before it, and what is new.
        "events_merge": "{{ config(materialized='incremental', incremental_strategy='merge',"
        " unique_key='id') }}" + BODY + "{% if is_incremental() %}\nwhere event_ts >="
        " (select date_trunc('day', max(event_ts)) - interval 1 day from {{ this }})\n"
        "{% endif %}\n",
        "events_day": "{{ config(materialized='incremental', incremental_strategy='microbatch',"
        f" {WINDOWED}) }}}}" + BODY,
    },
}


@dataclass(frozen=True)
class Scenario:
    """One comparison: the same model under both adapters from the same prepared lake."""

    key: str
    title: str
    model: str
    snapshot: str
    args: dict[str, list[str]]
    now: str | None  # sqlflow's SQLFLOW_NOW


SCENARIOS = (
    Scenario(
        "merge",
        "1. incremental merge: 2 late days (10% of rows corrected) + 1 new day (1% of rows)",
        "events_merge",
        "incr",
        {"sqlflow": [], "duckdb": []},
        MERGE_NOW,
    ),
    Scenario(
        "merge_compacted",
        "1b. the same merge, the prepared lake compacted first (DuckLake's maintenance)",
        "events_merge",
        "incr_compacted",
        {"sqlflow": [], "duckdb": []},
        MERGE_NOW,
    ),
    Scenario(
        "backfill",
        "2. backfill 365 days (sqlflow windowed append vs microbatch)",
        "events_day",
        "base",
        {"sqlflow": [], "duckdb": ["--event-time-start", FIRST_DAY, "--event-time-end", END_DAY]},
        BUILT_NOW,
    ),
)


BACKFILL = SCENARIOS[-1]


def maintain(con: duckdb.DuckDBPyConnection) -> list[tuple[str, float, int]]:
    """DuckLake's maintenance of the whole lake (:data:`MAINTENANCE`): (step, seconds,
    rows it returned) of each call."""
    timings = []
    for label, sql in MAINTENANCE:
        start = time.perf_counter()
        out = con.execute(sql).fetchall()
        timings.append((label, time.perf_counter() - start, len(out)))
    return timings


# -- the lake ---------------------------------------------------------------------------


@dataclass
class Lake:
    """The bench's DuckLake: a catalog (a PostgreSQL database or a DuckDB file) and a data
    folder, with named copies of both to start every run from the same state."""

    work: Path
    server: PostgresServer | None

    @property
    def kind(self) -> str:
        return "postgres" if self.server else "duckdb"

    @property
    def data_path(self) -> Path:
        return self.work / "lake"

    @property
    def catalog_file(self) -> Path:
        return self.work / "catalog.ducklake"

    @property
    def attach_path(self) -> str:
        """The attach path after ``ducklake:``."""
        if self.server:
            return f"postgres:{self.server.dsn(CATALOG_DB)}"
        return str(self.catalog_file)

    def profile(self, adapter: str) -> str:
        def output(name: str, settings: str = "") -> str:
            return (
                f"    {name}:\n"
                f"      type: {adapter}\n      path: ':memory:'\n      database: lake\n"
                f"      schema: {SCHEMA[adapter]}\n      threads: 1\n{settings}      attach:\n"
                f'        - path: "ducklake:{self.attach_path}"\n          alias: lake\n'
                f"          options:\n            data_path: '{self.data_path}/'\n"
            )

        # one_thread: scenario 3's processes with one DuckDB thread each (two: two cores).
        return (
            "bench:\n  target: bench\n  outputs:\n"
            + output("bench")
            + output("one_thread", "      settings:\n        threads: 1\n")
        )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """This process's connection to the lake, closed at the end (a DuckDB-file
        catalog takes one process at a time)."""
        con = duckdb.connect()
        try:
            con.execute(
                f"attach 'ducklake:{self.attach_path}' as lake (data_path '{self.data_path}/')"
            )
            yield con
        finally:
            con.close()

    def create(self) -> None:
        shutil.rmtree(self.data_path, ignore_errors=True)
        self.data_path.mkdir(parents=True)
        if self.server:
            self.server.create_database(CATALOG_DB)

    def _copy(self, name: str) -> Path:
        return self.work / "copies" / name

    def save(self, name: str) -> None:
        copy = self._copy(name)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.data_path, copy / "data")
        if self.server:
            self.server.psql("postgres", f"drop database if exists copy_{name}")
            self.server.psql("postgres", f"create database copy_{name} template {CATALOG_DB}")
        else:
            for suffix in ("", ".wal"):
                source = Path(str(self.catalog_file) + suffix)
                if source.exists():
                    shutil.copyfile(source, copy / (source.name))

    def restore(self, name: str) -> None:
        copy = self._copy(name)
        shutil.rmtree(self.data_path)
        shutil.copytree(copy / "data", self.data_path)
        if self.server:
            self.server.psql("postgres", f"drop database {CATALOG_DB}")
            self.server.psql("postgres", f"create database {CATALOG_DB} template copy_{name}")
        else:
            for suffix in ("", ".wal"):
                Path(str(self.catalog_file) + suffix).unlink(missing_ok=True)
                source = copy / (self.catalog_file.name + suffix)
                if source.exists():
                    shutil.copyfile(source, Path(str(self.catalog_file) + suffix))


@contextmanager
def open_lake(work: Path, catalog: str) -> Iterator[tuple[Lake, str]]:
    """The bench's lake and a sentence saying what its catalog is."""
    reason = missing_postgres() if catalog in ("auto", "postgres") else "--catalog duckdb"
    if reason is not None and catalog == "postgres":
        raise SystemExit(f"--catalog postgres, but no PostgreSQL can be started here: {reason}")
    if reason is not None:
        lake = Lake(work, None)
        lake.create()
        yield lake, f"a DuckDB file ({reason})"
        return
    server = PostgresServer.start()
    try:
        lake = Lake(work, server)
        lake.create()
        version = subprocess.run(
            [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        yield lake, f"PostgreSQL ({version}; a throwaway server on a unix socket)"
    finally:
        server.stop()


def lake_fingerprint(lake: Lake, tables: list[str]) -> dict[str, tuple[int, str] | None]:
    """``run_bench``'s fingerprint (count, order-independent hash sum) of each table or
    subquery (named as in ``lake``), or None when it cannot be read."""
    found: dict[str, tuple[int, str] | None] = {}
    with lake.connect() as con:
        for table in tables:
            source = table if table.startswith("(") else f"lake.{table}"
            try:
                count, total = con.execute(fingerprint_sql(source)).fetchone()
                found[table] = (int(count), str(total))
            except duckdb.Error:
                found[table] = None
    return found


# -- runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One finished ``dbt`` process."""

    code: int
    wall: float
    rss_mb: float
    cpu: float | None  # user + system CPU seconds
    retries: int  # sqlflow's retries of a failed transaction (its "retrying in" warnings)


@dataclass
class Run:
    """One measured dbt process (or group of processes, for scenario 3)."""

    scenario: str
    who: str
    rep: int
    wall: float
    node: float | None
    rss_mb: float
    ok: bool
    load: float
    cpu: float | None
    retries: int
    matches: bool | None = None
    fingerprint: Any = None
    response: dict[str, Any] = field(default_factory=dict)
    span: float | None = None
    error: str | None = None


def load1() -> float:
    return os.getloadavg()[0]


class Bench:
    def __init__(self, lake: Lake, rows: int, reps: int, timeout: float) -> None:
        self.lake = lake
        self.rows = rows
        self.reps = reps
        self.timeout = timeout
        self.work = lake.work
        self.logs = self.work / "logs"
        self.runs: list[Run] = []
        self.expected: dict[str, tuple[int, str]] = {}
        self.prep_seconds: dict[str, float] = {}
        self.files: dict[str, Any] = {}
        self.sql: dict[str, dict[str, Any]] = {}
        self.prepared_files: dict[str, dict[str, list[int]]] = {}
        self.control: list[tuple[float, float]] = []

    def project(self, adapter: str) -> Path:
        return self.work / "projects" / adapter

    def dbt(
        self,
        adapter: str,
        args: list[str],
        label: str,
        now: str | None = None,
        target: str = "target",
    ) -> Proc:
        """One ``dbt`` process of ``adapter``'s project, its log and run_results.json in
        ``target``; its output and dbt.log are kept in the logs folder."""
        project = self.project(adapter)
        folder = project / target
        paths = ["--target-path", str(folder), "--log-path", str(folder)]
        for stale in ("run_results.json", "dbt.log"):
            (folder / stale).unlink(missing_ok=True)
        env = {"SQLFLOW_NOW": now} if now and adapter == "sqlflow" else {}
        cmd = dbt_cmd(project, [*args, *paths])
        log = self.logs / f"{label}.out"
        code, wall, rss = run_process(cmd, project, log, self.timeout, env)
        retries = 0
        if (folder / "dbt.log").exists():
            shutil.copyfile(folder / "dbt.log", self.logs / f"{label}.dbt.log")
            retries = (folder / "dbt.log").read_text(errors="replace").count("; retrying in ")
        return Proc(code, wall, rss, cpu_seconds(log), retries)

    def check_dbt(self, adapter: str, args: list[str], label: str, now: str | None) -> None:
        code = self.dbt(adapter, args, label, now).code
        if code != 0:
            raise SystemExit(f"preparation failed: dbt {' '.join(args)} ({self.logs}/{label}.out)")

    # -- preparation --------------------------------------------------------------------

    def prepare(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        say(f"generating {self.rows:,} source rows into the lake")
        start = time.perf_counter()
        local = self.work / "source.duckdb"
        local.unlink(missing_ok=True)
        generate_source(local, self.rows)
        with self.lake.connect() as con:
            con.execute(f"attach '{local}' as src (read_only)")
            con.execute("create schema lake.raw")
            con.execute("create table lake.raw.events as from src.raw.events order by id")
        local.unlink()
        self.prep_seconds["generate"] = time.perf_counter() - start
        self.expect("base")
        for adapter in ADAPTERS:
            project = self.project(adapter)
            (project / "models").mkdir(parents=True, exist_ok=True)
            (project / "dbt_project.yml").write_text(
                "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
                "model-paths: ['models']\nflags:\n  send_anonymous_usage_stats: false\n"
            )
            (project / "profiles.yml").write_text(self.lake.profile(adapter))
            (project / "models" / "sources.yml").write_text(SOURCES_YML)
            for name, sql in MODELS[adapter].items():
                (project / "models" / f"{name}.sql").write_text(sql)
            if self.dbt(adapter, ["parse"], f"parse-{adapter}").code != 0:
                raise SystemExit(f"dbt parse failed: see {self.logs}/parse-{adapter}.out")
            # Scenario 3's processes each have a target path: the same parse in each, so
            # no measured run pays a full parse.
            for target in ("serial", "threads", "p1", "p2") if adapter == "sqlflow" else ():
                (project / f"target-{target}").mkdir()
                shutil.copyfile(
                    project / "target" / "partial_parse.msgpack",
                    project / f"target-{target}" / "partial_parse.msgpack",
                )
            # The one-thread processes parse under their own profile target.
            for target in ("p1t", "p2t") if adapter == "sqlflow" else ():
                args = ["parse", "--target", "one_thread"]
                if self.dbt(adapter, args, f"parse-{target}", target=f"target-{target}").code:
                    raise SystemExit(f"dbt parse failed: see {self.logs}/parse-{target}.out")
        # A lake in use: both target schemas and sqlflow's state tables exist (a first
        # run creates them once; two first runs at once would conflict on creating them).
        self.check_dbt("sqlflow", ["run", "-s", "warmup"], "prep-warmup", None)
        with self.lake.connect() as con:
            con.execute("create schema lake.dd")
        self.lake.save("base")

        say("preparing the merge scenario: both targets hold 2025, then the changes")
        start = time.perf_counter()
        for adapter in ADAPTERS:
            self.check_dbt(adapter, ["run", "-s", "events_merge"], f"prep-{adapter}", BUILT_NOW)
        with self.lake.connect() as con:
            change_for_merge(con, self.rows)
        self.expect("incr")
        # What a backfill of 2025 loads from the changed source (scenario 4 runs there).
        self.expect("incr_2025", f"(from lake.raw.events where event_ts < '{END_DAY}')")
        self.lake.save("incr")
        self.prep_seconds["incr"] = time.perf_counter() - start
        merges = [f"{SCHEMA[a]}.events_merge" for a in ADAPTERS]
        self.prepared_files["incr"] = _file_numbers(self.file_counts(merges))
        # The windowed build left sqlflow's target in one file per day (dbt-duckdb's: one
        # file); scenario 1b runs the same merge after DuckLake's maintenance.
        with self.lake.connect() as con:
            maintain(con)
        self.expect("incr_compacted")
        assert self.expected["incr_compacted"] == self.expected["incr"]
        self.lake.save("incr_compacted")
        self.prepared_files["incr_compacted"] = _file_numbers(self.file_counts(merges))

    def expect(self, name: str, source: str = "raw.events") -> None:
        found = lake_fingerprint(self.lake, [source])[source]
        assert found is not None
        self.expected[name] = found

    # -- scenarios 1 and 2 --------------------------------------------------------------

    def measure(self, only: set[str] | None) -> None:
        for rep in range(self.reps):
            for scenario in SCENARIOS:
                if only is not None and scenario.key not in only:
                    continue
                for who in ADAPTERS if rep % 2 == 0 else ADAPTERS[::-1]:
                    self.measure_one(scenario, who, rep)
            if only is None or "parallel" in only:
                self.measure_parallel(rep)

    def measure_one(self, scenario: Scenario, who: str, rep: int) -> None:
        self.lake.restore(scenario.snapshot)
        label = f"{scenario.key}-{who}-{rep}"
        load = load1()
        proc = self.dbt(
            who, ["run", "-s", scenario.model, *scenario.args[who]], label, scenario.now
        )
        node, response, error = node_result(self.project(who), scenario.model)
        if proc.code != 0 and error is None:
            error = f"dbt exited {proc.code}: see {self.logs}/{label}.out"
        table = f"{SCHEMA[who]}.{scenario.model}"
        found = lake_fingerprint(self.lake, [table])[table] if error is None else None
        expected = self.expected[scenario.snapshot]
        run = Run(
            scenario.key,
            who,
            rep,
            proc.wall,
            node,
            proc.rss_mb,
            error is None,
            load,
            proc.cpu,
            proc.retries,
            found == expected,
            found,
            {k: response[k] for k in (*RESPONSE_KEYS, "commits") if k in response},
            error=error,
        )
        self.runs.append(run)
        status = "ok" if run.ok and run.matches else error or f"MISMATCH {found} != {expected}"
        say(
            f"  rep {rep} {scenario.key:<9} {who:<8} wall {proc.wall:6.2f} s  node {_fmt(node)} s"
            f"  cpu {_fmt(proc.cpu, 1)} s  retries {proc.retries}  load {load:.1f}  {status}"
        )

    def sql_profiles(self, only: set[str] | None) -> None:
        """Where each adapter's node time goes in scenarios 1 and 2: one extra run each
        with every DuckDB statement timed (``run_bench.py --timed-dbt``)."""
        for scenario in SCENARIOS:
            if only is not None and scenario.key not in only:
                continue
            for adapter in ADAPTERS:
                self.lake.restore(scenario.snapshot)
                project = self.project(adapter)
                folder = project / "target"
                (folder / "run_results.json").unlink(missing_ok=True)
                out = self.logs / f"{scenario.key}-{adapter}.sql.json"
                args = ["run", "-s", scenario.model, *scenario.args[adapter]]
                args += ["--target-path", str(folder), "--log-path", str(folder)]
                cmd = [sys.executable, str(BENCH_DIR / "run_bench.py"), "--timed-dbt", str(out)]
                env = {"SQLFLOW_NOW": scenario.now} if scenario.now and adapter == "sqlflow" else {}
                log = self.logs / f"{scenario.key}-{adapter}.sql.out"
                code, wall, _ = run_process(
                    [*cmd, *dbt_cmd(project, args)[1:]], project, log, self.timeout, env
                )
                node, _, error = node_result(project, scenario.model)
                profile = sql_profile(out, code, node, wall, error)
                self.sql[f"{scenario.key}-{adapter}"] = profile
                if "error" not in profile:
                    say(
                        f"  {scenario.key:<9} {adapter:<8} node {_fmt(node)} s,"
                        f" SQL {profile['sql_seconds']:.3f} s in {profile['statements']} statements"
                    )

    # -- scenario 3 ---------------------------------------------------------------------

    def measure_parallel(self, rep: int) -> None:
        if self.lake.server is None:
            return
        self.control.append(machine_scaling())
        say(
            f"  rep {rep} control   two CPU-bound processes in turn {self.control[-1][0]:.2f} s,"
            f" at once {self.control[-1][1]:.2f} s"
        )
        modes = {
            "one process": [("target-serial", PARALLEL_MODELS, [])],
            "two processes": [
                ("target-p1", PARALLEL_MODELS[:2], []),
                ("target-p2", PARALLEL_MODELS[2:], []),
            ],
            "one process, --threads 4": [("target-threads", PARALLEL_MODELS, ["--threads", "4"])],
            TWO_ONE_THREAD: [
                ("target-p1t", PARALLEL_MODELS[:2], ["--target", "one_thread"]),
                ("target-p2t", PARALLEL_MODELS[2:], ["--target", "one_thread"]),
            ],
        }
        order = list(modes) if rep % 2 == 0 else [*list(modes)[1::-1], *list(modes)[2:]]
        for mode in order:
            self.lake.restore("base")
            load = load1()
            start = time.perf_counter()
            with ThreadPoolExecutor(len(modes[mode])) as pool:
                done = list(
                    pool.map(
                        lambda p: self.dbt(
                            "sqlflow",
                            ["run", "-s", *p[1], *p[2]],
                            f"parallel-{p[0]}-{rep}",
                            BUILT_NOW,
                            target=p[0],
                        ),
                        modes[mode],
                    )
                )
            wall = time.perf_counter() - start
            errors, node, starts, ends = [], 0.0, [], []
            for (target, _, _), proc in zip(modes[mode], done, strict=True):
                results = self.project("sqlflow") / target / "run_results.json"
                if proc.code != 0 or not results.exists():
                    errors.append(f"{target} exited {proc.code}: see {self.logs}")
                    continue
                for result in json.loads(results.read_text())["results"]:
                    node += result["execution_time"]
                    times = {t["name"]: t for t in result["timing"]}
                    starts.append(_ts(times["compile"]["started_at"]))
                    ends.append(_ts(times["execute"]["completed_at"]))
                    if result["status"] != "success":
                        errors.append(f"{result['unique_id']}: {result.get('message')}")
            found = lake_fingerprint(self.lake, [f"sf.{m}" for m in PARALLEL_MODELS])
            matches = all(f == self.expected["base"] for f in found.values())
            run = Run(
                "parallel",
                mode,
                rep,
                wall,
                node,
                max(p.rss_mb for p in done),
                not errors,
                load,
                _total([p.cpu for p in done]),
                sum(p.retries for p in done),
                matches,
                {k: list(v) if v else None for k, v in found.items()},
                span=(max(ends) - min(starts)) if ends and not errors else None,
                error="; ".join(errors) or None,
            )
            self.runs.append(run)
            status = "ok" if run.ok and matches else run.error or f"MISMATCH {found}"
            say(
                f"  rep {rep} parallel  {mode:<25} wall {wall:6.2f} s  span {_fmt(run.span)} s"
                f"  cpu {_fmt(run.cpu, 1)} s  retries {run.retries}  load {load:.1f}  {status}"
            )

    # -- scenario 4 ---------------------------------------------------------------------

    def measure_files(self) -> None:
        """Files written per batch by scenario 1's and 2's runs (and sqlflow's backfill
        committing every batch), then after DuckLake's maintenance."""
        self.lake.restore("incr")
        tables = [
            ("merge", "sqlflow", "events_merge", "incr", MERGE_NOW),
            ("merge", "duckdb", "events_merge", "incr", None),
            ("backfill", "sqlflow", "events_day", "incr_2025", BUILT_NOW),
            ("backfill, commit_every=1", "sqlflow", "events_day_each", "incr_2025", BUILT_NOW),
            ("backfill", "duckdb", "events_day", "incr_2025", None),
        ]
        before = self.file_counts([f"{SCHEMA[a]}.{m}" for _, a, m, _, _ in tables])
        runs: dict[str, dict[str, Any]] = {}
        for what, adapter, model, snapshot, now in tables:
            args = ["run", "-s", model]
            if adapter == "duckdb" and what == "backfill":
                args += BACKFILL.args["duckdb"]
            code = self.dbt(adapter, args, f"files-{adapter}-{model}", now).code
            node, response, error = node_result(self.project(adapter), model)
            runs[f"{SCHEMA[adapter]}.{model}"] = {
                "what": what,
                "adapter": adapter,
                "expected": snapshot,
                "node": node,
                # dbt-duckdb's merge is one statement; its microbatch run reports batches.
                "batches": response.get("batches")
                or (_microbatches(self.project(adapter)) if what == "backfill" else 1),
                "commits": response.get("commits"),
                "error": error or (f"dbt exited {code}" if code else None),
            }
        names = list(runs)
        after = self.file_counts(names)
        disk_after = self.disk_files()
        with self.lake.connect() as con:
            snapshots_before = con.execute("select count(*) from lake.snapshots()").fetchone()[0]
            timings = maintain(con)
            snapshots_after = con.execute("select count(*) from lake.snapshots()").fetchone()[0]
        maintained = self.file_counts(names)
        found = lake_fingerprint(self.lake, names)
        for name, run in runs.items():
            was, now_, kept = before[name], after[name], maintained[name]
            run["written"] = [len(now_[k] - was[k]) for k in ("data", "delete")]
            run["dropped"] = [len(was[k] - now_[k]) for k in ("data", "delete")]
            run["after"] = _file_numbers({name: now_})[name]
            run["maintained"] = _file_numbers({name: kept})[name]
            run["matches_after_maintenance"] = found[name] == self.expected[run["expected"]]
        self.files = {
            "tables": runs,
            "maintenance": timings,
            "snapshots": [snapshots_before, snapshots_after],
            "disk": [disk_after, self.disk_files()],
        }
        for name, run in runs.items():
            say(
                f"  {name:<20} {run['what']:<25} batches {run['batches']} commits"
                f" {run['commits']}: written {run['written']}, dropped {run['dropped']}, live"
                f" {run['after']} -> {run['maintained']} after maintenance,"
                f" exact {run['matches_after_maintenance']}"
            )
        say(f"  maintenance: {timings}; parquet files on disk {self.files['disk']}")

    def file_counts(self, tables: list[str]) -> dict[str, dict[str, Any]]:
        """Each table's (schema.table) live data files and delete files (their paths, as
        ``ducklake_list_files`` lists them) and their bytes; an empty record for a table
        that does not exist."""
        counts: dict[str, dict[str, Any]] = {}
        with self.lake.connect() as con:
            for table in tables:
                schema, name = table.split(".")
                try:
                    files = con.execute(
                        "select data_file, delete_file,"
                        " data_file_size_bytes + coalesce(delete_file_size_bytes, 0)"
                        f" from ducklake_list_files('lake', '{name}', schema => '{schema}')"
                    ).fetchall()
                except duckdb.CatalogException:
                    files = []
                counts[table] = {
                    "data": {f[0] for f in files},
                    "delete": {f[1] for f in files if f[1]},
                    "bytes": sum(f[2] for f in files),
                }
        return counts

    def disk_files(self) -> int:
        return sum(1 for _ in self.lake.data_path.rglob("*.parquet"))


#: A CPU-bound Python process of about a second (no I/O, no DuckDB).
SPIN = [sys.executable, "-c", "sum(i * i for i in range(25_000_000))"]


def machine_scaling() -> tuple[float, float]:
    """Wall seconds of two CPU-bound processes run in turn, then at once: what running
    two processes gained on this machine at that moment (2x on two idle cores)."""
    start = time.perf_counter()
    for _ in range(2):
        subprocess.run(SPIN, check=True)
    in_turn = time.perf_counter() - start
    start = time.perf_counter()
    for proc in [subprocess.Popen(SPIN) for _ in range(2)]:
        proc.wait()
    return in_turn, time.perf_counter() - start


def _file_numbers(counts: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """``file_counts`` as ``[data files, delete files, bytes]`` per table."""
    return {t: [len(c["data"]), len(c["delete"]), c["bytes"]] for t, c in counts.items()}


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v or 0.0 for v in values)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _microbatches(project: Path) -> int | None:
    """The batch count of dbt's microbatch run (``batch_results`` in run_results.json)."""
    path = project / "target" / "run_results.json"
    if not path.exists():
        return None
    for result in json.loads(path.read_text())["results"]:
        batches = result.get("batch_results") or {}
        if batches:
            return len(batches.get("successful", [])) + len(batches.get("failed", []))
    return None


def change_for_merge(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    """10% of the rows of the last two days of 2025 corrected (late data) and 1% new
    rows on 2026-01-01."""
    con.execute(
        "update lake.raw.events set status = 'late', amount = amount + 1,"
        f" updated_at = timestamp '{NEW_DAY} 12:00:00'"
        f" where event_ts >= timestamp '{LATE_DAYS[0]}' and event_ts < timestamp '{LATE_DAYS[1]}'"
        " and hash(id) % 10 = 0"
    )
    new = max(rows // 100, 1)
    con.execute(
        f"""
        insert into lake.raw.events
        select {rows} + range, ts, (hash(range) % 200000)::integer, 'view', 1.00, 'new', ts
        from (
            select range,
                timestamp '{NEW_DAY}'
                    + to_microseconds((range::hugeint * 86400000000 // {new})::bigint) as ts
            from range({new})
        )
        order by range
        """
    )


# -- summary and report -----------------------------------------------------------------


def summarise(runs: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> who -> medians, run count, failures and the data check."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run.scenario, {}).setdefault(run.who, {})
    for scenario, group in out.items():
        for who in group:
            mine = [r for r in runs if r.scenario == scenario and r.who == who]
            ok = [r for r in mine if r.ok]
            group[who] = {
                "runs": len(mine),
                "failed": len(mine) - len(ok),
                "wall": median([r.wall for r in ok]),
                "node": median([r.node for r in ok]),
                "span": median([r.span for r in ok]),
                "rss_mb": median([r.rss_mb for r in ok]),
                "cpu": median([r.cpu for r in ok]),
                "retries": sum(r.retries for r in mine),
                "walls": [round(r.wall, 2) for r in ok],
                "data_ok": bool(ok) and all(r.matches for r in mine),
                "response": ok[-1].response if ok else {},
                "error": next((r.error for r in mine if r.error), None),
            }
    return out


def goals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows."""
    summary = result["summary"]
    parallel = summary.get("parallel", {})
    one = parallel.get("one process", {})
    two = parallel.get("two processes", {})
    wall = ratio(one.get("wall"), two.get("wall"))
    span = ratio(one.get("span"), two.get("span"))
    if wall is None:
        measured = "not measured: " + (result.get("parallel_skipped") or "a run failed")
        verdict = "n/a"
    else:
        measured = (
            f"{wall:.2f}x ({_fmt(one['wall'], 2)} s / {_fmt(two['wall'], 2)} s wall,"
            f" dbt start-up included); {_fmt_ratio(span)} on the span from the first model's"
            " start to the last one's end"
        )
        verdict = "MET" if wall >= 1.5 else "NOT MET"
        threaded = ratio(one.get("wall"), parallel.get(TWO_ONE_THREAD, {}).get("wall"))
        if threaded is not None:
            measured += f"; two processes with one DuckDB thread each: {threaded:.2f}x"
        busy = ratio(one.get("cpu"), one.get("wall"))
        least = min(
            (f["cpu"] for k, f in parallel.items() if k.startswith("two") and f.get("cpu")),
            default=None,
        )
        if busy and least:
            # Two processes cannot finish sooner than their CPU seconds over the 2 cores.
            measured += (
                f"; one process kept {busy:.2f} of the 2 cores busy and two used"
                f" {least:.1f} CPU s (one more dbt start-up), which 2 cores cannot run in"
                f" under {least / 2:.2f} s: at most {one['wall'] / (least / 2):.2f}x here"
            )
        if result.get("control"):
            measured += (
                "; the machine's own gain for two CPU-bound processes at the time:"
                f" {_control(result['control'])}"
            )
    exact = all(w["data_ok"] for g in summary.values() for w in g.values()) and all(
        t["matches_after_maintenance"] for t in result["files"].get("tables", {}).values()
    )
    return [
        ("two processes loading 4 models: throughput >= 1.5x one process", measured, verdict),
        (
            "every target holds exactly the source's rows (after maintenance too)",
            "all runs" if exact else "see the data column",
            "MET" if exact else "NOT MET",
        ),
    ]


def lake_versions() -> dict[str, str]:
    con = duckdb.connect()
    try:
        return dict(
            con.execute(
                "select extension_name, extension_version from duckdb_extensions()"
                " where extension_name in ('ducklake', 'postgres_scanner') and installed"
            ).fetchall()
        )
    finally:
        con.close()


def section_lines(results: list[dict[str, Any]]) -> list[str]:
    """The DuckLake section of results.md, every size measured, smallest first."""
    lines = [
        MARKER_BEGIN,
        "## DuckLake",
        "",
        "Written by `bench/bench_lake.py` (`make bench-lake`, `ROWS=` sets the size; see"
        " `bench/README.md`). The source and both targets are in one DuckLake; every run starts"
        " from a copy of the same prepared lake (catalog and data files). *node s* is the"
        " model's `execution_time` in `run_results.json`, *wall s* the whole `dbt` process."
        " Ratios are sqlflow / dbt-duckdb, medians of the runs shown. *data* is `ok` when every"
        " run's target equalled the source (count and order-independent sum of row hashes).",
        "",
    ]
    for result in results:
        m = result["machine"]
        loads = [r["load"] for r in result["runs"]]
        lines += [
            f"### {result['rows']:,} rows",
            "",
            f"Measured {result['when']} on {m['cores']} cores ({m['cpu']}), {m['ram']} RAM,"
            f" {m['os']}, Python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in {**m["versions"], **result["lake"]}.items())
            + f"; catalog: {result['catalog']}; commit {m['commit']}, installed dbt-sqlflow"
            f" files sha256 {m['package_digest']}. {_runs(result['reps'])} per figure. Load"
            f" average (1 min) {result['load_before']} before, {result['load_after']} after,"
            f" {min(loads):.1f}-{max(loads):.1f} at the start of the runs"
            + (
                f": the machine's {m['cores']} cores were shared with other jobs, so the"
                " figures are noisy."
                if max(loads) > m["cores"]
                else "."
            ),
            "",
            "| scenario | who | wall s | node s | CPU s | peak RSS MB | retries | node ratio |"
            " wall ratio | data |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for scenario in SCENARIOS:
            group = result["summary"].get(scenario.key, {})
            base = group.get("duckdb", {})
            for who in ADAPTERS:
                fig = group.get(who)
                if not fig:
                    continue
                compared = who == "sqlflow"
                lines.append(
                    f"| {scenario.title if who == 'sqlflow' else ''} | {who} |"
                    f" {_fmt(fig['wall'], 2)} | {_fmt(fig['node'])} | {_fmt(fig['cpu'], 1)} |"
                    f" {_fmt(fig['rss_mb'], 0)} | {fig['retries']} |"
                    f" {_fmt_ratio(ratio(fig['node'], base.get('node'))) if compared else ''} |"
                    f" {_fmt_ratio(ratio(fig['wall'], base.get('wall'))) if compared else ''} |"
                    f" {_data(fig)} |"
                )
        prepared = result.get("prepared_files") or {}
        if prepared:
            lines += [
                "",
                "The merge targets before the run (data + delete files):"
                + "; ".join(
                    f" {'1b' if state == 'incr_compacted' else '1'}: "
                    + ", ".join(f"{t} {n[0]} + {n[1]}" for t, n in tables.items())
                    for state, tables in prepared.items()
                )
                + " (sqlflow's windowed build writes a file per day; dbt-duckdb's first run is"
                " one statement).",
            ]
        lines += ["", *parallel_lines(result), "", *files_lines(result), ""]
        lines += [
            "#### Goals",
            "",
            "| goal | measured | verdict |",
            "|---|---|---|",
            *(f"| {g} | {m_} | {v} |" for g, m_, v in goals(result)),
            "",
        ]
        lines += response_and_failure_lines(result["summary"])
        lines += sql_profile_lines(result.get("sql_profiles") or {}, "####")
    lines.append(MARKER_END)
    return lines


def _data(fig: dict[str, Any]) -> str:
    return "ok" if fig["data_ok"] else "FAILED" if fig["failed"] else "MISMATCH"


def parallel_lines(result: dict[str, Any]) -> list[str]:
    group = result["summary"].get("parallel")
    title = "3. four sqlflow backfill models (4 x the rows above)"
    if not group:
        return [f"{title}: not measured ({result.get('parallel_skipped') or 'not selected'})."]
    rows = 4 * result["rows"]
    one = group.get("one process", {})
    lines = [
        f"{title}. *wall*: from starting the process(es) to the last one's exit. *span*: first"
        " model's start to last model's end (run_results.json timing; dbt's start-up"
        " excluded). *CPU s*: user + system seconds of the dbt processes (GNU time), *cores"
        " busy* that over the wall time. *retries*: sqlflow's retries of a failed transaction"
        " (commit conflicts), summed over the runs. Throughput: rows over wall seconds; ratio"
        " against one process loading the four in turn.",
        "",
        "| how | wall s (each run) | span s | node s (sum) | CPU s (cores busy) | retries |"
        " rows/s | throughput ratio | data |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for who, fig in group.items():
        rate = rows / fig["wall"] if fig["wall"] else None
        busy = ratio(fig["cpu"], fig["wall"])
        lines.append(
            f"| {who} | {_fmt(fig['wall'], 2)} ({', '.join(map(str, fig['walls']))}) |"
            f" {_fmt(fig['span'], 2)} | {_fmt(fig['node'], 2)} |"
            f" {_fmt(fig['cpu'], 1)} ({_fmt(busy, 2)}) | {fig['retries']} |"
            f" {'-' if rate is None else f'{rate:,.0f}'} |"
            f" {_fmt_ratio(ratio(one.get('wall'), fig['wall']))} | {_data(fig)} |"
        )
    control = result.get("control") or []
    if control:
        lines += [
            "",
            "Control, just before each rep: two CPU-bound Python processes (no I/O, no DuckDB)"
            " in turn, then at once; what two processes gained on this machine then:"
            f" {_control(control)} (2.00x on two idle cores).",
        ]
    return lines


def _control(control: list[list[float]]) -> str:
    gains = [a / b for a, b in control]
    listed = ", ".join(f"{g:.2f}x" for g in gains)
    return f"median {statistics.median(gains):.2f}x ({listed})"


def files_lines(result: dict[str, Any]) -> list[str]:
    files = result.get("files") or {}
    if not files:
        return ["4. data files: not measured."]
    lines = [
        "4. Data files (one run each, from the prepared lake): the data files + delete"
        " files of each table (`ducklake_list_files`); *written*: files the run added,"
        " *dropped*: files it took out of the table (all their rows deleted). Then"
        " DuckLake's maintenance on the whole lake, in this order: "
        + ", ".join(f"`{sql.split()[1].split('(')[0]}`" for _, sql in MAINTENANCE)
        + ".",
        "",
        "| table | run | batches | commits | files written: data + delete | per batch |"
        " dropped | live after the run | after maintenance | MB after the run / maintenance |"
        " data after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in files["tables"].items():
        written, dropped, after, kept = t["written"], t["dropped"], t["after"], t["maintained"]
        per = sum(written) / t["batches"] if t["batches"] else None  # 1 file in 365: 0.003
        lines.append(
            f"| {name} | {t['adapter']} {t['what']} | {t['batches'] or '-'} |"
            f" {t['commits'] or '-'} | {written[0]} + {written[1]} | {_fmt(per, 3)} |"
            f" {dropped[0]} + {dropped[1]} | {after[0]} + {after[1]} | {kept[0]} + {kept[1]} |"
            f" {after[2] / 1e6:.1f} / {kept[2] / 1e6:.1f} |"
            f" {'ok' if t['matches_after_maintenance'] else 'MISMATCH'} |"
        )
    disk, snaps = files["disk"], files["snapshots"]
    lines += [
        "",
        f"Maintenance took {sum(s for _, s, _ in files['maintenance']):.2f} s ("
        + ", ".join(f"{label} {s:.2f} s" for label, s, _ in files["maintenance"])
        + f"); snapshots {snaps[0]} -> {snaps[1]}; Parquet files on disk in the lake"
        f" (source, state and every table) {disk[0]} -> {disk[1]}.",
    ]
    return lines


def write_markdown() -> None:
    """Replace (or add) the DuckLake section of results.md; the rest stays as it is."""
    results = stored_results("lake-rows-*.json")
    if not results:
        return
    section = "\n".join(section_lines(results))
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    if MARKER_BEGIN in text and MARKER_END in text:
        head, rest = text.split(MARKER_BEGIN, 1)
        text = head + section + rest.split(MARKER_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work-lake")
    parser.add_argument(
        "--catalog",
        choices=("auto", "postgres", "duckdb"),
        default="auto",
        help="the lake's catalog: PostgreSQL when a server can be started (auto), or a DuckDB file",
    )
    parser.add_argument("--only", help="comma-separated: merge,backfill,parallel,files")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per process")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results")
    parser.add_argument(
        "--no-sql-profile",
        action="store_true",
        help="skip the extra run of scenarios 1 and 2 that times every SQL statement",
    )
    args = parser.parse_args()
    reason = missing_extensions()
    if reason:
        raise SystemExit(f"bench_lake.py: {reason}")
    install_extensions()
    only = set(args.only.split(",")) if args.only else None
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    started = datetime.now(UTC)
    measured_code = machine()
    with open_lake(work, args.catalog) as (lake, catalog):
        say(f"the lake's catalog: {catalog}; its data: {lake.data_path}")
        bench = Bench(lake, args.rows, args.reps, args.timeout)
        bench.prepare()
        say(f"prepared in {sum(bench.prep_seconds.values()):.0f} s; measuring ({args.reps} reps)")
        bench.measure(only)
        if not args.no_sql_profile:
            say("one more run of scenarios 1 and 2, every SQL statement timed (not in the figures)")
            bench.sql_profiles(only)
        if only is None or "files" in only:
            say("data files per batch, before and after maintenance")
            bench.measure_files()
    record: dict[str, Any] = {
        "rows": args.rows,
        "reps": args.reps,
        "when": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_before,
        "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "machine": measured_code,
        "lake": lake_versions(),
        "catalog": catalog,
        "prep_seconds": bench.prep_seconds,
        "summary": summarise(bench.runs),
        "files": bench.files,
        "prepared_files": bench.prepared_files,
        "control": bench.control,
        "sql_profiles": bench.sql,
        "runs": [asdict(r) for r in bench.runs],
    }
    if lake.server is None:
        record["parallel_skipped"] = (
            "a DuckDB-file catalog takes one writing process at a time; needs PostgreSQL"
        )
    record["goals"] = goals(record)
    say("")
    for line in section_lines([record]):
        say(line)
    if args.no_write:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"lake-rows-{args.rows}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    write_markdown()
    say(f"wrote {RESULTS_MD.relative_to(REPO)} and {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
