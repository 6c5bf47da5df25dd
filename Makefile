# Every target creates .venv itself, so each works on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench reference lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: every server mode, both connection patterns, a summary table and a report.
run: $(STAMP)
	$(BIN)/ctxbench run

# The whole test suite: lint, types, unit tests, in-process concurrency tests, live scenarios.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# All benchmarks: the micro suite (core vs Flask vs werkzeug) and the driver-vs-wrk calibration.
bench: $(STAMP)
	$(BIN)/pytest benchmarks/ -p no:cacheprovider --benchmark-only --benchmark-json results/bench/micro.json
	$(BIN)/python -m benchmarks.driver_vs_wrk --out results/bench/driver_vs_wrk.json

clean:
	rm -rf $(VENV) build *.egg-info
