"""Config errors through real dbt runs: misspelled keys, and config and quality-check problems
in one error. Nothing is written for a failing model: no table, no state rows.

A key close to a sqlflow key that neither dbt nor sqlflow reads (``look_back``) would
otherwise be ignored silently by dbt; other unknown keys (a package's own) are kept and
listed at debug level. ``model.config`` in a real run holds dbt's defaults for every
``ModelConfig`` field plus the user's keys: only the user's unknown key may be listed.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from sqlflow_testing import raw_sources_yml, rows

sources_yml = raw_sources_yml("events")
body = "select id, event_ts, v from {{ source('raw', 'events') }}"
DAY = "partition_by={'field': 'event_ts', 'granularity': 'day'}"
NOW = json.dumps({"sqlflow_now": "2025-01-03T12:00:00"})


def model(config: str) -> str:
    return "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n" + body + "\n"


BAD_MODELS = {
    "look_back": (
        f"incremental_strategy='insert_overwrite', {DAY}, look_back=5,"
        " quality_check=[{'not_null': ['id']}]",
        [
            "unknown config `look_back` — did you mean `lookback`? look_back=5 would be"
            " ignored (sqlflow reads lookback). Fix: rename look_back to lookback.",
            "unknown config `quality_check` — did you mean `quality_checks`?"
            " quality_check=[{'not_null': ['id']}] would be ignored (sqlflow reads"
            " quality_checks). Fix: rename quality_check to quality_checks.",
        ],
    ),
    "dedup_by": (
        "unique_key='id', dedup_by='event_ts'",
        [
            "unknown config `dedup_by` — did you mean `dedupe_by`? dedup_by='event_ts' would be"
            " ignored (sqlflow reads dedupe_by). Fix: rename dedup_by to dedupe_by.",
        ],
    ),
    "both_kinds": (
        f"{DAY}, lookback=-1, quality_checks=[{{'not_nul': ['id']}}]",
        [
            "lookback -1 must be an integer >= 0 (batch_size units re-read before the last"
            " loaded end). Fix: set lookback=1, or 0 to re-read nothing.",
            "quality_checks[0] {'not_nul': ['id']}: unknown check 'not_nul'. Allowed checks:"
            " not_null, unique, accepted_values, row_count, expression, freshness,"
            " partition_consistency. Did you mean 'not_null'?",
        ],
    ),
}


def config_error(name: str, *problems: str) -> str:
    """dbt's message for a model whose config has ``problems``: one block, one count."""
    noun = "error" if len(problems) == 1 else "errors"
    inner = (
        f"sqlflow_incremental model 'model.test.{name}' has {len(problems)} configuration"
        f" {noun} (nothing was written):\n" + "\n".join(f"  - {p}" for p in problems)
    )
    return f"Runtime Error in model {name} (models/{name}.sql)\n" + textwrap.indent(inner, "  ")


def create_events(project) -> None:
    project.run_sql(
        "create or replace table {schema}.events (id integer, event_ts timestamp, v varchar)"
    )
    project.run_sql("insert into {schema}.events values (1, timestamp '2025-01-02 10:00:00', 'a')")


class TestConfigErrors:
    @pytest.fixture(scope="class")
    def models(self) -> dict:
        files = {f"{name}.sql": model(cfg) for name, (cfg, _) in BAD_MODELS.items()}
        # A package's own key, far from every sqlflow key: kept, as dbt keeps it.
        files["tagged.sql"] = model(f"{DAY}, owner_team='growth'")
        return {"sources.yml": sources_yml, **files}

    def test_config_errors_write_nothing(self, project) -> None:
        create_events(project)
        results, logs = run_dbt_and_capture(["--debug", "run", "--vars", NOW], expect_pass=False)
        statuses = {r.node.name: r.status for r in results}
        assert statuses == {**dict.fromkeys(BAD_MODELS, "error"), "tagged": "success"}
        for result in results:
            if result.node.name in BAD_MODELS:
                assert result.message == config_error(
                    result.node.name, *BAD_MODELS[result.node.name][1]
                )
        tables = rows(
            project,
            "select table_name from duckdb_tables() where schema_name = '{schema}' order by 1",
        )
        assert tables == [("events",), ("tagged",)]
        for state_table in ("loads", "intervals", "quality_results"):
            found = rows(project, f"select distinct model from sqlflow_meta.{state_table}")
            assert set(found) <= {("model.test.tagged",)}, state_table
        assert rows(project, "select distinct model from sqlflow_meta.loads") == [
            ("model.test.tagged",)
        ]
        # model.config holds dbt's defaults for all its fields: only the user's key is unknown.
        assert (
            "model.test.tagged config keys sqlflow and dbt do not read (kept for packages):"
            " owner_team\n" in logs.replace("\r", "")
        )

    def test_a_fixed_key_runs(self, project) -> None:
        create_events(project)
        (project.project_root / "models" / "dedup_by.sql").write_text(
            model("unique_key='id', dedupe_by='event_ts'"), encoding="utf-8"
        )
        run_dbt(["run", "-s", "dedup_by", "--vars", NOW])
        assert rows(project, "select id, v from {schema}.dedup_by") == [(1, "a")]
