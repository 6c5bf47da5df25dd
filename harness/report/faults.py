"""The report's faults and soak sections, and the line charts of a soak.

:func:`faults_table` is the one faults table (fault, mode, requests, errors by kind, leaks,
verdict): the report shows it and ``ctxbench chaos`` prints it. :func:`soak_section` plots each
soak's RSS per server process and its requests per second over time (inline SVG, deterministic:
the same samples give the same bytes) beside a table of each process's trend.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from harness.report.charts import SVG_NS, _nice_limit
from harness.report.tree import (
    Callout,
    Figure,
    Heading,
    Items,
    Node,
    Paragraph,
    Table,
    fmt_pct,
    fmt_rps,
    plural,
)

if TYPE_CHECKING:
    from harness.report.sections import Context
    from harness.results import FaultCell, Run, Soak

__all__ = [
    "faults_section",
    "faults_table",
    "line_chart",
    "run_verdict",
    "soak_section",
    "soak_table",
]

#: Error kinds with a column of their own; the rest are summed under "other".
ERROR_COLUMNS = ("reset", "refused", "timeout", "5xx")
SERIES_COLORS = ("#3569b5", "#c0392b", "#2e8b57", "#b8860b", "#6a5acd", "#8b4513", "#008b8b")
WIDTH, HEIGHT = 1000, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 40
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:12px"


def run_verdict(run: Run) -> list[Node]:
    """The verdict box of a ``ctxbench chaos`` or ``ctxbench soak`` run (no isolation matrix)."""
    failed = [c for c in run.faults if not c.passed] + [s for s in run.soaks if not s.passed]
    parts = []
    if run.faults:
        applicable = [c for c in run.faults if c.verdict != "n/a"]
        parts.append(
            f"{plural(len(applicable), 'fault cell')} ran"
            f" ({len(run.faults) - len(applicable)} not applicable),"
            f" {sum(c.requests for c in run.faults):,} requests accounted for"
        )
    if run.soaks:
        parts.append(f"{plural(len(run.soaks), 'soak')}")
    if failed:
        text = f"**Verdict: {plural(len(failed), 'failure')}.** " + "; ".join(parts) + "."
        style = "verdict leak"
    else:
        text = "**Verdict: pass.** " + "; ".join(parts) + ", every verdict as it must be."
        style = "verdict ok"
    out: list[Node] = [Callout(style, (Paragraph(text),))]
    if run.status != "complete":
        out.append(
            Callout("warning", (Paragraph(f"**⚠ This run is {run.status}, not complete.**"),))
        )
    return out


def _count(n: int) -> str:
    return f"{n:,}" if n else "-"


def faults_table(cells: Sequence[FaultCell]) -> Table:
    """One row per fault cell: what ran, every request accounted for, and the verdict."""
    several_apps = len({(c.app_label, c.backend) for c in cells}) > 1
    headers = (
        "fault", "mode", *(("app", "backend") if several_apps else ()), "connections",
        "requests", "answered", *ERROR_COLUMNS, "other errors", "aborted", "injected", "leaks",
        "after", "verdict",
    )  # fmt: skip
    rows, bad = [], set()
    for i, c in enumerate(cells):
        other = sum(v for k, v in c.errors.items() if k not in ERROR_COLUMNS)
        after = "-"
        if c.after is not None:
            a = c.after
            after = f"{a.requests:,} on {a.survivors_reached}+{a.respawned_reached}"
        if not c.passed:
            bad.add(i)
        row = (
            c.fault, c.mode, *((c.app_label, c.backend) if several_apps else ()),
            c.connections, _count(c.requests), _count(c.answered),
            *(_count(c.errors.get(k, 0)) for k in ERROR_COLUMNS), _count(other),
            _count(c.aborted), _count(c.injected), _count(c.leaks), after, c.verdict,
        )  # fmt: skip
        rows.append(row)
    align = tuple("l" if h in ("fault", "mode", "app", "backend", "connections", "verdict")
                  else "r" for h in headers)  # fmt: skip
    return Table(headers, tuple(rows), align, bad_rows=frozenset(bad))


def faults_section(ctx: Context) -> list[Node]:
    cells = ctx.run.faults
    if not cells:
        return []
    from harness.faults.verdict import VERDICTS

    failed = [c for c in cells if not c.passed]
    out: list[Node] = [
        Heading("Faults during load"),
        Paragraph(
            f"{len(cells)} fault cells, {len(failed)} failing. Each fault ran during a normal,"
            " fully checked load; every request sent is accounted for as answered, an error"
            " (by kind), aborted on purpose by the fault's own clients, or injected (made to"
            " raise at a phase). *after* is the clean load once the fault stopped: requests on"
            " surviving + respawned worker processes."
        ),
        faults_table(cells),
        Paragraph(
            "Verdicts: " + "; ".join(f"*{k}*: {v}" for k, v in VERDICTS.items()) + ".",
            note=True,
        ),
    ]
    reasons = [f"`{c.fault}` on `{c.mode}` ({c.connections}, {c.backend}): {c.verdict}: {c.reason}"
               for c in cells if c.verdict != "n/a"]  # fmt: skip
    not_applicable = sorted({f"`{c.fault}` on `{c.mode}`: {c.reason}" for c in cells
                             if c.verdict == "n/a"})  # fmt: skip
    if reasons:
        out.append(Items(tuple(reasons)))
    if not_applicable:
        out += [Paragraph("Not applicable:", note=True), Items(tuple(not_applicable))]
    evidence = [str(e) for c in cells for e in c.evidence[:5]]
    if evidence:
        out += [Paragraph("First evidence of each leaking cell:", note=True),
                Items(tuple(evidence[:25]))]  # fmt: skip
    return out


# -- soak ----------------------------------------------------------------------------------------


def soak_table(soak: Soak) -> Table:
    headers = ("process", "pid", "RSS after warm-up", "RSS at end", "growth", "fds",
               "threads", "judged")  # fmt: skip
    rows, bad = [], set()
    for i, p in enumerate(soak.trends):
        if p.whole_window and (p.rss_growth > soak.rss_limit or p.fds_growing):
            bad.add(i)
        row = (
            p.role, str(p.pid), _mib(p.rss_start), _mib(p.rss_end), f"{p.rss_growth:+.1%}",
            f"{p.fds_start} -> {p.fds_end}" + (" growing" if p.fds_growing else ""),
            str(p.threads_end), "yes" if p.whole_window else "no (not there throughout)",
        )  # fmt: skip
        rows.append(row)
    return Table(headers, tuple(rows), ("l", "r", "r", "r", "r", "r", "r", "l"),
                 bad_rows=frozenset(bad))  # fmt: skip


def soak_section(ctx: Context) -> list[Node]:
    soaks = ctx.run.soaks
    out: list[Node] = []
    for soak in soaks:
        label = f"{soak.mode}, {soak.app_label}, {soak.backend}, {soak.connections}"
        out += [
            Heading(f"Soak: {label}"),
            Paragraph(
                f"**{soak.verdict}**: {soak.reason}. {soak.seconds:g} s of steady load"
                f" ({soak.warmup_s:g} s warm-up, not judged), {soak.requests:,} requests,"
                f" {soak.errors:,} errors, {soak.leaks:,} leaks, median {fmt_rps(soak.rps)}"
                f" requests/s after the warm-up. RSS may grow by at most"
                f" {fmt_pct(soak.rss_limit)} after the warm-up, and open file descriptors must"
                " not keep growing."
            ),
            soak_table(soak),
        ]
        slug = re.sub(r"[^A-Za-z0-9_-]", "_", f"{soak.mode}-{soak.backend}-{soak.connections}")
        rss: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for s in soak.processes:
            rss[f"{s.role} {s.pid}"].append((s.t, s.rss / 2**20))
        title = f"RSS per server process, MiB ({label})"
        chart = line_chart(title, sorted(rss.items()), soak.warmup_s, "MiB")
        out.append(Figure(f"soak-rss-{slug}.svg", title, chart))
        rps = [(s.t, s.rps) for s in soak.load]
        title = f"Requests per second ({label})"
        chart = line_chart(title, [("rps", rps)], soak.warmup_s, "rps")
        out.append(Figure(f"soak-rps-{slug}.svg", title, chart))
    return out


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    warmup_s: float,
    unit: str,
) -> str:
    """Lines over time (seconds) on a linear y axis from zero; the warm-up is shaded."""
    points = [p for _, pts in series for p in pts if math.isfinite(p[1])]
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    y_max = _nice_limit(max((y for _, y in points), default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + plot_w * min(x, x_max) / x_max

    def sy(y: float) -> float:
        return TOP + plot_h * (1 - min(max(y, 0.0), y_max) / y_max)

    out = [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{escape(title)}" style="{FONT};max-width:100%;height:auto">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="0" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{sx(warmup_s) - LEFT:.1f}" height="{plot_h}"'
        ' fill="#f2f2f2"><title>warm-up (not judged)</title></rect>',
    ]
    for k in range(6):
        y = TOP + plot_h * k / 5
        value = y_max * (1 - k / 5)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"'
            f' stroke="{"#999" if k == 5 else "#e3e3e3"}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#666">'
            f"{value:,.{0 if y_max >= 50 else 1}f}</text>"
        )
        x = LEFT + plot_w * k / 5
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" fill="#666">'
            f"{x_max * k / 5:,.0f} s</text>"
        )
    out.append(
        f'<text x="{LEFT}" y="{TOP - 8}" fill="#666">{escape(unit)}; grey: warm-up</text>'
    )
    for i, (name, pts) in enumerate(series):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts if math.isfinite(y))
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5">'
            f"<title>{escape(name)}</title></polyline>"
        )
        lx = LEFT + 260 + 150 * i
        if lx < WIDTH - 140:
            out.append(
                f'<rect x="{lx}" y="{TOP - 18}" width="12" height="3" fill="{color}"/>'
                f'<text x="{lx + 16}" y="{TOP - 13}">{escape(name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
