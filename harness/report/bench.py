"""The benchmark results a run folder may hold next to results.json, and their report tables.

Two optional files, each written by its own benchmark and read here only when present:

- ``micro.json``: pytest-benchmark's ``--benchmark-json`` output of ``benchmarks/test_micro.py``
  (the core against Flask and a bare werkzeug app, in one process). Per group, each row's median
  time per call, its spread (interquartile range / median, the robust spread of a micro
  benchmark), calls per second and its speed relative to Flask; then the targets: the core's
  full WSGI call at least 2x Flask's throughput, the core's app-context push+pop under 1 µs.
- ``driver_vs_wrk.json``: ``benchmarks/driver_vs_wrk.py`` (schema
  ``ctxbench.bench.driver_vs_wrk/1``): per gunicorn mode, wrk's and the load driver's median
  throughput against the same one-worker server, their ratio (target 0.9) and the spread.

Like the results document, these files are the only source: the tables are built from them,
deterministically, and a file that is not what the report expects raises
:class:`~harness.errors.ResultsError` (exit 2) naming the file and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ResultsError
from harness.report.summary import JITTER_ADVICE, spread_cell, spread_warning
from harness.report.tree import Heading, Node, Paragraph, Table, fmt_pct, fmt_rps, fmt_runs, fmt_us
from harness.results import SPREAD_FORMULA, SPREAD_WARNING

if TYPE_CHECKING:
    from harness.report.sections import Context

__all__ = [
    "APP_CONTEXT_TARGET_S",
    "CALIBRATION_FILE",
    "CALIBRATION_SCHEMA",
    "FULL_CALL_TARGET",
    "MICRO_FILE",
    "Benchmarks",
    "Calibration",
    "CalibrationRow",
    "Micro",
    "MicroRow",
    "calibration_section",
    "calibration_table",
    "load_calibration",
    "load_micro",
    "micro_section",
    "micro_table",
    "read_benchmarks",
]

MICRO_FILE = "micro.json"
CALIBRATION_FILE = "driver_vs_wrk.json"
CALIBRATION_SCHEMA = "ctxbench.bench.driver_vs_wrk/1"
#: The core's full WSGI call must reach this multiple of Flask's throughput.
FULL_CALL_TARGET = 2.0
#: The core's app-context push+pop must take less than this (median, seconds).
APP_CONTEXT_TARGET_S = 1e-6
#: driver rps / wrk rps the load driver should reach (used when the file does not say).
DEFAULT_TARGET_RATIO = 0.9

_CALIBRATION_NUMBERS = (
    *("wrk_rps", "driver_rps", "wrk_spread", "driver_spread", "driver_errors", "driver_leaks"),
)
_GROUP_ORDER = ("full-wsgi-call", "request-context", "app-context")
_FRAMEWORK_ORDER = ("core", "flask", "werkzeug")


# -- micro.json --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MicroRow:
    """One benchmark of the micro suite: a framework in a group."""

    group: str
    framework: str
    median_s: float
    iqr_s: float
    rounds: int

    @property
    def spread(self) -> float:
        """Interquartile range / median."""
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0


@dataclass(frozen=True)
class Micro:
    """A micro-suite run: what ran where, and its rows in (group, framework) order."""

    created: str
    version: str
    python: str
    commit: str
    dirty: bool
    rows: tuple[MicroRow, ...]

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))

    def row(self, group: str, framework: str) -> MicroRow | None:
        return next((r for r in self.rows if (r.group, r.framework) == (group, framework)), None)


def load_micro(doc: Any, source: str = MICRO_FILE) -> Micro:
    """Validate pytest-benchmark's JSON and return its typed view."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("benchmarks"), list):
        raise ResultsError(
            f"{source} is not pytest-benchmark JSON (no 'benchmarks' list). Write it with"
            " `pytest benchmarks/ --benchmark-only --benchmark-json PATH`."
        )
    rows = []
    for i, bench in enumerate(doc["benchmarks"]):
        where = f"{source}: benchmarks[{i}]"
        if not isinstance(bench, Mapping):
            raise ResultsError(f"{where} is a {type(bench).__name__}, not an object.")
        stats = bench.get("stats")
        if not isinstance(stats, Mapping):
            raise ResultsError(f"{where} has no 'stats' object.")
        params = bench.get("params")
        framework = params.get("framework") if isinstance(params, Mapping) else None
        rows.append(
            MicroRow(
                group=str(bench.get("group") or ""),
                framework=str(framework or bench.get("param") or bench.get("name", "?")),
                median_s=_number(stats, "median", where + ".stats"),
                iqr_s=_number(stats, "iqr", where + ".stats"),
                rounds=int(_number(stats, "rounds", where + ".stats")),
            )
        )
    # The suite's order: groups as in test_micro.py, then core, flask, werkzeug in each.
    group_rank = {name: i for i, name in enumerate(_GROUP_ORDER)}
    rank = {name: i for i, name in enumerate(_FRAMEWORK_ORDER)}
    rows.sort(
        key=lambda r: (
            group_rank.get(r.group, len(group_rank)),
            r.group,
            rank.get(r.framework, len(rank)),
            r.framework,
        )
    )
    machine = _mapping(doc.get("machine_info"))
    commit = _mapping(doc.get("commit_info"))
    return Micro(
        created=str(doc.get("datetime", "")),
        version=str(doc.get("version", "")),
        python=str(machine.get("python_version", "")),
        commit=str(commit.get("id") or "")[:12],
        dirty=bool(commit.get("dirty")),
        rows=tuple(rows),
    )


def micro_section(ctx: Context) -> list[Node]:
    """The micro suite side by side, then the core's targets this run can judge."""
    micro = ctx.bench.micro
    if micro is None:
        return []
    commit = micro.commit + (" (uncommitted changes)" if micro.dirty else "")
    return [
        Heading("Micro benchmarks: core vs Flask vs werkzeug"),
        Paragraph(
            f"From `{MICRO_FILE}`: pytest-benchmark {micro.version or '?'},"
            f" run {micro.created or 'at an unknown time'}, Python {micro.python or '?'},"
            f" commit {commit or 'unknown'}. Every benchmark runs in one process; *median µs* is"
            " the median time per call over the rounds, *spread* the interquartile range /"
            " median, *vs Flask* Flask's median / this row's median (above 1.00x: faster than"
            " Flask). werkzeug has no contexts: its row is the floor (a bare Request/Response"
            " app, or a ContextVar set and reset).",
            note=True,
        ),
        *spread_warning(
            ", too large to trust the median",
            [(f"{r.group} {r.framework}", r.spread) for r in micro.rows],
            "Close other programs, pin the process to one core (taskset -c 1 ...) or raise"
            " --benchmark-min-time, and rerun.",
        ),
        micro_table(micro),
        *_targets_table(micro),
    ]


def micro_table(micro: Micro) -> Table:
    """One row per (group, framework): median, spread, rounds, calls/s, relative to Flask."""
    headers = ("group", "framework", "median µs", "spread", "rounds", "calls/s", "vs Flask")
    rows: list[tuple[str, ...]] = []
    for r in micro.rows:
        flask = micro.row(r.group, "flask")
        versus = f"{flask.median_s / r.median_s:.2f}x" if flask and r.median_s > 0 else "-"
        calls = fmt_rps(1 / r.median_s) if r.median_s > 0 else "-"
        rows.append((r.group, r.framework, fmt_us(r.median_s), spread_cell(r.spread)))
        rows[-1] += (f"{r.rounds:,}", calls, versus)
    warn = frozenset(i for i, r in enumerate(micro.rows) if r.spread > SPREAD_WARNING)
    return Table(headers, tuple(rows), ("l", "l") + ("r",) * 5, warn_rows=warn)


def _targets_table(micro: Micro) -> list[Table]:
    # The core's targets that this run can judge (a group that did not run is left out).
    rows: list[tuple[str, str, bool]] = []
    core, flask = micro.row("full-wsgi-call", "core"), micro.row("full-wsgi-call", "flask")
    if core and flask and core.median_s > 0:
        ratio = flask.median_s / core.median_s
        rows.append(
            (
                f"core full WSGI call >= {FULL_CALL_TARGET:g}x Flask throughput",
                f"{ratio:.2f}x ({fmt_us(core.median_s)} µs vs {fmt_us(flask.median_s)} µs)",
                ratio >= FULL_CALL_TARGET,
            )
        )
    app = micro.row("app-context", "core")
    if app:
        rows.append(
            (
                f"core app-context push+pop < {APP_CONTEXT_TARGET_S * 1e6:g} µs (median)",
                f"{fmt_us(app.median_s)} µs",
                app.median_s < APP_CONTEXT_TARGET_S,
            )
        )
    cells = tuple((name, measured, "met" if met else "MISSED") for name, measured, met in rows)
    bad = frozenset(i for i, row in enumerate(rows) if not row[2])
    return [Table(("target", "measured", "result"), cells, ("l", "r", "l"), bad)] if rows else []


# -- driver_vs_wrk.json ------------------------------------------------------------------------


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
    wrk_runs: tuple[float, ...]
    driver_runs: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """driver rps / wrk rps (medians)."""
        return self.driver_rps / self.wrk_rps if self.wrk_rps > 0 else 0.0

    @property
    def spread(self) -> float:
        return max(self.wrk_spread, self.driver_spread)


@dataclass(frozen=True)
class Calibration:
    """A driver-vs-wrk calibration run."""

    created: str
    settings: Mapping[str, Any]
    load_average: tuple[float, ...]
    target_ratio: float
    rows: tuple[CalibrationRow, ...]


def load_calibration(doc: Any, source: str = CALIBRATION_FILE) -> Calibration:
    """Validate a ``ctxbench.bench.driver_vs_wrk/1`` document and return its typed view."""
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if schema != CALIBRATION_SCHEMA or not isinstance(doc.get("entries"), list):
        raise ResultsError(
            f"{source} has schema {schema!r}; this report reads {CALIBRATION_SCHEMA!r}. Write"
            " it with `python -m benchmarks.driver_vs_wrk --out PATH`."
        )
    settings = _mapping(doc.get("settings"))
    target = settings.get("target_ratio", DEFAULT_TARGET_RATIO)
    rows = []
    for i, raw in enumerate(doc["entries"]):
        where = f"{source}: entries[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("mode"), str):
            raise ResultsError(f"{where} is not an object with a 'mode' string.")
        n = {name: _number(raw, name, where) for name in _CALIBRATION_NUMBERS}
        rows.append(
            CalibrationRow(
                *(raw["mode"], n["wrk_rps"], n["driver_rps"], n["wrk_spread"]),
                *(n["driver_spread"], n["driver_errors"], n["driver_leaks"]),
                *(_runs(raw, "wrk_runs", where), _runs(raw, "driver_runs", where)),
            )
        )
    machine = _mapping(doc.get("machine"))
    load = machine.get("load_average_at_start")
    return Calibration(
        created=str(doc.get("created", "")),
        settings=settings,
        load_average=tuple(float(v) for v in load) if isinstance(load, list) else (),
        target_ratio=float(target) if isinstance(target, int | float) else DEFAULT_TARGET_RATIO,
        rows=tuple(rows),
    )


def calibration_section(ctx: Context) -> list[Node]:
    """wrk and the load driver against the same pinned one-worker server, per gunicorn mode."""
    cal = ctx.bench.calibration
    if cal is None:
        return []
    s = cal.settings
    load = " / ".join(f"{v:.2f}" for v in cal.load_average) or "unknown"
    rounds = s.get("rounds")
    return [
        Heading("Load driver against wrk"),
        Paragraph(
            f"From `{CALIBRATION_FILE}`, run {cal.created or 'at an unknown time'}: one gunicorn"
            f" worker pinned to core {s.get('server_core', '?')}; wrk (one thread) and the load"
            f" driver ({s.get('driver_connections', 'keepalive')}) pinned to core"
            f" {s.get('client_core', '?')} take turns against it, {s.get('concurrency', '?')}"
            f" connections, {rounds} round{'' if rounds == 1 else 's'} of"
            f" {s.get('duration_s', '?')} s each. Load average (1 / 5 / 15 min) at the start:"
            f" {load}. *driver / wrk* is the ratio of the medians; the driver checks every"
            f" response, wrk does not. Target: {cal.target_ratio:g}.",
            note=True,
        ),
        *spread_warning(" between rounds", [(r.mode, r.spread) for r in cal.rows], JITTER_ADVICE),
        calibration_table(cal),
        Paragraph(
            f"*spread* is wrk's / the driver's {SPREAD_FORMULA} over the rounds. Below the"
            " target the driver, not the server, may limit that mode's figures in this report:"
            " compare such modes with care.",
            note=True,
        ),
    ]


def calibration_table(cal: Calibration) -> Table:
    """One row per mode: both medians, their ratio against the target, the runs and spread."""
    headers = (
        *("mode", "wrk rps", "driver rps", "driver / wrk", f"target {cal.target_ratio:g}"),
        *("spread", "wrk runs", "driver runs", "driver errors", "driver leaks"),
    )
    rows = tuple(
        (
            *(r.mode, fmt_rps(r.wrk_rps), fmt_rps(r.driver_rps), f"{r.ratio:.2f}"),
            "met" if r.ratio >= cal.target_ratio else "MISSED",
            f"{fmt_pct(r.wrk_spread)} / {fmt_pct(r.driver_spread)}"
            + (" ⚠" if r.spread > SPREAD_WARNING else ""),
            *(fmt_runs(r.wrk_runs), fmt_runs(r.driver_runs)),
            *(f"{r.driver_errors:,.0f}", f"{r.driver_leaks:,.0f}"),
        )
        for r in cal.rows
    )
    return Table(
        headers,
        rows,
        ("l", "r", "r", "r", "l", "r", "r", "r", "r", "r"),
        bad_rows=frozenset(i for i, r in enumerate(cal.rows) if r.driver_errors or r.driver_leaks),
        warn_rows=frozenset(
            i
            for i, r in enumerate(cal.rows)
            if r.spread > SPREAD_WARNING or r.ratio < cal.target_ratio
        ),
        wrap=frozenset({6, 7}),
    )


# -- reading a run folder ----------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmarks:
    """What a run folder holds besides results.json; either part may be missing."""

    micro: Micro | None = None
    calibration: Calibration | None = None


def read_benchmarks(run_dir: Path) -> Benchmarks:
    """Read ``micro.json`` and ``driver_vs_wrk.json`` from ``run_dir`` when they exist."""
    micro_doc = _read_json(Path(run_dir) / MICRO_FILE)
    cal_doc = _read_json(Path(run_dir) / CALIBRATION_FILE)
    return Benchmarks(
        micro=None if micro_doc is None else load_micro(micro_doc),
        calibration=None if cal_doc is None else load_calibration(cal_doc),
    )


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{str(path)!r} is not valid JSON: {exc}") from None


def _runs(raw: Mapping[str, Any], name: str, where: str) -> tuple[float, ...]:
    runs = raw.get(name)
    if not isinstance(runs, list):
        raise ResultsError(f"{where}.{name} should be a list, got {runs!r}.")
    return tuple(_number(run, "rps", f"{where}.{name}[{i}]") for i, run in enumerate(runs))


def _number(raw: Any, name: str, where: str) -> float:
    value = raw.get(name) if isinstance(raw, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultsError(f"{where}.{name} should be a number, got {value!r}.")
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
