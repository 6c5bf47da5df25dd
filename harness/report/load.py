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
from collections.abc import Callable, Mapping, Sequence

from harness.load.cpu import DRIVER_BOUND_ADVICE, DRIVER_BOUND_SHARE
from harness.protocol import DEFAULT_BACKEND
from harness.report.charts import Line, Point, line_chart
from harness.report.summary import label
from harness.report.tree import (
    Callout,
    Figure,
    Group,
    Heading,
    Node,
    Paragraph,
    Table,
    fmt_ms,
    fmt_rps,
)
from harness.results import Cell

if t.TYPE_CHECKING:  # sections imports this module: a real import back would be a cycle
    from harness.report.sections import Context

__all__ = ["driver_section", "sweep_section"]



def driver_section(ctx: Context) -> list[Node]:
    """Per cell: the driver's and the server's CPU use, and which cells were driver-bound."""
    cells = [c for c in ctx.summary.cells if c.driver_load is not None]
    if not cells:
        return []
    bound = [c for c in cells if c.driver_bound]
    rows = tuple(
        (
            *(label(c), c.connections, str(c.concurrency or "-"), str(c.driver_processes)),
            fmt_rps(c.rps),
            _share(max((max(r.driver_cpu, default=0.0) for r in c.runs), default=None)),
            _share(c.driver_load),
            _share(c.server_cpu),
            _share(c.server_cpu_wait),
            "DRIVER-BOUND" if c.driver_bound else "server",
        )
        for c in cells
    )
    out: list[Node] = [Heading("Load driver and server CPU")]
    if bound:
        names = ", ".join(f"{label(c)} {c.connections} @{c.concurrency}" for c in bound)
        out.append(
            Callout("warning", (Paragraph(f"**Driver-bound:** {names}: {DRIVER_BOUND_ADVICE}."),))
        )
    out += [
        Paragraph(
            "Which side was the limit. *driver CPU* is the busiest driver process's CPU time over"
            " the run; *driver load* adds the time it was ready to run but waited for a CPU held"
            " by other programs (Linux schedstat), the highest over the measured runs. Above"
            f" {DRIVER_BOUND_SHARE:g} the driver was saturated and the server waited for it: the"
            " cell is *driver-bound* and its throughput may be the driver's. *server CPU* is the"
            " server's processes' CPU time over the run, in cores, and *server waiting* their time"
            " waiting for a CPU (medians over the runs): when the server waits more than it runs,"
            " the machine was too busy for its figures to be fair to it.",
            note=True,
        ),
        Table(
            (
                *("cell", "connections", "users", "driver processes", "rps"),
                *("driver CPU", "driver load", "server CPU", "server waiting", "limit"),
            ),
            rows,
            ("l", "l", "r", "r", "r", "r", "r", "r", "r", "l"),
            warn_rows=frozenset(i for i, c in enumerate(cells) if c.driver_bound),
        ),
    ]
    return out


def sweep_section(ctx: Context) -> list[Node]:
    """Throughput and p99 latency against concurrency, per mode, for a concurrency sweep."""
    levels = sorted({c.concurrency for c in ctx.summary.cells if c.concurrency is not None})
    if len(levels) < 2:
        return []
    main = ctx.summary.apps[0] if ctx.summary.apps else ""
    out: list[Node] = [
        Heading("Concurrency sweep"),
        Paragraph(
            f"Each mode measured at {', '.join(map(str, levels))} virtual users (the main app,"
            f" `{main}`, on the correct {DEFAULT_BACKEND} storage), every response checked at"
            " every level. A line that flattens is a mode that saturated; a p99 that climbs is"
            " requests queueing. A red point leaked or had errors; a hollow point was"
            " driver-bound (the driver, not the server, may have set that figure).",
            note=True,
        ),
    ]
    for pattern in ctx.summary.patterns:
        cells = [
            c
            for c in ctx.summary.for_pattern(pattern)
            if c.app_label == main and c.backend == DEFAULT_BACKEND and c.concurrency is not None
        ]
        modes = list(dict.fromkeys(c.mode for c in cells))
        if not modes:
            continue
        by = {(c.mode, t.cast(int, c.concurrency)): c for c in cells}
        rps_title = f"Throughput vs concurrency, requests/s ({pattern})"
        p99_title = f"p99 latency vs concurrency, ms ({pattern})"
        ticks = [(float(i), str(level)) for i, level in enumerate(levels)]
        rps = _lines(modes, levels, by, lambda c: c.rps)
        p99 = _lines(modes, levels, by, lambda c: c.latency_ms.p99)
        figures = (
            Figure(
                f"sweep-throughput-{pattern}.svg",
                rps_title,
                line_chart(rps_title, rps, ticks, x_label="virtual users", fmt=fmt_rps),
            ),
            Figure(
                f"sweep-latency-{pattern}.svg",
                p99_title,
                line_chart(p99_title, p99, ticks, x_label="virtual users", fmt=fmt_ms),
            ),
        )
        rows = tuple((mode, *(_sweep_cell(by.get((mode, lv))) for lv in levels)) for mode in modes)
        out += [
            Heading(f"Concurrency sweep, `{pattern}`", level=3),
            Group(figures, "charts"),
            Table(
                ("mode", *(f"{level} users" for level in levels)),
                rows,
                ("l",) + ("r",) * len(levels),
            ),
        ]
    return out


def _lines(
    modes: Sequence[str],
    levels: Sequence[int],
    by: Mapping[tuple[str, int], Cell],
    value: Callable[[Cell], float | None],
) -> list[Line]:
    """One line per mode, one point per level (missing where the mode did not run there)."""

    def point(i: int, c: Cell | None) -> Point:
        return Point(i, None) if c is None else Point(i, value(c), not c.clean, c.driver_bound)

    return [
        Line(mode, tuple(point(i, by.get((mode, level))) for i, level in enumerate(levels)))
        for mode in modes
    ]


def _sweep_cell(c: Cell | None) -> str:
    if c is None:
        return "-"
    mark = " *" if c.driver_bound else ""
    flag = " LEAK" if c.leaks else " errors" if c.errors else ""
    return f"{fmt_rps(c.rps)} rps / {fmt_ms(c.latency_ms.p99)} ms{mark}{flag}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
