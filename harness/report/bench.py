"""The benchmarks' JSON a run folder may hold next to results.json, and their report sections.

- ``micro.json``: pytest-benchmark's ``--benchmark-json`` output of ``benchmarks/test_micro.py``
  (the core against Flask and a bare werkzeug app, in one process): per group, each row's median
  time per call, its spread (interquartile range / median, the robust spread of a micro
  benchmark), calls per second and its speed relative to Flask; then the core's targets.
- ``driver_vs_wrk.json`` (``benchmarks/driver_vs_wrk.py``): per gunicorn mode, wrk's and the
  load driver's median throughput against the same pinned one-worker server, their ratio
  against the target, and the spread.

Each file is read only when present; one that is not what the report expects raises
:class:`~harness.errors.ResultsError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import records
from harness.errors import ResultsError
from harness.report.text import fmt_pct, fmt_rps, fmt_runs, fmt_share, fmt_us, spread_cell
from harness.report.tree import Heading, Node, Note, Table, spread_warning, where
from harness.results import SPREAD_FORMULA, SPREAD_WARNING, MicroRow

if TYPE_CHECKING:
    from harness.report.sections import Context

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
class Benchmarks:
    """What a run folder holds besides results.json: the files' documents and their rows."""

    micro: Mapping[str, Any] | None = None
    micro_rows: tuple[MicroRow, ...] = ()
    calibration: Mapping[str, Any] | None = None
    calibration_rows: tuple[CalibrationRow, ...] = ()


def read_benchmarks(run_dir: Path) -> Benchmarks:
    """Read and check ``micro.json`` and ``driver_vs_wrk.json`` in ``run_dir`` if they exist."""
    micro, cal = (_read_json(Path(run_dir) / name) for name in (MICRO_FILE, CALIBRATION_FILE))
    rows = micro_rows(micro) if micro is not None else ()
    return Benchmarks(micro, rows, cal, calibration_rows(cal) if cal is not None else ())


def micro_rows(doc: Any, source: str = MICRO_FILE) -> tuple[MicroRow, ...]:
    """The rows of pytest-benchmark's JSON, in the suite's order."""
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
    return tuple(
        sorted(rows, key=lambda r: (rank.get(r.group, 9), r.group, rank.get(r.framework, 9)))
    )


def micro_tables(rows: Sequence[MicroRow]) -> list[Table]:
    """Per (group, framework): median, spread, rounds, calls/s, relative to Flask; then the
    core's targets that these rows can judge (also printed by the micro suite itself)."""
    by = {(r.group, r.framework): r for r in rows}
    headers = ("group", "framework", "median µs", "spread", "rounds", "calls/s", "vs Flask")
    cells = tuple(
        (
            *(r.group, r.framework, fmt_us(r.median_s), spread_cell(r.spread), f"{r.rounds:,}"),
            fmt_rps(1 / r.median_s) if r.median_s > 0 else "-",
            f"{flask.median_s / r.median_s:.2f}x" if flask and r.median_s > 0 else "-",
        )
        for r in rows
        for flask in [by.get((r.group, "flask"))]
    )
    tables = [Table(headers, cells, "llrrrrr", warn_rows=where(rows, _noisy))]
    targets: list[tuple[str, str, str]] = []  # (target, measured, "met" or "MISSED")
    core, flask = by.get(("full-wsgi-call", "core")), by.get(("full-wsgi-call", "flask"))
    if core and flask and core.median_s > 0:
        ratio = flask.median_s / core.median_s
        measured = f"{ratio:.2f}x ({fmt_us(core.median_s)} µs vs {fmt_us(flask.median_s)} µs)"
        target = f"core full WSGI call >= {FULL_CALL_TARGET:g}x Flask throughput"
        targets.append((target, measured, _met(ratio >= FULL_CALL_TARGET)))
    if app := by.get(("app-context", "core")):
        target = f"core app-context push+pop < {APP_CONTEXT_TARGET_S * 1e6:g} µs (median)"
        met = _met(app.median_s < APP_CONTEXT_TARGET_S)
        targets.append((target, f"{fmt_us(app.median_s)} µs", met))
    if targets:
        missed = where(targets, lambda t: t[2] == "MISSED")
        tables.append(Table(("target", "measured", "result"), tuple(targets), "lrl", missed))
    return tables


def micro_section(ctx: Context) -> list[Node]:
    doc, rows = ctx.bench.micro, ctx.bench.micro_rows
    if doc is None:
        return []
    commit = _mapping(doc.get("commit_info"))
    sha = str(commit.get("id") or "unknown")[:12] + (
        " (uncommitted changes)" * bool(commit.get("dirty"))
    )
    return [
        Heading("Micro benchmarks: core vs Flask vs werkzeug"),
        Note(
            f"From `{MICRO_FILE}`: pytest-benchmark {doc.get('version') or '?'},"
            f" run {doc.get('datetime') or 'at an unknown time'}, Python"
            f" {_mapping(doc.get('machine_info')).get('python_version') or '?'}, commit {sha}."
            " Every benchmark runs in one process; *median µs* is the median time per call over"
            " the rounds, *spread* the interquartile range / median, *vs Flask* Flask's median /"
            " this row's median (above 1.00x: faster than Flask). werkzeug has no contexts: its"
            " row is the floor (a bare Request/Response app, or a ContextVar set and reset)."
        ),
        *spread_warning(
            ", too large to trust the median",
            [(f"{r.group} {r.framework}", r.spread) for r in rows],
            "Close other programs, pin the process to one core (taskset -c 1 ...) or raise"
            " --benchmark-min-time, and rerun.",
        ),
        *micro_tables(rows),
    ]


def calibration_rows(doc: Any, source: str = CALIBRATION_FILE) -> tuple[CalibrationRow, ...]:
    """The rows of a ``ctxbench.bench.driver_vs_wrk/1`` document, one per mode."""
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if schema != CALIBRATION_SCHEMA or not isinstance(doc.get("entries"), list):
        raise ResultsError(
            f"{source} has schema {schema!r}; this report reads {CALIBRATION_SCHEMA!r}. Write"
            " it with `python -m benchmarks.driver_vs_wrk --out PATH`."
        )
    names = {f.name for f in dataclasses.fields(CalibrationRow)}
    rows = []
    for i, raw in enumerate(doc["entries"]):
        # An entry also holds what the report does not show (the server command, each run's
        # other counters): read the row's fields, each round by its requests/s.
        entry = {k: v for k, v in raw.items() if k in names} if isinstance(raw, Mapping) else raw
        if isinstance(raw, Mapping):
            if entry.get("target_ratio") is None:
                entry["target_ratio"] = target_ratio(doc)
            for k in ("wrk_runs", "driver_runs"):
                if isinstance(entry.get(k), list):
                    entry[k] = [r.get("rps") if isinstance(r, Mapping) else r for r in entry[k]]
        rows.append(records.from_json(CalibrationRow, entry, f"{source}: entries[{i}]"))
    return tuple(rows)


def target_ratio(doc: Mapping[str, Any]) -> float:
    target = _mapping(doc.get("settings")).get("target_ratio")
    return float(target) if isinstance(target, int | float) else DEFAULT_TARGET_RATIO


def calibration_table(rows: Sequence[CalibrationRow]) -> Table:
    """One row per mode: both medians, their ratio against the target, the runs and spread."""
    headers = (
        *("mode", "wrk rps", "driver rps", "driver / wrk", "target", "driver CPU", "per core"),
        *("per core / wrk", "spread", "wrk runs", "driver runs", "driver errors", "driver leaks"),
    )
    cells = tuple(
        (
            *(r.mode, fmt_rps(r.wrk_rps), fmt_rps(r.driver_rps), f"{r.ratio:.2f}"),
            f"{r.target_ratio:g} {_met(r.ratio >= r.target_ratio)}",
            fmt_share(r.driver_cpu),
            "-" if r.driver_rps_per_core is None else fmt_rps(r.driver_rps_per_core),
            fmt_share(r.ratio_per_core),
            f"{fmt_pct(r.wrk_spread)} / {fmt_pct(r.driver_spread)}" + " ⚠" * _noisy(r),
            *(fmt_runs(r.wrk_runs), fmt_runs(r.driver_runs)),
            *(f"{r.driver_errors:,.0f}", f"{r.driver_leaks:,.0f}"),
        )
        for r in rows
    )
    return Table(
        headers,
        cells,
        "lrrrlrrrrrrrr",
        bad_rows=where(rows, lambda r: r.driver_errors or r.driver_leaks),
        warn_rows=where(rows, lambda r: _noisy(r) or r.ratio < r.target_ratio),
        wrap=frozenset({9, 10}),
    )


def calibration_section(ctx: Context) -> list[Node]:
    doc, rows = ctx.bench.calibration, ctx.bench.calibration_rows
    if doc is None:
        return []
    s = _mapping(doc.get("settings"))
    load = _mapping(doc.get("machine")).get("load_average_at_start")
    load_text = " / ".join(f"{v:.2f}" for v in load) if isinstance(load, list) else "unknown"
    rounds = s.get("rounds")
    return [
        Heading("Load driver against wrk"),
        Note(
            f"From `{CALIBRATION_FILE}`, run {doc.get('created') or 'at an unknown time'}: one"
            f" gunicorn worker pinned to core {s.get('server_core', '?')}; wrk (one thread) and"
            f" the load driver ({s.get('driver_connections', 'keepalive')}) pinned to core"
            f" {s.get('client_core', '?')} take turns against it, {s.get('concurrency', '?')}"
            f" connections, {rounds} round{'' if rounds == 1 else 's'} of"
            f" {s.get('duration_s', '?')} s each. Load average (1 / 5 / 15 min) at the start:"
            f" {load_text}. *driver / wrk* is the ratio of the medians; the driver checks every"
            f" response, wrk does not. Target: {target_ratio(doc):g} against a Python server;"
            " against the echo probe (nginx answering valid probe responses from C: the"
            " driver's own ceiling) the row says its target. *driver CPU* is the driver's CPU"
            " time over wall time, *per core* its median rps over that share, and *per core /"
            " wrk* that figure over wrk's own (a ratio that holds on a busy machine, where both"
            " clients get only part of their core)."
        ),
        *spread_warning(" between rounds", [(r.mode, r.spread) for r in rows]),
        calibration_table(rows),
        Note(
            f"*spread* is wrk's / the driver's {SPREAD_FORMULA} over the rounds. Below the"
            " target the driver, not the server, may limit that mode's figures in this report:"
            " compare such modes with care."
        ),
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _noisy(row: MicroRow | CalibrationRow) -> bool:
    return row.spread > SPREAD_WARNING


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
