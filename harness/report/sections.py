"""The sections of a report, in page order: each is one function from the run to tree nodes.

To add a section, write a function ``(ctx: Context) -> list[Node]`` that builds its headings,
paragraphs, tables and charts (:mod:`harness.report.tree`) from ``ctx.run`` (the results model)
and ``ctx.summary`` (the verdict, decided once), returns ``[]`` when the run has nothing for it,
and add it to :data:`SECTIONS` where it belongs on the page. Both reports pick it up; a
:class:`~harness.report.tree.Figure` it returns is also written next to them as an SVG file.
Nothing else changes: the renderers only know the node types.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.exercised import ONE_USER, Exercised
from harness.report import bench, charts, corpus, faults, load
from harness.report.summary import (
    A_LEAK_IS,
    REPORT_IT,
    TARGETS_OWN,
    UNRANKED,
    WEAK_ZEROS_HEAD,
    Context,
    app_at,
    backend_of,
    evidence_table,
    headline,
    label,
    missed,
    model_reason,
    named,
    pattern_at,
    recommendation,
    shared_machine,
    swept,
    too_few_checked,
    weak_zeros,
)
from harness.report.text import (
    app_name,
    code,
    fmt_ms,
    fmt_pct,
    fmt_rps,
    fmt_runs,
    literal,
    plural,
    show_json,
    spread_cell,
)
from harness.report.tree import (
    JITTER_ADVICE,
    Callout,
    Group,
    Heading,
    Items,
    Node,
    Note,
    Paragraph,
    Table,
    spread_warning,
    where,
)
from harness.results import PERCENTILES, SPREAD_FORMULA, SPREAD_WARNING, Cell

EVIDENCE_SHOWN = 25  # per cell; results.json keeps everything the driver captured
PATTERN_TITLES = {"keepalive": "Keep-alive connections", "fresh": "A fresh connection per request"}


Section = Callable[[Context], list[Node]]


def build(ctx: Context) -> list[Node]:
    """The whole report: every section of :data:`SECTIONS`, in order."""
    return [node for section in SECTIONS for node in section(ctx)]


# -- the sections ------------------------------------------------------------------------------


def verdict(ctx: Context) -> list[Node]:
    run, s = ctx.run, ctx.summary
    matrix = bool(run.cells) or not (run.faults or run.soaks)  # not ctxbench chaos or soak
    if not matrix:
        box = faults.run_verdict(run)
    elif cells := corpus.corpus_cells(run):
        # A corpus run leaks on purpose: its verdict is whether each cell came out as expected.
        complete = run.status == "complete"
        ok, sentence = corpus.corpus_verdict(cells, complete)
        if not ok:
            words, style = "NOT as expected", "verdict leak"
        elif complete:
            words, style = "as expected", "verdict ok"
        else:  # a run that stopped early is no pass: what it did not run was not checked
            words, style = "as expected so far", "warning"
        box = Callout((Paragraph(f"**Corpus: {words}.** {sentence}"),), style)
    else:
        words, kind = s.verdict
        text = f"**Verdict: {words}.** {headline(s)}"
        advice = Paragraph(f"**Recommendation:** {recommendation(s)}")
        box = Callout((Paragraph(text), advice), f"verdict {kind}")
    out: list[Node] = [
        Heading(f"ctxbench report: {run.run_id or 'unnamed run'}", 1),
        Note(
            f"Generated from `results.json` (run created {run.created or 'at an unknown time'})."
            " Do not edit: regenerate with `ctxbench report RUN_DIR`."
        ),
        box,
    ]
    if run.not_measured:
        skipped = "; ".join(f"{n.mode} ({n.connections}): {n.reason}" for n in run.not_measured)
        out.append(Paragraph(f"**Not measured** (these cannot run as asked): {skipped}."))
    if injected := sum(c.injected for c in run.cells):
        phase, share = run.settings.fail_phase, run.settings.fail_fraction
        how = f" at {phase} (`--fail-phase`, a fraction of {share:g} of them)" if phase else ""
        out.append(
            Paragraph(
                f"**Made to fail on purpose:** {plural(injected, 'request')} raised{how}: expected"
                " errors, in no *errors* column and not checked; the requests after them are"
                " judged."
            )
        )
    if run.status != "complete":
        text = f"**⚠ This run is {run.status}, not complete:** {run.status_reason}"
        text += "; cells may be missing; do not compare it with a complete run." if matrix else "."
        out.append(Callout((Paragraph(text),), "warning"))
    if not matrix:  # no figures to read
        return out
    at = swept(s.cells)
    noisy = [(f"{named(c)}, {pattern_at(c, at)}", c.rps_spread) for c in s.noisy]
    shared = shared_machine(s.noisy)
    jitter = f"{shared[:1].upper()}{shared[1:]}. {JITTER_ADVICE}" if shared else JITTER_ADVICE
    out += spread_warning(", too large to trust small differences", noisy, jitter)
    # A run with no warm-up (a corpus run, --warmup 0) counts the repeats' responses alone: the
    # note said "the warm-up's included, so it is more than the repeats' own" of 200 in 200.
    counted = (
        ", the warm-up's (`--warmup`) included, so it is more than the repeats' own"
        if run.settings.warmup
        else ""
    )
    out.append(
        Note(
            "Each figure is the median of the repeated measurements; whiskers and *spread* show"
            f" the range over the repeats ({SPREAD_FORMULA}), and *runs* lists every repeat's"
            f" requests/s; *requests* counts every response checked{counted}. Red (bold in"
            " Markdown) marks a cell that leaked or had errors, amber a spread above"
            f" {fmt_pct(SPREAD_WARNING)}; in the charts grey is a deliberately broken backend and"
            " light blue Flask next to the core."
        )
    )
    return out


def overview(ctx: Context) -> list[Node]:
    """The main app on the correct storage, one row per (connection pattern, mode), with Flask
    on the same mode side by side when it ran too (``--compare-flask``)."""
    main = ctx.summary.main
    correct = ctx.summary.correct
    cells = [c for c in correct if c.app_label == main]
    if not cells or corpus.corpus_cells(ctx.run):
        # A corpus run has no main app: its table is the corpus table, and this one would show
        # the first entry's rates beside every entry's leaks.
        return []
    flask = {c.key[1:]: c for c in correct if c.app_label == "flask" and main != "flask"}
    short = main if main in ("core", "flask") else "app"  # a long import string would not fit
    starved, sweep = any(c.starved for c in cells), swept(cells)
    rows, bad = [], set()
    for i, c in enumerate(cells):
        level = (c.mode, c.connections, c.concurrency)
        same = [x for x in correct if (x.mode, x.connections, x.concurrency) == level]
        leaks, errors = sum(x.leaks for x in same), sum(x.errors for x in same)
        if leaks or errors:
            bad.add(i)
        twin: tuple[str, ...] = ()
        if flask and (f := flask.get(c.key[1:])):
            p99 = (c.latency_ms.p99, f.latency_ms.p99)
            twin = (fmt_rps(f.rps), _ratio(c.rps, f.rps), fmt_ms(p99[1]), _ratio(*p99))
        rows.append(
            (
                *(c.mode, c.connections, *(str(c.concurrency),) * sweep, fmt_rps(c.rps)),
                spread_cell(c.rps_spread, len(c.runs)),
                *(fmt_ms(c.latency_ms.p99), *(twin or ("-",) * 4 * bool(flask))),
                *(f"{errors:,}", _leaks_cell(leaks), *(_starved_cell(c),) * starved),
            )
        )
    twins = ("flask rps", f"{short} / flask rps", "flask p99 ms", f"{short} / flask p99")
    mine = ("mode", "connections", *("users",) * sweep, f"{short} rps", "spread", f"{short} p99 ms")
    headers = (*mine, *twins[: 4 * bool(flask)], "errors", "leaks", *("starved users",) * starved)
    note = (
        f"The main app ({app_at(cells[0], code)}) on {ctx.summary.storage}, one row per server"
        f" mode and connection pattern{' and number of virtual users' * sweep}; *errors* and"
        " *leaks* count every app that ran there on that storage."
    )
    if flask:
        note += (
            f" Flask ran the same probe app on the same mode: above 1.00x in *{short} / flask rps*"
            f" the {short} serves more requests per second; below 1.00x in *{short} / flask p99*"
            " it answers faster."
        )
    if starved:
        note += (
            f" *starved users* counts the {short}'s virtual users that waited more than half the"
            " measured window for one response (see the warning under its pattern's table):"
            " such a row's rps is the rate of the users the server kept serving, and is not"
            " ranked."
        )
    if acked := [c for c in cells if c.delayed_acks]:
        note += (
            f" The rps of {', '.join(f'{c.mode} ({pattern_at(c, sweep)})' for c in acked)} is the"
            " client's delayed-ACK timer's, not the server's (see the warning under its"
            " pattern's table), and is not ranked."
        )
    warn = where(cells, lambda c: c.noisy)
    return [
        Heading("Summary"),
        Note(note),
        Table(headers, tuple(rows), "ll" + "r" * (len(headers) - 2), frozenset(bad), warn),
    ]


def patterns(ctx: Context) -> list[Node]:
    """Per connection pattern: the throughput and latency charts, then every cell's figures."""
    out: list[Node] = []
    for pattern in ctx.summary.patterns:
        cells = ctx.summary.for_pattern(pattern)
        figures = (
            charts.throughput(cells, pattern, ctx.summary.main),
            charts.latency(cells, pattern),
        )
        title = PATTERN_TITLES.get(pattern, pattern)
        out += [Heading(f"{title} (`{pattern}`)"), Group(figures, "charts"), cell_table(cells)]
        out += unranked_warnings(cells, swept(ctx.summary.cells))
    return out


def unranked_warnings(cells: Sequence[Cell], sweep: bool) -> list[Node]:
    """A warning under a table for each reason (:data:`UNRANKED`) some of its cells have; in a
    concurrency sweep (``sweep``) each cell names its level."""
    out: list[Node] = []
    for u in UNRANKED:
        if picked := [c for c in cells if u.marked(c)]:
            text = (
                f"**{u.title}** ({u.who(picked, named, sweep)}, {u.runs}; neither a leak nor an"
                f" error): {u.advice(picked)}. These cells are not ranked."
            )
            out.append(Callout((Paragraph(text),), "warning"))
    return out


def cell_table(cells: Sequence[Cell]) -> Table:
    """One row per cell: throughput with its spread, latency percentiles, errors and leaks, and
    the users the server starved when it starved any."""
    starved, sweep = any(c.starved for c in cells), swept(cells)
    headers = (
        *("mode", "app", "backend", *("users",) * sweep, "leaks", "errors", "requests"),
        *("rps (median)", "spread", "runs", "p50 ms", "p90 ms", "p99 ms", "max ms"),
        *("starved users",) * starved,
    )
    rows = tuple(
        (
            *(c.mode, app_at(c), backend_of(c), *(str(c.concurrency),) * sweep),
            *(_leaks_cell(c.leaks), f"{c.errors:,}"),
            *(f"{c.requests:,}", fmt_rps(c.rps), spread_cell(c.rps_spread, len(c.runs))),
            fmt_runs(c.rps_runs),
            *(fmt_ms(c.latency_ms.get(p)) for p in PERCENTILES),
            *(_starved_cell(c),) * starved,
        )
        for c in cells
    )
    bad, warn = where(cells, lambda c: not c.clean), where(cells, lambda c: c.noisy)
    align = "lll" + "r" * (10 + sweep + starved)
    return Table(headers, rows, align, bad, warn, wrap=frozenset({1, 8 + sweep}))


def _starved_cell(c: Cell) -> str:
    if c.starved is None:
        return "-"
    return f"{c.starved:,} of {c.concurrency:,}" if c.starved and c.concurrency else f"{c.starved}"


def silent_mutants(ctx: Context) -> list[Node]:
    """The cells of a deliberately broken backend that showed no leak, each judged by what the
    expectations model said of it when it ran (:attr:`Cell.expectation`): as expected, by
    chance, or a leak the harness missed, which stands out in a warning of its own."""
    if not ctx.summary.silent_mutants:
        return []
    sweep = swept(ctx.summary.cells)
    items = tuple(
        f"{c.mode} with `{c.backend}`, {pattern_at(c, sweep)}: {c.checked:,} of"
        f" {plural(c.requests, 'request')} checked, no leak. {_silent_because(c)}"
        for c in ctx.summary.silent_mutants
    )
    shown = [c in ctx.summary.missed for c in ctx.summary.silent_mutants]
    out: list[Node] = [Heading("Broken backends that showed no leak")]
    if any(shown):
        head = Paragraph(
            "**⚠ The harness MISSED leaks that must show:** the model says these deliberately"
            f" broken backends leak on every run of their cell. This is {REPORT_IT}."
        )
        picked = tuple(item for item, bad in zip(items, shown, strict=True) if bad)
        out.append(Callout((head, Items(picked)), "warning"))
    if rest := tuple(item for item, bad in zip(items, shown, strict=True) if not bad):
        out.append(Items(rest))
    return out


def _silent_because(c: Cell) -> str:
    """Why a deliberately broken backend's cell showed no leak, from what the run recorded."""
    e = c.expectation
    if too_few_checked(c):
        return "Too few were checked to put the backend to the test: read the server log."
    if e is None:  # not recorded (an older document), or a control the model cannot judge
        return (
            "Either this server and connection pattern cannot expose that bug, or the harness"
            " missed it."
        )
    if not e.can_leak:
        return f"As expected: {model_reason(e)}."
    if e.chance is not None:
        return (
            f"It can leak here only by chance ({e.chance}): {model_reason(e)}. It did not show this"
            " time, which is no fault of the harness."
        )
    if missed(c):
        return (
            f"**MISSED:** the model says it must leak here: {model_reason(e)}. The harness saw"
            " none."
        )
    if c.failed or c.exercised is None:
        why = "the cell ended early"
    else:  # not put to the test (summary.put_to_the_test): its notes say why
        notes = [note.sentence for note in c.exercised.notes(c.concurrency)]
        why = "; ".join(notes) or f"requests never overlapped: {ONE_USER}"
    return (
        f"The model says it can leak here ({model_reason(e)}), but the run did not put that to the"
        f" test: {why}."
    )


def leaks(ctx: Context) -> list[Node]:
    if not ctx.run.cells:  # ctxbench chaos and soak report their leaks in their sections
        return []
    out: list[Node] = [Heading("Leaks")]
    if not ctx.summary.leaked:
        out.append(Paragraph("None: every probe observation matched its request's own token."))
    sweep = swept(ctx.summary.cells)
    for c in ctx.summary.leaked:
        requests = plural(c.requests, "request")
        if c.leaky_requests is not None:
            requests = f"{plural(c.leaky_requests, 'request')} of {c.requests:,}"
        users = [plural(c.concurrency or 0, "user")] * sweep
        cell = " · ".join([c.mode, app_at(c, app_name), backend_of(c), c.connections, *users])
        out.append(Heading(f"{cell}: {plural(c.leaks, 'leak')} in {requests}", 3))
        if c in ctx.summary.false_leaks and c.expectation is not None:
            text = (
                f"**⚠ A leak that cannot happen:** the model says `{c.backend}` cannot leak here:"
                f" {model_reason(c.expectation)}. This is {REPORT_IT}."
            )
            out.append(Callout((Paragraph(text),), "warning"))
        if not c.evidence:
            out.append(Paragraph("No evidence was recorded for this cell."))
            continue
        out += [
            evidence_table(c.evidence[:EVIDENCE_SHOWN]),
            Note(
                f"Showing {min(len(c.evidence), EVIDENCE_SHOWN)} of the"
                f" {plural(len(c.evidence), 'piece')} of evidence recorded in results.json. A leak"
                f" is {A_LEAK_IS}. The run keeps a capped sample of them; the leak count is exact."
            ),
        ]
    return out


def exercised(ctx: Context) -> list[Node]:
    """What each cell exercised (overlap, unit reuse), and where a zero proves little.

    For a server ctxbench did not start (``--target``) this is all there is to say what ran: the
    expectations model cannot know the stack, so the units the probe reported stand in for it.
    """
    pairs = [(c, c.exercised) for c in ctx.summary.cells if c.exercised is not None]
    if not pairs:
        return []
    sweep = swept([c for c, _ in pairs])
    rows = tuple(
        (
            *(label(c), c.connections, *(str(c.concurrency),) * sweep),
            *(f"{seen.processes:,}", f"{seen.threads:,}"),
            *(f"{seen.units:,}", f"{seen.in_flight:.2f}", _overlap_cell(seen)),
            ("yes, across connections" if seen.reused_across_connections else "yes")
            if seen.unit_reused
            else "no",
        )
        for c, seen in pairs
    )
    headers = ("cell", "connections", *("users",) * sweep, "processes", "threads", "units",
               "in flight", "overlap", "unit reused")  # fmt: skip
    out: list[Node] = [
        Heading("What the runs exercised"),
        Note(
            "Read back from the units (pid, OS thread, greenlet) the probe reported: requests in"
            " flight per server process by Little's law (throughput x the view's sleep, over the"
            " processes seen), and whether a unit served more than one request."
        ),
        Table(headers, rows, "ll" + "r" * (4 + sweep) + "ll"),
    ]
    if targets := {c.target: (c, seen) for c, seen in pairs if c.target is not None}:
        said = "; ".join(
            f"{url} (Server: {literal(c.server.effective.get('server') or 'not sent')},"
            f" app {literal(c.app)}, pids {', '.join(map(str, seen.pids))}"
            f"{f' and {seen.more_pids:,} more' * bool(seen.more_pids)})"
            for url, (c, seen) in targets.items()
        )
        out.append(
            Paragraph(
                "Servers ctxbench did not start were checked as they run; what they are comes"
                f" from outside: {said}."
            )
        )
    if weak := tuple(weak_zeros([c for c, _ in pairs], named)):
        out.append(Callout((Paragraph(f"{WEAK_ZEROS_HEAD}:"), Items(weak)), "warning"))
    return out


#: The *overlap* column of a cell whose server never overlaps requests in a process (a sync
#: worker, a pool of one thread): "not shown" would ask for a run that shows it, which none can.
CANNOT_OVERLAP = "never: one at a time"


def _overlap_cell(seen: Exercised) -> str:
    """Whether requests overlapped in a server process: ``yes``, ``not shown``, or
    :data:`CANNOT_OVERLAP` where the server runs one request at a time per process
    (:attr:`~harness.exercised.Exercised.can_overlap`), as the notes under the table say."""
    if seen.overlap:
        return "yes"
    return "not shown" if seen.can_overlap else CANNOT_OVERLAP


def errors(ctx: Context) -> list[Node]:
    sweep = swept(ctx.summary.cells)
    rows = tuple(
        (
            *(c.mode, app_at(c), backend_of(c), c.connections, *(str(c.concurrency),) * sweep),
            *(kind, f"{count:,}"),
        )
        for c in ctx.summary.errored
        if c.errors
        for kind, count in (sorted(c.error_kinds.items()) or [("unclassified", c.errors)])
    )
    if not rows and not ctx.summary.failed:
        return []
    headers = ("mode", "app", "backend", "connections", *("users",) * sweep, "kind", "count")
    out: list[Node] = [Heading("Errors")]
    out += [Table(headers, rows, "llll" + "r" * sweep + "lr")] if rows else []
    for c in ctx.summary.failed:
        who = f"{c.mode} ({app_at(c, app_name)}, {backend_of(c)}, {pattern_at(c, sweep)})"
        out.append(Paragraph(f"**{who} ended early:** {literal(c.error or '')}"))
    return out


def environment(ctx: Context) -> list[Node]:
    """The command, Python, machine, packages and settings, as the results document has them."""
    doc = ctx.run.to_json()
    if ctx.run.settings.targets:  # ctxbench chose none of these: each target's are its own
        doc["settings"].update(dict.fromkeys(("apps", "backends", "modes"), TARGETS_OWN))
    out: list[Node] = [Heading("Environment")]
    if ctx.run.command:
        out.append(Paragraph(f"Command: {code(shlex.join(ctx.run.command))}"))
    out.append(Paragraph(f"Python: {ctx.run.python or 'unknown'}"))
    # A chaos run's knobs (injections, interval, rounds) too: what it takes to run it again.
    keys = {
        "machine": ("Machine", "property"),
        "packages": ("Packages", "package"),
        "settings": ("Settings", "setting"),
        "chaos": ("Chaos settings", "setting"),
    }
    cards = tuple(
        Group((Heading(title, 3), mapping_table(doc[name], key)))
        for name, (title, key) in keys.items()
        if doc.get(name)
    )
    return [*out, Group(cards, "cards")]


def server_config(ctx: Context) -> list[Node]:
    """The effective server configuration, one table per distinct configuration."""
    groups: dict[str, tuple[list[str], Mapping[str, Any]]] = {}
    for c in ctx.summary.cells:
        if c.server.effective:
            users, _ = groups.setdefault(show_json(c.server.effective), ([], c.server.effective))
            name = f"{c.mode} ({app_at(c, app_name)}, {backend_of(c)})"
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
    return Table((key, "value"), rows, "ll", mono=mono)


def _leaks_cell(count: int) -> str:
    return f"{count:,}" + (" LEAK" if count else "")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


#: The report, top to bottom. Add a section here (see the module docstring).
SECTIONS: list[Section] = [
    verdict,
    corpus.corpus_section,
    faults.faults_section,
    faults.soak_section,
    overview,
    patterns,
    load.sweep_section,
    load.driver_section,
    bench.micro_section,
    bench.calibration_section,
    silent_mutants,
    leaks,
    exercised,
    errors,
    environment,
    server_config,
]
