"""The corpus table of a ``ctxbench corpus`` run: each entry, where it was caught, its fixed twin.

One row per corpus entry, one column per (mode, connection pattern), and the fixed twin's leaks
over all its requests. A buggy cell reads ``caught after N`` (N: requests finished when the
first leaky response arrived), ``clean`` where its traits say it cannot leak, ``not caught``
for a chance entry that did not show this time, and ``MISSED`` / ``FALSE LEAK`` where the
harness disagrees with the traits. The same table is printed on the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.summary import Context
from harness.report.tree import Heading, Node, Note, Table
from harness.results import Cell, CorpusCheck, Run


def corpus_cells(run: Run) -> tuple[Cell, ...]:
    """The cells of a corpus run (``ctxbench corpus``), in run order; empty for any other run."""
    return tuple(cell for cell in run.cells if cell.corpus is not None)


def corpus_table(cells: Sequence[Cell]) -> Table:
    """The corpus table of ``cells`` (the cells of a corpus run, in run order)."""
    from harness.corpus import ENTRIES  # the entries import every corpus app: only when needed

    columns = list(dict.fromkeys((c.mode, c.connections) for c in cells))
    checks = [(c, c.corpus) for c in cells if c.corpus is not None]
    rows, bad = [], set()
    for i, key in enumerate(dict.fromkeys(check.entry for _, check in checks)):
        mine = [(c, check) for c, check in checks if check.entry == key]
        buggy = {(c.mode, c.connections): check for c, check in mine if check.variant == "buggy"}
        fixed = [c for c, check in mine if check.variant == "fixed"]
        leaks, requests = sum(c.leaks for c in fixed), sum(c.requests for c in fixed)
        ok = all(check.matches for _, check in mine)
        if not ok:
            bad.add(i)
        entry = ENTRIES.get(key)
        rows.append(
            (
                f"{entry.number} {key}" if entry else key,
                entry.source if entry else "",
                *(_buggy_text(buggy.get(col)) for col in columns),
                f"{leaks:,} leaks / {requests:,} requests" if fixed else "not run",
                "yes" if ok else "NO",
            )
        )
    headers = ("entry", "source", *(f"{m} {p}" for m, p in columns), "fixed twin", "as expected")
    align = "ll" + "l" * len(columns) + "rl"
    return Table(headers, tuple(rows), align, frozenset(bad), wrap=frozenset({0, 1}))


def _buggy_text(check: CorpusCheck | None) -> str:
    if check is None:  # the connection pattern cannot run under this mode
        return "n/a"
    if check.verdict == "caught":
        return f"caught after {check.first_leak_at}"
    return {"missed": "MISSED", "false leak": "FALSE LEAK"}.get(check.verdict, check.verdict)


def corpus_verdict(cells: Sequence[Cell], complete: bool = True) -> tuple[bool, str]:
    """Whether every corpus cell came out as its traits say, and a sentence saying so (of the
    cells that ran, when the run stopped early: not ``complete``)."""
    checks = [(c, c.corpus) for c in cells if c.corpus is not None]
    wrong = [(c, check) for c, check in checks if not check.matches]
    if not wrong:
        return True, (
            f"All {len(checks)} corpus cells{' that ran' * (not complete)} came out as the"
            " entries' traits say: every buggy app"
            " caught wherever it can leak (chance entries: caught or not, this time), clean"
            " where it cannot, and every fixed twin clean."
        )
    listed = "; ".join(
        f"{check.entry} {check.variant} under {c.mode} {c.connections}: {check.verdict}"
        for c, check in wrong
    )
    return False, f"{len(wrong)} of {len(checks)} corpus cells did not: {listed}."


def corpus_section(ctx: Context) -> list[Node]:
    """The report's corpus section (empty for a run that is not a corpus run)."""
    cells = corpus_cells(ctx.run)
    if not cells:
        return []
    return [
        Heading("Corpus: real leak classes, buggy and fixed"),
        corpus_table(cells),
        Note(
            "Each buggy cell: `caught after N` (N requests had finished when the first leaky"
            " response arrived), `clean` where the entry's traits say it cannot leak, `not"
            " caught` for a chance entry that did not show in this run, `n/a` where the"
            " connection pattern cannot run. The fixed twin column sums every mode and pattern."
            " Where each entry can leak is derived from its traits and the modes' traits"
            " (`harness.expectations.derive_leak`)."
        ),
    ]
