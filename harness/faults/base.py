"""What a fault is: the registry, the knobs, and the injector that runs beside the load.

Design note: a fault runs *during* an ordinary, fully checked load (:func:`harness.load.run_load`)
against a live server. It acts in one or more of three places, and nowhere else:

- on the server's command line (:meth:`Fault.server_args`: ``--max-requests``, ``--timeout``);
- from a background thread of the harness while the load runs (:meth:`Fault.injector`):
  signals to the server's processes (SIGKILL a worker, SIGHUP the master) or misbehaving
  clients (:mod:`harness.load.hostile`), each of whose requests is counted;
- in the load itself, round by round (:meth:`Fault.round_overrides`): the driver's
  ``fail_phase``, which makes a fraction of the probe requests raise at a chosen phase.

The load runs in rounds of a fixed number of requests until the injector says it has done what
it planned (:meth:`Injector.done`), so every round is exactly accounted for and the fault always
gets to act, whatever the server's speed. Whether a fault applies to a mode is read from the
mode's :class:`~harness.servers.base.Lifecycle`, never from its name.
"""

from __future__ import annotations

import abc
import os
import signal
import threading
import time
import typing as t
from collections import Counter

from harness.errors import UsageError
from harness.load.hostile import HostileLoad, Outcome
from harness.registry import registrar
from harness.results import FaultEvent
from harness.servers import LiveServer, ServerMode, group_members, is_helper
from harness.settings import ChaosSettings

__all__ = [
    "FAULTS",
    "Fault",
    "Injector",
    "NoInjector",
    "get_fault",
    "register",
    "worker_pids",
]

if t.TYPE_CHECKING:
    from .verdict import Tally


def worker_pids(server: LiveServer) -> set[int]:
    """The live worker processes of ``server`` (behind a proxy: of the server it forwards to):
    its process group without the master and its helpers (:func:`harness.servers.is_helper`); empty
    while a master that replaces all its workers at once has none (hypercorn's reload). A
    single-process server is its own worker.
    """
    server = server.app_server
    members = set(group_members(server.pid))
    if members <= {server.pid}:
        return members
    return {pid for pid in members - {server.pid} if not is_helper(pid)}


class Injector:
    """What a fault does while the load runs; the base does nothing and is done at once.

    Subclasses override :meth:`run` (called in a background thread until :meth:`stop`) and
    :meth:`done`. ``events`` and ``hostile`` are read after :meth:`stop`. ``kept_alive`` says
    whether the load's connections to the server outlive a request (the runner sets it before
    :meth:`start`: the keepalive pattern, or a proxy's kept upstream connections).
    """

    def __init__(self, server: LiveServer, settings: ChaosSettings) -> None:
        self.server = server
        self.settings = settings
        self.kept_alive = False
        self.events: list[FaultEvent] = []
        self.hostile: HostileLoad | None = None
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- for subclasses -------------------------------------------------------------------------

    def run(self) -> None:
        """The injection loop; return when done or when :meth:`stopping` becomes true."""

    def done(self) -> bool:
        """Whether the fault did all it planned (the load stops after the current round)."""
        return self.hostile is None or self._hostile_finished()

    def between_rounds(self, deadline: float) -> None:
        """Called in the load's thread after every load round, before the next one starts; an
        injector that needs the load held while it acts does so here, until ``deadline``
        (``time.monotonic()``). The base returns at once."""

    def stopping(self, wait: float = 0.0) -> bool:
        """Wait up to ``wait`` seconds for :meth:`stop`; true once it was called."""
        return self._stop.wait(wait) if wait > 0 else self._stop.is_set()

    def record(self, action: str, pid: int | None = None, detail: str = "") -> None:
        self.events.append(
            FaultEvent(round(time.monotonic() - self.started, 3), action, pid, detail)
        )

    def send_signal(self, pid: int, sig: int) -> bool:
        """Send ``sig`` to process ``pid`` and record it under the signal's name; ``False``
        (nothing recorded) when the process was already gone."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        self.record(signal.Signals(sig).name, pid)
        return True

    # -- lifecycle ------------------------------------------------------------------------------

    def _hostile_finished(self) -> bool:
        hostile = self.hostile
        return (
            hostile is not None
            and hostile.requests is not None
            and sum(hostile.counts.values()) >= hostile.requests
        )

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by stop(), in the caller's thread
            self._error = exc

    def start(self) -> None:
        self.started = time.monotonic()
        if self.hostile is not None:
            self.hostile.start()
        self._thread = threading.Thread(target=self._main, name="ctxbench-fault", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting, wait for the thread and the hostile clients; re-raise their error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.hostile is not None:
            self.hostile.join()
        if self._error is not None:
            raise self._error

    @property
    def hostile_counts(self) -> Counter[str]:
        return Counter() if self.hostile is None else self.hostile.counts

    @property
    def hostile_sent(self) -> int:
        return 0 if self.hostile is None else self.hostile.sent

    @property
    def hostile_outcomes(self) -> list[Outcome]:
        return [] if self.hostile is None else self.hostile.outcomes


class NoInjector(Injector):
    """For faults that act only through the server's arguments or the load's rounds."""


class Fault(abc.ABC):
    """One kind of fault. Subclass it, give it a ``name``, and decorate it with :func:`register`."""

    #: Registry name, the same word in the CLI (``--faults``), the results and the report.
    name: t.ClassVar[str]
    #: One line for ``ctxbench chaos --list``.
    summary: t.ClassVar[str]
    #: Position in listings and in a run (lower first).
    order: t.ClassVar[int] = 100
    #: Error kinds this fault may cause in the judged requests (``reset``, ``refused``,
    #: ``timeout``, ``5xx``); any other kind fails the verdict. See :meth:`expected_for`.
    expected_errors: t.ClassVar[frozenset[str]] = frozenset()
    #: Whether it replaces worker processes, so the requests after it must reach a new one.
    replaces_workers: t.ClassVar[bool] = False
    #: Whether it keeps acting in the clean load after it, being in the server's arguments
    #: (recycle: workers go on exiting after N requests), so the errors it explains are allowed
    #: there too (leaks never are). Measured: uvicorn and hypercorn drop a request now and then
    #: as a worker recycles, fresh connections too (1 reset in 300 clean requests under uvicorn).
    persists: t.ClassVar[bool] = False

    def not_applicable(self, mode: ServerMode) -> str | None:
        """``None`` when the fault applies to ``mode``, else why not (recorded as such)."""
        return None

    def expected_for(self, mode: ServerMode) -> frozenset[str]:
        """The error kinds this fault may cause under ``mode``: :attr:`expected_errors`, and
        ``refused`` where the mode's server refuses connections under it
        (:attr:`~harness.servers.base.Lifecycle.refuses_during`)."""
        refused = {"refused"} if self.name in mode.lifecycle.refuses_during else set()
        return self.expected_errors | refused

    def server_args(
        self, mode: ServerMode, settings: ChaosSettings, *, requests_per_connection: float = 1.0
    ) -> tuple[str, ...]:
        """Extra server arguments the fault needs. ``requests_per_connection`` is how many
        requests one connection to the server carries in the cell's load (1 on fresh
        connections), for a server that counts connections where the fault means requests."""
        return ()

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        """What runs beside the load."""
        return NoInjector(server, settings)

    def round_overrides(self, index: int, settings: ChaosSettings) -> dict[str, t.Any]:
        """``LoadSpec`` fields to change for load round ``index`` (0-based)."""
        return {}

    def enough_rounds(self, rounds: int) -> bool:
        """Whether ``rounds`` load rounds cover what the fault needs of the load itself."""
        return True

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        """``None`` when the fault really happened, else why it did not (from what was seen:
        the counts, the injector's events, the worker pids before and after)."""
        return None


FAULTS: dict[str, Fault] = {}

#: Class decorator: add an instance of a :class:`Fault` subclass to :data:`FAULTS`.
register = registrar(FAULTS, "fault")


def get_fault(name: str) -> Fault:
    """The registered fault ``name``; :class:`UsageError` naming the valid ones otherwise."""
    try:
        return FAULTS[name]
    except KeyError:
        raise UsageError(f"unknown fault {name!r}: choose from {', '.join(FAULTS)}") from None
