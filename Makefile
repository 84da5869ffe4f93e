# lexflow: `make demo` (set up, build the demo model, explain it) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch from the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
DEMO_DB ?= sqlite:///mlflow.db
DEMO_MODEL := lexflow-demo-vae

.PHONY: setup demo test lint bench clean ui browser postgres bench-large
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml plugins/lexflow-terse/setup.cfg plugins/lexflow-mlflow/setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps -e plugins/lexflow-terse
	$(PY) -m pip install -q --no-deps -e plugins/lexflow-mlflow
	touch $(STAMP)

demo: $(STAMP)
	MLFLOW_TRACKING_URI=$(DEMO_DB) $(PY) -m lexflow.demo register --name $(DEMO_MODEL)
	MLFLOW_TRACKING_URI=$(DEMO_DB) PATH="$(abspath $(VENV))/bin:$$PATH" \
		$(VENV)/bin/mlflow run . -P model_uri=models:/$(DEMO_MODEL)/latest \
		--env-manager local --experiment-name lexflow-demo
	MLFLOW_TRACKING_URI=$(DEMO_DB) $(PY) -m lexflow.demo where --name $(DEMO_MODEL)

# Headless Chromium + chromedriver for tests/test_browser.py (Debian packages; CI runs as root).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

test: $(STAMP) postgres browser
	$(PY) -m pytest -q -ra

# PostgreSQL server binaries for the backend tests (tests/backends.py runs its own throwaway
# cluster with initdb/pg_ctl on 127.0.0.1). Installs Debian's postgresql only when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && \
		  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		  postgresql; }

lint: $(STAMP)
	$(VENV)/bin/ruff check lexflow tests benchmarks plugins
	$(VENV)/bin/mypy lexflow

# Every benchmark whose figures the README or docs/ quote, written into their generated blocks
# (benchmarks/run_all.py); one that fails leaves its blocks as they were and fails the target.
# `make bench ONLY=decode,quality` runs a subset. The quality suite trains and caches the seed 1
# and 2 VAEs of each family the first time (minutes each on 2 CPU cores).
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(if $(ONLY),--only $(ONLY))

bench-large: $(STAMP)
	$(PY) benchmarks/large_latents.py

ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(DEMO_DB) \
		--host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache
