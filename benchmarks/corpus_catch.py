"""How many requests the harness needs to catch each corpus entry: the distribution over runs.

For every catchable cell of every deterministic corpus entry (every (mode, pattern) where its
derived expectation says it can leak), the benchmark starts a fresh server ``--runs`` times,
sends ``--requests`` probe requests (default 100) at the default concurrency with the load the
entry needs, and records ``first_leak_at``: how many requests had finished when the first leaky
response arrived. The bar: caught in every run, within the first 100 requests. Chance entries
(an address reused, a race) are run ``--chance-runs`` times per cell and report their catch
rate. A fresh server per run, because what a server leaked in one run would help the next.

Run: ``python -m benchmarks.corpus_catch --out results/bench/corpus_catch.json`` (about half an
hour on 2 cores for the whole corpus; ``--entries`` and ``--modes`` narrow it). This is a
benchmark, not a timed test: it reports, it does not fail; its exit status is 1 when a
deterministic cell missed the bar, so a script can tell.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import typing as t
from pathlib import Path

from harness.corpus import Entry, expectation, select
from harness.corpus.run import LOAD, CorpusSettings, load_cell, mode_traits, server_args
from harness.load.spec import CONNECTION_PATTERNS
from harness.report.tree import Table, text_table
from harness.results import package_versions, write_atomic
from harness.servers import MODES, live_server

SCHEMA = "ctxbench.bench.corpus_catch/1"
BAR = 100


def catchable_cells(
    entries: t.Sequence[Entry], modes: t.Sequence[str]
) -> list[tuple[Entry, str, str, bool]]:
    """``(entry, mode, connections, chance)`` for every cell where an entry can leak."""
    rv: list[tuple[Entry, str, str, bool]] = []
    for entry in entries:
        for mode in modes:
            traits = mode_traits(entry, mode)
            for connections in CONNECTION_PATTERNS:
                cell = expectation(entry, mode, traits, connections)
                if cell.applicable and cell.can_leak:
                    rv.append((entry, mode, connections, cell.chance is not None))
    return rv


def measure(
    entry: Entry, mode: str, connections: str, runs: int, settings: CorpusSettings, logs: Path
) -> list[int | None]:
    """``first_leak_at`` of each run (``None``: not caught within the run's requests)."""
    out: list[int | None] = []
    buggy = entry.buggy
    for i in range(runs):
        with live_server(
            mode,
            app=buggy.app,
            backend=buggy.backend,
            extra_args=server_args(entry, mode),
            log_dir=logs / f"{entry.key}-{mode}-{connections}-{i}",
        ) as srv:
            result = load_cell(entry, srv, connections, settings.cell_load(entry, "buggy"))
        out.append(result.first_leak_at)
    return out


def summarize(firsts: list[int | None]) -> dict[str, t.Any]:
    caught = sorted(f for f in firsts if f is not None)
    return {
        "runs": len(firsts),
        "caught": len(caught),
        "within_bar": sum(1 for f in caught if f <= BAR),
        "first_leak_at": firsts,
        "min": caught[0] if caught else None,
        "median": statistics.median(caught) if caught else None,
        "max": caught[-1] if caught else None,
    }


def table(rows: list[dict[str, t.Any]]) -> Table:
    def num(v: t.Any) -> str:
        return "-" if v is None else f"{v:g}"

    return Table(
        headers=("entry", "mode", "connections", "kind", "caught", "min", "median", "max"),
        rows=tuple(
            (
                f"{r['number']} {r['entry']}",
                r["mode"],
                r["connections"],
                "chance" if r["chance"] else "deterministic",
                f"{r['caught']}/{r['runs']}",
                num(r["min"]),
                num(r["median"]),
                num(r["max"]),
            )
            for r in rows
        ),
        align="llllrrrr",
    )


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", default="", help="comma-separated entries (default: all)")
    parser.add_argument("--modes", default="", help="comma-separated modes (default: all here)")
    parser.add_argument("--runs", type=int, default=20, help="runs per deterministic cell")
    parser.add_argument("--chance-runs", type=int, default=10, help="runs per chance cell")
    parser.add_argument("--requests", type=int, default=BAR, help="requests per run (default 100)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)

    entries = select([k for k in args.entries.split(",") if k])
    modes = [m for m in args.modes.split(",") if m] or [
        name for name, mode in MODES.items() if mode.available().ok
    ]
    settings = CorpusSettings(load=LOAD.replace(requests=args.requests))
    rows: list[dict[str, t.Any]] = []
    with tempfile.TemporaryDirectory(prefix="ctxbench-corpus-catch-") as logs:
        for entry, mode, connections, chance in catchable_cells(entries, modes):
            runs = args.chance_runs if chance else args.runs
            firsts = measure(entry, mode, connections, runs, settings, Path(logs))
            row = {
                "entry": entry.key,
                "number": entry.number,
                "mode": mode,
                "connections": connections,
                "chance": chance,
                **summarize(firsts),
            }
            rows.append(row)
            print(
                f"{entry.number:>3} {entry.key} {mode} {connections}: caught"
                f" {row['caught']}/{runs}, first leak at {firsts}",
                file=sys.stderr,
                flush=True,
            )
    print("\n".join(text_table(table(rows))))
    failed = [r for r in rows if not r["chance"] and r["within_bar"] < r["runs"]]
    print(
        f"\n{len(rows) - sum(r['chance'] for r in rows)} deterministic cells,"
        f" {len(failed)} missed the bar (caught within {BAR} requests in every run)"
    )
    if args.out is not None:
        doc = {
            "schema": SCHEMA,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "packages": package_versions(("flask", "structlog", "gunicorn", "gevent", "werkzeug")),
            "settings": {
                "runs": args.runs,
                "chance_runs": args.chance_runs,
                "requests": args.requests,
                "concurrency": settings.load.concurrency,
                "sleep_ms": settings.load.sleep_ms,
                "bar": BAR,
                "modes": modes,
                "entries": [e.key for e in entries],
            },
            "cells": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, doc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
