"""Micro-suite plumbing: collect each benchmark's stats and print core-vs-Flask ratios at the end.

pytest-benchmark prints one table per group (ratios to the fastest row). This adds a short
summary under them: per group the median of each framework, the core's throughput relative to
Flask's (Flask median / core median), whether the targets in README.md are met, and a warning
when a row's spread is too large to trust: interquartile range above 10% of the median. (The
standard deviation of a micro benchmark is dominated by a few GC pauses and preemptions, so the
robust IQR is the spread that says whether the median can be trusted.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.report.bench import MicroRow

SPREAD_WARNING = 0.10

#: group -> the target for the core in that group (README.md says why)
TARGETS: dict[str, str] = {
    "full-wsgi-call": "core throughput >= 2x Flask",
    "app-context": "core push+pop < 1 µs (median)",
}


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


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:8.2f} µs"


def _target_verdict(group: str, rows: dict[str, MicroRow]) -> str | None:
    core, flask = rows.get("core"), rows.get("flask")
    if group == "full-wsgi-call" and core and flask:
        met = flask.median_s / core.median_s >= 2.0
    elif group == "app-context" and core:
        met = core.median_s < 1e-6
    else:
        return None
    return f"target {TARGETS[group]}: {'met' if met else 'MISSED'}"


@pytest.hookimpl(trylast=True)  # under pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    all_rows = config.stash.get(_rows_key, [])
    if not all_rows:
        return
    groups: dict[str, dict[str, MicroRow]] = {}
    for row in all_rows:
        groups.setdefault(row.group, {})[row.framework] = row

    tr = terminalreporter
    tr.section("ctxbench micro: core vs Flask (medians; ratio = Flask time / core time)")
    for group, rows in groups.items():
        cells = "  ".join(f"{name} {_us(row.median_s)}" for name, row in sorted(rows.items()))
        core, flask = rows.get("core"), rows.get("flask")
        ratio = ""
        if core and flask:
            ratio = f"core/Flask throughput {flask.median_s / core.median_s:5.2f}x"
        tr.write_line(f"{group:<16} {cells}  {ratio}")
        verdict = _target_verdict(group, rows)
        if verdict:
            tr.write_line(f"{'':<16} {verdict}")
        for name, row in sorted(rows.items()):
            if row.spread > SPREAD_WARNING:
                tr.write_line(
                    f"{'':<16} WARNING: {name}: IQR is {row.spread:.0%} of the median over"
                    f" {row.rounds} rounds, too noisy to trust. Close other programs, pin the"
                    " process (taskset -c 1 ...) or raise --benchmark-min-time, and rerun."
                )
