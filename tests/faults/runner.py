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

(The DuckLake faults of the issue, a PostgreSQL catalog restart and a conflicting lake
writer, need the lake suite.)

Each trial checks every target's rows against the reference (as multisets: rows lost and
rows duplicated), duplicate keys, sqlflow's intervals against the reference's, and that
no staging or backup table is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

KINDS = ("kill", "term", "lock", "conflict", "oom")
"""Fault kinds; kill and term stop the process, so only the next run can recover them."""

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


def write_project(root: Path, database: Path) -> None:
    """The dbt project of the trials and its profile (sqlflow on ``database``)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(
        "name: faults\nversion: '1.0'\nconfig-version: 2\nprofile: faults\n"
        "model-paths: ['models']\n"
    )
    (root / "profiles.yml").write_text(
        json.dumps(
            {
                "faults": {
                    "target": "dev",
                    "outputs": {
                        "dev": {
                            "type": "sqlflow",
                            "path": str(database),
                            # One thread: an injected out-of-memory statement starves
                            # only its own model (with two, it can hit the other one
                            # outside its batches, where nothing is retried).
                            "threads": 1,
                            "settings": {"memory_limit": "512MB"},
                            "sqlflow_retry": {
                                "attempts": 5,
                                "initial_seconds": 1,
                                "max_seconds": 8,
                            },
                        }
                    },
                }
            }
        )
    )
    (root / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: events\n"
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


def dbt(root: Path, faults: str = "", timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``dbt run`` of the project in its own process, pinned to NOW."""
    env = {
        **os.environ,
        "SQLFLOW_NOW": NOW,
        "SQLFLOW_FAULTS": faults,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "run",
            "--project-dir",
            str(root),
            "--profiles-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


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


def read_back(path: Path) -> Snapshot:
    """The targets, intervals and leftover tables of a project's database."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {}
        for name in MODELS:
            found = con.execute(
                "select count(*) from information_schema.tables where table_name = ?", [name]
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
                " where table_name like '%__dbt_tmp%' or table_name like '%__dbt_backup%'"
                " or table_name like '%__sqlflow_stage%'"
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


def table_columns(path: Path) -> dict[str, list[str]]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            name: [r[0] for r in con.execute(f"describe main.{name}").fetchall()] for name in MODELS
        }
    finally:
        con.close()


# -- the suite -------------------------------------------------------------------------------


class Suite:
    """A seeded series of trials in ``work`` (a fresh directory)."""

    def __init__(self, work: Path, seed: int) -> None:
        self.work = work
        self.seed = seed
        self.rng = random.Random(seed)
        self.pristine = work / "pristine.duckdb"
        seed_database(self.pristine, seed)
        reference_root = work / "reference"
        database = reference_root / "reference.duckdb"
        reference_root.mkdir()
        shutil.copy(self.pristine, database)
        write_project(reference_root, database)
        done = dbt(reference_root)
        if done.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{done.stdout}\n{done.stderr}")
        self.reference = read_back(database)
        self.columns = table_columns(database)

    def draw(self, number: int, kind: str | None = None) -> Trial:
        """The next trial's fault, from the suite's seed (``kind`` forced if given)."""
        kind = kind or self.rng.choice(KINDS)
        if kind == "lock":
            return Trial(number, kind, None, None, round(self.rng.uniform(0, 15), 1))
        return Trial(number, kind, self.rng.choice(MODELS), self.rng.randrange(DAYS), None)

    def run(self, trial: Trial) -> Trial:
        """Run one trial: a faulty run, then up to RERUNS plain reruns until it is exact."""
        started = time.monotonic()
        root = self.work / f"trial-{trial.number}"
        database = root / "warehouse.duckdb"
        root.mkdir()
        shutil.copy(self.pristine, database)
        write_project(root, database)
        if trial.kind == "lock":
            with lock_held(database, trial.hold_seconds or 0):
                done = dbt(root)
        else:
            done = dbt(root, f"{trial.model}:{trial.kind}@{trial.batch}")
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
            exact = done.returncode == 0 and self.check(trial, database, final=False)
            if exact:
                trial.recovered = "next run"
        if not exact:
            trial.recovered = "not recovered"
        self.check(trial, database, final=True)
        trial.seconds = round(time.monotonic() - started, 1)
        shutil.rmtree(root, ignore_errors=True)
        return trial

    def check(self, trial: Trial, database: Path, *, final: bool) -> bool:
        found = read_back(database)
        lost, duplicated, problems = compare(self.reference, found)
        problems += duplicate_keys(found, self.columns)
        if final:
            trial.rows_lost, trial.rows_duplicated = lost, duplicated
            trial.problems += problems
        return not problems


def table(trials: list[Trial]) -> str:
    """The suite's figures by fault kind, as a Markdown table."""
    lines = [
        "| fault | trials | recovered in the run | recovered by the next run | not recovered"
        " | rows lost | rows duplicated |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in (*KINDS, "all"):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the table and trials here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sqlflow-faults-") as tmp:
        suite = Suite(Path(tmp), args.seed)
        trials = []
        for number in range(1, args.trials + 1):
            trial = suite.run(suite.draw(number))
            trials.append(trial)
            print(
                f"trial {number:3d} {trial.kind:8s} {trial.model or '-':12s}"
                f" batch={trial.batch if trial.batch is not None else '-':>2}"
                f" hold={trial.hold_seconds if trial.hold_seconds is not None else '-':>4}"
                f" -> {trial.recovered} ({trial.reruns} reruns, {trial.seconds} s)"
                + (f" PROBLEMS: {trial.problems}" if trial.problems else ""),
                flush=True,
            )
    text = table(trials)
    print(text)
    if args.out is not None:
        args.out.write_text(
            f"# Fault injection: {args.trials} trials, seed {args.seed}\n\n{text}\n\n"
            + "\n".join(json.dumps(asdict(t)) for t in trials)
            + "\n"
        )
    transient = [t for t in trials if t.kind in ("lock", "conflict", "oom")]
    in_run = sum(t.recovered == "in run" for t in transient) / max(1, len(transient))
    ok = (
        in_run >= 0.95
        and all(t.recovered != "not recovered" for t in trials)
        and not any(t.rows_lost or t.rows_duplicated or t.problems for t in trials)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
