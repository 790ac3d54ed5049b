"""The lake fault-injection suite's fast subset (``make faults-lake`` runs the seeded
trials): one trial of each lake fault kind on the 32-day, four-model project of
``tests/faults/runner.py`` (append, merge, insert_overwrite, snapshot), on a DuckLake
with a PostgreSQL catalog, checked against a reference built there without faults."""

from __future__ import annotations

import pytest
from faults.runner import LAKE_KINDS, LakeSuite, Trial, table


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, postgres) -> LakeSuite:
    return LakeSuite(tmp_path_factory.mktemp("lake_faults"), seed=7, server=postgres)


@pytest.fixture(scope="module")
def trials(suite: LakeSuite) -> dict[str, Trial]:
    done = {kind: suite.run(suite.draw(n, kind)) for n, kind in enumerate(LAKE_KINDS, 1)}
    print(table(list(done.values())))
    return done


def test_the_lake_reference_holds_every_window(suite: LakeSuite) -> None:
    assert len(suite.reference.tables["ev_append"]) == 32 * 60
    assert all(suite.reference.tables.values())
    assert suite.reference_snapshots > 4


@pytest.mark.parametrize("kind", ["pg_restart", "lake_writer"])
def test_lake_faults_are_recovered_within_the_run(trials: dict[str, Trial], kind: str) -> None:
    trial = trials[kind]
    if kind == "pg_restart" and trial.first_exit != 0:
        # DuckDB 1.5.5 sometimes aborts the process when the catalog's connection dies
        # ("database has been invalidated ... Attempted to access index 0 within vector of
        # size 0", SIGABRT), or fails a statement with "Current transaction is aborted"
        # (README, DuckLake): like a kill -9, the next run finishes it.
        assert (trial.recovered, trial.reruns) == ("next run", 1), trial
    else:
        assert (trial.first_exit, trial.recovered, trial.reruns) == (0, "in run", 0), trial
    assert (trial.rows_lost, trial.rows_duplicated, trial.problems) == (0, 0, []), trial


def test_the_lake_writer_wrote_while_the_run_loaded(trials: dict[str, Trial]) -> None:
    assert trials["lake_writer"].writes >= 1, trials["lake_writer"]


@pytest.mark.parametrize("kind", ["kill", "term"])
def test_a_stopped_lake_run_is_finished_exactly_by_the_next(
    trials: dict[str, Trial], kind: str
) -> None:
    trial = trials[kind]
    assert trial.first_exit != 0, trial
    assert (trial.recovered, trial.reruns) == ("next run", 1), trial
    assert (trial.rows_lost, trial.rows_duplicated, trial.problems) == (0, 0, []), trial
