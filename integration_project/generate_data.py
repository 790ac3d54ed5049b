"""Generates the demo's raw data in ``demo.duckdb`` and advances its simulated clock.

``python generate_data.py --reset`` creates a year of web events; ``--advance`` adds one
more day of events (plus a few late ones for the previous day).
"""

from __future__ import annotations

import argparse
from datetime import date

import duckdb

START = date(2025, 1, 1)
DAYS = 365
EVENTS_PER_DAY = 800


def _events_sql(first_day: int, days: int, id_offset: int) -> str:
    return f"""
        select
            {id_offset} + row_number() over () as event_id,
            (date '{START}' + interval (d) day
                + to_seconds((hash(d, i) % 86400)::bigint))::timestamp as event_ts,
            (hash(i, d, 'c') % 500)::int + 1 as customer_id,
            ['page_view', 'add_to_cart', 'purchase'][(hash(i, d) % 3)::int + 1] as event_type,
            round((hash(i, d, 'a') % 10000) / 100.0, 2) as amount
        from range({first_day}, {first_day + days}) as t(d), range({EVENTS_PER_DAY}) as u(i)
    """


def reset(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema with a year of events."""
    con.execute("create schema if not exists raw")
    con.execute("create or replace table raw.clock as select 0 as day_offset")
    con.execute(f"create or replace table raw.events as {_events_sql(0, DAYS, 0)}")


def advance(con: duckdb.DuckDBPyConnection) -> None:
    """Add one day of events, and late events for the day before."""
    offset = con.execute("select max(event_id) from raw.events").fetchone()[0]
    day = DAYS + con.execute("select day_offset from raw.clock").fetchone()[0]
    con.execute(f"insert into raw.events {_events_sql(day, 1, offset)}")
    con.execute("update raw.clock set day_offset = day_offset + 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", default="demo.duckdb")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--reset", action="store_true")
    group.add_argument("--advance", action="store_true")
    args = parser.parse_args()
    con = duckdb.connect(args.path)
    if args.reset:
        reset(con)
    else:
        advance(con)
    con.close()


if __name__ == "__main__":
    main()
