# Helpline: `make run` serves on the embedded SQLite default, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PORT ?= 8000
WEB_CONCURRENCY ?= 1
HOST ?= 127.0.0.1

.PHONY: install browser pgbouncer run test lint format schema bench bench-tools bench-realtime bench-soak bench-failover clean

install: $(INSTALLED)

# uv (pinned, bootstrapped into the venv with pip) installs the pinned set in seconds.
UV_VERSION := 0.13.8

$(INSTALLED): pyproject.toml playground/package-lock.json tests/clients/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	npm ci --prefix playground --no-audit --no-fund --ignore-scripts --loglevel=error
	npm ci --prefix tests/clients --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

run: install
	$(VENV)/bin/helpline demo seed
	$(PY) -m gql.ops.tokens --demo --url http://$(HOST):$(PORT)/graphql
	JWT_SECRET="$${JWT_SECRET:-$$(cat .helpline-dev-secret)}" \
	  $(VENV)/bin/helpline serve --host $(HOST) --port $(PORT) --workers $(WEB_CONCURRENCY)

# The playground's browser test drives Debian's Chromium (browser downloads fail here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "note: install Debian's chromium for the browser test (sudo apt-get install chromium)"; fi; }

# The pooling tests start Debian's PgBouncer themselves (the system service stays off).
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; \
	    systemctl disable --now pgbouncer >/dev/null 2>&1 || true; \
	  else echo "note: install Debian's pgbouncer for the pooling tests (sudo apt-get install pgbouncer)"; fi; }

# Compiled once here: where PYTHONDONTWRITEBYTECODE is set (this machine sets it) every server,
# command and worker the tests start would otherwise compile every module again (1 s each).
test: install browser pgbouncer lint
	$(PY) -m compileall -q gql repo tests bench >/dev/null
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check gql repo tests bench
	$(VENV)/bin/ruff format --check gql repo tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix gql repo tests bench
	$(VENV)/bin/ruff format gql repo tests bench

# Benchmarks need PostgreSQL (BENCH_DATABASE_URL names the server); results go to BENCHMARKS.md.
# Never part of `make test`: they take minutes and want a quiet machine.
bench: install bench-tools
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev,bench]'
	$(PY) -m bench.api
	$(PY) -m bench.ops
	$(PY) -m bench.browsers
	$(PY) -m bench.documents
	$(PY) -m bench.attack
	$(PY) -m bench.allowance
	for workload in hot send first; do \
	  $(PY) -m bench.front --workload $$workload && \
	  $(PY) -m bench.front --workload $$workload --postgres || exit 1; done

# wrk loads the HTTP servers; pgbench (PostgreSQL's client package) runs the SQL baselines.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
	  else echo "bench: install Debian's wrk (sudo apt-get install wrk)"; exit 1; fi; }
	@command -v pgbench >/dev/null 2>&1 || { echo "bench: pgbench is missing (postgresql-client)"; exit 1; }

# REALTIME_ARGS: e.g. --mode bend, --mode workers, --widgets 2000 --rate 150 (python -m bench.realtime -h)
bench-realtime: install
	$(PY) -m bench.realtime $(REALTIME_ARGS)

# The soak (issue #8): 5 minutes of mixed load (locust) with a database fault every 30 s, on a
# private PostgreSQL cluster it creates with Debian's pg_createcluster (port 5499) and drops at
# the end; the shared cluster is never touched. Needs root. SOAK_ARGS: e.g. --duration 60.
bench-soak: install
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev,bench]'
	$(PY) -m bench.soak $(SOAK_ARGS)

schema: install
	$(PY) -m gql.ops.export_schema > schema/schema.graphql

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# A primary lost under load (issue #19): pg_auto_failover (Debian's postgresql-15-auto-failover,
# installed here as root like PgBouncer) runs a monitor and two nodes as the postgres user on
# private ports; the bench makes and removes them. Minutes; never part of `make test`.
bench-failover: install
	@command -v pg_autoctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends postgresql-15-auto-failover >/dev/null; \
	  else echo "bench-failover: install Debian's postgresql-15-auto-failover (root)"; exit 1; fi; }
	$(PY) -m bench.failover
