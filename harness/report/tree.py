"""The report as a small document tree, and the text that goes into its cells.

A section of the report is a list of nodes: :class:`Heading`, :class:`Paragraph`,
:class:`Items`, :class:`Table`, :class:`Figure` (an SVG chart), :class:`Group` (layout only)
and :class:`Callout` (a verdict or warning box). :mod:`harness.report.render` turns the same
list into Markdown and into HTML, and :func:`text_table` turns a :class:`Table` into the
fixed-width lines of a terminal.

Paragraph and item text may use three inline marks, which both renderers understand:
`` `code` ``, ``*emphasis*`` and ``**strong**``. Table cells are plain text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.results import SPREAD_WARNING

_T = TypeVar("_T")


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
    """A chart: written next to the report as ``name`` and inlined in the HTML."""

    name: str
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


def spread_cell(spread: float) -> str:
    """A spread as a percentage, marked with ⚠ above the threshold."""
    return fmt_pct(spread) + (" ⚠" if spread > SPREAD_WARNING else "")


def spread_warning(claim: str, figures: Iterable[tuple[str, float]], advice: str) -> list[Node]:
    """A warning box naming each figure whose spread is above the threshold, then the advice."""
    items = tuple(f"{label}: spread {fmt_pct(v)}" for label, v in figures if v > SPREAD_WARNING)
    head = Paragraph(f"**⚠ Spread above {fmt_pct(SPREAD_WARNING)}{claim}:**")
    return [Callout((head, Items(items), Paragraph(advice)), "warning")] if items else []


def plural(count: int, noun: str, nouns: str = "") -> str:
    """``1 cell``, ``2 cells``; ``nouns`` for an irregular plural."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_runs(values: Sequence[float]) -> str:
    """Every repeat's requests/s: ``4,532 / 4,657 / 4,674``."""
    return " / ".join(map(fmt_rps, values)) or "-"


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_us(seconds: float) -> str:
    """Seconds as microseconds, with the precision :func:`fmt_ms` gives milliseconds."""
    return fmt_ms(seconds * 1e6)


def fmt_pct(value: float) -> str:
    return f"{value * 100:.0f}%" if abs(value) >= 0.095 else f"{value * 100:.1f}%"


def fmt_share(value: float | None) -> str:
    """A share of a CPU (or a ratio) with two decimals; ``-`` when not recorded."""
    return "-" if value is None else f"{value:.2f}"


def show_json(value: Any) -> str:
    """A value as JSON, so that ``null`` and the string ``"None"`` look different."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
