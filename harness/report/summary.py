"""What a run means, decided once: the verdict, who leaked, the ranking, the terminal table.

Who leaked is read from the evidence: a name the framework owns
(:data:`harness.protocol.FRAMEWORK_NAMES`, the probe's own ``residue.`` checks among them) blames
the stack; a name the app gave to ``observe()`` (its own ``residue.`` checks too) blames the
app's own state; a cell on a deliberately broken backend
blames that backend, which is expected to leak.

Ranking rules: a cell that leaked or had errors is never "fastest" (a fast server that returns
another request's data has failed, not won), nor is a cell whose server starved some of its
virtual users (:mod:`harness.load.fairness`: its throughput is only the served users'), nor is
a keep-alive cell that waited on the client's delayed ACKs (:mod:`harness.load.acks`: its
throughput is the ACK timer's); one
median beats another only when the difference is beyond the noise of both
(:func:`beyond_noise`), otherwise the modes are tied; a
driver-bound cell is never beaten, because its rate is the driver's, a lower bound of its
server's; in a concurrency sweep modes are ranked level by level, under the same load; there is
no recommendation between modes when only one ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.apps import mounted
from harness.benchdata import Benchmarks
from harness.exercised import CLOSED_SHARE
from harness.load.acks import DELAYED_ACK_ADVICE, STALL_MAX_NS, STALL_MIN_NS
from harness.load.cpu import DRIVER_BOUND_ADVICE
from harness.load.fairness import starved_advice
from harness.load.http import MAX_BODY
from harness.load.spec import CONNECTION_PATTERNS
from harness.load.tokens import carried_by_no_request
from harness.protocol import CONTEXT_NAMES, DEFAULT_BACKEND, app_observation_names
from harness.report.text import (
    app_name,
    code,
    fmt_counts,
    fmt_ms,
    fmt_pct,
    fmt_rps,
    literal,
    plural,
    show_json,
    spread_cell,
)
from harness.report.tree import Table, text_table
from harness.results import SPREAD_WARNING, Cell, LeakExpectation, Run, median
from harness.verdict import Evidence

EVIDENCE_ON_TERMINAL = 3
#: What a leak is, said over the evidence on the terminal and in the report.
A_LEAK_IS = "one observation that differed from what it must be; one request can hold several"

#: A cell on the correct storage gets a "no leak" verdict only when at least this share of its
#: requests (those not made to fail on purpose) was checked: when most of them failed before
#: an answer (reset, refused, timed out), the cell measured the failures, not the isolation.
MIN_CHECKED_SHARE = 0.5


def beyond_noise(a: float, b: float, spreads: Iterable[float]) -> bool:
    """True when ``b`` differs from ``a`` by more than the largest of the runs' ``spreads``."""
    return a > 0 and abs(b - a) / a > max(spreads, default=0.0)


def app_at(c: Cell, show: Callable[[str], str] = str) -> str:
    """A cell's app, ``show``n (:func:`~harness.report.text.app_name` in a sentence of the
    report), with the prefix it was checked under when that is not the root
    (:func:`~harness.apps.mounted`): one dispatcher's app at ``/api`` and its app at
    ``/admin`` are other apps, and two cells that differ only there must not read the same. A
    target's prefix is in its mode already (``target:127.0.0.1:8080/api``)."""
    return mounted(show(c.app_label), "/" if c.target is not None else c.server.mount)


def extras(c: Cell, show: Callable[[str], str] = str) -> list[str]:
    """A cell's app (:func:`app_at`) and backend, each only when it is not the default (core
    at the root, contextvar)."""
    app = app_at(c, show)
    return [app] * (app != "core") + [c.backend] * (c.backend != DEFAULT_BACKEND)


#: What ran for a server ctxbench did not start (``--target``): its context storage, its app and
#: its server are its own, which ctxbench neither chose nor can know.
TARGETS_OWN = "target's own"


def backend_of(c: Cell) -> str:
    """A cell's backend as the report and the terminal name it: of a server ctxbench did not
    start (``--target``), :data:`TARGETS_OWN`."""
    return TARGETS_OWN if c.target is not None else c.backend


def swept(cells: Sequence[Cell]) -> bool:
    """The cells ran at more than one concurrency (``--concurrency 1,8,32``): a mode has a cell
    at each level, and a list of them names the level too, or its rows would read the same."""
    return len({c.concurrency for c in cells}) > 1


def pattern_at(c: Cell, sweep: bool) -> str:
    """``keepalive``, or in a concurrency sweep (``sweep``: :func:`swept` of every cell of the
    run, never of the cells listed, which may all be of one level) ``keepalive @16``: a cell's
    connection pattern for a list of cells, which names each cell once."""
    return f"{c.connections}{f' @{c.concurrency}' * sweep}"


def label(c: Cell) -> str:
    """A short name for a cell: its mode, plus app and backend when they are not the default."""
    return " · ".join([c.mode, *extras(c)])


def named(c: Cell) -> str:
    """:func:`label` for a sentence of the report: a user's app as code (:func:`app_name`), so
    that Markdown shows its name as it is."""
    return " · ".join([c.mode, *extras(c, app_name)])


#: How a list of cells names each one: :func:`label` on the terminal, :func:`named` in the report.
Namer = Callable[[Cell], str]


def status(c: Cell) -> str:
    """One word for a cell: "LEAK", "FAILED" (the server died), "MISSED" (a deliberately broken
    backend showed no leak where it must: :func:`missed`), "errors" or "ok"."""
    if c.leaks or c.failed:
        return "LEAK" if c.leaks else "FAILED"
    return "MISSED" if missed(c) else "errors" if c.errors else "ok"


def too_few_checked(c: Cell) -> bool:
    """Fewer than :data:`MIN_CHECKED_SHARE` of the cell's requests were checked (every one, when
    it sent none), not counting those made to fail on purpose (``--fail-phase``): no "no leak"
    verdict can rest on it. A cell whose every request was made to fail is judged by the
    requests after them, as it always was."""
    judged = c.requests - c.injected
    if judged <= 0:
        return c.injected == 0
    return c.checked < judged * MIN_CHECKED_SHARE


def missed(c: Cell) -> bool:
    """The harness missed a leak in ``c``: its deliberately broken backend showed none where the
    expectations model, as recorded when the cell ran (:attr:`Cell.expectation`), says every run
    shows one, and the cell was put to the test (:func:`put_to_the_test`). A negative control
    that misses is a ctxbench bug, not a property of the server."""
    e = c.expectation
    return (
        e is not None
        and e.can_leak
        and e.chance is None
        and not (c.leaks or c.failed or too_few_checked(c))
        and put_to_the_test(c)
    )


def put_to_the_test(c: Cell) -> bool:
    """The run of ``c`` did what the expectations model takes for granted of a mode run as the
    harness runs it: requests answered, several virtual users (one never overlaps requests), an
    execution unit that served two of them, and under ``keepalive`` connections the server kept
    alive. The caveats of :meth:`~harness.exercised.Exercised.notes` about *proving* overlap or
    reuse (a lower bound of requests in flight, greenlet ids or pids a later unit can take) do
    not count against it: they weaken a zero on the correct storage, not a leak that must show.
    """
    seen = c.exercised
    if seen is None or seen.answered == 0 or c.concurrency == 1 or not seen.unit_reused:
        return False
    return seen.reconnects is None or seen.reconnects < seen.answered * CLOSED_SHARE


def false_leak(c: Cell) -> bool:
    """``c``'s deliberately broken backend leaked where the expectations model, as recorded
    when the cell ran, says it cannot: a leak that cannot happen, a ctxbench bug."""
    return c.leaks > 0 and c.expectation is not None and not c.expectation.can_leak


#: What to do about a negative control that did not come out as the model says.
REPORT_IT = "a ctxbench bug: report it with this run's results.json"


def leaked_names(c: Cell) -> tuple[list[str], list[str]]:
    """The framework's and the app's own names in a cell's evidence, each sorted."""
    names = {ev.name for ev in c.evidence}
    app = app_observation_names(names)
    return sorted(names - set(app)), app


def framework_leaked(c: Cell) -> bool:
    """Whether the framework's own state leaked in ``c``: of every leak, where the run counted
    them (``Cell.framework_leaks``), else of the first few, its evidence."""
    if c.framework_leaks is not None:
        return c.framework_leaks > 0
    return bool(leaked_names(c)[0])


def only_mixed_up(c: Cell) -> bool:
    """Whether every answer in ``c``'s evidence (some kept) echoed a token not its request's
    (the ``token`` piece, each answer's first) and differs only where such an answer would: a
    proxy, server or cache answering one request with another's response shows a token not its
    own everywhere, so the evidence cannot tell that from a context leak. A value that differs
    in an answer that echoed its own request's token, a residue check's, or ``current_app``'s,
    shows the context leaking inside the request that made the answer, whichever it was."""
    mixed_up = {ev.expected for ev in c.evidence if ev.name == "token"}
    return bool(c.evidence) and all(
        ev.name == "token" or ev.expected in mixed_up for ev in c.evidence
    )


@dataclass(frozen=True)
class Ranking:
    """The main app's clean cells on the correct storage for one connection pattern (and in a
    concurrency sweep one level: modes are compared under the same load, never a mode with
    itself at another level)."""

    pattern: str
    best: Cell
    tied: tuple[Cell, ...]  # within the noise of the best
    others: tuple[Cell, ...]  # beaten beyond noise


@dataclass(frozen=True)
class Summary:
    """The verdict of a run, and its cells in report order (pattern, app, backend, mode)."""

    cells: tuple[Cell, ...]
    patterns: tuple[str, ...]
    apps: tuple[str, ...]  # app labels, the main app (ranked, summarised) first
    leaked: tuple[Cell, ...]
    errored: tuple[Cell, ...]  # errors, or ended early
    failed: tuple[Cell, ...]  # ended early: the server died (Cell.error)
    deaths: int  # how many times a server died: fewer than the failed cells after a target's
    noisy: tuple[Cell, ...]
    stack_leaks: tuple[Cell, ...]  # correct storage, the framework's names leaked
    app_leaks: tuple[Cell, ...]  # correct storage, only the app's own names leaked
    mutant_leaks: tuple[Cell, ...]
    answered: tuple[Cell, ...]  # correct storage, the app answered in the probe's place: unchecked
    silent_mutants: tuple[Cell, ...]  # broken backends that showed no leak
    missed: tuple[Cell, ...]  # of those, the ones that must have leaked (:func:`missed`)
    false_leaks: tuple[Cell, ...]  # broken backends that leaked where they cannot
    rankings: tuple[Ranking, ...]
    #: Every cell was measured (the run's status is ``complete``): an interrupted run's "OK" is
    #: only of the cells it measured, and says "so far".
    complete: bool = True

    @property
    def main(self) -> str:
        """The main app's label (ranked, summarised); ``""`` when no cell ran."""
        return self.apps[0] if self.apps else ""

    @property
    def correct(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.backend == DEFAULT_BACKEND)

    @property
    def own_stack(self) -> bool:
        """Every cell on the default backend ran on a server ctxbench did not start
        (``--target``), whose context storage it cannot know."""
        return bool(self.correct) and all(c.target is not None for c in self.correct)

    @property
    def storage(self) -> str:
        """What the cells on the default backend ran on, for a sentence: ``the correct
        contextvar storage``, or a target's own stack (:attr:`own_stack`)."""
        if not self.own_stack:
            return f"the correct {DEFAULT_BACKEND} storage"
        several = len({c.target for c in self.correct}) > 1
        return "the targets' own stacks" if several else "the target's own stack"

    @property
    def verdict(self) -> tuple[str, str]:
        """The verdict's words, and its kind (the box's colour): "leak", "failed" (a server
        died, a negative control not as expected), "ok", "warning" (OK so far: a run stopped
        before every cell was measured), or "mutant" (only broken backends leaked, or only they
        ran)."""
        if self.stack_leaks or self.app_leaks:
            return "LEAK" if self.stack_leaks else "LEAK in the app's own state", "leak"
        if self.failed:
            failed = plural(len(self.failed), "cell")
            died = "a server died" if self.deaths == 1 else f"{self.deaths} server deaths"
            return f"FAILED: {died}, {failed} not measured to the end", "failed"
        if not self.cells:
            return "nothing measured", "mutant"
        if self.answered:  # an auth hook, a rate limiter: no verdict on what it answered
            who = ANSWERED_BY[answered_by(self.answered)][0]
            return f"NONE: {who} answered requests in the probe's place", "failed"
        if self.unchecked:
            return "NONE: most requests got no answer that could be checked", "failed"
        if self.missed or self.false_leaks:
            # The harness is blind or wrong somewhere: no "OK" rests on it.
            what = [
                *["the harness missed a leak a deliberately broken backend must show"]
                * bool(self.missed),
                *["a deliberately broken backend leaked where it cannot"] * bool(self.false_leaks),
            ]
            return f"negative controls NOT as expected: {' and '.join(what)}", "failed"
        if not self.correct:
            return "no verdict on the correct storage (only broken backends ran)", "mutant"
        # A run stopped early is no pass: what it did not measure was not checked.
        so_far = "" if self.complete else " so far"
        if self.mutant_leaks:
            return f"OK{so_far} (only the deliberately broken backends leaked)", "mutant"
        return f"OK{so_far}", "ok" if self.complete else "warning"

    @property
    def unchecked(self) -> tuple[Cell, ...]:
        """Cells measured to the end that did not leak, with too few requests checked
        (:func:`too_few_checked`): on the correct storage no "no leak" verdict rests on them, and
        a deliberately broken backend there was never put to the test (a negative control that
        checked nothing proves nothing)."""
        return tuple(c for c in self.cells if not (c.failed or c.leaks) and too_few_checked(c))

    def for_pattern(self, pattern: str) -> list[Cell]:
        return [c for c in self.cells if c.connections == pattern]


@dataclass(frozen=True)
class Context:
    """What every section of the report (:mod:`harness.report.sections`) reads: the run, its
    verdict, and the benchmark files beside it."""

    run: Run
    summary: Summary
    bench: Benchmarks


def summarize(run: Run) -> Summary:
    """Order the cells and decide the verdict, the blame and the ranking of a run."""
    patterns = _ordered({c.connections for c in run.cells}, CONNECTION_PATTERNS)
    apps = _ordered({c.app_label for c in run.cells}, ("core", "flask"))
    cells = sorted(
        run.cells,
        key=lambda c: (patterns.index(c.connections), apps.index(c.app_label), c.backend, c.mode),
    )
    leaked = [c for c in cells if c.leaks]
    correct_leaks = [c for c in leaked if c.backend == DEFAULT_BACKEND]
    app_only = [c for c in correct_leaks if leaked_names(c)[1] and not framework_leaked(c)]
    levels = sorted({c.concurrency or 0 for c in cells})
    rankings = (_ranking(cells, apps[0] if apps else "", p, n) for p in patterns for n in levels)
    return Summary(
        cells=tuple(cells),
        patterns=tuple(patterns),
        apps=tuple(apps),
        leaked=tuple(leaked),
        errored=tuple(c for c in cells if c.errors or c.failed),
        failed=tuple(c for c in cells if c.failed),
        deaths=server_deaths(run.cells),
        noisy=tuple(c for c in cells if c.noisy),
        stack_leaks=tuple(c for c in correct_leaks if c not in app_only),
        app_leaks=tuple(app_only),
        mutant_leaks=tuple(c for c in leaked if c.backend != DEFAULT_BACKEND),
        answered=tuple(c for c in cells if c.backend == DEFAULT_BACKEND and c.not_probe_answers),
        silent_mutants=tuple(c for c in cells if c.backend != DEFAULT_BACKEND and not c.leaks),
        missed=tuple(c for c in cells if c.backend != DEFAULT_BACKEND and missed(c)),
        false_leaks=tuple(c for c in leaked if c.backend != DEFAULT_BACKEND and false_leak(c)),
        rankings=tuple(r for r in rankings if r is not None),
        complete=run.status == "complete",
    )


def _ordered(values: set[str], first: Sequence[str]) -> list[str]:
    return [v for v in first if v in values] + sorted(values - set(first))


def _ranking(cells: Sequence[Cell], main: str, pattern: str, level: int) -> Ranking | None:
    key = (pattern, main, DEFAULT_BACKEND, level)
    candidates = [
        c
        for c in cells
        if c.clean
        and not (c.starved or c.delayed_acks)
        and (c.connections, c.app_label, c.backend, c.concurrency or 0) == key
    ]
    candidates.sort(key=lambda c: (-c.rps, c.mode))
    if len(candidates) < 2:
        return None
    best, rest = candidates[0], candidates[1:]
    # A driver-bound cell's rate is the driver's, a lower bound of its server's: never beaten.
    # A cell measured once (--repeats 1) has no spread, so no difference is beyond its noise.
    tied = [
        c
        for c in rest
        if c.driver_bound
        or measured_once(c)
        or measured_once(best)
        or not beyond_noise(c.rps, best.rps, (c.rps_spread, best.rps_spread))
    ]
    return Ranking(pattern, best, tuple(tied), tuple(c for c in rest if c not in tied))


def measured_once(c: Cell) -> bool:
    """``c`` was measured once (``--repeats 1``): its spread of 0 says nothing of the noise."""
    return len(c.runs) < 2


def headline(s: Summary) -> str:
    """What ran and who leaked, in a few sentences."""
    if not s.cells:
        return "No cell was measured in this run."
    out, sweep = [_what_ran(s)], swept(s.cells)
    if shown := [c for c in s.stack_leaks if not only_mixed_up(c)]:
        out.append(
            f"The framework's context leaked {_with(s)} in"
            f" {len(shown)} of {plural(len(s.correct), 'cell')}: {_list_leaks(shown, sweep)}."
        )
    if unsure := [c for c in s.stack_leaks if c not in shown]:
        out.append(
            f"Requests saw values not their own {_with(s)} in"
            f" {len(unsure)} of {plural(len(s.correct), 'cell')}: {_list_leaks(unsure, sweep)};"
            " every answer kept as evidence echoed a token not its request's, which a context leak"
            " and a response mix-up (a proxy, the server or a cache answering one request with"
            " another's response) both do, so the evidence cannot tell which."
        )
    if s.app_leaks:
        out.append(
            "The app's own state, reported through `observe()`, leaked in"
            f" {plural(len(s.app_leaks), 'cell')}: {_list_leaks(s.app_leaks, sweep)}; the"
            f" framework's {_and(_framework_checked(s))} held there, so the leak is the app's, not"
            " the context storage's."
        )
    if s.answered:
        out.append(
            f"{plural(sum(c.not_probe_answers for c in s.answered), 'request')} got an answer"
            f" that was not the probe's, in {app_answers(s.answered, sweep, named)}:"
            f" {not_probe_answers(s.answered)}."
        )
    elif s.unchecked:
        out.append(
            "Most requests were never checked in"
            f" {unchecked_cells(s.unchecked, sweep, named)}: they {unanswered(s.unchecked)}, so"
            " nothing can be said of them; read the server log for why."
        )
    judged = not any(c.backend == DEFAULT_BACKEND for c in s.unchecked)
    if s.correct and judged and not (s.stack_leaks or s.app_leaks or s.answered):
        out.append(f"No leak {_with(s)}: every request saw only its own values.")
    if not s.correct:
        out.append(f"The correct {DEFAULT_BACKEND} storage did not run.")
    if s.mutant_leaks:
        out.append(f"Deliberately broken backends leaked: {_list_leaks(s.mutant_leaks, sweep)}.")
    if s.missed:
        out.append(
            f"The harness MISSED leaks in {plural(len(s.missed), 'cell')} where the"
            " deliberately broken backend must leak: "
            + "; ".join(f"{_cell_of(c, sweep)}: {model_reason(c.expectation)}" for c in s.missed)
            + f". That is {REPORT_IT}; until it is fixed, a zero elsewhere proves less than it"
            " says."
        )
    if s.false_leaks:
        out.append(
            f"Deliberately broken backends leaked where they cannot, in"
            f" {plural(len(s.false_leaks), 'cell')}: "
            + "; ".join(
                f"{_cell_of(c, sweep)}: {model_reason(c.expectation)}" for c in s.false_leaks
            )
            + f". A leak that cannot happen is {REPORT_IT}."
        )
    if unknown := unknown_values(s.leaked):
        out.append(f"{UNKNOWN_VALUES[0].upper()}{UNKNOWN_VALUES[1:]}: {_some(unknown, code)}.")
    if s.failed:
        n = len(s.failed)
        out.append(
            (
                "The server died on its own"
                if s.deaths == 1
                else f"Servers died on their own {s.deaths} times"
            )
            + f", and {plural(n, 'cell')} {'was' if n == 1 else 'were'} not measured to the end"
            f" ({_after_a_death(s.failed)}): "
            + "; ".join(
                f"{named(c)}, {pattern_at(c, sweep)}: {literal(c.error or '')}" for c in s.failed
            )
            + "."
        )
    if with_errors := [c for c in s.errored if c.errors]:  # a death without errors is said above
        out.append(f"Errors in {plural(len(with_errors), 'cell')}.")
    return " ".join(out)


#: What a value no request of the run carried says, over the values (:func:`unknown_values`).
UNKNOWN_VALUES = (
    "the evidence holds values that no request of this run carried, so not another request's"
    " live state: what answered kept them from before the run (a cache in front of the app, a"
    " process of an earlier run?) or made them up; each is a leak all the same, as a request saw"
    " a value that is not its own"
)


def unknown_values(cells: Sequence[Cell]) -> list[str]:
    """The values of ``cells``' evidence, each once, that no request of the run carried
    (:func:`harness.load.tokens.carried_by_no_request`), as JSON."""
    return list(
        dict.fromkeys(
            show_json(ev.seen)
            for c in cells
            for ev in c.evidence
            if carried_by_no_request(ev.expected, ev.seen)
        )
    )


def _some(values: Sequence[str], show: Callable[[str], str] = str, most: int = 3) -> str:
    """The first ``most`` of ``values``, shown, and how many more there are."""
    more = f" and {len(values) - most:,} more" if len(values) > most else ""
    return ", ".join(map(show, values[:most])) + more


def server_deaths(cells: Sequence[Cell]) -> int:
    """How many times a server died on its own in ``cells``, a run's in the order they ran.

    A server ctxbench started is replaced after it dies, so each failed cell is a death of its
    own. A target (``--target``) is not: the cells after its death fail at their start, so a
    failed cell of a target right after its failed cell is the same death, not another (one
    killed during its keepalive cell failed that cell and the fresh one: one death, 2 cells)."""
    deaths = 0
    failed_last: dict[str, bool] = {}  # per target: whether its previous cell failed
    for c in cells:
        if c.failed and not (c.target is not None and failed_last.get(c.target, False)):
            deaths += 1
        if c.target is not None:
            failed_last[c.target] = c.failed
    return deaths


def _died(deaths: int) -> str:
    """``the server died`` once, ``servers died 3 times``."""
    return "the server died" if deaths == 1 else f"servers died {deaths} times"


def _after_a_death(failed: Sequence[Cell]) -> str:
    """What ran the cells after a failed one: a new server, unless every failed cell's was a
    server ctxbench did not start (``--target``), which it cannot restart."""
    if all(c.target is not None for c in failed):
        return "a target is not restarted: the cells after it failed at their start"
    return "a new server ran the cells after"


def recommendation(s: Summary) -> str:
    """What to do about it; a choice between modes only when one is beyond noise."""
    out = []
    if s.stack_leaks:
        modes = ", ".join(sorted({c.mode for c in s.stack_leaks}))
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
    if s.mutant_leaks and not s.correct:
        out.append(
            "The harness catches those bugs; run with the default --backend"
            f" {DEFAULT_BACKEND} for a verdict on the correct storage."
        )
    sweep = swept(s.cells)

    for r in s.rankings:
        # In a sweep a mode ranks once per level, among the modes under the same load: the lead
        # names the level in words, once ("use gunicorn-sync @2" read as a setting of the mode).
        lead = f"For {r.pattern} connections"
        if sweep:
            lead += f" at {plural(r.best.concurrency or 0, 'virtual user')},"
        if once := [c for c in (r.best, *r.tied) if measured_once(c)]:
            if len(once) == 1 + len(r.tied):
                who = "each mode was"
            else:
                who = f"{', '.join(c.mode for c in once)} {'was' if len(once) == 1 else 'were'}"
            out.append(
                f"{lead} {r.best.mode} has the best median"
                f" ({fmt_rps(r.best.rps)} rps), but {who} measured once (--repeats 1), which says"
                " nothing of the noise: no mode to recommend on speed; run --repeats 3 or more"
                " to choose."
            )
        elif bound := [c.mode for c in r.tied if c.driver_bound]:
            close = [c.mode for c in r.tied if not c.driver_bound]
            out.append(
                f"{lead} {r.best.mode} has the best median"
                f" ({fmt_rps(r.best.rps)} rps), but {', '.join(bound)}"
                f" {'was' if len(bound) == 1 else 'were'} driver-bound (the rate is the"
                " driver's, a lower bound of the server's)"
                + (f" and {', '.join(close)} within the spread of the repeats" if close else "")
                + ": no mode to recommend on speed."
            )
        elif r.tied:
            out.append(
                f"{lead} {', '.join(c.mode for c in (r.best, *r.tied))} are"
                f" within the spread of their repeats (best median {fmt_rps(r.best.rps)} rps):"
                " no mode to recommend on speed."
            )
        else:
            out.append(
                f"{lead} use {r.best.mode}: {fmt_rps(r.best.rps)} rps,"
                f" p99 {fmt_ms(r.best.latency_ms.p99)} ms, beyond the noise of the next"
                f" ({r.others[0].mode}, {fmt_rps(r.others[0].rps)} rps)."
            )
    if not s.rankings and len({c.mode for c in s.cells}) == 1:
        stopped = " before the run stopped" * (not s.complete)
        out.append(f"Only one mode ran{stopped}: there is no choice between modes to make.")
    if s.errored:
        out.append("Cells with errors are not ranked: read their error kinds and the server log.")
    for u in UNRANKED:
        if picked := [c for c in s.cells if u.marked(c)]:
            who = u.who(picked, named, sweep)
            out.append(f"{u.cells} are not ranked ({who}): {u.advice(picked)}.")
    if s.failed:
        out.append(
            "Find out why the server died (its log says) before trusting a verdict: its cell"
            " stopped early, so what it did not measure was not checked."
        )
    if s.noisy:
        n = len(s.noisy)
        out.append(
            f"{plural(n, 'cell')} {'varies' if n == 1 else 'vary'} by more than"
            f" {fmt_pct(SPREAD_WARNING)} between repeats; rerun on a quieter machine before"
            " trusting small differences."
        )
    return " ".join(out) or "Nothing to recommend."


def app_answers(cells: Sequence[Cell], sweep: bool, name: Namer = label) -> str:
    """``gunicorn-gthread, fresh (18,129 x 429)``, for each of ``cells`` (cells whose app answered
    probe requests itself, :attr:`~harness.results.Cell.not_probe_answers`), with its statuses;
    in a concurrency sweep (``sweep``) with its level (:func:`pattern_at`)."""
    return "; ".join(f"{name(c)}, {pattern_at(c, sweep)}{_times(c.error_statuses)}" for c in cells)


#: The statuses a gateway answers in the place of the server behind it, when that gave no valid
#: answer (502) or none in time (504), RFC 9110 (15.6.3, 15.6.5): a proxy's, not the app's.
GATEWAY_STATUSES = frozenset({"502", "504"})

#: Who answered in the probe's place (:func:`answered_by`): in short, in full, what to do.
ANSWERED_BY = {
    "gateway": (
        "a proxy",
        "a proxy in front of the app answered them, the server behind it having given it no"
        " valid answer (502) or none in time (504)",
        "the proxy's log and the app server's say why",
    ),
    "unavailable": (
        "a proxy or the app",
        "a proxy in front of the app or the app refused them as unavailable (503: nginx's"
        " limit_req and limit_conn answer it, as does a balancer with no server to send to, or"
        " an app in maintenance)",
        "the proxy's log says whether it was the proxy; raise its limits for the run or let"
        " probe requests through",
    ),
    "failed": (
        "the app",
        "the app failed on them (an exception in a hook or the view?)",
        "the server log says why",
    ),
    "app": (
        "the app",
        "the app answered them itself (an auth hook, a login redirect, a rate limiter?)",
        "let probe requests through the app's hooks and middleware (README, 'Auth hooks and"
        " middleware')",
    ),
}


def answered_by(cells: Sequence[Cell]) -> str:
    """Who answered ``cells``' probe requests in the probe's place, from the statuses: a proxy
    (every one a gateway's), a proxy or the app (5xx, some 503, which both send), the app failing
    (other 5xx), or the app itself (an auth hook's 401, a redirect, a 429)."""
    counts = [(k, n) for c in cells for k, n in c.error_statuses.items() if n]
    statuses = {k for k, _ in counts}
    # A 2xx that was not the probe's (``protocol``) has no status here: the app sent it.
    if not statuses or sum(n for _, n in counts) != sum(c.not_probe_answers for c in cells):
        return "app"
    if statuses <= GATEWAY_STATUSES:
        return "gateway"
    if all(k.startswith("5") for k in statuses):
        return "unavailable" if "503" in statuses else "failed"
    return "app"


def not_probe_answers(cells: Sequence[Cell]) -> str:
    """Who answered ``cells``' probe requests in the probe's place, and what to do about it."""
    _, who, advice = ANSWERED_BY[answered_by(cells)]
    return f"{who}, so they were never checked and no verdict is given; {advice}"


#: An ``http`` error (:data:`harness.load.ERROR_KINDS`) in words, blaming the layer it comes
#: from.
NOT_HTTP = (
    "an answer that is not HTTP/1.x ctxbench can read (a head that is not one, a body over"
    f" {MAX_BODY >> 20} MiB, bytes past its end), which is the server's doing or a proxy's in"
    " front of it, not the app's"
)


def unanswered(cells: Sequence[Cell]) -> str:
    """How the requests of ``cells`` that were not checked (:func:`too_few_checked`) failed:
    ``"failed before an answer came"`` (reset, refused, timed out), or they got
    :data:`NOT_HTTP`."""
    kinds = {k for c in cells for k, n in c.error_kinds.items() if n}
    if "http" not in kinds:
        return "failed before an answer came"
    return ("failed before an answer came or got " if kinds - {"http"} else "got ") + NOT_HTTP


def unchecked_cells(cells: Sequence[Cell], sweep: bool, name: Namer = label) -> str:
    """``werkzeug-threaded, fresh: 0 of 474 requests checked (474 x reset)``, for each cell; in a
    concurrency sweep (``sweep``) with its level (:func:`pattern_at`)."""
    return "; ".join(
        f"{name(c)}, {pattern_at(c, sweep)}: {c.checked:,} of"
        f" {plural(c.requests - c.injected, 'request')} checked{_times(c.error_kinds)}"
        for c in cells
    )


def _times(counts: Mapping[str, int]) -> str:
    """`` (474 x reset, 3 x timeout)``: the counts that are not 0; ``""`` when none is."""
    listed = fmt_counts(counts)
    return f" ({listed})" * bool(listed)


def weak_zeros(cells: Sequence[Cell], name: Namer = label) -> list[str]:
    """``gunicorn-sync keepalive (2,984 times in 3,000 answered requests), uwsgi-processes
    keepalive (...): the server closed the connection after ...``: each note of
    :meth:`~harness.exercised.Exercised.notes` once, after the clean cells it holds for, each
    with its figure: where their zero proves little. A cell that leaked or failed has said more
    than the note would. In a concurrency sweep each cell names its level (``@8``), as the
    driver section does."""
    sweep = swept(cells)
    held: dict[str, list[str]] = {}
    for c in cells:
        if c.clean and c.exercised is not None:
            who = f"{name(c)} {pattern_at(c, sweep)}"
            for note in c.exercised.notes(c.concurrency):
                held.setdefault(note.sentence, []).append(
                    f"{who} ({note.figure})" if note.figure else who
                )
    return [f"{', '.join(who)}: {sentence}." for sentence, who in held.items()]


@dataclass(frozen=True)
class Unranked:
    """A reason a cell's figures are not its server's speed: neither a leak nor an error, but the
    cell is never ranked. The terminal, the recommendation and the report's warnings say it."""

    marked: Callable[[Cell], object]  # the cells it holds for
    mark: str  # beside such a cell's figure on the terminal
    title: str
    cells: str  # the cells it holds for, in a sentence
    count: Callable[[Cell], str]  # how much of a cell it holds for: "14 of 16 users"
    runs: str  # over which runs that is counted
    advice: Callable[[Sequence[Cell]], str]  # what to do about the cells it holds for

    def who(self, cells: Sequence[Cell], name: Namer, sweep: bool) -> str:
        """``uwsgi-processes, keepalive: 14 of 16 users``, for each of ``cells``; in a
        concurrency sweep (``sweep``: :func:`swept` of the whole run, as ``cells`` may all be
        of one level) each names its level (``@16``), as the other lists of cells do."""
        return "; ".join(f"{name(c)}, {pattern_at(c, sweep)}: {self.count(c)}" for c in cells)


def starved_cause(c: Cell) -> str:
    """The likely cause, a key of :data:`~harness.load.fairness.STARVED_CAUSES`, of the users
    ``c``'s server starved, from what the run recorded of its server
    (:attr:`~harness.results.ServerInfo.connections`): the connections its server process saw
    (behind a proxy, the proxy's), whether a kept-alive connection held its execution unit, and
    how many such connections it served at once, when it bounds them.
    A cell without them (a ``--target``'s, or one written before they were recorded) gets its
    connection pattern's."""
    seen = c.server.connections
    if seen is None:
        return c.connections
    if seen.pattern == "fresh":
        return "fresh"
    # The server sees a connection per user, or behind a proxy at most one per user.
    if seen.connection_limit is not None and (c.concurrency or 0) > seen.connection_limit:
        return "limit"
    if not seen.kept_alive_holds_unit:
        return "turns"
    return "proxy-keepalive" if seen.proxy is not None else "keepalive"


def _stalled(c: Cell) -> str:
    """``1,210 of 1,250 kept-alive responses came in two parts 30-80 ms apart, 0 of 48 first
    responses on a connection``: a cell's delayed-ACK counts."""
    if (acks := c.acks) is None:  # never, for a cell that waited on delayed ACKs
        return ""
    band = f"{STALL_MIN_NS // 1_000_000}-{STALL_MAX_NS // 1_000_000} ms"
    return (
        f"{acks.stalled:,} of {acks.reused:,} kept-alive responses came in two parts {band}"
        f" apart, {acks.first_stalled:,} of {acks.first:,} first responses on a connection"
    )


UNRANKED = (
    Unranked(lambda c: c.starved, "^", "Starved users", "Cells whose server starved some users",
             lambda c: f"{c.starved:,} of {plural(c.concurrency or 0, 'user')}",
             "in the worst of the runs",
             lambda cells: starved_advice(set(map(starved_cause, cells)))),
    Unranked(lambda c: c.delayed_acks, "~", "Waited on delayed ACKs",
             "Cells that waited on the client's delayed ACKs", _stalled,
             "the measured runs together", lambda _: DELAYED_ACK_ADVICE),
)  # fmt: skip


#: The line above :func:`weak_zeros`, on the terminal and in the report. Both say it after the
#: table whose leaks column it is about, so it points neither up nor down.
WEAK_ZEROS_HEAD = (
    "0 leaks proves little for these cells: the run did not exercise what would show a leak"
)


def _what_ran(s: Summary) -> str:
    def some(noun: str, values: Sequence[str]) -> str:
        return f"{noun if len(values) == 1 else noun + 's'} {', '.join(values)}"

    # The names the probe checked: the framework's, then the app's own observe() names.
    framework = _framework_checked(s)
    app = app_observation_names({n for c in s.cells for n in c.observed})
    modes = list(dict.fromkeys(c.mode for c in s.cells))
    # Each app with the prefix it was checked under (--mount): one dispatcher's app at /api and
    # its app at /admin are other apps, as compare and the chaos report name them.
    apps = list(
        dict.fromkeys(
            mounted(app_name(label), c.server.mount)
            for label in s.apps
            for c in s.cells
            if c.app_label == label
        )
    )
    backends = s.storage if s.own_stack else some("backend", sorted({c.backend for c in s.cells}))
    return (
        f"{plural(len(s.cells), 'cell')} ran: {some('app', apps)};"
        f" {some('mode', modes)}; {backends};"
        f" {' and '.join(s.patterns)} connections;"
        f" {plural(sum(c.checked for c in s.cells), 'request')} checked for {_and(framework)}"
        + (f", and the app's own `observe()` state {_and(list(map(code, app)))}" if app else "")
        + "."
    )


def _framework_checked(s: Summary) -> list[str]:
    """The framework's names the probe checked (``session`` only where the app has a secret
    key); every one of them where the run did not record them."""
    names = {n for c in s.cells for n in c.observed}
    return [n for n in CONTEXT_NAMES if n in names] or list(CONTEXT_NAMES)


def _with(s: Summary) -> str:
    return f"{'on' if s.own_stack else 'with'} {s.storage}"


def _and(names: Sequence[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _cell_of(c: Cell, sweep: bool) -> str:
    """``waitress (no-reset, keepalive)``: a cell on a deliberately broken backend; in a
    concurrency sweep (``sweep``) with its level (:func:`pattern_at`)."""
    app = [app_at(c, app_name)] * (app_at(c) != "core")
    return f"{c.mode} ({', '.join([*app, c.backend, pattern_at(c, sweep)])})"


def model_reason(e: LeakExpectation | None) -> str:
    """The expectations model's reason, as recorded, for the middle of a sentence."""
    reason = "" if e is None else e.reason
    return reason[:1].lower() + reason[1:]


def _list_leaks(cells: Sequence[Cell], sweep: bool) -> str:
    def one(c: Cell) -> str:
        framework, app = leaked_names(c)  # the app's names as code: they may hold any text
        names = f" ({', '.join(framework + list(map(code, app)))})" if framework or app else ""
        backend = [c.backend] * (c.target is None)  # a target's is its own, not known here
        where = ", ".join([app_at(c, app_name), *backend, pattern_at(c, sweep)])
        return f"{c.mode} ({where}): {c.leaks:,}{names}"

    return "; ".join(one(c) for c in cells)


# -- the terminal ------------------------------------------------------------------------------


def format_summary(run: Run) -> str:
    """The run on a terminal: one row per cell, then up to three pieces of leak evidence.

    The app and backend columns show where they tell cells apart, and wherever a deliberately
    broken backend ran: its row's LEAK is a negative control at work, which a row without the
    backend would present as the app's own leak."""
    several = len({(app_at(c), backend_of(c)) for c in run.cells}) > 1 or any(
        backend_of(c) != DEFAULT_BACKEND for c in run.cells
    )
    sweep = swept(run.cells)
    headers = ("app", "backend") * several + (
        "mode", "connections", *("users",) * sweep, "server", "requests", "rps", "spread",
        "p50 ms", "p99 ms", "errors", "leaks", "verdict",
    )  # fmt: skip
    rows = tuple(
        (
            *(app_at(c), backend_of(c)) * several,
            *(c.mode, c.connections, *(str(c.concurrency),) * sweep, c.server.summary),
            *(f"{c.requests:,}", fmt_rps(c.rps) + "*" * c.driver_bound + "~" * c.delayed_acks),
            spread_cell(c.rps_spread, len(c.runs), "!"),
            fmt_ms(c.latency_ms.p50),
            fmt_ms(c.latency_ms.p99) + ("^" if c.starved else ""),
            f"{c.errors:,}",
            *(f"{c.leaks:,}", status(c)),
        )
        for c in run.cells
    )
    align = "l" * (2 + 2 * several) + "r" * sweep + "l" + "r" * 7 + "l"  # server: text, left
    out = text_table(Table(headers, rows, align))
    if noisy := [c for c in run.cells if c.noisy]:
        out.append(
            f"! rps spread above {fmt_pct(SPREAD_WARNING)}: the runs disagree, so compare these"
            f" rates with care; {''.join(f'{x}; ' for x in [shared_machine(noisy)] if x)}use a"
            " longer --duration, more --repeats or a quieter machine"
        )
    if any(c.driver_bound for c in run.cells):
        out.append(f"* driver-bound: {DRIVER_BOUND_ADVICE}")
    if ignored := ignored_by(run.cells):
        out.append(ignored)
    for u in UNRANKED:
        if picked := [c for c in run.cells if u.marked(c)]:
            title = u.title[0].lower() + u.title[1:]
            out.append(f"{u.mark} {title} ({u.who(picked, label, sweep)}): {u.advice(picked)}")
    # For a server ctxbench did not start (--target) what the probe saw is all there is to say
    # what ran; the modes' own are in the report (the expectations model knows each mode).
    if weak := weak_zeros([c for c in run.cells if c.target is not None]):
        out += ["", f"{WEAK_ZEROS_HEAD}:", *(f"  {line}" for line in weak)]
    if failed := [c for c in run.cells if c.failed]:
        died = _died(server_deaths(run.cells))
        out += ["", f"failed cells ({died}; {_after_a_death(failed)}):"]
        out += [f"  {label(c)} {pattern_at(c, sweep)}: {c.error}" for c in failed]
    if blind := [c for c in run.cells if missed(c)]:
        out += ["", f"missed leaks (a deliberately broken backend must leak here; {REPORT_IT}):"]
        out += [
            f"  {label(c)} {pattern_at(c, sweep)}: {model_reason(c.expectation)}" for c in blind
        ]
    # Each piece names its cell as the lines above do: two cells of one mode (another backend,
    # connection pattern or level) would otherwise read the same.
    first = [(c, ev) for c in run.cells for ev in c.evidence][:EVIDENCE_ON_TERMINAL]
    if first:
        out += ["", f"first evidence (a leak is {A_LEAK_IS}):"]
        cells = [f"{label(c)} {pattern_at(c, sweep)}" for c, _ in first]
        out += text_table(evidence_table([ev for _, ev in first], "l" * 8, cells))
    if unknown := unknown_values(run.cells):
        out.append(f"{UNKNOWN_VALUES}: {_some(unknown)}")
    return "\n".join(out)


def ignored_by(cells: Sequence[Cell]) -> str:
    """``options some modes ran without, ...: --workers by waitress; --threads by
    gunicorn-gevent (...)``: the options given that some modes ran without, having no use for
    them, as each recorded (:attr:`~harness.results.ServerInfo.ignored_options`); ``""`` when
    none. The server takes them without a word, and only the table's ``w1`` said that
    ``--workers 2`` meant nothing to waitress."""
    modes: dict[str, dict[str, None]] = {}  # option -> the modes, in order, once each
    for c in cells:
        for option in c.server.ignored_options:
            modes.setdefault(option, {})[c.mode] = None
    if not modes:
        return ""
    each = "; ".join(f"{option} by {', '.join(m)}" for option, m in modes.items())
    return (
        f"options some modes ran without, having no use for them: {each} ('ctxbench list' says"
        " what each mode runs)"
    )


#: Cores other programs used while cells ran (the median over their repeats) above which a
#: spread warning says that the machine was shared. Half a core: the figure also holds what the
#: server's measurement missed (the CPU time of a thread that ended during it is counted from
#: tick counts, which came up to 0.3 cores short under werkzeug-threaded on a quiet machine).
SHARED_CORES = 0.5


def shared_machine(cells: Sequence[Cell]) -> str:
    """``other programs used 1.24 cores meanwhile (median of the repeats): the machine was
    shared``, when they used more than :data:`SHARED_CORES` while ``cells`` ran; else ``""``."""
    used = [r.others_cpu for c in cells for r in c.runs if r.others_cpu is not None]
    if not used or (cores := median(used)) <= SHARED_CORES:
        return ""
    return (
        f"other programs used {cores:.2f} cores meanwhile (median of the repeats): the machine"
        " was shared"
    )


def evidence_table(
    evidence: Sequence[Evidence], align: str = "lllllrrr", cells: Sequence[str] = ()
) -> Table:
    """Evidence as a table; values as JSON, so that null differs from "None". ``cells``, one a
    piece, name the cell each came from in the first column, in the place of its mode: for
    evidence of several cells, where no heading above the table names its cell."""
    names = cells or [ev.mode for ev in evidence]
    rows = tuple(
        (
            *(name, ev.phase, ev.name, show_json(ev.expected), show_json(ev.seen)),
            *(show_json(v) for v in (ev.unit.pid, ev.unit.thread, ev.unit.greenlet)),
        )
        for name, ev in zip(names, evidence, strict=True)
    )
    first = "cell" if cells else "mode"
    headers = (first, "phase", "name", "expected", "seen", "pid", "thread", "greenlet")
    return Table(headers, rows, align, wrap=frozenset({3, 4}), mono=True)
