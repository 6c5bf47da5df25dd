"""The sections of a report, in page order: each is one function from the run to tree nodes.

To add a section, write a function ``(ctx: Context) -> list[Node]`` that builds its headings,
paragraphs, tables and charts (:mod:`harness.report.tree`) from ``ctx.run`` (the results model)
and ``ctx.summary`` (the verdict, decided once), returns ``[]`` when the run has nothing for it,
and add it to :data:`SECTIONS` where it belongs on the page. Both reports pick it up; a
:class:`~harness.report.tree.Figure` it returns is also written next to them as an SVG file.
Nothing else changes: the renderers only know the node types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends import DEFAULT_BACKEND
from harness.report import bench, charts
from harness.report.model import Entry, Run
from harness.report.summary import (
    JITTER_ADVICE,
    SPREAD_WARN,
    Summary,
    headline,
    recommendation,
    spread_cell,
    spread_warning,
)
from harness.report.tree import (
    Callout,
    Group,
    Heading,
    Items,
    Node,
    Paragraph,
    Table,
    fmt_ms,
    fmt_pct,
    fmt_rps,
    fmt_runs,
    plural,
    show_json,
)

__all__ = ["EVIDENCE_SHOWN", "SECTIONS", "Context", "Section", "build"]

EVIDENCE_SHOWN = 25  # per cell; results.json keeps everything the driver captured
PATTERN_TITLES = {"keepalive": "Keep-alive connections", "fresh": "A fresh connection per request"}


@dataclass(frozen=True)
class Context:
    """What every section reads: the run, its verdict, and the benchmark files beside it."""

    run: Run
    summary: Summary
    bench: bench.Benchmarks


Section = Callable[[Context], list[Node]]


def build(ctx: Context) -> list[Node]:
    """The whole report: every section of :data:`SECTIONS`, in order."""
    return [node for section in SECTIONS for node in section(ctx)]


# -- the sections ------------------------------------------------------------------------------


def verdict(ctx: Context) -> list[Node]:
    run, s = ctx.run, ctx.summary
    out: list[Node] = [
        Heading(f"ctxbench report: {run.run_id or 'unnamed run'}", 1),
        Paragraph(
            f"Generated from `results.json` (run created {run.created or 'at an unknown time'})."
            " Do not edit: regenerate with `ctxbench report RUN_DIR`.",
            note=True,
        ),
        Callout(
            f"verdict {s.kind}",
            (
                Paragraph(f"**Verdict: {s.verdict}.** {headline(run, s)}"),
                Paragraph(f"**Recommendation:** {recommendation(run, s)}"),
            ),
        ),
    ]
    if run.status != "complete":
        out.append(
            Callout(
                "warning",
                (
                    Paragraph(
                        f"**⚠ This run is {run.status}, not complete:** cells may be missing;"
                        " do not compare it with a complete run."
                    ),
                ),
            )
        )
    out += spread_warning(
        ", too large to trust small differences",
        [(f"{e.label}, {e.connections}", e.rps_spread) for e in s.noisy],
        JITTER_ADVICE,
    )
    out.append(
        Paragraph(
            "Each figure is the median of the repeated measurements; whiskers and *spread* show"
            " the range over the repeats ((max - min) / median), and *runs* lists every repeat's"
            " requests/s. Red (bold in Markdown) marks a cell that leaked or had errors, amber a"
            f" spread above {fmt_pct(SPREAD_WARN)}; in the charts grey is a deliberately broken"
            " backend and light blue Flask next to the core.",
            note=True,
        )
    )
    return out


def overview(ctx: Context) -> list[Node]:
    """The main app on the correct storage, one row per (connection pattern, mode)."""
    run = ctx.run
    main = run.app_labels[0] if run.app_labels else ""
    correct = [e for e in run.entries if e.backend == DEFAULT_BACKEND]
    cells = [e for e in correct if e.app_label == main]
    flask = {e.key: e for e in correct if e.app_label == "flask"} if main != "flask" else {}
    rows, bad = [], set()
    for i, e in enumerate(cells):
        same = [x for x in correct if (x.mode, x.connections) == (e.mode, e.connections)]
        leaks, errors = sum(x.leaks for x in same), sum(x.errors for x in same)
        if leaks or errors:
            bad.add(i)
        twin = flask.get(("flask", *e.key[1:]))
        rows.append(
            (
                *(e.mode, e.connections, fmt_rps(e.rps), spread_cell(e.rps_spread)),
                fmt_ms(e.latency.p99),
                *((fmt_rps(twin.rps), _ratio(e.rps, twin.rps)) if twin else ("-", "-"))[
                    : 2 * bool(flask)
                ],
                *(f"{errors:,}", _leaks_cell(leaks)),
            )
        )
    if not rows:
        return []
    headers = (
        *("mode", "connections", f"{main} rps", "spread", f"{main} p99 ms"),
        *("flask rps", f"{main} / flask")[: 2 * bool(flask)],
        *("errors", "leaks"),
    )
    warn = frozenset(i for i, e in enumerate(cells) if e.rps_spread > SPREAD_WARN)
    return [
        Heading("Summary"),
        Paragraph(
            f"The main app on the correct {DEFAULT_BACKEND} storage, one row per server mode and"
            " connection pattern; *errors* and *leaks* count every app that ran there on that"
            " storage.",
            note=True,
        ),
        Table(headers, tuple(rows), ("l", "l") + ("r",) * (len(headers) - 2), frozenset(bad), warn),
    ]


def patterns(ctx: Context) -> list[Node]:
    """Per connection pattern: the throughput and latency charts, then every cell's figures."""
    out: list[Node] = []
    for pattern in ctx.run.patterns:
        entries = ctx.run.entries_for(pattern)
        out += [
            Heading(f"{PATTERN_TITLES.get(pattern, pattern)} (`{pattern}`)"),
            Group(
                (charts.throughput(entries, pattern), charts.latency(entries, pattern)), "charts"
            ),
            measurement_table(entries),
        ]
    return out


def measurement_table(entries: Sequence[Entry]) -> Table:
    """One row per cell: throughput with its spread, latency percentiles, errors and leaks."""
    headers = (
        *("mode", "app", "backend", "leaks", "errors", "requests", "rps (median)", "spread"),
        *("runs", "p50 ms", "p90 ms", "p99 ms", "max ms"),
    )
    rows = tuple(
        (
            *(e.mode, e.app_label, e.backend, _leaks_cell(e.leaks), f"{e.errors:,}"),
            *(f"{e.requests:,}", fmt_rps(e.rps), spread_cell(e.rps_spread), fmt_runs(e.rps_runs)),
            *(fmt_ms(e.latency.get(p)) for p in ("p50", "p90", "p99", "max")),
        )
        for e in entries
    )
    return Table(
        headers,
        rows,
        ("l",) * 3 + ("r",) * 10,
        bad_rows=frozenset(i for i, e in enumerate(entries) if e.leaks or e.errors),
        warn_rows=frozenset(i for i, e in enumerate(entries) if e.rps_spread > SPREAD_WARN),
        wrap=frozenset({1, 8}),  # a long app name, every repeat
    )


def flask_pairs(ctx: Context) -> list[Node]:
    """The core against Flask on the same mode, backend and connection pattern."""
    by_key = {e.key: e for e in ctx.run.entries}
    pairs = [
        (e, by_key[("flask", *e.key[1:])])
        for e in ctx.run.entries
        if e.app_label == "core" and ("flask", *e.key[1:]) in by_key
    ]
    if not pairs:
        return []
    rows = tuple(
        (
            *(c.mode, c.backend, c.connections, fmt_rps(c.rps), fmt_rps(f.rps)),
            *(_ratio(c.rps, f.rps), fmt_ms(c.latency.p99), fmt_ms(f.latency.p99)),
            _ratio(c.latency.p99, f.latency.p99),
        )
        for c, f in pairs
    )
    headers = (
        *("mode", "backend", "connections", "core rps", "flask rps", "core / flask rps"),
        *("core p99 ms", "flask p99 ms", "core / flask p99"),
    )
    bad = frozenset(i for i, (c, f) in enumerate(pairs) if not (c.clean and f.clean))
    return [
        Heading("Core against Flask"),
        Paragraph(
            "Same server mode, backend and connection pattern. Above 1.0x in *core / flask rps*"
            " the core serves more requests per second; below 1.0x in *core / flask p99* it"
            " answers faster.",
            note=True,
        ),
        Table(headers, rows, ("l",) * 3 + ("r",) * 6, bad),
    ]


def silent_mutants(ctx: Context) -> list[Node]:
    silent = ctx.summary.silent_mutants
    if not silent:
        return []
    return [
        Heading("Broken backends that showed no leak"),
        Items(
            tuple(
                f"{e.mode} with `{e.backend}`, {e.connections}: {plural(e.requests, 'request')},"
                " no leak. Either this server and connection pattern cannot expose that bug, or"
                " the harness missed it."
                for e in silent
            )
        ),
    ]


def leaks(ctx: Context) -> list[Node]:
    out: list[Node] = [Heading("Leaks")]
    if not ctx.summary.leaked:
        out.append(Paragraph("None: every probe observation matched its request's own token."))
    for e in ctx.summary.leaked:
        out.append(
            Heading(
                f"{e.mode} · {e.app_label} · {e.backend} · {e.connections}:"
                f" {plural(e.leaks, 'leak')} in {plural(e.requests, 'request')}",
                3,
            )
        )
        if not e.evidence:
            out.append(Paragraph("No evidence was recorded for this cell."))
            continue
        rows = []
        for ev in e.evidence[:EVIDENCE_SHOWN]:
            w = ev.get("worker")
            w = w if isinstance(w, Mapping) else {}
            rows.append(
                (
                    *(str(ev.get(k, "")) for k in ("mode", "phase", "name")),
                    *(show_json(v) for v in (ev.get("expected"), ev.get("seen"))),
                    *(show_json(w.get(k)) for k in ("pid", "thread", "greenlet")),
                )
            )
        headers = ("mode", "phase", "name", "expected", "seen", "pid", "thread", "greenlet")
        out.append(
            Table(headers, tuple(rows), ("l",) * 5 + ("r",) * 3, wrap=frozenset({3, 4}), mono=True)
        )
        out.append(
            Paragraph(
                f"Showing {min(len(e.evidence), EVIDENCE_SHOWN)} of the"
                f" {plural(len(e.evidence), 'piece')} of evidence recorded in results.json. A leak"
                " is one observation that differed from what it must be (one request can hold"
                " several); the run keeps a capped sample of them, and the leak count is exact.",
                note=True,
            )
        )
    return out


def errors(ctx: Context) -> list[Node]:
    rows = tuple(
        (e.mode, e.app_label, e.backend, e.connections, kind, f"{count:,}")
        for e in ctx.summary.errored
        for kind, count in (sorted(e.error_kinds.items()) or [("unclassified", e.errors)])
    )
    if not rows:
        return []
    headers = ("mode", "app", "backend", "connections", "kind", "count")
    return [Heading("Errors"), Table(headers, rows, ("l",) * 5 + ("r",))]


def environment(ctx: Context) -> list[Node]:
    run = ctx.run
    out: list[Node] = [Heading("Environment")]
    if run.command:
        out.append(Paragraph("Command: `" + " ".join(run.command) + "`"))
    out.append(Paragraph(f"Python: {run.python or 'unknown'}"))
    cards = tuple(
        Group((Heading(title, 3), mapping_table(mapping, key)))
        for title, mapping, key in (
            ("Machine", run.machine, "property"),
            ("Packages", run.packages, "package"),
            ("Settings", run.settings, "setting"),
        )
        if mapping
    )
    return [*out, Group(cards, "cards")]


def server_config(ctx: Context) -> list[Node]:
    """The effective server configuration, one table per distinct configuration."""
    groups: dict[str, tuple[list[str], Mapping[str, Any]]] = {}
    for e in ctx.run.entries:
        if e.effective:
            users, _ = groups.setdefault(show_json(e.effective), ([], e.effective))
            name = f"{e.mode} ({e.app_label}, {e.backend})"
            users += [name] * (name not in users)
    if not groups:
        return []
    cards = tuple(
        Group((Heading("; ".join(users), 3), mapping_table(effective, "setting", mono=True)))
        for users, effective in sorted(groups.values(), key=lambda g: g[0])
    )
    return [Heading("Effective server configuration"), Group(cards, "cards")]


def mapping_table(mapping: Mapping[str, Any], key: str, *, mono: bool = False) -> Table:
    """A two-column table of a mapping, keys sorted; values other than strings as JSON."""
    rows = tuple(
        (str(k), v if isinstance(v, str) else show_json(v)) for k, v in sorted(mapping.items())
    )
    return Table((key, "value"), rows, ("l", "l"), mono=mono)


def _leaks_cell(count: int) -> str:
    return f"{count:,}" + (" LEAK" if count else "")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


#: The report, top to bottom. Add a section here (see the module docstring).
SECTIONS: list[Section] = [
    verdict,
    overview,
    patterns,
    flask_pairs,
    bench.micro_section,
    bench.calibration_section,
    silent_mutants,
    leaks,
    errors,
    environment,
    server_config,
]
