"""One Python requirement everywhere: README, pyproject.toml (package, ruff, mypy), Makefile.

The Makefile's check runs on a copy of it in a temp folder, with a PATH holding only the
fake interpreters each case needs, so the machine's own pythons do not decide the outcome.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
NEEDED = (
    "none of python3.13 python3.12 python3.11 is on PATH, but dbt-sqlflow needs Python >= 3.11."
    " Fix: install Python 3.11+ or pass PYTHON=/path/to/python3.11"
)


def readme_version() -> str:
    found = re.search(r"Needs Python (\d+\.\d+) or newer", (ROOT / "README.md").read_text())
    assert found, "README.md states no 'Needs Python X.Y or newer'"
    return found.group(1)


def test_one_python_requirement() -> None:
    version = readme_version()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{version.replace('.', '')}"
    assert pyproject["tool"]["mypy"]["python_version"] == version
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^MIN_PYTHON := (\S+)$", makefile, re.M)[1] == version  # type: ignore[index]


def fake_python(folder: Path, name: str, version: str | None) -> None:
    """An executable ``name`` that reports ``version`` (None: not a Python) and logs its
    ``-m venv`` call to ``venv.log`` instead of creating one."""
    script = folder / "bin" / name
    if version is None:
        script.write_text("#!/bin/sh\nexit 1\n")
    else:
        ok = tuple(int(p) for p in version.split(".")[:2]) >= (3, 11)
        script.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = -m ]; then echo "{name} $*" > "{folder}/venv.log"; exit 0; fi\n'
            f'case "$2" in *print*) echo {version}; exit 0;; esac\n'
            f"exit {0 if ok else 1}\n"
        )
    script.chmod(0o755)


def make_venv(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``make [ARGS] .venv/bin/python`` in a copy of the Makefile, PATH = folder/bin only."""
    assert MAKE is not None
    (folder / "bin").mkdir(exist_ok=True)
    (folder / "dbt").mkdir(exist_ok=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    find = shutil.which("find")
    if find and not (folder / "bin" / "find").exists():
        (folder / "bin" / "find").symlink_to(find)
    return subprocess.run(
        [MAKE, "-s", *args, ".venv/bin/python"],
        cwd=folder,
        env={"PATH": str(folder / "bin")},
        capture_output=True,
        text=True,
        check=False,
    )


needs_make = pytest.mark.skipif(MAKE is None or sys.platform == "win32", reason="needs make")


@needs_make
def test_makefile_refuses_a_non_python(tmp_path: Path) -> None:
    done = make_venv(tmp_path, "PYTHON=/bin/false")
    assert done.returncode != 0
    assert f"make: PYTHON=/bin/false is not a working Python and {NEEDED}\n" in done.stderr
    assert not (tmp_path / "venv.log").exists()


@needs_make
def test_makefile_refuses_an_old_python(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    fake_python(tmp_path, "python3", "3.10.12")
    done = make_venv(tmp_path)
    assert done.returncode != 0
    assert f"make: PYTHON=python3 is Python 3.10.12 and {NEEDED}\n" in done.stderr


@needs_make
def test_makefile_falls_back_to_a_newer_python(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    fake_python(tmp_path, "python3", "3.10.12")
    fake_python(tmp_path, "python3.13", None)
    fake_python(tmp_path, "python3.12", "3.12.3")
    fake_python(tmp_path, "python3.11", "3.11.9")
    done = make_venv(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "python3.12 -m venv .venv\n"
    assert (tmp_path / "venv.log").read_text() == "python3.12 -m venv .venv\n"


@needs_make
def test_makefile_takes_a_new_enough_python(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    fake_python(tmp_path, "python3", "3.11.7")
    done = make_venv(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "venv.log").read_text() == "python3 -m venv .venv\n"
