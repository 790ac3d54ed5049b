"""Shared pytest set-up: dbt's project fixtures and a sqlflow profile on a DuckDB file."""

from __future__ import annotations

import os

import pytest
from sqlflow_testing import file_target

pytest_plugins = ["dbt.tests.fixtures.project"]


@pytest.fixture(scope="class")
def dbt_profile_target(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A ``type: sqlflow`` target on a DuckDB file in the test class's temp folder."""
    return file_target(tmp_path_factory)


@pytest.fixture(autouse=True, scope="session")
def _quiet_dbt() -> None:
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
