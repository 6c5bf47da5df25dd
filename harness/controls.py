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
:data:`Control.fail_phase`). Whether a failure leaves a context behind depends on where it
happens; each mutant declares, per phase of :data:`~harness.protocol.FAIL_PHASES`, what a failure
there leaves pushed (:meth:`Control.leak_after`), read from its patch below against
``core.App.wsgi_app`` and ``RequestContext.pop``. A failure anywhere else is handled as on the
correct core: a session, hook or view error is answered with a 500 inside ``wsgi_app``'s ``try``,
a teardown error is logged after the response, and the contexts are popped in its ``finally``.

``pop-skipped-on-session-error``
    ``wsgi_app`` opens the session eagerly right after the push and outside its ``try`` (as Flask
    < 1.0's ``RequestContext.push`` did); when ``open_session`` raises, the pop is skipped and
    the context stays current in the thread or greenlet. The error escapes the app, so the
    server closes that connection: it shows where a thread outlives its connection. Only a
    ``session`` failure does it: everything after the session is inside the ``try``.
``teardown-skips-pop``
    The teardown loop stops at the first raise and the raise skips the pops; the core logs the
    teardown error and answers, so the stale context shows on the next request of the same
    thread or greenlet, keep-alive connections included. A ``teardown_request`` failure skips
    both pops (the request and the app context stay); a ``teardown_appcontext`` failure comes
    after the request context was popped and skips the app context's pop alone, which shows
    only as the app context a later request finds on entry (it pushes a fresh one over it).
``before-first-request-race``
    ``before_first_request`` guarded by an unlocked check-then-set: the first requests of a
    worker that overlap all run it. The probe counts the runs per process. A chance leak: it
    needs a worker's first requests to overlap. Failed requests change nothing: the guard runs
    before any phase that can fail, and a failure is handled as on the correct core.

Each control is installed by name through :mod:`harness.wsgi`, like a backend (``--backend
shared-app-slot``), in the server process before the app is imported. :func:`install` returns
nothing; :func:`restore` undoes it (tests). Everything patches ``core`` classes, so a control
applies to ``core.App`` apps only.
"""

from __future__ import annotations

import sys
import threading
import typing as t
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from core import storage as core_storage
from core.storage import ContextStorage
from harness.backends import SharedGlobalSlot, clear
from harness.expectations import Expectation, LeakTraits, derive_leak, situation
from harness.load.spec import ConnectionPattern
from harness.protocol import FAIL_PHASES
from harness.servers.base import ModeTraits

__all__ = ["CONTROLS", "Control", "PhaseLeak", "expectation", "install", "installed", "restore"]

Undo = Callable[[], None]


@dataclass(frozen=True)
class PhaseLeak:
    """What a request that fails at one phase leaves behind under a lifecycle control."""

    #: What stays pushed in the thread or greenlet that served it, in words.
    leaves: str
    #: Where that can show, derived like a backend's (:func:`harness.expectations.derive_leak`).
    traits: LeakTraits
    #: The observation names it can break (anything else must stay right).
    breaks: frozenset[str]


@dataclass(frozen=True)
class Control:
    """One negative control: how to install it, where it can leak and what it breaks.

    A control with a ``fail_phase`` leaks only after a request fails: ``traits`` and ``breaks``
    are then those of a failure at ``fail_phase`` (the phase it is driven at), ``leaves`` what
    that failure leaves pushed, and ``also_leaks_at`` the other phases at which a failure leaves
    something behind. A failure at any other phase of :data:`~harness.protocol.FAIL_PHASES` is
    handled and popped as on the correct core (:meth:`leak_after` returns ``None``).
    """

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
    #: What a failure at ``fail_phase`` leaves pushed, in words.
    leaves: str = ""
    #: Other phases at which a failed request leaves something behind, each with its leak.
    also_leaks_at: Mapping[str, PhaseLeak] = field(default_factory=dict)

    def __post_init__(self) -> None:
        phases = [] if self.fail_phase is None else [self.fail_phase, *self.also_leaks_at]
        unknown = [p for p in phases if p not in FAIL_PHASES]
        if unknown or (self.fail_phase is None and self.also_leaks_at):
            raise ValueError(
                f"Control {self.name!r}: the phases it leaks after a failure at must be a"
                f" fail_phase and other phases of {', '.join(FAIL_PHASES)}; got fail_phase"
                f" {self.fail_phase!r} and also_leaks_at {list(self.also_leaks_at)!r}."
            )
        if self.fail_phase is not None and (
            not self.leaves or self.fail_phase in self.also_leaks_at
        ):
            raise ValueError(
                f"Control {self.name!r}: say what a failure at {self.fail_phase!r} leaves pushed"
                " (leaves=) and list only the other phases in also_leaks_at."
            )

    @property
    def leak_phases(self) -> tuple[str, ...]:
        """The phases at which a failed request leaves something behind (empty: it needs none)."""
        return () if self.fail_phase is None else (self.fail_phase, *self.also_leaks_at)

    def leak_after(self, phase: str) -> PhaseLeak | None:
        """What a request that fails at ``phase`` leaves behind (``None``: nothing, it is
        handled and popped normally). Only for a control with a ``fail_phase``."""
        if phase == self.fail_phase:
            return PhaseLeak(self.leaves, self.traits, self.breaks)
        return self.also_leaks_at.get(phase)


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
                leaves="the request and app contexts",
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
                leaves="the request and app contexts",
                also_leaks_at={
                    # The request context was popped before the app context's teardown ran:
                    # only the app context stays, under the fresh one every request pushes.
                    "teardown_appcontext": PhaseLeak(
                        "the app context",
                        LeakTraits(scope="context", resets=False),
                        frozenset({"residue.app_context"}),
                    ),
                },
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


#: How the core handles a failure at each phase when nothing skips the pop.
_HANDLED = {
    "session": "answered with a 500 inside wsgi_app's try",
    "before_request": "answered with a 500 inside wsgi_app's try",
    "view": "answered with a 500 inside wsgi_app's try",
    "after_request": "answered with a 500 inside wsgi_app's try",
    "teardown_request": "logged after the response",
    "teardown_appcontext": "logged after the response",
}


def expectation(
    name: str,
    mode: str,
    mode_traits: ModeTraits,
    connections: ConnectionPattern,
    fail_phase: str | None = None,
) -> Expectation:
    """Whether the control ``name`` can leak under ``mode`` and ``connections`` when the requests
    made to fail raise at ``fail_phase`` (``None``: none is made to fail), and why.

    A control that needs no failed request leaks where its traits say, whatever fails: derived
    exactly as a backend's (:func:`harness.expectations.derive_leak`). A lifecycle control that
    leaks only after a failure is derived from the leak a failure at ``fail_phase`` leaves
    (:meth:`Control.leak_after`); with no failure, or one at a phase that leaves nothing behind,
    it cannot leak. An unknown ``fail_phase`` raises ``ValueError``.
    """
    control = CONTROLS[name][0]
    if fail_phase is not None and fail_phase not in FAIL_PHASES:
        raise ValueError(
            f"Unknown fail phase {fail_phase!r}: a request can be made to fail at"
            f" {', '.join(FAIL_PHASES)}."
        )
    if control.fail_phase is None:
        return derive_leak(name, control.traits, mode, mode_traits, connections)
    s = situation(mode_traits, connections)
    if not s.applicable:
        return Expectation(name, mode, connections, False, s.applicable_why, applicable=False)
    where = " or ".join(control.leak_phases)
    leak = None if fail_phase is None else control.leak_after(fail_phase)
    if fail_phase is None:
        reason = (
            f"It leaves a context behind only after a request fails at {where}, and no request"
            f" was made to (--fail-phase {where})"
        )
        return Expectation(name, mode, connections, False, reason)
    if leak is None:
        reason = (
            f"A failure at {fail_phase} is {_HANDLED[fail_phase]}, and its contexts are popped"
            f" as on the correct core: only a failure at {where} leaves one behind"
        )
        return Expectation(name, mode, connections, False, reason)
    cell = derive_leak(name, leak.traits, mode, mode_traits, connections)
    how = cell.reason[:1].lower() + cell.reason[1:]
    return replace(cell, reason=f"A failure at {fail_phase} leaves {leak.leaves} pushed; {how}")


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
