"""Where each context-storage backend can and cannot leak, derived from the server modes' traits.

A mutant that the harness fails to catch proves the harness blind; a leak reported where none can
happen proves it wrong. Both need to know, for every (backend, server mode, connection pattern),
whether a leak is *possible*. That knowledge is not typed in cell by cell: it follows from two
small sets of declared facts.

Each server mode declares :class:`~harness.servers.base.ModeTraits` next to its command line:

- ``unit``, what serves a request: ``thread-per-connection`` (werkzeug's dev server),
  ``main-thread`` (gunicorn sync: the worker process's main thread, one request at a time),
  ``pool-thread`` (gunicorn gthread: a pool of OS threads reused across connections) or
  ``greenlet-per-connection`` (gunicorn gevent: one greenlet per connection, all greenlets of a
  worker on one OS thread);
- ``keepalive``, whether the server answers more than one request on a connection.

From those, per connection pattern (``keepalive``: one connection per client, reused; ``fresh``:
a new connection per request), three situations follow:

- *requests overlap in one process* unless the unit is the process's main thread;
- *overlapping requests share one OS thread* only when the units are greenlets;
- *a unit serves a later request* when it outlives its connection (main thread, pool thread), or
  when it lives as long as its connection and that connection carries several requests (the
  server keeps it alive and the client reuses it).

Each backend declares :class:`BackendTraits`: the ``scope`` that shares one stored value (the
whole process, one OS thread, or one ``contextvars.Context``, which every thread and greenlet has
its own of) and whether popping a context ``resets`` the slot by token. A backend can leak

- across concurrent requests when its scope spans units that run requests at the same time:
  ``process`` where requests overlap in one process, ``os-thread`` where they overlap on one OS
  thread, ``context`` never;
- from one request into the next when it does not reset, wherever a unit serves a later request.

Usage::

    table = derive_table()                      # every registered mode x every backend
    table["no-reset", "gunicorn-gevent", "fresh"].can_leak   # False
    print(render_markdown(table))

The traits describe each mode as the harness runs it by default (gthread with a pool of several
threads, gevent with many connections per worker); a mode run with one thread or one connection
per worker cannot show what the table says it can.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.servers.base import ExecutionUnit, ModeTraits

__all__ = [
    "BACKEND_TRAITS",
    "CONNECTION_PATTERNS",
    "BackendTraits",
    "ConnectionPattern",
    "Expectation",
    "ExpectationTable",
    "Situation",
    "StorageScope",
    "derive_expectation",
    "derive_table",
    "registered_mode_traits",
    "render_markdown",
    "situation",
]

ConnectionPattern = t.Literal["keepalive", "fresh"]
CONNECTION_PATTERNS: tuple[ConnectionPattern, ...] = ("keepalive", "fresh")

#: Who shares one stored value: the whole process, one OS thread (with all its greenlets), one
#: ``contextvars.Context`` (each OS thread, greenlet and asyncio task has its own), or one
#: execution unit (each OS thread and greenlet has its own entry; asyncio tasks share it).
StorageScope = t.Literal["process", "os-thread", "context", "unit"]


@dataclass(frozen=True)
class BackendTraits:
    """How a context-storage backend keeps a slot's value."""

    #: Who shares one stored value (see :data:`StorageScope`).
    scope: StorageScope
    #: Whether popping a context puts back what the slot held before (reset by token).
    resets: bool
    #: Whether a unit's entry goes away with the unit. ``False`` is a memory leak, not
    #: cross-talk: it does not change where a backend can leak context, only what a soak sees.
    releases: bool = True


#: The traits of the backends in :data:`harness.backends.BACKENDS`.
BACKEND_TRAITS: dict[str, BackendTraits] = {
    "contextvar": BackendTraits(scope="context", resets=True),
    "shared-global": BackendTraits(scope="process", resets=True),
    "thread-ident": BackendTraits(scope="os-thread", resets=True),
    "no-reset": BackendTraits(scope="context", resets=False),
    "never-release": BackendTraits(scope="unit", resets=True, releases=False),
}

#: How each unit makes requests overlap in a worker process (``None``: they never do).
_OVERLAP: dict[ExecutionUnit, str | None] = {
    "thread-per-connection": "requests overlap in the process, on a new OS thread per connection",
    "main-thread": None,
    "pool-thread": "requests overlap in each worker, on the OS threads of its pool",
    "greenlet-per-connection": "requests overlap in each worker, on a greenlet per connection",
}
#: How each unit serves request after request (``None``: it serves one connection only).
_OUTLIVES_CONNECTION: dict[ExecutionUnit, str | None] = {
    "thread-per-connection": None,
    "main-thread": "each worker's main thread serves request after request",
    "pool-thread": "each pool thread serves request after request, across connections",
    "greenlet-per-connection": None,
}


@dataclass(frozen=True)
class Situation:
    """What a mode does with requests under one connection pattern, each fact with its reason."""

    overlap_in_process: bool
    overlap_in_process_why: str
    overlap_on_one_thread: bool
    overlap_on_one_thread_why: str
    unit_reused: bool
    unit_reused_why: str


def situation(traits: ModeTraits, connections: ConnectionPattern) -> Situation:
    """Derive what happens to requests under ``traits`` and ``connections``."""
    unit = traits.unit
    overlap_why = _OVERLAP[unit]
    if overlap_why is None:
        overlap = False
        overlap_why = "each worker process serves one request at a time, on its main thread"
        one_thread, one_thread_why = False, overlap_why
    elif unit == "greenlet-per-connection":
        overlap = True
        one_thread, one_thread_why = True, "concurrent requests are greenlets of one OS thread"
    else:
        overlap = True
        one_thread, one_thread_why = False, "concurrent requests run on distinct OS threads"

    reused_why = _OUTLIVES_CONNECTION[unit]
    reused = reused_why is not None or (traits.keepalive and connections == "keepalive")
    if reused_why is None:  # the unit lives as long as its connection
        noun = "thread" if unit == "thread-per-connection" else "greenlet"
        if not traits.keepalive:
            reused_why = (
                f"each connection gets a new {noun} and carries one request (the server closes"
                " it after the response)"
            )
        elif connections == "fresh":
            reused_why = f"each request comes on a new connection, with a new {noun}"
        else:
            reused_why = f"one {noun} serves every request of its keep-alive connection in turn"
    return Situation(overlap, overlap_why, one_thread, one_thread_why, reused, reused_why)


@dataclass(frozen=True)
class Expectation:
    """Whether one backend can leak under one mode and connection pattern, and why."""

    backend: str
    mode: str
    connections: ConnectionPattern
    can_leak: bool
    reason: str


def derive_expectation(
    backend: str,
    backend_traits: BackendTraits,
    mode: str,
    mode_traits: ModeTraits,
    connections: ConnectionPattern,
) -> Expectation:
    """Derive one cell of the table from the backend's and the mode's traits."""
    s = situation(mode_traits, connections)
    leaks: list[str] = []
    safe: list[str] = []

    scope = backend_traits.scope
    if scope == "process":
        if s.overlap_in_process:
            leaks.append(f"{s.overlap_in_process_why}, sharing one process-wide slot")
        else:
            safe.append(s.overlap_in_process_why)
    elif scope == "os-thread":
        if s.overlap_on_one_thread:
            leaks.append(f"{s.overlap_on_one_thread_why}, sharing one thread-keyed entry")
        else:
            safe.append(s.overlap_on_one_thread_why)
    elif scope == "unit":
        safe.append("every OS thread and greenlet has its own entry")
    else:
        safe.append("every OS thread and greenlet has its own contextvars.Context")

    if backend_traits.resets:
        safe.append("the slot is reset by token when a request ends")
    elif s.unit_reused:
        leaks.append(f"{s.unit_reused_why}, and sees what the previous request left set")
    else:
        safe.append(f"{s.unit_reused_why}; a new thread or greenlet starts with an empty context")

    reason = "; ".join(leaks or safe)
    return Expectation(backend, mode, connections, bool(leaks), reason[:1].upper() + reason[1:])


#: ``(backend, mode, connections) -> Expectation``, ordered by backend, mode, pattern.
ExpectationTable = dict[tuple[str, str, ConnectionPattern], Expectation]


def registered_mode_traits() -> dict[str, ModeTraits]:
    """The declared traits of every registered server mode, in registry order.

    Raises ``TypeError`` naming a mode that declares no ``traits``: without them the harness
    cannot tell where that mode can leak.
    """
    from harness.servers import MODES

    rv: dict[str, ModeTraits] = {}
    for name, mode in MODES.items():
        traits = getattr(mode, "traits", None)
        if not isinstance(traits, ModeTraits):
            raise TypeError(
                f"server mode {name!r} declares no traits (got {traits!r}).\n\n"
                "Give its class a `traits = ModeTraits(unit=..., keepalive=...)` attribute"
                " (harness.servers.base.ModeTraits): the expected leaks are derived from it."
            )
        rv[name] = traits
    return rv


def derive_table(
    modes: Mapping[str, ModeTraits] | None = None,
    backends: Mapping[str, BackendTraits] | None = None,
    patterns: Iterable[ConnectionPattern] = CONNECTION_PATTERNS,
) -> ExpectationTable:
    """Derive the whole table; by default every registered mode and every known backend."""
    mode_traits = registered_mode_traits() if modes is None else dict(modes)
    backend_traits = BACKEND_TRAITS if backends is None else dict(backends)
    patterns = tuple(patterns)
    return {
        (backend, mode, pattern): derive_expectation(backend, b_traits, mode, m_traits, pattern)
        for backend, b_traits in backend_traits.items()
        for mode, m_traits in mode_traits.items()
        for pattern in patterns
    }


def render_markdown(table: ExpectationTable, *, reasons: bool = True) -> str:
    """Render ``table`` as markdown: a grid (backend x mode/pattern), then each cell's reason.

    A grid cell says ``leaks`` or ``-`` (cannot leak). With ``reasons=False`` only the grid.
    """
    backends = list(dict.fromkeys(key[0] for key in table))
    columns = list(dict.fromkeys((key[1], key[2]) for key in table))
    lines = [
        "| backend | " + " | ".join(f"{mode} {pattern}" for mode, pattern in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for backend in backends:
        cells = []
        for mode, pattern in columns:
            cell = table.get((backend, mode, pattern))
            cells.append("?" if cell is None else ("leaks" if cell.can_leak else "-"))
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    if reasons:
        lines += [
            "",
            "| backend | mode | connections | can leak | why |",
            "|---|---|---|---|---|",
        ]
        for cell in table.values():
            lines.append(
                f"| {cell.backend} | {cell.mode} | {cell.connections} |"
                f" {'yes' if cell.can_leak else 'no'} | {cell.reason} |"
            )
    return "\n".join(lines) + "\n"
