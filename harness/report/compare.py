"""Two runs side by side: relative change per entry in rps and p99, regressions flagged.

A regression is B worse than A beyond the threshold: requests/s down by more than it, p99 up by
more than it, or leaks or errors where A had none. Changes inside the threshold are listed but
not flagged. A flagged change smaller than the two runs' own spread is marked "within noise":
it is still flagged (the threshold is the contract), but the reader knows to rerun first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.report.model import Entry, Run, load_run
from harness.report.summary import fmt_ms, fmt_pct, fmt_rps

__all__ = ["Change", "compare_runs", "parse_threshold"]

# Settings that make two runs incomparable when they differ.
LIKE_FOR_LIKE = ("duration", "concurrency", "sleep_ms", "repeats", "requests", "timeout")


@dataclass(frozen=True)
class Change:
    """One metric of one entry, in run A and run B."""

    key: tuple[str, str, str, str]  # (app label, backend, mode, connections)
    metric: str  # "rps", "p99", "leaks" or "errors"
    a: float
    b: float
    regression: bool
    within_noise: bool = False

    @property
    def relative(self) -> float:
        """(b - a) / a; 0.0 when a is 0."""
        return _relative(self.a, self.b)

    def describe(self) -> str:
        app, backend, mode, connections = self.key
        where = f"{mode} ({app}, {backend}, {connections})"
        if self.metric in ("leaks", "errors"):
            return f"{where}: {self.metric} {self.a:,.0f} -> {self.b:,.0f}"
        fmt = fmt_rps if self.metric == "rps" else fmt_ms
        unit = " rps" if self.metric == "rps" else " ms"
        noise = " (within noise)" if self.within_noise else ""
        return (
            f"{where}: {self.metric} {fmt(self.a)}{unit} -> {fmt(self.b)}{unit}"
            f" ({_signed_pct(self.relative)}){noise}"
        )


def parse_threshold(text: str) -> float:
    """Parse ``"10%"``, ``"10"`` (percent) or ``"0.1"`` (a fraction) into a fraction."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value = float(raw[:-1]) / 100
        else:
            value = float(raw)
            if value >= 1:
                value /= 100
    except ValueError:
        raise ValueError(
            f"Invalid threshold {text!r}: give a percentage such as '10%' or a fraction such"
            " as '0.1'."
        ) from None
    if not 0 < value < 10:
        raise ValueError(
            f"Invalid threshold {text!r}: it must be above 0%; give a percentage such as '10%'."
        )
    return value


def compare_runs(
    a_doc: Mapping[str, Any], b_doc: Mapping[str, Any], threshold: float = 0.10
) -> tuple[str, list[Change]]:
    """Compare run B against baseline run A.

    Returns the comparison as text (a fixed-width table plus notes) and the list of regressions;
    the CLI prints the text and exits 1 when the list is not empty.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be above 0, got {threshold!r}")
    a_run, b_run = load_run(a_doc), load_run(b_doc)
    a_by, b_by = {e.key: e for e in a_run.entries}, {e.key: e for e in b_run.entries}
    common = [e.key for e in a_run.entries if e.key in b_by]
    rows: list[tuple[str, ...]] = []
    regressions: list[Change] = []
    for key in common:
        a, b = a_by[key], b_by[key]
        changes = _changes(a, b, threshold)
        regressions += [c for c in changes if c.regression]
        rps, p99 = changes[0], changes[1]  # leaks and errors show in their own columns
        flags = [c.metric for c in changes if c.regression]
        rows.append(
            (
                key[2],
                key[0],
                key[1],
                key[3],
                fmt_rps(a.rps),
                fmt_rps(b.rps),
                _signed_pct(rps.relative),
                fmt_ms(a.latency.p99),
                fmt_ms(b.latency.p99),
                _signed_pct(p99.relative),
                f"{a.leaks}/{b.leaks}",
                ("REGRESSION: " + ", ".join(flags)) if flags else "",
            )
        )
    headers = (
        "mode",
        "app",
        "backend",
        "connections",
        "rps A",
        "rps B",
        "Δ rps",
        "p99 A ms",
        "p99 B ms",
        "Δ p99",
        "leaks A/B",
        "",
    )
    out = [
        f"ctxbench compare: A = {a_run.run_id or '?'} (baseline), B = {b_run.run_id or '?'};"
        f" regression threshold {fmt_pct(threshold)}",
    ]
    out += _differences(a_run, b_run)
    out.append("")
    out += _fixed_width(headers, rows) if rows else ["No entries in common."]
    only_a = [k for k in a_by if k not in b_by]
    only_b = [k for k in b_by if k not in a_by]
    if only_a or only_b:
        out.append("")
    out += [f"only in A: {_name(k)}" for k in only_a]
    out += [f"only in B: {_name(k)}" for k in only_b]
    out.append("")
    if regressions:
        out.append(f"{len(regressions)} regression(s) beyond {fmt_pct(threshold)}:")
        out += [f"  {c.describe()}" for c in regressions]
    else:
        out.append(f"No regressions beyond {fmt_pct(threshold)}.")
    return "\n".join(out) + "\n", regressions


def _changes(a: Entry, b: Entry, threshold: float) -> list[Change]:
    rps_change = _relative(a.rps, b.rps)
    rps_bad = rps_change < -threshold
    rps_noise = max(a.rps_spread, b.rps_spread)
    p99_change = _relative(a.latency.p99, b.latency.p99)
    p99_bad = p99_change > threshold
    p99_noise = max(a.latency_spread("p99"), b.latency_spread("p99"))
    return [
        Change(a.key, "rps", a.rps, b.rps, rps_bad, rps_bad and -rps_change <= rps_noise),
        Change(
            a.key, "p99", a.latency.p99, b.latency.p99, p99_bad, p99_bad and p99_change <= p99_noise
        ),
        Change(a.key, "leaks", a.leaks, b.leaks, b.leaks > 0 and a.leaks == 0),
        Change(a.key, "errors", a.errors, b.errors, b.errors > 0 and a.errors == 0),
    ]


def _relative(a: float, b: float) -> float:
    # NaN (a missing percentile) and a zero baseline compare as "no change"; errors and leaks
    # are what flags a run that stopped answering.
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return 0.0
    return (b - a) / a


def _differences(a: Run, b: Run) -> list[str]:
    notes = []
    for name in LIKE_FOR_LIKE:
        if a.settings.get(name) != b.settings.get(name):
            notes.append(
                f"note: setting {name!r} differs (A {a.settings.get(name)!r},"
                f" B {b.settings.get(name)!r}); the runs are not like for like."
            )
    if a.machine and b.machine and a.machine != b.machine:
        notes.append("note: the runs come from different machines or machine descriptions.")
    if a.python != b.python:
        notes.append(f"note: Python differs (A {a.python!r}, B {b.python!r}).")
    for pkg in sorted(set(a.packages) | set(b.packages)):
        if a.packages.get(pkg) != b.packages.get(pkg):
            notes.append(
                f"note: {pkg} differs (A {a.packages.get(pkg)!r}, B {b.packages.get(pkg)!r})."
            )
    return notes


def _fixed_width(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    numeric = set(range(4, 11))

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _name(key: tuple[str, str, str, str]) -> str:
    app, backend, mode, connections = key
    return f"{mode} ({app}, {backend}, {connections})"


def _signed_pct(value: float) -> str:
    return f"{value * 100:+.1f}%"
