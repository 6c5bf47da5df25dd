"""What the gunicorn modes share: the command line and reading back the effective config.

Design note: gunicorn runs a master process that only supervises, and ``-w`` worker processes
forked from it that accept on the shared listening socket and run the app; the worker class
decides what runs inside a worker (see each mode module). Requests in different workers never
share memory, so any cross-talk seen under gunicorn happens between requests of one worker.
Every knob is passed explicitly (``-w``, ``--threads``, ``--worker-connections``), the control
socket is off (a fixed per-user path that parallel servers would trample), there is no access
log, and ``-c python:harness.servers._gunicorn_conf`` installs the hooks that report what ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import typing as t
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from harness.errors import UsageError
from harness.gunicorn_config import CONFIG, unread_gunicorn_settings
from harness.servers._supervised import SupervisedMode
from harness.servers.base import (
    MODES,
    Availability,
    Lifecycle,
    ModeTraits,
    Reported,
    ServerConfig,
    argparse_refusal,
    connections_given,
    get_mode,
    ignored_options,
    last_option,
    one_at_a_time,
    require_modules,
    threads_given,
)

DEFAULT_WORKER_CONNECTIONS = 1000
#: How gunicorn's gthread worker serves: a pool of threads per process, keep-alive. It is also
#: what ``-k sync`` runs with more than one thread (see GunicornSync).
GTHREAD_TRAITS = ModeTraits(unit="pool-thread", keepalive=True)
#: Bounded so that a stop never waits gunicorn's default 30 s for idle keep-alive connections.
GRACEFUL_TIMEOUT = 3
#: What gunicorn serves: the harness's WSGI entry point, which loads the app under test.
APP = "harness.wsgi:app"

#: The :class:`ServerConfig` fields each worker class has no use for, recorded as ignored when
#: given: gunicorn takes them all, and only gthread runs threads; gthread and gevent bound their
#: connections with --worker-connections (``-k sync`` with more threads is gthread).
UNUSED_BY_WORKER_CLASS = {
    "sync": ("worker_connections",),
    "gevent": ("threads",),
    "tornado": ("threads", "worker_connections"),
}

#: What the name of a worker's heartbeat file starts with (gunicorn's ``WorkerTmp``).
HEARTBEAT_FILE_PREFIX = "wgunicorn-"

#: The master respawns workers, replaces them all on SIGHUP and recycles each one after
#: ``--max-requests`` (plus a random jitter). Its ``--timeout`` kills a worker that stopped
#: heartbeating: only the sync and tornado workers stop while a request runs (see GunicornSync).
LIFECYCLE = Lifecycle(
    respawns=True,
    reload_signal=signal.SIGHUP,
    recycle_args=("--max-requests", "{requests}", "--max-requests-jitter", "{jitter}"),
    notes={
        "timeout": "the worker's main loop keeps heartbeating while a request runs on a pool"
        " thread or a greenlet, so gunicorn's --timeout never kills it mid-request",
    },
)


class GunicornMode(SupervisedMode):
    """Base for the gunicorn modes: a worker class (``-k``) and its default threads."""

    worker_class: t.ClassVar[str]
    default_threads: t.ClassVar[int] = 1
    lifecycle = LIFECYCLE
    preload_args = ("--preload",)
    workers_options = ("-w", "--workers")
    package = "gunicorn"
    listen_options = frozenset({"--bind", "-b"})
    #: The pip extra of ctxbench that installs the worker class's libraries (``requires``).
    extra: t.ClassVar[str] = "servers"

    def available(self) -> Availability:
        return require_modules(self.package, *self.requires, extra=self.extra)

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        traits = self.traits
        # --preload imports the app in the master, before a worker patches anything.
        if "--preload" in cfg.extra_args and traits.monkey_patch == "before-app":
            traits = replace(traits, monkey_patch="after-app")
        # A pool of one thread, or one greenlet at a time, serves one request at a time.
        if traits.unit == "pool-thread":
            why = "a pool of one thread per worker"
            return one_at_a_time(traits, self.threads(cfg), why)
        if traits.unit == "greenlet-per-connection":
            why = "one connection at a time per worker"
            given = connections_given(cfg, "--worker-connections", DEFAULT_WORKER_CONNECTIONS)
            # A pool of that many greenlets per worker, each holding its connection while open.
            traits = replace(traits, connection_limit=given * self.workers(cfg))
            return one_at_a_time(traits, given, why)
        return traits

    def check_args(self, cfg: ServerConfig) -> None:
        # gunicorn reads one config file, the last -c; ctxbench's own (CONFIG) holds the hooks
        # that report what ran, and without them the run recorded "[] w0" and waited for them.
        super().check_args(cfg)
        for arg in cfg.extra_args:
            name = arg.partition("=")[0]
            if (arg.startswith("-c") and not arg.startswith("--")) or (
                len(name) > len("--con") and "--config".startswith(name)
            ):
                raise UsageError(
                    f"{self.name}: --server-arg={arg} gives gunicorn a config file, but ctxbench"
                    f" runs gunicorn with its own (-c {CONFIG}, whose hooks report what ran) and"
                    " gunicorn reads only one: give its settings as server arguments"
                    " (--server-arg=--keep-alive=5), or start gunicorn with your config file"
                    " yourself and check it with ctxbench run --target (README, 'Checking a"
                    " running deployment')"
                )
            # The worker class is what the mode names: the last -k won, and a gunicorn-sync cell
            # ran the gevent worker while the expectations judged the sync one.
            if (arg.startswith("-k") and not arg.startswith("--")) or name == "--worker-class":
                value = last_option(cfg.extra_args, "--worker-class", "-k") or arg[2:]
                mode = f"gunicorn-{value}"
                instead = f"--modes {mode}" if mode in MODES else "the mode of that worker class"
                raise UsageError(
                    f"{self.name}: --server-arg={arg} picks gunicorn's worker class, which is"
                    f" what the mode names ({self.worker_class}): run {instead} instead, so that"
                    " the cell is judged and labelled as what ran (ctxbench list)"
                )
        # A pip extra (ctxbench[servers]): imported where it is used, once the mode is available.
        from gunicorn.config import Config

        if why := argparse_refusal(Config().parser(), [*cfg.extra_args, APP]):
            raise self.refused_args(cfg, "gunicorn", why)

    def worker_timed(self, pid: int) -> bool | None:
        """From the worker's first heartbeat. A worker heartbeats by setting the mtime of its
        heartbeat file to ``time.monotonic()``, and the master kills it once ``time.monotonic()``
        less that mtime passes ``--timeout``; until the first heartbeat the mtime is the file's
        creation time on the wall clock, decades ahead of any monotonic time, so the master
        never times the worker (the tornado worker's first comes a second after its IOLoop
        starts, once its app is loaded: 1.5 s after it started on 2 cores at load 13). The file
        is unlinked, held open by the worker: it is read through ``/proc/<pid>/fd``. ``None``
        where that shows none (the worker is gone, or there is no ``/proc``)."""
        mtimes: list[float] = []
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):  # closed since it was listed
                    if Path(os.readlink(fd)).name.startswith(HEARTBEAT_FILE_PREFIX):
                        mtimes.append(fd.stat().st_mtime)
        except OSError:
            return None
        if not mtimes:
            return None
        now = time.monotonic()
        return all(mtime <= now for mtime in mtimes)

    def threads(self, cfg: ServerConfig) -> int:
        """The threads per worker gunicorn is told: the last ``--threads`` of the server's own
        arguments, else ``--threads``, else the mode's default."""
        return threads_given(cfg, "--threads", self.default_threads)

    def command(self, cfg: ServerConfig) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "-c", CONFIG,
            "-b", f"{cfg.host}:{cfg.port}",
            "-k", self.worker_class,
            "-w", str(self.workers(cfg)),
            "--threads", str(cfg.threads or self.default_threads),
            "--worker-connections", str(cfg.worker_connections or DEFAULT_WORKER_CONNECTIONS),
            "--graceful-timeout", str(GRACEFUL_TIMEOUT),
            "--no-control-socket",
            *cfg.extra_args,
            APP,
        ]  # fmt: skip

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        workers, master = reported.workers, reported.master
        classes = sorted({str(w.get("worker_class")) for w in workers})
        worker_class = classes[0] if len(classes) == 1 else classes
        threads = master.get("threads", cfg.threads or self.default_threads)
        return {
            "worker_class": worker_class,
            "requested_worker_class": self.worker_class,
            "requested_workers": master.get("workers", self.workers(cfg)),
            # Only gthread runs a thread pool; sync and gevent serve on one OS thread.
            "threads": threads if worker_class == "gthread" else 1,
            "worker_connections": master.get("worker_connections"),
            "keepalive_s": master.get("keepalive"),
            "access_log": master.get("accesslog"),
            "preload_app": master.get("preload_app"),
            "gevent_patched": any(w.get("gevent_patched") for w in workers),
            "ignored_options": ignored_options(
                cfg, UNUSED_BY_WORKER_CLASS.get(str(worker_class), ())
            ),
        }


def unread_settings(
    modes: Iterable[str], given: str | None = "--server-arg=--preload"
) -> str | None:
    """:func:`~harness.gunicorn_config.unread_gunicorn_settings`, where a mode of ``modes`` runs
    gunicorn, so that a clean check is not read as a check of the user's own gunicorn settings:
    every command that starts a gunicorn mode says it once. ``given`` is how that command takes
    a server argument (``None``: it takes none)."""
    if not any(isinstance(getattr(m, "upstream", m), GunicornMode) for m in map(get_mode, modes)):
        return None
    return unread_gunicorn_settings(given)
