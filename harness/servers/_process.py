"""The life of a server process: a port, a spawn, readiness, a stop.

Design note: every server under test runs in its own subprocess, started with
``start_new_session=True`` so that it leads its own process group (gunicorn's master and its
forked workers all share it). The harness never runs a server in its own process: a gevent
worker monkey-patches the whole process, and a server that crashes or hangs must not take the
load driver with it. Per-request isolation is therefore a property of the server process alone;
the harness observes it only through HTTP, with the probe.

- bind: 127.0.0.1 on a free port (or the user's, checked first: a busy one is a
  :class:`~harness.errors.PortInUseError`);
- environment: ``WEB_CONCURRENCY``, ``PORT``, ``GUNICORN_CMD_ARGS`` and every ``UWSGI_*`` and
  ``GRANIAN_*`` variable are scrubbed, so only the explicit command line configures the server;
- readiness: a real probe request is polled until it answers with its own token, against a
  deadline; an early exit or an app import failure (``app-error.txt`` in the state directory)
  ends the wait at once;
- log: stdout and stderr go to one file, whose tail is shown when start-up fails;
- stop: the mode's stop signal (SIGTERM unless it says otherwise) to the group, SIGKILL after a
  grace period, then wait until no process of the group is left. On Linux the server also gets
  ``PR_SET_PDEATHSIG`` (SIGKILL), and so do the worker processes of gunicorn and granian (their
  parent is the master; uWSGI's workers watch their master themselves), so it dies with the
  harness even when the harness is killed outright; a server whose workers cannot be hooked runs
  under :mod:`harness.servers._guard`, which kills its whole group. (The signal follows the
  *thread* that started the server: start servers from a thread that outlives them, normally
  the main thread.)

Nothing here knows about server modes: :mod:`harness.servers.base` puts these steps together.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

from harness.errors import AppLoadError, PortInUseError, ServerStartError, UsageError
from harness.protocol import (
    ENABLE_ENV,
    MOUNT_ENV,
    PROBE_PATH,
    SECRET_ENV,
    STOPPED_HEADER,
    probe_path,
)
from harness.servers._state import die_with_parent
from harness.verdict import ProbeProtocolError, examine_probe_response, printable

__all__ = [
    "HELPER_PROCESSES",
    "HOST",
    "INSTALL_PROBE",
    "LOG_TAIL_LINES",
    "SCRUBBED_ENV",
    "SCRUBBED_ENV_PREFIXES",
    "PortRaceLost",
    "check_port_free",
    "free_port",
    "group_members",
    "held_signals",
    "is_helper",
    "log_tail",
    "poll_until",
    "read_json",
    "spawn",
    "stop_group",
    "wait_ready",
    "wait_states",
    "why_not_answered",
]

HOST = "127.0.0.1"
#: Environment variables that would configure a server behind the harness's back.
#: Variables a server ctxbench starts never inherits: gunicorn reads the first three, and a probe
#: secret meant for a deployment would lock the harness out of its own servers.
#: ``SCRIPT_NAME`` makes gunicorn alone serve the app under that prefix (the other servers
#: ignore it): ``--mount`` says where the app is served, for every mode, and sets
#: ``CTXBENCH_MOUNT`` itself.
SCRUBBED_ENV = (
    "WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS", "SCRIPT_NAME", SECRET_ENV, MOUNT_ENV,
)  # fmt: skip
#: Prefixes of more such variables: uWSGI reads every option from ``UWSGI_<OPTION>``, granian
#: from ``GRANIAN_<OPTION>``.
SCRUBBED_ENV_PREFIXES = ("UWSGI_", "GRANIAN_")
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
LOG_TAIL_LINES = 25


class PortRaceLost(Exception):
    """Start-up failed because another program took the port between the check and the bind."""


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


# -- spawn and stop --------------------------------------------------------------------------


def spawn(argv: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group, killed when its parent dies.

    The environment is this process's without :data:`SCRUBBED_ENV`, plus ``env``; stdout and
    stderr both go to ``log_path``.
    """
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in SCRUBBED_ENV and not k.startswith(SCRUBBED_ENV_PREFIXES)
    }
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env[ENABLE_ENV] = "1"  # install_probe() in the app under test mounts the probe
    full_env.update(env)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            # Only prctl: safe between fork and exec. The harness's pid is taken before the fork.
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )


#: What the command line of a process that a supervisor starts beside its workers, and that
#: serves nothing, contains: ``multiprocessing``'s resource tracker, which uvicorn's and
#: hypercorn's spawn start method starts in their group. Neither a worker for the faults (killed,
#: it is not replaced, and nothing was faulted) nor a server process for a soak to judge.
HELPER_PROCESSES = ("multiprocessing.resource_tracker",)


def is_helper(pid: int) -> bool:
    """Whether process ``pid`` is a helper of a server's supervisor (:data:`HELPER_PROCESSES`),
    read from its command line; ``False`` when it is gone or there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return False
    return any(mark in cmdline for mark in HELPER_PROCESSES)


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


_T = t.TypeVar("_T")


def poll_until(look: t.Callable[[], _T], enough: t.Callable[[_T], bool], deadline: float) -> _T:
    """Call ``look()`` until ``enough`` of what it returns, or until ``deadline`` (a
    ``time.monotonic()`` value); return what it returned last. It looks at least once."""
    while True:
        rv = look()
        if enough(rv) or time.monotonic() >= deadline:
            return rv
        time.sleep(0.02)  # poll interval, not a synchronisation


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    return not poll_until(lambda: group_members(pgid), lambda members: not members, deadline)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP in this thread for the block; deliver them after it.

    A second Ctrl-C must not cut a clean-up short: a held signal is delivered (and raises) as
    soon as the block ends.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


#: Seconds a server's process group has to stop after the stop signal, before SIGKILL.
STOP_GRACE_S = 5.0
#: Seconds between the stop signals sent to a main process that wants it ``again``.
SIGNAL_AGAIN_S = 0.05


def stop_group(
    process: subprocess.Popen[bytes],
    grace: float = STOP_GRACE_S,
    sig: signal.Signals = signal.SIGTERM,
    *,
    again: bool = False,
) -> None:
    """Send ``sig`` to the group that ``process`` leads (``again``: and to ``process`` every
    :data:`SIGNAL_AGAIN_S` until it exits), SIGKILL it after ``grace`` s, wait until no process
    of the group is left."""
    pgid = process.pid
    _signal_group(pgid, sig)
    deadline = time.monotonic() + grace
    try:
        while again and process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(SIGNAL_AGAIN_S)
            process.send_signal(sig)  # nothing once it has exited
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        process.wait()
    if not _wait_group_gone(pgid, time.monotonic() + grace):
        _signal_group(pgid, signal.SIGKILL)
        _wait_group_gone(pgid, time.monotonic() + grace)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log (empty if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# -- readiness -------------------------------------------------------------------------------


#: What to do about a server without the probe: the hint of every error that says so.
INSTALL_PROBE = (
    "install the probe with harness.probe.install_probe(app) (a core or Flask app; for others"
    " see the README, 'Apps of other frameworks')"
)


#: How a readiness outcome says that the server's log tail follows it (:func:`wait_ready` then
#: shows the tail as the error's detail).
_TAIL_BELOW = "(its tail below)"


def _probe_once(
    host: str,
    port: int,
    token: str,
    timeout: float,
    group: int | None = None,
    path: str = PROBE_PATH,
    log_path: Path | None = None,
) -> str | None:
    """One readiness probe: ``"ready"``, ``None`` (not up yet) or why the app is not a probe app.

    With ``group``, an answer from a process outside that process group is ``None`` too: another
    program holds the port while the server being started still retries its bind. With
    ``log_path`` (the server's log), an app that raised is said to have its tail below.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", f"{path}?token={token}&sleep_ms=0")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    echoed = doc.get("token") if isinstance(doc, dict) else None
    if response.getheader(STOPPED_HEADER) is not None and not (
        # The app answered in the probe's place, unless this is a plain WSGI callable's own
        # answer as a probe (harness.probe.locate.InFront marks every answer of one), checked
        # below.
        response.status == 200 and echoed == token
    ):
        return why_not_answered(response, path, log_path)
    # Some servers answer 503 while their workers boot; a proxy answers 502 or 504 while its
    # upstream does not answer yet.
    if response.status in (502, 503, 504):
        return None
    if response.status != 200:
        return why_not_answered(response, path, log_path)
    if not isinstance(doc, dict):
        return f"answered 200 with something that is not a probe response: {INSTALL_PROBE}"
    if echoed != token:
        return f"answered token {echoed!r} to a request for token {token!r}: {INSTALL_PROBE}"
    if group is not None and not _in_group(doc.get("worker"), group):
        return None
    try:
        # The load driver's own check: an answer it cannot read would make every request of
        # the run an error, and the run end with 'the app answered them itself'.
        examine_probe_response(token, 200, body, mode="ready")
    except ProbeProtocolError as e:
        return (
            f"answered 200 with a probe response that cannot be checked ({e.reason}), so every"
            " request would be an error; a probe response has the form docs/architecture.md"
            f" describes ('The probe protocol'), which the probe writes: {INSTALL_PROBE}"
        )
    return "ready"


def why_not_answered(
    response: http.client.HTTPResponse, path: str = PROBE_PATH, log_path: Path | None = None
) -> str:
    """Why a probe request for ``path`` got ``response`` (not a 200) instead of the probe's
    answer, and what the user can do about it; ``log_path`` is the server's log, when
    ctxbench started the server."""
    status = str(response.status)
    location = response.getheader("Location")
    if location:
        status += f" (a redirect to {printable(location)})"
    stopped = response.getheader(STOPPED_HEADER)
    stopped = None if stopped is None else printable(stopped)
    if stopped is None and response.status >= 500:
        # The server's own error page: something raised before the probe could answer (a
        # middleware in front of it that calls observe(), which belongs in the app's hooks).
        log = "the server's log" + (f" {_TAIL_BELOW}" if log_path is not None else "")
        return (
            f"answered {status}, and not from the probe: the app, or a middleware in front of"
            f" the probe, raised an error before the probe answered; its traceback is in {log}"
        )
    if stopped is None:
        return (
            f"answered {status}, and not from the probe: ctxbench requests {path}; mount the"
            " probe on the app that serves it (harness.probe.install_probe(app)), and if the"
            " app is served under a path prefix (a dispatcher, an nginx location, SCRIPT_NAME),"
            " name it (--mount /api; --target http://127.0.0.1:PORT/api)"
        )
    if stopped.startswith("none "):
        return (
            f"answered {status} from {stopped[5:]}, which is no core or Flask app, and ctxbench"
            " found none behind it (a middleware's .app or .application, a dispatcher's"
            " .mounts): its probe mounts into those two frameworks only and has none yet for"
            " others (Django, Falcon, Bottle, Pyramid, a plain WSGI callable), so nothing of this"
            " app can be checked; a core or Flask app hidden in a closure takes"
            " install_probe(app) in its own module; see the README, 'Apps of other frameworks'"
        )
    if stopped.startswith("front "):
        return (
            f"answered {status} from {stopped[6:]}, the middleware in front of the app the probe"
            " is on: it turned the probe request away before the app saw it, so nothing could"
            f" be checked; let requests for {path} through it while harness.probe.probe_enabled()"
            " is true (CTXBENCH_PROBE=1, set by ctxbench, never in production)"
        )
    where = {
        "entry": "the framework or a middleware inside its wsgi_app",
        "before_request": "one of its before_request hooks (an auth check, a login redirect, a"
        " rate limit?)",
    }.get(stopped, f"its {stopped} phase")
    if stopped == "routing":
        return (
            f"answered {status} from the app itself: its URL map did not route {PROBE_PATH} to"
            " the probe for a request to 127.0.0.1 (SERVER_NAME with subdomain_matching or"
            " host_matching on? a rule or converter that takes the path?), so nothing could be"
            " checked; check the app with a configuration that serves any host (no SERVER_NAME)"
        )
    return (
        f"answered {status} from the app itself: {where} stopped the probe request before the"
        " probe's view ran, so nothing could be checked; let probe requests through (return"
        " early, or act as a test user, when harness.probe.current_token() is not None; see the"
        " README, 'Auth hooks and middleware')"
    )


def _in_group(worker: object, group: int) -> bool:
    pid = worker.get("pid") if isinstance(worker, dict) else None
    if not isinstance(pid, int):
        return False
    try:
        return os.getpgid(pid) == group
    except OSError:  # no such process here: not one of ours
        return False


#: Seconds a server has to answer its first probe request, its app's import included, unless
#: :data:`START_TIMEOUT_ENV` says otherwise.
DEFAULT_START_TIMEOUT_S = 30.0
#: The environment variable that gives a slow-starting app more time (or a fast one less).
START_TIMEOUT_ENV = "CTXBENCH_START_TIMEOUT"
_MAX_START_TIMEOUT_S = 3600.0


def start_timeout() -> float:
    """The seconds of :data:`START_TIMEOUT_ENV`, or :data:`DEFAULT_START_TIMEOUT_S` when unset;
    raise :class:`UsageError` when it is not a number of seconds above 0 and at most an hour."""
    raw = os.environ.get(START_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_START_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= _MAX_START_TIMEOUT_S:  # False for nan
        raise UsageError(
            f"{START_TIMEOUT_ENV}={raw!r} is not a number of seconds above 0 and at most"
            f" {_MAX_START_TIMEOUT_S:g}: it is how long a server has to answer its first probe"
            f" request, its app's import included (default {DEFAULT_START_TIMEOUT_S:g})"
        )
    return value


def wait_ready(
    process: subprocess.Popen[bytes],
    *,
    name: str,
    app: str,
    host: str,
    port: int,
    log_path: Path,
    state_dir: Path,
    ready_timeout: float,
    group: int | None = None,
    mount: str | None = None,
) -> None:
    """Poll a probe request until the server ``name`` answers it, within ``ready_timeout`` s.

    ``mount`` is the path prefix the app is served under (:func:`harness.protocol.probe_path`).

    ``group`` is the process group that must answer (see :meth:`ServerMode.answering_group`);
    an answer from any other process does not count as ready.

    Raises :class:`AppLoadError` (the app failed to import, or answers but is not a probe app),
    :class:`PortRaceLost` (the server exited because the port was taken) or
    :class:`ServerStartError` (it exited, or missed the deadline; ``detail`` is the log tail).
    """
    deadline = time.monotonic() + ready_timeout
    path = probe_path(mount)
    attempt = 0
    while True:
        app_error = state_dir / "app-error.txt"
        if app_error.exists():
            message = app_error.read_text(encoding="utf-8").strip()
            raise AppLoadError(f"{name}: {message}")
        returncode = process.poll()
        if returncode is not None:
            tail = log_tail(log_path)
            if "Address already in use" in tail:
                raise PortRaceLost
            raise ServerStartError(
                f"{name} exited with status {returncode} during start-up (log: {log_path})",
                detail=tail,
            )
        attempt += 1
        token = f"ctxbench-ready-{attempt}"
        outcome = _probe_once(
            host, port, token, timeout=2.0, group=group, path=path, log_path=log_path
        )
        if outcome == "ready":
            return
        if outcome is not None:
            detail = ""
            if outcome.endswith(_TAIL_BELOW):
                # The run folder that holds the log goes when no cell finished. A server may
                # log the traceback after it sent the 500 (werkzeug's dev server does).
                detail = poll_until(
                    lambda: log_tail(log_path), lambda tail: "Traceback" in tail,
                    time.monotonic() + 2.0,
                )  # fmt: skip
            raise AppLoadError(f"{name}: app {app!r} is up but GET {path} {outcome}", detail=detail)
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"{name} did not answer a probe request within {ready_timeout:g} s"
                f" (log: {log_path}); an app that takes longer to start can be given more time"
                f" with {START_TIMEOUT_ENV}=SECONDS",
                detail=log_tail(log_path),
            )
        time.sleep(0.05)  # poll interval, not a synchronisation


# -- state files -----------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, t.Any]:
    """The JSON object in ``path``, or ``{}`` if it is missing or unreadable."""
    try:
        rv: dict[str, t.Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return rv


def wait_states(state_dir: Path, expected: int, deadline: float) -> list[dict[str, t.Any]]:
    """Collect the per-process state files (see :mod:`harness.servers._state`); wait, until
    ``deadline`` at most, for ``expected`` of them."""
    return poll_until(lambda: _read_states(state_dir), lambda s: len(s) >= expected, deadline)


def _read_states(state_dir: Path) -> list[dict[str, t.Any]]:
    states = []
    for path in sorted(state_dir.glob("worker-*.json")):
        with contextlib.suppress(OSError, ValueError):
            states.append(json.loads(path.read_text(encoding="utf-8")))
    return states
