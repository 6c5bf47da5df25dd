"""SVG charts for the report: small, dependency-free and deterministic.

Each chart is a :class:`~harness.report.tree.Figure`, inlined in the HTML page and written next
to the report as a standalone file (``throughput-<pattern>.svg``, ``latency-<pattern>.svg``),
byte for byte the same SVG: it declares the SVG namespace and paints its own white background,
so it reads the same embedded in a README on a dark theme.

:func:`bar_chart` draws horizontal bars (labels such as mode names are long; horizontal bars
keep them readable) on a linear axis from zero, so bar lengths compare honestly; each row holds
one bar or a group of bars, each with an optional whisker for the range over the repeats. A new
section can chart its own rows with it. Coordinates have one decimal, so the same data gives
the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from harness.backends import DEFAULT_BACKEND
from harness.report.summary import label
from harness.report.tree import Figure, fmt_ms, fmt_pct, fmt_rps, plural
from harness.results import Cell

WIDTH, LABEL_W, VALUE_W = 1000, 200, 170
PLOT_W = WIDTH - LABEL_W - VALUE_W
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


def throughput(cells: Sequence[Cell], pattern: str) -> Figure:
    """Median requests/s per cell with min-max whiskers: ``throughput-<pattern>.svg``."""
    title = f"Throughput, requests/s ({pattern})"
    rows = []
    for c in cells:
        tip = f"{label(c)}: median {fmt_rps(c.rps)} rps over {plural(len(c.runs) or 1, 'run')}"
        note = f"{fmt_rps(c.rps)} · spread {fmt_pct(c.rps_spread)}" + " ⚠" * c.noisy
        rows.append(_row(c, (Bar(c.rps, _color(c), "rps", tip, c.rps_runs),), note))
    return Figure(_file_name("throughput", pattern), title, bar_chart(title, rows))


def latency(cells: Sequence[Cell], pattern: str) -> Figure:
    """p50, p90 and p99 per cell with whiskers over the repeats: ``latency-<pattern>.svg``."""
    title = f"Latency percentiles, ms ({pattern})"
    rows = []
    for c in cells:
        bars = []
        for name, color in PERCENTILE_COLORS.items():
            value, runs = c.latency_ms.get(name), [r.get(name) for r in c.latency_runs]
            tip = f"{label(c)} {name}: {fmt_ms(value)} ms"
            bars.append(Bar(value, color, name, tip, [v for v in runs if v is not None]))
        rows.append(_row(c, tuple(bars), f"p99 {fmt_ms(c.latency_ms.p99)}"))
    legend = "ms; whiskers: range over repeats; max in the table"
    return Figure(_file_name("latency", pattern), title, bar_chart(title, rows, legend=legend))


def bar_chart(title: str, rows: Sequence[Row], *, legend: str = "") -> str:
    """Horizontal bars, one row (a bar or a group of bars) per ``rows`` item, on one axis."""
    n = max((len(r.bars) for r in rows), default=1)
    top = 44 if n > 1 else 30  # a group of bars: a key of the series above the plot
    bar_h, gap = (22, 0) if n == 1 else (8, 1)
    row_h = bar_h * n + (12 if n == 1 else 14)
    bottom = top + row_h * len(rows)
    height = bottom + 30
    values = [v for r in rows for b in r.bars for v in (b.value, *b.runs) if v is not None]
    limit = _nice_limit(max(values, default=1.0))
    out = [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
        f' role="img" aria-label="{escape(title)}" style="{FONT};max-width:100%;height:auto">',
        f'<title>{escape(title)}</title><rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
    ]
    if n > 1:
        for j, b in enumerate(rows[0].bars):
            out.append(
                f'<rect x="{LABEL_W + j * 70}" y="24" width="12" height="10" fill="{b.color}"/>'
                f'<text x="{LABEL_W + j * 70 + 16}" y="33">{escape(b.name)}</text>'
            )
        out.append(f'<text x="{LABEL_W + n * 70}" y="33" fill="#666">{escape(legend)}</text>')
    step = limit / 5
    decimals = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    for k in range(6):
        x = _x(limit * k / 5, limit)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom:.1f}"'
            f' stroke="{"#999" if k == 0 else "#e3e3e3"}" stroke-width="1"/><text x="{x:.1f}"'
            f' y="{bottom + 15:.1f}" text-anchor="middle" fill="#666">'
            f"{limit * k / 5:,.{decimals}f}</text>"
        )
    for i, row in enumerate(rows):
        y, mid = top + i * row_h + (6 if n == 1 else 7), top + i * row_h + row_h / 2
        fill = f' fill="{COLOR_LEAK}" font-weight="600"' if row.alarm else ""
        sub = f'<tspan x="{LABEL_W - 8}" y="{mid + 10:.1f}" font-size="10.5">' * bool(row.sub)
        sub += f"{escape(row.sub)}</tspan>" * bool(row.sub)
        out.append(
            f'<text x="{LABEL_W - 8}" y="{mid + (-2 if sub else 4):.1f}" text-anchor="end"{fill}>'
            f"{escape(row.label)}{sub}</text>"
        )
        end = float(LABEL_W)
        for j, b in enumerate(row.bars):
            by = y + j * bar_h
            out.append(
                f'<rect x="{LABEL_W}" y="{by:.1f}" width="{_x(b.value, limit) - LABEL_W:.1f}"'
                f' height="{bar_h - gap}" fill="{b.color}"{ROUNDED * (n == 1)}>'
                f"<title>{escape(b.tip)}</title></rect>"
            )
            low, high = _x(min(b.runs, default=0), limit), _x(max(b.runs, default=0), limit)
            if len(b.runs) > 1 and high - low >= 0.5:
                cy, cap = by + (bar_h - gap) / 2, 8 if n == 1 else 5
                out.append(
                    f'<path d="M{low:.1f} {cy:.1f}H{high:.1f}M{low:.1f} {cy - cap / 2:.1f}'
                    f'v{cap:.1f}M{high:.1f} {cy - cap / 2:.1f}v{cap:.1f}" stroke="#222"'
                    ' stroke-width="1.2" fill="none"/>'
                )
            end = max(end, _x(b.value, limit), high)
        out.append(f'<text x="{end + 6:.1f}" y="{mid + 4:.1f}"{fill}>{escape(row.note)}</text>')
    return "".join(out) + "</svg>"


def _row(c: Cell, bars: tuple[Bar, ...], note: str) -> Row:
    # The mode on the first line; app, backend and status (when not the default) below it,
    # so long names never run off the left edge.
    sub = [c.app_label] * (c.app_label != "core") + [c.backend] * (c.backend != DEFAULT_BACKEND)
    sub += ["LEAK"] if c.leaks else ["errors"] if c.errors else []
    return Row(c.mode, " · ".join(sub), bars, note, alarm=not c.clean)


def _color(c: Cell) -> str:
    if not c.clean:
        return COLOR_LEAK
    if c.backend != DEFAULT_BACKEND:
        return COLOR_MUTANT
    return COLOR_OK if c.app_label == "core" else COLOR_OTHER_APP


def _file_name(kind: str, pattern: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_-]', '_', pattern)}.svg"


def _x(value: float | None, limit: float) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        return float(LABEL_W)
    return LABEL_W + PLOT_W * value / limit


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
