"""``make demo``: build the warehouse, advance the simulated clock one day, build again.

Steps: reset the raw data (a year of history), ``dbt build``, ``generate_data.py
--advance``, ``dbt build``; then print what each sqlflow model did in both runs (from
``target/run_results.json``), the last partitions of ``fct_events`` (``dbt-sqlflow
partitions``) and the Prometheus text of the second run (``dbt-sqlflow metrics export``).
Every dbt run is pinned to the simulated clock with the ``SQLFLOW_NOW`` environment variable
(``--vars '{"sqlflow_now": ...}'`` does the same, but a changed ``--vars`` makes dbt re-parse
the project on every run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DATABASE = HERE / "demo.duckdb"
COLUMNS = ("model", "status", "strategy", "batches", "inserted", "updated", "deleted", "seconds")


def run(title: str, *cmd: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command in the project (with ``env`` added to the environment); stop the demo
    if it fails."""
    print(f"\n$ {title}", flush=True)
    subprocess.run([str(c) for c in cmd], cwd=HERE, check=True, env={**os.environ, **(env or {})})


def generate(*args: str) -> None:
    run(f"python generate_data.py {' '.join(args)}", sys.executable, "generate_data.py", *args)


def clock() -> str:
    """The simulated now, from raw.clock (read-only, closed before dbt opens the file)."""
    import duckdb

    con = duckdb.connect(str(DATABASE), read_only=True)
    try:
        row = con.execute("select clock_ts from raw.clock").fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0].isoformat())


def dbt_build(target: str = "dev", profiles_dir: Path = HERE) -> list[dict[str, Any]]:
    """``dbt build`` pinned to the clock; returns the per-model rows of run_results.json."""
    now = clock()
    run(
        f"SQLFLOW_NOW={now} dbt build --target {target}",
        BIN / "dbt",
        "build",
        "--target",
        target,
        "--project-dir",
        HERE,
        "--profiles-dir",
        profiles_dir,
        env={"SQLFLOW_NOW": now},
    )
    results = json.loads((HERE / "target" / "run_results.json").read_text())["results"]
    rows = []
    for r in results:
        response = r.get("adapter_response") or {}
        if "rows_inserted" not in response:
            continue  # views and tests: no sqlflow figures
        rows.append(
            {
                "model": r["unique_id"].split(".")[-1],
                "status": r["status"],
                "strategy": response.get("strategy") or "-",
                "batches": response.get("batches"),
                "inserted": response.get("rows_inserted"),
                "updated": response.get("rows_updated"),
                "deleted": response.get("rows_deleted"),
                "seconds": f"{r['execution_time']:.2f}",
            }
        )
    return sorted(rows, key=lambda row: row["model"])


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Rows as an aligned table; numbers right-aligned with thousands separators."""
    cells = [
        [f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in COLUMNS] for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(COLUMNS)]

    def line(values: list[str] | tuple[str, ...]) -> str:
        return "  ".join(
            v.ljust(w) if i < 3 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    print(f"\n== {title}")
    print(line(COLUMNS))
    print(line(["-" * w for w in widths]))
    for values in cells:
        print(line(values))


def main() -> None:
    started = time.monotonic()
    for stale in (DATABASE, DATABASE.with_name(DATABASE.name + ".wal")):
        stale.unlink(missing_ok=True)
    generate("--reset")
    first = dbt_build()
    generate("--advance")
    second = dbt_build()

    print_table("first build: a year of history", first)
    print_table("one simulated day later: incremental run", second)
    run(
        "dbt-sqlflow partitions fct_events --last 10 --non-empty",
        BIN / "dbt-sqlflow",
        "partitions",
        "fct_events",
        "--last",
        "10",
        "--non-empty",
        "--project-dir",
        HERE,
        "--profiles-dir",
        HERE,
    )
    run(
        "dbt-sqlflow metrics export (the second run)",
        BIN / "dbt-sqlflow",
        "metrics",
        "export",
        "--run-results",
        "target/run_results.json",
        "--manifest",
        "target/manifest.json",
    )
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
