"""The report's faults and soak sections, and the line charts of a soak.

:func:`faults_table` is the one faults table (fault, mode, requests, errors by kind, leaks,
verdict): the report shows it and ``ctxbench chaos`` prints it. :func:`soak_section` plots each
soak's RSS per server process and its requests per second over time (inline SVG, deterministic:
the same samples give the same bytes) beside a table of each process's trend.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.report.charts import Line, Point, line_chart
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
    "run_verdict",
    "soak_section",
    "soak_table",
]

#: Error kinds with a column of their own; the rest are summed under "other".
ERROR_COLUMNS = ("reset", "refused", "timeout", "5xx")


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
        rss: dict[str, list[Point]] = defaultdict(list)
        for s in soak.processes:
            rss[f"{s.role} {s.pid}"].append(Point(s.t, s.rss / 2**20))
        per_process = [Line(name, tuple(points)) for name, points in sorted(rss.items())]
        rps = [Line("rps", tuple(Point(s.t, s.rps) for s in soak.load))]
        end = max((p.x for line in (*per_process, *rps) for p in line.points), default=1.0)
        ticks = [(end * k / 5, f"{end * k / 5:,.0f} s") for k in range(6)]
        for kind, title, lines in (
            ("rss", f"RSS per server process, MiB ({label})", per_process),
            ("rps", f"Requests per second ({label})", rps),
        ):
            chart = line_chart(title, lines, ticks, shade_to=soak.warmup_s, markers=False)
            out.append(Figure(f"soak-{kind}-{slug}.svg", title, chart))
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
