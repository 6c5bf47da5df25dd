"""Entry 1: ``threading.local`` created before gevent's monkey-patching.

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

from harness.expectations import LeakTraits

from ._common import entry, flask_twins, keep_user_in_contextvar, keep_user_on

if t.TYPE_CHECKING:
    from flask import Flask

NAME = "current_user"


def _build(app: Flask, *, fixed: bool) -> None:
    if fixed:
        keep_user_in_contextvar(app, NAME)
    else:
        # The bug: created when the app is imported, which --preload does before the patch.
        local = threading.local()
        keep_user_on(app, NAME, lambda: local)


__getattr__ = flask_twins(__name__, _build)

ENTRY = entry(
    __name__,
    source="gunicorn #927, #1056; uWSGI #701; Pyramid #1125",
    traits=LeakTraits(scope="thread-local", resets=True),
    shows_through=frozenset({NAME}),
    fix="a ContextVar (or create the local after the patch)",
    preload=True,
)
