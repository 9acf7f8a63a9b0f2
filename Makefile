# The two promises of the README: `make demo` and `make test`, each doing its own setup.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
# The oldest Airflow line we support; CI tests it beside the newest.
AIRFLOW_OLDEST ?= 3.1.8
# `lowest-direct` installs the oldest release each of our own dependency floors allows (test-oldest).
RESOLUTION ?= highest
# Extra pins for one Airflow line (see the file named by test-oldest).
CONSTRAINTS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)-$(RESOLUTION)

.PHONY: venv demo ui browser services test test-oldest test-compat test-all lint format bench dist clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	# uv resolves Airflow's large dependency tree in seconds; --compile-bytecode keeps the
	# `airflow` CLI fast on machines that set PYTHONDONTWRITEBYTECODE.
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip install -q --compile-bytecode --resolution $(RESOLUTION) \
		$(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e ".[dev]" "apache-airflow==$(AIRFLOW_VERSION)"
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip freeze > $(VENV)/installed.txt
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The Airflow UI with the example DAGs and connections to the emulator; Ctrl-C stops it.
ui: $(STAMP)
	$(BIN)/python scripts/ui.py

# Debian's Chromium for the UI test (tests/ui), installed once; CI runs this before the tests.
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Debian's PostgreSQL and Redis for the CeleryExecutor test (tests/deployment), installed once; the
# test starts its own servers on loopback in temp dirs. CI runs this before the tests.
services:
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null; } || { \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql redis-server; }

# Each venv keeps its own mypy cache: CI checks the two Airflow lines at the same time.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --cache-dir $(VENV)/.mypy_cache

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The oldest Airflow line with the lowest versions our own floors allow (uv's lowest-direct resolution,
# plus the pins in .ci/constraints-oldest.txt): proves the floors in pyproject.toml, which are the versions
# this run installs (.venv-oldest/installed.txt; scripts/check_floors.py fails when one is not). Type-check against that Airflow, and run only the tests
# marked `compat` (those whose outcome can change with Airflow's or an SDK's version; tests/conftest.py
# marks them, tests/README.md says how). The pure core and the emulator ran on the newest line already.
# Ruff's checks do not depend on Airflow. The deployment tests (CeleryExecutor, S3 work dir: ~5 minutes)
# run on the newest line only.
test-oldest:
	$(MAKE) test-compat VENV=.venv-oldest AIRFLOW_VERSION=$(AIRFLOW_OLDEST) RESOLUTION=lowest-direct \
		CONSTRAINTS=.ci/constraints-oldest.txt

test-compat: $(STAMP)
	$(if $(filter lowest-direct,$(RESOLUTION)),$(BIN)/python scripts/check_floors.py)
	$(BIN)/mypy --cache-dir $(VENV)/.mypy_cache
	$(BIN)/pytest -m "compat and not deployment" -o cache_dir=$(VENV)/.pytest_cache $(PYTEST_ARGS)

test-all: test test-oldest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

# The wheel and sdist a release uploads, in dist/, checked the way PyPI renders them.
dist: $(STAMP)
	rm -rf dist
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip install -q build twine
	$(BIN)/python -m build --installer uv
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf .venv .venv-oldest dist .demo .ui .pytest_cache .mypy_cache .ruff_cache
