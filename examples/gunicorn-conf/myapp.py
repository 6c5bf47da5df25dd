"""A small Flask app with per-request state of its own, and the ctxbench probe mounted."""

from __future__ import annotations

from contextvars import ContextVar

from flask import Flask, g

from harness.probe import current_token, install_probe, observe

app = Flask(__name__)
_request_user: ContextVar[str | None] = ContextVar("request_user", default=None)


@app.before_request
def load_user() -> None:
    # Whatever your app keeps per request: here, the probe's token stands in for the user.
    g.user = current_token()
    _request_user.set(current_token())


@app.after_request
def check_user(response):  # type: ignore[no-untyped-def]
    if current_token() is not None:  # only probe requests carry a token to compare against
        observe("request_user", _request_user.get())
    return response


@app.get("/")
def index() -> str:
    return "hello"


install_probe(app)  # mounts nothing unless CTXBENCH_PROBE=1
