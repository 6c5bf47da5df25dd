"""What the uWSGI modes share: the command line, stopping, and reading back what ran.

Design note: uWSGI (the ``pyuwsgi`` wheel: no compiler needed) runs a master process that
imports the app (``harness.servers._uwsgi_app``) and then forks ``--processes`` workers, which
accept on the shared socket and run the app; what runs inside a worker is the mode's choice (see
each mode module). Requests in different workers never share memory. The command is explicit:
``--master``, ``--need-app`` (an app that fails to import ends uWSGI with status 22 instead of
serving 500s), ``--strict`` (an unknown option is an error), no request log, and a stats socket
in the server's state directory, from which the harness reads readiness and the identity of
every worker (pid, status, one ``cores`` entry per thread or async core).

uWSGI's signals differ from gunicorn's: SIGINT or SIGQUIT stop it, but SIGTERM and SIGHUP make
it re-execute itself (``--binary-path`` names the venv's interpreter: the pyuwsgi wheel would
otherwise re-execute the base interpreter, which cannot import it, and die), so the harness
stops it with SIGINT, and again every 50 ms until it exits: the master sees its workers gone
only on its next check, once a second, or when a signal wakes it (a stop took 1.03 s, now
0.06). Its workers ask the kernel to kill them when the master dies, so a master killed with
the harness takes them along.

Keep-alive: ``--http-socket`` answers one request per connection and then closes it *without*
``Connection: close``, so a keep-alive client fails on every second request; ``--http11-socket``
really keeps connections alive, and the thread or process that serves one stays with it until it
is idle for ``--socket-timeout``. uwsgi-processes and uwsgi-threads use ``--http11-socket``; under
``--gevent`` a second request on a kept-alive connection hangs, so uwsgi-gevent uses
``--http-socket`` and its keep-alive pattern is not applicable (see ``ModeTraits``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import signal
import socket
import subprocess
import sys
import typing as t
from pathlib import Path

from harness.errors import UsageError
from harness.servers._process import poll_until, wait_states
from harness.servers._supervised import SupervisedMode
from harness.servers.base import (
    MODES,
    PRINTS_AND_EXITS,
    Availability,
    Lifecycle,
    LiveServer,
    Reported,
    ServerConfig,
    ignored_options,
    require_command,
    require_modules,
    venv_script,
)

#: The stats socket, in the server's state directory (uWSGI expands ``$(VAR)`` itself).
STATS_SOCKET = "stats.sock"
#: Seconds a stopping uWSGI waits for its workers before it kills them.
RELOAD_MERCY = 3

#: The master respawns workers, reloads on SIGHUP (re-executing itself: see ``--binary-path``
#: in :meth:`UwsgiMode.command`), recycles each worker after ``--max-requests`` (staggered by
#: ``--max-requests-delta`` per worker id), but never one younger than
#: ``--min-worker-lifetime`` (10 s by default: the recycle fault's workers went after some 7,000
#: requests, at 9 to 10 s, and the cell took 12 s), and kills a worker whose request runs past
#: ``--harakiri`` seconds. The recycle fault asks for 2 s: with 0 or 1 s (uWSGI counts whole
#: seconds) a worker could go within a second of its spawn, and the master paused 2 s on
#: "worker respawning too fast" (2 to 5 times a cell, which took 14 to 20 s).
#:
#: On ``--http11-socket`` a kept-alive connection holds the process or thread that accepted it:
#: measured under the abort fault with 16 keep-alive clients and 2 processes, each of the
#: fault's own requests waited for a load round to end (median 0.33 s, a whole round), and the
#: cell took 13 to 16 s of its 30 s bound. It also keeps the connection after a response to
#: ``Connection: close`` ("Connection: close is not honoured", proto/http.c; it closes after an
#: HTTP/1.0 request), and sends a body without a length unframed, so its client sees the end
#: only when ``--socket-timeout`` (4 s) closes the idle connection: measured 4.0 s for a 3-chunk
#: stream, and 4.5 s a slow read under the slow-client fault.
LIFECYCLE = Lifecycle(
    respawns=True,
    reload_signal=signal.SIGHUP,
    recycle_args=(
        *("--max-requests", "{requests}", "--max-requests-delta", "{jitter}"),
        *("--min-worker-lifetime", "2"),
    ),
    timeout_args=("--harakiri", "{seconds}"),
    kept_alive_holds_unit=True,
    honours_connection_close=False,
    refuses_during=frozenset({"reload"}),
)


#: uWSGI's ``--harakiri`` is one deadline per worker, which every request on it sets as it starts
#: and clears as it ends (``set_harakiri`` in core/utils.c, 2.0.30). A worker that runs requests
#: side by side (threads, gevent) is timed only while no other request starts or ends on it:
#: measured with ``--harakiri 2``, a request sleeping 5 s alone on a pool thread or in a greenlet
#: was killed after 2.8 s and 1.8 s, and answered after 5.8 s with short requests beside it.
SIDE_BY_SIDE_LIFECYCLE = dataclasses.replace(LIFECYCLE, timeout_needs_idle_worker=True)


#: uWSGI's options that load a config file, and the extensions by which it reads a bare file
#: name as one.
CONFIG_OPTIONS = frozenset({"--ini", "--yaml", "--yml", "--json", "--js", "--xml"})
CONFIG_SUFFIXES = (".ini", ".yaml", ".yml", ".json", ".js", ".xml")


class UwsgiMode(SupervisedMode):
    """Base for the uWSGI modes: the socket option and what runs in each worker."""

    stop_signal = signal.SIGINT
    stop_signal_again = True
    lifecycle = LIFECYCLE
    package = "pyuwsgi"
    listen_options = frozenset({
        "--http-socket", "--http11-socket", "--http", "--https", "--socket", "-s",
        "--uwsgi-socket", "--fastcgi-socket", "--scgi-socket", "--shared-socket",
    })  # fmt: skip
    server = "uwsgi"
    workers_options = ("-p", "--processes", "--workers")
    #: ``--http11-socket`` (keep-alive) or ``--http-socket`` (one request per connection).
    socket_option: t.ClassVar[str] = "--http11-socket"
    #: What runs in each worker, as the summary and the report name it.
    worker_class: t.ClassVar[str] = "processes"
    #: The uWSGI option that puts it there (``--threads``, ``--gevent``); none for processes.
    worker_option: t.ClassVar[str | None] = None
    #: :class:`ServerConfig` fields the mode has no use for, recorded as ignored when given:
    #: without ``--threads`` or ``--gevent`` a worker serves on its main thread alone.
    ignored: t.ClassVar[tuple[str, ...]] = ("threads", "worker_connections")

    def available(self) -> Availability:
        found = require_command(self.package, "uwsgi", extra="uwsgi")
        return require_modules(*self.requires, extra="uwsgi") if found.ok else found

    def check_args(self, cfg: ServerConfig) -> None:
        # A config file (an .ini of a deployment) sets the module, sockets, processes and
        # threads over ctxbench's: it loaded the user's module in place of the probe's and the
        # run recorded 1 thread where 2 ran.
        super().check_args(cfg)
        for arg in cfg.extra_args:
            name = arg.partition("=")[0]
            given_as = arg if name in CONFIG_OPTIONS else None
            if given_as is None and not arg.startswith("-") and arg.endswith(CONFIG_SUFFIXES):
                given_as = arg  # uWSGI reads a bare file name by its extension
            if given_as is not None:
                raise UsageError(
                    f"{self.name}: --server-arg={given_as} gives uWSGI a config file, whose"
                    " module, sockets, processes and threads would replace those ctxbench"
                    " runs it with (and records): give the settings you need as server"
                    " arguments (--server-arg=--buffer-size=32768), or start uWSGI with your"
                    " config file yourself and check it with ctxbench run --target (README,"
                    " 'Checking a running deployment')"
                )
            # What runs in each worker is what the mode names: --threads made uwsgi-processes
            # the threads mode, judged as one request at a time per process.
            other = next(
                (m for m in MODES.values() if isinstance(m, UwsgiMode) and m.worker_option == name),
                None,
            )
            if other is not None and name != self.worker_option:
                raise UsageError(
                    f"{self.name}: --server-arg={arg} runs {other.worker_class} in each uWSGI"
                    f" worker, which is what {other.name} is: run --modes {other.name} instead,"
                    " so that the cell is judged and labelled as what ran"
                )
        options = uwsgi_options(str(venv_script("uwsgi"))) if cfg.extra_args else frozenset()
        if why := refused_option(cfg.extra_args, options):
            raise self.refused_args(cfg, "uWSGI", why)

    def worker_args(self, cfg: ServerConfig) -> list[str]:
        """What runs inside each worker process (threads, gevent); nothing by default."""
        return []

    def command(self, cfg: ServerConfig) -> list[str]:
        return [
            str(venv_script("uwsgi") or "uwsgi"),
            "--master", "--need-app", "--strict", "--single-interpreter",
            # uWSGI reloads by re-executing its binary; the pyuwsgi wheel's default is the
            # resolved interpreter, outside the venv, which cannot import pyuwsgi (measured).
            "--binary-path", sys.executable,
            self.socket_option, f"{cfg.host}:{cfg.port}",
            "--processes", str(self.workers(cfg)),
            *self.worker_args(cfg),
            "--module", "harness.servers._uwsgi_app:application",
            "--stats", f"$(CTXBENCH_STATE_DIR)/{STATS_SOCKET}",
            "--listen", "1024",
            "--disable-logging",
            "--reload-mercy", str(RELOAD_MERCY), "--worker-reload-mercy", str(RELOAD_MERCY),
            # A worker told to stop exits at once, skipping the app's atexit hooks: tearing its
            # interpreter down took 0.3 to 0.6 s, and now and then hung until the master
            # killed it, 4 s later (measured).
            "--skip-atexit",
            *cfg.extra_args,
        ]  # fmt: skip

    def collect_states(self, cfg: ServerConfig, state_dir: Path, deadline: float) -> Reported:
        """Wait until the stats socket lists every worker as ready, then read the state files."""
        expected = self.serving_processes(cfg)
        stats = poll_until(
            lambda: read_stats(state_dir / STATS_SOCKET),
            lambda stats: _ready_workers(stats) >= expected,
            deadline,
        )
        return Reported(wait_states(state_dir, expected, deadline), {"stats": stats})

    def requests_running(self, server: LiveServer) -> int | None:
        """The cores (threads, async cores) of every worker that are in a request, from the
        stats socket; a core leaves it only after the request's end cleared ``--harakiri``."""
        if server.state_dir is None:
            return None
        stats = read_stats(server.state_dir / STATS_SOCKET)
        if not stats.get("workers"):
            return None
        return sum(
            1 for w in stats["workers"] for core in w.get("cores", []) if core.get("in_request")
        )

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        workers, first = reported.workers, reported.first
        stats = reported.master.get("stats", {})
        stats_workers = [w for w in stats.get("workers", []) if w.get("pid")]
        cores = sorted({len(w.get("cores", [])) for w in stats_workers})
        before = {w.get("patched_before_app") for w in workers}
        after = {w.get("patches_later") for w in workers}
        rv = {
            "server_version": stats.get("version") or first.get("server_version"),
            "worker_class": self.worker_class,
            "socket": self.socket_option.lstrip("-"),
            "workers": len(stats_workers) or len(workers),
            "reported_worker_pids": sorted(w["pid"] for w in workers if "pid" in w),
            "cores_per_worker": cores[0] if len(cores) == 1 else cores,
            "threads": first.get("threads", 1),
            "gevent_async": first.get("gevent", 0),
            "lazy_apps": any(w.get("lazy_apps") for w in workers),
            "monkey_patch": _patch_order(before, after),
            "listen_queue": stats.get("listen_queue"),
            "access_log": None,
            "ignored_options": ignored_options(cfg, self.ignored),
        }
        if stats_workers:  # the identities uWSGI itself reports
            rv["worker_pids"] = sorted(w["pid"] for w in stats_workers)
        return rv


@functools.cache
def uwsgi_options(binary: str) -> frozenset[str]:
    """The options the uWSGI at ``binary`` takes, as its ``--help`` lists them (``--socket``,
    ``-s``, ...): its parser cannot be asked without running the options it meets, as
    ``--include`` or ``--stop`` run while it reads them."""
    try:
        out = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found = re.findall(r"^\s+(?:(-\w)\|)?(--[\w-]+)", out, re.MULTILINE)
    return frozenset(name for names in found for name in names if name)


#: uWSGI's options that print something and exit, which its --help lists as any other.
PRINT_AND_EXIT = frozenset({"-h", "--help", "--usage", "--version", "--cflags", "--dot-h"})
#: uWSGI's options that load a plugin, whose own options its --help lists only once loaded.
PLUGIN_OPTIONS = frozenset({"--plugin", "--plugins", "--need-plugin", "--need-plugins"})


def refused_option(args: t.Sequence[str], options: frozenset[str]) -> str | None:
    """What uWSGI's parser (``getopt_long``) says of the first option of ``args`` it does not
    take, given the ``options`` it takes: "unrecognized option '--preload'" for a long one no
    option's name begins with, "option '--max-req' is ambiguous; ..." for one that begins more
    than one (an unambiguous abbreviation is taken), "invalid option -- 'Z'" for a short one;
    :data:`PRINTS_AND_EXITS` for one of :data:`PRINT_AND_EXIT` or its abbreviation (``--vers``).
    ``None`` when there is none, or ``options`` is empty (uWSGI did not say). Where ``args``
    load a plugin (:data:`PLUGIN_OPTIONS`), the options it takes are not all known here: only
    those that print and exit are refused, and uWSGI itself refuses the others as it starts."""
    if not options:
        return None
    names = [arg.partition("=")[0] for arg in args]
    plugins = not PLUGIN_OPTIONS.isdisjoint(names)
    for name in names:
        if name in PRINT_AND_EXIT:
            return PRINTS_AND_EXITS
        if plugins:
            continue
        if name.startswith("--"):
            taken = [name] if name in options else sorted(o for o in options if o.startswith(name))
            if not taken:
                return f"unrecognized option {name!r}"
            if len(taken) > 1:
                return f"option {name!r} is ambiguous; possibilities: {' '.join(map(repr, taken))}"
            if taken[0] in PRINT_AND_EXIT:  # --vers: uWSGI takes it as --version
                return PRINTS_AND_EXITS
        elif name.startswith("-") and len(name) > 1 and name[:2] not in options:
            return f"invalid option -- {name[1]!r}"
    return None


def _ready_workers(stats: dict[str, t.Any]) -> int:
    """How many workers the stats list as up (``idle`` or ``busy``, with a pid)."""
    return sum(
        1 for w in stats.get("workers", []) if w.get("pid") and w.get("status") in ("idle", "busy")
    )


def _patch_order(before: set[t.Any], after: set[t.Any]) -> str | None:
    """When gevent patched threading in the workers: before the app (seen when the app was
    imported), after it (``--gevent-monkey-patch``, which patches when the gevent loop starts),
    or never."""
    if before == {True}:
        return "before-app"
    if before == {False}:
        return "after-app" if after == {True} else "none"
    return None  # no report, or workers that disagree


def read_stats(path: Path, timeout: float = 1.0) -> dict[str, t.Any]:
    """The JSON that uWSGI's stats server sends on connect to ``path``; ``{}`` if none yet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        chunks = []
        try:
            sock.connect(str(path))
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            return {}
    with contextlib.suppress(ValueError):
        rv: dict[str, t.Any] = json.loads(b"".join(chunks))
        return rv
    return {}
