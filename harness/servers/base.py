"""Server modes and the live servers they start.

Design note: every server under test runs in its own subprocess, started with
``start_new_session=True`` so that it leads its own process group (gunicorn's master and its
forked workers all share it). The harness never runs a server in its own process: a gevent
worker monkey-patches the whole process, and a server that crashes or hangs must not take the
load driver with it. Per-request isolation is therefore a property of the server process alone;
the harness observes it only through HTTP, with the probe.

Lifecycle of a :class:`LiveServer`:

- bind: 127.0.0.1 on a free port (or the user's, checked first: a busy one is a
  :class:`PortInUseError`);
- environment: ``WEB_CONCURRENCY``, ``PORT`` and ``GUNICORN_CMD_ARGS`` are scrubbed, so only
  the explicit command line configures the server; ``CTXBENCH_APP`` / ``CTXBENCH_BACKEND`` tell
  :mod:`harness.wsgi` what to load, ``CTXBENCH_STATE_DIR`` where to report what really ran;
- readiness: a real probe request is polled until it answers with its own token, against a
  deadline; an early exit or an app import failure ends the wait at once;
- log: stdout and stderr go to one file, whose tail is shown when start-up fails;
- stop: SIGTERM to the group, SIGKILL after a grace period, then wait until no process of the
  group is left. On Linux the server also gets ``PR_SET_PDEATHSIG`` (SIGKILL), and so do
  gunicorn's workers (their parent is the master), so it dies with the harness even when the
  harness is killed outright. (The signal follows the *thread* that started the server: start
  servers from a thread that outlives them, normally the main thread.)
"""

from __future__ import annotations

import abc
import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType

from harness.errors import AppLoadError, PortInUseError, ServerStartError, UsageError
from harness.servers._state import die_with_parent

__all__ = [
    "HOST",
    "MODES",
    "Availability",
    "ExecutionUnit",
    "LiveServer",
    "ModeTraits",
    "ServerConfig",
    "ServerMode",
    "check_port_free",
    "free_port",
    "get_mode",
    "group_members",
    "log_tail",
    "package_version",
    "register",
    "start_server",
]

HOST = "127.0.0.1"
#: Environment variables that would configure a server behind the harness's back.
SCRUBBED_ENV = ("WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS")
PROBE_PATH = "/_ctxbench/probe"
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
LOG_TAIL_LINES = 25


class Availability(t.NamedTuple):
    """Whether a mode can run here, and if not, why and what to do."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class ServerConfig:
    """What the harness asks a mode to run. ``None`` means the mode's own default."""

    app: str
    backend: str
    host: str
    port: int
    workers: int | None = None
    threads: int | None = None
    worker_connections: int | None = None
    extra_args: tuple[str, ...] = ()


#: What serves one request inside a server process: a new thread per connection, the process's
#: main thread, a thread of a reused pool, or a greenlet per connection.
ExecutionUnit = t.Literal[
    "thread-per-connection", "main-thread", "pool-thread", "greenlet-per-connection"
]


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

    @abc.abstractmethod
    def available(self) -> Availability:
        """Say whether this mode can run here (its server and worker libraries are installed)."""

    @abc.abstractmethod
    def command(self, cfg: ServerConfig) -> list[str]:
        """Return the argv that serves ``harness.wsgi:app`` on ``cfg.host:cfg.port``."""

    def expected_workers(self, cfg: ServerConfig) -> int:
        """How many serving processes report their state once the server is up."""
        return 1

    def effective(
        self, cfg: ServerConfig, workers: list[dict[str, t.Any]], master: dict[str, t.Any]
    ) -> dict[str, t.Any]:
        """Build the effective configuration from the state files the server processes wrote.

        ``workers`` holds one dict per serving process (see :mod:`harness.wsgi` and the gunicorn
        hooks); ``master`` what a supervising process wrote (empty if it has none). Override to
        add what is specific to the mode; call this for the common part.
        """
        first = workers[0] if workers else {}
        return {
            "mode": self.name,
            "app": first.get("app", cfg.app),
            "app_class": first.get("app_class"),
            "backend": first.get("backend", cfg.backend),
            "storage": first.get("storage"),
            "probe": first.get("probe"),  # who mounted it: "app", "harness.wsgi" or "none"
            "worker_pids": sorted(s["pid"] for s in workers if "pid" in s),
            "python": first.get("python"),
        }


MODES: dict[str, ServerMode] = {}

_M = t.TypeVar("_M", bound=type[ServerMode])


def register(cls: _M) -> _M:
    """Class decorator: add an instance of a :class:`ServerMode` subclass to :data:`MODES`."""
    if cls.name in MODES:
        raise ValueError(f"server mode {cls.name!r} is registered twice")
    MODES[cls.name] = cls()
    return cls


def get_mode(name: str) -> ServerMode:
    """Return the registered mode ``name``; raise :class:`UsageError` naming the valid ones."""
    try:
        return MODES[name]
    except KeyError:
        valid = ", ".join(sorted(MODES))
        raise UsageError(f"unknown server mode {name!r}: choose from {valid}") from None


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- ports -----------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """Return a port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, host: str = HOST) -> None:
    """Raise :class:`PortInUseError` if a server could not bind ``host:port``.

    Binds the way the servers do (``SO_REUSEADDR``), so a port in TIME_WAIT counts as free.
    """
    if not 0 < port < 65536:
        raise UsageError(f"bad port {port!r}: use a number from 1 to 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUseError(port, host) from None
            raise UsageError(f"cannot bind {host}:{port}: {e.strerror}") from None


# -- processes -------------------------------------------------------------------------------

def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    rv = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            rv.append(int(entry.name))
    return rv


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.02)
    return not group_members(pgid)


def _scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


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
    effective: dict[str, t.Any] = field(default_factory=dict)
    stop_grace: float = 5.0
    _cleanup_dir: Path | None = None
    _stopped: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The pid of the server's main process (the gunicorn master); also its group id."""
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_grace`` s, wait until it is gone."""
        if self._stopped:
            return
        self._stopped = True
        pgid = self.process.pid
        # A second Ctrl-C must not cut the clean-up short: hold SIGINT/SIGTERM/SIGHUP until the
        # group is gone; they are delivered (and raise) as soon as this returns.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        try:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.process.wait()
            if not _wait_group_gone(pgid, time.monotonic() + self.stop_grace):
                _signal_group(pgid, signal.SIGKILL)
                _wait_group_gone(pgid, time.monotonic() + self.stop_grace)
        finally:
            if self._cleanup_dir is not None:
                shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log (empty if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _probe_once(host: str, port: int, token: str, timeout: float) -> str | None:
    """One readiness probe: ``"ready"``, ``None`` (not up yet) or why the app is not a probe app."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", f"{PROBE_PATH}?token={token}&sleep_ms=0")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if response.status == 503:  # some servers answer 503 while their workers boot
        return None
    if response.status != 200:
        return f"answered {response.status}"
    try:
        echoed = json.loads(body).get("token")
    except (ValueError, AttributeError):
        return "answered 200 with something that is not a probe response"
    if echoed != token:
        return f"answered token {echoed!r} to a request for token {token!r}"
    return "ready"


def _read_states(state_dir: Path) -> list[dict[str, t.Any]]:
    states = []
    for path in sorted(state_dir.glob("worker-*.json")):
        with contextlib.suppress(OSError, ValueError):
            states.append(json.loads(path.read_text(encoding="utf-8")))
    return states


def _read_json(path: Path) -> dict[str, t.Any]:
    try:
        rv: dict[str, t.Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return rv


class _StartFailed(Exception):
    """Internal: start-up failed because the port was taken between check and bind."""


def start_server(
    mode: str | ServerMode,
    *,
    app: str,
    backend: str = "contextvar",
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    worker_connections: int | None = None,
    extra_args: t.Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    ready_timeout: float = 30.0,
) -> LiveServer:
    """Start ``mode`` serving ``app`` and return it once a probe request succeeds.

    Raises :class:`UsageError` (unknown or unavailable mode, busy port), :class:`AppLoadError`
    (the app cannot be imported or does not answer the probe) or :class:`ServerStartError`
    (anything else; its ``detail`` holds the log tail). Nothing is left running on failure.
    """
    server_mode = get_mode(mode) if isinstance(mode, str) else mode
    availability = server_mode.available()
    if not availability.ok:
        raise UsageError(f"server mode {server_mode.name!r} cannot run here: {availability.reason}")
    for name, value in (
        ("workers", workers),
        ("threads", threads),
        ("worker_connections", worker_connections),
    ):
        if value is not None and value < 1:
            raise UsageError(f"bad {name.replace('_', '-')} {value!r}: use a number >= 1")
    if port is not None:
        check_port_free(port)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        cfg = ServerConfig(
            app=app,
            backend=backend,
            host=HOST,
            port=port if port is not None else free_port(),
            workers=workers,
            threads=threads,
            worker_connections=worker_connections,
            extra_args=tuple(extra_args),
        )
        try:
            return _start(server_mode, cfg, log_dir, ready_timeout)
        except _StartFailed:
            if port is not None:
                raise PortInUseError(port) from None
            if attempt == attempts - 1:
                raise ServerStartError(
                    f"{server_mode.name}: could not bind a free port on {HOST} after"
                    f" {attempts} attempts"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _start(
    server_mode: ServerMode,
    cfg: ServerConfig,
    log_dir: str | os.PathLike[str] | None,
    ready_timeout: float,
) -> LiveServer:
    state_dir = Path(tempfile.mkdtemp(prefix=f"ctxbench-{server_mode.name}-"))
    if log_dir is None:
        log_path = state_dir / "server.log"
    else:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / f"{server_mode.name}.log"
    argv = server_mode.command(cfg)
    env = _scrubbed_env(
        {
            "CTXBENCH_APP": cfg.app,
            "CTXBENCH_BACKEND": cfg.backend,
            "CTXBENCH_STATE_DIR": str(state_dir),
        }
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,  # only prctl: safe between fork and exec
        )
    server = LiveServer(
        mode=server_mode.name,
        host=cfg.host,
        port=cfg.port,
        process=process,
        log_path=log_path,
        _cleanup_dir=state_dir,
    )
    try:
        _wait_ready(server_mode, cfg, server, state_dir, ready_timeout)
        states = _wait_states(state_dir, server_mode.expected_workers(cfg), time.monotonic() + 10)
        effective = server_mode.effective(cfg, states, _read_json(state_dir / "master.json"))
        effective["argv"] = argv
        effective["master_pid"] = process.pid
        effective["port"] = cfg.port
        server.effective = effective
    except ServerStartError:
        server._cleanup_dir = None  # keep the log the error message points to
        server.stop()
        raise
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(
    server_mode: ServerMode,
    cfg: ServerConfig,
    server: LiveServer,
    state_dir: Path,
    ready_timeout: float,
) -> None:
    deadline = time.monotonic() + ready_timeout
    attempt = 0
    while True:
        app_error = state_dir / "app-error.txt"
        if app_error.exists():
            message = app_error.read_text(encoding="utf-8").strip()
            raise AppLoadError(f"{server_mode.name}: {message}")
        returncode = server.process.poll()
        if returncode is not None:
            tail = log_tail(server.log_path)
            if "Address already in use" in tail:
                raise _StartFailed
            raise ServerStartError(
                f"{server_mode.name} exited with status {returncode} during start-up"
                f" (log: {server.log_path})",
                detail=tail,
            )
        attempt += 1
        outcome = _probe_once(cfg.host, cfg.port, f"ctxbench-ready-{attempt}", timeout=2.0)
        if outcome == "ready":
            return
        if outcome is not None:
            raise AppLoadError(
                f"{server_mode.name}: app {cfg.app!r} is up but GET {PROBE_PATH} {outcome}:"
                " install the probe with harness.probe.install_probe(app)"
            )
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"{server_mode.name} did not answer a probe request within {ready_timeout:g} s"
                f" (log: {server.log_path})",
                detail=log_tail(server.log_path),
            )
        time.sleep(0.05)  # poll interval, not a synchronisation


def _wait_states(state_dir: Path, expected: int, deadline: float) -> list[dict[str, t.Any]]:
    """Collect the per-process state files; wait (bounded) until every worker wrote one."""
    while True:
        states = _read_states(state_dir)
        if len(states) >= expected or time.monotonic() >= deadline:
            return states
        time.sleep(0.02)
