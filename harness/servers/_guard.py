"""Run a server so that its whole process group dies with the harness.

Usage (as the server's command line; see :func:`guarded`)::

    python -I harness/servers/_guard.py -- nginx -e stderr -p DIR -c DIR/nginx.conf

Design note: the harness starts every server as the leader of its own process group with
``PR_SET_PDEATHSIG`` (SIGKILL), so the kernel kills it when the harness dies, even by
``kill -9``. That setting is not inherited across ``fork``: a server whose master forks workers
the harness cannot hook (nginx: its workers keep serving after the master is killed) would leave
them running. This guard stands between the two. It leads the group, asks the kernel for a
catchable signal when the harness dies, runs the server as its child in the same group, and on
that signal SIGKILLs the whole group, itself included. Stop signals sent to the group reach the
server directly; the guard only waits for the server and exits with its status (128 + N when a
signal N ended it), so the harness sees the server's own exit.

Runs as a script, not as ``-m harness.servers._guard``: importing the package would import every
server mode; this file imports nothing but the stdlib.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["PARENT_DIED", "guarded", "main"]

_PR_SET_PDEATHSIG = 1
#: What the kernel sends the guard when the harness dies; the guard then kills the group.
PARENT_DIED = signal.SIGUSR1
#: Signals sent to the whole group to stop the server: the server handles them, the guard waits.
_GROUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP)


def guarded(argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` under this guard."""
    return [sys.executable, "-I", str(Path(__file__).resolve()), "--", *argv]


def _kill_group(signum: int, frame: object) -> None:
    os.killpg(0, signal.SIGKILL)


def _ignore(signum: int, frame: object) -> None:
    # A Python handler, not SIG_IGN: the server started below must not inherit an ignored signal.
    pass


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: _guard.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    signal.signal(PARENT_DIED, _kill_group)
    for sig in _GROUP_SIGNALS:
        signal.signal(sig, _ignore)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, PARENT_DIED)
    if os.getppid() != parent:  # the harness died before prctl took effect
        return 1
    try:
        server = subprocess.Popen(argv)
    except OSError as e:
        print(f"cannot start {argv[0]!r}: {e.strerror}", file=sys.stderr)
        return 127
    returncode = server.wait()
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
