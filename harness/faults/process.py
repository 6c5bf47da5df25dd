"""The faults that act on the server's processes: kill-worker, recycle, reload, timeout.

Design note: the server runs in its own process group (see :mod:`harness.servers`); a worker
process is any member of the group but the master. The injectors signal those processes from a
background thread of the harness while the load runs in the main thread, and record each signal
as a :class:`~harness.results.FaultEvent`. Each fault applies only where the mode's
:class:`~harness.servers.base.Lifecycle` says its server does the thing: a master that respawns
(kill-worker), a reload signal (reload), recycling arguments (recycle), a worker timeout that
kills a worker stuck in a request (timeout). Requests in flight on a worker that dies get no
response (``reset``), or the 500 gunicorn's sync worker sends as SIGABRT unwinds a timed-out
request (``5xx``): those are the expected errors, never leaks.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import typing as t

from harness.load.hostile import HostileLoad, Outcome, by_status, get
from harness.protocol import probe_path
from harness.servers import LiveServer, ServerMode, get_mode, poll_until
from harness.settings import ChaosSettings

from .base import Fault, Injector, register, worker_pids
from .verdict import Tally

__all__ = ["KillWorker", "Recycle", "Reload", "Timeout"]


def _replaced(action: str, injector: Injector, before: set[int], after: set[int]) -> str | None:
    if not any(e.action == action for e in injector.events):
        return f"no {action} was sent before the load ended"
    if not after - before:
        return "no worker process was replaced"
    return None


class _LifecycleFault(Fault):
    """A fault that makes the server replace worker processes. It applies where the mode's
    :class:`~harness.servers.base.Lifecycle` field ``needs`` is set; elsewhere the reason is the
    mode's note for the fault, or ``missing``. The server arguments it needs are the lifecycle
    field ``args``, if any, with their placeholders filled in from the chaos settings."""

    replaces_workers = True
    needs: t.ClassVar[str]
    missing: t.ClassVar[str]
    #: The :class:`~harness.servers.base.Lifecycle` field holding the server arguments.
    args: t.ClassVar[str | None] = None

    def not_applicable(self, mode: ServerMode) -> str | None:
        if getattr(mode.lifecycle, self.needs):
            return None
        return mode.lifecycle.notes.get(self.name, self.missing)

    def server_args(
        self, mode: ServerMode, settings: ChaosSettings, *, requests_per_connection: float = 1.0
    ) -> tuple[str, ...]:
        if self.args is None:
            return ()
        templates: tuple[str, ...] = getattr(mode.lifecycle, self.args)
        requests, jitter = self.counts(mode, settings)
        if mode.lifecycle.recycle_counts == "connections":
            # As many connections as carry about that many requests: counted in requests, a
            # worker under 16 kept-alive clients (8 closed connections a round) took 8 to 11
            # rounds to recycle, and three recycles filled the 30 s bound.
            requests = max(1, round(requests / requests_per_connection))
            jitter = round(jitter / requests_per_connection)
        values = {"requests": requests, "jitter": jitter, "seconds": settings.worker_timeout_s}
        return tuple(arg.format(**values) for arg in templates)

    def counts(self, mode: ServerMode, settings: ChaosSettings) -> tuple[int, int]:
        """The ``{requests}`` and ``{jitter}`` of the argument templates under ``mode``."""
        return settings.recycle_requests, settings.recycle_jitter


class _KillInjector(Injector):
    """Every ``interval_s``, SIGKILL a random worker that has been up for ``MIN_AGE_S``, until
    ``injections`` were killed. A worker killed as soon as it was spawned proves nothing (it
    served nothing); a worker the master respawned waits out the master's crash-loop window
    (:attr:`~harness.servers.base.Lifecycle.respawn_crash_window_s`, granian's 5.5 s), or the
    master would take its death for a crash loop and exit (measured: 1 of 2 granian cells).
    With 2 workers and 3 injections the third kill waits for that window: under granian the
    kills came at 1.0, 1.5 and 7.8 s, and the cell took 8.8 to 9.5 s (5 runs), under a third of
    the 30 s bound; the wait is granian's, not the fault's."""

    MIN_AGE_S = 1.0

    def __init__(self, server: LiveServer, settings: ChaosSettings, crash_window_s: float) -> None:
        super().__init__(server, settings)
        self._random = random.Random(server.pid)
        self._first_seen: dict[int, float] = {}
        self._original = worker_pids(server) - {server.app_server.pid}
        self._respawned_age_s = max(self.MIN_AGE_S, crash_window_s)
        self._kills = 0

    def _old_enough(self, pid: int, now: float) -> bool:
        age = now - self._first_seen.get(pid, now)  # seen at most interval_s after its start
        return age >= (self.MIN_AGE_S if pid in self._original else self._respawned_age_s)

    def run(self) -> None:
        while self._kills < self.settings.injections:
            now = time.monotonic()
            for pid in worker_pids(self.server) - {self.server.app_server.pid}:
                self._first_seen.setdefault(pid, now)
            if self.stopping(self.settings.interval_s):
                return
            now = time.monotonic()
            ready = sorted(
                pid for pid in worker_pids(self.server) - {self.server.app_server.pid}
                if self._old_enough(pid, now)
            )  # fmt: skip
            if not ready:
                continue
            if self.send_signal(self._random.choice(ready), signal.SIGKILL):
                self._kills += 1

    def done(self) -> bool:
        return self._kills >= self.settings.injections


@register
class KillWorker(_LifecycleFault):
    name = "kill-worker"
    order = 10
    summary = "SIGKILL a random worker process every interval; the master respawns it"
    # reset: requests in flight on the killed worker (refused too, where the mode says so).
    expected_errors = frozenset({"reset"})

    needs = "respawns"
    missing = "nothing respawns a killed worker"
    args = "respawn_args"

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        crash_window_s = get_mode(server.mode).lifecycle.respawn_crash_window_s
        return _KillInjector(server, settings, crash_window_s)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        return _replaced("SIGKILL", injector, before, after)


class _ReloadInjector(Injector):
    """Sends the master ``sig`` ``settings.injections`` times, ``settings.interval_s`` apart."""

    def __init__(self, server: LiveServer, settings: ChaosSettings, sig: int) -> None:
        super().__init__(server, settings)
        self.signal = sig
        self._finished = False

    def run(self) -> None:
        for _ in range(self.settings.injections):
            if self.stopping(self.settings.interval_s):
                return
            self.send_signal(self.server.app_server.pid, self.signal)
        self._finished = True

    def done(self) -> bool:
        return self._finished


@register
class Reload(_LifecycleFault):
    name = "reload"
    order = 30
    summary = "a graceful reload of every worker (SIGHUP to the master) every interval"
    # reset: requests in flight on a replaced worker (refused too, where the mode says so).
    expected_errors = frozenset({"reset"})

    needs = "reload_signal"
    missing = "the server has no graceful reload"
    args = "reload_args"

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        sig = get_mode(server.mode).lifecycle.reload_signal
        if sig is None:  # not_applicable() said so first
            raise ValueError(f"{server.mode} has no reload signal")
        return _ReloadInjector(server, settings, sig)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        sig = getattr(injector, "signal", None)
        return _replaced(signal.Signals(sig).name if sig else "reload", injector, before, after)


class _RecycleWatcher(Injector):
    """Watches the worker pids until workers were replaced ``injections`` times."""

    def run(self) -> None:
        seen = live = worker_pids(self.server)
        while not self.stopping(0.05):
            current = worker_pids(self.server)
            for pid in sorted(current - seen):
                self.record("new-worker", pid)
            for pid in sorted(live - current):  # once: a pid is not reused within a cell
                self.record("worker-gone", pid)
            seen, live = seen | current, current

    def done(self) -> bool:
        return sum(e.action == "new-worker" for e in self.events) >= self.settings.injections


@register
class Recycle(_LifecycleFault):
    name = "recycle"
    order = 20
    summary = "each worker exits after about N requests (--max-requests with jitter)"
    expected_errors = frozenset({"reset"})
    persists = True

    needs = "recycle_args"
    missing = "the server does not recycle workers"
    args = "recycle_args"

    #: The share of the faulted load's bound (``max_seconds``) that the outages of its
    #: recycles may take, where a recycle is an outage
    #: (:attr:`~harness.servers.base.Lifecycle.recycle_outage_s`).
    OUTAGE_SHARE = 0.25

    def counts(self, mode: ServerMode, settings: ChaosSettings) -> tuple[int, int]:
        """``recycle_requests`` and ``recycle_jitter``, or where each recycle empties a worker's
        place for seconds, a limit that gives the faulted load's least requests (``min_rounds``
        rounds) no more recycles than fit in :attr:`OUTAGE_SHARE` of its bound, and never fewer
        than it plans (``injections``); the jitter grows with it. Measured on 2 loaded cores
        (hypercorn-asgiref, keep-alive): with a limit of 60 + 30 a cell saw 10 to 14 recycles
        and took 26 to 33 s, its faulted load 24 s of its 30 s; with this one (266 + 133), 3 to
        5, and 8 to 15 s. The workers still go down together (see ``recycle_outage_s``): what
        changes is how often."""
        requests, jitter = settings.recycle_requests, settings.recycle_jitter
        outage_s = mode.lifecycle.recycle_outage_s
        if not outage_s:
            return requests, jitter
        fitting = int(settings.max_seconds * self.OUTAGE_SHARE / outage_s)
        least = settings.min_rounds * settings.round_requests // max(settings.injections, fitting)
        if least <= requests:
            return requests, jitter
        return least, round(jitter * least / requests)

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        return _RecycleWatcher(server, settings)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        return None if after - before else "no worker was recycled"


class _TimeoutInjector(_RecycleWatcher):
    """Sends requests that sleep past the worker timeout; watches their workers being replaced.

    The requests go once the master times every worker (:meth:`ServerMode.worker_timed`): a
    request that blocks a worker the master does not time yet is never killed. With
    ``idle_worker``, they are sent only between two load rounds, and the load waits until they
    are done (:meth:`between_rounds`): the server's timeout is one deadline per worker that any
    other request resets (uWSGI's ``--harakiri``)."""

    def __init__(self, server: LiveServer, settings: ChaosSettings, idle_worker: bool) -> None:
        super().__init__(server, settings)
        sleep_ms = (settings.worker_timeout_s + 2.0) * 1000.0
        self._idle_worker = idle_worker
        self._load_held = threading.Event()
        if not idle_worker:
            self._load_held.set()
        mode = get_mode(server.app_server.mode)

        def timed() -> bool:
            return all(mode.worker_timed(pid) is not False for pid in worker_pids(server))

        def action(seq: int) -> Outcome:
            self._load_held.wait()  # set at once, or by between_rounds (and by stop)
            # Asked, not waited out: gunicorn's master times a tornado worker from its first
            # heartbeat, a second after its app loaded, which a fixed 2 s from its start missed
            # on a loaded machine. Within the faulted load's bound: a request that reaches a
            # worker never timed is answered, and the cell judged not exercised.
            poll_until(
                lambda: self.stopping() or timed(), bool, self.started + settings.max_seconds
            )
            # gunicorn's worker answers 500 as SIGABRT unwinds the request, or the connection
            # just drops: either is the expected error, a 200 means nothing killed the worker.
            return by_status(get(
                server.host,
                server.port,
                f"{probe_path(server.mount)}?token=ctxbench-timeout-{seq}&sleep_ms={sleep_ms:g}",
                timeout=settings.worker_timeout_s + 15.0,
            ))  # fmt: skip

        self.hostile = HostileLoad(
            action, users=settings.timeout_requests, requests=settings.timeout_requests
        )

    def done(self) -> bool:
        # The master respawns a killed worker up to a second after the reset its request saw
        # (gunicorn's arbiter loop): stopping at the reset left that for the check after the
        # load, with no new-worker event recorded (1 cell in 12 under gunicorn-tornado).
        return self._hostile_finished() and any(e.action == "new-worker" for e in self.events)

    def between_rounds(self, deadline: float) -> None:
        if not self._idle_worker or self.done():
            return
        # The round's last responses are out, but their workers may not have finished with
        # them: a request's end clears its worker's deadline, ours included (measured: 2 of 4
        # cells answered both sleeping requests). Go once the server says none is running.
        server = self.server.app_server
        mode = get_mode(server.mode)
        poll_until(lambda: mode.requests_running(server), lambda n: not n, deadline)
        self._load_held.set()
        try:
            poll_until(self.done, bool, deadline)
        finally:
            self._load_held.clear()

    def stop(self) -> None:
        self._load_held.set()  # a request still waiting for its turn goes, and is counted
        super().stop()


@register
class Timeout(_LifecycleFault):
    name = "timeout"
    order = 40
    summary = "requests sleep past the worker timeout, so the master kills the worker mid-request"
    expected_errors = frozenset({"reset", "5xx"})

    needs = "timeout_args"
    missing = "the server has no worker timeout"
    args = "timeout_args"

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        lifecycle = get_mode(server.mode).lifecycle
        return _TimeoutInjector(server, settings, lifecycle.timeout_needs_idle_worker)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        counts = injector.hostile_counts
        if counts.get("answered"):
            return (
                f"{counts['answered']} requests that slept past the worker timeout were answered:"
                " the master did not kill their worker"
            )
        if not after - before:
            return "no worker process was replaced"
        return None
