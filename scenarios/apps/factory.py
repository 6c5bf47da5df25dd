"""An application factory, the way most Flask projects build their app (the Flask tutorial's
``create_app()``), for ``--app 'scenarios.apps.factory:create_app()'``.

``create_app(name, leaky=False)`` builds a plain Flask app named ``name`` and does not install
the probe: ``harness.wsgi`` mounts it on what the factory returns, in each server process that
calls the factory. The app keeps the current user, set in ``before_request`` and reported with
``observe("factory_user", ...)`` in ``after_request``, after the probe view has slept:

- by default in ``flask.g``, which is per request: isolated everywhere;
- with ``leaky=True`` in a module-level dict, the mistake a factory makes when it closes over
  state that outlives the request: every thread and greenlet of the process shares the dict, so
  a concurrent request overwrites the user while this one sleeps, and ``observe`` catches it
  wherever requests overlap in a process.
"""

from __future__ import annotations

import typing as t

from flask import Flask, g

from harness.probe import current_token, observe

NAME = "factory_user"

#: The leaky app's "current user": one for the whole process.
_current: dict[str, str | None] = {}


def create_app(name: str = "ctxbench_factory_app", *, leaky: bool = False) -> Flask:
    """Build the app; ``leaky`` keeps the current user in a module-level dict."""
    app = Flask(name)
    app.config["SECRET_KEY"] = "ctxbench-not-a-secret"

    @app.before_request
    def remember_user() -> None:
        if leaky:
            _current["user"] = current_token()
        else:
            g.user = current_token()

    @app.after_request
    def report_user(response: t.Any) -> t.Any:
        observe(NAME, _current.get("user") if leaky else g.get("user"))
        return response

    return app
