"""The probe's own per-request state: the trusted token and the observations made so far.

Design note: the state of one probe request lives in ``_cv_probe``, a module-level
``ContextVar`` that belongs to the probe alone. No context-storage backend touches it, so it stays
correct even while the framework's own storage is deliberately broken. A ``ContextVar`` is
isolated per OS thread and per greenlet (greenlet >= 1.0 gives each greenlet its own
``contextvars.Context``), and the probe middleware sets it on entry and resets it by token on the
way out, in the same thread or greenlet that serves the request (a WSGI call runs start to finish
on one of them under every server mode we drive). Hooks, the probe view and :func:`observe` read it
from that same thread or greenlet and therefore always find their own request's state.
"""

from __future__ import annotations

import threading
from collections import deque
from contextvars import ContextVar

__all__ = ["InjectedFailure", "ProbeState", "current_token", "observe"]

Observation = list[str | None]


class InjectedFailure(RuntimeError):
    """Raised by the probe at the phase a request asked for with ``fail=<phase>``.

    The failure is deliberate: the request is an expected error, and what the harness judges is
    whether the framework cleaned up after it, i.e. what the *next* request served by the same
    thread or greenlet finds.
    """

    def __init__(self, phase: str) -> None:
        super().__init__(
            f"ctxbench: injected failure at {phase!r} (the probe request asked for fail={phase})"
        )
        self.phase = phase


class ProbeState:
    """What the probe knows about the request it is serving."""

    __slots__ = (
        "fail",
        "failed",
        "obs",
        "phase",
        "phases",
        "routing_failed",
        "sleep_s",
        "spliced_at",
        "token",
        "use_session",
        "view_done",
    )

    def __init__(self, token: str, sleep_s: float, fail: str | None = None) -> None:
        #: The token from the WSGI environ's query string: what the client sent.
        self.token = token
        self.sleep_s = sleep_s
        #: The phase at which this request must raise (one of
        #: :data:`harness.protocol.FAIL_PHASES`), or ``None``.
        self.fail = fail
        #: Whether the injected failure was raised (it is raised once per request).
        self.failed = False
        self.phase = "entry"
        #: The phases entered so far, in order.
        self.phases: list[str] = ["entry"]
        #: ``[phase, name, seen]`` triples, in the order they were made.
        self.obs: list[Observation] = []
        #: How many observations the view encoded into the body (the rest are spliced in).
        self.spliced_at = 0
        self.view_done = False
        self.use_session = False
        #: The framework could not route the probe path (it will answer 404 or 405 itself).
        self.routing_failed = False

    def fail_at(self, phase: str) -> None:
        """Raise :class:`InjectedFailure` if this request asked to fail at ``phase`` (once)."""
        if self.fail == phase and not self.failed:
            self.failed = True
            raise InjectedFailure(phase)


_cv_probe: ContextVar[ProbeState | None] = ContextVar("ctxbench.probe", default=None)


class RecentTokens:
    """The last ``size`` probe tokens this process served: what :func:`observe` may reveal.

    A value an app observes is echoed in the probe response only when it is one of these tokens
    (another request's token is exactly what a leak shows); anything else is reported by type and
    length, so a probe left installed never sends an app's own data to a client. The lock is held
    for a few dictionary operations and never across a yield, so it is safe under threads and
    greenlets alike.

    The table starts full, of placeholders that no valid token can equal (a token is
    ``[A-Za-z0-9_-]``) and about as long as the driver's tokens, and they are turned over twice
    before the first request, which grows the set's hash table to the size that turning tokens
    over keeps it at. All its memory is taken when the process starts, so a soak never mistakes
    the probe's own tables for a leak: two of them filling up, with 1 MiB steps as their sets
    grew, took about 2.5 MiB (7% of a gunicorn-gevent worker) over a worker's first 15,000
    requests, inside the measured window of a short soak on a busy machine.
    """

    __slots__ = ("_lock", "_order", "_seen", "size")

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._order: deque[str] = deque()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        for i in range(3 * size):
            self.add(f"~placeholder.{i:05d}")

    def add(self, token: str) -> bool:
        """Remember ``token``; return whether it is new (not among the last ``size``)."""
        with self._lock:
            if token in self._seen:
                return False
            self._seen.add(token)
            self._order.append(token)
            if len(self._order) > self.size:
                self._seen.discard(self._order.popleft())
            return True

    def __contains__(self, value: object) -> bool:
        return value in self._seen


#: Filled by the probe middleware with every probe request's token on entry.
recent_tokens = RecentTokens()


def redact(value: str) -> str:
    """What :func:`observe` records for a value that is not a recent probe token."""
    return value if value in recent_tokens else f"<not a probe token: {len(value)} characters>"


def current_token() -> str | None:
    """Return the trusted token of the probe request being served, or ``None`` outside one.

    The token comes from the WSGI environ, read by the probe middleware before the framework
    runs, and is kept in the probe's own ``ContextVar``; a broken context storage cannot change
    it. Compare what your app sees through the framework against it.
    """
    state = _cv_probe.get()
    return None if state is None else state.token


def observe(name: str, value: object) -> None:
    """Record that the app saw ``value`` under ``name`` in the current phase of this request.

    Call it from any hook or view of an app with the probe installed, with the per-request value
    your app holds (``observe("user", g.user_token)``). The verdict expects it to equal the
    client's token; a name starting with ``residue.`` is expected to be ``None`` instead.
    ``value`` is recorded as ``str(value)`` (``None`` stays ``None``) when that is the token of a
    recent probe request served by this process, and otherwise only by its length (the probe
    never reveals an app's own data; the verdict still reports it, since it is not the token).

    Raises ``RuntimeError`` outside a probe request, because an observation that belongs to no
    request would be silently lost.
    """
    state = _cv_probe.get()
    if state is None:
        raise RuntimeError(
            f"observe({name!r}, ...) was called outside a probe request.\n\n"
            "Observations belong to the request being served by the probe route"
            " (GET /_ctxbench/probe?token=...), and there is none in this thread or greenlet.\n\n"
            "Call install_probe(app) at start-up and call observe() only from hooks and views"
            " running for a probe request; check current_token() is not None first if the same"
            " code also serves other requests. A WSGI middleware around the app object runs"
            " before the probe sees the request: observe what it keeps from the app's hooks."
        )
    state.obs.append([state.phase, name, None if value is None else redact(str(value))])
