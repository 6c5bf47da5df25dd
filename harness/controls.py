"""Negative controls beside the storage backends: one proxy at a time, and lifecycle mutants.

The storage backends (:mod:`harness.backends`) break the app slot and the request slot together,
so every proxy and every residue check fires at once, and nothing shows that each reading of the
probe detects something on its own. The controls here break one concern at a time, or break the
request *lifecycle* of a correct storage:

Per proxy (what they break, and nothing else):

``shared-app-slot``
    The app slot is one process-wide value, the request slot the correct ``ContextVar``:
    ``g`` and ``current_app`` leak between overlapping requests, ``request`` and ``session``
    stay right.
``shared-request-slot``
    The other way round: ``request`` and ``session`` leak, ``g`` and ``current_app`` stay right.
``shared-session``
    Correct storage, but the session interface hands every request one process-wide session
    object: only ``session`` leaks.

Lifecycle mutants (the bugs of Flask #1528 / PR #1822, reproduced on core). They leak only after a
request *fails*, so they are driven with the probe's phase failures (``fail=<phase>``,
:data:`Control.fail_phase`):

``pop-skipped-on-session-error``
    ``wsgi_app`` opens the session eagerly right after the push and outside its ``try`` (as Flask
    < 1.0's ``RequestContext.push`` did); when ``open_session`` raises, the pop is skipped and
    the context stays current in the thread or greenlet. The error escapes the app, so the
    server closes that connection: it shows where a thread outlives its connection.
``teardown-skips-pop``
    The teardown loop stops at the first raise and the raise skips the pops; the core logs the
    teardown error and answers, so the stale context shows on the next request of the same
    thread or greenlet, keep-alive connections included.
``before-first-request-race``
    ``before_first_request`` guarded by an unlocked check-then-set: the first requests of a
    worker that overlap all run it. The probe counts the runs per process. A chance leak: it
    needs a worker's first requests to overlap.

Each control is installed by name through :mod:`harness.wsgi`, like a backend (``--backend
shared-app-slot``), in the server process before the app is imported. :func:`install` returns
nothing; :func:`restore` undoes it (tests). Everything patches ``core`` classes, so a control
applies to ``core.App`` apps only.
"""

from __future__ import annotations

import sys
import threading
import typing as t
from collections.abc import Callable
from dataclasses import dataclass

from core import storage as core_storage
from core.storage import ContextStorage
from harness.backends import SharedGlobalSlot, clear
from harness.expectations import Expectation, LeakTraits, derive_leak
from harness.load.spec import ConnectionPattern
from harness.servers.base import ModeTraits

__all__ = ["CONTROLS", "Control", "expectation", "install", "installed", "restore"]

Undo = Callable[[], None]


@dataclass(frozen=True)
class Control:
    """One negative control: how to install it, where it can leak and what it breaks."""

    name: str
    summary: str
    #: ``proxy`` (breaks one proxy or slot) or ``lifecycle`` (breaks the request lifecycle).
    kind: t.Literal["proxy", "lifecycle"]
    #: Where it can leak, derived like a backend's (:func:`harness.expectations.derive_leak`).
    traits: LeakTraits
    #: The observation names it can break (anything else must stay right).
    breaks: frozenset[str]
    #: The probe phase at which requests must fail for it to leak (``None``: no failures needed).
    fail_phase: str | None = None


def _patched(*replacements: tuple[t.Any, str, t.Any]) -> Undo:
    """Set each ``(owner, name, value)``; the returned undo puts every original back."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in replacements]
    for owner, name, value in replacements:
        setattr(owner, name, value)

    def undo() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)

    return undo


# -- per-proxy storages ------------------------------------------------------------------------


def _one_shared_slot(which: t.Literal["app", "request"]) -> Undo:
    correct = core_storage.default_storage
    shared = SharedGlobalSlot(which)
    if which == "app":
        storage = ContextStorage("shared-app-slot", shared, correct.request)
    else:
        storage = ContextStorage("shared-request-slot", correct.app, shared)
    core_storage.use_storage(storage)

    def undo() -> None:
        clear(storage)
        core_storage.use_storage(correct)

    return undo


def _shared_session() -> Undo:
    from core.sessions import SecureCookieSession, SecureCookieSessionInterface

    one_session = SecureCookieSession()

    def open_session(self: t.Any, app: t.Any, request: t.Any) -> SecureCookieSession | None:
        # The bug: one session object for the whole process, whatever the cookie says.
        if self.get_signing_serializer(app) is None:
            return None
        return one_session

    return _patched((SecureCookieSessionInterface, "open_session", open_session))


# -- lifecycle mutants ---------------------------------------------------------------------------


def _pop_skipped_on_session_error() -> Undo:
    from core.app import App
    from core.ctx import RequestContext
    from core.helpers import ContextStream

    def wsgi_app(self: App, environ: t.Any, start_response: t.Any) -> t.Iterable[bytes]:
        ctx = RequestContext(self, environ)
        ctx.push()
        if self.secret_key:
            # The bug: the session is opened outside the try below, so an error here leaves
            # the context pushed (Flask < 1.0 opened it inside RequestContext.push()).
            ctx.session  # noqa: B018
        error: BaseException | None = None
        try:
            try:
                response = self.full_dispatch_request(ctx)
            except Exception as e:
                error = e
                response = self.handle_exception(e, ctx)
            if ctx._holds and not isinstance(response.response, ContextStream):
                ctx._holds = 0
            return response(environ, start_response)
        finally:
            self._pop_context(ctx, error)

    return _patched((App, "wsgi_app", wsgi_app))


def _teardown_skips_pop() -> Undo:
    from core import app as core_app
    from core.ctx import RequestContext, _sentinel

    def call_all(
        funcs: t.Iterable[t.Any], exc: BaseException | None, app: t.Any, kind: str
    ) -> None:
        for func in funcs:  # the bug: the first raise stops the loop
            func(exc)

    def pop(self: RequestContext, exc: BaseException | None = _sentinel) -> None:
        pushed = self._pushed
        app_ctx = t.cast(t.Any, self._app_ctx)
        teardown = len(pushed) == 1 and not self._holds and not self._torn_down
        if teardown:
            self._torn_down = True
            if exc is _sentinel:
                exc = sys.exc_info()[1]
            if self.app.teardown_request_funcs:
                # The bug: no try/finally, so a raising teardown function skips both resets.
                self.app.do_teardown_request(exc)
        slot, token = pushed.pop()
        slot.reset(token)
        if teardown and self.app.teardown_appcontext_funcs:
            self.app.do_teardown_appcontext(exc)
        slot, token = app_ctx._pushed.pop()
        slot.reset(token)

    return _patched((RequestContext, "pop", pop), (core_app, "_call_all", call_all))


def _before_first_request_race() -> Undo:
    from core.app import App

    def trigger(self: App) -> None:
        # The bug: check, run, then set, with no lock: overlapping first requests all run it.
        if self._before_first_done:
            return
        for func in self.before_first_request_funcs:
            func()
        self._before_first_done = True

    return _patched((App, "_try_trigger_before_first_request", trigger))


_APP_NAMES = frozenset({"g", "current_app", "residue.app_context", "residue.g", "skipped"})
_REQUEST_NAMES = frozenset({"request", "session", "token", "residue.request_context"})
_SESSION_NAMES = frozenset({"session", "residue.session"})
#: A stale context left in a thread shows as entry residue, and through every proxy after it.
_STALE_CONTEXT_NAMES = _APP_NAMES | _REQUEST_NAMES | _SESSION_NAMES

#: Every control by name, with its installer.
CONTROLS: dict[str, tuple[Control, Callable[[], Undo]]] = {
    c.name: (c, installer)
    for c, installer in (
        (
            Control(
                "shared-app-slot",
                "the app slot is one process-wide value; the request slot is correct",
                "proxy",
                LeakTraits(scope="process", resets=True),
                _APP_NAMES,
            ),
            lambda: _one_shared_slot("app"),
        ),
        (
            Control(
                "shared-request-slot",
                "the request slot is one process-wide value; the app slot is correct",
                "proxy",
                LeakTraits(scope="process", resets=True),
                _REQUEST_NAMES | _SESSION_NAMES,
            ),
            lambda: _one_shared_slot("request"),
        ),
        (
            Control(
                "shared-session",
                "the session interface hands every request one process-wide session object",
                "proxy",
                LeakTraits(scope="process", resets=True),
                _SESSION_NAMES,
            ),
            _shared_session,
        ),
        (
            Control(
                "pop-skipped-on-session-error",
                "wsgi_app opens the session outside its try: an open_session error skips the pop"
                " (Flask #1528, PR #1822)",
                "lifecycle",
                LeakTraits(scope="context", resets=False, error_escapes=True),
                _STALE_CONTEXT_NAMES,
                fail_phase="session",
            ),
            _pop_skipped_on_session_error,
        ),
        (
            Control(
                "teardown-skips-pop",
                "the teardown loop stops at the first raise, which skips the pops (Flask #1528)",
                "lifecycle",
                LeakTraits(scope="context", resets=False),
                _STALE_CONTEXT_NAMES,
                fail_phase="teardown_request",
            ),
            _teardown_skips_pop,
        ),
        (
            Control(
                "before-first-request-race",
                "before_first_request behind an unlocked check-then-set: overlapping first"
                " requests of a worker all run it",
                "lifecycle",
                LeakTraits(
                    scope="process",
                    resets=True,
                    chance="only when a worker's first requests overlap while it initializes",
                ),
                frozenset({"residue.before_first_request"}),
            ),
            _before_first_request_race,
        ),
    )
}


def expectation(
    name: str, mode: str, mode_traits: ModeTraits, connections: ConnectionPattern
) -> Expectation:
    """Whether the control ``name`` can leak under ``mode`` and ``connections``, and why.

    Derived from its traits exactly as a backend's (:func:`harness.expectations.derive_leak`).
    """
    return derive_leak(name, CONTROLS[name][0].traits, mode, mode_traits, connections)


_installed: list[tuple[str, Undo]] = []
_lock = threading.Lock()


def install(name: str) -> Control:
    """Install the control called ``name`` in this process and return it.

    Call it at start-up, before the app serves a request (``harness.wsgi`` does, in the server
    process, before it imports the app). An unknown name raises ``ValueError``.
    """
    try:
        control, installer = CONTROLS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in CONTROLS)
        raise ValueError(f"Unknown negative control {name!r}. Valid controls: {valid}.") from None
    with _lock:
        _installed.append((name, installer()))
    return control


def installed() -> list[str]:
    """The names of the controls installed in this process, in order."""
    return [name for name, _ in _installed]


def restore() -> None:
    """Undo every installed control, last first (tests)."""
    with _lock:
        while _installed:
            _installed.pop()[1]()
