"""``dbt-sqlflow partitions MODEL``: a model's partition table, read from sqlflow's state.

The model's relation and ``partition_by`` come from ``target/manifest.json`` in the dbt
project; the DuckDB file and the state schema (``sqlflow_state_schema``, default
``sqlflow_meta``) from the profile, loaded with dbt's own profile code (so ``env_var()``
and ``--target`` work as in dbt). The database is opened read-only and read through
:class:`~dbt.adapters.sqlflow.state.StateStore`; nothing is written.

Every failure is a :class:`PartitionsError` whose message is one line naming the thing
that is missing or wrong and the fix.
"""

from __future__ import annotations

import json
import os
from argparse import Namespace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt.adapters.sqlflow.config import partition_by_mapping
from dbt.adapters.sqlflow.partitions import PartitionInfo
from dbt.adapters.sqlflow.state import DEFAULT_SCHEMA, StateStore

if TYPE_CHECKING:
    from dbt.config.profile import Profile

SQLFLOW_MATERIALIZATION = "sqlflow_incremental"
LOAD_ID_CHARS = 12


class PartitionsError(Exception):
    """The partition table cannot be read; the message is one line with the fix."""


@dataclass(frozen=True)
class ModelTarget:
    """A partitioned sqlflow model as the manifest describes it.

    Attributes:
        unique_id: The model's unique_id (``model.<project>.<name>``).
        name: The model's name.
        relation: The rendered relation (``"db"."schema"."table"``), as sqlflow's state
            records it.
        partition_by: The model's ``partition_by`` config (``field``, ``granularity``).
    """

    unique_id: str
    name: str
    relation: str
    partition_by: Mapping[str, Any]


@dataclass(frozen=True)
class StateLocation:
    """Where sqlflow's state lives, from the profile.

    Attributes:
        path: The DuckDB file.
        state_schema: Schema of the state tables.
        target: The profile target used.
    """

    path: Path
    state_schema: str
    target: str


@dataclass(frozen=True)
class PartitionReport:
    """A model's recorded partitions, in time (or key) order."""

    model: ModelTarget
    location: StateLocation
    partitions: list[PartitionInfo]

    def summary(self) -> dict[str, Any]:
        """Figures over all the partitions.

        Returns:
            ``partition_count``, ``empty_partitions``, ``total_rows``,
            ``oldest_partition`` and ``newest_partition`` (first and last keys),
            ``newest_nonempty_partition``, ``last_load_id`` and ``last_loaded_at`` (the
            most recent load recorded on any partition, naive UTC).
        """
        parts = self.partitions
        nonempty = [p for p in parts if p.row_count > 0]
        loaded = [p for p in parts if p.last_loaded_at is not None]
        last = max(loaded, key=lambda p: p.last_loaded_at or datetime.min) if loaded else None
        return {
            "partition_count": len(parts),
            "empty_partitions": len(parts) - len(nonempty),
            "total_rows": sum(p.row_count for p in parts),
            "oldest_partition": parts[0].key if parts else None,
            "newest_partition": parts[-1].key if parts else None,
            "newest_nonempty_partition": nonempty[-1].key if nonempty else None,
            "last_load_id": last.last_load_id if last else None,
            "last_loaded_at": last.last_loaded_at if last else None,
        }

    def shown(self, last: int | None = None, non_empty: bool = False) -> list[PartitionInfo]:
        """The partitions to show: without empty ones if asked, then the last ``last``."""
        parts = [p for p in self.partitions if p.row_count > 0] if non_empty else self.partitions
        return parts[-last:] if last else list(parts)


# -- manifest ----------------------------------------------------------------------------


def _target_path(project_dir: Path) -> Path:
    """The project's target folder (``DBT_TARGET_PATH``, ``target-path`` or ``target``)."""
    configured: Any = os.environ.get("DBT_TARGET_PATH")
    if not configured:
        from dbt.config.project import load_raw_project
        from dbt_common.exceptions import DbtBaseException

        try:
            configured = load_raw_project(str(project_dir)).get("target-path")
        except DbtBaseException:
            configured = None
    return project_dir / str(configured or "target")


def find_model(manifest_path: Path, model: str) -> ModelTarget:
    """The partitioned sqlflow model named ``model`` (a name or a unique_id) in a manifest.

    Raises:
        PartitionsError: The manifest is missing or unreadable, no model (or several)
            has that name, or the model is not a partitioned sqlflow_incremental model.
    """
    node = _model_node(manifest_path, model)
    config = node.get("config") or {}
    unique_id = node["unique_id"]
    materialized = config.get("materialized")
    if materialized != SQLFLOW_MATERIALIZATION:
        raise PartitionsError(
            f"model '{unique_id}': materialized '{materialized}', not"
            f" '{SQLFLOW_MATERIALIZATION}', so sqlflow keeps no partitions for it. Fix: choose"
            " a sqlflow_incremental model with partition_by"
        )
    partition_by = partition_by_mapping(config.get("partition_by"))
    if partition_by is None or not partition_by["field"]:
        raise PartitionsError(
            f"model '{unique_id}': has no partition_by, so it has no partitions. Fix: set"
            " partition_by, e.g. {'field': 'event_ts', 'granularity': 'day'}, and run it"
        )
    relation = node.get("relation_name")
    if not relation:
        raise PartitionsError(
            f"model '{unique_id}': no relation_name in {manifest_path}. Fix: run `dbt parse`"
        )
    return ModelTarget(unique_id, node["name"], relation, dict(partition_by))


def _model_node(manifest_path: Path, model: str) -> dict[str, Any]:
    """The manifest's one model node named ``model`` (a name or a unique_id).

    Raises:
        PartitionsError: The manifest is missing or unreadable, or no model (or several)
            has that name.
    """
    if not manifest_path.is_file():
        raise PartitionsError(
            f"{manifest_path}: no manifest. Fix: run `dbt parse` (or `dbt run`) in the"
            " project first, or pass --project-dir"
        )
    try:
        nodes = json.loads(manifest_path.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PartitionsError(
            f"{manifest_path}: not a dbt manifest ({e}). Fix: run `dbt parse` to rewrite it"
        ) from e
    models = [n for n in nodes.values() if n.get("resource_type") == "model"]
    found = [n for n in models if model in (n.get("unique_id"), n.get("name"))]
    if not found:
        partitioned = sorted(
            n["name"]
            for n in models
            if (n.get("config") or {}).get("materialized") == SQLFLOW_MATERIALIZATION
            and (n.get("config") or {}).get("partition_by")
        )
        hint = f"; partitioned sqlflow models: {', '.join(partitioned)}" if partitioned else ""
        raise PartitionsError(
            f"model '{model}': not in {manifest_path}{hint}. Fix: pass a model name or"
            " unique_id of this project (run `dbt parse` if the model is new)"
        )
    if len(found) > 1:
        ids = ", ".join(sorted(n["unique_id"] for n in found))
        raise PartitionsError(
            f"model '{model}': several models have that name ({ids}). Fix: pass the unique_id"
        )
    return found[0]


# -- profile -----------------------------------------------------------------------------


def default_project_dir() -> Path:
    """dbt's default: the nearest folder from the current one up that has dbt_project.yml."""
    cwd = Path.cwd()
    return next((p for p in (cwd, *cwd.parents) if (p / "dbt_project.yml").exists()), cwd)


def default_profiles_dir() -> Path:
    """dbt's default: ``DBT_PROFILES_DIR``, else the current folder if it has profiles.yml,
    else ``~/.dbt``."""
    configured = os.environ.get("DBT_PROFILES_DIR")
    if configured:
        return Path(configured)
    cwd = Path.cwd()
    return cwd if (cwd / "profiles.yml").exists() else Path.home() / ".dbt"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(getattr(error, "msg", None) or error).split())
    prefix = "dbt encountered an error while trying to read your profiles.yml file."
    return text.removeprefix(prefix).strip()


def resolve_state_location(
    project_dir: Path, profiles_dir: Path, target: str | None
) -> StateLocation:
    """The DuckDB file and state schema of the project's profile, as dbt resolves them.

    dbt's own profile code renders the profile (``env_var()``, ``--target``) and builds
    the ``type: sqlflow`` credentials. A relative ``path`` is taken from the current
    folder, as dbt does, else from the project folder.

    Raises:
        PartitionsError: A missing dbt_project.yml or profiles.yml, a profile or target
            that does not exist or does not render, a target not of type sqlflow, or a
            database that is not a file.
    """
    profiles_file = profiles_dir / "profiles.yml"
    if not (project_dir / "dbt_project.yml").is_file():
        raise PartitionsError(
            f"{project_dir / 'dbt_project.yml'}: not found. Fix: pass --project-dir, the"
            " folder of the dbt project"
        )
    if not profiles_file.is_file():
        raise PartitionsError(
            f"{profiles_file}: not found. Fix: pass --profiles-dir, the folder holding"
            " profiles.yml (or set DBT_PROFILES_DIR)"
        )
    profile, profile_name = _load_profile(project_dir, profiles_dir, target)
    credentials = profile.credentials
    if credentials.type != "sqlflow":
        raise PartitionsError(
            f"{profiles_file}: target '{profile.target_name}' of profile '{profile_name}' is"
            f" type '{credentials.type}', not 'sqlflow'. Fix: pass --target with a sqlflow"
            " target"
        )
    raw_path = str(getattr(credentials, "path", "") or "")
    if not raw_path or raw_path == ":memory:" or raw_path.startswith(("md:", "motherduck:")):
        raise PartitionsError(
            f"{profiles_file}: target '{profile.target_name}' has path '{raw_path}', not a"
            " DuckDB file this command can open. Fix: point path at a DuckDB file"
        )
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        candidates = [Path.cwd() / path, project_dir / path]
        path = next((p for p in candidates if p.exists()), candidates[0])
    schema = getattr(credentials, "sqlflow_state_schema", None) or DEFAULT_SCHEMA
    return StateLocation(path=path, state_schema=schema, target=profile.target_name)


def _load_profile(project_dir: Path, profiles_dir: Path, target: str | None) -> tuple[Profile, str]:
    """The project's profile, rendered by dbt's own profile code, and its name.

    Raises:
        PartitionsError: The project names no profile, or dbt cannot read or render it.
    """
    from dbt.config.profile import Profile, read_profile
    from dbt.config.project import load_raw_project
    from dbt.config.renderer import ProfileRenderer
    from dbt.flags import get_flags, set_flags
    from dbt_common.context import set_invocation_context
    from dbt_common.exceptions import DbtBaseException

    # env_var() in profiles.yml reads the environment of dbt's invocation context, which
    # dbt's command line sets up at start: take the current environment, as dbt would.
    set_invocation_context(os.environ)
    renderer = ProfileRenderer({})
    # Profile() reads one global flag, which only dbt's own command line sets.
    flags = get_flags()
    if not hasattr(flags, "LOG_CACHE_EVENTS"):
        set_flags(Namespace(**vars(flags), LOG_CACHE_EVENTS=False))
    try:
        raw_project = load_raw_project(str(project_dir))
        profile_name = renderer.render_value(raw_project.get("profile"))
        if not profile_name:
            raise PartitionsError(
                f"{project_dir / 'dbt_project.yml'}: names no profile. Fix: add"
                " `profile: <name>` to it"
            )
        profile = Profile.from_raw_profiles(
            read_profile(str(profiles_dir)), profile_name, renderer, target_override=target
        )
    except DbtBaseException as e:
        raise PartitionsError(f"{profiles_dir / 'profiles.yml'}: {_one_line(e)}") from e
    finally:
        set_flags(flags)
    return profile, profile_name


# -- state -------------------------------------------------------------------------------


def read_partitions(location: StateLocation, model: ModelTarget) -> list[PartitionInfo]:
    """The model's recorded partitions, from the DuckDB file opened read-only.

    Raises:
        PartitionsError: The file is missing or locked by a running dbt, holds no
            sqlflow state, or no partitions of the model.
    """
    import duckdb

    path = location.path
    if not path.is_file():
        raise PartitionsError(
            f"{path}: database file not found. Fix: run `dbt run -s {model.name}` to create it,"
            " or check path in profiles.yml and the folder you run from"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        text = " ".join(str(e).split())
        if "lock" in text.lower():
            raise PartitionsError(
                f"{path}: locked by another process ({text}). Fix: wait for the running dbt"
                " command to finish, then try again"
            ) from e
        raise PartitionsError(f"{path}: cannot open read-only ({text})") from e
    try:
        schema = location.state_schema
        present = con.execute(
            "select count(*) from information_schema.tables"
            " where table_catalog = current_database() and table_schema = ?"
            " and table_name = 'partitions'",
            [schema],
        ).fetchone()
        if not present or not present[0]:
            raise PartitionsError(
                f"{path}: no sqlflow state (no table {schema}.partitions). Fix: run the model"
                f" first: dbt run -s {model.name}"
            )
        store = StateStore(lambda sql: con.execute(sql).fetchall(), schema=schema)
        partitions = store.partitions(model.relation)
    except duckdb.Error as e:
        raise PartitionsError(f"{path}: cannot read {location.state_schema}: {e}") from e
    finally:
        con.close()
    if not partitions:
        raise PartitionsError(
            f"model '{model.unique_id}': no partitions of {model.relation} recorded in {path}"
            f" ({location.state_schema}.partitions). Fix: run it first: dbt run -s"
            f" {model.name}"
        )
    return partitions


def load_report(
    model: str,
    project_dir: str | Path | None = None,
    profiles_dir: str | Path | None = None,
    target: str | None = None,
) -> PartitionReport:
    """Everything ``dbt-sqlflow partitions`` shows.

    Args:
        model: A model name or unique_id.
        project_dir: The dbt project (default: as dbt, the nearest folder with
            dbt_project.yml).
        profiles_dir: The folder of profiles.yml (default: as dbt).
        target: The profile target (default: the profile's).

    Raises:
        PartitionsError: With a one-line message naming what is wrong and the fix.
    """
    project = Path(project_dir) if project_dir else default_project_dir()
    profiles = Path(profiles_dir) if profiles_dir else default_profiles_dir()
    found = find_model(_target_path(project) / "manifest.json", model)
    location = resolve_state_location(project, profiles, target)
    return PartitionReport(found, location, read_partitions(location, found))


# -- output ------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def _describe(report: PartitionReport) -> str:
    part = report.model.partition_by
    granularity = part.get("granularity")
    kind = f"{granularity} partitions" if granularity else "value partitions"
    return f"{kind} on {part['field']}"


def summary_line(report: PartitionReport) -> str:
    """One line: partition count, rows, range of keys, newest partition with rows, last load."""
    s = report.summary()
    empty = f" ({s['empty_partitions']:,} empty)" if s["empty_partitions"] else ""
    return (
        f"{report.model.name}: {s['partition_count']:,} partitions{empty},"
        f" {s['total_rows']:,} rows, {s['oldest_partition']} .. {s['newest_partition']},"
        f" newest with rows {s['newest_nonempty_partition'] or '-'},"
        f" last load {_when(s['last_loaded_at'])} UTC"
    )


def format_table(report: PartitionReport, last: int | None = None, non_empty: bool = False) -> str:
    """The partition table as text: a title, a header, one line per partition, the summary."""
    headers = ("partition", "range start", "range end", "rows", "last load", "loaded at (UTC)")
    shown = report.shown(last, non_empty)
    lines: list[Sequence[str]] = [
        (
            p.key,
            _when(p.range_start),
            _when(p.range_end),
            f"{p.row_count:,}",
            (p.last_load_id or "-")[:LOAD_ID_CHARS],
            _when(p.last_loaded_at),
        )
        for p in shown
    ]
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(headers)]

    def render(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i == 3 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    total = len(report.partitions)
    selection = ""
    if len(shown) != total:
        which = "non-empty " if non_empty else ""
        selection = f"; the last {len(shown)} {which}of {total} partitions"
    title = (
        f"{report.model.relation} ({_describe(report)}; state in"
        f" {report.location.path.name}:{report.location.state_schema}{selection})"
    )
    body = [render(headers), render(["-" * w for w in widths]), *(render(r) for r in lines)]
    return "\n".join([title, *body, summary_line(report)]) + "\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def format_json(report: PartitionReport, last: int | None = None, non_empty: bool = False) -> str:
    """The partition table as JSON: model, relation, partition_by, partitions, summary."""
    summary = report.summary()
    summary["last_loaded_at"] = _iso(summary["last_loaded_at"])
    data = {
        "model": report.model.unique_id,
        "relation": report.model.relation,
        "partition_by": dict(report.model.partition_by),
        "database": str(report.location.path),
        "state_schema": report.location.state_schema,
        "partitions": [
            {
                "key": p.key,
                "range_start": _iso(p.range_start),
                "range_end": _iso(p.range_end),
                "rows": p.row_count,
                "min_value": p.min_value,
                "max_value": p.max_value,
                "last_load_id": p.last_load_id,
                "last_loaded_at": _iso(p.last_loaded_at),
            }
            for p in report.shown(last, non_empty)
        ],
        "summary": summary,
    }
    return json.dumps(data, indent=2) + "\n"
