"""Flask apps deployed under path prefixes, as werkzeug's ``DispatcherMiddleware`` mounts them.

- ``dispatcher``: a root app at ``/``, a leaking app at ``/api`` and an isolated one at
  ``/admin``. The ``/api`` app keeps the request's user in one dict for the whole process (a
  cache of "the current user"), so a concurrent request overwrites it while the view sleeps:
  wherever requests overlap in a process, ``observe("current_user")`` must catch it. The
  ``/admin`` app keeps it in ``flask.g``. Which of the two a run checks depends only on
  ``--mount``; without it, the run must stop (the root app is not the one to check).
- ``leaky``: the ``/api`` app alone, for ``--mount /api`` on an app that is no dispatcher
  (ctxbench serves it under the prefix, as uWSGI's ``--mount`` does).

The probe is not installed here: ``harness.wsgi`` mounts it on the app under ``--mount``.
"""

from __future__ import annotations

import typing as t

from flask import Flask, g
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from harness.probe import current_token, observe

NAME = "current_user"


def _leaky() -> Flask:
    app = Flask("ctxbench_mounted_api")
    current: dict[str, str | None] = {}  # one for the process: shared by every thread

    @app.before_request
    def remember() -> None:
        current["user"] = current_token()

    @app.after_request
    def check(response: t.Any) -> t.Any:
        observe(NAME, current.get("user"))
        return response

    return app


def _isolated() -> Flask:
    app = Flask("ctxbench_mounted_admin")

    @app.before_request
    def remember() -> None:
        g.user = current_token()

    @app.after_request
    def check(response: t.Any) -> t.Any:
        observe(NAME, g.user)
        return response

    return app


leaky = _leaky()
dispatcher = DispatcherMiddleware(
    Flask("ctxbench_mounted_root"), {"/api": _leaky(), "/admin": _isolated()}
)
