"""An app that lets the server come up, then fails every probe request, for ``--app
'scenarios.apps.failing:create_app(...)'``.

The first ``allow`` requests of each server process are answered by the probe (the readiness
check passes); every later one fails:

- ``fail="reset"`` (the default): the app closes the client's connection before any response
  (``SO_LINGER`` 0, then a shutdown), so the load driver sees a reset at the transport;
- ``fail="raise"``: a ``before_request`` hook raises, and the framework answers 500.

Either way no later request reaches the probe's view, so nothing is checked: ``ctxbench`` must
never give a "no leak" verdict on such a cell. The connection is reached through the server's
environ key (``werkzeug.socket`` of the dev server, ``gunicorn.socket``).
"""

from __future__ import annotations

import socket
import struct
import typing as t

from flask import Flask, request

SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


class Failed(Exception):
    """What the ``raise`` variant raises."""


def create_app(fail: str = "reset", *, allow: int = 1) -> Flask:
    """Build the app; see the module docstring for ``fail`` and ``allow``."""
    if fail not in ("reset", "raise"):
        raise ValueError(f"fail={fail!r}: choose 'reset' or 'raise'")
    app = Flask("ctxbench_failing")
    served = [0]  # this process's requests

    @app.before_request
    def fail_after_allow() -> t.Any:
        served[0] += 1
        if served[0] <= allow:
            return None
        if fail == "raise":
            raise Failed("every probe request after the first fails here")
        sock = next((request.environ[k] for k in SOCKET_KEYS if k in request.environ), None)
        if sock is None:
            raise RuntimeError(f"no connection in the environ (looked for {SOCKET_KEYS})")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        return "", 204

    return app
