"""Where each context-storage backend can and cannot leak, derived from the server modes' traits.

A mutant that the harness fails to catch proves the harness blind; a leak reported where none can
happen proves it wrong. Both need to know, for every (backend, server mode, connection pattern),
whether a leak is *possible*. That knowledge is not typed in cell by cell: it follows from two
small sets of declared facts.

Each server mode declares :class:`~harness.servers.base.ModeTraits` next to its command line:

- ``unit``, what serves a request: ``thread-per-connection`` (werkzeug's dev server),
  ``main-thread`` (gunicorn sync, gunicorn tornado, uWSGI processes: the worker process's main
  thread, one request at a time), ``dedicated-thread`` (uvicorn with asgiref's ``WsgiToAsgi``:
  one thread per worker process, not the main one, runs every request in turn),
  ``pool-thread`` (gunicorn gthread, uWSGI threads, waitress,
  granian: a pool of OS threads reused across connections), ``greenlet-per-connection``
  (gunicorn gevent, eventlet: one greenlet per connection, all greenlets of a worker on one OS
  thread) or ``greenlet-per-request`` (uWSGI gevent: a new greenlet for every request);
- ``keepalive``, whether the server answers more than one request on a connection, and
  ``keepalive_applicable``, whether a keep-alive client can run against it at all (not when the
  server closes after each response without saying so: that cell is *not applicable*);
- ``context``, where a request's ``contextvars.Context`` comes from: its thread or greenlet, or a
  fresh copy per request (tornado and hypercorn run each request in an asyncio task of its own;
  uvicorn with ``--reset-contextvars`` starts each in an empty context), and
  ``import_context_copied``, whether those copies descend from the context the app was imported
  in (hypercorn: what the import left set, every request sees);
- ``monkey_patch``, whether ``threading`` is monkey-patched before the app is imported (a
  module-level ``threading.local`` is then greenlet-local) or after it (one native local that
  every greenlet of a thread shares);
- ``proxy``, the reverse proxy in front, if any (``nginx+gunicorn-gevent``): it, not the client,
  decides which connection carries a request to the server.

From those, per connection pattern (``keepalive``: one connection per client, reused; ``fresh``:
a new connection per request), first the pattern the *server* sees: the client's, or behind a
proxy the proxy's own (a proxy that keeps its upstream connections alive hands each to the next
request of any client, so the server sees long-lived connections even when every client comes on
a fresh one; a proxy that does not opens a new upstream connection per request, even for a
keep-alive client). Then these situations follow:

- *requests overlap in one process* unless the unit is the process's main thread, or the
  process runs one unit at a time (``serial``: a pool of one thread);
- *overlapping requests share one OS thread* only when the units are greenlets;
- *a unit serves a later request* when it outlives its connection (main thread, pool thread), or
  when it lives as long as its connection and that connection carries several requests (the
  server keeps it alive and the client reuses it); a greenlet per request never does;
- *a later request runs in a context an earlier one set* when its unit is reused and the
  context comes from the unit;
- *an OS thread serves a later request* everywhere but under a thread per connection;
- *a module-level threading.local* belongs to the OS thread, or to the greenlet when the server
  patched ``threading`` before it imported the app.

Each backend declares :class:`BackendTraits`: the ``scope`` that shares one stored value (the
whole process, one OS thread, a ``threading.local`` created when the app is imported, or one
``contextvars.Context``, which every thread, greenlet and asyncio task has its own of) and
whether popping a context ``resets`` the slot by token. A backend can leak

- across concurrent requests when its scope spans units that run requests at the same time:
  ``process`` where requests overlap in one process, ``os-thread`` where they overlap on one OS
  thread, ``thread-local`` where they overlap on one OS thread and the local is not
  greenlet-local, ``context`` never;
- from one request into the next when it does not reset, wherever its scope serves a later
  request.

Usage::

    table = derive_table()                      # every registered mode x every backend
    nginx = derive_table(proxied_mode_traits())  # nginx in front of the representative modes
    table["no-reset", "gunicorn-gevent", "fresh"].can_leak   # False
    print(render_markdown(table))

The traits describe each mode as the harness runs it by default (gthread with a pool of several
threads, gevent with many connections per worker). Options and server arguments that change a
mode's traits (gunicorn ``--preload``; gunicorn-sync with ``--threads`` above 1, which gunicorn
runs as its gthread worker; a pool of one thread, ``--threads 1``, or one connection at a time,
``--worker-connections 1``, which serve one request at a time: ``ModeTraits.serial``) are taken
into account by
:meth:`~harness.servers.base.ServerMode.traits_for`; a :class:`~harness.servers.LiveServer`
carries the traits it really runs with.
"""

from __future__ import annotations

import dataclasses
import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.load.spec import CONNECTION_PATTERNS, ConnectionPattern
from harness.protocol import DEFAULT_BACKEND
from harness.servers.base import CLOSES_EVERY_CONNECTION, ExecutionUnit, ModeTraits

__all__ = [
    "BACKEND_TRAITS",
    "MODULE_THREAD_LOCAL",
    "BackendTraits",
    "Expectation",
    "ExpectationTable",
    "LeakScope",
    "LeakTraits",
    "Situation",
    "StorageScope",
    "applicable_patterns",
    "derive_expectation",
    "derive_leak",
    "derive_table",
    "escaped_error_expectation",
    "proxied_mode_traits",
    "registered_mode_traits",
    "render_markdown",
    "server_connections",
    "situation",
]


#: Who shares one stored value: the whole process, one OS thread (with all its greenlets), a
#: ``threading.local`` created when the app is imported (one OS thread's, or one greenlet's when
#: ``threading`` was patched first), one ``contextvars.Context`` (each OS thread, greenlet and
#: asyncio task has its own), or one execution unit (each OS thread and greenlet has its own
#: entry; asyncio tasks share it).
StorageScope = t.Literal["process", "os-thread", "thread-local", "context", "unit"]


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
    DEFAULT_BACKEND: BackendTraits(scope="context", resets=True),
    "shared-global": BackendTraits(scope="process", resets=True),
    "thread-ident": BackendTraits(scope="os-thread", resets=True),
    "no-reset": BackendTraits(scope="context", resets=False),
    "never-release": BackendTraits(scope="unit", resets=True, releases=False),
}
#: An app's own module-level ``threading.local()``, set at the start of every request (the
#: ``observe()`` scenarios): not a backend, but derived the same way.
MODULE_THREAD_LOCAL = BackendTraits(scope="thread-local", resets=True)

_GREENLETS: frozenset[ExecutionUnit] = frozenset(
    {"greenlet-per-connection", "greenlet-per-request"}
)
#: How each unit makes requests overlap in a worker process (``None``: they never do).
_OVERLAP: dict[ExecutionUnit, str | None] = {
    "thread-per-connection": "requests overlap in the process, on a new OS thread per connection",
    "main-thread": None,
    "dedicated-thread": None,
    "pool-thread": "requests overlap in each worker, on the OS threads of its pool",
    "greenlet-per-connection": "requests overlap in each worker, on a greenlet per connection",
    "greenlet-per-request": "requests overlap in each worker, on a greenlet per request",
}
#: How each unit serves request after request (``None``: it serves one connection at most).
_OUTLIVES_CONNECTION: dict[ExecutionUnit, str | None] = {
    "thread-per-connection": None,
    "main-thread": "each worker's main thread serves request after request",
    "dedicated-thread": "each worker's one WSGI thread serves request after request, across"
    " connections",
    "pool-thread": "each pool thread serves request after request, across connections",
    "greenlet-per-connection": None,
    "greenlet-per-request": None,
}


@dataclass(frozen=True)
class Situation:
    """What a mode does with requests under one connection pattern, each fact with its reason."""

    overlap_in_process: bool
    overlap_in_process_why: str
    overlap_on_one_thread: bool
    overlap_on_one_thread_why: str
    #: A thread or greenlet serves a later request.
    unit_reused: bool
    unit_reused_why: str
    #: A later request runs in a ``contextvars.Context`` that an earlier request wrote to.
    context_reused: bool
    context_reused_why: str
    #: An OS thread serves a later request.
    os_thread_reused: bool
    os_thread_reused_why: str
    #: A module-level ``threading.local`` is per greenlet (else per OS thread).
    thread_local_per_greenlet: bool
    thread_local_why: str
    #: Whether the connection pattern can run against the mode at all.
    applicable: bool = True
    applicable_why: str = ""


def server_connections(
    traits: ModeTraits, connections: ConnectionPattern
) -> tuple[ConnectionPattern, str]:
    """The connection pattern the server sees when clients use ``connections``, and why.

    Without a proxy it is the client's (the reason is then empty). Behind a proxy it is the
    proxy's: ``keepalive`` when the proxy reuses its upstream connections for any client and the
    server keeps them alive, ``fresh`` otherwise.
    """
    proxy = traits.proxy
    if proxy is None:
        return connections, ""
    if not proxy.reuses_upstream_connections:
        return "fresh", f"behind {proxy.name}, every request reaches the server on a new connection"
    if not traits.keepalive:
        return "fresh", (
            f"behind {proxy.name}, the server still closes every upstream connection after its"
            " response, so every request comes on a new connection"
        )
    return "keepalive", (
        f"behind {proxy.name}, upstream connections stay open and go to the next request of any"
        " client"
    )


def situation(traits: ModeTraits, connections: ConnectionPattern) -> Situation:
    """Derive what happens to requests under ``traits`` and ``connections`` (the client's)."""
    connections, via_proxy = server_connections(traits, connections)
    unit = traits.unit
    greenlets = unit in _GREENLETS
    overlap_why = _OVERLAP[unit]
    if traits.serial is not None:  # a pool of one thread, one greenlet at a time
        overlap = False
        overlap_why = f"each server process serves one request at a time ({traits.serial})"
        one_thread, one_thread_why = False, overlap_why
    elif overlap_why is None:
        overlap = False
        thread = "main thread" if unit == "main-thread" else "one WSGI thread"
        overlap_why = f"each worker process serves one request at a time, on its {thread}"
        one_thread, one_thread_why = False, overlap_why
    elif greenlets:
        overlap = True
        one_thread, one_thread_why = True, "concurrent requests are greenlets of one OS thread"
    else:
        overlap = True
        one_thread, one_thread_why = False, "concurrent requests run on distinct OS threads"

    kept_alive = traits.keepalive and connections == "keepalive"
    reused_why = _OUTLIVES_CONNECTION[unit]
    reused = reused_why is not None or (kept_alive and unit != "greenlet-per-request")
    if unit == "greenlet-per-request":
        reused_why = "each request gets a new greenlet"
    elif reused_why is None:  # the unit lives as long as its connection
        noun = "thread" if unit == "thread-per-connection" else "greenlet"
        if via_proxy and connections == "keepalive":
            reused_why = f"{via_proxy}, so one {noun} serves requests of many clients in turn"
        elif via_proxy:
            reused_why = f"{via_proxy}, each with a new {noun}"
        elif not traits.keepalive:
            reused_why = (
                f"each connection gets a new {noun} and carries one request (the server closes"
                " it after the response)"
            )
        elif connections == "fresh":
            reused_why = f"each request comes on a new connection, with a new {noun}"
        else:
            reused_why = f"one {noun} serves every request of its keep-alive connection in turn"

    if traits.context == "request":
        context_reused = False
        context_why = "each request runs in a fresh copy of the context (its own asyncio task)"
    else:
        context_reused, context_why = reused, reused_why

    if unit == "thread-per-connection":
        thread_reused, thread_why = reused, reused_why
    elif greenlets:
        thread_reused = True
        thread_why = "every greenlet of a worker runs on its one OS thread, request after request"
    else:
        thread_reused, thread_why = True, t.cast(str, _OUTLIVES_CONNECTION[unit])

    per_greenlet = greenlets and traits.monkey_patch == "before-app"
    if per_greenlet:
        local_why = "threading is patched before the app is imported, so a local is per greenlet"
    elif greenlets and traits.monkey_patch == "after-app":
        local_why = (
            "threading is patched only after the app is imported, so a module-level local is one"
            " native local shared by every greenlet of a thread"
        )
    elif greenlets:
        local_why = "threading is never patched, so a threading.local is shared by the greenlets"
    else:
        local_why = "a threading.local belongs to the OS thread that serves the request"

    applicable = connections != "keepalive" or traits.keepalive_applicable
    applicable_why = (
        ""
        if applicable
        else f"Not applicable: {CLOSES_EVERY_CONNECTION}, so a keep-alive client cannot run"
        " against it"
    )
    return Situation(
        overlap, overlap_why, one_thread, one_thread_why, reused, reused_why,
        context_reused, context_why, thread_reused, thread_why, per_greenlet, local_why,
        applicable, applicable_why,
    )  # fmt: skip


def applicable_patterns(
    traits: ModeTraits, patterns: Iterable[ConnectionPattern] = CONNECTION_PATTERNS
) -> tuple[ConnectionPattern, ...]:
    """The connection patterns of ``patterns`` that can run against a mode with ``traits``."""
    return tuple(p for p in patterns if situation(traits, p).applicable)


@dataclass(frozen=True)
class Expectation:
    """Whether one backend can leak under one mode and connection pattern, and why.

    A cell that is not ``applicable`` (a keep-alive client against a server that cannot keep
    connections alive) is never run and cannot leak.
    """

    backend: str
    mode: str
    connections: ConnectionPattern
    can_leak: bool
    reason: str
    applicable: bool = True
    #: Why a possible leak shows only by chance (``None``: every run of the cell can show it).
    chance: str | None = None


def derive_expectation(
    backend: str,
    backend_traits: BackendTraits,
    mode: str,
    mode_traits: ModeTraits,
    connections: ConnectionPattern,
) -> Expectation:
    """Derive one cell of the table from the backend's and the mode's traits."""
    s = situation(mode_traits, connections)
    if not s.applicable:
        return Expectation(backend, mode, connections, False, s.applicable_why, applicable=False)
    leaks: list[str] = []
    safe: list[str] = []

    scope = backend_traits.scope
    if scope == "thread-local" and s.thread_local_per_greenlet:
        safe.append(s.thread_local_why)
    elif scope == "process":
        if s.overlap_in_process:
            leaks.append(f"{s.overlap_in_process_why}, sharing one process-wide slot")
        else:
            safe.append(s.overlap_in_process_why)
    elif scope in ("os-thread", "thread-local"):
        what = "thread-keyed entry" if scope == "os-thread" else "thread-local"
        if s.overlap_on_one_thread:
            because = f" ({s.thread_local_why})" if scope == "thread-local" else ""
            leaks.append(f"{s.overlap_on_one_thread_why}, sharing one {what}{because}")
        else:
            safe.append(s.overlap_on_one_thread_why)
    elif scope == "unit":
        safe.append("every OS thread and greenlet has its own entry")
    else:
        safe.append("every OS thread, greenlet and asyncio task has its own contextvars.Context")

    if backend_traits.resets:
        safe.append("the slot is reset by token when a request ends")
    else:
        if scope == "process":
            reused, why = True, "every request of a worker process uses the same slot"
        elif scope == "os-thread" or (scope == "thread-local" and not s.thread_local_per_greenlet):
            reused, why = s.os_thread_reused, s.os_thread_reused_why
        elif scope in ("thread-local", "unit"):
            reused, why = s.unit_reused, s.unit_reused_why
        else:
            reused, why = s.context_reused, s.context_reused_why
        if reused:
            leaks.append(f"{why}, and sees what the previous request left set")
        else:
            safe.append(f"{why}; a new thread, greenlet or context starts empty")

    reason = "; ".join(leaks or safe)
    return Expectation(backend, mode, connections, bool(leaks), reason[:1].upper() + reason[1:])


def escaped_error_expectation(cell: Expectation, mode_traits: ModeTraits) -> Expectation:
    """Narrow ``cell`` to a leak left behind by a request whose error escapes the app.

    A server answers an error that escapes the WSGI app with a 500 and closes that connection,
    so the thread or greenlet that served it serves no later request unless it outlives its
    connection (a main thread, a pool thread). Elsewhere the stale state dies with it.
    """
    if not cell.can_leak:
        return cell
    outlives = _OUTLIVES_CONNECTION[mode_traits.unit]
    if outlives is not None:
        return cell
    return Expectation(
        cell.backend,
        cell.mode,
        cell.connections,
        False,
        "The failing request's error escapes the app, so the server closes its connection, and"
        " the thread or greenlet that served it serves nothing after it",
    )


#: Who shares what an app or library leaks: a backend's scope, or ``import-context``, the
#: ``contextvars.Context`` of the thread that imported the app (something set at import time,
#: such as an app context pushed in module code).
LeakScope = StorageScope | t.Literal["import-context"]


@dataclass(frozen=True)
class LeakTraits:
    """The traits of a leak that is not a backend: a negative control, a corpus entry.

    ``scope`` and ``resets`` mean what they mean for a backend and are derived the same way;
    ``error_escapes`` narrows the cell with :func:`escaped_error_expectation` (the leak is left
    by a failing request whose error escapes the app); ``chance`` says why a leak that can
    happen shows only by chance (address reuse, a race), so a run that misses it is not wrong.
    """

    scope: LeakScope
    resets: bool
    error_escapes: bool = False
    chance: str | None = None
    #: The leak is left only by a response body the server abandons without closing it
    #: (``ModeTraits.closes_abandoned_body`` is false).
    needs_unclosed_body: bool = False
    #: For a ``thread-local`` scope: the module whose import creates the local (``None``: the
    #: app's own). A server that imports that module before it patches (``ModeTraits.
    #: imported_before_patch``) leaves it native, as an app imported after the patch cannot fix.
    created_by: str | None = None


def derive_leak(
    name: str,
    traits: LeakTraits,
    mode: str,
    mode_traits: ModeTraits,
    connections: ConnectionPattern,
) -> Expectation:
    """Derive whether the leak ``name`` with ``traits`` can show under one mode and pattern."""
    if traits.scope == "import-context":
        s = situation(mode_traits, connections)
        if not s.applicable:
            cell = Expectation(name, mode, connections, False, s.applicable_why, applicable=False)
        elif (
            mode_traits.unit == "main-thread"
            or mode_traits.main_thread_serves
            or mode_traits.import_context_copied
        ):
            cell = Expectation(
                name, mode, connections, True,
                "Requests run on the main thread that imported the app (or in copies of its"
                " context), so they see what the import left in its context",
            )  # fmt: skip
        else:
            cell = Expectation(
                name, mode, connections, False,
                "Requests run on other threads or greenlets than the one that imported the app,"
                " and each starts with an empty context",
            )  # fmt: skip
    else:
        if (
            traits.scope == "thread-local"
            and traits.created_by in mode_traits.imported_before_patch
            and mode_traits.monkey_patch == "before-app"
        ):
            # The server imported the module that makes the local before it patched.
            mode_traits = dataclasses.replace(mode_traits, monkey_patch="after-app")
        cell = derive_expectation(
            name,
            BackendTraits(scope=traits.scope, resets=traits.resets),
            mode,
            mode_traits,
            connections,
        )
    if traits.error_escapes:
        cell = escaped_error_expectation(cell, mode_traits)
    if cell.can_leak and traits.needs_unclosed_body and mode_traits.closes_abandoned_body:
        cell = dataclasses.replace(
            cell,
            can_leak=False,
            reason="The server closes a body its client abandoned in the thread or greenlet that"
            " was iterating it, so the body's context is popped where it was pushed",
        )
    if cell.can_leak and traits.chance is not None:
        cell = dataclasses.replace(cell, chance=traits.chance)
    return cell


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


def proxied_mode_traits() -> dict[str, ModeTraits]:
    """The traits of every registered proxy in front of each representative upstream mode
    (:func:`harness.servers.proxied_modes`): the proxied columns of the README's tables."""
    from harness.servers import get_mode, proxied_modes

    return {name: get_mode(name).traits for name in proxied_modes()}


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
    """Render ``table`` as markdown: a grid (mode x backend), then each cell's reason.

    A grid cell holds one word per connection pattern, ``keepalive / fresh``: ``leaks``, ``-``
    (cannot leak) or ``n/a`` (the pattern cannot run against the mode). With ``reasons=False``
    only the grid.
    """
    backends = list(dict.fromkeys(key[0] for key in table))
    modes = list(dict.fromkeys(key[1] for key in table))
    patterns = list(dict.fromkeys(key[2] for key in table))
    lines = [
        f"| mode ({' / '.join(patterns)}) | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    for mode in modes:
        cells = []
        for backend in backends:
            words = []
            for pattern in patterns:
                cell = table.get((backend, mode, pattern))
                words.append("?" if cell is None else _grid_word(cell))
            cells.append(" / ".join(words))
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    if reasons:
        lines += [
            "",
            "| backend | mode | connections | can leak | why |",
            "|---|---|---|---|---|",
        ]
        for cell in table.values():
            lines.append(
                f"| {cell.backend} | {cell.mode} | {cell.connections} |"
                f" {_leak_word(cell)} | {cell.reason} |"
            )
    return "\n".join(lines) + "\n"


def _grid_word(cell: Expectation) -> str:
    if not cell.applicable:
        return "n/a"
    return "leaks" if cell.can_leak else "-"


def _leak_word(cell: Expectation) -> str:
    if not cell.applicable:
        return "n/a"
    return "yes" if cell.can_leak else "no"
