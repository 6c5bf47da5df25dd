"""The report as a small document tree.

A section of the report is a list of nodes: :class:`Heading`, :class:`Paragraph`,
:class:`Items`, :class:`Table`, :class:`Figure` (an SVG chart), :class:`Group` (layout only)
and :class:`Callout` (a verdict or warning box). :mod:`harness.report.render` turns the same
list into Markdown and into HTML, and :func:`text_table` turns a :class:`Table` into the
fixed-width lines of a terminal; :mod:`harness.report.text` writes the text in the cells.

Paragraph and item text may use three inline marks, which both renderers understand:
`` `code` ``, ``*emphasis*`` and ``**strong**``; text from outside in them (what a server sent,
an app's name) goes through :func:`~harness.report.text.literal`. Table cells are plain text:
the Markdown renderer escapes them, so a cell shows what it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from harness.report.text import fmt_pct, fmt_spread
from harness.results import SPREAD_WARNING

_T = TypeVar("_T")

#: What a spread warning advises unless it says otherwise.
JITTER_ADVICE = (
    "To reduce jitter: pin the server and the load driver to separate cores (taskset), close"
    " other busy programs, disable CPU frequency scaling or turbo if you can, and raise"
    " --repeats and --duration so each figure is the median of more, longer measurements."
)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


class Note(Paragraph):
    """Secondary text: how to read a table, where the numbers come from."""


@dataclass(frozen=True)
class Items:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """Headers, rows of cell strings, and per column "l" or "r" alignment (``"llr"``)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str
    bad_rows: frozenset[int] = frozenset()  # leaks, errors, missed targets: red, bold
    warn_rows: frozenset[int] = frozenset()  # spread above the threshold: amber (unless bad)
    wrap: frozenset[int] = frozenset()  # columns whose cells may wrap in HTML
    mono: bool = False  # cells are data (evidence, settings): a monospace font in HTML


@dataclass(frozen=True)
class Figure:
    name: str  # a chart is written next to the report as this SVG file, and inlined in the HTML
    title: str
    svg: str


@dataclass(frozen=True)
class Group:
    """Nodes laid out together in HTML (``style``: "charts", "cards", "" for one card)."""

    body: tuple[Node, ...]
    style: str = ""


class Callout(Group):
    """A box: ``style`` is "warning", or "verdict ok" / "leak" / "failed" / "mutant"."""


Node = Heading | Paragraph | Items | Table | Figure | Group


def where(items: Iterable[_T], test: Callable[[_T], object]) -> frozenset[int]:
    """The indexes of the ``items`` that pass ``test``: a table's bad or warn rows."""
    return frozenset(i for i, item in enumerate(items) if test(item))


def text_table(table: Table) -> list[str]:
    """The table as fixed-width lines for a terminal: header, a rule, one line per row."""
    widths = [max(len(r[i]) for r in (table.headers, *table.rows)) for i in range(len(table.align))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, table.align, strict=True)
        ).rstrip()

    return [line(table.headers), line(["-" * w for w in widths]), *map(line, table.rows)]


def spread_warning(
    claim: str, figures: Iterable[tuple[str, float]], advice: str = JITTER_ADVICE
) -> list[Node]:
    """A warning box naming each figure whose spread is above the threshold, then the advice."""
    items = tuple(f"{label}: spread {fmt_spread(v)}" for label, v in figures if v > SPREAD_WARNING)
    head = Paragraph(f"**⚠ Spread above {fmt_pct(SPREAD_WARNING)}{claim}:**")
    return [Callout((head, Items(items), Paragraph(advice)), "warning")] if items else []
