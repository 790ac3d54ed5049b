"""The real parts of the lake suite: DuckLake's extensions and a throwaway PostgreSQL.

The extensions come from the registry packages ``duckdb-extension-ducklake``,
``duckdb-extension-postgres`` and ``duckdb-extension-httpfs`` (constraints-lake.txt pins
them to the DuckDB they match).
``INSTALL ducklake`` would fetch from the network, so each shipped file is installed
from its path; the postgres file is installed as ``postgres_scanner``, the name DuckDB
autoloads it by.

PostgreSQL comes from Debian's packages (``.ci/services.sh`` installs them): a cluster on
a fresh data directory, listening on a unix socket in that directory only (no TCP),
started by the suite and stopped at its end. PostgreSQL refuses to run as root, so as
root the cluster runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = (
    ("duckdb_extension_ducklake", "ducklake"),
    ("duckdb_extension_postgres", "postgres_scanner"),
    ("duckdb_extension_httpfs", "httpfs"),
)
"""(Python package, extension name) of each extension the lake needs (httpfs: data files
in object storage, ``s3://``)."""


def shipped_extension(package: str) -> Path | None:
    """The extension file a ``duckdb-extension-*`` package ships for this DuckDB, or None."""
    import duckdb

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    found = sorted((folder / f"v{duckdb.__version__}").glob("*.duckdb_extension"))
    return found[0] if found else None


def missing_extensions() -> str | None:
    """Why the lake extensions cannot be installed here, or None when they can."""
    import duckdb

    for package, _ in EXTENSIONS:
        if shipped_extension(package) is None:
            return (
                f"the lake suite needs the package {package.replace('_', '-')} built for"
                f" DuckDB {duckdb.__version__} (it runs in .venv-lake: `make lake`)"
            )
    return None


def install_extensions() -> None:
    """Install DuckLake's extensions from the files the packages ship (no network).

    Already installed ones are left alone; the rest go to DuckDB's extension folder,
    where ``ATTACH 'ducklake:postgres:...'`` autoloads them.
    """
    import duckdb

    connection = duckdb.connect()
    try:
        installed = {
            row[0]
            for row in connection.execute(
                "select extension_name from duckdb_extensions() where installed"
            ).fetchall()
        }
        with tempfile.TemporaryDirectory(prefix="sqlflow-ext-") as tmp:
            for package, name in EXTENSIONS:
                if name in installed:
                    continue
                source = shipped_extension(package)
                assert source is not None, missing_extensions()
                # DuckDB names an extension installed from a file after the file.
                target = Path(tmp) / f"{name}.duckdb_extension"
                shutil.copyfile(source, target)
                connection.execute(f"install '{target}'")
    finally:
        connection.close()


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _server_user() -> pwd.struct_passwd | None:
    """The user the cluster runs as: ``postgres`` as root, else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def missing_postgres() -> str | None:
    """Why no PostgreSQL cluster can be started here, or None when one can."""
    if postgres_bindir() is None:
        return (
            "the lake suite needs PostgreSQL's server programs (Debian's postgresql package;"
            " `make services` installs it as root)"
        )
    if _server_user() is None:
        return "running as root, the lake suite needs the postgres user to run PostgreSQL"
    return None


@dataclass
class PostgresServer:
    """A PostgreSQL cluster on a throwaway data directory and a unix socket.

    Attributes:
        root: The folder holding the data directory, the socket and the log.
        bindir: PostgreSQL's server programs.
    """

    root: Path
    bindir: Path

    @property
    def socket_dir(self) -> str:
        """The folder of the cluster's unix socket (libpq's ``host``)."""
        return str(self.root)

    def _run(self, *args: str) -> None:
        user = _server_user()
        assert user is not None

        def become() -> None:
            if os.geteuid() == 0:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        completed = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            preexec_fn=become,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {completed.stdout}{completed.stderr}")

    @classmethod
    def start(cls) -> PostgresServer:
        """Create and start a cluster (trust auth, no fsync: a test cluster)."""
        bindir = postgres_bindir()
        user = _server_user()
        assert bindir is not None and user is not None
        # Not under pytest's tmp folder: that one is private to root, and the server
        # runs as postgres.
        root = Path(tempfile.mkdtemp(prefix="sqlflow-pg-"))
        os.chown(root, user.pw_uid, user.pw_gid)
        server = cls(root, bindir)
        data = str(root / "data")
        server._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "-N")
        options = (
            f"-k {root} -c listen_addresses='' -F -c max_connections=300 -c synchronous_commit=off"
        )
        server._run("pg_ctl", "-D", data, "-o", options, "-l", str(root / "log"), "-w", "start")
        return server

    def restart(self) -> None:
        """Restart the cluster (fast shutdown: open sessions are cut), as an upgrade or a
        failover would; returns once it accepts connections again."""
        data, log = str(self.root / "data"), str(self.root / "log")
        # -l: the new server's output to the log, not to the pipe _run reads to its end.
        self._run("pg_ctl", "-D", data, "-l", log, "-m", "fast", "-w", "restart")

    def create_database(self, name: str) -> None:
        """A new, empty database (a lake's catalog)."""
        self._run("createdb", "-h", self.socket_dir, "-U", "postgres", name)

    def psql(self, database: str, sql: str) -> str:
        """Run SQL with psql (as the server's user); its output, unaligned."""
        completed = subprocess.run(
            [
                shutil.which("psql") or str(self.bindir / "psql"),
                "-h",
                self.socket_dir,
                "-U",
                "postgres",
                "-d",
                database,
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return completed.stdout

    def dsn(self, database: str) -> str:
        """libpq's connection string of a database of this cluster."""
        return f"dbname={database} host={self.socket_dir} user=postgres"

    def stop(self) -> None:
        """Stop the cluster and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
