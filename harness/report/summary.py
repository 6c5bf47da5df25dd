"""What a run means, decided once: the verdict, who leaked, the ranking, the terminal table.

Who leaked is read from the evidence: a leaked name the framework owns (``request``, ``g``,
``session``, ``current_app``, a ``residue.`` check, the echoed token, a phase that never ran)
blames the stack, a name the app gave to ``observe()`` blames the app's own state, and a cell
on a deliberately broken backend blames that backend, which is expected to leak.

Ranking rules: a cell that leaked or had errors is never "fastest" (a fast server that returns
another request's data has failed, not won); one median beats another only when the difference
is beyond the noise of both (:func:`beyond_noise`, the rule ``compare`` uses too), otherwise the
modes are reported as tied; no recommendation is made between modes when only one ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.backends import DEFAULT_BACKEND
from harness.protocol import FRAMEWORK_NAMES
from harness.report.model import Entry, Run
from harness.report.tree import (
    Callout,
    Items,
    Node,
    Paragraph,
    Table,
    fmt_ms,
    fmt_pct,
    fmt_rps,
    plural,
    show_json,
    text_table,
)
from harness.results import SPREAD_WARNING

__all__ = [
    "FRAMEWORK_NAMES",
    "JITTER_ADVICE",
    "SPREAD_WARN",
    "Summary",
    "beyond_noise",
    "format_summary",
    "summarize",
]

SPREAD_WARN = SPREAD_WARNING
JITTER_ADVICE = (
    "To reduce jitter: pin the server and the load driver to separate cores (taskset), close"
    " other busy programs, disable CPU frequency scaling or turbo if you can, and raise"
    " --repeats and --duration so each figure is the median of more, longer measurements."
)


def beyond_noise(a: float, b: float, spreads: Iterable[float]) -> bool:
    """True when ``b`` differs from ``a`` by more than the largest of the runs' ``spreads``."""
    return a > 0 and abs(b - a) / a > max(spreads, default=0.0)


def spread_cell(spread: float) -> str:
    """A spread as a percentage, marked with ⚠ above the threshold."""
    return fmt_pct(spread) + (" ⚠" if spread > SPREAD_WARN else "")


def spread_warning(claim: str, figures: Sequence[tuple[str, float]], advice: str) -> list[Node]:
    """A warning box naming each figure whose spread is above the threshold, then the advice."""
    items = tuple(f"{label}: spread {fmt_pct(v)}" for label, v in figures if v > SPREAD_WARN)
    head = Paragraph(f"**⚠ Spread above {fmt_pct(SPREAD_WARN)}{claim}:**")
    return [Callout("warning", (head, Items(items), Paragraph(advice)))] if items else []


def leaked_names(e: Entry) -> tuple[list[str], list[str]]:
    """The framework's and the app's own names in a cell's evidence, each sorted."""
    names = {str(ev.get("name", "")) for ev in e.evidence}
    framework = {n for n in names if n in FRAMEWORK_NAMES or n.startswith("residue.")}
    return sorted(framework), sorted(names - framework)


@dataclass(frozen=True)
class Ranking:
    """The main app's clean cells on the correct storage for one connection pattern."""

    pattern: str
    best: Entry
    tied: tuple[Entry, ...]  # within the noise of the best
    others: tuple[Entry, ...]  # beaten beyond noise


@dataclass(frozen=True)
class Summary:
    """The verdict of a run."""

    leaked: tuple[Entry, ...]
    errored: tuple[Entry, ...]
    noisy: tuple[Entry, ...]
    stack_leaks: tuple[Entry, ...]  # correct storage, the framework's names leaked
    app_leaks: tuple[Entry, ...]  # correct storage, only the app's own names leaked
    mutant_leaks: tuple[Entry, ...]
    silent_mutants: tuple[Entry, ...]  # broken backends that showed no leak
    rankings: tuple[Ranking, ...]
    correct_ran: bool

    @property
    def kind(self) -> str:
        """ "leak", "ok", or "mutant" (only broken backends leaked, or only they ran)."""
        if self.stack_leaks or self.app_leaks:
            return "leak"
        return "ok" if self.correct_ran and not self.mutant_leaks else "mutant"

    @property
    def verdict(self) -> str:
        if self.stack_leaks:
            return "LEAK"
        if self.app_leaks:
            return "LEAK in the app's own state"
        if not self.correct_ran:
            return "no verdict on the correct storage (only broken backends ran)"
        return "OK (only the deliberately broken backends leaked)" if self.mutant_leaks else "OK"


def summarize(run: Run) -> Summary:
    """Decide the verdict, the blame and the ranking of a run."""
    correct = [e for e in run.entries if e.backend == DEFAULT_BACKEND]
    leaked = tuple(e for e in run.entries if e.leaks)
    stack = tuple(e for e in leaked if e.backend == DEFAULT_BACKEND and _blames_stack(e))
    app = tuple(e for e in leaked if e.backend == DEFAULT_BACKEND and not _blames_stack(e))
    rankings = (_ranking(run, p) for p in run.patterns)
    return Summary(
        leaked=leaked,
        errored=tuple(e for e in run.entries if e.errors),
        noisy=tuple(e for e in run.entries if e.rps_spread > SPREAD_WARN),
        stack_leaks=stack,
        app_leaks=app,
        mutant_leaks=tuple(e for e in leaked if e.backend != DEFAULT_BACKEND),
        silent_mutants=tuple(
            e for e in run.entries if e.backend != DEFAULT_BACKEND and not e.leaks
        ),
        rankings=tuple(r for r in rankings if r is not None),
        correct_ran=bool(correct),
    )


def _blames_stack(e: Entry) -> bool:
    framework, app = leaked_names(e)
    return bool(framework) or not app  # no evidence kept: blame the stack, never the app


def _ranking(run: Run, pattern: str) -> Ranking | None:
    main = run.app_labels[0] if run.app_labels else ""
    candidates = sorted(
        (
            e
            for e in run.entries_for(pattern)
            if e.clean and e.app_label == main and e.backend == DEFAULT_BACKEND
        ),
        key=lambda e: (-e.rps, e.mode),
    )
    if len(candidates) < 2:
        return None
    best, rest = candidates[0], candidates[1:]
    tied = tuple(
        e for e in rest if not beyond_noise(e.rps, best.rps, (e.rps_spread, best.rps_spread))
    )
    return Ranking(pattern, best, tied, tuple(e for e in rest if e not in tied))


def headline(run: Run, s: Summary) -> str:
    """What ran and who leaked, in a few sentences."""
    if not run.entries:
        return "No cell was measured in this run."
    out = [_what_ran(run)]
    if s.stack_leaks:
        out.append(
            f"The framework's context leaked with the correct {DEFAULT_BACKEND} storage in"
            f" {len(s.stack_leaks)} of {plural(_count_correct(run), 'cell')}:"
            f" {_list_leaks(s.stack_leaks)}."
        )
    if s.app_leaks:
        out.append(
            "The app's own state, reported through `observe()`, leaked in"
            f" {plural(len(s.app_leaks), 'cell')}: {_list_leaks(s.app_leaks)}; the framework's"
            " request, g, session and current_app held there, so the leak is the app's, not the"
            " context storage's."
        )
    if s.correct_ran and not (s.stack_leaks or s.app_leaks):
        out.append(
            f"No leak with the correct {DEFAULT_BACKEND} storage: every request saw only its own"
            " request, g, session and current_app."
        )
    if not s.correct_ran:
        out.append(f"The correct {DEFAULT_BACKEND} storage did not run.")
    if s.mutant_leaks:
        out.append(f"Deliberately broken backends leaked: {_list_leaks(s.mutant_leaks)}.")
    if s.errored:
        out.append(f"Errors in {plural(len(s.errored), 'cell')}.")
    return " ".join(out)


def recommendation(run: Run, s: Summary) -> str:
    """What to do about it; a choice between modes only when one is beyond noise."""
    out = []
    if s.stack_leaks:
        modes = ", ".join(sorted({e.mode for e in s.stack_leaks}))
        out.append(
            f"This is an isolation bug of the stack under {modes}: do not deploy it until the"
            " evidence below is explained and fixed."
        )
    if s.app_leaks:
        out.append(
            "Fix the app: keep per-request state in the request context (g, request) or in a"
            " ContextVar set and reset per request, not in a module-level dict or a"
            " threading.local."
        )
    if s.mutant_leaks and not s.correct_ran:
        out.append(
            "The harness catches those bugs; run with the default --backend"
            f" {DEFAULT_BACKEND} for a verdict on the correct storage."
        )
    for r in s.rankings:
        if r.tied:
            names = ", ".join(e.mode for e in (r.best, *r.tied))
            out.append(
                f"For {r.pattern} connections {names} are within the spread of their repeats"
                f" (best median {fmt_rps(r.best.rps)} rps): no mode to recommend on speed."
            )
        else:
            out.append(
                f"For {r.pattern} connections use {r.best.mode}: {fmt_rps(r.best.rps)} rps,"
                f" p99 {fmt_ms(r.best.latency.p99)} ms, beyond the noise of the next"
                f" ({r.others[0].mode}, {fmt_rps(r.others[0].rps)} rps)."
            )
    if not s.rankings and len({e.mode for e in run.entries}) == 1:
        out.append("Only one mode ran: there is no choice between modes to make.")
    if s.errored:
        out.append("Cells with errors are not ranked: read their error kinds and the server log.")
    if s.noisy:
        out.append(
            f"{plural(len(s.noisy), 'cell')} {'varies' if len(s.noisy) == 1 else 'vary'} by more"
            f" than {fmt_pct(SPREAD_WARN)} between"
            " repeats; rerun on a quieter machine before trusting small differences."
        )
    return " ".join(out) or "Nothing to recommend."


def _what_ran(run: Run) -> str:
    def some(noun: str, values: Sequence[str]) -> str:
        return f"{noun if len(values) == 1 else noun + 's'} {', '.join(values)}"

    modes = list(dict.fromkeys(e.mode for e in run.entries))
    backends = sorted({e.backend for e in run.entries})
    return (
        f"{plural(len(run.entries), 'cell')} ran: {some('app', run.app_labels)};"
        f" {some('mode', modes)}; {some('backend', backends)};"
        f" {' and '.join(run.patterns)} connections;"
        f" {plural(sum(e.requests for e in run.entries), 'request')} checked."
    )


def _count_correct(run: Run) -> int:
    return sum(e.backend == DEFAULT_BACKEND for e in run.entries)


def _list_leaks(entries: Sequence[Entry]) -> str:
    def one(e: Entry) -> str:
        framework, app = leaked_names(e)
        names = f" ({', '.join(framework + app)})" if framework or app else ""
        return f"{e.mode} ({e.app_label}, {e.backend}, {e.connections}): {e.leaks:,}{names}"

    return "; ".join(one(e) for e in entries)


# -- the terminal ------------------------------------------------------------------------------

EVIDENCE_ON_TERMINAL = 3


def format_summary(run: Run) -> str:
    """The run on a terminal: one row per cell, then up to three pieces of leak evidence."""
    several = len({(e.app_label, e.backend) for e in run.entries}) > 1
    headers = ("app", "backend") * several + (
        "mode", "connections", "server", "requests", "rps", "spread", "p50 ms", "p99 ms",
        "errors", "leaks", "verdict",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for e in run.entries:
        eff = e.effective
        threads = f" t{eff['threads']}" if (eff.get("threads") or 1) > 1 else ""
        rows.append(
            (e.app_label, e.backend) * several
            + (
                e.mode,
                e.connections,
                f"{eff.get('worker_class', '?')} w{eff.get('workers', '?')}{threads}",
                f"{e.requests:,}",
                fmt_rps(e.rps),
                fmt_pct(e.rps_spread) + ("!" if e.rps_spread > SPREAD_WARN else ""),
                fmt_ms(e.latency.p50),
                fmt_ms(e.latency.p99),
                f"{e.errors:,}",
                f"{e.leaks:,}",
                "LEAK" if e.leaks else "errors" if e.errors else "ok",
            )
        )
    align = ("l",) * (3 + 2 * several) + ("r",) * 7 + ("l",)
    out = text_table(Table(headers, tuple(rows), align))
    if any(e.rps_spread > SPREAD_WARN for e in run.entries):
        out.append(
            f"! rps spread above {fmt_pct(SPREAD_WARN)}: the runs disagree, so compare these rates"
            " with care; use a longer --duration, more --repeats or a quieter machine"
        )
    evidence = [(e, ev) for e in run.entries for ev in e.evidence][:EVIDENCE_ON_TERMINAL]
    if evidence:
        out += [
            "",
            "first evidence (a leak is one observation that differed from its request's own"
            " value; one request can hold several):",
        ]
        evidence_rows = tuple(
            (
                *(e.mode, e.connections, str(ev.get("phase")), str(ev.get("name"))),
                *(show_json(ev.get(k)) for k in ("expected", "seen", "worker")),
            )
            for e, ev in evidence
        )
        headers = ("mode", "connections", "phase", "name", "expected", "seen", "worker")
        out += text_table(Table(headers, evidence_rows, ("l",) * 7))
    return "\n".join(out)
