"""The bundled probe app on ``core.App``: what every server mode loads by default.

The same routes as :mod:`harness.apps.flask_app`: a secret key (so the probe also checks the
session), two ordinary routes and the probe.
"""

from __future__ import annotations

from core import App, g, session
from harness.probe import install_probe

app = App("ctxbench_core_app")
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
