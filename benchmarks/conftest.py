"""Micro-suite plumbing: collect each benchmark's stats, print them with the report's tables at
the end, and keep the ``--benchmark-json`` file small enough to commit.

pytest-benchmark prints one table per group (ratios to the fastest row). Under them this prints
the report's micro tables (:func:`harness.report.bench.micro_tables`): per group the median of
each framework, its spread (interquartile range / median: the standard deviation of a micro
benchmark is dominated by a few GC pauses and preemptions, so the robust IQR is the spread that
says whether the median can be trusted), the core against Flask, and the targets README.md sets.

pytest-benchmark writes the raw timing of every round into ``--benchmark-json`` (tens of
megabytes: the context benchmarks run for 100,000+ rounds). The report reads only the statistics
computed from them, so :func:`pytest_benchmark_update_json` drops ``stats.data`` and records
that it did under the ``ctxbench`` key; everything else is pytest-benchmark's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.benchdata import MicroRow
from harness.report.bench import micro_tables
from harness.report.tree import text_table
from harness.results import SPREAD_WARNING

_rows_key = pytest.StashKey[list[MicroRow]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_rows_key] = []


@pytest.fixture(autouse=True)
def _collect_benchmark_stats(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    bench = request.node.funcargs.get("benchmark")
    metadata = getattr(bench, "stats", None)
    if not metadata:  # skipped, disabled (--benchmark-disable) or failed before measuring
        return
    stats = metadata.stats
    callspec = getattr(request.node, "callspec", None)
    framework = callspec.params.get("framework", request.node.name) if callspec else "?"
    request.config.stash[_rows_key].append(
        MicroRow(metadata.group or "", framework, stats.median, stats.iqr, stats.rounds)
    )


@pytest.hookimpl(trylast=True)  # under pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_rows_key, [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("ctxbench micro: core vs Flask (vs Flask = Flask's median / this row's median)")
    for table in micro_tables(rows):
        for line in text_table(table):
            tr.write_line(line)
        tr.write_line("")
    if any(r.spread > SPREAD_WARNING for r in rows):
        tr.write_line(
            f"WARNING: a spread (IQR / median) above {SPREAD_WARNING:.0%} is too noisy to trust."
            " Close other programs, pin the process (taskset -c 1 ...) or raise"
            " --benchmark-min-time, and rerun."
        )


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    """Drop the per-round raw timings from each benchmark's stats (``--benchmark-json``)."""
    dropped = 0
    for bench in output_json.get("benchmarks", ()):
        stats = bench.get("stats")
        if isinstance(stats, dict) and stats.pop("data", None) is not None:
            dropped += 1
    output_json["ctxbench"] = {
        "raw_timings": "dropped by benchmarks/conftest.py; every statistic is kept",
        "benchmarks_trimmed": dropped,
    }
