"""``make demo``: build the project, advance the clock one day, build again, print counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def dbt(*args: str) -> None:
    """Run a dbt command in the project; stop the demo if it fails."""
    cmd = [str(BIN / "dbt"), *args, "--project-dir", str(HERE), "--profiles-dir", str(HERE)]
    print("$ dbt " + " ".join(args), flush=True)
    subprocess.run(cmd, cwd=HERE, check=True)


def print_counts(title: str) -> None:
    """Per-model figures from target/run_results.json."""
    results = json.loads((HERE / "target" / "run_results.json").read_text())["results"]
    print(f"\n== {title}")
    print(f"{'model':<40} {'status':<8} {'rows':>9} {'inserted':>9} {'updated':>9} {'deleted':>9}")
    for r in results:
        resp = r.get("adapter_response") or {}
        name = r["unique_id"].split(".")[-1]
        print(
            f"{name:<40} {r['status']:<8} {resp.get('rows_affected', ''):>9} "
            f"{resp.get('rows_inserted', ''):>9} {resp.get('rows_updated', ''):>9} "
            f"{resp.get('rows_deleted', ''):>9}"
        )
    print()


def main() -> None:
    for stale in (HERE / "demo.duckdb", HERE / "demo.duckdb.wal"):
        stale.unlink(missing_ok=True)
    subprocess.run([sys.executable, "generate_data.py", "--reset"], cwd=HERE, check=True)
    dbt("build")
    print_counts("first load")
    subprocess.run([sys.executable, "generate_data.py", "--advance"], cwd=HERE, check=True)
    dbt("build")
    print_counts("incremental load (one day later)")


if __name__ == "__main__":
    main()
