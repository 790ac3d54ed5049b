"""The fault-injection suite's fast subset (``make faults`` runs 100 seeded trials): one
trial of each fault kind on a 32-day, four-model project (append, merge,
insert_overwrite, snapshot), checked against a reference built without faults."""

from __future__ import annotations

import pytest
from faults.runner import KINDS, Suite, Trial, table


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    return Suite(tmp_path_factory.mktemp("faults"), seed=7)


@pytest.fixture(scope="module")
def trials(suite: Suite) -> dict[str, Trial]:
    done = {kind: suite.run(suite.draw(n, kind)) for n, kind in enumerate(KINDS, 1)}
    print(table(list(done.values())))
    return done


def test_the_reference_holds_every_window(suite: Suite) -> None:
    assert {name: len(rows) > 0 for name, rows in suite.reference.tables.items()} == {
        "ev_append": True,
        "ev_merge": True,
        "ev_overwrite": True,
        "ev_snapshot": True,
    }
    assert len(suite.reference.tables["ev_append"]) == 32 * 60


@pytest.mark.parametrize("kind", ["lock", "conflict", "oom"])
def test_transient_faults_are_recovered_within_the_run(trials: dict[str, Trial], kind: str) -> None:
    trial = trials[kind]
    assert (trial.first_exit, trial.recovered, trial.reruns) == (0, "in run", 0), trial
    assert (trial.rows_lost, trial.rows_duplicated, trial.problems) == (0, 0, []), trial


def test_kill_9_is_recovered_exactly_by_the_next_run(trials: dict[str, Trial]) -> None:
    trial = trials["kill"]
    assert (trial.first_exit, trial.recovered, trial.reruns) == (-9, "next run", 1), trial
    assert (trial.rows_lost, trial.rows_duplicated, trial.problems) == (0, 0, []), trial


def test_sigterm_rolls_back_says_what_committed_and_the_next_run_finishes(
    trials: dict[str, Trial],
) -> None:
    trial = trials["term"]
    # The problems list would say if the "was stopped (SIGTERM)" message was missing.
    assert trial.first_exit not in (0, -15), trial
    assert (trial.recovered, trial.reruns) == ("next run", 1), trial
    assert (trial.rows_lost, trial.rows_duplicated, trial.problems) == (0, 0, []), trial


def test_the_runner_finds_lost_and_duplicated_rows(suite: Suite) -> None:
    """The check can fail: a target with a row removed and one doubled is caught."""
    from faults.runner import compare

    found = type(suite.reference)(
        {k: list(v) for k, v in suite.reference.tables.items()},
        dict(suite.reference.intervals),
        [],
    )
    found.tables["ev_append"] = found.tables["ev_append"][1:] + found.tables["ev_append"][-1:]
    lost, duplicated, problems = compare(suite.reference, found)
    assert (lost, duplicated) == (1, 1)
    assert problems == ["ev_append: 1 rows missing, 1 rows too many"]
