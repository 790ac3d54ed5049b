# dbt-sqlflow: `make demo` and `make test` are the two commands a new machine needs.
PYTHON ?= python3
# The oldest Python dbt-sqlflow supports (requires-python in pyproject.toml says the same);
# when $(PYTHON) is older, .venv is made with the newest of these found on PATH.
MIN_PYTHON := 3.11
PYTHON_FALLBACKS := python3.13 python3.12 python3.11
PYTEST_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lake stack (tests/lake): DuckDB 1.5.5 with the DuckLake and PostgreSQL extensions from
# their registry packages (constraints-lake.txt), in a venv of its own.
LAKE_VENV := .venv-lake
LAKE_BIN := $(LAKE_VENV)/bin
LAKE_STAMP := $(LAKE_VENV)/.installed
# ROWS= sets the size of a bench: 10,000,000 for make bench, 1,000,000 for make bench-lake.
ROWS ?=

.PHONY: demo demo-lake test lint format unit functional lake lake-suite bench bench-lake faults faults-lake services clean

# Checks the interpreter before creating .venv, so an old python3 fails here in one line
# instead of in pip's dependency resolution (import-linter needs 3.11, for one).
$(BIN)/python:
	@py=; for c in '$(PYTHON)' $(PYTHON_FALLBACKS); do \
	  if "$$c" -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' \
	    >/dev/null 2>&1; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  found=$$('$(PYTHON)' -c 'import sys; print(sys.version.split()[0])' 2>/dev/null) \
	    && found="Python $$found" || found="not a working Python"; \
	  echo "make: PYTHON=$(PYTHON) is $$found and none of $(PYTHON_FALLBACKS) is on PATH, but dbt-sqlflow needs Python >= $(MIN_PYTHON). Fix: install Python $(MIN_PYTHON)+ or pass PYTHON=/path/to/python$(MIN_PYTHON)" >&2; \
	  exit 1; \
	fi; \
	echo "$$py -m venv $(VENV)"; "$$py" -m venv $(VENV)

SOURCES := $(shell find dbt -type f -not -path '*/__pycache__/*')

# A regular (not editable) install: dbt finds plugins, and `dbt --version` lists them,
# only under site-packages/dbt/adapters. Any change to the package reinstalls it.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt $(SOURCES)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt '.[dev,otel]'
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	touch $(STAMP)

$(LAKE_BIN)/python: $(BIN)/python
	$(BIN)/python -m venv $(LAKE_VENV)

$(LAKE_STAMP): $(LAKE_BIN)/python pyproject.toml constraints-lake.txt $(SOURCES)
	$(LAKE_BIN)/python -m pip install --quiet --upgrade pip
	$(LAKE_BIN)/python -m pip install --quiet -c constraints-lake.txt '.[dev]' \
	  duckdb-extension-ducklake duckdb-extension-postgres duckdb-extension-httpfs 'psycopg[binary]' \
	  'moto[s3]' flask flask-cors
	$(LAKE_BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	touch $(LAKE_STAMP)

demo: $(STAMP)
	cd integration_project && ../$(BIN)/python run_demo.py

# The demo with its marts on a DuckLake (PostgreSQL catalog when one can be started).
demo-lake: services $(LAKE_STAMP)
	cd integration_project && ../$(LAKE_BIN)/python run_lake_demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dbt/adapters/sqlflow
	$(BIN)/python .ci/lint_imports.py --no-cache --no-logo

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

services:
	bash .ci/services.sh

# Coverage of the installed package, which the tests import, over both suites: the main
# suite in .venv, then the lake suite on DuckDB 1.5.5 in .venv-lake with a PostgreSQL it
# starts itself (skipped, with the reason, where PostgreSQL cannot be installed); the two
# copies' data are combined ([tool.coverage.paths]) and the floor is fail_under in
# pyproject.toml.
test: lint services $(STAMP) $(LAKE_STAMP)
	rm -f .coverage .coverage.* coverage-*.data
	$(BIN)/pytest tests -q --ignore=tests/lake $(COV) $(PYTEST_ARGS)
	mv .coverage coverage-main.data
	$(MAKE) --no-print-directory lake-suite PYTEST_ARGS="$(COV) $(PYTEST_ARGS)"
	mv .coverage coverage-lake.data
	$(BIN)/coverage combine -q coverage-main.data coverage-lake.data
	$(BIN)/coverage report

COV := --cov=dbt.adapters.sqlflow --cov-report= --cov-fail-under=0

lake-suite: $(LAKE_STAMP)
	$(LAKE_BIN)/pytest tests/lake -q -o faulthandler_timeout=600 $(PYTEST_ARGS)

lake: services lake-suite

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

functional: $(STAMP)
	$(BIN)/pytest tests/functional -q

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py --rows $(or $(ROWS),10000000)

# The DuckLake scenarios (bench/bench_lake.py) on the lake stack, on a PostgreSQL catalog
# it starts itself (a DuckDB-file catalog where PostgreSQL cannot be started; it says which).
bench-lake: services $(LAKE_STAMP)
	$(LAKE_BIN)/python bench/bench_lake.py --rows $(or $(ROWS),1000000)

# The fault-injection suite: TRIALS seeded trials (kill -9, SIGTERM, a held lock, a
# write-write conflict, out of memory), each rerun as a scheduler would; the table goes to
# tests/faults/results.md. make test runs one trial of each kind.
TRIALS ?= 100
SEED ?= 1
faults: $(STAMP)
	$(BIN)/python tests/faults/runner.py --trials $(TRIALS) --seed $(SEED) --out tests/faults/results.md

# The same suite on DuckLakes with a PostgreSQL catalog (the lake stack, .venv-lake): a
# catalog restart, a conflicting lake writer, kill -9, SIGTERM; its section of results.md.
faults-lake: services $(LAKE_STAMP)
	$(LAKE_BIN)/python tests/faults/runner.py --lake --trials $(TRIALS) --seed $(SEED) --out tests/faults/results.md

clean:
	rm -rf $(VENV) $(LAKE_VENV) integration_project/target integration_project/*.duckdb
