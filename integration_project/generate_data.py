"""The demo's raw data in ``demo.duckdb``, on a simulated clock (schema ``raw``).

``python generate_data.py --reset`` creates a year of history up to the clock
(2025-12-31 18:00 UTC); ``python generate_data.py --advance`` moves the clock on by one
day and delivers what "arrived" during that day. Everything is a deterministic function
of ids and days (DuckDB's ``hash``), so two resets give the same data.

Tables:

``raw.clock``
    One row: ``clock_ts`` (the simulated now) and ``day_number`` (0 at reset).
``raw.events``
    Web events. Most arrive within minutes of ``event_ts``; about 3% arrive 1 to 72 hours
    late (``arrived_at``), so a run finds new rows for days it already loaded.
``raw.customers``
    The current state of the customer table, as an OLTP database would hold it: rows are
    updated in place (``updated_at``), deleted, and some deleted customers come back under
    their old id later (re-created).
``raw.customer_deletions``
    When each customer was deleted (what re-creation picks from).
``raw.orders``
    A change feed of orders: one row per status change (placed, cancelled, shipped,
    delivered, returned), delivered at ``loaded_at``; about 2% of rows are delivered twice.

The size scales with ``--scale`` (or the environment variable ``SQLFLOW_DEMO_SCALE``),
default 1.0: about 300,000 events, 2,000 customers and 22,000 orders.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta

import duckdb

START = datetime(2025, 1, 1)
FIRST_CLOCK = datetime(2025, 12, 31, 18)
EVENTS_PER_DAY = 1000
CUSTOMERS = 2000
ORDERS_PER_DAY = 60
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US", "GB", "CA"]
TIERS = ["free", "silver", "gold", "platinum"]
PAGES = ["/", "/products", "/products/item", "/cart", "/checkout", "/help"]
DOMAINS = ["example.com", "mail.test", "shop.test"]


def _ts(value: datetime) -> str:
    return f"timestamp '{value.isoformat(sep=' ')}'"


def _day(value: datetime) -> int:
    return (value - START).days


def _pick(values: list[str], expr: str) -> str:
    """A SQL expression choosing one of ``values`` by a hash expression."""
    items = ", ".join(f"'{v}'" for v in values)
    return f"[{items}][({expr} % {len(values)})::int + 1]"


def events_sql(
    first_day: int, last_day: int, after: datetime | None, until: datetime, n: int
) -> str:
    """Events of days ``first_day..last_day`` that arrived in ``(after, until]``."""
    lower = f"and arrived_at > {_ts(after)}" if after else ""
    return f"""
    with universe as (
        select
            d * 100000 + i as event_id,
            {_ts(START)} + to_days(d::int) + to_seconds((hash(d, i, 't') % 86400)::bigint)
                as event_ts,
            case when hash(d, i, 'late') % 100 < 3
                then to_seconds((3600 + hash(d, i, 'lag') % (71 * 3600))::bigint)
                else to_seconds((5 + hash(d, i, 'lag') % 600)::bigint)
            end as lag,
            hash(d, i, 'type') % 100 as type_roll,
            (1 + hash(d, i, 'c') % {CUSTOMERS})::integer as customer_id,
            d, i
        from range({first_day}, {last_day + 1}) as t(d), range({n}) as u(i)
        -- more traffic as the year goes on, less at weekends
        where i < {n} * (0.75 + 0.25 * d / 365)
          and (dayofweek({_ts(START)} + to_days(d::int)) not in (0, 6)
               or hash(d, i, 'wk') % 100 < 70)
    )
    select
        event_id,
        event_ts,
        event_ts + lag as arrived_at,
        customer_id,
        'S' || customer_id || '-' || d || '-' || (hash(d, i, 's') % 3) as session_id,
        case when type_roll < 78 then 'page_view'
             when type_roll < 88 then 'search'
             when type_roll < 96 then 'add_to_cart'
             else 'purchase' end as event_type,
        {_pick(PAGES, "hash(d, i, 'p')")} as page,
        case when type_roll >= 96
            then round(5 + (hash(d, i, 'r') % 20000) / 100.0, 2)::decimal(10, 2) end as revenue
    from universe
    where event_ts + lag <= {_ts(until)} {lower}
    order by arrived_at, event_id
    """


def orders_sql(last_day: int, after: datetime | None, until: datetime, n: int) -> str:
    """Status changes of orders placed on days ``0..last_day``, loaded in ``(after, until]``."""
    lower = f"and loaded_at > {_ts(after)}" if after else ""
    return f"""
    with orders as (
        select
            d * 10000 + j as order_id,
            (1 + hash(d, j, 'oc') % {CUSTOMERS})::integer as customer_id,
            {_ts(START)} + to_days(d::int) + to_seconds((hash(d, j, 'ot') % 86400)::bigint)
                as ordered_at,
            round(10 + (hash(d, j, 'oa') % 30000) / 100.0, 2)::decimal(10, 2) as amount,
            hash(d, j, 'fate') % 100 as fate,
            d, j
        from range(0, {last_day + 1}) as t(d), range({n}) as u(j)
    ),
    steps as (
        select *,
            ordered_at + to_seconds((7200 + hash(order_id, 'x') % 172800)::bigint) as cancelled_at,
            ordered_at + to_seconds((86400 + hash(order_id, 's') % 86400)::bigint) as shipped_at
        from orders
    ),
    steps2 as (
        select *,
            shipped_at + to_seconds((172800 + hash(order_id, 'dl') % 259200)::bigint)
                as delivered_at
        from steps
    ),
    versions as (
        select order_id, customer_id, ordered_at, amount, 'placed' as status,
               ordered_at as updated_at from steps2
        union all
        select order_id, customer_id, ordered_at, amount, 'cancelled', cancelled_at
        from steps2 where fate < 6
        union all
        select order_id, customer_id, ordered_at, amount, 'shipped', shipped_at
        from steps2 where fate >= 6
        union all
        select order_id, customer_id, ordered_at, amount, 'delivered', delivered_at
        from steps2 where fate >= 6
        union all
        select order_id, customer_id, ordered_at, amount, 'returned',
               delivered_at + to_seconds((432000 + hash(order_id, 'rt') % 432000)::bigint)
        from steps2 where fate between 6 and 8
    ),
    deliveries as (
        select *, updated_at + to_seconds((60 + hash(order_id, status, 'ld') % 900)::bigint)
            as loaded_at
        from versions
        union all
        -- the feed replays about 2% of its rows a little later
        select *, updated_at + to_seconds((1200 + hash(order_id, status, 'rp') % 1800)::bigint)
        from versions where hash(order_id, status, 'dup') % 100 < 2
    )
    select order_id, customer_id, ordered_at, status, amount, updated_at, loaded_at
    from deliveries
    where loaded_at <= {_ts(until)} {lower}
    order by loaded_at, order_id
    """


def _customer_row(id_expr: str, salt: str, created: str, updated: str) -> str:
    return f"""
        {id_expr} as customer_id,
        'Customer ' || {id_expr} as name,
        'customer' || {id_expr} || '@' || {_pick(DOMAINS, f"hash({id_expr}, '{salt}e')")}
            as email,
        {_pick(COUNTRIES, f"hash({id_expr}, '{salt}c')")} as country,
        {_pick(TIERS, f"hash({id_expr}, '{salt}t')")} as tier,
        {created} as created_at,
        {updated} as updated_at
    """


def reset(con: duckdb.DuckDBPyConnection, scale: float) -> None:
    """Create the raw schema with a year of history up to the first clock."""
    n_events = max(1, int(EVENTS_PER_DAY * scale))
    n_orders = max(1, int(ORDERS_PER_DAY * scale))
    n_customers = max(10, int(CUSTOMERS * scale))
    clock = FIRST_CLOCK
    con.execute("create schema if not exists raw")
    con.execute(
        "create or replace table raw.settings as select"
        f" {n_events} as events_per_day, {n_orders} as orders_per_day,"
        f" {n_customers} as customers"
    )
    con.execute(
        f"create or replace table raw.clock as select {_ts(clock)} as clock_ts, 0 as day_number"
    )
    con.execute(
        "create or replace table raw.events as " + events_sql(0, _day(clock), None, clock, n_events)
    )
    con.execute(
        "create or replace table raw.orders as " + orders_sql(_day(clock), None, clock, n_orders)
    )
    created = f"{_ts(START)} + to_days((hash(c, 'cd') % 300)::int)"
    updated = f"{created} + to_days((hash(c, 'ud') % 60)::int)"
    con.execute(
        f"""create or replace table raw.customers as
        select {_customer_row("c", "", created, updated)}
        from range(1, {n_customers + 1}) as t(c)
        where hash(c, 'gone') % 100 >= 3
        order by c"""
    )
    con.execute(
        f"""create or replace table raw.customer_deletions as
        select c::integer as customer_id,
               {_ts(clock)} - to_days((1 + hash(c, 'dd') % 30)::int) as deleted_at
        from range(1, {n_customers + 1}) as t(c)
        where hash(c, 'gone') % 100 < 3"""
    )


def advance(con: duckdb.DuckDBPyConnection) -> datetime:
    """Move the clock on one day and deliver what arrived during it; return the new clock."""
    old, day_number = con.execute("select clock_ts, day_number from raw.clock").fetchone()
    n_events, n_orders, n_customers = con.execute(
        "select events_per_day, orders_per_day, customers from raw.settings"
    ).fetchone()
    new = old + timedelta(days=1)
    k = day_number + 1
    con.execute("begin")
    con.execute(f"update raw.clock set clock_ts = {_ts(new)}, day_number = {k}")
    # Late events reach back up to three days.
    con.execute(
        "insert into raw.events " + events_sql(max(0, _day(old) - 3), _day(new), old, new, n_events)
    )
    con.execute("insert into raw.orders " + orders_sql(_day(new), old, new, n_orders))
    during = f"{_ts(new)} - to_seconds((hash(customer_id, {k}, 'at') % 80000)::bigint)"
    # About 3% of customers change tier, country or e-mail address.
    con.execute(
        f"""update raw.customers set
            tier = {_pick(TIERS, f"hash(customer_id, {k}, 't')")},
            country = case when hash(customer_id, {k}, 'mv') % 4 = 0
                then {_pick(COUNTRIES, f"hash(customer_id, {k}, 'c')")} else country end,
            email = case when hash(customer_id, {k}, 'em') % 3 = 0
                then 'customer' || customer_id || '@new.test' else email end,
            updated_at = {during}
        where hash(customer_id, {k}, 'chg') % 100 < 3"""
    )
    # Customers deleted before today come back (about half of them each day).
    recreated = f"""
        select distinct customer_id from raw.customer_deletions
        where customer_id not in (select customer_id from raw.customers)
          and hash(customer_id, {k}, 're') % 100 < 50"""
    when = f"{_ts(new)} - to_seconds((hash(c, {k}, 'at') % 80000)::bigint)"
    con.execute(
        f"""insert into raw.customers
        select {_customer_row("c", f"r{k}", when, when)}
        from ({recreated}) as r(c)"""
    )
    # About 1% of the others are deleted.
    con.execute(
        f"""insert into raw.customer_deletions
        select customer_id, {during} from raw.customers
        where hash(customer_id, {k}, 'del') % 1000 < 10 and updated_at < {_ts(old)}"""
    )
    con.execute(
        f"""delete from raw.customers where customer_id in (
            select customer_id from raw.customer_deletions where deleted_at > {_ts(old)})"""
    )
    # A few new sign-ups.
    first_new = con.execute(
        f"select greatest(max(customer_id), {n_customers}) + 1 from "
        "(select customer_id from raw.customers union all"
        " select customer_id from raw.customer_deletions)"
    ).fetchone()[0]
    signups = max(1, n_customers // 200)
    con.execute(
        f"""insert into raw.customers
        select {_customer_row("c", "", when, when)}
        from range({first_new}, {first_new + signups}) as t(c)"""
    )
    con.execute("commit")
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="demo.duckdb", help="DuckDB file (default demo.duckdb)")
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("SQLFLOW_DEMO_SCALE", "1.0")),
        help="data size factor (default $SQLFLOW_DEMO_SCALE or 1.0)",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--reset", action="store_true", help="recreate a year of history")
    group.add_argument("--advance", action="store_true", help="advance the clock by one day")
    args = parser.parse_args()
    con = duckdb.connect(args.path)
    try:
        if args.reset:
            reset(con, args.scale)
        else:
            advance(con)
        clock = con.execute("select clock_ts from raw.clock").fetchone()[0]
        counts = con.execute(
            "select (select count(*) from raw.events), (select count(*) from raw.orders),"
            " (select count(*) from raw.customers)"
        ).fetchone()
    finally:
        con.close()
    print(
        f"raw data at {clock}: {counts[0]:,} events, {counts[1]:,} order changes,"
        f" {counts[2]:,} customers"
    )


if __name__ == "__main__":
    main()
