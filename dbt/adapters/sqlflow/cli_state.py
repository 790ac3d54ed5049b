"""What the ``dbt-sqlflow`` commands that read sqlflow's state share.

``partitions`` and ``intervals`` both find a model in ``target/manifest.json``, resolve
the DuckDB file and the state schema (``sqlflow_state_schema``, default ``sqlflow_meta``)
from the profile, loaded with dbt's own profile code (so ``env_var()`` and ``--target``
work as in dbt), and open the database read-only through
:class:`~dbt.adapters.sqlflow.state.StateStore`; nothing is written.

Every failure is a :class:`StateCommandError` whose message is one line naming the thing
that is missing or wrong and the fix.
"""

from __future__ import annotations

import json
import os
from argparse import Namespace
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt.adapters.sqlflow.state import DEFAULT_SCHEMA, StateStore

if TYPE_CHECKING:
    from dbt.config.profile import Profile

SQLFLOW_MATERIALIZATION = "sqlflow_incremental"


class StateCommandError(Exception):
    """sqlflow's state cannot be read; the message is one line with the fix."""


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
class ModelKind:
    """Which models a command reads, for its errors.

    Attributes:
        adjective: How the models are called (``partitioned``, ``windowed``).
        keeps: What sqlflow keeps for them (``partitions``, ``intervals``).
        needs: The config key that makes a model one of them, for the fixes.
        matches: Whether a manifest node's config is one of them.
    """

    adjective: str
    keeps: str
    needs: str
    matches: Callable[[Mapping[str, Any]], bool]


def is_sqlflow(config: Mapping[str, Any]) -> bool:
    """Whether a node's config is that of a sqlflow_incremental model."""
    return config.get("materialized") == SQLFLOW_MATERIALIZATION


# -- manifest ----------------------------------------------------------------------------


def manifest_path(project_dir: Path) -> Path:
    """The project's manifest, in ``DBT_TARGET_PATH``, ``target-path`` or ``target``."""
    configured: Any = os.environ.get("DBT_TARGET_PATH")
    if not configured:
        from dbt.config.project import load_raw_project
        from dbt_common.exceptions import DbtBaseException

        try:
            configured = load_raw_project(str(project_dir)).get("target-path")
        except DbtBaseException:
            configured = None
    return project_dir / str(configured or "target") / "manifest.json"


def model_node(manifest: Path, model: str, kind: ModelKind) -> dict[str, Any]:
    """The manifest's one sqlflow_incremental model node named ``model`` (a name or a
    unique_id), with a ``relation_name``.

    Raises:
        StateCommandError: The manifest is missing or unreadable, no model (or several)
            has that name, it is not a sqlflow_incremental model, or it has no relation.
    """
    node = _named_node(manifest, model, kind)
    unique_id = node["unique_id"]
    materialized = (node.get("config") or {}).get("materialized")
    if materialized != SQLFLOW_MATERIALIZATION:
        raise StateCommandError(
            f"model '{unique_id}': materialized '{materialized}', not"
            f" '{SQLFLOW_MATERIALIZATION}', so sqlflow keeps no {kind.keeps} for it. Fix:"
            f" choose a sqlflow_incremental model with {kind.needs}"
        )
    if not node.get("relation_name"):
        raise StateCommandError(
            f"model '{unique_id}': no relation_name in {manifest}. Fix: run `dbt parse`"
        )
    return node


def manifest_nodes(manifest: Path) -> dict[str, Any]:
    """The manifest's nodes by unique_id.

    Raises:
        StateCommandError: The manifest is missing or unreadable.
    """
    if not manifest.is_file():
        raise StateCommandError(
            f"{manifest}: no manifest. Fix: run `dbt parse` (or `dbt run`) in the"
            " project first, or pass --project-dir"
        )
    try:
        return dict(json.loads(manifest.read_text())["nodes"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StateCommandError(
            f"{manifest}: not a dbt manifest ({e}). Fix: run `dbt parse` to rewrite it"
        ) from e


def _named_node(manifest: Path, model: str, kind: ModelKind) -> dict[str, Any]:
    """The manifest's one model node named ``model`` (a name or a unique_id).

    Raises:
        StateCommandError: The manifest is missing or unreadable, or no model (or
            several) has that name.
    """
    models = [n for n in manifest_nodes(manifest).values() if n.get("resource_type") == "model"]
    found = [n for n in models if model in (n.get("unique_id"), n.get("name"))]
    if not found:
        listed = sorted(n["name"] for n in models if kind.matches(n.get("config") or {}))
        hint = f"; {kind.adjective} sqlflow models: {', '.join(listed)}" if listed else ""
        raise StateCommandError(
            f"model '{model}': not in {manifest}{hint}. Fix: pass a model name or"
            " unique_id of this project (run `dbt parse` if the model is new)"
        )
    if len(found) > 1:
        ids = ", ".join(sorted(n["unique_id"] for n in found))
        raise StateCommandError(
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


def project_dirs(
    project_dir: str | Path | None, profiles_dir: str | Path | None
) -> tuple[Path, Path]:
    """The project folder and the profiles folder, given or as dbt finds them."""
    project = Path(project_dir) if project_dir else default_project_dir()
    profiles = Path(profiles_dir) if profiles_dir else default_profiles_dir()
    return project, profiles


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
        StateCommandError: A missing dbt_project.yml or profiles.yml, a profile or target
            that does not exist or does not render, a target not of type sqlflow, or a
            database that is not a file.
    """
    profiles_file = profiles_dir / "profiles.yml"
    if not (project_dir / "dbt_project.yml").is_file():
        raise StateCommandError(
            f"{project_dir / 'dbt_project.yml'}: not found. Fix: pass --project-dir, the"
            " folder of the dbt project"
        )
    if not profiles_file.is_file():
        raise StateCommandError(
            f"{profiles_file}: not found. Fix: pass --profiles-dir, the folder holding"
            " profiles.yml (or set DBT_PROFILES_DIR)"
        )
    profile, profile_name = load_profile(project_dir, profiles_dir, target)
    credentials = profile.credentials
    if credentials.type != "sqlflow":
        raise StateCommandError(
            f"{profiles_file}: target '{profile.target_name}' of profile '{profile_name}' is"
            f" type '{credentials.type}', not 'sqlflow'. Fix: pass --target with a sqlflow"
            " target"
        )
    raw_path = str(getattr(credentials, "path", "") or "")
    if not raw_path or raw_path == ":memory:" or raw_path.startswith(("md:", "motherduck:")):
        raise StateCommandError(
            f"{profiles_file}: target '{profile.target_name}' has path '{raw_path}', not a"
            " DuckDB file this command can open. Fix: point path at a DuckDB file"
        )
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        candidates = [Path.cwd() / path, project_dir / path]
        path = next((p for p in candidates if p.exists()), candidates[0])
    schema = getattr(credentials, "sqlflow_state_schema", None) or DEFAULT_SCHEMA
    return StateLocation(path=path, state_schema=schema, target=profile.target_name)


def load_profile(project_dir: Path, profiles_dir: Path, target: str | None) -> tuple[Profile, str]:
    """The project's profile, rendered by dbt's own profile code, and its name.

    Raises:
        StateCommandError: The project names no profile, or dbt cannot read or render it.
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
            raise StateCommandError(
                f"{project_dir / 'dbt_project.yml'}: names no profile. Fix: add"
                " `profile: <name>` to it"
            )
        profile = Profile.from_raw_profiles(
            read_profile(str(profiles_dir)), profile_name, renderer, target_override=target
        )
    except DbtBaseException as e:
        raise StateCommandError(f"{profiles_dir / 'profiles.yml'}: {_one_line(e)}") from e
    finally:
        set_flags(flags)
    return profile, profile_name


# -- state -------------------------------------------------------------------------------


@contextmanager
def open_state(location: StateLocation, model_name: str, table: str) -> Iterator[StateStore]:
    """A :class:`StateStore` over the DuckDB file opened read-only, closed on exit.

    Args:
        location: The file and state schema.
        model_name: The model's name, for the fixes in the errors.
        table: The state table the caller reads; its absence means no sqlflow state.

    Raises:
        StateCommandError: The file is missing or locked by a running dbt, holds no
            sqlflow state, or a query of it fails.
    """
    import duckdb

    path = location.path
    if not path.is_file():
        raise StateCommandError(
            f"{path}: database file not found. Fix: run `dbt run -s {model_name}` to create"
            " it, or check path in profiles.yml and the folder you run from"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        text = " ".join(str(e).split())
        if "lock" in text.lower():
            raise StateCommandError(
                f"{path}: locked by another process ({text}). Fix: wait for the running dbt"
                " command to finish, then try again"
            ) from e
        raise StateCommandError(f"{path}: cannot open read-only ({text})") from e
    try:
        schema = location.state_schema
        present = con.execute(
            "select count(*) from information_schema.tables"
            " where table_catalog = current_database() and table_schema = ?"
            " and table_name = ?",
            [schema, table],
        ).fetchone()
        if not present or not present[0]:
            raise StateCommandError(
                f"{path}: no sqlflow state (no table {schema}.{table}). Fix: run the model"
                f" first: dbt run -s {model_name}"
            )
        yield StateStore(lambda sql: con.execute(sql).fetchall(), schema=schema)
    except duckdb.Error as e:
        raise StateCommandError(f"{path}: cannot read {location.state_schema}: {e}") from e
    finally:
        con.close()


# -- output ------------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A naive UTC time for a table cell (to the second), ``-`` for None."""
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def iso(value: datetime | None) -> str | None:
    """A naive UTC time for JSON (ISO 8601), None for None."""
    return value.isoformat() if value is not None else None


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> list[str]:
    """Lines of a plain text table: the header, dashes, the rows; columns two spaces apart,
    those at the ``right`` indexes right-aligned, trailing spaces dropped."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def render(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [render(headers), render(["-" * w for w in widths]), *(render(r) for r in rows)]
