"""Zero downtime: a reader process queries the lake in a loop while a ``dbt run`` loads it.

The model is a windowed append of hourly batches, each committed on its own
(``commit_every=1``: as many commits as there are batches, the hardest case for a
reader). Every read takes the target and sqlflow's intervals from one snapshot; the
reader must never fail and never see a half batch: each hour it sees holds all 60 rows of
that hour, and the hours it sees are exactly the ones the intervals say are loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from lake_testing import release
from sqlflow_testing import events_model, raw_sources_yml, rows
from test_lake_concurrency import dbt_process

HOURS = 3 * 24
MODELS = {
    "sources.yml": raw_sources_yml("events"),
    "hourly.sql": events_model(
        "incremental_strategy='append', event_time='event_ts', batch_size='hour', commit_every=1"
    ),
}

# The reader: one snapshot per read (BEGIN ... COMMIT), the target's rows per hour and the
# recorded intervals of the model; one JSON line per read, or the error, until told to stop.
READER = textwrap.dedent(
    """
    import json, sys, pathlib, duckdb
    dsn, data_path, schema, stop, out = sys.argv[1:6]
    con = duckdb.connect()
    con.execute("load ducklake")
    con.execute(
        f"attach 'ducklake:postgres:{dsn}' as lake (data_path '{data_path}', read_only)"
    )
    with open(out, "w") as log:
        while not pathlib.Path(stop).exists():
            try:
                con.execute("begin")
                hours = con.execute(
                    f"select date_trunc('hour', event_ts)::varchar, count(*)"
                    f" from lake.{schema}.hourly group by 1 order by 1"
                ).fetchall() if con.execute(
                    "select count(*) from duckdb_tables()"
                    f" where database_name = 'lake' and schema_name = '{schema}'"
                    " and table_name = 'hourly'"
                ).fetchone()[0] else []
                loaded = con.execute(
                    "select interval_start::varchar, interval_end::varchar"
                    " from lake.sqlflow_meta.intervals where model = 'model.test.hourly'"
                    " order by 1"
                ).fetchall() if con.execute(
                    "select count(*) from duckdb_tables() where database_name = 'lake'"
                    " and schema_name = 'sqlflow_meta' and table_name = 'interval_log'"
                ).fetchone()[0] else []
                con.execute("commit")
                log.write(json.dumps({"hours": hours, "loaded": loaded}) + "\\n")
            except Exception as e:
                log.write(json.dumps({"error": str(e)}) + "\\n")
                con.execute("rollback")
            log.flush()
    """
)


class TestAReaderDuringLoads:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    def test_the_reader_sees_only_whole_committed_batches(self, project, lake, tmp_path):
        project.run_sql(
            "create or replace table {database}.{schema}.events as select range::integer as id,"
            " timestamp '2025-01-01' + range * interval 1 minute as event_ts,"
            f" 'v' || range as v from range({HOURS} * 60)"
        )
        release(project)
        script, stop, out = tmp_path / "reader.py", tmp_path / "stop", tmp_path / "reads.jsonl"
        script.write_text(READER)
        args = [lake["dsn"], lake["data_path"], project.test_schema, str(stop), str(out)]
        reader = subprocess.Popen([sys.executable, str(script), *args], env=dict(os.environ))
        try:
            while not out.exists() or not out.read_text():  # the reader is reading
                assert reader.poll() is None, "the reader exited"
                time.sleep(0.05)
            load = dbt_process(project, "hourly")
            output = load.communicate(timeout=600)[0]
            assert load.returncode == 0, output
            time.sleep(0.5)  # a few reads of the finished table
        finally:
            stop.touch()
            reader.wait(timeout=60)
        assert reader.returncode == 0
        reads = [json.loads(line) for line in out.read_text().splitlines()]
        errors = [r["error"] for r in reads if "error" in r]
        assert errors == []
        seen = set()
        for read in reads:
            hours = {hour: count for hour, count in read["hours"]}
            assert set(hours.values()) <= {60}, read  # whole batches only
            # The hours present are the ones recorded as loaded, in the same snapshot.
            recorded = {hour for start, end in read["loaded"] for hour in _hours(start, end)}
            assert set(hours) == recorded, read
            seen.add(len(hours))
        # The reader saw the load in progress (some, not all, hours), not only its ends.
        assert any(0 < n < HOURS for n in seen), sorted(seen)
        assert HOURS in seen
        final = rows(project, "select count(*) from {database}.{schema}.hourly")
        assert final == [(HOURS * 60,)]


def _hours(start: str, end: str) -> list[str]:
    """The hour starts in ``[start, end)``, as DuckDB prints timestamps."""
    from datetime import datetime, timedelta

    first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
    found, at = [], first
    while at < last:
        found.append(str(at))
        at += timedelta(hours=1)
    return found
