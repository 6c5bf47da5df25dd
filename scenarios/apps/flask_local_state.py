"""The Flask twin of ``thread_local_app``: a plain Flask app with an OS-thread-local.

The harness must catch a user's own Flask app leaking, not only our core: under gunicorn's
gevent worker every greenlet shares this thread-local, and ``observe`` reports it.
"""

from __future__ import annotations

from flask import Flask

from harness.probe import install_probe
from scenarios.apps.local_state import keep_in_thread_local

app = Flask("ctxbench_flask_thread_local_app")
app.config["SECRET_KEY"] = "ctxbench-not-a-secret"
keep_in_thread_local(app)
install_probe(app)
