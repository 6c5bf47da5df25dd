"""The benchmarks' results: what ``micro.json`` and ``driver_vs_wrk.json`` hold, read once.

A run folder may hold, next to ``results.json``, the files of the two benchmarks
(``make reference`` writes both):

- ``micro.json``: pytest-benchmark's ``--benchmark-json`` output of ``benchmarks/test_micro.py``
  (the core against Flask and a bare werkzeug app, in one process), read as a
  :class:`MicroSuite`: per (group, framework) a :class:`MicroRow` of pytest-benchmark's
  statistics, with the core's targets (:data:`FULL_CALL_TARGET`, :data:`APP_CONTEXT_TARGET_S`).
- ``driver_vs_wrk.json`` (``benchmarks/driver_vs_wrk.py``, schema :data:`CALIBRATION_SCHEMA`),
  read as a :class:`Calibration`: per gunicorn mode a :class:`CalibrationRow`, wrk's and the load
  driver's throughput against the same pinned one-worker server.

The benchmarks write these files and own these facts; the report (:mod:`harness.report.bench`)
and the benchmarks' own summaries read them from here. A file that is not what this module
expects raises :class:`~harness.errors.ResultsError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import records
from harness.errors import ResultsError

__all__ = [
    "APP_CONTEXT_TARGET_S",
    "CALIBRATION_FILE",
    "CALIBRATION_SCHEMA",
    "DEFAULT_TARGET_RATIO",
    "FULL_CALL_TARGET",
    "MICRO_FILE",
    "Benchmarks",
    "Calibration",
    "CalibrationRow",
    "MicroRow",
    "MicroSuite",
    "calibration",
    "micro_suite",
    "read_benchmarks",
]

MICRO_FILE = "micro.json"
CALIBRATION_FILE = "driver_vs_wrk.json"
CALIBRATION_SCHEMA = "ctxbench.bench.driver_vs_wrk/1"
#: The core's full WSGI call must reach this multiple of Flask's throughput.
FULL_CALL_TARGET = 2.0
#: The core's app-context push+pop must take less than this (median, seconds).
APP_CONTEXT_TARGET_S = 1e-6
#: driver rps / wrk rps the load driver should reach against a Python server (the calibration
#: writes it into its file; a file that does not say is read with it).
DEFAULT_TARGET_RATIO = 0.9
# The suite's order: groups as in test_micro.py, then core, flask, werkzeug in each.
_ORDER = ("full-wsgi-call", "request-context", "app-context", "core", "flask", "werkzeug")


@dataclass(frozen=True)
class MicroRow:
    """One benchmark of the micro suite: a framework in a group (pytest-benchmark's stats).

    ``benchmarks/conftest.py`` collects them as the suite runs; :func:`micro_suite` reads them
    from ``micro.json``.
    """

    group: str
    framework: str
    median_s: float
    iqr_s: float
    rounds: int

    @property
    def spread(self) -> float:
        """Interquartile range / median: the robust spread of a micro benchmark."""
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0


@dataclass(frozen=True)
class MicroSuite:
    """``micro.json``: the rows in the suite's order, and where and when they were measured."""

    rows: tuple[MicroRow, ...]
    version: str  # pytest-benchmark's
    created: str
    python: str
    #: The commit measured, 12 hex digits, and whether it had uncommitted changes.
    commit: str
    dirty: bool


@dataclass(frozen=True)
class CalibrationRow:
    """One gunicorn mode: wrk and the driver against the same one-worker server."""

    mode: str
    wrk_rps: float
    driver_rps: float
    wrk_spread: float
    driver_spread: float
    driver_errors: float
    driver_leaks: float
    wrk_runs: tuple[float, ...]  # requests/s of each round
    driver_runs: tuple[float, ...]
    #: driver / wrk this row should reach: its own (the echo probe's rows), else the document's
    #: ``settings.target_ratio`` (0.9 against a Python server).
    target_ratio: float
    #: The driver's median CPU share, its checked responses per second per core, and that over
    #: wrk's own per-core rate (``None``: not recorded by older calibrations).
    driver_cpu: float | None = None
    driver_rps_per_core: float | None = None
    ratio_per_core: float | None = None

    @property
    def ratio(self) -> float:
        """driver rps / wrk rps (medians)."""
        return self.driver_rps / self.wrk_rps if self.wrk_rps > 0 else 0.0

    @property
    def spread(self) -> float:
        return max(self.wrk_spread, self.driver_spread)


@dataclass(frozen=True)
class Calibration:
    """``driver_vs_wrk.json``: a row per mode, and how the rounds were run."""

    rows: tuple[CalibrationRow, ...]
    created: str
    #: The document's settings as written (server and client cores, connections, rounds...).
    settings: Mapping[str, Any]
    #: The machine's load average (1, 5, 15 min) when the calibration started, if recorded.
    load_average: tuple[float, ...] | None
    target_ratio: float


@dataclass(frozen=True)
class Benchmarks:
    """What a run folder holds besides results.json (``None``: that file is not there)."""

    micro: MicroSuite | None = None
    calibration: Calibration | None = None


def read_benchmarks(run_dir: Path) -> Benchmarks:
    """Read and check ``micro.json`` and ``driver_vs_wrk.json`` in ``run_dir`` if they exist."""
    micro, cal = (_read_json(Path(run_dir) / name) for name in (MICRO_FILE, CALIBRATION_FILE))
    return Benchmarks(
        micro_suite(micro) if micro is not None else None,
        calibration(cal) if cal is not None else None,
    )


def micro_suite(doc: Any, source: str = MICRO_FILE) -> MicroSuite:
    """pytest-benchmark's JSON, its rows in the suite's order."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("benchmarks"), list):
        raise ResultsError(
            f"{source} is not pytest-benchmark JSON (no 'benchmarks' list). Write it with"
            " `pytest benchmarks/ --benchmark-only --benchmark-json PATH`."
        )
    rows = []
    for i, raw in enumerate(doc["benchmarks"]):
        bench, at = _mapping(raw), f"{source}: benchmarks[{i}].stats"
        framework = _mapping(bench.get("params")).get("framework") or bench.get("param") or "?"
        median, iqr, rounds = (
            _number(bench.get("stats"), k, at) for k in ("median", "iqr", "rounds")
        )
        rows.append(
            MicroRow(str(bench.get("group") or ""), str(framework), median, iqr, int(rounds))
        )
    rank = {name: i for i, name in enumerate(_ORDER)}
    rows.sort(key=lambda r: (rank.get(r.group, 9), r.group, rank.get(r.framework, 9)))
    commit = _mapping(doc.get("commit_info"))
    return MicroSuite(
        rows=tuple(rows),
        version=str(doc.get("version") or "?"),
        created=str(doc.get("datetime") or "at an unknown time"),
        python=str(_mapping(doc.get("machine_info")).get("python_version") or "?"),
        commit=str(commit.get("id") or "unknown")[:12],
        dirty=bool(commit.get("dirty")),
    )


def calibration(doc: Any, source: str = CALIBRATION_FILE) -> Calibration:
    """A ``ctxbench.bench.driver_vs_wrk/1`` document, one row per mode."""
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if schema != CALIBRATION_SCHEMA or not isinstance(doc.get("entries"), list):
        raise ResultsError(
            f"{source} has schema {schema!r}; this report reads {CALIBRATION_SCHEMA!r}. Write"
            " it with `python -m benchmarks.driver_vs_wrk --out PATH`."
        )
    settings = _mapping(doc.get("settings"))
    target = settings.get("target_ratio")
    target_ratio = float(target) if isinstance(target, int | float) else DEFAULT_TARGET_RATIO
    names = {f.name for f in dataclasses.fields(CalibrationRow)}
    rows = []
    for i, raw in enumerate(doc["entries"]):
        # An entry also holds what the report does not show (the server command, each run's
        # other counters): read the row's fields, each round by its requests/s.
        entry = {k: v for k, v in raw.items() if k in names} if isinstance(raw, Mapping) else raw
        if isinstance(raw, Mapping):
            if entry.get("target_ratio") is None:
                entry["target_ratio"] = target_ratio
            for k in ("wrk_runs", "driver_runs"):
                if isinstance(entry.get(k), list):
                    entry[k] = [r.get("rps") if isinstance(r, Mapping) else r for r in entry[k]]
        rows.append(records.from_json(CalibrationRow, entry, f"{source}: entries[{i}]"))
    load = _mapping(doc.get("machine")).get("load_average_at_start")
    return Calibration(
        rows=tuple(rows),
        created=str(doc.get("created") or "at an unknown time"),
        settings=settings,
        load_average=(
            tuple(map(float, load))
            if isinstance(load, list) and all(isinstance(v, int | float) for v in load)
            else None
        ),
        target_ratio=target_ratio,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{str(path)!r} is not valid JSON: {exc}") from None


def _number(raw: Any, name: str, where: str) -> float:
    value = raw.get(name) if isinstance(raw, Mapping) else None
    return records.from_json(float, value, f"{where}.{name}")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
