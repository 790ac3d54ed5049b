"""tune.py: recommendations from crafted load histories, each with its evidence."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from dbt.adapters.sqlflow.state import LoadRow
from dbt.adapters.sqlflow.tune import (
    Batch,
    ConfigEditError,
    Reach,
    Resources,
    ZoneMap,
    batches_from_loads,
    filter_columns,
    recommend,
    recommend_memory,
    recommend_predicates,
    recommend_sort_order,
    set_model_config,
)

T0 = datetime(2025, 1, 1)
MODEL = "model.shop.events"


def history(count: int, rows: int, seconds: float) -> list[Batch]:
    return [
        Batch(T0 + timedelta(hours=i), T0 + timedelta(hours=i, seconds=seconds), rows)
        for i in range(count)
    ]


def test_tiny_hour_batches_get_coarser_batches_with_the_evidence() -> None:
    # 300 rows an hour: a month of them is 216,000 rows, a year 2.6M (over a million).
    found = recommend(MODEL, {"batch_size": "hour"}, history(48, 300, 0.05))
    assert [(r.key, r.current, r.recommended) for r in found] == [("batch_size", "hour", "month")]
    assert found[0].evidence == (
        "median 300 rows and 0.05 s per hour batch over the last 48 batches"
    )
    assert found[0].expected_gain == (
        "about 720x fewer batches (~216,000 rows each): up to 35.95 s less per month of"
        " data, the per-batch overhead of the batches saved"
    )


def test_the_coarsest_unit_that_stays_under_a_million_rows() -> None:
    # 2,000 rows a day: a week is 14,000, a month ~60,000, a year ~720,000.
    found = recommend(MODEL, {"batch_size": "day"}, history(30, 2_000, 0.1))
    assert [(r.key, r.recommended) for r in found] == [("batch_size", "year")]
    found = recommend(MODEL, {"batch_size": "day"}, history(30, 50_000, 0.3))
    assert [(r.key, r.recommended) for r in found] == [("batch_size", "week")]


def test_commit_every_1_with_tiny_batches_gets_auto() -> None:
    found = recommend(MODEL, {"batch_size": "year", "commit_every": 1}, history(12, 10, 0.02))
    assert [(r.key, r.current, r.recommended) for r in found] == [("commit_every", "1", "auto")]
    assert found[0].evidence.endswith("over the last 12 batches: one commit for each")
    # Grouped commits first: they may load the batches a group at a time, which makes a
    # larger batch_size moot (tune is run again after a few loads).
    found = recommend(MODEL, {"batch_size": "hour", "commit_every": 1}, history(48, 300, 0.05))
    assert [r.key for r in found] == ["commit_every"]


def test_huge_batches_get_a_finer_unit() -> None:
    found = recommend(MODEL, {"partition_by": {"granularity": "month"}}, history(12, 9e7, 600))
    assert [(r.key, r.current, r.recommended) for r in found] == [("batch_size", "month", "week")]
    assert "redoes 140 s instead of 600 s" in found[0].expected_gain


@pytest.mark.parametrize(
    ("config", "batches"),
    [
        ({"batch_size": "day"}, history(30, 400_000, 1.5)),  # well tuned
        ({"batch_size": "hour"}, history(9, 10, 0.01)),  # too few batches to tell
        ({"batch_size": "year"}, history(30, 10, 0.01)),  # no coarser unit, auto commits
    ],
    ids=["well-tuned", "too-new", "coarsest"],
)
def test_nothing_to_recommend(config: dict, batches: list[Batch]) -> None:
    assert recommend(MODEL, config, batches) == []


def test_batches_leave_out_empty_windows_and_loads_without_windows() -> None:
    found = batches_from_loads([load(T0, 5), load(T0, 0, 1), load(None, 9, 2)])
    assert found == [Batch(T0, T0 + timedelta(seconds=2), 5)]
    assert found[0].seconds == 2.0


def load(start: datetime | None, rows: int, nth: int = 0, seconds: float = 2.0) -> LoadRow:
    """A load row of a batch that started ``nth`` minutes after T0 and ran ``seconds``."""
    began = T0 + timedelta(minutes=nth)
    return LoadRow(
        load_id="x",
        invocation_id="i",
        model=MODEL,
        relation="r",
        strategy="append",
        window_start=start,
        window_end=start,
        started_at=began,
        finished_at=began + timedelta(seconds=seconds),
        status="success",
        rows_inserted=rows,
    )


def test_a_group_loaded_at_once_shares_its_time_among_its_batches() -> None:
    # 365 day batches of 27,000 rows loaded by one statement in 1.1 s (their loads share
    # the group's start; each finished as its state was written).
    days = [load(T0 + timedelta(days=d), 27_000, 0, 1.0 + d / 3650) for d in range(365)]
    found = batches_from_loads(days)
    assert {b.loaded_with for b in found} == {365}
    assert found[0].seconds == pytest.approx((1.0 + 364 / 3650) / 365)
    # Tiny, but loaded by one statement: a larger batch_size would save nothing.
    assert recommend(MODEL, {"batch_size": "day"}, found) == []
    # The same rows loaded batch by batch in a few milliseconds each: a month a batch.
    quick = batches_from_loads([load(T0, 27_000, d, 0.004) for d in range(365)])
    advice = recommend(MODEL, {"batch_size": "day"}, quick)
    assert [(r.key, r.current, r.recommended) for r in advice] == [("batch_size", "day", "month")]
    # Batch by batch, each its own start: each its own time, not tiny.
    alone = batches_from_loads([load(T0, 27_000, d, 1.1) for d in range(365)])
    assert {b.loaded_with for b in alone} == {1} and alone[0].seconds == 1.1
    assert recommend(MODEL, {"batch_size": "day"}, alone) == []


# -- memory: out-of-memory retries and spills ------------------------------------------------

GB = 1 << 30
MB = 1 << 20
ROOMY = Resources(memory_limit_bytes=2 * GB, threads=4, machine_bytes=16 * GB)


def loaded(
    count: int, seconds: float = 4.0, *, peak: int = 500 * MB, spilled: int = 0, oom: int = 0
) -> list[Batch]:
    """``count`` batches of 400,000 rows; the first ``oom`` were retried after an OOM."""
    return [
        Batch(
            T0 + timedelta(hours=i),
            T0 + timedelta(hours=i, seconds=seconds),
            400_000,
            peak,
            spilled,
            "out_of_memory" if i < oom else None,
        )
        for i in range(count)
    ]


def test_out_of_memory_retries_get_a_larger_memory_limit() -> None:
    found = recommend_memory(MODEL, {}, loaded(20, oom=3), ROOMY)
    assert [(r.key, r.current, r.recommended, r.scope) for r in found] == [
        ("memory_limit", "2GB", "4GB", "profile")
    ]
    assert found[0].evidence == (
        "3 of the last 20 batches ran out of memory (memory_limit 2GB) and passed on the"
        " degraded retry (half the threads, no insertion order)"
    )
    assert found[0].expected_gain.startswith("no failed first try: ~4.0 s saved")


def test_out_of_memory_without_room_halves_the_threads() -> None:
    full = Resources(memory_limit_bytes=12 * GB, threads=4, machine_bytes=16 * GB)
    found = recommend_memory(MODEL, {}, loaded(20, oom=2), full)
    assert [(r.key, r.current, r.recommended) for r in found] == [("threads", "4", "2")]


def test_spilling_batches_get_a_memory_limit_that_holds_them() -> None:
    # Peak at the 2GB limit and 700MB spilled: 2.7GB * 1.25 -> 4GB (the machine allows 12).
    found = recommend_memory(MODEL, {}, loaded(20, peak=2 * GB, spilled=700 * MB), ROOMY)
    assert [(r.key, r.current, r.recommended) for r in found] == [("memory_limit", "2GB", "4GB")]
    assert found[0].evidence == (
        "20 of the last 20 batches spilled to disk (median 700MB written to the temporary"
        " directory, peak memory 2GB, memory_limit 2GB)"
    )
    assert found[0].expected_gain == (
        "no spill: ~700MB a batch not written to and read back from disk (median 4.0 s a"
        " spilling batch)"
    )


def test_spilling_batches_without_room_get_smaller_batches() -> None:
    small = Resources(memory_limit_bytes=2 * GB, threads=2, machine_bytes=3 * GB)
    found = recommend_memory(
        MODEL, {"batch_size": "day"}, loaded(20, peak=2 * GB, spilled=3 * GB), small
    )
    assert [(r.key, r.current, r.recommended, r.scope) for r in found] == [
        ("batch_size", "day", "hour", "model")
    ]


@pytest.mark.parametrize(
    "batches",
    [
        loaded(20),  # well tuned: no spill, no OOM
        loaded(20, spilled=MB)[:3] + loaded(17),  # 3 of 20 spill: under a fifth
        loaded(20, oom=1),  # one OOM in 20: not a pattern
        loaded(9, oom=9),  # too few batches to tell
    ],
    ids=["well-tuned", "rare-spill", "one-oom", "too-new"],
)
def test_nothing_to_recommend_for_memory(batches: list[Batch]) -> None:
    assert recommend_memory(MODEL, {"batch_size": "day"}, batches, ROOMY) == []


# -- sort order from zone maps -----------------------------------------------------------------


def ordered(groups: int) -> ZoneMap:
    return ZoneMap("event_ts", [(i * 10, i * 10 + 9) for i in range(groups)])


def shuffled(groups: int) -> ZoneMap:
    # Every row group holds rows from the whole range (a merge's moved rows, say).
    return ZoneMap("event_ts", [(i, 1000 - i) for i in range(groups)])


def test_zone_map_overlap() -> None:
    assert ordered(10).overlap() == 1.0
    assert shuffled(10).overlap() == 10.0
    assert ordered(10).increasing() and not ZoneMap("k", [(5, 6), (1, 2), (3, 4)]).increasing()


def test_unordered_table_gets_sorted_by_with_the_zone_map_reasoning() -> None:
    config = {"event_time": "event_ts", "unique_key": "id", "incremental_strategy": "merge"}
    found = recommend_sort_order(MODEL, config, {"event_ts": shuffled(40)})
    assert [(r.key, r.current, r.scope) for r in found] == [("sorted_by", "none", "table")]
    assert found[0].recommended == (
        "event_ts, then `dbt run --full-refresh -s events` once: it rewrites the table in"
        " event_ts order (sorted_by keeps new batches in it)"
    )
    assert found[0].evidence == (
        "row groups unordered on event_ts: each of its 40 row groups' [min, max] of event_ts"
        " meets 40 row groups' on average (in event_ts order: ~1), so a batch's filter on"
        " event_ts skips almost none; its loads also filter on id"
    )
    assert "~40x fewer row groups" in found[0].expected_gain


def test_sorted_by_already_set_but_table_unordered_needs_only_the_rewrite() -> None:
    config = {"event_time": "event_ts", "sorted_by": ["event_ts desc"]}
    found = recommend_sort_order(MODEL, config, {"event_ts": shuffled(40)})
    assert [(r.current, r.recommended.split(",")[0]) for r in found] == [
        ("event_ts desc", "event_ts desc")
    ]
    # Another column first: the window's column is recommended instead.
    config = {"event_time": "event_ts", "sorted_by": "customer_id"}
    found = recommend_sort_order(MODEL, config, {"event_ts": shuffled(40)})
    assert [(r.current, r.recommended.split(",")[0]) for r in found] == [
        ("customer_id", "event_ts")
    ]


@pytest.mark.parametrize(
    "zones",
    [{"event_ts": ordered(40)}, {"event_ts": shuffled(5)}, {}],
    ids=["ordered", "too-small", "no-zone-map"],
)
def test_no_sort_order_for_an_ordered_or_small_table(zones: dict) -> None:
    assert recommend_sort_order(MODEL, {"event_time": "event_ts"}, zones) == []


def test_filter_columns() -> None:
    config = {
        "event_time": "event_ts",
        "partition_by": {"field": "day", "granularity": "day"},
        "incremental_predicates": ["DBT_INTERNAL_DEST.\"region\" = 'eu'"],
        "unique_key": ["id", "event_ts"],
    }
    assert filter_columns(config) == ["event_ts", "day", "region", "id"]


def test_zone_maps_and_resources_read_from_real_duckdb(tmp_path) -> None:
    import duckdb

    from dbt.adapters.sqlflow.cli_tune import duckdb_resources, zone_maps

    con = duckdb.connect(str(tmp_path / "z.duckdb"))
    con.execute(
        "create table ordered as select i as id, timestamp '2025-01-01' + to_seconds(i)"
        " as event_ts from range(1200000) as t(i)"
    )
    con.execute("create table shuffled as select * from ordered order by hash(id)")

    def run(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    maps = zone_maps(run, '"z"."main"."ordered"', ["event_ts", "id"])
    assert sorted(maps) == ["event_ts", "id"] and len(maps["event_ts"].ranges) >= 8
    assert maps["event_ts"].overlap() < 2 and maps["id"].increasing()
    shuffled = zone_maps(run, '"z"."main"."shuffled"', ["event_ts"])["event_ts"]
    assert shuffled.overlap() == len(shuffled.ranges)
    config = {"event_time": "event_ts"}
    assert recommend_sort_order(MODEL, config, maps) == []
    assert [r.key for r in recommend_sort_order(MODEL, config, {"event_ts": shuffled})] == [
        "sorted_by"
    ]
    assert zone_maps(run, '"z"."main"."missing"', ["event_ts"]) == {}

    found = duckdb_resources(run, {"memory_limit": "3GB", "threads": 1})
    assert found.memory_limit_bytes is not None
    assert 2.5 * GB < found.memory_limit_bytes <= 3 * GB and found.threads == 1
    assert found.machine_bytes is not None and found.machine_bytes > GB
    con.close()


# -- --apply: the model's properties YAML ------------------------------------------------------

KEPT = """version: 2
# the shop's models
models:
  - name: orders   # keep this comment
    description: "Orders"
    config:
      tags: ['a']
      batch_size: day  # was day
  - name: events
    columns:
      - name: id
sources:
  - name: raw
"""


def test_set_model_config_replaces_in_place_and_keeps_the_rest() -> None:
    edited = set_model_config(KEPT, "orders", {"batch_size": "year", "commit_every": "auto"})
    assert edited == KEPT.replace(
        "      batch_size: day  # was day\n",
        '      batch_size: "year"  # was day\n      commit_every: "auto"\n',
    )


def test_set_model_config_adds_a_config_after_the_name() -> None:
    edited = set_model_config(KEPT, "events", {"commit_every": "4"})
    assert edited == KEPT.replace(
        "  - name: events\n", "  - name: events\n    config:\n      commit_every: 4\n"
    )


def test_set_model_config_adds_the_model_and_creates_a_file() -> None:
    edited = set_model_config(KEPT, "daily", {"batch_size": "week"})
    assert edited == KEPT.replace(
        "sources:\n",
        '  - name: daily\n    config:\n      batch_size: "week"\nsources:\n',
    )
    assert set_model_config(None, "daily", {"batch_size": "week"}) == (
        'version: 2\nmodels:\n  - name: daily\n    config:\n      batch_size: "week"\n'
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("models: [{name: orders}]\n", "not a block list"),
        ("models:\n  - name: orders\n    config: {batch_size: day}\n", "not a block mapping"),
        ("models:\n  - name: orders\n    config:\n      batch_size: >\n        day\n", "spans"),
        ("models: : :\n", "does not parse"),
    ],
    ids=["flow-models", "flow-config", "folded-value", "broken"],
)
def test_set_model_config_refuses_what_it_cannot_edit_safely(text: str, problem: str) -> None:
    with pytest.raises(ConfigEditError, match=problem):
        set_model_config(text, "orders", {"batch_size": "year"})


# -- incremental_predicates from how far before their windows the rows lie ---------------------


def days_zone(groups: int, column: str = "created_at") -> ZoneMap:
    """A table in column order: row group i holds day i of January 2025 (dates)."""
    return ZoneMap(column, [(date(2025, 1, 1) + timedelta(days=i),) * 2 for i in range(groups)])


KEYED_MERGE = {"incremental_strategy": "merge", "unique_key": "id", "event_time": "event_ts"}


def test_rows_close_before_their_window_get_a_window_relative_predicate() -> None:
    # The latest load (from 2025-02-06, the 37th day of a 40-day table) had rows created
    # at most 6 hours before their window.
    reach = Reach("created_at", 900, 6 * 3600.0, datetime(2025, 2, 6), days_zone(40))
    found = recommend_predicates(MODEL, KEYED_MERGE, [reach])
    assert [(r.key, r.current, r.scope) for r in found] == [
        ("incremental_predicates", "none", "sql")
    ]
    assert found[0].recommended == (
        '["DBT_INTERNAL_DEST.created_at >= " ~ sqlflow_window_start() ~ " - interval 1 day"]'
        " in the model's config()"
    )
    assert found[0].evidence == (
        "the 900 rows of its latest load lay at most 6:00:00 before their window's start on"
        " created_at (the predicate allows twice that, in whole days); its 40 row groups are"
        " in created_at order"
    )
    # Row groups of days 1-35 (max < 2025-02-05) are skipped: 35 of 40.
    assert "88% of the table's row groups skipped" in found[0].expected_gain


@pytest.mark.parametrize(
    ("config", "reach"),
    [
        # Already has predicates, has no key, or is not a keyed strategy.
        (
            {**KEYED_MERGE, "incremental_predicates": ["1=1"]},
            Reach("created_at", 9, 0.0, datetime(2025, 2, 6), days_zone(40)),
        ),
        (
            {"event_time": "event_ts", "incremental_strategy": "append"},
            Reach("created_at", 9, 0.0, datetime(2025, 2, 6), days_zone(40)),
        ),
        # The rows lie far back (20 days: a predicate 40 days back skips nothing).
        (KEYED_MERGE, Reach("created_at", 9, 20 * 86400.0, datetime(2025, 2, 6), days_zone(40))),
        # The table is not in that column's order, or too small to tell.
        (KEYED_MERGE, Reach("created_at", 9, 0.0, datetime(2025, 2, 6), shuffled(40))),
        (KEYED_MERGE, Reach("created_at", 9, 0.0, datetime(2025, 2, 6), days_zone(5))),
        # No rows in the latest load.
        (KEYED_MERGE, Reach("created_at", 0, 0.0, datetime(2025, 2, 6), days_zone(40))),
    ],
    ids=["has-predicates", "append", "far-back", "unordered", "small", "no-rows"],
)
def test_no_predicate(config: dict, reach: Reach) -> None:
    assert recommend_predicates(MODEL, config, [reach]) == []
