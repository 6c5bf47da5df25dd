"""Server-side half of the effective-configuration report (stdlib only).

Runs inside the server processes: each serving process writes one small JSON file into
``CTXBENCH_STATE_DIR`` once it is ready to serve, saying what really runs there (pid, worker
class, threads, the app and storage that :mod:`harness.wsgi` loaded). The harness reads the files
back in :func:`harness.servers.base.start_server`. Writing never raises: a missing report is
recorded as missing, it never takes a server down.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import typing as t
from pathlib import Path

__all__ = ["loaded_app_info", "write_state"]


def loaded_app_info() -> dict[str, t.Any]:
    """What :mod:`harness.wsgi` loaded in this process, plus the interpreter."""
    wsgi = sys.modules.get("harness.wsgi")
    info: dict[str, t.Any] = dict(getattr(wsgi, "LOADED", {}))
    info["pid"] = os.getpid()
    info["python"] = platform.python_version()
    return info


def write_state(name: str, data: dict[str, t.Any]) -> None:
    """Atomically write ``CTXBENCH_STATE_DIR/<name>.json``; do nothing without the variable."""
    state_dir = os.environ.get("CTXBENCH_STATE_DIR")
    if not state_dir:
        return
    path = Path(state_dir, f"{name}.json")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError, TypeError, ValueError):
        tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
        os.replace(tmp, path)
