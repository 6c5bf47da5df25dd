"""The echo probe: nginx answering valid probe responses from C, to measure the driver itself.

Design note: the echo probe is the fastest server the load driver can face. One nginx worker
process (plus its master and a guard, in their own process group) answers every
``GET /_ctxbench/probe?token=T`` with ``return 200`` and a body in the probe protocol's shape
(``docs/architecture.md``, "The probe protocol"): the same 19 observations as the bundled core
app, from every phase, each echoing ``T`` (or null for ``residue.*``, or the app name for
``current_app``), and a worker identity of nginx's pid. There is no Python, no framework and no
request state on the server side, so nothing can leak and the verdict passes on every response;
what the driver reaches against it is its own ceiling, the most it can check per second.

It is a measuring instrument, not a server mode: it is not in :data:`harness.servers.MODES` and
tests isolation of nothing. ``benchmarks/driver_vs_wrk.py`` runs it against the driver and wrk,
and the driver-bound flag is tested against it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ServerStartError
from harness.owner import TEMPDIR_PREFIX, owned_tempdir
from harness.protocol import PROBE_PATH
from harness.servers._guard import guarded
from harness.servers._process import (
    HOST,
    free_port,
    spawn,
    stop_group,
    wait_ready,
)
from harness.servers.nginx import (
    CONFIG_NAME,
    INSTALL_STEP,
    find_nginx,
    nginx_command,
    nginx_config,
)

__all__ = ["ECHO_APP", "EchoProbe", "echo_body_template", "echo_probe"]

#: The app name the echo probe reports (``app`` and every ``current_app`` observation).
ECHO_APP = "ctxbench_echo"

# The observations of the bundled core app, in its order: (phase, name, what "seen" holds).
_OBS: tuple[tuple[str, str, str], ...] = (
    ("entry", "residue.request_context", "null"),
    ("entry", "residue.app_context", "null"),
    ("before_request", "residue.g", "null"),
    ("before_request", "residue.session", "null"),
    ("before_request", "request", "token"),
    ("before_request", "current_app", "app"),
    ("view", "request", "token"),
    ("view", "g", "token"),
    ("view", "session", "token"),
    ("view", "current_app", "app"),
    ("after_request", "request", "token"),
    ("after_request", "g", "token"),
    ("after_request", "session", "token"),
    ("after_request", "current_app", "app"),
    ("teardown_request", "request", "token"),
    ("teardown_request", "g", "token"),
    ("teardown_request", "current_app", "app"),
    ("teardown_appcontext", "g", "token"),
    ("teardown_appcontext", "current_app", "app"),
)


def echo_body_template(token: str = "$arg_token", pid: str = "$pid", *, app: str = ECHO_APP) -> str:
    """The probe response body with ``token`` and ``pid`` substituted (nginx variables by
    default; tests pass real values to check the body against the verdict)."""
    seen = {"null": "null", "token": f'"{token}"', "app": f'"{app}"'}
    obs = ",".join(f'["{phase}","{name}",{seen[kind]}]' for phase, name, kind in _OBS)
    return (
        f'{{"token":"{token}","app":"{app}",'
        f'"worker":{{"pid":{pid},"thread":{pid},"greenlet":null}},"obs":[{obs}]}}'
    )


def _config(root: Path, port: int, workers: int, every_shape_new: bool) -> str:
    # An app name that holds the token makes every response a new shape for the driver's
    # ProbeChecker (a string that merely contains the token is not blanked), so every response
    # takes the full check: the driver's slowest clean path.
    app = f"{ECHO_APP}-$arg_token" if every_shape_new else ECHO_APP
    http = f"""\
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen {HOST}:{port} reuseport;
        location = {PROBE_PATH} {{
            default_type application/json;
            return 200 '{echo_body_template(app=app)}';
        }}
        location / {{ return 404; }}
    }}
"""
    return nginx_config(
        root, http, title="the echo probe", worker_processes=workers, worker_connections=4096,
        error_log="warn",
    )  # fmt: skip


@dataclass(frozen=True)
class EchoProbe:
    """A running echo probe: where it listens and the process group that serves it."""

    host: str
    port: int
    #: The pid that leads the process group of nginx's master and workers (a guard process
    #: that kills the group when the harness dies).
    pid: int
    argv: tuple[str, ...]


@contextlib.contextmanager
def echo_probe(
    *,
    prefix: Sequence[str] = (),
    workers: int = 1,
    every_shape_new: bool = False,
    ready_timeout: float = 10.0,
) -> Iterator[EchoProbe]:
    """Run nginx as an echo probe on a free loopback port for the block.

    ``prefix`` is a command nginx runs under (``("taskset", "-c", "0")`` pins it to core 0);
    ``workers`` is nginx's ``worker_processes``. ``every_shape_new`` names the app after each
    request's token (``ctxbench_echo-<token>``), so no two responses have the same shape and
    the driver checks every one in full (see :class:`harness.verdict.ProbeChecker`). Raises
    :class:`ServerStartError` when nginx is missing or does not answer a probe request within
    ``ready_timeout`` seconds.
    """
    nginx = find_nginx()
    if nginx is None:
        raise ServerStartError(
            f"the echo probe needs nginx, which is not installed.\n\nInstall it ({INSTALL_STEP})"
            " and run again."
        )
    root = owned_tempdir(f"{TEMPDIR_PREFIX}echo-")  # swept by a later start if this one is killed
    try:
        root.chmod(0o755)  # started as root, nginx's workers run as nobody
        port = free_port()
        (root / CONFIG_NAME).write_text(
            _config(root, port, workers, every_shape_new), encoding="utf-8"
        )
        argv = [*prefix, *nginx_command(nginx, root)]
        log_path = root / "nginx.log"
        # Under the guard: nginx's workers outlive a master killed outright, the guard takes
        # the whole group down with the harness.
        process = spawn(guarded(argv), env={}, log_path=log_path)
        try:
            wait_ready(
                process,
                name="echo probe (nginx)",
                app=ECHO_APP,
                host=HOST,
                port=port,
                log_path=log_path,
                state_dir=root,
                ready_timeout=ready_timeout,
            )
            yield EchoProbe(HOST, port, process.pid, tuple(argv))
        finally:
            stop_group(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
