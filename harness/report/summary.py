"""What a run means, decided once and shared by the Markdown and HTML reports.

Ranking rules: an entry that leaked or had errors is never "fastest" (a fast server that returns
another request's data has failed, not won); two entries whose ranges over the repeats overlap
are reported as tied rather than ranked; an entry whose throughput spread is above
:data:`SPREAD_WARN` gets a visible warning with advice on reducing jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.report.model import Entry, Run

__all__ = [
    "JITTER_ADVICE",
    "SPREAD_WARN",
    "FlaskPair",
    "Summary",
    "fmt_ms",
    "fmt_pct",
    "fmt_rps",
    "summarize",
]

SPREAD_WARN = 0.10

JITTER_ADVICE = (
    "To reduce jitter: pin the server and the load driver to separate cores (taskset), close"
    " other busy programs, disable CPU frequency scaling or turbo if you can, and raise"
    " --repeats and --duration so each figure is the median of more, longer measurements."
)


@dataclass(frozen=True)
class FlaskPair:
    """The core and Flask on the same mode, backend and connection pattern."""

    mode: str
    backend: str
    connections: str
    core: Entry
    flask: Entry

    @property
    def rps_ratio(self) -> float:
        """core rps / Flask rps: above 1.0 the core is faster."""
        return self.core.rps / self.flask.rps if self.flask.rps > 0 else 0.0

    @property
    def p99_ratio(self) -> float:
        """core p99 / Flask p99: below 1.0 the core answers faster."""
        return self.core.latency.p99 / self.flask.latency.p99 if self.flask.latency.p99 else 0.0


@dataclass(frozen=True)
class Summary:
    """The verdict of a run."""

    leaked: tuple[Entry, ...]
    errored: tuple[Entry, ...]
    noisy: tuple[Entry, ...]
    fastest: tuple[tuple[str, Entry, tuple[Entry, ...]], ...]  # (pattern, best, tied with best)
    silent_mutants: tuple[Entry, ...]  # broken backends that showed no leak
    flask_pairs: tuple[FlaskPair, ...]
    headline: str
    recommendation: str

    @property
    def ok(self) -> bool:
        """True when nothing running the correct backend leaked."""
        return not any(e.backend == "contextvar" for e in self.leaked)

    @property
    def verdict(self) -> str:
        """One word for the top of the report: LEAK, OK, or OK with the expected mutant leaks."""
        if not self.ok:
            return "LEAK"
        if self.leaked:
            return "OK (only the broken backends leaked)"
        return "OK"


def summarize(run: Run) -> Summary:
    """Decide the verdict line, the ranking and the warnings of a run."""
    leaked = tuple(e for e in run.entries if e.leaks)
    errored = tuple(e for e in run.entries if e.errors)
    noisy = tuple(e for e in run.entries if e.rps_spread > SPREAD_WARN)
    silent = tuple(e for e in run.entries if e.backend != "contextvar" and not e.leaks)
    ranked = tuple(r for r in (_fastest(run, p) for p in run.patterns) if r is not None)
    pairs = tuple(_flask_pairs(run))
    return Summary(
        leaked=leaked,
        errored=errored,
        noisy=noisy,
        fastest=ranked,
        silent_mutants=silent,
        flask_pairs=pairs,
        headline=_headline(run, leaked, errored),
        recommendation=_recommendation(leaked, errored, noisy, ranked),
    )


def _fastest(run: Run, pattern: str) -> tuple[str, Entry, tuple[Entry, ...]] | None:
    # Rank the main app (core when it ran) on the correct backend; mutants and Flask are context.
    labels = run.app_labels
    main = labels[0] if labels else "core"
    candidates = [
        e
        for e in run.entries_for(pattern)
        if e.clean and e.app_label == main and e.backend == "contextvar"
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda e: (-e.rps, e.mode))
    best = candidates[0]
    # Tied: the runner-up's best repeat reached the leader's worst one (the ranges overlap).
    tied = tuple(e for e in candidates[1:] if e.rps_max >= best.rps_min)
    return (pattern, best, tied)


def _flask_pairs(run: Run) -> list[FlaskPair]:
    by_key = {e.key: e for e in run.entries}
    pairs = []
    for e in run.entries:
        if e.app_label != "core":
            continue
        other = by_key.get(("flask", e.backend, e.mode, e.connections))
        if other is not None:
            pairs.append(FlaskPair(e.mode, e.backend, e.connections, e, other))
    return pairs


def _headline(run: Run, leaked: tuple[Entry, ...], errored: tuple[Entry, ...]) -> str:
    if not run.entries:
        return "No measurements in this run."
    correct = [e for e in run.entries if e.backend == "contextvar"]
    real = [e for e in leaked if e.backend == "contextvar"]
    mutant = [e for e in leaked if e.backend != "contextvar"]
    if real:
        rv = (
            f"LEAKS with the correct contextvar storage in {len(real)} of {len(correct)}"
            f" entries: {_list_leaks(real)}."
        )
    elif correct:
        total = sum(e.requests for e in correct)
        rv = (
            f"No leaks with the correct contextvar storage in {len(correct)} entries"
            f" ({total:,} checked requests)."
        )
    else:
        rv = "No entry ran the correct contextvar storage."
    if mutant:
        rv += f" Deliberately broken backends leaked: {_list_leaks(mutant)}."
    if errored:
        rv += f" Errors in {len(errored)} entries."
    return rv


def _list_leaks(entries: list[Entry]) -> str:
    return "; ".join(
        f"{e.mode} ({e.app_label}, {e.backend}, {e.connections}): {e.leaks:,}" for e in entries
    )


def _recommendation(
    leaked: tuple[Entry, ...],
    errored: tuple[Entry, ...],
    noisy: tuple[Entry, ...],
    ranked: tuple[tuple[str, Entry, tuple[Entry, ...]], ...],
) -> str:
    sentences = []
    real = sorted({e.mode for e in leaked if e.backend == "contextvar"})
    if real:
        sentences.append(
            "The correct contextvar storage leaked under "
            + ", ".join(real)
            + ": this is an isolation bug; do not deploy that stack until the evidence below is"
            " explained and fixed."
        )
    elif leaked:
        mutants = sorted({e.backend for e in leaked})
        sentences.append(
            "Only the deliberately broken backends leaked (" + ", ".join(mutants) + "), so the"
            " harness catches those bugs and the default contextvar storage held."
        )
    for pattern, best, tied in ranked:
        if tied:
            names = ", ".join([best.mode] + [e.mode for e in tied])
            sentences.append(
                f"For {pattern} connections {names} are within measurement noise of each other"
                f" (best median {fmt_rps(best.rps)} rps); choose among them on other grounds."
            )
        else:
            sentences.append(
                f"For {pattern} connections use {best.mode}: {fmt_rps(best.rps)} rps,"
                f" p99 {fmt_ms(best.latency.p99)} ms."
            )
    if errored:
        sentences.append(
            "Entries with errors are not ranked: read their error kinds and the server log first."
        )
    if noisy:
        sentences.append(
            f"{len(noisy)} entries vary by more than {fmt_pct(SPREAD_WARN)} between repeats;"
            " rerun on a quieter machine before trusting small differences."
        )
    return " ".join(sentences) or "Nothing to recommend: no entry ran cleanly."


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_pct(value: float) -> str:
    return f"{value * 100:.0f}%" if abs(value) >= 0.095 else f"{value * 100:.1f}%"
