"""SVG charts for the report: small, dependency-free and deterministic.

Each chart is a :class:`~harness.report.tree.Figure`, inlined in the HTML page and written next
to the report as the same standalone SVG: it declares the SVG namespace and paints its own white
background, so it reads the same embedded in a README on a dark theme. Coordinates have one
decimal, so the same data gives the same bytes.

:func:`bar_chart` draws horizontal bars (mode names are long; horizontal bars keep them
readable) on a linear axis from zero, so bar lengths compare honestly, with whiskers for the
range over the repeats. :func:`line_chart` draws series over an x scale (a sweep's levels,
spaced evenly; a soak's seconds, its warm-up shaded).
"""

from __future__ import annotations

import math
import re
import typing as t
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from harness.protocol import DEFAULT_BACKEND
from harness.report.summary import extras, label, status, swept
from harness.report.text import fmt_ms, fmt_rps, plural, spread_cell
from harness.report.tree import Figure
from harness.results import Cell

WIDTH, LABEL_W, VALUE_W = 1000, 200, 170
MAX_LABEL_W = 360  # a longer label (a user's app string) is cut short, whole in its tooltip
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:12px"
COLOR_OK = "#3569b5"
COLOR_LEAK = "#c0392b"  # a cell that leaked or had errors (amber is kept for a large spread)
COLOR_MUTANT = "#8a94a3"
COLOR_OTHER_APP = "#7fb0d8"  # Flask (any app but the core) on the correct storage
PERCENTILE_COLORS = {"p50": "#8fb3e3", "p90": "#4f83cc", "p99": "#1f4e96"}
#: The SVG namespace: an identifier, never fetched.
SVG_NS = "http://www.w3.org/2000/svg"
ROUNDED = ' rx="2"'


@dataclass(frozen=True)
class Bar:
    value: float | None  # None: nothing to draw (no request answered)
    color: str
    name: str  # the series, keyed above the plot when a row has several bars
    tip: str  # the tooltip
    runs: Sequence[float] = ()  # the whisker: min to max


@dataclass(frozen=True)
class Row:
    label: str
    sub: str  # a second, smaller line under the label ("" for none)
    bars: tuple[Bar, ...]
    note: str  # right of the bars
    alarm: bool = False  # label and note in red, bold


def throughput(cells: Sequence[Cell], pattern: str, main: str) -> Figure:
    """Median requests/s per cell with min-max whiskers: ``throughput-<pattern>.svg``; the
    ``main`` app's in the main colour, another app's (Flask next to it) lighter."""
    title = f"Throughput, requests/s ({pattern})"
    rows, sweep = [], swept(cells)
    for c in cells:
        tip = f"{label(c)}: median {fmt_rps(c.rps)} rps over {plural(len(c.runs) or 1, 'run')}"
        note = f"{fmt_rps(c.rps)} · spread {spread_cell(c.rps_spread, len(c.runs))}"
        rows.append(_row(c, (Bar(c.rps, _color(c, main), "rps", tip, c.rps_runs),), note, sweep))
    return Figure(file_name("throughput", pattern), title, bar_chart(title, rows))


def latency(cells: Sequence[Cell], pattern: str) -> Figure:
    """p50, p90 and p99 per cell with whiskers over the repeats: ``latency-<pattern>.svg``."""
    title = f"Latency percentiles, ms ({pattern})"
    rows, sweep = [], swept(cells)
    for c in cells:
        bars = []
        for name, color in PERCENTILE_COLORS.items():
            value, runs = c.latency_ms.get(name), [r.get(name) for r in c.latency_runs]
            tip = f"{label(c)} {name}: {fmt_ms(value)} ms"
            bars.append(Bar(value, color, name, tip, [v for v in runs if v is not None]))
        rows.append(_row(c, tuple(bars), f"p99 {fmt_ms(c.latency_ms.p99)}", sweep))
    legend = "ms; whiskers: range over repeats; max in the table"
    return Figure(file_name("latency", pattern), title, bar_chart(title, rows, legend=legend))


def bar_chart(title: str, rows: Sequence[Row], *, legend: str = "") -> str:
    """Horizontal bars, one row (a bar or a group of bars) per ``rows`` item, on one axis."""
    n = max((len(r.bars) for r in rows), default=1)
    top = 44 if n > 1 else 30  # a group of bars: a key of the series above the plot
    bar_h, gap = (22, 0) if n == 1 else (8, 1)
    row_h = bar_h * n + (12 if n == 1 else 14)
    bottom = top + row_h * len(rows)
    height = bottom + 30
    values = [v for r in rows for b in r.bars for v in (b.value, *b.runs) if v is not None]
    limit, ticks = _axis(values)
    # Left of the bars: wider for a longer label (``nginx-keepalive+gunicorn-gevent``).
    need = max(
        (max(len(r.label) * (BOLD_EM if r.alarm else LABEL_EM), len(r.sub) * SUB_EM) for r in rows),
        default=0.0,
    )
    left = _room(need, LABEL_W, 12)

    def x_of(value: float | None) -> float:
        if value is None or not math.isfinite(value) or value <= 0:
            return float(left)
        return left + (WIDTH - left - VALUE_W) * value / limit

    out = _svg_head(title, height)
    if n > 1:
        for j, b in enumerate(rows[0].bars):
            out.append(
                f'<rect x="{left + j * 70}" y="24" width="12" height="10" fill="{b.color}"/>'
                f'<text x="{left + j * 70 + 16}" y="33">{escape(b.name)}</text>'
            )
        out.append(f'<text x="{left + n * 70}" y="33" fill="#666">{escape(legend)}</text>')
    for v, text, stroke in ticks:
        x = x_of(v)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{stroke}"'
            f' stroke-width="1"/><text x="{x:.1f}" y="{bottom + 15:.1f}" text-anchor="middle"'
            f' fill="#666">{text}</text>'
        )
    for i, row in enumerate(rows):
        y, mid = top + i * row_h + (6 if n == 1 else 7), top + i * row_h + row_h / 2
        fill = f' fill="{COLOR_LEAK}" font-weight="600"' if row.alarm else ""
        sub = f'<tspan x="{left - 8}" y="{mid + 10:.1f}" font-size="10.5">' * bool(row.sub)
        sub += f"{escape(_fit(row.sub, left - 12, SUB_EM))}</tspan>" * bool(row.sub)
        em = BOLD_EM if row.alarm else LABEL_EM
        out.append(
            f'<text x="{left - 8}" y="{mid + (-2 if sub else 4):.1f}" text-anchor="end"{fill}>'
            f"{escape(_fit(row.label, left - 12, em))}{sub}</text>"
        )
        end = float(left)
        for j, b in enumerate(row.bars):
            by = y + j * bar_h
            out.append(
                f'<rect x="{left}" y="{by:.1f}" width="{x_of(b.value) - left:.1f}"'
                f' height="{bar_h - gap}" fill="{b.color}"{ROUNDED * (n == 1)}>'
                f"<title>{escape(b.tip)}</title></rect>"
            )
            low, high = x_of(min(b.runs, default=0)), x_of(max(b.runs, default=0))
            if len(b.runs) > 1 and high - low >= 0.5:
                cy, cap = by + (bar_h - gap) / 2, 8 if n == 1 else 5
                out.append(
                    f'<path d="M{low:.1f} {cy:.1f}H{high:.1f}M{low:.1f} {cy - cap / 2:.1f}'
                    f'v{cap:.1f}M{high:.1f} {cy - cap / 2:.1f}v{cap:.1f}" stroke="#222"'
                    ' stroke-width="1.2" fill="none"/>'
                )
            end = max(end, x_of(b.value), high)
        out.append(f'<text x="{end + 6:.1f}" y="{mid + 4:.1f}"{fill}>{escape(row.note)}</text>')
    return "".join(out) + "</svg>"


def _row(c: Cell, bars: tuple[Bar, ...], note: str, sweep: bool) -> Row:
    # The mode on the first line; app, backend, the users in a sweep and status (when not the
    # default) below it, so long names never run off the left edge.
    users = [plural(c.concurrency or 0, "user")] * sweep
    flag = [status(c)] * (not c.clean)
    return Row(c.mode, " · ".join(extras(c) + users + flag), bars, note, alarm=not c.clean)


def _color(c: Cell, main: str) -> str:
    if not c.clean:
        return COLOR_LEAK
    if c.backend != DEFAULT_BACKEND:
        return COLOR_MUTANT
    return COLOR_OK if c.app_label == main else COLOR_OTHER_APP


def file_name(*parts: str) -> str:
    """A chart's file name: its ``parts`` joined by "-", anything but ``[A-Za-z0-9_-]`` as "_"."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(parts)) + ".svg"


#: The widest a character of a label, its second line and a bold (alarm) label is likely to be,
#: in px: SVG cannot measure text, and DejaVu Sans (the sans-serif of most Linux desktops, wider
#: than Helvetica or Segoe UI) averages about 0.6 em for the names of modes and apps.
LABEL_EM, SUB_EM, BOLD_EM = 12 * 0.62, 10.5 * 0.62, 12 * 0.68


def _room(need: float, least: int, pad: int) -> int:
    """The px for text ``need`` px wide and ``pad`` around it: at least ``least``, at most
    :data:`MAX_LABEL_W` (a longer text is cut short by :func:`_fit`)."""
    return min(max(least, math.ceil(need) + pad), MAX_LABEL_W)


def _fit(text: str, width: float, em: float) -> str:
    """``text``, its middle cut out for an ellipsis if it would not fit in ``width`` px: the
    end says the most (an app string's ``:buggy`` or ``:create_app()``, a ``LEAK``)."""
    most = int(width // em)
    if len(text) <= most:
        return text
    head = (most - 1) // 2
    return text[:head] + "…" + text[len(text) - (most - 1 - head) :]


def _axis(values: Sequence[float]) -> tuple[float, list[tuple[float, str, str]]]:
    """The value axis of a chart of ``values``: its end (:func:`_nice_limit` of the largest),
    and its six ticks from 0, each with its label and its grid line's colour (0's darker)."""
    limit = _nice_limit(max(values, default=1.0))
    step = limit / 5
    decimals = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    at = [limit * k / 5 for k in range(6)]  # not step * k, whose floats can differ
    return limit, [(v, f"{v:,.{decimals}f}", "#e3e3e3" if v else "#999") for v in at]


def _nice_limit(peak: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) that
    holds ``peak`` with a little room, so bars fill most of the plot."""
    if peak <= 0 or not math.isfinite(peak):
        return 1.0
    target = peak * 1.02
    magnitude = 10.0 ** math.floor(math.log10(target))
    return next(
        s * magnitude for s in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if s * magnitude >= target
    )


# -- the line chart ------------------------------------------------------------------------------

#: Colours of the series of a line chart, in order (then they repeat).
SERIES_COLORS = (COLOR_OK, "#e07b39", "#3a9a5b", "#8e5bb5", "#b5a135", "#35a3b5", "#b53578")
CHART_H = 360  # as wide as a bar chart
PLOT_L, PLOT_T, PLOT_B = 70, 36, 300  # the plot area's edges; the key to its right
KEY_W = 220  # the key's width, more for a longer name (as a bar chart's labels)


@dataclass(frozen=True)
class Point:
    x: float  # on the chart's x scale
    value: float | None  # None: nothing measured
    alarm: bool = False  # leaked or had errors: drawn red
    hollow: bool = False  # driver-bound: drawn empty


@dataclass(frozen=True)
class Line:
    name: str  # the series, in the key
    points: tuple[Point, ...]


def line_chart(
    title: str,
    name: Sequence[str],
    lines: Sequence[Line],
    x_ticks: Sequence[tuple[float, str]],
    *,
    x_label: str = "",
    shade_to: float = 0.0,
    markers: bool = True,
    fmt: t.Callable[[float], str] = str,
) -> Figure:
    """A line chart named :func:`file_name` of ``name``, one line per ``lines`` item, on a
    linear y axis from zero.

    The x axis runs from 0 to the last of ``x_ticks`` (value and label), ``shade_to`` shades it
    from 0 (a warm-up), ``markers`` draws each point (with ``fmt`` of its value as a tooltip)."""
    values = [t.cast(float, p.value) for line in lines for p in line.points if _real(p)]
    limit, ticks = _axis(values)
    x_max = max((x for x, _ in x_ticks), default=1.0) or 1.0
    need = max((len(line.name) * LABEL_EM for line in lines), default=0.0)
    key_w = _room(need, KEY_W, 48)
    right = WIDTH - key_w

    def sx(x: float) -> float:
        return PLOT_L + (right - PLOT_L) * min(x, x_max) / x_max

    def sy(v: float) -> float:
        return PLOT_B - (PLOT_B - PLOT_T) * min(max(v, 0.0), limit) / limit

    out = _svg_head(title, CHART_H)
    if shade_to > 0:
        out.append(
            f'<rect x="{PLOT_L}" y="{PLOT_T}" width="{sx(shade_to) - PLOT_L:.1f}"'
            f' height="{PLOT_B - PLOT_T}" fill="#f2f2f2"><title>warm-up (not judged)</title></rect>'
        )
    for v, text, stroke in ticks:
        out.append(
            f'<line x1="{PLOT_L}" y1="{sy(v):.1f}" x2="{right}" y2="{sy(v):.1f}"'
            f' stroke="{stroke}" stroke-width="1"/><text x="{PLOT_L - 6}" y="{sy(v) + 4:.1f}"'
            f' text-anchor="end" fill="#666">{text}</text>'
        )
    for x, text in x_ticks:
        out.append(
            f'<text x="{sx(x):.1f}" y="{PLOT_B + 16}" text-anchor="middle" fill="#666">'
            f"{escape(text)}</text>"
        )
    if x_label:
        out.append(
            f'<text x="{(PLOT_L + right) / 2:.1f}" y="{PLOT_B + 34}" text-anchor="middle"'
            f' fill="#666">{escape(x_label)}</text>'
        )
    for j, line in enumerate(lines):
        color = SERIES_COLORS[j % len(SERIES_COLORS)]
        drawn = [(sx(p.x), sy(t.cast(float, p.value)), p) for p in line.points if _real(p)]
        if len(drawn) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in drawn)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2">'
                f"<title>{escape(line.name)}</title></polyline>"
            )
        for px, py, p in drawn if markers else ():
            stroke = COLOR_LEAK if p.alarm else color
            fill = "#fff" if p.hollow else stroke
            tip = f"{line.name}: {fmt(t.cast(float, p.value))}" + " (driver-bound)" * p.hollow
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{fill}" stroke="{stroke}"'
                f' stroke-width="2"><title>{escape(tip)}</title></circle>'
            )
        ky = PLOT_T + 4 + j * 18
        out.append(
            f'<line x1="{right + 16}" y1="{ky}" x2="{right + 36}" y2="{ky}" stroke="{color}"'
            f' stroke-width="2"/><text x="{right + 42}" y="{ky + 4}">'
            f"{escape(_fit(line.name, key_w - 48, LABEL_EM))}</text>"
        )
    out.append("</svg>")
    return Figure(file_name(*name), title, "\n".join(out) + "\n")


def _svg_head(title: str, height: int) -> list[str]:
    """A chart's opening: the ``<svg>`` element, its title, white background and heading."""
    return [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
        f' role="img" aria-label="{escape(title)}" style="{FONT};max-width:100%;height:auto">',
        f'<title>{escape(title)}</title><rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
    ]


def _real(p: Point) -> bool:
    return p.value is not None and math.isfinite(p.value)
