"""Server modes and the live servers they start.

Design note: a :class:`ServerMode` is a command line that serves ``harness.wsgi:app``, plus how
to read back what really ran; it declares how it runs requests (:class:`ModeTraits`: a thread per
connection, a thread pool, a greenlet per connection), which is where per-request state can or
cannot leak. The server itself always runs in a subprocess of its own process group, started,
polled and stopped by :mod:`harness.servers._process`; a :class:`LiveServer` is that running
process seen from the harness. :func:`start_server` puts the two together: it asks the mode for
its command line, spawns it with ``CTXBENCH_APP`` / ``CTXBENCH_BACKEND`` telling
:mod:`harness.wsgi` what to load (and ``CTXBENCH_MOUNT`` under which path prefix) and
``CTXBENCH_STATE_DIR`` where to report what really ran, waits until a probe request succeeds,
and records the effective configuration.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import typing as t
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from harness.app_string import harness_hidden_by, parse_import_string
from harness.apps import CORE_APP
from harness.checkpoints import checkpoint
from harness.errors import PortInUseError, ServerStartError, UsageError, check_count
from harness.owner import TEMPDIR_PREFIX, disown, owned_tempdir, sweep_tempdirs
from harness.packages import package_version
from harness.protocol import (
    APP_ENV,
    BACKEND_ENV,
    DEFAULT_BACKEND,
    MOUNT_ENV,
    STATE_DIR_ENV,
    parse_mount,
)
from harness.registry import registrar
from harness.servers._process import (
    HOST,
    PortRaceLost,
    check_port_free,
    free_port,
    held_signals,
    read_json,
    spawn,
    start_timeout,
    stop_group,
    wait_ready,
    wait_states,
)

__all__ = [
    "CLOSES_EVERY_CONNECTION",
    "MAX_THREADS",
    "MAX_WORKERS",
    "MAX_WORKER_CONNECTIONS",
    "MODES",
    "PROXY_SEPARATOR",
    "Availability",
    "ContextSource",
    "ExecutionUnit",
    "Lifecycle",
    "LiveServer",
    "ModeTraits",
    "MonkeyPatch",
    "ProxyTraits",
    "Reported",
    "ServerConfig",
    "ServerMode",
    "connections_given",
    "get_mode",
    "last_option",
    "one_at_a_time",
    "register",
    "require_modules",
    "start_server",
    "threads_given",
    "venv_script",
]


class Availability(t.NamedTuple):
    """Whether a mode can run here, and if not, why and what to do."""

    ok: bool
    reason: str = ""
    #: The exact step that makes it available, e.g. ``pip install 'ctxbench[uwsgi]'``.
    install: str = ""

    def explain(self) -> str:
        """Why it cannot run, and the step that fixes it: what ``ctxbench list`` and every
        "cannot run here" error say."""
        return f"{self.reason} ({self.install})" if self.install else self.reason


#: Upper limits of the server options: beyond them a value is a typo, not a configuration.
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_WORKER_CONNECTIONS = 100_000


@dataclass(frozen=True)
class ServerConfig:
    """What the harness asks a mode to run: the one record of server options.

    The CLI and the runner build it (``ctxbench serve`` from its options, a run from its
    :class:`~harness.settings.RunSettings`), :func:`start_server` fills in a free ``port``, and
    the mode turns it into its command line (:meth:`ServerMode.command`). ``None`` means the
    mode's own default. Building one checks every value (:class:`UsageError` naming the option).
    """

    app: str = CORE_APP
    backend: str = DEFAULT_BACKEND
    host: str = HOST
    #: ``None``: a free port, chosen when the server starts.
    port: int | None = None
    #: Server processes that serve requests (gunicorn ``-w``).
    workers: int | None = None
    #: Threads per server process (gunicorn ``--threads``).
    threads: int | None = None
    worker_connections: int | None = None
    extra_args: tuple[str, ...] = ()
    #: A command the server runs under, such as ``("taskset", "-c", "0")``; it must exec the
    #: server in its place (the server is stopped through its process group either way).
    prefix: tuple[str, ...] = ()
    #: The path prefix the app is served under (``--mount /api``): the app a dispatcher mounts
    #: there, or the app itself served under it (:mod:`harness.probe.locate`). ``None``: none
    #: given, the server's root.
    mount: str | None = None

    def __post_init__(self) -> None:
        parse_import_string(self.app)
        if self.mount is not None:
            try:
                object.__setattr__(self, "mount", parse_mount(self.mount))
            except ValueError as e:
                raise UsageError(f"bad --mount {self.mount!r}: {e}") from None
        for option, value, high in (
            ("--port", self.port, 65535),
            ("--workers", self.workers, MAX_WORKERS),
            ("--threads", self.threads, MAX_THREADS),
            ("--worker-connections", self.worker_connections, MAX_WORKER_CONNECTIONS),
        ):
            check_count(option, value, high=high, optional=True)
        for name in ("extra_args", "prefix"):
            args = getattr(self, name)
            if isinstance(args, str) or not all(isinstance(a, str) for a in args):
                raise UsageError(f"bad server {name.replace('_', ' ')} {args!r}: give strings")
            object.__setattr__(self, name, tuple(args))  # a list given is kept as a tuple

    def replace(self, **changes: t.Any) -> ServerConfig:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)


#: What serves one request inside a server process: a new thread per connection, the process's
#: main thread, one other thread that runs every request in turn (asgiref's single-thread
#: executor under an ASGI server), a thread of a reused pool, a greenlet per connection, or a
#: greenlet per request.
ExecutionUnit = t.Literal[
    "thread-per-connection",
    "main-thread",
    "dedicated-thread",
    "pool-thread",
    "greenlet-per-connection",
    "greenlet-per-request",
]
#: Where a request's ``contextvars.Context`` comes from: the thread or greenlet that serves it
#: (``"unit"``: what one request sets, the next request on that unit sees) or a fresh copy per
#: request (``"request"``: tornado runs every request in an asyncio task of its own, uvicorn
#: with ``--reset-contextvars`` in a task started from an empty context).
ContextSource = t.Literal["unit", "request"]
#: Whether the server monkey-patches ``threading`` (gevent, eventlet) and when, relative to
#: importing the app: ``"before-app"`` makes a module-level ``threading.local`` greenlet-local;
#: ``"after-app"`` (gunicorn ``--preload``, uWSGI ``--gevent-monkey-patch``) leaves it one native
#: local that every greenlet of a thread shares; ``"none"`` never patches.
MonkeyPatch = t.Literal["none", "before-app", "after-app"]


@dataclass(frozen=True)
class ProxyTraits:
    """How a reverse proxy in front of a mode connects to it (see :mod:`harness.servers._proxy`)."""

    #: The proxy's name in the registry, e.g. ``"nginx-keepalive"``.
    name: str
    #: Whether the proxy keeps its connections to the upstream alive and hands an idle one to the
    #: next request of *any* client (nginx's ``keepalive`` in an ``upstream`` block). Without
    #: it, every request reaches the upstream on a new connection, whatever the client does.
    reuses_upstream_connections: bool


#: Why a keep-alive client cannot run against a mode whose ``keepalive_applicable`` is false.
CLOSES_EVERY_CONNECTION = "the server closes every connection after one response without saying so"


@dataclass(frozen=True)
class ModeTraits:
    """How a mode runs requests, declared next to its command line.

    :mod:`harness.expectations` derives from these where each context-storage mutant can and
    cannot leak, so a change here changes the expected results of the live matrix.
    """

    #: What serves a request (see :data:`ExecutionUnit`).
    unit: ExecutionUnit
    #: Whether the server answers more than one request on a connection (HTTP keep-alive).
    keepalive: bool
    #: Whether a keep-alive client can run against the server at all. ``False`` when the server
    #: closes every connection after one response without saying so (uWSGI's ``--http-socket``):
    #: the ``keepalive`` pattern is then not applicable, recorded as such and never run.
    keepalive_applicable: bool = True
    #: Where a request's ``contextvars.Context`` comes from (see :data:`ContextSource`).
    context: ContextSource = "unit"
    #: Whether and when the server monkey-patches ``threading`` (see :data:`MonkeyPatch`).
    monkey_patch: MonkeyPatch = "none"
    #: The reverse proxy in front, if any: then the proxy, not the client, decides which
    #: connection carries a request to the server (a mode named ``<proxy>+<mode>``).
    proxy: ProxyTraits | None = None
    #: Whether the server calls ``close()`` on a response body its client abandoned, in the
    #: thread or greenlet that was iterating it (PEP 3333). ``False`` for a server that drops it
    #: for the garbage collector, which may finalize it later on another thread (Flask #6123).
    closes_abandoned_body: bool = True
    #: Whether the thread that imported the app also serves requests, besides a ``main-thread``
    #: unit (uWSGI's thread pool counts the main thread as core 0): state the import left in that
    #: thread's context is then visible to the requests it serves.
    main_thread_serves: bool = False
    #: Whether every request's ``contextvars.Context`` descends from the one the app was imported
    #: in (hypercorn imports it on the main thread before its event loop starts, and each
    #: connection's and request's task copies that context): what the import left set, every
    #: request sees, whatever thread runs it.
    import_context_copied: bool = False
    #: Modules the server itself imports before it monkey-patches ``threading``: a
    #: ``threading.local`` they create at import is one native local, whatever the app does.
    imported_before_patch: tuple[str, ...] = ()
    #: Why each server process runs one request at a time although its unit could run several
    #: side by side (``"a pool of one thread, --threads 1"``): requests then never overlap in a
    #: process, whatever the unit; ``None``: they overlap as the unit says. Set by
    #: :meth:`ServerMode.traits_for` from what the server is told (:func:`one_at_a_time`).
    serial: str | None = None
    #: The most client connections the server serves at once, all its processes together, where
    #: it bounds them and holds a kept-alive one until the other end closes it: a greenlet of a
    #: pool of ``--worker-connections`` per connection (gunicorn's gevent worker, eventlet),
    #: waitress's ``--connection-limit``. More connections than that wait to be accepted while
    #: the first ones are served, for as long as they stay open. ``None``: nothing so bounds
    #: them. Set by :meth:`ServerMode.traits_for` from what the server is told.
    connection_limit: int | None = None

    def __post_init__(self) -> None:
        if self.keepalive and not self.keepalive_applicable:
            raise ValueError("a server that keeps connections alive serves keep-alive clients")


@dataclass(frozen=True)
class Lifecycle:
    """What a mode's server does with its worker processes, for the faults (:mod:`harness.faults`).

    Each field says how to make one thing happen, or is empty where the server has no such thing;
    the fault that needs it is then recorded as not applicable to the mode, with the reason in
    ``notes`` when there is more to say than "the server does not do this". The argument
    templates are formatted with ``str.format`` (``{requests}``, ``{jitter}``, ``{seconds}``).
    """

    #: A supervising process (a master) respawns a worker process that dies.
    respawns: bool = False
    #: Arguments it needs to do so, where respawning is not its default (granian).
    respawn_args: tuple[str, ...] = ()
    #: How long a worker the master respawned must run before another death of it is taken
    #: for a worker, not a crash loop: granian's master exits when a worker it respawned less
    #: than 5.5 s before dies. The kill-worker fault waits that long before killing one again.
    respawn_crash_window_s: float = 0.0
    #: The signal that makes the master replace its workers gracefully (gunicorn: SIGHUP).
    reload_signal: int | None = None
    #: Arguments the reload fault needs, where the server's graceful reload has a pace of its
    #: own to set (granian waits ``--respawn-interval``, 3.5 s by default, per worker).
    reload_args: tuple[str, ...] = ()
    #: Arguments that recycle each worker after about ``{requests}`` requests (plus up to
    #: ``{jitter}`` more, where the server can spread them).
    recycle_args: tuple[str, ...] = ()
    #: What the server's recycling count counts: ``"requests"``, or ``"connections"`` where it
    #: counts closed connections (gunicorn's tornado worker). On kept-alive connections the
    #: fault then asks for as many connections as carry about ``{requests}`` requests.
    recycle_counts: t.Literal["requests", "connections"] = "requests"
    #: How long a recycled worker's place stays empty, in seconds (measured on 2 loaded cores),
    #: where that is seconds rather than a fork's milliseconds: the master starts the new worker
    #: only once the old one is gone, and it imports the app afresh. The survivors take all the
    #: load meanwhile and reach their own limits, so the workers go down together, whatever the
    #: jitter. The recycle fault asks for a higher limit here, so that its outages fit its bound
    #: (:meth:`harness.faults.process.Recycle.counts`).
    recycle_outage_s: float = 0.0
    #: Arguments that make the master kill a worker whose request has run ``{seconds}`` s
    #: (from when the master times it: :meth:`ServerMode.worker_timed`).
    timeout_args: tuple[str, ...] = ()
    #: Whether that timeout is one deadline per worker that every request on it sets as it
    #: starts and clears as it ends (uWSGI's ``--harakiri``): where a worker runs requests side
    #: by side (threads, greenlets), a request is timed only while no other starts or ends on
    #: its worker, so the timeout fault holds the load while its requests run.
    timeout_needs_idle_worker: bool = False
    #: Whether a kept-alive connection holds the unit (process or thread) that accepted it
    #: until the client closes it (uWSGI's ``--http11-socket``): with at least as many kept-alive
    #: load clients as units, a fault's own clients get a unit only as a load round ends, so
    #: the client faults (abort, slow-client) run their clients between two rounds, the load
    #: held (:meth:`harness.faults.base.Injector.between_rounds`).
    kept_alive_holds_unit: bool = False
    #: Whether the server closes the connection after a response when the request says
    #: ``Connection: close``. uWSGI's ``--http11-socket`` does not (only after an HTTP/1.0
    #: request): a body without a length then ends when the idle connection times out, so the
    #: slow-client fault asks for its streamed body in HTTP/1.0 there.
    honours_connection_close: bool = True
    #: The faults (by name) under which the server refuses connections while it replaces a
    #: worker: uWSGI's master re-executes itself on a reload; each granian worker listens on a
    #: socket of its own (SO_REUSEPORT), and connections hashed to one that is going are
    #: refused. Elsewhere the master's listening socket outlives every worker: a refused
    #: connection is a failure.
    refuses_during: frozenset[str] = frozenset()
    #: Why a fault does not apply here, by fault name, where the empty field does not say it all.
    notes: t.Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reported:
    """What the processes of a started server reported: one state per serving process (see
    :mod:`harness.servers._state`, uWSGI's stats) and what a supervising process wrote."""

    #: One dict per serving process, as :mod:`harness.wsgi` and the gunicorn hooks write them.
    workers: list[dict[str, t.Any]]
    #: What a supervising process wrote (gunicorn's master, uWSGI's stats); empty without one.
    master: dict[str, t.Any] = field(default_factory=dict)

    @property
    def first(self) -> dict[str, t.Any]:
        """The first serving process's state (``{}`` when none reported)."""
        return self.workers[0] if self.workers else {}


class ServerMode(abc.ABC):
    """One way of serving a WSGI app: a command line plus how to read back what ran.

    Subclass it in a module of :mod:`harness.servers`, give it a ``name`` and decorate it with
    :func:`register`; the registry, the CLI, the runner and the results all use that name.
    """

    #: Registry name, e.g. ``"gunicorn-gevent"``; the same word in the CLI and the results.
    name: t.ClassVar[str]
    #: One line for ``ctxbench list``.
    summary: t.ClassVar[str]
    #: Position in listings and in the default matrix (lower first, then by name).
    order: t.ClassVar[int] = 100
    #: How it runs requests; the expected leaks of each mutant are derived from it.
    traits: t.ClassVar[ModeTraits]
    #: The server's Python distribution: the record's ``server`` and ``server_version`` (unless
    #: the server reports its own version) and the first of its ``packages``.
    package: t.ClassVar[str]
    #: The record's ``server`` where it is not the distribution's name (``uwsgi``, whose
    #: prebuilt wheel is ``pyuwsgi``).
    server: t.ClassVar[str | None] = None
    #: Libraries the server needs besides its own distribution (gevent for a gevent worker), by
    #: their import names, which are also their distributions': their versions are recorded.
    requires: t.ClassVar[tuple[str, ...]] = ()
    #: Server arguments that import the app once, before the workers fork and patch anything
    #: (gunicorn ``--preload``); ``()`` where that is already the default or does not apply.
    #: ``traits_for`` must account for them.
    preload_args: t.ClassVar[tuple[str, ...]] = ()
    #: What its supervisor does with worker processes (nothing, for a single-process server):
    #: which faults apply to it (see :class:`Lifecycle`).
    lifecycle: t.ClassVar[Lifecycle] = Lifecycle(
        notes={
            "kill-worker": "a single server process: nothing respawns a killed one",
            "recycle": "a single server process: no worker to recycle",
            "reload": "a single server process: no master to reload its workers",
            "timeout": "a single server process: no master kills a stuck request",
        }
    )

    #: What asks the server to stop; sent to its whole process group (SIGKILL after a grace).
    #: uWSGI needs SIGINT: SIGTERM makes it re-execute itself.
    stop_signal: t.ClassVar[signal.Signals] = signal.SIGTERM
    #: Whether the main process is sent ``stop_signal`` again until it exits: uWSGI's master
    #: sees its workers gone only on its next check, a second after the signal, or on a signal.
    stop_signal_again: t.ClassVar[bool] = False

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        """The traits of this mode run with ``cfg``; override where server arguments change them
        (gunicorn ``--preload``, uWSGI ``--gevent-monkey-patch``)."""
        return self.traits

    def lifecycle_for(self, cfg: ServerConfig) -> Lifecycle:
        """What the supervisor does with the workers of this mode run with ``cfg``; override
        where options change it (gunicorn-sync with ``--threads 4`` is gunicorn's gthread
        worker, whose timeout never kills a request)."""
        return self.lifecycle

    def configured(self, cfg: ServerConfig) -> ServerMode:
        """This mode as it runs with ``cfg``: a copy whose ``traits`` and ``lifecycle`` are
        :meth:`traits_for` and :meth:`lifecycle_for` of ``cfg``. Judge a server by it before it
        starts (which faults apply, what they explain): the class's are the defaults'."""
        rv = copy.copy(self)
        # Instance attributes shadow the class-level declarations, as in ProxiedMode.
        rv.traits = self.traits_for(cfg)  # type: ignore[misc]
        rv.lifecycle = self.lifecycle_for(cfg)  # type: ignore[misc]
        return rv

    #: The server's own options that set where it listens: ctxbench sets them (127.0.0.1, a
    #: port it picks or serve's --port), and a server argument naming one is refused.
    listen_options: t.ClassVar[frozenset[str]] = frozenset()

    def check_args(self, cfg: ServerConfig) -> None:
        """Raise :class:`UsageError` for server arguments this mode cannot be run with (they
        would replace what ctxbench needs of the server): by default, one that sets where the
        server listens (:attr:`listen_options`); a mode adds its own."""
        for arg in cfg.extra_args:
            name = arg.partition("=")[0]
            short = [o for o in self.listen_options if len(o) == 2 and arg.startswith(o)]
            if name in self.listen_options or (short and not arg.startswith("--")):
                raise UsageError(
                    f"{self.name}: --server-arg={arg} sets where the server listens, which"
                    " ctxbench sets itself: every server it runs listens on 127.0.0.1 only, at"
                    " a port it picks (ctxbench serve --port N for one of yours), so a load"
                    " never leaves this machine and the probe is never open to others; drop it"
                )

    def refused_args(self, cfg: ServerConfig, server: str, why: str) -> UsageError:
        """The error for server arguments that ``server``'s own parser refuses (``why``: what it
        says), found before any server starts: started, it would fail only once the cells of
        the run's other modes had run (``--modes gunicorn-gevent,uwsgi-threads
        --server-arg=--preload``)."""
        # Said as neither --server-arg nor server_args=: the CLI and the pytest plugin say it.
        args = f"argument{'s' * (len(cfg.extra_args) > 1)} {shlex.join(cfg.extra_args)}"
        if why == PRINTS_AND_EXITS:
            return UsageError(
                f"{self.name}: the server {args} makes {server} print its help or version and"
                " exit, so it would serve nothing: drop it"
            )
        return UsageError(
            f"{self.name}: {server} refuses the server {args} ({why}): server arguments go to"
            " every mode of a run; name only the modes of the server they are for, and run the"
            " others without them"
        )

    @abc.abstractmethod
    def available(self) -> Availability:
        """Say whether this mode can run here (its server and worker libraries are installed)."""

    def check_available(self) -> None:
        """Raise :class:`UsageError` when this mode cannot run here, saying why and what to do."""
        availability = self.available()
        if not availability.ok:
            raise UsageError(f"server mode {self.name!r} cannot run here: {availability.explain()}")

    @abc.abstractmethod
    def command(self, cfg: ServerConfig) -> list[str]:
        """Return the argv that serves ``harness.wsgi:app`` on ``cfg.host:cfg.port``."""

    def serving_processes(self, cfg: ServerConfig) -> int:
        """How many server processes serve requests (each reports its state once it is up)."""
        return 1

    def requests_running(self, server: LiveServer) -> int | None:
        """How many requests ``server``'s workers are running now, by the server's own account
        (uWSGI's stats: a request counts until the worker has finished with it, after its
        response was sent); ``None`` where the server gives no such account."""
        return None

    def worker_timed(self, pid: int) -> bool | None:
        """Whether the server's worker timeout (:attr:`Lifecycle.timeout_args`) watches worker
        process ``pid`` now, by the server's own account: a master may time a new worker only
        from some point after it started (gunicorn's, from its first heartbeat), and a request
        that blocks the worker before then is never killed. ``None`` where the server gives no
        such account."""
        return None

    def answering_group(self, leader: int) -> int:
        """The process group whose processes answer probe requests once the server is up.

        ``leader`` is the pid of the process the harness spawned, which leads a group of its own:
        every server process of a mode is in it. A proxy overrides this with its upstream's
        group. Readiness accepts an answer only from this group, so a server of another run that
        answers on the same port (while this one still retries its bind) is never measured.
        """
        return leader

    def log_paths(self, log_dir: Path) -> list[Path]:
        """The log files that a start with ``log_dir`` writes, the server's own first."""
        return [log_dir / f"{self.name}.log"]

    def start(
        self,
        cfg: ServerConfig,
        log_dir: str | os.PathLike[str] | None,
        ready_timeout: float,
    ) -> LiveServer:
        """Spawn the server for ``cfg`` and return it once a probe request succeeds.

        The default runs :meth:`command` in a process group of its own; a mode made of several
        process groups (a proxy in front of another mode) overrides it. Raises
        :class:`~harness.servers._process.PortRaceLost` when ``cfg.port`` was taken meanwhile.
        """
        return _start(self, cfg, log_dir, ready_timeout)

    def collect_states(self, cfg: ServerConfig, state_dir: Path, deadline: float) -> Reported:
        """Once the server answers, wait (until ``deadline``) for what its processes report.

        Reads the per-process state files (see :mod:`harness.servers._state`) and what a
        supervising process wrote; override to read another source (uWSGI's stats socket).
        """
        states = wait_states(state_dir, self.serving_processes(cfg), deadline)
        return Reported(states, read_json(state_dir / "master.json"))

    def effective(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        """Build the effective configuration from what the server processes reported.

        The common part names the app, the storage, the server and the versions of
        :attr:`package` and :attr:`requires` (and werkzeug: every app here runs on it); the
        mode's own fields come from :meth:`details`, and win over the common ones.
        """
        first = reported.first
        packages = dict.fromkeys((self.package, *self.requires, "werkzeug"))
        return {
            "mode": self.name,
            "app": first.get("app", cfg.app),
            "app_class": first.get("app_class"),
            "backend": first.get("backend", cfg.backend),
            "storage": first.get("storage"),
            # Who mounted the probe: "app", "harness.wsgi[ inside ProxyFix ...]" or "none"
            # (harness.probe.locate.Located.where).
            "probe": first.get("probe"),
            # The path prefix the app is served under (--mount), None for none given.
            "mount": first.get("mount", cfg.mount),
            "worker_pids": sorted(s["pid"] for s in reported.workers if "pid" in s),
            # Where the app was loaded (its factory called): each worker, or the process that
            # forked them (gunicorn --preload, uWSGI without --lazy-apps).
            "app_loaded_in": sorted(
                {s["loaded_pid"] for s in reported.workers if "loaded_pid" in s}
            ),
            "python": first.get("python"),
            "server": self.server or self.package,
            "server_version": first.get("server_version") or package_version(self.package),
            "workers": len(reported.workers),
            "packages": {name: package_version(name) for name in packages},
            **self.details(cfg, reported),
        }

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        """The mode's own fields of the effective configuration (its worker class, threads,
        what it was asked for and what ran); none by default."""
        return {}


MODES: dict[str, ServerMode] = {}
#: Joins a proxy and the mode behind it into one mode name: ``nginx-keepalive+gunicorn-gevent``.
PROXY_SEPARATOR = "+"

#: Class decorator: add an instance of a :class:`ServerMode` subclass to :data:`MODES`.
register = registrar(MODES, "server mode")


def get_mode(name: str) -> ServerMode:
    """Return the registered mode ``name``, or ``<proxy>+<mode>``: that mode behind a proxy.

    Raises :class:`UsageError` naming the valid modes (and proxies).
    """
    if name in MODES:
        return MODES[name]
    if PROXY_SEPARATOR in name:
        # harness.servers._proxy builds on this module: a real import cycle, resolved here.
        from harness.servers._proxy import proxied_mode

        return proxied_mode(name)
    valid = ", ".join(sorted(MODES))
    raise UsageError(
        f"unknown server mode {name!r}: choose from {valid}"
        f" (or put a proxy in front: <proxy>{PROXY_SEPARATOR}<mode>, see 'ctxbench list')"
    )


def available_modes(names: t.Iterable[str] | None = None) -> tuple[str, ...]:
    """The modes among ``names`` (every registered mode by default; ``<proxy>+<mode>`` names
    too) that can run here, in their order: each command's default is this of its own list."""
    return tuple(
        name for name in (MODES if names is None else names) if get_mode(name).available().ok
    )


def pip_install(extra: str) -> str:
    """The step that installs the pip extra ``extra``: ``pip install 'ctxbench[uwsgi]'``, or,
    when ctxbench was installed from a folder (a checkout, PEP 610's ``direct_url.json``), the
    same from that folder (``pip install -e '/src/ctxbench[uwsgi]'``): ctxbench by name may not
    be on the user's package index. ``pip`` is :func:`pip_command`: this interpreter's."""
    source = _installed_from()
    if source is None:
        return f"{pip_command()} install 'ctxbench[{extra}]'"
    path, editable = source
    return f"{pip_command()} install {'-e ' if editable else ''}'{path}[{extra}]'"


def pip_command() -> str:
    """How to run the pip of the interpreter ctxbench runs on: ``pip`` when that is the first
    ``pip`` on ``PATH`` (an activated venv), else ``/path/to/venv/bin/python -m pip``. A venv's
    ``ctxbench`` run by its path, with another Python's ``pip`` first on ``PATH``, would
    otherwise print a step that installs into that other Python and changes nothing here."""
    found = shutil.which("pip")
    here = Path(sys.executable).parent
    if found is not None and Path(found).parent.resolve() == here.resolve():
        return "pip"
    return f"{shlex.quote(sys.executable)} -m pip"


def _installed_from() -> tuple[str, bool] | None:
    """The local folder ctxbench was installed from, and whether editable; ``None`` when it was
    installed by name (or is not installed: running from a checkout on ``sys.path``)."""
    # The first record that has one: a source tree's own ctxbench.egg-info (on sys.path when
    # run from the checkout) has none, and comes before the installed one.
    texts = (d.read_text("direct_url.json") for d in metadata.distributions(name="ctxbench"))
    try:
        url = json.loads(next((text for text in texts if text), "null"))
    except ValueError:
        return None
    if not isinstance(url, dict) or not isinstance(url.get("dir_info"), dict):
        return None
    parts = urlsplit(str(url.get("url", "")))
    if parts.scheme != "file":
        return None
    return unquote(parts.path), bool(url["dir_info"].get("editable"))


def require_modules(*modules: str, extra: str) -> Availability:
    """Available when every top-level module in ``modules`` is installed; otherwise say which is
    missing and the pip extra that installs it. Finds the modules without importing them."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return Availability(False, f"{module} is not installed", install=pip_install(extra))
    return Availability(True)


def require_command(module: str, script: str, *, extra: str) -> Availability:
    """:func:`require_modules` for ``module``, and the console script ``script`` installed next
    to this Python (a server the harness starts by its command, not through this interpreter)."""
    found = require_modules(module, extra=extra)
    if found.ok and venv_script(script) is None:
        return Availability(
            False, f"the {script} command is not installed next to this Python",
            install=pip_install(extra),
        )  # fmt: skip
    return found


def ignored_options(cfg: ServerConfig, names: t.Iterable[str]) -> list[str]:
    """The command-line options among ``names`` (:class:`ServerConfig` fields) that were given
    although the mode does not apply them, as ``--worker-connections``: recorded as ignored."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(cfg, name) is not None]


def last_option(args: t.Sequence[str], *names: str) -> str | None:
    """The value ``args`` give the last of the options ``names`` they give (``--threads=4`` or
    ``--threads 4``; a short option also as ``-w4``); ``None`` when they give none. gunicorn's
    and granian's parsers take the last value, and a server's own arguments (``--server-arg``)
    come after the ones ctxbench sets, so this is the value the server runs with."""
    rv = None
    for i, arg in enumerate(args):
        for name in names:
            short = len(name) == 2 and not name.startswith("--")
            if arg == name:
                rv = args[i + 1] if i + 1 < len(args) else None
            elif arg.startswith(f"{name}=") or (short and arg.startswith(name)):
                rv = arg[len(name) :].removeprefix("=")
    return rv


def last_count(args: t.Sequence[str], *names: str) -> int | None:
    """:func:`last_option` of ``names`` as a whole number above 0; ``None`` when none is given,
    or the last one given is not one (the server refuses it)."""
    value = last_option(args, *names)
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def one_at_a_time(traits: ModeTraits, units: int, why: str) -> ModeTraits:
    """``traits`` with :attr:`ModeTraits.serial` set to ``why`` when ``units``, the threads or
    greenlets a server process runs requests on at once, is 1: a gthread worker with one thread
    serves like a sync worker, and a leak between overlapping requests cannot show there."""
    return dataclasses.replace(traits, serial=why) if units == 1 else traits


def connections_given(cfg: ServerConfig, option: str, default: int) -> int:
    """The connections (greenlets) per worker a server runs with: the last whole number its own
    arguments give ``option``, else ``--worker-connections``, else the mode's ``default``."""
    return last_count(cfg.extra_args, option) or cfg.worker_connections or default


def threads_given(cfg: ServerConfig, option: str, default: int) -> int:
    """The threads per worker a server runs with: the last whole number its own arguments give
    ``option`` (:func:`last_option`; they come after ctxbench's), else ``--threads``, else the
    mode's ``default``."""
    return last_count(cfg.extra_args, option) or cfg.threads or default


class _Refused(Exception):
    pass


#: What :func:`argparse_refusal` (and a mode's own check) says of arguments on which the server
#: prints its help or version and exits (``--help``, ``--version``) instead of serving.
PRINTS_AND_EXITS = "it prints and exits"


def argparse_refusal(parser: argparse.ArgumentParser, args: t.Sequence[str]) -> str | None:
    """What ``parser`` says when it refuses ``args`` (``unrecognized arguments: --preload``),
    :data:`PRINTS_AND_EXITS` for ``--help`` or ``--version``, ``None`` when it takes them. Its
    own ``error()`` would print the usage and exit, as its help and version actions do."""

    def refuse(message: str) -> t.NoReturn:
        raise _Refused(message)

    parser.error = refuse  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(args)
    except _Refused as e:
        return str(e)
    except SystemExit:
        return PRINTS_AND_EXITS
    return None


def venv_script(name: str) -> Path | None:
    """The console script ``name`` next to this interpreter (the venv's ``bin``), if installed."""
    path = Path(sys.executable).parent / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


# -- live servers ----------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A running server: where it listens, its log, and what really ran.

    Use it through :func:`harness.servers.live_server`, which stops it on exit; or call
    :meth:`stop` yourself (it is idempotent).
    """

    mode: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    #: How this server runs requests, as configured (:meth:`ServerMode.traits_for`).
    traits: ModeTraits
    effective: dict[str, t.Any] = field(default_factory=dict)
    stop_signal: signal.Signals = signal.SIGTERM
    stop_signal_again: bool = False
    #: Where the server's processes report what ran (``CTXBENCH_STATE_DIR``), while it runs.
    state_dir: Path | None = None
    #: The path prefix the app is served under (``ServerConfig.mount``); the probe is at
    #: ``harness.protocol.probe_path(mount)``.
    mount: str | None = None
    _cleanup_dir: Path | None = None
    _stopped: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The pid of the server's main process (the gunicorn master); also its group id."""
        return self.process.pid

    def process_groups(self) -> list[int]:
        """Every process group this server runs in (one, or more behind a proxy)."""
        return [self.pid]

    @property
    def app_server(self) -> LiveServer:
        """The server that runs the app: this one, or the one behind a proxy. Faults act on
        its processes (a worker killed behind nginx is the app server's, not nginx's)."""
        return self

    def gone(self) -> str | None:
        """Why the server stopped on its own, or ``None`` while its main process runs.

        The main process (the master, or the only process) going means the whole server is
        gone: its workers die with it. A dead worker that the master replaces is not the end of
        the server. Cheap (a non-blocking ``waitpid``): the runner asks twice a second.
        """
        if self._stopped:
            return None
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return f"{self.mode}: the server's main process (pid {self.pid}) {how}"

    def stop(self) -> None:
        """Send ``stop_signal`` (SIGTERM unless the mode says otherwise) to the process group
        (and again to its main process, with ``stop_signal_again``), SIGKILL it after
        :data:`~harness.servers._process.STOP_GRACE_S`, wait until it is gone.

        SIGINT, SIGTERM and SIGHUP are held until the group is gone and the state directory
        removed, so a second Ctrl-C cannot leave either behind.
        """
        if self._stopped:
            return
        self._stopped = True
        with held_signals():
            try:
                stop_group(self.process, sig=self.stop_signal, again=self.stop_signal_again)
            finally:
                if self._cleanup_dir is not None:
                    shutil.rmtree(self._cleanup_dir, ignore_errors=True)


def start_server(
    mode: str | ServerMode,
    cfg: ServerConfig | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    ready_timeout: float | None = None,
    **changes: t.Any,
) -> LiveServer:
    """Start ``mode`` with ``cfg`` (changed by ``changes``) once a probe request succeeds.

    ``start_server("gunicorn-sync", app="pkg.wsgi:app", workers=1)`` is
    ``start_server("gunicorn-sync", ServerConfig(app="pkg.wsgi:app", workers=1))``. The server
    log goes to ``log_dir/<mode>.log`` (a temporary folder without it). The server has
    ``ready_timeout`` seconds to answer (default: :func:`~harness.servers._process.start_timeout`,
    30 unless ``CTXBENCH_START_TIMEOUT`` says otherwise). Raises
    :class:`UsageError` (unknown or unavailable mode, bad option, busy port),
    :class:`AppLoadError` (the app cannot be imported or does not answer the probe) or
    :class:`ServerStartError` (anything else; its ``detail`` holds the log tail). Nothing is
    left running on failure.
    """
    cfg = (cfg or ServerConfig()).replace(**changes)
    server_mode = get_mode(mode) if isinstance(mode, str) else mode
    # What a ctxbench killed outright left in the temporary folder; never a live run's.
    sweep_tempdirs()
    server_mode.check_available()
    if hidden := harness_hidden_by():
        raise UsageError(
            f"{hidden} comes first on the servers' import path (the current folder, then"
            " PYTHONPATH) and has the name of ctxbench's own package, 'harness', so the servers"
            " would import it in place of ctxbench's and fail: ctxbench cannot yet run beside a"
            " top-level package or module of that name; rename it, or run ctxbench from a"
            " folder where it is not importable"
        )
    server_mode.check_args(cfg)
    if ready_timeout is None:
        ready_timeout = start_timeout()
    if cfg.port is not None:
        check_port_free(cfg.port)
        try:
            return server_mode.start(cfg, log_dir, ready_timeout)
        except PortRaceLost:
            raise PortInUseError(cfg.port) from None
    attempts = 3  # a free port another program binds before the server does: draw again
    for _ in range(attempts):
        with contextlib.suppress(PortRaceLost):
            return server_mode.start(cfg.replace(port=free_port()), log_dir, ready_timeout)
    raise ServerStartError(
        f"{server_mode.name}: could not bind a free port on {HOST} after {attempts} attempts"
    )


def _start(
    server_mode: ServerMode,
    cfg: ServerConfig,
    log_dir: str | os.PathLike[str] | None,
    ready_timeout: float,
) -> LiveServer:
    state_dir = owned_tempdir(f"{TEMPDIR_PREFIX}{server_mode.name}-")
    if log_dir is None:
        log_path = state_dir / "server.log"
    else:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = server_mode.log_paths(Path(log_dir))[0]
    argv = [*cfg.prefix, *server_mode.command(cfg)]
    traits = server_mode.traits_for(cfg)  # before the spawn: nothing may fail before the try
    env = {
        APP_ENV: cfg.app,
        BACKEND_ENV: cfg.backend,
        STATE_DIR_ENV: str(state_dir),
    }
    if cfg.mount is not None:
        env[MOUNT_ENV] = cfg.mount
    if cfg.port is None:
        raise TypeError("_start() needs a port: start_server() picks a free one")
    process = spawn(argv, env=env, log_path=log_path)
    server = LiveServer(
        mode=server_mode.name,
        host=cfg.host,
        port=cfg.port,
        process=process,
        log_path=log_path,
        traits=traits,
        stop_signal=server_mode.stop_signal,
        stop_signal_again=server_mode.stop_signal_again,
        state_dir=state_dir,
        mount=cfg.mount,
        _cleanup_dir=state_dir,
    )
    try:
        checkpoint("server-spawned")  # a test hook (harness.checkpoints); nothing without it
        wait_ready(
            process,
            group=server_mode.answering_group(process.pid),
            name=server_mode.name,
            app=cfg.app,
            host=cfg.host,
            port=cfg.port,
            log_path=log_path,
            state_dir=state_dir,
            ready_timeout=ready_timeout,
            mount=cfg.mount,
        )
        reported = server_mode.collect_states(cfg, state_dir, time.monotonic() + 10)
        effective = server_mode.effective(cfg, reported)
        effective["argv"] = argv
        effective["master_pid"] = process.pid
        effective["port"] = cfg.port
        effective["traits"] = asdict(server.traits)
        server.effective = effective
    except ServerStartError:
        if log_path.is_relative_to(state_dir):
            server._cleanup_dir = None  # keep the log the error message points to, for good
            disown(state_dir)
        server.stop()
        raise
    except BaseException:
        server.stop()
        raise
    return server
