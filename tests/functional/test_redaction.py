"""Personal data in real `dbt run`s: every kind the data holds is absent from every output
sqlflow writes (the log file, the console, run_results.json, the state tables, the metrics
textfile and exports), while the messages still say what failed, where and how often.

The source (a CSV outside the project, so no test SQL with the values reaches dbt's log)
holds each kind: e-mail addresses, phone numbers, card numbers, IBANs, IPv4 and IPv6
addresses, plus a name (a column the profile lists), a badge number (a pattern the profile
lists) and a nickname (a column the model lists). The models make sqlflow show those rows:
checks that warn (samples logged and stored) and fail (samples in the error), duplicate and
tied keys (key examples in the error), and DuckDB conversion errors quoting a value (in a
sqlflow model and in a plain table).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from dbt.tests.util import run_dbt_and_capture
from sqlflow_testing import Scenario, rows, run_results

from dbt.adapters.sqlflow.metrics.export import export_artifacts

HEADER = "id,full_name,nickname,email,phone,card,iban,ip4,ip6,badge,status,event_ts".split(",")
PEOPLE = [
    [
        1,
        "Ann Lee",
        "sunny-ann",
        "ann.lee@example.com",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "192.168.14.20",
        "2001:db8::8a2e:370:7334",
        "EMP-004211",
        "ok",
        "2025-01-03 01:00:00",
    ],
    [
        2,
        "Bob Ray",
        "rayray",
        "bob.ray@example.org",
        "(415) 555-2671",
        "5500005555555559",
        "DE89370400440532013000",
        "10.20.30.40",
        "fe80::1ff:fe23:4567:890a",
        "EMP-118822",
        "",
        "2025-01-03 02:00:00",
    ],
    # Ann's e-mail, card and IBAN again (a duplicate key by email; a tie by dedupe_by
    # event_ts on the key card: the same time, another status).
    [
        3,
        "Ann Lee",
        "sunny-ann",
        "ann.lee@example.com",
        "+1 415-555-0199",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "172.16.254.1",
        "2001:db8:85a3::8a2e:370:7334",
        "EMP-004211",
        "new",
        "2025-01-03 01:00:00",
    ],
]

# What must never be written: every value (but the nickname, which only one model lists),
# and the card and phone numbers without their separators.
SECRETS = sorted(
    {str(v) for row in PEOPLE for v in row[1:10]} - {"sunny-ann", "rayray"}
    | {"4111111111111111", "442079460958", "4155552671", "GB82WEST12345698765432"}
)
# Each kind is shown as its placeholder somewhere.
MARKS = [
    "<redacted:email>",
    "<redacted:phone>",
    "<redacted:card>",
    "<redacted:iban>",
    "<redacted:ip>",
    "<redacted:pattern>",
    "<redacted:column>",
]

SOURCE = "read_csv('{{ var(\"people_csv\") }}', all_varchar = true)"
COLUMNS = (
    "id::int as id, badge, full_name, nickname, email, phone, ip4, ip6, card, iban,"
    " nullif(status, '') as status, event_ts::timestamp as event_ts"
)


def model(config: str, select: str = COLUMNS) -> str:
    return (
        "{{ config(materialized='sqlflow_incremental', " + config + ") }}\n"
        f"select {select} from {SOURCE}\n"
    )


WINDOWED = "event_time='event_ts', batch_size='day', begin='2025-01-03'"
WARN_CHECKS = (
    "quality_checks=["
    "{'not_null': ['status'], 'severity': 'warn'},"
    " {'unique': ['email'], 'severity': 'warn'},"
    " {'unique': ['card'], 'severity': 'warn'},"
    " {'unique': ['iban'], 'severity': 'warn'},"
    " {'expression': 'id < 0', 'severity': 'warn'}]"
)
ERROR_CHECKS = "quality_checks=[{'not_null': ['status']}, {'unique': ['email']}]"

MODELS = {
    # Warn checks: the load commits, samples go to the log and sqlflow_meta.quality_results.
    "warned.sql": model(
        f"unique_key='id', {WINDOWED}, {WARN_CHECKS}, sqlflow_redact={{'columns': ['nickname']}}"
    ),
    # Error checks: the samples are in the error (log, run_results.json message).
    "failed.sql": model(f"unique_key='id', {WINDOWED}, {ERROR_CHECKS}"),
    # Duplicate keys (email) and tied keys (card, by event_ts): key examples in the error.
    "dupes.sql": model("unique_key='email'"),
    "tied.sql": model("unique_key='card', dedupe_by='event_ts'"),
    # DuckDB quotes the value it cannot convert: in a sqlflow batch and in a plain table.
    "cast_flow.sql": model(
        "unique_key='id'",
        "id::int as id, cast(concat_ws(' ', email, phone, card, iban, ip4, ip6, badge)"
        " as integer) as x",
    ),
    "cast_table.sql": "{{ config(materialized='table') }}\n"
    "select cast(concat_ws(' ', email, phone, card, iban, ip4, ip6, badge) as integer) as x"
    f" from {SOURCE}\n",
}
MODEL_IDS = [f"model.test.{name.removesuffix('.sql')}" for name in MODELS]


@pytest.fixture(scope="class")
def people_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("people") / "people.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(PEOPLE)
    return path


def everything_written(project: Any, logs_dir: str, console: str, textfile: Path) -> dict:
    """Every output of the run, as text, by name."""
    target = Path(project.project_root) / "target"
    tables = [
        t
        for (t,) in rows(
            project,
            "select table_name from information_schema.tables"
            " where table_schema = 'sqlflow_meta' order by 1",
        )
    ]
    state = {t: rows(project, f"select * from sqlflow_meta.{t}") for t in tables}
    return {
        "log file": (Path(logs_dir) / "dbt.log").read_text(),
        "console": console,
        "run_results.json": (target / "run_results.json").read_text(),
        "state tables": repr(state),
        "metrics textfile": (textfile / "dbt_sqlflow.prom").read_text(),
        "metrics json": export_artifacts(
            target / "run_results.json", target / "manifest.json", fmt="json"
        ),
        "metrics cloudwatch-emf": export_artifacts(
            target / "run_results.json", target / "manifest.json", fmt="cloudwatch-emf"
        ),
    }


class TestPersonalDataIsRedacted:
    @pytest.fixture(scope="class")
    def textfile(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("textfile")

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory, textfile: Path) -> dict:
        return {
            "type": "sqlflow",
            "path": str(tmp_path_factory.mktemp("duckdb") / "pii.duckdb"),
            "threads": 1,
            "sqlflow_metrics": {"textfile": str(textfile)},
            "sqlflow_redact": {"columns": ["full_name"], "patterns": ["EMP-[0-9]{6}"]},
        }

    @pytest.fixture(scope="class")
    def project_config_update(self, people_csv: Path) -> dict:
        return {"vars": {"people_csv": str(people_csv)}}

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return MODELS

    @pytest.fixture(scope="class")
    def scenario(self, project: Any, logs_dir: str, textfile: Path) -> Scenario:
        def run(project: Any) -> dict:
            _, console = run_dbt_and_capture(
                ["run", "--vars", '{"sqlflow_now": "2025-01-03T12:00:00"}'], expect_pass=False
            )
            return everything_written(project, logs_dir, console, textfile)

        return Scenario(project, run)

    def test_no_personal_value_in_any_output(self, scenario: Scenario) -> None:
        outputs = scenario.after(scenario.steps[0])
        found = {
            (where, secret)
            for where, text in outputs.items()
            for secret in SECRETS
            if secret in text
        }
        assert found == set()

    def test_every_kind_shows_as_its_placeholder(self, scenario: Scenario) -> None:
        outputs = scenario.after(scenario.steps[0])
        for where in ("log file", "console", "run_results.json"):
            assert [m for m in MARKS if m not in outputs[where]] == [], where
        # The warned checks' samples in sqlflow_meta.quality_results.
        assert [m for m in MARKS if m not in outputs["state tables"]] == []

    def test_the_models_ran_as_planned(self, project: Any, scenario: Scenario) -> None:
        scenario.after(scenario.steps[0])
        results = run_results(project)
        assert {name: r["status"] for name, r in results.items()} == {
            "warned": "success",
            "failed": "error",
            "dupes": "error",
            "tied": "error",
            "cast_flow": "error",
            "cast_table": "error",
        }

    def test_messages_stay_readable(self, project: Any, scenario: Scenario) -> None:
        scenario.after(scenario.steps[0])
        results = run_results(project)
        failed = results["failed"]["message"]
        assert "quality check failed: not_null(status) (1 failing rows)" in failed
        # A column only another model lists (nickname) is shown here.
        assert (
            "    - status=NULL, id=2, badge='<redacted:pattern>', full_name=<redacted:column>,"
            " nickname='rayray', email='<redacted:email>', phone='<redacted:phone>',"
            " ip4='<redacted:ip>', ip6='<redacted:ip>', card='<r...\n"
        ) in failed
        assert "  - email='<redacted:email>' (2 rows)" in failed
        assert results["dupes"]["message"].endswith(
            "1 key value(s) occur more than once in the batch, e.g. email='<redacted:email>'"
            " (2 rows). Set dedupe_by (e.g. dedupe_by='updated_at') to keep the last row per"
            " key, or fix the duplicates upstream. Nothing was written."
        )
        assert "e.g. card='<redacted:card>' (2 rows)" in results["tied"]["message"]
        for name in ("cast_flow", "cast_table"):
            assert (
                "Conversion Error: Could not convert string '<redacted:email> <redacted:phone>"
                " <redacted:card> <redacted:iban> <redacted:ip> <redacted:ip>"
                " <redacted:pattern>' to INT32"
            ) in results[name]["message"]

    def test_warned_samples_are_stored_redacted(self, project: Any, scenario: Scenario) -> None:
        scenario.after(scenario.steps[0])
        stored = dict(
            rows(
                project,
                "select check_name, sample from sqlflow_meta.quality_results"
                " where model = 'model.test.warned' and status = 'fail'",
            )
        )
        assert json.loads(stored["unique(email)"]) == ["email='<redacted:email>' (2 rows)"]
        assert json.loads(stored["unique(card)"]) == ["card='<redacted:card>' (2 rows)"]
        assert json.loads(stored["unique(iban)"]) == ["iban='<redacted:iban>' (2 rows)"]
        # The model's own sqlflow_redact column (nickname) besides the profile's.
        assert json.loads(stored["not_null(status)"]) == [
            "status=NULL, id=2, badge='<redacted:pattern>', full_name=<redacted:column>,"
            " nickname=<redacted:column>, email='<redacted:email>', phone='<redacted:phone>',"
            " ip4='<redacted:ip>', ip6='<redacted:ip>',..."
        ]

    def test_metric_labels_carry_no_row_values(self, scenario: Scenario) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        prom = scenario.after(scenario.steps[0])["metrics textfile"]
        labels = {
            (key, value)
            for family in text_string_to_metric_families(prom)
            for sample in family.samples
            for key, value in sample.labels.items()
        }
        # No label value is, or holds, a value of the data (ids, statuses and times aside).
        cells = {str(v) for row in PEOPLE for v in row[1:10]}
        assert {(k, v) for k, v in labels for cell in cells if cell in v} == set()
        checks = {v for k, v in labels if k == "check"}
        assert checks == {
            "not_null(status)",
            "unique(email)",
            "unique(card)",
            "unique(iban)",
            "expression(id < 0)",
        }
        assert {v for k, v in labels if k == "model"} == set(MODEL_IDS)


class TestRedactionTurnedOff:
    """`sqlflow_redact: {kinds: []}` in the profile: values are shown as they are."""

    @pytest.fixture(scope="class")
    def dbt_profile_target(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        return {
            "type": "sqlflow",
            "path": str(tmp_path_factory.mktemp("duckdb") / "plain.duckdb"),
            "sqlflow_redact": {"kinds": []},
        }

    @pytest.fixture(scope="class")
    def project_config_update(self, people_csv: Path) -> dict:
        return {"vars": {"people_csv": str(people_csv)}}

    @pytest.fixture(scope="class")
    def models(self) -> dict:
        return {"warned.sql": MODELS["warned.sql"]}

    def test_samples_show_the_values(self, project: Any) -> None:
        run_dbt_and_capture(["run", "--vars", '{"sqlflow_now": "2025-01-03T12:00:00"}'])
        stored = dict(
            rows(
                project,
                "select check_name, sample from sqlflow_meta.quality_results where status = 'fail'",
            )
        )
        assert json.loads(stored["unique(email)"]) == ["email='ann.lee@example.com' (2 rows)"]
        assert json.loads(stored["unique(card)"]) == ["card='4111 1111 1111 1111' (2 rows)"]
        # The model's columns are still redacted: only the built-in kinds are off.
        assert "nickname=<redacted:column>" in stored["not_null(status)"]
