# lexflow: `make demo` (set up, build the demo model, explain it) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch from the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
DEMO_DB ?= sqlite:///mlflow.db
DEMO_MODEL := lexflow-demo-vae

.PHONY: setup demo test lint bench clean ui

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml plugins/lexflow-terse/setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps -e plugins/lexflow-terse
	touch $(STAMP)

demo: $(STAMP)
	MLFLOW_TRACKING_URI=$(DEMO_DB) $(PY) -m lexflow.demo register --name $(DEMO_MODEL)
	MLFLOW_TRACKING_URI=$(DEMO_DB) PATH="$(abspath $(VENV))/bin:$$PATH" \
		$(VENV)/bin/mlflow run . -P model_uri=models:/$(DEMO_MODEL)/latest \
		--env-manager local --experiment-name lexflow-demo
	MLFLOW_TRACKING_URI=$(DEMO_DB) $(PY) -m lexflow.demo where --name $(DEMO_MODEL)

test: $(STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check lexflow tests benchmarks plugins
	$(VENV)/bin/mypy lexflow

bench: $(STAMP)
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/demo_factors.py

ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(DEMO_DB) \
		--host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache
