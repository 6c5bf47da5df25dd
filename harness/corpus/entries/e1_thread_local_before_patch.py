"""Entry 1: a ``threading.local`` created before gevent's monkey-patching.

An app keeps the current user in a module-level ``threading.local`` (an auth hook sets it,
later code reads it). Imported after ``monkey.patch_all()`` that local is greenlet-local; but an
app preloaded into a gevent server (gunicorn ``--preload``, uWSGI without ``--lazy-apps`` or
with ``--gevent-monkey-patch``, which patches after loading) creates it before the patch, as one
native local that every greenlet of a worker shares: a request that yields sees the user of the
request that ran meanwhile. Fixed twin: a ``ContextVar``, set per request and reset by token.
"""

from __future__ import annotations

import threading
import typing as t

from harness.corpus import Entry, Variant
from harness.expectations import LeakTraits
from harness.probe import current_token, observe

from ._lazy import keep_user_in_contextvar, lazy_apps

NAME = "current_user"


def _buggy() -> t.Any:
    from flask import Flask

    app = Flask("corpus_thread_local_before_patch")
    # Created when the app is imported: before the patch under --preload.
    local = threading.local()

    @app.before_request
    def authenticate() -> None:
        local.user = current_token()

    @app.after_request
    def audit(response: t.Any) -> t.Any:
        observe(NAME, getattr(local, "user", None))
        return response

    return app


def _fixed() -> t.Any:
    from flask import Flask

    app = Flask("corpus_thread_local_before_patch_fixed")
    keep_user_in_contextvar(app, NAME)
    return app


__getattr__ = lazy_apps(buggy=_buggy, fixed=_fixed)

ENTRIES = (
    Entry(
        key="thread-local-before-patch",
        number="1",
        title="threading.local created before gevent's monkey-patching",
        source="gunicorn #927, #1056; uWSGI #701; Pyramid #1125",
        buggy=Variant(f"{__name__}:buggy"),
        fixed=Variant(f"{__name__}:fixed"),
        traits=LeakTraits(scope="thread-local", resets=True),
        shows_through=frozenset({NAME}),
        fix="a ContextVar (or create the local after the patch)",
        requires=("flask",),
        preload=True,
    ),
)
