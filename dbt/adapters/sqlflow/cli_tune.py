"""``dbt-sqlflow tune [MODEL ...]``: recommendations from sqlflow's load history.

The models (every windowed sqlflow_incremental model of the manifest when none is named)
are found as :mod:`~dbt.adapters.sqlflow.cli_intervals` finds them, their recent batches
read from ``loads`` in the DuckDB file opened read-only, and :func:`tune.recommend` says
what to change, with its evidence and expected gain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dbt.adapters.sqlflow.cli_intervals import WINDOWED, find_windowed_model
from dbt.adapters.sqlflow.cli_state import (
    StateCommandError,
    manifest_path,
    model_node,
    open_state,
    project_dirs,
    resolve_state_location,
    text_table,
)
from dbt.adapters.sqlflow.tune import MIN_LOADS, Recommendation, batches_from_loads, recommend


@dataclass(frozen=True)
class ModelAdvice:
    """One model's recommendations (none when it is well tuned or too new to tell)."""

    model: str
    batches: int
    recommendations: list[Recommendation]


def windowed_models(manifest: Path) -> list[str]:
    """The unique_ids of every windowed sqlflow_incremental model in a manifest."""
    try:
        nodes = json.loads(manifest.read_text()).get("nodes", {})
    except (OSError, ValueError) as e:
        raise StateCommandError(
            f"{manifest}: cannot read the manifest ({e}). Fix: run `dbt parse`"
        ) from e
    return sorted(
        uid
        for uid, node in nodes.items()
        if node.get("resource_type") == "model" and WINDOWED.matches(node.get("config") or {})
    )


def load_advice(
    models: Sequence[str],
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
) -> list[ModelAdvice]:
    """Everything ``dbt-sqlflow tune`` shows.

    Raises:
        StateCommandError: With a one-line message naming what is wrong and the fix.
    """
    project, profiles = project_dirs(project_dir, profiles_dir)
    manifest = manifest_path(project)
    names = list(models) or windowed_models(manifest)
    location = resolve_state_location(project, profiles, target)
    advice = []
    for name in names:
        model = find_windowed_model(manifest, name)
        config = model_node(manifest, name, WINDOWED).get("config") or {}
        with open_state(location, model.name, "loads") as store:
            batches = batches_from_loads(store.loads(model.unique_id))
        advice.append(
            ModelAdvice(model.unique_id, len(batches), recommend(model.unique_id, config, batches))
        )
    return advice


def format_table(advice: Sequence[ModelAdvice]) -> str:
    """The recommendations as a table, and a line per model with none."""
    rows = [
        [r.model, r.key, r.current, r.recommended, r.evidence, r.expected_gain]
        for a in advice
        for r in a.recommendations
    ]
    headers = ["model", "key", "now", "recommended", "evidence", "expected gain"]
    out = "".join(f"{line}\n" for line in text_table(headers, rows)) if rows else ""
    for a in advice:
        if a.recommendations:
            continue
        why = (
            f"only {a.batches} batches recorded (needs {MIN_LOADS})"
            if a.batches < MIN_LOADS
            else f"its last {a.batches} batches are neither tiny nor huge"
        )
        out += f"{a.model}: nothing to recommend ({why})\n"
    return out


def format_json(advice: Sequence[ModelAdvice]) -> str:
    """The recommendations as JSON: one object per model."""
    return json.dumps([asdict(a) for a in advice], indent=2) + "\n"
