"""Server-side half of the effective-configuration report (stdlib only at import time).

Runs inside the server processes: each serving process writes one small JSON file into
``CTXBENCH_STATE_DIR`` once it is ready to serve, saying what really runs there (pid, worker
class, threads, the app and storage that :mod:`harness.wsgi` loaded). The harness reads the files
back while :func:`harness.servers.base.start_server` waits for the server to come up
(:func:`harness.servers._process.wait_states`). Writing never raises: a missing report is
recorded as missing, it never takes a server down.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import signal
import sys
import typing as t
from pathlib import Path

from harness.protocol import STATE_DIR_ENV

__all__ = ["die_with_parent", "loaded_app_info", "write_state"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere a no-op).

    Safe between ``fork`` and ``exec`` (it only calls ``prctl``). ``parent`` is the pid of the
    process that forked this one, known before the fork: if it is no longer the parent (it died
    and this process was re-parented, before or while ``prctl`` took effect), exit at once.
    Without it, a parent that died before this call goes unnoticed.
    """
    if not sys.platform.startswith("linux"):
        return
    if parent is None:
        parent = os.getppid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def loaded_app_info() -> dict[str, t.Any]:
    """What :mod:`harness.wsgi` loaded in this process, plus the interpreter."""
    wsgi = sys.modules.get("harness.wsgi")
    info: dict[str, t.Any] = dict(getattr(wsgi, "LOADED", {}))
    info["pid"] = os.getpid()
    info["python"] = platform.python_version()
    return info


def write_state(name: str, data: dict[str, t.Any]) -> None:
    """Atomically write ``CTXBENCH_STATE_DIR/<name>.json``; do nothing without the variable."""
    state_dir = os.environ.get(STATE_DIR_ENV)
    if not state_dir:
        return
    # The results model imports the server registry, which imports this module: imported on
    # use to keep that cycle out of import time.
    from harness.results import write_atomic

    with contextlib.suppress(OSError, TypeError, ValueError):
        write_atomic(Path(state_dir, f"{name}.json"), json.dumps(data, default=str))
