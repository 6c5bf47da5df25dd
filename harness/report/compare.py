"""Two runs side by side: the relative change of every cell in rps and p99, regressions flagged.

One rule decides a regression, and the words and the exit status follow it: B is worse than the
baseline A (requests/s down, p99 up) in every repeat, by more than the threshold plus the
noisier run's spread over its repeats: B's best repeat against A's worst
(:func:`worse_in_every_repeat`). The medians alone count one repeat that a busier machine
slowed, or a p99 that one stall raised; and each run's spread misses the noise between the runs,
since a machine busier for a whole cell moves every repeat of it at once: two runs measured at
other times differ by their noise again. A change of the medians beyond the threshold that is
not so is listed as within noise, with the two repeats that decided, and does not count. With
``strict`` the medians alone decide.
New leaks or errors where A had none are always regressions, as are errors in a larger share of
B's requests than of A's, by more than the threshold; and so is a cell whose server died
in B (:attr:`~harness.results.Cell.failed`: its figures are those of the repeats before the
death) where A's did not. Nor (unless ``strict``) does a change count where B's
load driver was saturated (driver-bound): B's figures are then the driver's, so a slower B does
not show a slower server; nor one where either run's server starved some virtual users
(:attr:`~harness.results.Cell.starved`): that run's rate is the served users' alone and its p99
their wait for the starved ones, figures of the starvation, not of the server's speed. A B that
waited on the client's delayed ACKs where A did not (:attr:`~harness.results.Cell.delayed_acks`)
is a regression like any other, since every client of that server waits so; its line says why.

Cells match on their key (:attr:`~harness.results.Cell.key`), the mount included: the app a
dispatcher serves under ``/api`` is another app than the one under ``/admin``, so two such cells
are never matched, and are listed as not compared. So is the number of virtual users, unless
both runs ran at one and the same level: a rate at 4 users is not a rate at 16, so it is neither
a regression nor an improvement. Two runs with no cell in common cannot be
compared: a :class:`~harness.errors.UsageError` (exit 2), so a baseline that no longer matches
never passes; cells in one run only are named. Nor can a run be compared with itself (one path
given twice, or a copy): no figure can differ, so a baseline pointed at the new run would pass
every time. A cell of the baseline that B did not measure (B
was interrupted, or ran fewer modes) is a regression too, of the metric ``cell``: a gate must not
pass a run that left out what it guards. With ``allow_missing`` only the cells both runs have
are compared.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t
from dataclasses import dataclass

from harness.apps import mounted
from harness.errors import UsageError
from harness.load.fairness import STARVED_CAUSES
from harness.report.summary import backend_of, measured_once, starved_cause
from harness.report.text import fmt_ms, fmt_pct, fmt_rps, plural
from harness.report.tree import Table, text_table
from harness.results import Cell, CellKey, Run

#: The settings that choose the cells (the mount and the concurrency are in every cell's key);
#: any other setting that differs is noted as not like for like.
CELL_SETTINGS = (
    "apps",
    "backends",
    "modes",
    "connections",
    "mount",
    "concurrency",
    "concurrency_levels",
)
#: The settings that make the requests themselves (how long each sleeps in the view, which ones
#: are made to fail): runs that differ in one did other work, and are not compared at all.
LOAD_SETTINGS = {
    "sleep_ms": "--sleep-ms",
    "fail_phase": "--fail-phase",
    "fail_fraction": "--fail-fraction",
}

#: Which way a figure of speed gets worse: requests/s down (-1), p99 up (1).
WORSE = {"rps": -1, "p99": 1}

#: Why a change worse beyond the threshold is not counted (unless ``strict``), in the order they
#: are tried: the word in the verdict column, and why, after "worse by more than 10% but".
EXCUSES = {
    "within noise": "not in every repeat by more than that plus the noisier run's spread, so within"
    " the runs' noise and not counted (rerun both on a quieter machine, with more --repeats or a"
    " longer --duration; or use --strict)",
    "driver-bound in B": "B's load driver was saturated, so B's figures are the driver's and not"
    " counted (rerun B with --driver-processes auto, or use --strict)",
    "starved users": "a run's server starved some users, so its rate is the served users' and"
    " its p99 the starved ones' wait, not counted (the likely cause and what to do follow; or use"
    " --strict)",
}


@dataclass(frozen=True)
class Change:
    """One metric of one cell, in run A and run B."""

    key: CellKey  # (app label, backend, mode, connections, concurrency, mount)
    #: "rps", "p99", "leaks", "errors", "failed" (B's server died in the cell), or "cell" (in A,
    #: not measured in B)
    metric: str
    a: float
    b: float
    verdict: str = ""  # "REGRESSION", a key of EXCUSES (worse, but not counted), or "" (ok)

    @property
    def regression(self) -> bool:
        return self.verdict == "REGRESSION"

    @property
    def relative(self) -> float:
        """(b - a) / a; 0.0 when a is 0 or either is missing."""
        return _relative(self.a, self.b)

    def describe(self) -> str:
        where = _name(self.key)
        if self.metric == "cell":
            return f"{where}: in A, not measured in B"
        if self.metric == "failed":
            return f"{where}: failed in B, not in A"
        if self.metric in ("leaks", "errors"):
            return f"{where}: {self.metric} {self.a:,.0f} -> {self.b:,.0f}"
        fmt, unit = (fmt_rps, "") if self.metric == "rps" else (fmt_ms, " ms")
        change = f"{fmt(self.a)}{unit} -> {fmt(self.b)}{unit} ({_signed(self.relative)})"
        return f"{where}: {self.metric} {change}"


def parse_threshold(text: str) -> float:
    """Parse ``"10%"``, ``"10"`` (percent) or ``"0.1"`` (a fraction) into a fraction."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not raw.endswith("%") and value >= 1:
        value /= 100
    if not 0 < value < 10:
        raise UsageError(
            f"invalid threshold {text!r}: give a percentage above 0 such as '10%', or a"
            " fraction such as '0.1'"
        )
    return value


def compare_runs(
    a_run: Run,
    b_run: Run,
    threshold: float = 0.10,
    *,
    strict: bool = False,
    allow_missing: bool = False,
) -> tuple[str, list[Change]]:
    """Compare run B against baseline run A; return the text and the regressions (a cell of A
    that B did not measure is one, unless ``allow_missing``).

    The CLI prints the text and exits 1 when the list is not empty. Raises
    :class:`~harness.errors.UsageError` when the runs have no cell in common, or are one run.
    """
    if a_run == b_run:
        # One path given twice, a folder and its results.json, or a copy of a run: no figure can
        # differ, so the check would pass any code. A CI job whose baseline points at the new
        # run's folder must fail, not pass every time.
        raise UsageError(
            f"A and B are the same run, {a_run.run_id or '?'!r} (created"
            f" {a_run.created or 'at an unknown time'}): a run compared with itself shows no"
            " change whatever changed, so this check would pass anything; give RUN_A the"
            " baseline and RUN_B the new run (the folder `ctxbench run` printed)"
        )
    for run in (a_run, b_run):
        if not run.cells:  # ctxbench chaos, soak: verdicts, not figures to compare
            raise UsageError(
                f"run {run.run_id or '?'!r} has no cells: compare reads the throughput and"
                " latency of `ctxbench run` results; read a chaos or soak run's report instead"
            )
    loads = [
        f"{flag} A {_setting(a_run, name)}, B {_setting(b_run, name)}"
        for name, flag in LOAD_SETTINGS.items()
        if getattr(a_run.settings, name) != getattr(b_run.settings, name)
    ]
    if loads:
        raise UsageError(
            f"runs {a_run.run_id or 'A'!r} and {b_run.run_id or 'B'!r} sent other requests"
            f" ({'; '.join(loads)}): their rates and latencies are of other work, neither a"
            " regression nor an improvement; compare runs of the same"
            f" {', '.join(LOAD_SETTINGS.values())}"
        )
    # Cells match on their concurrency too, unless both runs ran at one and the same level (the
    # key then leaves it out, so the table and the names do not repeat it): a sweep's levels
    # pair up, and two runs at different levels have no cell in common.
    levels = [{c.concurrency for c in run.cells} for run in (a_run, b_run)]
    by_level = len(levels[0]) > 1 or levels[0] != levels[1]
    a_by, b_by = ({_key(c, by_level): c for c in run.cells} for run in (a_run, b_run))
    common = [key for key in a_by if key in b_by]
    if not common:
        raise UsageError(
            f"runs {a_run.run_id or 'A'!r} and {b_run.run_id or 'B'!r} have no cell in common"
            f" ({plural(len(a_by), 'cell')} against {plural(len(b_by), 'cell')}):"
            f"{_apart(a_by, b_by)} compare runs of the same"
            " apps, mounts, backends, modes, connection patterns and numbers of users"
        )
    rule = (
        f"worse by more than {fmt_pct(threshold)}, the medians alone (--strict)"
        if strict
        else f"worse in every repeat by more than {fmt_pct(threshold)} plus the noisier run's"
        " spread (B's best repeat against A's worst)"
    )
    out = [
        f"ctxbench compare: A = {a_run.run_id or '?'} (baseline), B = {b_run.run_id or '?'};"
        f" a regression is {rule}",
        *_differences(a_run, b_run),
    ]
    once = [n for n, by in (("A", a_by), ("B", b_by)) if any(len(by[k].runs) < 2 for k in common)]
    if once and not strict:  # one measurement has no spread: the other run's is the noise
        other = {"A": "B's", "B": "A's"}[once[0]] if len(once) == 1 else "the other run's"
        counts = (
            f"every change beyond {fmt_pct(threshold)} there counts"
            if any(len(a_by[k].runs) < 2 and len(b_by[k].runs) < 2 for k in common)
            else f"there {other} spread alone is the noise"
        )
        by = {"A": a_by, "B": b_by}
        every = all(len(by[n][k].runs) < 2 for n in once for k in common)
        # A corpus run measures each cell once, and ctxbench corpus has no --repeats.
        advice = "give both runs --repeats 3 or more"
        if any(c.corpus for run in (a_run, b_run) for c in run.cells):
            advice = "ctxbench corpus measures each cell once: for speed, compare ctxbench run"
            advice += " runs with --repeats 3 or more"
        out.append(
            f"note: {' and '.join(once)} measured {'every' if every else 'some'} cell"
            f"{'' if every else 's'} once (--repeats 1), which says nothing of"
            f" {'their' if len(once) > 1 else 'its'} noise: {counts}; {advice}"
        )
    out.append("")
    rows, changes = [], []
    for key in common:
        a, b = a_by[key], b_by[key]
        app, backend, mode, connections, level, mount = key
        cell = _changes(key, a, b, threshold, strict)
        delta = {c.metric: _signed(c.relative) for c in cell}  # no p99 when a run answered none
        changes += cell
        status = "; ".join(
            f"{word}: {', '.join(metrics)}"
            for word in ("REGRESSION", *EXCUSES)
            if (metrics := [c.metric for c in cell if c.verdict == word])
        ) or ("leaks, as in A" if b.leaks else "ok")  # none counted: B is clean, or leaked as A
        rows.append(
            (
                *(mode, mounted(app, mount), backend),
                connections + ("" if level is None else f" @{level}"),
                *(fmt_rps(a.rps), fmt_rps(b.rps)),
                *(delta["rps"], fmt_ms(a.latency_ms.p99), fmt_ms(b.latency_ms.p99)),
                *(delta.get("p99", "-"), f"{a.leaks:,}/{b.leaks:,}", status),
            )
        )
    headers = (
        *("mode", "app", "backend", "connections", "rps A", "rps B", "Δ rps", "p99 A ms"),
        *("p99 B ms", "Δ p99", "leaks A/B", "verdict"),
    )
    out += text_table(Table(headers, tuple(rows), "l" * 4 + "r" * 7 + "l"))
    missing = [key for key in a_by if key not in b_by]
    only = [f"  in A only: {_name(k)}" for k in missing]
    only += [f"  in B only: {_name(k)}" for k in b_by if k not in a_by]
    if only:
        out += ["", f"{plural(len(only), 'cell')} not compared (in one run only):", *only]
    if missing and not allow_missing:
        out.append(
            "  a cell of the baseline that B did not measure is a regression: --allow-missing"
            " compares only the cells both runs have"
        )
        changes += [Change(key, "cell", 1, 0, "REGRESSION") for key in missing]

    def line(c: Change) -> str:
        why = _why(a_by[c.key], b_by[c.key], c, threshold, strict) if c.key in b_by else ""
        return f"  {c.describe()}{why}"

    for word, why in EXCUSES.items():
        if excused := [c for c in changes if c.verdict == word]:
            out += ["", f"worse by more than {fmt_pct(threshold)} but {why}:", *map(line, excused)]
        if word == "starved users" and excused:  # each starved cell's cause, as its run recorded
            starved = [x for c in excused for x in (a_by[c.key], b_by[c.key]) if x.starved]
            out += [f"  {STARVED_CAUSES[k]}." for k in sorted(set(map(starved_cause, starved)))]
    regressions = [c for c in changes if c.regression]
    if regressions:
        out += ["", f"{plural(len(regressions), 'regression')}:", *map(line, regressions)]
    else:
        out += ["", f"No regression in {plural(len(common), 'cell')} compared."]
    # A leak in both runs is no regression, but B is not clean: say so under the verdict.
    if leaked := [key for key in common if b_by[key].leaks and a_by[key].leaks]:
        out.append(
            f"B leaked in {plural(len(leaked), 'cell')} where A leaked too (not counted here:"
            " compare counts new leaks; ctxbench run exits 1 on any)"
        )
    return "\n".join(out) + "\n", regressions


def _changes(key: CellKey, a: Cell, b: Cell, threshold: float, strict: bool) -> list[Change]:
    rv = []
    for metric, va, vb in (("rps", a.rps, b.rps), ("p99", a.latency_ms.p99, b.latency_ms.p99)):
        if va is None or vb is None:
            continue
        # Each excuse of EXCUSES, in its order: the first that holds is the change's.
        excuses = (
            not worse_in_every_repeat(a, b, metric, threshold),
            b.driver_bound,
            a.starved or b.starved,
        )
        excuse = next((w for w, e in zip(EXCUSES, excuses, strict=True) if e and not strict), "")
        beyond = _relative(va, vb) * WORSE[metric] > threshold
        rv.append(Change(key, metric, va, vb, (excuse or "REGRESSION") if beyond else ""))
    for metric, va, vb in (
        ("leaks", a.leaks, b.leaks),
        ("errors", a.errors, b.errors),
        ("failed", a.failed, b.failed),
    ):
        worse = vb > 0 and va == 0
        if metric == "errors" and va and vb:  # their share of the requests, as rps and p99
            worse = _relative(va / max(a.requests, 1), vb / max(b.requests, 1)) > threshold
        rv.append(Change(key, metric, va, vb, "REGRESSION" if worse else ""))
    return rv


def worse_in_every_repeat(a: Cell, b: Cell, metric: str, threshold: float) -> bool:
    """B is worse than A in ``metric`` (``"rps"`` or ``"p99"``) in every repeat, by more than
    ``threshold`` plus the noisier run's spread (:func:`_noise`): the rule of this module."""
    worst, best = _nearest(a, b, metric)
    return _relative(worst, best) * WORSE[metric] > threshold + _noise(a, b, metric)


def _nearest(a: Cell, b: Cell, metric: str) -> tuple[float, float]:
    """A's worst repeat and B's best in ``metric``: the two that come closest when B is worse.
    A cell that kept no repeat's p99 (a ``ctxbench.results/1`` document may not) has its own."""
    if metric == "rps":
        return min(a.rps_runs, default=a.rps), max(b.rps_runs, default=b.rps)
    a_p99, b_p99 = ([v for r in c.latency_runs if (v := r.p99) is not None] for c in (a, b))
    return max(a_p99, default=a.latency_ms.p99 or 0.0), min(b_p99, default=b.latency_ms.p99 or 0.0)


def _noise(a: Cell, b: Cell, metric: str) -> float:
    """The noisier run's spread over its repeats in ``metric`` (:func:`~harness.results.spread`)."""
    if metric == "rps":
        return max(a.rps_spread, b.rps_spread)
    return max(a.latency_spread("p99"), b.latency_spread("p99"))


def _why(a: Cell, b: Cell, change: Change, threshold: float, strict: bool) -> str:
    """What made a listed change worse, when the figures say (the rules are the module's): the
    repeats that decided a change of rps or p99 (unless ``strict``), `` (B's best repeat 4,100
    against A's worst 4,250: -3.5%, not beyond 10% + the noisier run's spread of 30%)``; the
    runs that starved users, `` (starved: 14 of 16 users in B)``; the requests that errors in
    both runs are a share of; or B's delayed ACKs."""
    if change.verdict == "starved users":
        said = [
            f"{c.starved:,} of {plural(c.concurrency or 0, 'user')} in {name}"
            for name, c in (("A", a), ("B", b))
            if c.starved
        ]
        return f" (starved: {', '.join(said)})"
    if change.metric == "failed":
        return f" ({b.error})"
    if change.metric == "errors" and a.errors:  # the share decided: '5 -> 5' can be worse
        return f" (in {a.requests:,} requests in A, {b.requests:,} in B)"
    rv = ""
    decided = change.verdict in ("REGRESSION", "within noise") and change.metric in ("rps", "p99")
    if decided and not strict:
        worst, best = _nearest(a, b, change.metric)
        fmt, unit = (fmt_rps, "") if change.metric == "rps" else (fmt_ms, " ms")
        # A cell measured once has one repeat and no spread: "its best repeat" and "a spread of
        # 0.0%" would say otherwise (3e7939c: it says nothing of the noise).
        b_said, a_said = (
            "B's one repeat" if measured_once(b) else "B's best repeat",
            "A's one repeat" if measured_once(a) else "A's worst",
        )
        once = [name for name, c in (("A", a), ("B", b)) if measured_once(c)]
        if len(once) == 2:
            noise = ": each run measured this cell once, so neither has a spread to tell noise by"
        else:
            spread = fmt_pct(_noise(a, b, change.metric))
            noise = f" + the noisier run's spread of {spread}"
            if once:  # the other run's spread alone is the noise
                noise = f" + {'B' if once == ['A'] else 'A'}'s spread of {spread} ({once[0]}"
                noise += " measured this cell once)"
        rv = (
            f" ({b_said} {fmt(best)}{unit} against {a_said} {fmt(worst)}{unit}:"
            f" {_signed(_relative(worst, best))}, {'' if change.regression else 'not '}beyond"
            f" {fmt_pct(threshold)}{noise})"
        )
    acked = b.delayed_acks and not a.delayed_acks
    if change.regression and change.metric in ("rps", "p99") and acked:
        rv += " (B waited on the client's delayed ACKs: TCP_NODELAY is off on B's server)"
    return rv


def _relative(a: float | None, b: float | None) -> float:
    # A missing percentile and a zero baseline compare as "no change"; errors and leaks are
    # what flags a run that stopped answering.
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return 0.0
    return (b - a) / a


def _setting(run: Run, name: str) -> str:
    value = getattr(run.settings, name)
    return "auto" if name == "driver_processes" and value is None else repr(value)


def _differences(a: Run, b: Run) -> list[str]:
    notes = [
        f"note: {name} is {run.status}, not complete: {run.status_reason}; cells may be missing."
        for name, run in (("A", a), ("B", b))
        if run.status != "complete"
    ]
    notes += [
        f"note: setting {f.name!r} differs (A {_setting(a, f.name)}, B {_setting(b, f.name)});"
        " the runs are not like for like."
        for f in dataclasses.fields(a.settings)
        if f.name not in (*CELL_SETTINGS, *LOAD_SETTINGS)
        and getattr(a.settings, f.name) != getattr(b.settings, f.name)
    ]
    if a.machine != b.machine:  # say what differs: a baseline from a bigger CI runner, say
        differ = "; ".join(
            f"{f.name} A {_recorded(getattr(a.machine, f.name))},"
            f" B {_recorded(getattr(b.machine, f.name))}"
            for f in dataclasses.fields(a.machine)
            if getattr(a.machine, f.name) != getattr(b.machine, f.name)
        )
        notes.append(
            f"note: the runs come from different machines ({differ}); the runs are not like for"
            " like."
        )
    if a.python != b.python:
        notes.append(f"note: Python differs (A {a.python!r}, B {b.python!r}).")
    notes += [
        f"note: {pkg} differs (A {a.packages.get(pkg)!r}, B {b.packages.get(pkg)!r})."
        for pkg in sorted(set(a.packages) | set(b.packages))
        if a.packages.get(pkg) != b.packages.get(pkg)
    ]
    return notes


def _recorded(value: object) -> str:
    return "not recorded" if value is None else repr(value)


def _signed(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _key(cell: Cell, by_level: bool) -> CellKey:
    app, _, mode, connections, concurrency, mount = cell.key
    backend = backend_of(cell)  # a target's is its own, not the run's --backend
    return (app, backend, mode, connections, concurrency if by_level else None, mount)


def _name(key: CellKey) -> str:
    app, backend, mode, connections, concurrency, mount = key
    users = "" if concurrency is None else f", {plural(concurrency, 'user')}"
    return f"{mode} ({mounted(app, mount)}, {backend}, {connections}{users})"


def _apart(a_by: t.Mapping[CellKey, Cell], b_by: t.Mapping[CellKey, Cell]) -> str:
    """`` their cells differ only in the backend (A contextvar, B shared-global);`` when the two
    runs would have cells in common but for one part of their key, else ``""``. When they differ
    in more than that part (other modes too), `` the cells alike in all else differ in the
    backend (...);``: "only" would be untrue."""
    for i, what, why in (
        (0, "the app", ""),
        (1, "the backend", ""),
        (2, "the mode", ""),
        (3, "the connection pattern", ""),
        (4, "the number of virtual users", ", and a rate at one number is not a rate at another"),
        (5, "the mount", ", and an app under one prefix is not the app under another"),
    ):
        a_rest, b_rest = ({k[:i] + k[i + 1 :] for k in by} for by in (a_by, b_by))
        if a_rest & b_rest:
            # In the order the run measured them: a sweep's levels as given.
            a, b = (", ".join(map(str, dict.fromkeys(k[i] for k in by))) for by in (a_by, b_by))
            only = a_rest == b_rest
            who = "their cells differ only in" if only else "the cells alike in all else differ in"
            return f" {who} {what} (A {a}, B {b}){why};"
    return ""
