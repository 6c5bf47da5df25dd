"""The report's sections on the benchmarks' files beside results.json (:mod:`harness.benchdata`):
the micro suite's (:func:`micro_tables`; its spread is the interquartile range / median, the
robust spread of a micro benchmark) and the load driver's against wrk (:func:`calibration_table`),
each there only when its file is.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.benchdata import (
    APP_CONTEXT_TARGET_S,
    CALIBRATION_FILE,
    FULL_CALL_TARGET,
    MICRO_FILE,
    CalibrationRow,
    MicroRow,
)
from harness.report.summary import Context
from harness.report.text import (
    fmt_rps,
    fmt_runs,
    fmt_share,
    fmt_spread,
    fmt_us,
    spread_cell,
)
from harness.report.tree import Heading, Node, Note, Table, spread_warning, where
from harness.results import SPREAD_FORMULA, SPREAD_WARNING


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
    suite = ctx.bench.micro
    if suite is None:
        return []
    return [
        Heading("Micro benchmarks: core vs Flask vs werkzeug"),
        Note(
            f"From `{MICRO_FILE}`: pytest-benchmark {suite.version}, run {suite.created}, Python"
            f" {suite.python}, commit {suite.commit}{' (uncommitted changes)' * suite.dirty}."
            " Every benchmark runs in one process; *median µs* is the median time per call over"
            " the rounds, *spread* the interquartile range / median, *vs Flask* Flask's median /"
            " this row's median (above 1.00x: faster than Flask). werkzeug has no contexts: its"
            " row is the floor (a bare Request/Response app, or a ContextVar set and reset)."
        ),
        *spread_warning(
            ", too large to trust the median",
            [(f"{r.group} {r.framework}", r.spread) for r in suite.rows],
            "Close other programs, pin the process to one core (taskset -c 1 ...) or raise"
            " --benchmark-min-time, and rerun.",
        ),
        *micro_tables(suite.rows),
    ]


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
            f"{fmt_spread(r.wrk_spread)} / {fmt_spread(r.driver_spread)}" + " ⚠" * _noisy(r),
            *(fmt_runs(r.wrk_runs), fmt_runs(r.driver_runs)),
            *(f"{r.driver_errors:,.0f}", f"{r.driver_leaks:,.0f}"),
        )
        for r in rows
    )
    bad = where(rows, lambda r: r.driver_errors or r.driver_leaks)
    warn = where(rows, lambda r: _noisy(r) or r.ratio < r.target_ratio)
    return Table(headers, cells, "lrrrlrrrrrrrr", bad, warn, wrap=frozenset({9, 10}))


def calibration_section(ctx: Context) -> list[Node]:
    cal = ctx.bench.calibration
    if cal is None:
        return []
    s, rounds = cal.settings, cal.settings.get("rounds")
    load = " / ".join(f"{v:.2f}" for v in cal.load_average) if cal.load_average else "unknown"
    return [
        Heading("Load driver against wrk"),
        Note(
            f"From `{CALIBRATION_FILE}`, run {cal.created}: one"
            f" gunicorn worker pinned to core {s.get('server_core', '?')}; wrk (one thread) and"
            f" the load driver ({s.get('driver_connections', 'keepalive')}) pinned to core"
            f" {s.get('client_core', '?')} take turns against it, {s.get('concurrency', '?')}"
            f" connections, {rounds} round{'' if rounds == 1 else 's'} of"
            f" {s.get('duration_s', '?')} s each. Load average (1 / 5 / 15 min) at the start:"
            f" {load}. *driver / wrk* is the ratio of the medians; the driver checks every"
            f" response, wrk does not. Target: {cal.target_ratio:g} against a Python server;"
            " against the echo probe (nginx answering valid probe responses from C: the"
            " driver's own ceiling) the row says its target. *driver CPU* is the driver's CPU"
            " time over wall time, *per core* its median rps over that share, and *per core /"
            " wrk* that figure over wrk's own (a ratio that holds on a busy machine, where both"
            " clients get only part of their core)."
        ),
        *spread_warning(" between rounds", [(r.mode, r.spread) for r in cal.rows]),
        calibration_table(cal.rows),
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
