"""The corpus table of a ``ctxbench corpus`` run: each entry, where it was caught, its fixed twin.

One row per corpus entry, one column per (mode, connection pattern), and the fixed twin's leaks
over all its requests. A buggy cell reads ``caught after N`` (N: requests finished when the
first leaky response arrived), ``clean`` where its traits say it cannot leak, ``not caught``
for a chance entry that did not show this time, and ``MISSED`` / ``FALSE LEAK`` where the
harness disagrees with the traits. The same table is printed on the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.tree import Heading, Node, Paragraph, Table
from harness.results import Cell, Run

__all__ = ["corpus_cell_text", "corpus_cells", "corpus_section", "corpus_table", "corpus_verdict"]


def corpus_cells(run: Run) -> tuple[Cell, ...]:
    """The cells of a corpus run (``ctxbench corpus``), in run order; empty for any other run."""
    return tuple(cell for cell in run.cells if cell.corpus is not None)


def corpus_cell_text(cell: Cell) -> str:
    """What one buggy cell says in the table."""
    check = cell.corpus
    if check is None:
        return ""
    if check.verdict == "caught":
        return f"caught after {check.first_leak_at}"
    return {"missed": "MISSED", "false leak": "FALSE LEAK"}.get(check.verdict, check.verdict)


def corpus_table(cells: Sequence[Cell]) -> Table:
    """The corpus table of ``cells`` (the cells of a corpus run, in run order)."""
    from harness.corpus import ENTRIES

    columns = list(dict.fromkeys((c.mode, c.connections) for c in cells))
    keys = list(dict.fromkeys(c.corpus.entry for c in cells if c.corpus is not None))
    rows: list[tuple[str, ...]] = []
    bad: set[int] = set()
    for i, key in enumerate(keys):
        mine = [c for c in cells if c.corpus is not None and c.corpus.entry == key]
        buggy = {
            (c.mode, c.connections): c for c in mine if c.corpus and c.corpus.variant == "buggy"
        }
        fixed = [c for c in mine if c.corpus and c.corpus.variant == "fixed"]
        entry = ENTRIES.get(key)
        title = f"{entry.number} {key}" if entry else key
        fixed_leaks = sum(c.leaks for c in fixed)
        fixed_requests = sum(c.requests for c in fixed)
        fixed_text = f"{fixed_leaks:,} leaks / {fixed_requests:,} requests" if fixed else "not run"
        ok = all(c.corpus is not None and c.corpus.matches for c in mine)
        if not ok:
            bad.add(i)
        rows.append(
            (
                title,
                entry.source if entry else "",
                *(corpus_cell_text(buggy[col]) if col in buggy else "n/a" for col in columns),
                fixed_text,
                "yes" if ok else "NO",
            )
        )
    return Table(
        headers=(
            "entry",
            "source",
            *(f"{mode} {pattern}" for mode, pattern in columns),
            "fixed twin",
            "as expected",
        ),
        rows=tuple(rows),
        align=("l", "l", *("l" for _ in columns), "r", "l"),
        bad_rows=frozenset(bad),
        wrap=frozenset({0, 1}),
    )


def corpus_verdict(cells: Sequence[Cell]) -> tuple[bool, str]:
    """Whether every corpus cell came out as its traits say, and a sentence saying so."""
    checks = [c.corpus for c in cells if c.corpus is not None]
    wrong = [c for c in cells if c.corpus is not None and not c.corpus.matches]
    if not wrong:
        return True, (
            f"All {len(checks)} corpus cells came out as the entries' traits say: every buggy app"
            " caught wherever it can leak (chance entries: caught or not, this time), clean"
            " where it cannot, and every fixed twin clean."
        )
    listed = "; ".join(
        f"{c.corpus.entry} {c.corpus.variant} under {c.mode} {c.connections}: {c.corpus.verdict}"
        for c in wrong
        if c.corpus is not None
    )
    return False, f"{len(wrong)} of {len(checks)} corpus cells did not: {listed}."


def corpus_section(cells: Sequence[Cell]) -> list[Node]:
    """The report's corpus section (empty for a run that is not a corpus run)."""
    if not cells:
        return []
    return [
        Heading("Corpus: real leak classes, buggy and fixed"),
        corpus_table(cells),
        Paragraph(
            "Each buggy cell: `caught after N` (N requests had finished when the first leaky"
            " response arrived), `clean` where the entry's traits say it cannot leak, `not"
            " caught` for a chance entry that did not show in this run, `n/a` where the"
            " connection pattern cannot run. The fixed twin column sums every mode and pattern."
            " Where each entry can leak is derived from its traits and the modes' traits"
            " (`harness.expectations.derive_leak`).",
            note=True,
        ),
    ]
