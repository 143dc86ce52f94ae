# Helpline: `make run` serves on the embedded SQLite default, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PORT ?= 8000
WEB_CONCURRENCY ?= 1
HOST ?= 127.0.0.1

.PHONY: install run test lint format schema clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: install
	$(PY) -m repo seed-demo
	$(PY) -m gql.tokens --demo --url http://$(HOST):$(PORT)/graphql
	JWT_SECRET="$${JWT_SECRET:-$$(cat .helpline-dev-secret)}" \
	  $(VENV)/bin/uvicorn --factory gql.app:create_app --host $(HOST) --port $(PORT) \
	  --workers $(WEB_CONCURRENCY)

test: install lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check gql repo tests
	$(VENV)/bin/ruff format --check gql repo tests
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix gql repo tests
	$(VENV)/bin/ruff format gql repo tests

schema: install
	$(PY) -m gql.export_schema > schema/schema.graphql

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
