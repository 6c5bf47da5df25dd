"""An internal app as most are: an app factory, a blueprint, and a ``before_request`` hook that
turns away every request without a logged-in user, for ``--app
'scenarios.apps.auth_gate:create_app()'``.

The probe's own ``before_request`` hook runs first, then this app's gate answers in the probe's
place, so the probe's view never runs and nothing can be checked. ctxbench must say so, never
report a verdict on such requests:

- ``answer="401"`` (the default): a JSON 401 to every request without a user;
- ``answer="302"``: a redirect to ``/login``, as a login-required app does;
- ``answer="429"``: a rate limiter, which lets the first ``allow`` requests of each server
  process through (the readiness check passes) and answers 429 to every later one;
- ``exempt=True``: the gate lets probe requests through and acts for a test user (what the
  README tells users to do), so the app is checked like any other.
"""

from __future__ import annotations

import typing as t

from flask import Blueprint, Flask, g, jsonify, redirect, request, session, url_for

from harness.probe import current_token, observe

auth = Blueprint("auth", __name__)


@auth.route("/login")
def login() -> str:
    session["user"] = request.args.get("user", "alice")
    return "logged in"


def create_app(answer: str = "401", *, allow: int = 0, exempt: bool = False) -> Flask:
    """Build the gated app; see the module docstring for ``answer``, ``allow`` and ``exempt``."""
    app = Flask("ctxbench_auth_gate")
    app.config["SECRET_KEY"] = "ctxbench-not-a-secret"
    app.register_blueprint(auth)
    served = [0]  # this process's requests, for the rate limiter

    @app.before_request
    def require_login() -> t.Any:
        if answer == "429":
            served[0] += 1
            return ("slow down", 429) if served[0] > allow else None
        if exempt and current_token() is not None:
            g.user = current_token()  # a probe request: act as a test user
            return None
        if request.endpoint == "auth.login":
            return None
        user = session.get("user")
        if user is None:
            if answer == "302":
                return redirect(url_for("auth.login"))
            return jsonify(error="login required"), 401
        g.user = user
        return None

    @app.after_request
    def report_user(response: t.Any) -> t.Any:
        if current_token() is not None and "user" in g:
            observe("auth_user", g.user)
        return response

    return app
