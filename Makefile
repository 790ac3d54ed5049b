# dbt-sqlflow: `make demo` and `make test` are the two commands a new machine needs.
PYTHON ?= python3
PYTEST_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROWS ?= 10000000

.PHONY: demo test lint format unit functional bench services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

SOURCES := $(shell find dbt -type f -not -path '*/__pycache__/*')

# A regular (not editable) install: dbt finds plugins, and `dbt --version` lists them,
# only under site-packages/dbt/adapters. Any change to the package reinstalls it.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt $(SOURCES)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	touch $(STAMP)

demo: $(STAMP)
	cd integration_project && ../$(BIN)/python run_demo.py

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

# Coverage of the installed package, which the tests import; the floor is fail_under in
# pyproject.toml.
test: lint services $(STAMP)
	$(BIN)/pytest tests -q --cov=dbt.adapters.sqlflow --cov-report=term $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

functional: $(STAMP)
	$(BIN)/pytest tests/functional -q

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py --rows $(ROWS)

clean:
	rm -rf $(VENV) integration_project/target integration_project/*.duckdb
