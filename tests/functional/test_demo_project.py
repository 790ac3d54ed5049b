"""The integration project behind `make demo`, run end to end on a small copy of its data.

``run_demo.py`` runs in a temporary copy of ``integration_project/`` with
``SQLFLOW_DEMO_SCALE=0.1`` (a tenth of the data): reset, ``dbt build``, advance the clock
one day, ``dbt build``, then the partition table and the metrics. The test then checks the
warehouse against the raw data it was built from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

PROJECT = Path(__file__).resolve().parents[2] / "integration_project"
SCALE = "0.1"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo, run once in a copy of the project; its output, results and database."""
    folder = tmp_path_factory.mktemp("demo") / "integration_project"
    shutil.copytree(
        PROJECT,
        folder,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.wal", "__pycache__"),
    )
    env = {**os.environ, "SQLFLOW_DEMO_SCALE": SCALE, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run(
        [sys.executable, "run_demo.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    results = json.loads((folder / "target" / "run_results.json").read_text())
    con = duckdb.connect(str(folder / "demo.duckdb"), read_only=True)
    try:
        yield {"stdout": done.stdout, "results": results, "con": con}
    finally:
        con.close()


def q(demo: dict[str, Any], sql: str) -> list[tuple]:
    return [tuple(r) for r in demo["con"].execute(sql).fetchall()]


def one(demo: dict[str, Any], sql: str) -> Any:
    return q(demo, sql)[0][0]


def test_second_run_was_incremental(demo: dict[str, Any]) -> None:
    responses = {
        r["unique_id"].split(".")[-1]: r["adapter_response"]
        for r in demo["results"]["results"]
        if r["unique_id"].startswith("model.")
    }
    assert all(r["status"] in ("success", "pass") for r in demo["results"]["results"])
    events = responses["fct_events"]
    # The first run loaded up to 2025-12-31 18:00; the second runs on 2026-01-01: the
    # month before the last loaded end (lookback=1: November and December, the months
    # holding part of it) and the current month.
    assert (events["strategy"], events["batches"]) == ("insert_overwrite", 3)
    assert events["rows_deleted"] > 0 and events["rows_inserted"] > events["rows_deleted"]
    assert responses["fct_orders"]["strategy"] == "merge"
    assert responses["fct_orders"]["rows_updated"] > 0
    assert responses["fct_orders"]["rows_inserted"] > 0
    assert responses["dim_customers_history"]["strategy"] == "snapshot"
    assert responses["dim_customers_history"]["rows_updated"] > 0
    assert responses["agg_daily_revenue"]["strategy"] == "insert_overwrite"


def test_fct_events_holds_every_raw_event_of_the_loaded_range(demo: dict[str, Any]) -> None:
    start, end = q(
        demo,
        "select min(interval_start), max(interval_end) from sqlflow_meta.intervals"
        " where model = 'model.sqlflow_demo.fct_events'",
    )[0]
    # Loaded up to the second run's pinned now: the rest of the current unit is still owed.
    assert (str(start), str(end)) == ("2025-01-01 00:00:00", "2026-01-01 18:00:00")
    in_range = f"event_ts >= '{start}' and event_ts < '{end}'"
    raw = one(demo, f"select count(*) from raw.events where {in_range}")
    assert one(demo, "select count(*) from main.fct_events") == raw
    assert raw == one(demo, "select count(*) from raw.events")
    differ = one(
        demo,
        f"select count(*) from ((select * exclude (arrived_at) from raw.events where {in_range}"
        " except all select * exclude (arrived_at) from main.fct_events)"
        " union all (select * exclude (arrived_at) from main.fct_events"
        f" except all select * exclude (arrived_at) from raw.events where {in_range}))",
    )
    assert differ == 0
    # Late events of days loaded by the first build arrived with the second.
    late = one(
        demo,
        "select count(*) from main.fct_events"
        " where event_ts < '2025-12-31 18:00' and arrived_at > '2025-12-31 18:00'",
    )
    assert late > 0


def test_fct_events_partitions(demo: dict[str, Any]) -> None:
    recorded = q(
        demo,
        "select partition_key, row_count from sqlflow_meta.partitions"
        ' where relation = \'"demo"."main"."fct_events"\' and row_count > 0'
        " order by partition_key",
    )
    actual = q(
        demo,
        "select strftime(event_ts, '%Y-%m-%d'), count(*) from main.fct_events"
        " group by 1 order by 1",
    )
    assert recorded == actual
    total = one(demo, "select count(*) from main.fct_events")
    summary = next(line for line in demo["stdout"].splitlines() if line.startswith("fct_events: "))
    # Partitions reach the current day (the rest of the current batch is in the future).
    assert f" {total:,} rows, 2025-01-01 .. 2026-01-01, newest with rows 2026-01-01," in summary
    assert summary.startswith("fct_events: 366 partitions, ")


def test_fct_orders_one_row_per_order_with_latest_status(demo: dict[str, Any]) -> None:
    assert q(demo, "select count(*), count(distinct order_id) from main.fct_orders") == q(
        demo, "select count(distinct order_id), count(distinct order_id) from raw.orders"
    )
    wrong = one(
        demo,
        "select count(*) from main.fct_orders as f join ("
        "  select order_id, arg_max(status, (updated_at, loaded_at)) as status"
        "  from raw.orders group by order_id) as r using (order_id)"
        " where f.status <> r.status",
    )
    assert wrong == 0
    assert one(demo, "select count(*) from main.fct_orders where status <> 'placed'") > 0


def test_dim_customers_history_one_current_row_per_live_customer(demo: dict[str, Any]) -> None:
    # Every customer ever seen has exactly one current version.
    assert (
        one(
            demo,
            "select count(*) from (select customer_id from main.dim_customers_history"
            " group by 1 having count(*) filter (where dbt_valid_to is null) <> 1)",
        )
        == 0
    )
    live = "select customer_id, email, country, tier, updated_at from {}"
    current = "main.dim_customers_history where dbt_valid_to is null and dbt_is_deleted = 'False'"
    assert q(demo, live.format(current) + " order by 1") == q(
        demo,
        "select customer_id, lower(email), country, tier, updated_at from raw.customers order by 1",
    )
    # Customers deleted since the first build have a deletion record as current version.
    deleted = q(
        demo,
        "select customer_id from main.dim_customers_history"
        " where dbt_valid_to is null and dbt_is_deleted = 'True' order by 1",
    )
    assert deleted
    assert deleted == q(
        demo,
        "select distinct customer_id from raw.customer_deletions"
        " where deleted_at > '2025-12-31 18:00' order by 1",
    )
    # Changed customers have a closed version and a current one.
    assert one(
        demo, "select count(*) from main.dim_customers_history where dbt_valid_to is not null"
    )


def test_agg_daily_revenue_matches_fct_orders(demo: dict[str, Any]) -> None:
    expected = q(
        demo,
        "select ordered_at::date, count(*),"
        " coalesce(sum(amount) filter (where status not in ('cancelled', 'returned')), 0)"
        " from main.fct_orders group by 1 order by 1",
    )
    assert q(demo, "select order_date, orders, revenue from main.agg_daily_revenue order by 1") == [
        (d, n, r) for d, n, r in expected
    ]


def test_demo_prints_counts_partitions_and_metrics(demo: dict[str, Any]) -> None:
    out = demo["stdout"]
    assert "== first build: a year of history" in out
    assert "== one simulated day later: incremental run" in out
    assert 'sqlflow_rows_inserted_total{model="model.sqlflow_demo.fct_events"}' in out
    assert "sqlflow_run_success 1.0" in out
