"""The corpus: real context-leak bugs from public reports, each a small app with a fixed twin.

Each entry (one module of :mod:`harness.corpus.entries`) reproduces one class of leak that
shipped in a real project, as a buggy app and its fixed twin, with the public source it comes
from and the *traits* of the state that leaks (:class:`~harness.expectations.LeakTraits`: who
shares it, whether it is reset, whether it shows only by chance). Where each entry can leak is
derived from those traits and the server modes' traits, exactly as for the storage backends
(:func:`harness.expectations.derive_leak`): nothing is typed in cell by cell.

``ctxbench corpus`` (:mod:`harness.corpus.run`) runs every entry buggy and fixed under every mode
and connection pattern and checks that the buggy app is caught wherever it can leak (a chance
entry: its catch rate is reported), that it is clean where it cannot, and that the fixed twin is
always clean.

An entry module must not build its apps on import: the harness imports it for its metadata, and
some buggy apps do their damage at import (an app context pushed in module code). Apps are built
on first access of the attributes named by :attr:`Variant.app` (a module ``__getattr__``), which
happens in the server process, where :mod:`harness.wsgi` loads them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.expectations import Expectation, LeakTraits, derive_leak
from harness.load.spec import ConnectionPattern
from harness.protocol import DEFAULT_BACKEND
from harness.servers.base import ModeTraits

__all__ = [
    "ENTRIES",
    "Entry",
    "LoadNeeds",
    "Variant",
    "expectation",
    "render_markdown",
    "select",
    "where_caught",
]


@dataclass(frozen=True)
class Variant:
    """One app of an entry: its import string and the backend or control it runs with."""

    app: str
    backend: str = DEFAULT_BACKEND


@dataclass(frozen=True)
class LoadNeeds:
    """What the load must do for an entry's leak to show, beyond ordinary probe requests."""

    #: Make a fraction of the requests fail at this probe phase (``fail=<phase>``).
    fail_phase: str | None = None
    fail_fraction: float = 0.1
    #: Send this fraction of requests (on top of the probe's) to ``abandon_path``, a streamed
    #: response of the app, and abandon each after its first bytes, next to the measured load
    #: (:func:`harness.load.hostile.abort_mid_body`).
    abandon_path: str | None = None
    abandon_fraction: float = 0.0


@dataclass(frozen=True)
class Entry:
    """One corpus entry: a leak class from a public report, reproduced as a buggy app."""

    #: Short name used on the command line (``--entries``) and in results.
    key: str
    #: Its number in issue 12's list (``"7a"`` for the first lifecycle mutant).
    number: str
    title: str
    #: The public source it reproduces: project and issue or PR numbers, as text.
    source: str
    buggy: Variant
    fixed: Variant
    #: Who shares the leaking state, whether it is reset, whether it shows only by chance.
    traits: LeakTraits
    #: The observation names the leak shows through (evidence outside them is a harness bug).
    shows_through: frozenset[str]
    #: What the fixed twin changes, in a few words.
    fix: str
    load: LoadNeeds = field(default_factory=LoadNeeds)
    #: Import the app before the server forks and patches anything (gunicorn ``--preload``;
    #: uWSGI imports in the master unless ``--lazy-apps``).
    preload: bool = False
    #: Whether it still reproduces on the current library versions, when not simply "yes".
    note: str = "yes"

    def variant(self, name: str) -> Variant:
        """``buggy`` or ``fixed``."""
        if name == "buggy":
            return self.buggy
        if name == "fixed":
            return self.fixed
        raise ValueError(f"variant must be 'buggy' or 'fixed', got {name!r}")


VARIANTS = ("buggy", "fixed")


def expectation(
    entry: Entry, mode: str, mode_traits: ModeTraits, connections: ConnectionPattern
) -> Expectation:
    """Whether ``entry``'s buggy app can leak under ``mode`` and ``connections``, and why."""
    return derive_leak(entry.key, entry.traits, mode, mode_traits, connections)


def _discover() -> dict[str, Entry]:
    from harness.corpus import entries

    found: list[Entry] = []
    for info in pkgutil.iter_modules(entries.__path__):
        module = importlib.import_module(f"{entries.__name__}.{info.name}")
        found.extend(getattr(module, "ENTRIES", ()))
        if hasattr(module, "ENTRY"):
            found.append(module.ENTRY)
    found.sort(key=lambda e: (int(e.number.rstrip("abcdefgh")), e.number))
    rv: dict[str, Entry] = {}
    for entry in found:
        if entry.key in rv:
            raise ValueError(f"corpus entry {entry.key!r} is defined twice")
        rv[entry.key] = entry
    return rv


#: Every entry by key, in the issue's order.
ENTRIES: dict[str, Entry] = _discover()


def select(keys: Iterable[str] = ()) -> list[Entry]:
    """The entries named by ``keys`` (all when empty), each by its key or by its number as
    ``corpus --list`` shows it (``7a``; ``7``: every ``7`` entry); ``ValueError`` naming an
    unknown one."""
    keys = list(keys)
    if not keys:
        return list(ENTRIES.values())
    named = {k: _named(k) for k in keys}
    unknown = [k for k, found in named.items() if not found]
    if unknown:
        raise ValueError(
            f"unknown corpus entr{'y' if len(unknown) == 1 else 'ies'}"
            f" {', '.join(map(repr, unknown))}: choose from {', '.join(ENTRIES)}, or their"
            " numbers (see --list)"
        )
    return list(dict.fromkeys(e for found in named.values() for e in found))


def _named(key: str) -> list[Entry]:
    if key in ENTRIES:
        return [ENTRIES[key]]
    return [e for e in ENTRIES.values() if key in (e.number, e.number.rstrip("abcdefgh"))]


def where_caught(entry: Entry, modes: dict[str, ModeTraits] | None = None) -> str:
    """Where ``entry`` can leak, derived, in a few words: ``gunicorn-sync (both patterns)``."""
    from harness.corpus.run import mode_traits
    from harness.expectations import registered_mode_traits
    from harness.load.spec import CONNECTION_PATTERNS

    names = list(registered_mode_traits() if modes is None else modes)
    parts: list[str] = []
    chance = None
    for mode in names:
        traits = mode_traits(entry, mode) if modes is None else modes[mode]
        cells = [expectation(entry, mode, traits, c) for c in CONNECTION_PATTERNS]
        leaking = [c.connections for c in cells if c.can_leak]
        chance = chance or next((c.chance for c in cells if c.chance), None)
        if len(leaking) == len(CONNECTION_PATTERNS):
            parts.append(mode)
        elif leaking:
            parts.append(f"{mode} ({', '.join(leaking)})")
    if not parts:
        return "nowhere among these modes"
    where = ", ".join(parts)
    return f"by chance ({chance}): {where}" if chance else where


def render_markdown() -> str:
    """The README's "Leaks ctxbench catches" table, from the entries and their derived cells."""
    lines = [
        "| # | leak | source | caught under (derived) | reproduces today | fixed twin |",
        "|---|---|---|---|---|---|",
    ]
    for entry in ENTRIES.values():
        preload = " (app preloaded)" if entry.preload else ""
        lines.append(
            f"| {entry.number} | {entry.title}{preload} | {entry.source} |"
            f" {where_caught(entry)} | {entry.note} | {entry.fix} |"
        )
    return "\n".join(lines) + "\n"
