"""The bundled probe app on ``flask.Flask``, the reference the core is compared with.

The same routes as :mod:`harness.apps.core_app`. This is the only bundled module that imports
flask.
"""

from __future__ import annotations

from flask import Flask, g, session

from harness.probe import install_probe

app = Flask("ctxbench_flask_app")
# A fixed key: the session only carries test tokens, and every worker must sign alike.
app.config["SECRET_KEY"] = "ctxbench-not-a-secret"


@app.before_request
def remember_visit() -> None:
    g.setdefault("visits", session.get("visits", 0) + 1)


@app.route("/")
def index() -> dict[str, object]:
    return {"app": app.name, "visits": g.get("visits")}


@app.route("/hello/<name>")
def hello(name: str) -> str:
    return f"Hello, {name}!"


install_probe(app)
