"""The text in the report's cells and sentences: numbers, percentages, plurals and JSON.

Every table and sentence formats its figures through these, so a kind of figure reads the same
everywhere in the report, on the terminal and in ``compare``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness.results import SPREAD_WARNING


def spread_cell(spread: float, runs: int = 2, mark: str = " ⚠") -> str:
    """A spread as a percentage, with ``mark`` above the threshold; ``-`` over fewer than two
    ``runs``, where ``0.0%`` would read as a steady figure though there is nothing to compare."""
    if runs < 2:
        return "-"
    return fmt_spread(spread) + (mark if spread > SPREAD_WARNING else "")


def fmt_spread(spread: float) -> str:
    """A spread as :func:`fmt_pct` shows it, but with the decimals that tell on which side of
    :data:`SPREAD_WARNING` it is when it rounds to it: ``10.02%`` is flagged, ``9.97%`` is not,
    and ``10%`` flagged under "Spread above 10%" would read as a mistake."""
    if fmt_pct(spread) != fmt_pct(SPREAD_WARNING) or spread == SPREAD_WARNING:
        return fmt_pct(spread)
    decimals = next((d for d in (1, 2, 3) if round(spread * 100, d) != SPREAD_WARNING * 100), 4)
    return f"{spread * 100:.{decimals}f}%"


def plural(count: int, noun: str) -> str:
    """``1 cell``, ``2 cells``."""
    return f"{count:,} {noun if count == 1 else noun + 's'}"


def app_name(app_label: str) -> str:
    """An app's label in a sentence: a bundled app by its name (``core``, ``flask``), a user's
    import string as code, so that Markdown shows ``pkg.__main__:create_app(*a)`` as it is."""
    return app_label if app_label in ("core", "flask") else code(app_label)


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


def fmt_counts(counts: Mapping[str, int]) -> str:
    """``474 x reset, 3 x timeout``: the counts that are not 0, in their order; ``""`` when
    none is."""
    return ", ".join(f"{n:,} x {k}" for k, n in counts.items() if n)


def fmt_limit(value: float) -> str:
    """A limit as a percentage, as it was set: ``5%``, ``2.5%`` (:func:`fmt_pct` shows a
    measured share, ``5.0%``, which beside the limit's ``5%`` reads as two figures)."""
    return f"{value * 100:g}%"


def fmt_mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def fmt_share(value: float | None) -> str:
    """A share of a CPU (or a ratio) with two decimals; ``-`` when not recorded."""
    return "-" if value is None else f"{value:.2f}"


def code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds (CommonMark's rule: a fence
    longer than any run of backticks in it, and a space inside the fence where the text would
    otherwise start or end with a backtick or lose a space at each end)."""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " * (text[:1] == "`" or text[-1:] == "`" or (text[:1] == text[-1:] == " "))
    return f"{fence}{pad}{text}{pad}{fence}"


#: What Markdown would read as markup in plain text: emphasis, strikethrough, code, table
#: pipes, backslashes, a raw HTML tag or autolink (``<`` before a letter, ``/``, ``!`` or ``?``),
#: a link or image (``]`` before ``(`` or ``[``), an entity (``&amp;``), and an underscore that
#: is not inside a word (``sleep_ms`` stays). ``>=``, ``["a"]`` and ``< 1 µs`` stay as they are.
_MARKUP = re.compile(
    r"[\\`*|~]|<(?=[A-Za-z/!?])|\](?=[(\[])|&(?=#?\w+;)|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])"
)


def literal(text: str) -> str:
    """``text`` shown as it is in Markdown (and by the HTML renderer, which reads the same
    escapes): a backslash before every character Markdown would read as markup. For text from
    outside (what a server sent back, an app's name): it must show, not format or run."""
    return _MARKUP.sub(lambda m: "\\" + m[0], text)


def show_json(value: Any) -> str:
    """A value as JSON, so that ``null`` and the string ``"None"`` look different."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
