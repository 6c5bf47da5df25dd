"""Report sections about the load itself: who was the limit, and what concurrency did.

:func:`driver_section` lists, per cell, how busy the load driver and the server were, and marks
a cell whose driver was saturated (:attr:`harness.results.Cell.driver_bound`): its throughput
may be the driver's, not the server's. :func:`sweep_section` draws, for a run that swept the
concurrency (``--concurrency 1,8,32,128,512``), the throughput and the p99 latency of each mode
against the number of virtual users, one chart each per connection pattern, as TechEmpower shows
its results: where a mode saturates, and where its latency climbs.
The charts are :func:`harness.report.charts.line_chart`s, the levels spaced evenly on the x
axis (they grow geometrically, so equal steps read as a log scale).
"""

from __future__ import annotations

import typing as t

from harness.load.cpu import DRIVER_BOUND_ADVICE, DRIVER_BOUND_SHARE
from harness.protocol import DEFAULT_BACKEND
from harness.report.charts import Line, Point, line_chart
from harness.report.summary import Context, label, named, status
from harness.report.text import code, fmt_ms, fmt_rps, fmt_share, plural
from harness.report.tree import Callout, Group, Heading, Node, Note, Paragraph, Table, where
from harness.results import Cell


def driver_section(ctx: Context) -> list[Node]:
    cells = [c for c in ctx.summary.cells if c.driver_load is not None]
    if not cells:
        return []
    others = any(c.others_cpu is not None for c in cells)  # not in runs before it was recorded
    rows = tuple(
        (
            *(label(c), c.connections, str(c.concurrency or "-"), str(c.driver_processes)),
            fmt_rps(c.rps),
            fmt_share(max((max(r.driver_cpu, default=0.0) for r in c.runs), default=None)),
            *map(fmt_share, (c.driver_load, c.server_cpu, c.server_cpu_wait)),
            *(fmt_share(c.others_cpu),) * others,
            "DRIVER-BOUND" if c.driver_bound else "server",
        )
        for c in cells
    )
    out: list[Node] = [Heading("Load driver and server CPU")]
    if bound := [c for c in cells if c.driver_bound]:
        names = ", ".join(f"{named(c)} {c.connections} @{c.concurrency}" for c in bound)
        text = f"**Driver-bound:** {names}: {DRIVER_BOUND_ADVICE}."
        out.append(Callout((Paragraph(text),), "warning"))
    headers = ("cell", "connections", "users", "driver processes", "rps", "driver CPU",
               "driver load", "server CPU", "server waiting", *("other programs",) * others,
               "limit")  # fmt: skip
    align = "llrrrrrrr" + "r" * others + "l"
    return [
        *out,
        Note(
            "Which side was the limit. *driver CPU* is the busiest driver process's CPU time over"
            " the run; *driver load* adds the time it was ready to run but waited for a CPU held"
            " by other programs (Linux schedstat), the highest over the measured runs. Above"
            f" {DRIVER_BOUND_SHARE:g} the driver was saturated and the server waited for it: the"
            " cell is *driver-bound* and its throughput may be the driver's. *server CPU* is the"
            " server's processes' CPU time over the run, in cores, and *server waiting* their time"
            " waiting for a CPU (medians over the runs): when the server waits more than it runs,"
            " the machine was too busy for its figures to be fair to it."
            + (
                " *other programs* is the CPU the rest of the machine used meanwhile, in cores"
                " (steal by other virtual machines included): well above 0, the machine was"
                " shared, and the figures are not the server's alone."
            )
            * others
        ),
        Table(headers, rows, align, warn_rows=where(cells, lambda c: c.driver_bound)),
    ]


def sweep_section(ctx: Context) -> list[Node]:
    main = ctx.summary.main
    # The sweep charts the main app on the correct storage: a run of broken backends alone
    # swept too, but has nothing to chart here (their cells are in the pattern's tables).
    charted = [
        c
        for c in ctx.summary.cells
        if c.app_label == main and c.backend == DEFAULT_BACKEND and c.concurrency is not None
    ]
    levels = sorted({c.concurrency for c in charted if c.concurrency is not None})
    if len(levels) < 2:
        return []
    out: list[Node] = [
        Heading("Concurrency sweep"),
        Note(
            f"Each mode measured at {', '.join(map(str, levels))} virtual users (the main app,"
            f" {code(main)}, on {ctx.summary.storage}), every response checked at"
            " every level. A line that flattens is a mode that saturated; a p99 that climbs is"
            " requests queueing. A red point leaked or had errors; a hollow point was"
            " driver-bound (the driver, not the server, may have set that figure). In the"
            " tables, * marks a driver-bound figure and ~ one that waited on the client's delayed"
            " ACKs (the ACK timer's figure, see the warning under the pattern's table)."
        ),
    ]
    ticks = [(float(i), str(level)) for i, level in enumerate(levels)]
    for pattern in ctx.summary.patterns:
        by = {(c.mode, c.concurrency): c for c in charted if c.connections == pattern}
        modes = dict.fromkeys(mode for mode, _ in by)
        if not modes:
            continue
        grid = {mode: [by.get((mode, level)) for level in levels] for mode in modes}
        rps_title = f"Throughput vs concurrency, requests/s ({pattern})"
        p99_title = f"p99 latency vs concurrency, ms ({pattern})"
        rps, p99 = _lines(grid, lambda c: c.rps), _lines(grid, lambda c: c.latency_ms.p99)
        kw: dict[str, t.Any] = {"x_label": "virtual users"}
        figures = (
            line_chart(rps_title, ("sweep-throughput", pattern), rps, ticks, fmt=fmt_rps, **kw),
            line_chart(p99_title, ("sweep-latency", pattern), p99, ticks, fmt=fmt_ms, **kw),
        )
        rows = tuple((mode, *map(_sweep_cell, row)) for mode, row in grid.items())
        headers = ("mode", *(plural(level, "user") for level in levels))
        out += [
            Heading(f"Concurrency sweep, `{pattern}`", level=3),
            Group(figures, "charts"),
            Table(headers, rows, "l" + "r" * len(levels)),
        ]
    return out


def _lines(
    grid: dict[str, list[Cell | None]], value: t.Callable[[Cell], float | None]
) -> list[Line]:
    """One line per mode, one point per level (missing where the mode did not run there)."""

    def point(i: int, c: Cell | None) -> Point:
        return Point(i, None) if c is None else Point(i, value(c), not c.clean, c.driver_bound)

    return [Line(mode, tuple(point(i, c) for i, c in enumerate(row))) for mode, row in grid.items()]


def _sweep_cell(c: Cell | None) -> str:
    if c is None:
        return "-"
    mark = " *" * c.driver_bound + " ~" * c.delayed_acks  # ~: the ACK timer's, harness.load.acks
    flag = f" {status(c)}" * (not c.clean)
    starved = f" {c.starved:,} starved" if c.starved else ""  # see harness.load.fairness
    return f"{fmt_rps(c.rps)} rps / {fmt_ms(c.latency_ms.p99)} ms{mark}{flag}{starved}"
