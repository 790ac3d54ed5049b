"""The fault-injection suite: trials of a windowed project, each with one fault drawn at
random, then reruns as a scheduler would, checked against a reference built without faults.

``make faults`` runs 100 seeded trials (``python tests/faults/runner.py --trials 100``);
``tests/functional/test_fault_injection.py`` runs one trial of each kind inside
``make test``. Faults (all real: the errors come from DuckDB and the OS):

- ``kill``: SIGKILL of the dbt process in the middle of a random batch of a random model;
- ``term``: SIGTERM there (the batch rolls back, dbt stops);
- ``lock``: another process holds the DuckDB file for 0-15 s when dbt starts;
- ``conflict``: another connection updates a row the batch then updates (DuckDB's
  "Conflict on update", a write-write conflict) in a random batch;
- ``oom``: a statement needing twice the ``memory_limit`` in a random batch.

``--lake`` (run with .venv-lake's python: ``make faults-lake``) runs the same project on a
DuckLake with a PostgreSQL catalog (one database and one data folder per trial, on a
PostgreSQL the runner starts with ``tests/lake/lake_stack.py``; the raw events stay in a
DuckDB file attached read-only beside it). Its faults:

- ``pg_restart``: the catalog's PostgreSQL restarts (fast shutdown: sessions are cut)
  once the run has committed a random number of DuckLake snapshots;
- ``lake_writer``: another connection rewrites a row of a random target (a no-op UPDATE,
  a delete and insert in DuckLake) four times, a random gap apart, while the run loads it;
- ``kill`` and ``term`` as above.

Each trial checks every target's rows against the reference (as multisets: rows lost and
rows duplicated), duplicate keys, sqlflow's intervals against the reference's, and that
no staging or backup table is left behind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("kill", "term", "lock", "conflict", "oom")
"""Fault kinds; kill and term stop the process, so only the next run can recover them."""
LAKE_KINDS = ("kill", "term", "pg_restart", "lake_writer")
"""Fault kinds of ``--lake``."""
STOPPING = ("kill", "term")
"""The kinds only the next run can recover: the others must be recovered within the run."""

MODELS = ("ev_append", "ev_merge", "ev_overwrite", "ev_snapshot")
DAYS = 32
NOW = "2025-02-02T00:00:00"
RERUNS = 3
"""How many times the scheduler reruns dbt after a failed run."""

WINDOWED = "event_time='event_ts', batch_size='day', begin='2025-01-01'"
CONFIGS = {
    "ev_append": f"incremental_strategy='append', {WINDOWED}",
    "ev_merge": f"incremental_strategy='merge', unique_key='id', dedupe_by='event_id', {WINDOWED}",
    "ev_overwrite": (
        "incremental_strategy='insert_overwrite',"
        f" partition_by={{'field': 'event_ts', 'granularity': 'day'}}, {WINDOWED}"
    ),
    "ev_snapshot": (
        "incremental_strategy='snapshot', unique_key='id', dedupe_by='event_id',"
        " snapshot={'strategy': 'timestamp', 'updated_at': 'event_ts'},"
        " event_time='event_ts', batch_size='day', begin='2025-01-01'"
    ),
}
# Keys that must be unique in each target.
KEYS = {
    "ev_append": ("event_id",),
    "ev_merge": ("id",),
    "ev_overwrite": ("event_id",),
    "ev_snapshot": ("id", "dbt_valid_from"),
}
SELECT = "select event_id, id, event_ts, v from {{ source('raw', 'events') }}"


@dataclass
class Trial:
    """One trial: its fault and what became of it."""

    number: int
    kind: str
    model: str | None
    batch: int | None
    hold_seconds: float | None
    # pg_restart: the DuckLake snapshots committed before the restart; lake_writer: the
    # seconds between its writes, and how many of its writes committed.
    after_snapshots: int | None = None
    gap_seconds: float | None = None
    writes: int = 0
    first_exit: int = 0
    reruns: int = 0
    recovered: str = ""  # "in run", "next run", "not recovered"
    rows_lost: int = 0
    rows_duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)


# -- the project -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lake:
    """Where a lake trial's project lives: a DuckLake whose catalog is a PostgreSQL
    database (``dsn``) and whose files go to ``data_path``, with the raw events in the
    DuckDB file ``raw`` (attached read-only as ``raw_db``)."""

    dsn: str
    data_path: str
    raw: Path


RETRY = {"attempts": 5, "initial_seconds": 1, "max_seconds": 8}


def profile_output(database: Path | Lake) -> dict:
    """The profile's target: sqlflow on a DuckDB file, or on a lake (``database: lake``)."""
    # One thread: an injected out-of-memory statement starves only its own model (with
    # two, it can hit the other one outside its batches, where nothing is retried).
    common = {"threads": 1, "settings": {"memory_limit": "512MB"}, "sqlflow_retry": RETRY}
    if isinstance(database, Path):
        return {"type": "sqlflow", "path": str(database), **common}
    return {
        "type": "sqlflow",
        "path": ":memory:",
        "database": "lake",
        "schema": "main",
        **common,
        "attach": [
            {
                "path": f"ducklake:postgres:{database.dsn}",
                "alias": "lake",
                "options": {"data_path": database.data_path},
            },
            {"path": str(database.raw), "alias": "raw_db", "read_only": True},
        ],
    }


def write_project(root: Path, database: Path | Lake) -> None:
    """The dbt project of the trials and its profile (sqlflow on ``database``)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        "name: faults\nversion: '1.0'\nconfig-version: 2\nprofile: faults\n"
        "model-paths: ['models']\n"
    )
    (root / "profiles.yml").write_text(
        json.dumps({"faults": {"target": "dev", "outputs": {"dev": profile_output(database)}}})
    )
    raw_database = "" if isinstance(database, Path) else "    database: raw_db\n"
    (root / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n"
        + raw_database
        + "    schema: raw\n    tables:\n      - name: events\n"
    )
    for name in MODELS:
        text = "{{ config(materialized='sqlflow_incremental', " + CONFIGS[name] + ") }}\n" + SELECT
        (root / "models" / f"{name}.sql").write_text(text + "\n")


def seed_database(path: Path, seed: int) -> None:
    """Raw events over 32 days: 60 a day, ids reused across days (updates for merge and
    the snapshot)."""
    import duckdb

    rng = random.Random(seed)
    rows = []
    event_id = 0
    for day in range(DAYS):
        for _ in range(60):
            event_id += 1
            minute = rng.randrange(24 * 60)
            ts = f"2025-01-{1 + day:02d} {minute // 60:02d}:{minute % 60:02d}:00"
            if day >= 31:
                ts = f"2025-02-01 {minute // 60:02d}:{minute % 60:02d}:00"
            rows.append((event_id, rng.randrange(400), ts, f"v{rng.randrange(10**6)}"))
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute(
        "create table raw.events (event_id integer, id integer, event_ts timestamp, v text)"
    )
    con.executemany("insert into raw.events values (?, ?, ?, ?)", rows)
    con.close()


# -- running dbt -----------------------------------------------------------------------------


def dbt(
    root: Path,
    faults: str = "",
    timeout: float = 600,
    during: Callable[[threading.Event], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``dbt run`` of the project in its own process, pinned to NOW; ``during`` (a fault
    from outside) runs in a thread meanwhile, told by its event when the run has ended."""
    env = {
        **os.environ,
        "SQLFLOW_NOW": NOW,
        "SQLFLOW_FAULTS": faults,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "run",
        "--project-dir",
        str(root),
        "--profiles-dir",
        str(root),
    ]
    if during is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    ended = threading.Event()
    outside = threading.Thread(target=during, args=(ended,))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    outside.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        ended.set()
        outside.join(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@contextmanager
def lock_held(path: Path, seconds: float) -> Iterator[None]:
    """Another process holds the DuckDB file's lock for ``seconds`` (then exits)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
            " print('ready', flush=True); time.sleep(float(sys.argv[2]))",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.wait(timeout=seconds + 60)


# -- checking --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What a finished project holds: each target's rows and sqlflow's intervals."""

    tables: dict[str, list[tuple]]
    intervals: dict[str, list[tuple]]
    leftovers: list[str]


def connect(database: Path | Lake) -> Any:
    """A DuckDB connection whose current database is the project's target database."""
    import duckdb

    if isinstance(database, Path):
        return duckdb.connect(str(database), read_only=True)
    con = duckdb.connect()
    con.execute(
        f"attach 'ducklake:postgres:{database.dsn}' as lake"
        f" (data_path '{database.data_path}', read_only)"
    )
    con.execute("use lake")
    return con


def read_back(path: Path | Lake) -> Snapshot:
    """The targets, intervals and leftover tables of a project's database."""
    con = connect(path)
    try:
        tables = {}
        for name in MODELS:
            found = con.execute(
                "select count(*) from information_schema.tables"
                " where table_catalog = current_database() and table_name = ?",
                [name],
            ).fetchone()
            tables[name] = (
                [tuple(map(str, r)) for r in con.execute(f"select * from main.{name}").fetchall()]
                if found and found[0]
                else []
            )
        rows = con.execute(
            "select model, interval_start, interval_end from sqlflow_meta.intervals"
            " order by model, interval_start"
        ).fetchall()
        intervals: dict[str, list[tuple]] = {}
        for model, start, end in rows:
            spans = intervals.setdefault(str(model).rsplit(".", 1)[-1], [])
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        leftovers = [
            str(r[0])
            for r in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
                " where table_catalog = current_database() and (table_name like '%__dbt_tmp%'"
                " or table_name like '%__dbt_backup%' or table_name like '%__sqlflow_stage%')"
            ).fetchall()
        ]
        return Snapshot(tables, intervals, leftovers)
    finally:
        con.close()


def compare(reference: Snapshot, found: Snapshot) -> tuple[int, int, list[str]]:
    """Rows lost, rows duplicated (multiset differences) and every other problem."""
    lost = duplicated = 0
    problems = []
    for name in MODELS:
        want, have = Counter(reference.tables[name]), Counter(found.tables[name])
        missing = sum((want - have).values())
        extra = sum((have - want).values())
        lost += missing
        duplicated += extra
        if missing or extra:
            problems.append(f"{name}: {missing} rows missing, {extra} rows too many")
    for name in MODELS:
        if found.intervals.get(name) != reference.intervals.get(name):
            problems.append(
                f"{name}: intervals {found.intervals.get(name)} != {reference.intervals.get(name)}"
            )
    if found.leftovers:
        problems.append(f"left behind: {', '.join(found.leftovers)}")
    return lost, duplicated, problems


def duplicate_keys(found: Snapshot, columns: dict[str, list[str]]) -> list[str]:
    """Models whose key columns are not unique."""
    problems = []
    for name, keys in KEYS.items():
        index = [columns[name].index(k) for k in keys]
        counts = Counter(tuple(row[i] for i in index) for row in found.tables[name])
        dupes = [k for k, n in counts.items() if n > 1]
        if dupes:
            problems.append(f"{name}: {len(dupes)} duplicate keys, e.g. {dupes[0]}")
    return problems


def table_columns(path: Path | Lake) -> dict[str, list[str]]:
    con = connect(path)
    try:
        return {
            name: [r[0] for r in con.execute(f"describe main.{name}").fetchall()] for name in MODELS
        }
    finally:
        con.close()


# -- the suite -------------------------------------------------------------------------------


class Suite:
    """A seeded series of trials in ``work`` (a fresh directory), on DuckDB files."""

    kinds = KINDS

    def __init__(self, work: Path, seed: int) -> None:
        self.work = work
        self.seed = seed
        self.rng = random.Random(seed)
        self.pristine = work / "pristine.duckdb"
        seed_database(self.pristine, seed)
        reference_root = work / "reference"
        reference_root.mkdir()
        database = self.place("reference", reference_root)
        write_project(reference_root, database)
        done = dbt(reference_root)
        if done.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{done.stdout}\n{done.stderr}")
        self.reference = read_back(database)
        self.columns = table_columns(database)
        self.measure(database)

    def measure(self, database: Path | Lake) -> None:
        """Note what the draws need to know about the reference run (nothing here)."""

    def place(self, name: str, root: Path) -> Path | Lake:
        """A fresh copy of the raw events in ``root``: the project's database."""
        database = root / ("reference.duckdb" if name == "reference" else "warehouse.duckdb")
        shutil.copy(self.pristine, database)
        return database

    def dispose(self, database: Path | Lake) -> None:
        """Drop what :meth:`place` made outside the trial's folder (nothing here)."""

    def draw(self, number: int, kind: str | None = None) -> Trial:
        """The next trial's fault, from the suite's seed (``kind`` forced if given)."""
        kind = kind or self.rng.choice(self.kinds)
        if kind == "lock":
            return Trial(number, kind, None, None, round(self.rng.uniform(0, 15), 1))
        return Trial(number, kind, self.rng.choice(MODELS), self.rng.randrange(DAYS), None)

    def first_run(
        self, trial: Trial, root: Path, database: Path | Lake
    ) -> subprocess.CompletedProcess[str]:
        """The run the trial's fault hits."""
        if trial.kind == "lock":
            assert isinstance(database, Path)
            with lock_held(database, trial.hold_seconds or 0):
                return dbt(root)
        return dbt(root, f"{trial.model}:{trial.kind}@{trial.batch}")

    def run(self, trial: Trial) -> Trial:
        """Run one trial: a faulty run, then up to RERUNS plain reruns until it is exact."""
        started = time.monotonic()
        root = self.work / f"trial-{trial.number}"
        root.mkdir()
        database = self.place(f"trial_{trial.number}", root)
        write_project(root, database)
        done = self.first_run(trial, root, database)
        trial.first_exit = done.returncode
        output = (done.stdout + done.stderr).splitlines()
        # What made the first run fail, to explain a trial not recovered within it.
        trial.first_errors = [line.strip() for line in output if "Error" in line][-6:]
        trial.first_seconds = round(time.monotonic() - started, 1)
        if trial.kind == "term" and "was stopped (SIGTERM)" not in done.stdout + done.stderr:
            trial.problems.append("no message saying which windows committed after SIGTERM")
        exact = done.returncode == 0 and self.check(trial, database, final=False)
        if exact:
            trial.recovered = "in run"
        while not exact and trial.reruns < RERUNS:
            trial.reruns += 1
            done = dbt(root)
            if done.returncode != 0:
                output = (done.stdout + done.stderr).splitlines()
                trial.problems += [
                    f"rerun {trial.reruns}: {line.strip()}" for line in output if "Error" in line
                ][-3:]
            exact = done.returncode == 0 and self.check(trial, database, final=False)
            if exact:
                trial.recovered = "next run"
        if not exact:
            trial.recovered = "not recovered"
        self.check(trial, database, final=True)
        trial.seconds = round(time.monotonic() - started, 1)
        self.dispose(database)
        shutil.rmtree(root, ignore_errors=True)
        return trial

    def check(self, trial: Trial, database: Path | Lake, *, final: bool) -> bool:
        found = read_back(database)
        lost, duplicated, problems = compare(self.reference, found)
        problems += duplicate_keys(found, self.columns)
        if final:
            trial.rows_lost, trial.rows_duplicated = lost, duplicated
            trial.problems += problems
        return not problems


# -- the lake --------------------------------------------------------------------------------


def snapshots(dsn: str) -> int:
    """How many snapshots the lake has committed, from its catalog (0 before the first
    ATTACH creates the catalog's tables)."""
    from psycopg import connect as pg_connect
    from psycopg.errors import UndefinedTable

    with pg_connect(dsn, autocommit=True) as pg:
        try:
            row = pg.execute("select count(*) from ducklake_snapshot").fetchone()
        except UndefinedTable:
            return 0
        return int(row[0]) if row else 0


def start_postgres() -> Any:
    """The lake suite's PostgreSQL (``tests/lake/lake_stack.py``), extensions installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lake"))
    from lake_stack import PostgresServer, install_extensions, missing_extensions, missing_postgres

    reason = missing_extensions() or missing_postgres()
    if reason is not None:
        raise SystemExit(f"--lake: {reason}")
    install_extensions()
    return PostgresServer.start()


class LakeSuite(Suite):
    """The trials on DuckLakes: a catalog database per trial on ``server`` (a running
    ``lake_stack.PostgresServer``), a data folder in the trial's folder."""

    kinds = LAKE_KINDS

    def __init__(self, work: Path, seed: int, server: Any) -> None:
        self.server = server
        # Catalog names unique on the server, which a test session may share.
        self.prefix = f"faults_{os.getpid()}_{next(_suites)}"
        self.reference_snapshots = 0
        super().__init__(work, seed)

    def place(self, name: str, root: Path) -> Lake:
        raw = root / "raw.duckdb"
        shutil.copy(self.pristine, raw)
        catalog = f"{self.prefix}_{name}"
        self.server.create_database(catalog)
        (root / "lake").mkdir()
        return Lake(self.server.dsn(catalog), f"{root / 'lake'}/", raw)

    def dispose(self, database: Path | Lake) -> None:
        assert isinstance(database, Lake)
        catalog = database.dsn.split()[0].removeprefix("dbname=")
        self.server.psql("postgres", f"drop database if exists {catalog} with (force)")

    def measure(self, database: Path | Lake) -> None:
        assert isinstance(database, Lake)
        self.reference_snapshots = snapshots(database.dsn)

    def draw(self, number: int, kind: str | None = None) -> Trial:
        kind = kind or self.rng.choice(self.kinds)
        if kind == "pg_restart":
            # Somewhere in the run: past the first few commits, before its last.
            after = self.rng.randrange(3, max(4, self.reference_snapshots - 2))
            return Trial(number, kind, None, None, None, after_snapshots=after)
        if kind == "lake_writer":
            gap = round(self.rng.uniform(0.2, 1.5), 1)
            return Trial(number, kind, self.rng.choice(MODELS), None, None, gap_seconds=gap)
        return super().draw(number, kind)

    def first_run(
        self, trial: Trial, root: Path, database: Path | Lake
    ) -> subprocess.CompletedProcess[str]:
        assert isinstance(database, Lake)
        if trial.kind == "pg_restart":
            return dbt(root, during=lambda ended: self.restart(trial, database, ended))
        if trial.kind == "lake_writer":
            return dbt(root, during=lambda ended: self.write(trial, database, ended))
        return super().first_run(trial, root, database)

    def restart(self, trial: Trial, lake: Lake, ended: threading.Event) -> None:
        """Restart the catalog's PostgreSQL once the run has committed
        ``trial.after_snapshots`` snapshots (a problem if the run ends first)."""
        assert trial.after_snapshots is not None
        while not ended.is_set():
            if snapshots(lake.dsn) >= trial.after_snapshots:
                self.server.restart()
                return
            ended.wait(0.05)
        trial.problems.append(f"the run ended before {trial.after_snapshots} snapshots")

    def write(self, trial: Trial, lake: Lake, ended: threading.Event) -> None:
        """Rewrite one row of ``trial.model``'s table (a no-op UPDATE) four times,
        ``trial.gap_seconds`` apart, once it holds rows, while the run goes on."""
        import duckdb

        con = duckdb.connect()
        try:
            con.execute(
                f"attach 'ducklake:postgres:{lake.dsn}' as lake (data_path '{lake.data_path}')"
            )
            table = f"lake.main.{trial.model}"
            update = (
                f"update {table} set v = v where event_id = (select min(event_id) from {table})"
            )
            while not ended.is_set() and trial.writes < 4:
                try:
                    if con.execute(update).fetchone()[0]:  # type: ignore[index]
                        trial.writes += 1
                        ended.wait(trial.gap_seconds or 0)
                        continue
                except duckdb.Error:
                    # The table is not there yet, or this write lost a conflict.
                    pass
                ended.wait(0.05)
        finally:
            con.close()


_suites = itertools.count(1)


def table(trials: list[Trial]) -> str:
    """The suite's figures by fault kind, as a Markdown table."""
    lines = [
        "| fault | trials | recovered in the run | recovered by the next run | not recovered"
        " | rows lost | rows duplicated |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in (*dict.fromkeys((*KINDS, *LAKE_KINDS)), "all"):
        chosen = [t for t in trials if kind in ("all", t.kind)]
        if not chosen:
            continue
        count = Counter(t.recovered for t in chosen)
        lines.append(
            f"| {kind} | {len(chosen)} | {count['in run']} | {count['next run']}"
            f" | {count['not recovered']} | {sum(t.rows_lost for t in chosen)}"
            f" | {sum(t.rows_duplicated for t in chosen)} |"
        )
    return "\n".join(lines)


FILE_HEADING = "# Fault injection"
LAKE_HEADING = "# Fault injection on DuckLake (PostgreSQL catalog)"


def write_section(path: Path, section: str) -> None:
    """Write ``section`` into ``path`` in place of the section of the same mode (its
    heading up to the colon), keeping the other mode's section."""
    heading = section.split(":", 1)[0]
    kept = []
    if path.exists():
        parts = re.split(r"(?m)^(?=# Fault injection)", path.read_text())
        kept = [p for p in parts if p.strip() and p.split(":", 1)[0] != heading]
    sections = [*kept, section]
    # The file mode's section first, as before the lake had one.
    sections.sort(key=lambda p: p.startswith(LAKE_HEADING))
    path.write_text("\n".join(p.rstrip("\n") + "\n" for p in sections))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the table and trials here")
    parser.add_argument(
        "--lake",
        action="store_true",
        help="on DuckLakes with a PostgreSQL catalog (run with .venv-lake's python)",
    )
    args = parser.parse_args(argv)
    server = start_postgres() if args.lake else None
    try:
        with tempfile.TemporaryDirectory(prefix="sqlflow-faults-") as tmp:
            suite = (
                LakeSuite(Path(tmp), args.seed, server)
                if server is not None
                else Suite(Path(tmp), args.seed)
            )
            trials = []
            for number in range(1, args.trials + 1):
                trial = suite.run(suite.draw(number))
                trials.append(trial)
                print(describe(trial), flush=True)
    finally:
        if server is not None:
            server.stop()
    text = table(trials)
    print(text)
    if args.out is not None:
        heading = LAKE_HEADING if args.lake else FILE_HEADING
        write_section(
            args.out,
            f"{heading}: {args.trials} trials, seed {args.seed}\n\n{text}\n\n"
            + "\n".join(json.dumps(asdict(t)) for t in trials)
            + "\n",
        )
    transient = [t for t in trials if t.kind not in STOPPING]
    in_run = sum(t.recovered == "in run" for t in transient) / max(1, len(transient))
    ok = (
        in_run >= 0.95
        and all(t.recovered != "not recovered" for t in trials)
        and not any(t.rows_lost or t.rows_duplicated or t.problems for t in trials)
    )
    return 0 if ok else 1


def describe(trial: Trial) -> str:
    """One line of progress: the trial's fault and what became of it."""
    where = {
        "lock": f"hold={trial.hold_seconds}",
        "pg_restart": f"after {trial.after_snapshots} snapshots",
        "lake_writer": f"gap={trial.gap_seconds} writes={trial.writes}",
    }.get(trial.kind, f"batch={trial.batch}")
    return (
        f"trial {trial.number:3d} {trial.kind:11s} {trial.model or '-':12s} {where:24s}"
        f" -> {trial.recovered} ({trial.reruns} reruns, {trial.seconds} s)"
        + (f" PROBLEMS: {trial.problems}" if trial.problems else "")
    )


if __name__ == "__main__":
    sys.exit(main())
