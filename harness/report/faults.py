"""The report's faults and soak sections, and the line charts of a soak.

:func:`faults_table` is the one faults table (fault, mode, requests, errors by kind, leaks,
verdict): the report shows it and ``ctxbench chaos`` prints it. :func:`soak_section` plots each
soak's RSS per server process and its requests per second over time (inline SVG, deterministic:
the same samples give the same bytes) beside a table of each process's trend.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.apps import mounted
from harness.report.charts import Line, Point, line_chart
from harness.report.summary import Context, evidence_table
from harness.report.text import code, fmt_counts, fmt_limit, fmt_mib, fmt_rps, plural
from harness.report.tree import Callout, Heading, Items, Node, Note, Paragraph, Table, where
from harness.results import SOAK_NOT_JUDGED

if TYPE_CHECKING:
    from harness.results import FaultCell, Run, Soak
    from harness.verdict import Evidence

#: Pieces of evidence the report shows per fault cell and per soak.
EVIDENCE_SHOWN = 5
#: Error kinds with a column of their own; the rest are summed under "other".
ERROR_COLUMNS = ("reset", "refused", "timeout", "5xx")


def run_verdict(run: Run) -> Callout:
    """The verdict box of a ``ctxbench chaos`` or ``ctxbench soak`` run (no isolation matrix)."""
    # A soak that judged nothing (stopped early, or no process lived through its window) is
    # neither a pass nor a failure; its exit status is the command's business, not the report's.
    unjudged = [s for s in run.soaks if not s.judged]
    failed: list[FaultCell | Soak] = [c for c in run.faults if not c.passed]
    failed += [s for s in run.soaks if s.judged and not s.passed]
    parts = []
    if run.faults:
        applicable = [c for c in run.faults if c.verdict != "n/a"]
        skipped = len(run.faults) - len(applicable)  # "(0 not applicable)" said nothing
        parts.append(
            f"{plural(len(applicable), 'fault cell')} ran"
            + f" ({skipped:,} not applicable)" * bool(skipped)
            + f", {sum(c.requests for c in run.faults):,} requests accounted for"
        )
    if run.soaks:
        soaks = plural(len(run.soaks), "soak")
        why = "stopped early, not judged" if run.status != "complete" else "not judged"
        if unjudged:  # "1 soak stopped early, not judged (no data)"; "2 soaks, 1 not judged ..."
            some = f", {len(unjudged)}" * (len(unjudged) < len(run.soaks))
            soaks += f"{some} {why} ({SOAK_NOT_JUDGED})"
        parts.append(soaks)
    said = "; ".join(parts)
    if failed:
        # Which verdicts failed: "1 failure" alone sent the reader down the page to find out.
        kinds = fmt_counts(Counter(c.verdict for c in failed))
        text = f"**Verdict: {plural(len(failed), 'failure')} ({kinds}).** {said}."
        style = "verdict leak"
    elif unjudged and len(unjudged) == len(run.soaks) and not run.faults:
        text, style = f"**Verdict: not judged.** {said}.", "warning"
    else:
        every = "every other verdict" if unjudged else "every verdict"
        # A run stopped early is no pass: what it did not run was not checked (``ctxbench run``
        # says "OK so far"). The green box said "Verdict: pass." over an interrupted chaos run.
        complete = run.status == "complete"
        words, style = ("pass", "verdict ok") if complete else ("pass so far", "warning")
        text = f"**Verdict: {words}.** {said}, {every} as it must be."
    return Callout((Paragraph(text),), style)


def faults_table(cells: Sequence[FaultCell]) -> Table:
    """One row per fault cell: what ran, every request accounted for, and the verdict."""
    several = len({(c.app_label, c.backend) for c in cells}) > 1
    headers = (
        "fault", "mode", *("app", "backend") * several, "connections", "requests", "answered",
        *ERROR_COLUMNS, "other errors", "aborted", "injected", "leaks", "after", "verdict",
    )  # fmt: skip
    rows = []
    for c in cells:
        other = sum(v for k, v in c.errors.items() if k not in ERROR_COLUMNS)
        a = c.after
        after = f"{a.requests:,} on {a.survivors_reached}+{a.respawned_reached}" if a else "-"
        rows.append((
            c.fault, c.mode, *(c.app_label, c.backend) * several, c.connections,
            *map(_count, (c.requests, c.answered, *(c.errors.get(k, 0) for k in ERROR_COLUMNS))),
            *map(_count, (other, c.aborted, c.injected, c.leaks)),
            after, c.verdict,
        ))  # fmt: skip
    align = "ll" + "ll" * several + "l" + "r" * 11 + "l"
    return Table(headers, tuple(rows), align, bad_rows=where(cells, lambda c: not c.passed))


def faults_section(ctx: Context) -> list[Node]:
    cells = ctx.run.faults
    if not cells:
        return []
    from harness.faults.verdict import VERDICTS  # the faults package loads its fault registry

    failed = [c for c in cells if not c.passed]
    out: list[Node] = [
        Heading("Faults during load"),
        Paragraph(
            f"{plural(len(cells), 'fault cell')}, {len(failed):,} failing. Each fault ran during"
            " a normal, fully checked load; every request sent is accounted for as answered, an"
            " error (by kind), aborted on purpose by the fault's own clients, or injected (made"
            " to raise at a phase). *after* is the clean load once the fault stopped: requests"
            " on surviving + respawned worker processes."
        ),
        faults_table(cells),
        Note("Verdicts: " + "; ".join(f"*{k}*: {v}" for k, v in VERDICTS.items()) + "."),
    ]
    # Each cell's app with its mount: the cells of --compare-flask differ in nothing else.
    said = [
        f"`{c.fault}` on `{c.mode}` ({code(mounted(c.app_label, c.server.mount))}, {c.backend},"
        f" {c.connections}): {c.verdict}: {c.reason}"
        for c in cells
        if c.verdict != "n/a"
    ]
    not_applicable = {f"`{c.fault}` on `{c.mode}`: {c.reason}" for c in cells if c.verdict == "n/a"}
    for head, items in (("", said), ("Not applicable:", sorted(not_applicable))):
        if items:
            out += [Note(head)] * bool(head) + [Items(tuple(items))]
    # One table per cell, under the line that names it: a flat list tagged with the mode alone
    # read as one cell when two faults (or backends) leaked under the same mode.
    for c in cells:
        label = f"`{c.fault}` on `{c.mode}` ({code(mounted(c.app_label, c.server.mount))},"
        out += evidence_nodes(f"{label} {c.backend}, {c.connections})", c.evidence)
    return out


def evidence_nodes(label: str, evidence: Sequence[Evidence]) -> list[Node]:
    """The first pieces of a chaos cell's or a soak's evidence, under a line naming it."""
    if not evidence:
        return []
    shown = evidence[:EVIDENCE_SHOWN]
    recorded = plural(len(evidence), "piece")
    count = f"the first {len(shown)} of the {recorded}" if len(shown) < len(evidence) else recorded
    return [Note(f"Evidence of {label}: {count} recorded in results.json (a capped sample; the"
                 " leak count is exact)."),
            evidence_table(shown)]  # fmt: skip


# -- soak ----------------------------------------------------------------------------------------


def soak_table(soak: Soak) -> Table:
    headers = ("process", "pid", "RSS after warm-up", "RSS at end", "growth", "fds",
               "threads", "judged")  # fmt: skip
    rows = tuple(
        (
            *(p.role, str(p.pid), fmt_mib(p.rss_start), fmt_mib(p.rss_end), f"{p.rss_growth:+.1%}"),
            f"{p.fds_start} -> {p.fds_end}" + (" growing" if p.fds_growing else ""),
            str(p.threads_end),
            "yes" if p.whole_window else "no (not there throughout)",
        )
        for p in soak.trends
    )
    bad = where(
        soak.trends, lambda p: p.whole_window and (p.rss_growth > soak.rss_limit or p.fds_growing)
    )
    return Table(headers, rows, "lrrrrrrl", bad_rows=bad)


def _soak_length(soak: Soak, status: str) -> str:
    """How long the soak's load ran, with its warm-up: as planned, or in a run stopped early,
    until the last sample (``Soak.seconds`` is the length asked for)."""
    warmup = f"{soak.warmup_s:g} s warm-up, not judged"
    if status == "complete":
        return f"{soak.seconds:g} s of steady load ({warmup})"
    ran = max([s.t for s in soak.load] + [p.t for p in soak.processes], default=0.0)
    return (
        f"{round(ran, 1):g} s of steady load (stopped early: {soak.seconds:g} s were asked for;"
        f" {warmup})"
    )


def soak_errors(soak: Soak) -> str:
    """``3 errors (2 x reset, 1 x timeout)``: the count, and by kind where there are some."""
    kinds = fmt_counts(soak.error_kinds)
    return f"{soak.errors:,} errors" + f" ({kinds})" * bool(kinds)


def _soak_rps(soak: Soak) -> str:
    """The median requests/s after the warm-up; said so when no sample came after it (the
    recorded 0 would read as a server that answered nothing)."""
    if any(s.t >= soak.warmup_s and s.requests for s in soak.load):
        return f"median {fmt_rps(soak.rps)} requests/s after the warm-up"
    return "no load sample after the warm-up"


def soak_section(ctx: Context) -> list[Node]:
    out: list[Node] = []
    for soak in ctx.run.soaks:
        app = mounted(soak.app_label, soak.server.mount)
        label = f"{soak.mode}, {app}, {soak.backend}, {soak.connections}"
        out += [
            Heading(f"Soak: {label}"),
            Paragraph(
                f"**{soak.verdict}**: {soak.reason}. {_soak_length(soak, ctx.run.status)},"
                f" {soak.requests:,} requests,"
                f" {soak_errors(soak)}, {soak.leaks:,} leaks, {_soak_rps(soak)}."
                f" RSS may grow by at most {fmt_limit(soak.rss_limit)} after the warm-up, and open"
                " file descriptors must not keep growing."
            ),
            soak_table(soak),
            *evidence_nodes(f"the soak ({label})", soak.evidence),
        ]
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
            name = ("soak", kind, soak.mode, soak.backend, soak.connections)
            out.append(line_chart(title, name, lines, ticks, shade_to=soak.warmup_s, markers=False))
    return out


def _count(n: int) -> str:
    return f"{n:,}" if n else "-"
