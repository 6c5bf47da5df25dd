# Every target creates .venv itself, so each works on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench reference need-wrk lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: every server mode, both connection patterns, a summary table and a report.
run: $(STAMP)
	$(BIN)/ctxbench run

# The whole test suite: lint, types, unit tests, in-process concurrency tests, live scenarios.
# pytest runs in two processes (pytest-xdist), a test file to each at a time (--dist loadfile):
# much of the suite waits on servers (start-up, stops, fault and soak windows) rather than
# computing, and a file's shared servers (scenarios/conftest.py) start once, in one process.
# Two, not one per core: the live checks' load must stay honest on CI's 2 cores. Not in
# pytest's addopts: `make bench` runs pytest-benchmark, which xdist disables, and a test run
# by hand needs no workers.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmark settings shared by `bench` and `reference`. The micro suite's JSON goes through
# benchmarks/conftest.py drops pytest-benchmark's raw per-round timings (tens of MB) from the JSON.
MICRO := $(BIN)/pytest benchmarks/ -p no:cacheprovider --benchmark-only
CALIBRATE := $(BIN)/python -m benchmarks.driver_vs_wrk
REFERENCE := results/reference

# All benchmarks: the micro suite (core vs Flask vs werkzeug) and the driver-vs-wrk calibration,
# into results/bench/ (ignored by git).
bench: $(STAMP) need-wrk
	mkdir -p results/bench
	$(MICRO) --benchmark-json results/bench/micro.json
	$(CALIBRATE) --out results/bench/driver_vs_wrk.json

# The committed reference report (about 14 minutes on 2 cores; run it on a quiet machine):
# the micro suite, the calibration, and the matrix with Flask alongside, longer and with more
# repeats than `make run`, all into results/reference/, whose report and charts are generated
# from those JSON files. Regenerate it only this way; commit the whole folder.
reference: $(STAMP) need-wrk
	rm -rf $(REFERENCE)
	mkdir -p $(REFERENCE)
	$(MICRO) --benchmark-warmup=on --benchmark-max-time=2 --benchmark-json $(REFERENCE)/micro.json
	$(CALIBRATE) --rounds 3 --duration 4 --out $(REFERENCE)/driver_vs_wrk.json
	$(BIN)/ctxbench run --compare-flask --run-dir $(REFERENCE) --duration 2.5 --repeats 5 --warmup 0.5

# The calibration measures the load driver against wrk: without wrk there is nothing to compare.
need-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "The driver-vs-wrk calibration needs wrk, which is not on PATH." >&2; \
		echo "Install it (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk)" >&2; \
		echo "and run make again." >&2; \
		exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info
