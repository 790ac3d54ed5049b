"""``make demo-lake``: the demo on a DuckLake instead of one DuckDB file.

The same steps as ``make demo`` (``run_demo.py``): a year of raw history, ``dbt build``,
one simulated day later, ``dbt build`` again, the figures of both runs. The marts and
sqlflow's state (``sqlflow_meta``) live in a DuckLake whose catalog is a PostgreSQL
database when a PostgreSQL server can be started here (Debian's packages, on a unix
socket in a throwaway folder, stopped at the end), else a DuckDB file
(``demo_lake.ducklake``), or the one ``SQLFLOW_DEMO_CATALOG`` names; its data files are
under ``demo_lake_files/``. The raw data and the staging views stay in ``demo.duckdb``.
At the end: the lake's newest snapshots (one per committed batch or build) and its data
files per table.

Runs on the lake stack (DuckDB 1.5.5 with the DuckLake and postgres extension packages,
``.venv-lake``), as the lake suite does.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from run_demo import DATABASE, HERE, dbt_build, generate, print_table

sys.path.insert(0, str(HERE.parent / "tests" / "lake"))
from lake_stack import PostgresServer, install_extensions, missing_postgres

CATALOG_FILE = HERE / "demo_lake.ducklake"
DATA_PATH = HERE / "demo_lake_files"

PROFILE = """sqlflow_demo:
  target: lake
  outputs:
    lake:
      type: sqlflow
      path: {local}
      database: lake
      schema: main
      threads: 2
      attach:
        - path: "ducklake:{catalog}"
          alias: lake
          options:
            data_path: "{data_path}/"
"""


@contextmanager
def catalog() -> Iterator[tuple[str, str]]:
    """The lake's catalog: ``(attach path after 'ducklake:', what it is)``; the variable
    ``SQLFLOW_DEMO_CATALOG`` names one to use instead (e.g. ``postgres:dbname=lake
    host=...``, an existing, empty database)."""
    given = os.environ.get("SQLFLOW_DEMO_CATALOG")
    if given:
        yield given, f"{given.split(':')[0]} (SQLFLOW_DEMO_CATALOG)"
        return
    reason = missing_postgres()
    if reason is not None:
        print(f"no PostgreSQL here ({reason}): the catalog is a DuckDB file")
        CATALOG_FILE.unlink(missing_ok=True)
        yield str(CATALOG_FILE), f"DuckDB file {CATALOG_FILE.name}"
        return
    server = PostgresServer.start()
    try:
        server.create_database("demo_lake")
        yield f"postgres:{server.dsn('demo_lake')}", "postgres (a throwaway server, unix socket)"
    finally:
        server.stop()


def show_lake(attach: str) -> None:
    """The lake's newest snapshots and its data files per table (read-only)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"attach 'ducklake:{attach}' as lake (data_path '{DATA_PATH}/', read_only)")
    print("\n== the lake's newest snapshots (of", end=" ")
    print(con.execute("select count(*) from lake.snapshots()").fetchone()[0], "in all)")
    for snapshot_id, at, changes in con.execute(
        "select snapshot_id, snapshot_time, changes from lake.snapshots()"
        " order by snapshot_id desc limit 8"
    ).fetchall():
        print(f"{snapshot_id:>6}  {at:%Y-%m-%d %H:%M:%S}  {changes}")
    print("\n== data files per table")
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = 'lake'"
        " order by all"
    ).fetchall()
    for schema, table in tables:
        files, size = con.execute(
            "select count(*), coalesce(sum(data_file_size_bytes), 0)"
            f" from ducklake_list_files('lake', '{table}', schema => '{schema}')"
        ).fetchone()
        print(f"{schema + '.' + table:<30} {files:>5} files  {size / 1e6:>8.2f} MB")
    con.close()


def main() -> None:
    started = time.monotonic()
    install_extensions()
    for stale in (DATABASE, DATABASE.with_name(DATABASE.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(DATA_PATH, ignore_errors=True)
    DATA_PATH.mkdir()
    with catalog() as (attach, kind), tempfile.TemporaryDirectory() as profiles:
        print(f"the lake's catalog: {kind}; its data: {DATA_PATH}")
        Path(profiles, "profiles.yml").write_text(
            PROFILE.format(local=DATABASE, catalog=attach, data_path=DATA_PATH)
        )
        generate("--reset")
        first = dbt_build("lake", Path(profiles))
        generate("--advance")
        second = dbt_build("lake", Path(profiles))
        print_table("first build on the lake: a year of history", first)
        print_table("one simulated day later: incremental run", second)
        show_lake(attach)
    print(f"\nlake demo finished in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
