"""The lake suite's set-up: DuckLake's extensions, one PostgreSQL cluster for the session,
and a ``type: sqlflow`` profile per test class on a DuckLake with a PostgreSQL catalog.

Each class gets its own catalog database and data folder; models and sqlflow's state
tables (``sqlflow_state_schema``) live in the lake, so a batch's data and its state
commit in one DuckLake transaction. Without the lake stack (the default venv's DuckDB, no
PostgreSQL) every test here is skipped with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lake_stack import PostgresServer, install_extensions, missing_extensions, missing_postgres

_numbers = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the lake suite where its parts are missing, saying which."""
    reason = missing_extensions() or missing_postgres()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL cluster, with DuckLake's extensions installed."""
    install_extensions()
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="class")
def lake(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A new lake: a catalog database of its own and a data folder."""
    name = f"lake_{next(_numbers)}"
    postgres.create_database(name)
    data = tmp_path_factory.mktemp("lake_files")
    return {
        "catalog": name,
        "dsn": postgres.dsn(name),
        "data_path": f"{data}/",
    }


def lake_profile(lake: dict[str, Any], threads: int = 4, inline: bool = True) -> dict[str, Any]:
    """A ``type: sqlflow`` target whose database is the lake (attached as ``lake``); the
    local database is in memory, so several processes can use the profile at once.
    ``inline=False`` turns DuckLake's data inlining off: every write is a Parquet file."""
    profile = {
        "type": "sqlflow",
        "path": ":memory:",
        "database": "lake",
        "threads": threads,
        "attach": [
            {
                "path": f"ducklake:postgres:{lake['dsn']}",
                "alias": "lake",
                "options": {"data_path": lake["data_path"]},
            }
        ],
    }
    if not inline:
        profile["attach"][0]["options"]["data_inlining_row_limit"] = 0
    return profile


@pytest.fixture(scope="class")
def dbt_profile_target(lake: dict[str, Any]) -> dict[str, Any]:
    """The class's profile: its lake, ``threads: 4``."""
    import os

    return lake_profile(lake, int(os.environ.get("SQLFLOW_LAKE_THREADS", "4")))
