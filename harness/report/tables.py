"""The tables of a report as plain strings, shared by the Markdown and HTML renderers.

Building the cells once keeps the two reports in agreement: the renderers only decide markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.model import Entry, Run
from harness.report.summary import SPREAD_WARN, FlaskPair, fmt_ms, fmt_pct, fmt_rps

__all__ = [
    "EVIDENCE_SHOWN",
    "Table",
    "error_table",
    "evidence_note",
    "evidence_table",
    "flask_table",
    "mapping_table",
    "measurement_table",
    "server_tables",
    "show_json",
    "spread_cell",
    "summary_table",
]

EVIDENCE_SHOWN = 25  # per entry; results.json keeps everything the driver captured


@dataclass(frozen=True)
class Table:
    """Headers, rows of cell strings, and per column "l" or "r" alignment."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...]
    # Row indexes to highlight: leaks, errors, spread warnings.
    bad_rows: frozenset[int] = frozenset()
    warn_rows: frozenset[int] = frozenset()
    # Column indexes whose cells may wrap in HTML (long lists such as every repeat's rps).
    wrap: frozenset[int] = frozenset()


def summary_table(run: Run) -> Table:
    """The run at a glance: the main app on the correct contextvar storage, per mode and pattern.

    One row per (connection pattern, mode): the main app's median rps with its spread and p99,
    Flask's median rps and the ratio when Flask ran too, and the errors and leaks of every app
    on that mode and pattern with the contextvar storage (the broken backends are left out:
    they have their own sections).
    """
    labels = run.app_labels
    main = labels[0] if labels else "core"
    correct = [e for e in run.entries if e.backend == "contextvar"]
    by_key = {e.key: e for e in correct}
    with_flask = main != "flask" and any(e.app_label == "flask" for e in correct)
    headers = (
        "mode",
        "connections",
        f"{main} rps",
        "spread",
        f"{main} p99 ms",
        *(("flask rps", f"{main} / flask") if with_flask else ()),
        "errors",
        "leaks",
    )
    rows: list[tuple[str, ...]] = []
    bad, warn = set(), set()
    for pattern in run.patterns:
        for e in run.entries_for(pattern):
            if e.app_label != main or e.backend != "contextvar":
                continue
            same = [x for x in correct if x.mode == e.mode and x.connections == pattern]
            leaks = sum(x.leaks for x in same)
            errors = sum(x.errors for x in same)
            if e.rps_spread > SPREAD_WARN:
                warn.add(len(rows))
            if leaks or errors:
                bad.add(len(rows))
            flask_cells: tuple[str, ...] = ()
            if with_flask:
                flask = by_key.get(("flask", "contextvar", e.mode, pattern))
                flask_cells = (
                    (fmt_rps(flask.rps), f"{e.rps / flask.rps:.2f}x")
                    if flask is not None and flask.rps > 0
                    else ("-", "-")
                )
            rows.append(
                (
                    e.mode,
                    pattern,
                    fmt_rps(e.rps),
                    spread_cell(e.rps_spread),
                    fmt_ms(e.latency.p99),
                    *flask_cells,
                    f"{errors:,}",
                    _leaks_cell(leaks),
                )
            )
    align = ("l", "l") + ("r",) * (len(headers) - 2)
    return Table(headers, tuple(rows), align, frozenset(bad), frozenset(warn - bad))


def measurement_table(entries: Sequence[Entry]) -> Table:
    """One row per entry: throughput with its spread, latency percentiles, errors and leaks."""
    headers = (
        "mode",
        "app",
        "backend",
        "leaks",
        "errors",
        "requests",
        "rps (median)",
        "spread",
        "runs",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    )
    rows = []
    bad, warn = set(), set()
    for i, e in enumerate(entries):
        if e.rps_spread > SPREAD_WARN:
            warn.add(i)
        if e.leaks or e.errors:
            bad.add(i)
        runs = " / ".join(fmt_rps(r) for r in e.rps_runs) or "-"
        rows.append(
            (
                e.mode,
                e.app_label,
                e.backend,
                _leaks_cell(e.leaks),
                f"{e.errors:,}",
                f"{e.requests:,}",
                fmt_rps(e.rps),
                spread_cell(e.rps_spread),
                runs,
                fmt_ms(e.latency.p50),
                fmt_ms(e.latency.p90),
                fmt_ms(e.latency.p99),
                fmt_ms(e.latency.max),
            )
        )
    return Table(
        headers,
        tuple(rows),
        ("l", "l", "l") + ("r",) * 10,
        frozenset(bad),
        frozenset(warn),
        wrap=frozenset({headers.index("runs")}),
    )


def flask_table(pairs: Sequence[FlaskPair]) -> Table:
    """The core against Flask on the same mode: rps and p99 side by side, and their ratios."""
    headers = (
        "mode",
        "backend",
        "connections",
        "core rps",
        "flask rps",
        "core / flask rps",
        "core p99 ms",
        "flask p99 ms",
        "core / flask p99",
    )
    rows = tuple(
        (
            p.mode,
            p.backend,
            p.connections,
            fmt_rps(p.core.rps),
            fmt_rps(p.flask.rps),
            f"{p.rps_ratio:.2f}x",
            fmt_ms(p.core.latency.p99),
            fmt_ms(p.flask.latency.p99),
            f"{p.p99_ratio:.2f}x",
        )
        for p in pairs
    )
    bad = frozenset(i for i, p in enumerate(pairs) if not (p.core.clean and p.flask.clean))
    return Table(headers, rows, ("l", "l", "l") + ("r",) * 6, bad)


def evidence_table(entry: Entry, limit: int = EVIDENCE_SHOWN) -> Table:
    """The first ``limit`` pieces of evidence of one entry's leaks."""
    headers = ("mode", "phase", "name", "expected", "seen", "pid", "thread", "greenlet")
    rows = []
    for ev in entry.evidence[:limit]:
        worker = ev.get("worker")
        worker = worker if isinstance(worker, Mapping) else {}
        rows.append(
            (
                str(ev.get("mode", entry.mode)),
                str(ev.get("phase", "")),
                str(ev.get("name", "")),
                show_json(ev.get("expected")),
                show_json(ev.get("seen")),
                show_json(worker.get("pid")),
                show_json(worker.get("thread")),
                show_json(worker.get("greenlet")),
            )
        )
    return Table(headers, tuple(rows), ("l",) * 5 + ("r",) * 3)


def evidence_note(entry: Entry, limit: int = EVIDENCE_SHOWN) -> str:
    """Say how much of the evidence the table shows; the counts above it are always exact."""
    shown = min(len(entry.evidence), limit)
    return (
        f"Showing {shown} of the {len(entry.evidence)} pieces of evidence recorded in"
        " results.json. A leak is one observation that differed from what it must be; the run"
        " keeps a capped sample of them, and the leak count is exact."
    )


def error_table(entries: Iterable[Entry]) -> Table:
    """Error kinds and counts of every entry that had errors."""
    rows = []
    for e in entries:
        kinds = sorted(e.error_kinds.items()) or [("unclassified", e.errors)]
        for kind, count in kinds:
            rows.append((e.mode, e.app_label, e.backend, e.connections, kind, f"{count:,}"))
    return Table(
        ("mode", "app", "backend", "connections", "kind", "count"), tuple(rows), ("l",) * 5 + ("r",)
    )


def mapping_table(mapping: Mapping[str, Any], key: str = "key") -> Table:
    """A two-column table of a mapping, keys sorted; nested values shown as JSON."""
    rows = tuple((str(k), _plain(v)) for k, v in sorted(mapping.items()))
    return Table((key, "value"), rows, ("l", "l"))


def server_tables(run: Run) -> list[tuple[str, Table]]:
    """The effective server configuration, one table per distinct configuration.

    Entries that ran the same configuration (typically both connection patterns of a mode)
    share one table, titled with every entry that used it.
    """
    groups: dict[str, tuple[list[str], Mapping[str, Any]]] = {}
    for e in run.entries:
        if not e.effective:
            continue
        fingerprint = json.dumps(e.effective, sort_keys=True, default=str)
        users, _ = groups.setdefault(fingerprint, ([], e.effective))
        name = f"{e.mode} ({e.app_label}, {e.backend})"
        if name not in users:
            users.append(name)
    return [
        ("; ".join(users), mapping_table(effective, "setting"))
        for _, (users, effective) in sorted(groups.items(), key=lambda kv: kv[1][0])
    ]


def spread_cell(spread: float) -> str:
    """A spread as a percentage, marked with ⚠ above :data:`~harness.report.summary.SPREAD_WARN`."""
    return fmt_pct(spread) + (" ⚠" if spread > SPREAD_WARN else "")


def show_json(value: Any) -> str:
    """A value as JSON, so that ``null`` and the string ``"None"`` look different."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _leaks_cell(leaks: int) -> str:
    return f"{leaks:,}" + (" LEAK" if leaks else "")


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return show_json(value)
