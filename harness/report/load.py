"""Report sections about the load itself: who was the limit, and what concurrency did.

:func:`driver_section` lists, per cell, how busy the load driver and the server were, and marks
a cell whose driver was saturated (:attr:`harness.results.Cell.driver_bound`): its throughput
may be the driver's, not the server's. :func:`sweep_section` draws, for a run that swept the
concurrency (``--concurrency 1,8,32,128,512``), the throughput and the p99 latency of each mode
against the number of virtual users, one chart each per connection pattern, as TechEmpower shows
its results: where a mode saturates, and where its latency climbs.

:func:`line_chart` draws those charts: one line per series over categories spaced evenly on the
x axis (the levels grow geometrically, so equal steps read as a log scale), a linear y axis from
zero, deterministic coordinates (one decimal), a key of the series, a red point for a cell that
leaked or had errors and a hollow one for a driver-bound cell.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from harness.backends import DEFAULT_BACKEND
from harness.load.cpu import DRIVER_BOUND_ADVICE, DRIVER_BOUND_SHARE
from harness.report.charts import COLOR_LEAK, FONT, SVG_NS
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

__all__ = ["Line", "driver_section", "line_chart", "sweep_section"]

#: Colours of the series of a line chart, in order (then they repeat).
SERIES_COLORS = ("#3569b5", "#e07b39", "#3a9a5b", "#8e5bb5", "#b5a135", "#35a3b5", "#b53578")
CHART_W, CHART_H = 1000, 360
PLOT_L, PLOT_R, PLOT_T, PLOT_B = 70, 220, 36, 300  # the plot area: left, right edge, top, bottom


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
        figures = (
            Figure(
                f"sweep-throughput-{pattern}.svg",
                rps_title,
                line_chart(
                    rps_title, levels, _lines(modes, levels, by, lambda c: c.rps), fmt=fmt_rps
                ),
            ),
            Figure(
                f"sweep-latency-{pattern}.svg",
                p99_title,
                line_chart(
                    p99_title,
                    levels,
                    _lines(modes, levels, by, lambda c: c.latency_ms.p99),
                    fmt=fmt_ms,
                ),
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
    rv = []
    for mode in modes:
        points = []
        for level in levels:
            c = by.get((mode, level))
            if c is None:
                points.append(_Point(None))
            else:
                points.append(_Point(value(c), not c.clean, c.driver_bound))
        rv.append(Line(mode, tuple(points)))
    return rv


def _sweep_cell(c: Cell | None) -> str:
    if c is None:
        return "-"
    mark = " *" if c.driver_bound else ""
    flag = " LEAK" if c.leaks else " errors" if c.errors else ""
    return f"{fmt_rps(c.rps)} rps / {fmt_ms(c.latency_ms.p99)} ms{mark}{flag}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# -- the line chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    value: float | None  # None: not measured
    alarm: bool = False  # leaked or had errors
    hollow: bool = False  # driver-bound


@dataclass(frozen=True)
class Line:
    """One series of a line chart: its name and one point per x category."""

    name: str
    points: tuple[_Point, ...]


def line_chart(
    title: str,
    categories: Sequence[object],
    lines: Sequence[Line],
    *,
    fmt: Callable[[float], str] = str,
    x_label: str = "virtual users",
) -> str:
    """An SVG line chart: ``categories`` evenly spaced on x, one line per ``lines`` item."""
    values = [p.value for line in lines for p in line.points if p.value is not None]
    limit = _nice(max(values, default=1.0))
    n = max(len(categories), 1)
    step = (CHART_W - PLOT_L - PLOT_R) / max(n - 1, 1)

    def x(i: int) -> float:
        return PLOT_L + i * step

    def y(v: float) -> float:
        return PLOT_B - (PLOT_B - PLOT_T) * (v / limit if limit else 0.0)

    out = [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}"'
        f' height="{CHART_H}" role="img" aria-label="{escape(title)}"'
        f' style="{FONT};max-width:100%;height:auto">',
        f'<title>{escape(title)}</title><rect width="{CHART_W}" height="{CHART_H}" fill="#fff"/>',
        f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
    ]
    render = fmt
    step_v = limit / 5
    decimals = 0 if step_v >= 1 else 1 if step_v >= 0.1 else 2 if step_v >= 0.01 else 3
    for k in range(6):
        v = limit * k / 5
        out.append(
            f'<line x1="{PLOT_L}" y1="{y(v):.1f}" x2="{CHART_W - PLOT_R}" y2="{y(v):.1f}"'
            f' stroke="{"#999" if k == 0 else "#e3e3e3"}" stroke-width="1"/>'
            f'<text x="{PLOT_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#666">'
            f"{v:,.{decimals}f}</text>"
        )
    for i, cat in enumerate(categories):
        out.append(
            f'<text x="{x(i):.1f}" y="{PLOT_B + 16}" text-anchor="middle" fill="#666">'
            f"{escape(str(cat))}</text>"
        )
    if x_label:
        mid = (PLOT_L + CHART_W - PLOT_R) / 2
        out.append(
            f'<text x="{mid:.1f}" y="{PLOT_B + 34}" text-anchor="middle" fill="#666">'
            f"{escape(x_label)}</text>"
        )
    for j, line in enumerate(lines):
        color = SERIES_COLORS[j % len(SERIES_COLORS)]
        drawn = [(x(i), y(p.value), p) for i, p in enumerate(line.points) if p.value is not None]
        if len(drawn) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in drawn)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for px, py, p in drawn:
            stroke = COLOR_LEAK if p.alarm else color
            fill = "#fff" if p.hollow else stroke
            tip = f"{line.name}: {render(t.cast(float, p.value))}" + " (driver-bound)" * p.hollow
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{fill}" stroke="{stroke}"'
                f' stroke-width="2"><title>{escape(tip)}</title></circle>'
            )
        ky = PLOT_T + 4 + j * 18
        out.append(
            f'<line x1="{CHART_W - PLOT_R + 16}" y1="{ky}" x2="{CHART_W - PLOT_R + 36}" y2="{ky}"'
            f' stroke="{color}" stroke-width="2"/><text x="{CHART_W - PLOT_R + 42}"'
            f' y="{ky + 4}">{escape(line.name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1.0 for none)."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while power > value:
        power /= 10
    for mult in (1, 2, 5, 10):
        if power * mult >= value:
            return power * mult
    return power * 10
