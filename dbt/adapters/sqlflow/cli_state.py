"""What the ``dbt-sqlflow`` commands that read sqlflow's state share.

``partitions`` and ``intervals`` both find a model in ``target/manifest.json``, resolve
where the state lives and its schema (``sqlflow_state_schema``, default ``sqlflow_meta``)
from the profile, loaded with dbt's own profile code (so ``env_var()`` and ``--target``
work as in dbt), and read it through :class:`~dbt.adapters.sqlflow.state.StateStore`;
nothing is written. The state lives in the target database: a DuckDB file, opened
read-only, or a DuckLake (the target's ``database`` is an ``attach`` alias of a
``ducklake:`` path), attached read-only to an in-memory DuckDB with the profile's attach
options, after loading the ``ducklake`` extension (and ``postgres`` for a PostgreSQL
catalog).

Every failure is a :class:`StateCommandError` whose message is one line naming the thing
that is missing or wrong and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from argparse import Namespace
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt.adapters.sqlflow.sql import quote_identifier, sql_string
from dbt.adapters.sqlflow.state import DEFAULT_SCHEMA, StateStore

if TYPE_CHECKING:
    from dbt.config.profile import Profile

SQLFLOW_MATERIALIZATION = "sqlflow_incremental"


class StateCommandError(Exception):
    """sqlflow's state cannot be read; the message is one line with the fix."""


DUCKLAKE = "ducklake:"
POSTGRES_CATALOG = "ducklake:postgres:"

# A password in a libpq string (``password=...``) or a URL (``user:secret@host``).
_PASSWORDS = (
    re.compile(r"(password\s*=\s*)('[^']*'|[^\s\"']+)", re.IGNORECASE),
    re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)"),
)


def hide_password(path: str) -> str:
    """An attach path with its password (libpq ``password=``, URL ``user:pw@``) hidden."""
    path = _PASSWORDS[0].sub(r"\1***", path)
    return _PASSWORDS[1].sub(r"\1***\2", path)


@dataclass(frozen=True)
class LakeAttachment:
    """The DuckLake that a target's database is, as these commands attach it.

    Attributes:
        alias: The name it is attached as: the target's ``database``.
        path: The attach path (``ducklake:postgres:...``, ``ducklake:/x.ducklake``).
        attach_sql: Its ATTACH statement, READ_ONLY, with the profile's options.
        setup_sql: Statements run before the ATTACH (the profile's secrets, for a data
            path in object storage).
    """

    alias: str
    path: str
    attach_sql: str
    setup_sql: tuple[str, ...] = ()

    @property
    def extensions(self) -> tuple[str, ...]:
        """The DuckDB extensions the ATTACH needs."""
        if self.path.startswith(POSTGRES_CATALOG):
            return ("ducklake", "postgres")
        return ("ducklake",)

    @property
    def shown(self) -> str:
        """The lake for messages: its alias and its path, without a password."""
        return f"lake '{self.alias}' ({hide_password(self.path)})"


@dataclass(frozen=True)
class StateLocation:
    """Where sqlflow's state lives, from the profile.

    Attributes:
        path: The DuckDB file; None when the state is in a lake.
        state_schema: Schema of the state tables.
        target: The profile target used.
        lake: The DuckLake the target's database is; None for a DuckDB file.
    """

    path: Path | None
    state_schema: str
    target: str
    lake: LakeAttachment | None = None

    @property
    def source(self) -> str:
        """The database for messages and JSON: the file's path, or the lake."""
        return self.lake.shown if self.lake else str(self.path)

    @property
    def label(self) -> str:
        """The database in a title: the file's name, or the lake's alias."""
        if self.lake:
            return self.lake.alias
        return self.path.name if self.path else "-"


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
    """The database and state schema of the project's profile, as dbt resolves them.

    dbt's own profile code renders the profile (``env_var()``, ``--target``) and builds
    the ``type: sqlflow`` credentials. The database is a DuckLake when the target's
    ``database`` is one (see :func:`lake_attachment`), else the DuckDB file at ``path``:
    a relative one is taken from the current folder, as dbt does, else from the project
    folder.

    Raises:
        StateCommandError: A missing dbt_project.yml or profiles.yml, a profile or target
            that does not exist or does not render, a target not of type sqlflow, or a
            database that is neither a file nor a lake.
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
    schema = getattr(credentials, "sqlflow_state_schema", None) or DEFAULT_SCHEMA
    lake = lake_attachment(credentials)
    if lake is not None:
        return StateLocation(None, schema, profile.target_name, lake)
    raw_path = str(getattr(credentials, "path", "") or "")
    if not raw_path or raw_path == ":memory:" or raw_path.startswith(("md:", "motherduck:")):
        raise StateCommandError(
            f"{profiles_file}: target '{profile.target_name}' has path '{raw_path}', not a"
            " DuckDB file this command can open, and its database"
            f" '{getattr(credentials, 'database', '')}' is no DuckLake under attach. Fix:"
            " point path at a DuckDB file, or set database to the alias of an attached"
            " 'ducklake:' path"
        )
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        candidates = [Path.cwd() / path, project_dir / path]
        path = next((p for p in candidates if p.exists()), candidates[0])
    return StateLocation(path=path, state_schema=schema, target=profile.target_name)


def _is_lake(attachment: Any) -> bool:
    options = getattr(attachment, "options", None) or {}
    kind = getattr(attachment, "type", None) or options.get("type")
    return (
        bool(getattr(attachment, "is_ducklake", None))
        or str(attachment.path).lower().startswith(DUCKLAKE)
        or str(kind).lower() == "ducklake"
    )


def lake_attachment(credentials: Any) -> LakeAttachment | None:
    """The DuckLake the target's ``database`` is, or None when it is no lake.

    The lake is the ``attach`` entry whose alias is ``database`` (dbt-duckdb's DuckLake
    profile), or ``path`` itself when it is a ``ducklake:`` path. Its ATTACH is
    dbt-duckdb's own (``Attachment.to_sql``), made READ_ONLY; the profile's secrets come
    first, for a data path in object storage.
    """
    database = getattr(credentials, "database", None)
    secrets = tuple(credentials.secrets_sql()) if hasattr(credentials, "secrets_sql") else ()
    for attachment in getattr(credentials, "attach", None) or []:
        if attachment.alias != database or not _is_lake(attachment):
            continue
        options = {k: v for k, v in (attachment.options or {}).items() if k != "read_only"}
        read_only = dataclasses.replace(attachment, read_only=True, options=options or None)
        return LakeAttachment(database, str(attachment.path), read_only.to_sql(), secrets)
    path = str(getattr(credentials, "path", "") or "")
    if database and path.lower().startswith(DUCKLAKE):
        attach = f"attach {sql_string(path)} as {quote_identifier(database)} (read_only)"
        return LakeAttachment(database, path, attach, secrets)
    return None


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


def _open_file(path: Path, model_name: str) -> Any:
    """A read-only DuckDB connection to the file.

    Raises:
        StateCommandError: The file is missing, locked by a running dbt or unreadable.
    """
    import duckdb

    if not path.is_file():
        raise StateCommandError(
            f"{path}: database file not found. Fix: run `dbt run -s {model_name}` to create"
            " it, or check path in profiles.yml and the folder you run from"
        )
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        text = " ".join(str(e).split())
        if "lock" in text.lower():
            raise StateCommandError(
                f"{path}: locked by another process ({text}). Fix: wait for the running dbt"
                " command to finish, then try again"
            ) from e
        raise StateCommandError(f"{path}: cannot open read-only ({text})") from e


def open_lake(lake: LakeAttachment, target: str) -> Any:
    """An in-memory DuckDB connection with the lake attached read-only.

    Raises:
        StateCommandError: An extension cannot be loaded, or the lake cannot be attached
            (a wrong path, an unreachable catalog, a missing data path).
    """
    import duckdb

    con = duckdb.connect()
    try:
        for extension in lake.extensions:
            try:
                con.load_extension(extension)
            except duckdb.Error as e:
                text = " ".join(str(e).split())
                raise StateCommandError(
                    f"{lake.shown}: cannot load DuckDB's {extension} extension ({text})."
                    f" Fix: install it for DuckDB {duckdb.__version__} (`INSTALL {extension}`;"
                    " offline, the file the duckdb-extension package ships, see the README's"
                    " DuckLake section)"
                ) from e
        try:
            for sql in (*lake.setup_sql, lake.attach_sql):
                con.execute(sql)
        except duckdb.Error as e:
            text = hide_password(" ".join(str(e).split()))
            if "lock" in text.lower():
                # A DuckDB-file catalog is locked by the process writing the lake.
                raise StateCommandError(
                    f"{lake.shown}: its catalog is locked by another process ({text}). Fix:"
                    " wait for the running dbt command to finish, then try again"
                ) from e
            raise StateCommandError(
                f"{lake.shown}: cannot attach it read-only ({text}). Fix: check that attach"
                f" path and its options in profiles.yml (target '{target}'), and that its"
                " catalog and data path are reachable from here"
            ) from e
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def open_state(location: StateLocation, model_name: str, table: str) -> Iterator[StateStore]:
    """A :class:`StateStore` over the database opened read-only, closed on exit: the DuckDB
    file, or the lake attached to an in-memory DuckDB.

    Args:
        location: The database and state schema.
        model_name: The model's name, for the fixes in the errors.
        table: The state table the caller reads; its absence means no sqlflow state.

    Raises:
        StateCommandError: The file is missing or locked by a running dbt, the lake
            cannot be attached, it holds no sqlflow state, or a query of it fails.
    """
    import duckdb

    if location.lake is not None:
        con = open_lake(location.lake, location.target)
        database: str | None = location.lake.alias
    else:
        assert location.path is not None
        con = _open_file(location.path, model_name)
        database = None
    try:
        schema = location.state_schema
        present = con.execute(
            "select count(*) from information_schema.tables"
            " where table_catalog = coalesce(?, current_database()) and table_schema = ?"
            " and table_name = ?",
            [database, schema, table],
        ).fetchone()
        if not present or not present[0]:
            raise StateCommandError(
                f"{location.source}: no sqlflow state (no table {schema}.{table}). Fix: run"
                f" the model first: dbt run -s {model_name}"
            )
        yield StateStore(lambda sql: con.execute(sql).fetchall(), schema=schema, database=database)
    except duckdb.Error as e:
        raise StateCommandError(
            f"{location.source}: cannot read {location.state_schema}: {e}"
        ) from e
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
