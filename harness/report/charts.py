"""Inline SVG charts for the HTML report: small, dependency-free and deterministic.

Each chart is a :class:`~harness.report.tree.Figure`, also written as a standalone file next to
the report (``throughput-<pattern>.svg``, ``latency-<pattern>.svg``), byte for byte the SVG the
page inlines: it
declares the SVG namespace (a standalone file needs it) and paints its own white background, so
it reads the same embedded in a README on a dark theme.

Both charts are horizontal bar charts (mode names are long; horizontal bars keep them readable)
on a linear axis that starts at zero, so bar lengths compare honestly. Whiskers show the range
over the repeats. Coordinates are formatted with one decimal so the same data gives the same
bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from html import escape

from harness.backends import DEFAULT_BACKEND
from harness.report.summary import label
from harness.report.tree import Figure, fmt_ms, fmt_pct, fmt_rps
from harness.results import Cell

__all__ = ["SVG_NS", "latency", "latency_chart", "throughput", "throughput_chart"]

WIDTH = 1000
LABEL_W = 200
VALUE_W = 170
PLOT_W = WIDTH - LABEL_W - VALUE_W
AXIS_H = 24
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:12px"

COLOR_OK = "#3569b5"
COLOR_LEAK = "#c0392b"  # a cell that leaked or had errors (amber is kept for a large spread)
COLOR_MUTANT = "#8a94a3"
COLOR_OTHER_APP = "#7fb0d8"  # Flask (any app but the core) on the correct storage
PERCENTILE_COLORS = {"p50": "#8fb3e3", "p90": "#4f83cc", "p99": "#1f4e96"}
#: The SVG namespace: an identifier, never fetched.
SVG_NS = "http://www.w3.org/2000/svg"


def throughput(entries: Sequence[Cell], pattern: str) -> Figure:
    """Bars of median requests/s per cell with min-max whiskers: ``throughput-<pattern>.svg``."""
    title = f"Throughput, requests/s ({pattern})"
    return Figure(_file_name("throughput", pattern), title, throughput_chart(entries, title))


def latency(entries: Sequence[Cell], pattern: str) -> Figure:
    """Grouped bars of p50, p90 and p99 per cell: ``latency-<pattern>.svg``."""
    title = f"Latency percentiles, ms ({pattern})"
    return Figure(_file_name("latency", pattern), title, latency_chart(entries, title))


def _file_name(kind: str, pattern: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_-]', '_', pattern)}.svg"


def throughput_chart(entries: Sequence[Cell], title: str) -> str:
    """Bars of median requests/s per entry with min-max whiskers over the repeats."""
    row_h = 34
    top = 30
    height = top + row_h * len(entries) + AXIS_H + 6
    limit = _nice_limit(max((max(e.rps_runs, default=e.rps) for e in entries), default=1.0))
    out = _open(height, title)
    out += _axis(top, top + row_h * len(entries), limit, _tick_format(limit))
    for i, e in enumerate(entries):
        y = top + i * row_h
        mid = y + row_h / 2
        out.append(_label(mid, e))
        width = _x(e.rps, limit) - LABEL_W
        out.append(
            f'<rect x="{LABEL_W}" y="{y + 6:.1f}" width="{width:.1f}" height="{row_h - 12}"'
            f' fill="{_entry_color(e)}" rx="2"><title>{escape(label(e))}: median'
            f" {fmt_rps(e.rps)} rps over {len(e.rps_runs) or 1} runs</title></rect>"
        )
        low, high = min(e.rps_runs, default=e.rps), max(e.rps_runs, default=e.rps)
        out.append(_whisker(_x(low, limit), _x(high, limit), mid, 8))
        note = f"{fmt_rps(e.rps)} · spread {fmt_pct(e.rps_spread)}"
        if e.noisy:
            note += " ⚠"
        out.append(_value(max(_x(high, limit), _x(e.rps, limit)) + 6, mid, note, e))
    out.append("</svg>")
    return "".join(out)


def latency_chart(entries: Sequence[Cell], title: str) -> str:
    """Grouped bars of p50, p90 and p99 latency per entry, whiskers over the repeats."""
    names = ("p50", "p90", "p99")
    bar_h = 8
    row_h = bar_h * len(names) + 14
    top = 44
    height = top + row_h * len(entries) + AXIS_H + 6
    values = [e.latency_ms.get(n) for e in entries for n in names]
    values += [r.get(n) for e in entries for r in e.latency_runs for n in names]
    peak = max((v for v in values if v is not None), default=1.0)
    limit = _nice_limit(peak)
    out = _open(height, title)
    for j, name in enumerate(names):
        lx = LABEL_W + j * 70
        out.append(
            f'<rect x="{lx}" y="24" width="12" height="10" fill="{PERCENTILE_COLORS[name]}"/>'
            f'<text x="{lx + 16}" y="33">{name}</text>'
        )
    out.append(
        f'<text x="{LABEL_W + 3 * 70}" y="33" fill="#666">ms; whiskers: range over repeats;'
        " max in the table</text>"
    )
    out += _axis(top, top + row_h * len(entries), limit, _tick_format(limit))
    for i, e in enumerate(entries):
        y = top + i * row_h + 7
        out.append(_label(top + i * row_h + row_h / 2, e))
        for j, name in enumerate(names):
            by = y + j * bar_h
            value = e.latency_ms.get(name)
            out.append(
                f'<rect x="{LABEL_W}" y="{by:.1f}" width="{_x(value, limit) - LABEL_W:.1f}"'
                f' height="{bar_h - 1}" fill="{PERCENTILE_COLORS[name]}"><title>{escape(label(e))}'
                f" {name}: {fmt_ms(value)} ms</title></rect>"
            )
            runs = [v for v in (r.get(name) for r in e.latency_runs) if v is not None]
            if len(runs) > 1:
                out.append(
                    _whisker(_x(min(runs), limit), _x(max(runs), limit), by + bar_h / 2 - 0.5, 5)
                )
        p99_end = max([_x(e.latency_ms.p99, limit)] + [_x(r.p99, limit) for r in e.latency_runs])
        # _x maps a missing value to the axis origin.
        out.append(_value(p99_end + 6, y + 1.5 * bar_h, f"p99 {fmt_ms(e.latency_ms.p99)}", e))
    out.append("</svg>")
    return "".join(out)


def _open(height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {height}"'
        f' width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}"'
        f' style="{FONT};max-width:100%;height:auto">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
    ]


def _axis(top: float, bottom: float, limit: float, fmt: Callable[[float], str]) -> list[str]:
    out = []
    steps = 5
    for k in range(steps + 1):
        value = limit * k / steps
        x = _x(value, limit)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom:.1f}"'
            f' stroke="{"#999" if k == 0 else "#e3e3e3"}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 15:.1f}" text-anchor="middle" fill="#666">'
            f"{fmt(value)}</text>"
        )
    return out


def _label(mid: float, e: Cell) -> str:
    # The mode on the first line; app, backend and status (when not the default) below it,
    # so long names never run off the left edge.
    extra = [
        p
        for p in (
            e.app_label if e.app_label != "core" else "",
            e.backend if e.backend != DEFAULT_BACKEND else "",
        )
        if p
    ]
    if e.leaks:
        extra.append("LEAK")
    elif e.errors:
        extra.append("errors")
    x = LABEL_W - 8
    if not extra:
        return (
            f'<text x="{x}" y="{mid + 4:.1f}" text-anchor="end"{_text_fill(e)}>'
            f"{escape(e.mode)}</text>"
        )
    return (
        f'<text x="{x}" y="{mid - 2:.1f}" text-anchor="end"{_text_fill(e)}>{escape(e.mode)}'
        f'<tspan x="{x}" y="{mid + 10:.1f}" font-size="10.5">{escape(" · ".join(extra))}'
        "</tspan></text>"
    )


def _value(x: float, mid: float, text: str, e: Cell) -> str:
    return f'<text x="{x:.1f}" y="{mid + 4:.1f}"{_text_fill(e)}>{escape(text)}</text>'


def _whisker(x1: float, x2: float, y: float, cap: float) -> str:
    if x2 - x1 < 0.5:
        return ""
    return (
        f'<path d="M{x1:.1f} {y:.1f}H{x2:.1f}M{x1:.1f} {y - cap / 2:.1f}v{cap:.1f}'
        f'M{x2:.1f} {y - cap / 2:.1f}v{cap:.1f}" stroke="#222" stroke-width="1.2" fill="none"/>'
    )


def _text_fill(e: Cell) -> str:
    return f' fill="{COLOR_LEAK}" font-weight="600"' if e.leaks or e.errors else ""


def _entry_color(e: Cell) -> str:
    if e.leaks or e.errors:
        return COLOR_LEAK
    if e.backend != DEFAULT_BACKEND:
        return COLOR_MUTANT
    if e.app_label != "core":
        return COLOR_OTHER_APP
    return COLOR_OK


def _tick_format(limit: float) -> Callable[[float], str]:
    # One format for every tick of an axis: as many decimals as a fifth of the limit needs.
    step = limit / 5
    decimals = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    return lambda value: f"{value:,.{decimals}f}"


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
    for step in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * magnitude >= target:
            return step * magnitude
    return 10.0 * magnitude
