"""pytest plugin: keep the micro suite's ``--benchmark-json`` file small enough to commit.

pytest-benchmark writes the raw timing of every round into ``--benchmark-json`` (tens of
megabytes for the micro suite, whose context benchmarks run for 100,000+ rounds). The report
reads only the statistics pytest-benchmark computed from them (median, quartiles, rounds), so
this plugin drops ``stats.data`` and records that it did under the ``ctxbench`` key. Everything
else (``machine_info``, ``commit_info``, options, every statistic) is pytest-benchmark's own.

Use::

    pytest benchmarks/ --benchmark-only -p harness.report.micro_json --benchmark-json micro.json

``make bench`` and ``make reference`` do. Without the plugin the file is still valid input for
the report, only large.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_benchmark_update_json"]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    """Drop the per-round raw timings from each benchmark's stats."""
    dropped = 0
    for bench in output_json.get("benchmarks", ()):
        stats = bench.get("stats")
        if isinstance(stats, dict) and stats.pop("data", None) is not None:
            dropped += 1
    output_json["ctxbench"] = {
        "raw_timings": "dropped by harness.report.micro_json; every statistic is kept",
        "benchmarks_trimmed": dropped,
    }
