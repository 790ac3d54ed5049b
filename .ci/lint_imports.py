"""Runs import-linter's `lint-imports` on this repo's source tree, not on the installed copy.

dbt-core, dbt-adapters and dbt-duckdb ship `dbt/__init__.py` and `dbt/adapters/__init__.py`
(pkgutil-style namespace packages, `extend_path`). Two things follow for `lint-imports`:
grimp, which builds its import graph, accepts a root package inside a namespace only when the
parents have no `__init__.py`, and stops with `NotATopLevelModule` on `dbt.adapters.sqlflow`;
and with the repo root on `sys.path` `dbt.adapters.sqlflow` would still resolve to the installed
copy, because `extend_path` puts site-packages first.

So `dbt` and `dbt.adapters` are registered here as namespace packages over this repo's `dbt/`
before import-linter starts: `dbt.adapters.sqlflow` is the code in git, and other dbt packages
(`dbt.adapters.duckdb`, `dbt.adapters.base`, `dbt.config`) become external modules of the graph.
Arguments are passed on to `lint-imports`; the contracts are in pyproject.toml.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _namespace_over_source(name: str, path: Path) -> None:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(path)]
    sys.modules[name] = importlib.util.module_from_spec(spec)


def main() -> None:
    os.chdir(ROOT)
    _namespace_over_source("dbt", ROOT / "dbt")
    _namespace_over_source("dbt.adapters", ROOT / "dbt" / "adapters")
    spec = importlib.util.find_spec("dbt.adapters.sqlflow")
    origin = Path(spec.origin) if spec and spec.origin else None
    if origin is None or not origin.is_relative_to(ROOT):
        sys.exit(f"lint_imports: dbt.adapters.sqlflow resolved to {origin}, expected under {ROOT}")

    from importlinter.cli import lint_imports_command

    lint_imports_command()


if __name__ == "__main__":
    main()
