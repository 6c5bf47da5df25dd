"""Entry 2: An app context pushed at import.

``app.app_context().push()`` in module code (common in scripts and ``init_db`` helpers) leaves
that context current in the importing thread. Flask 3.1's ``RequestContext.push`` reuses an
active app context of the same app instead of pushing a fresh one, so every request served on
the importing thread (gunicorn sync's main thread) runs in it: ``g`` carries over from request
to request and ``teardown_appcontext`` never runs. Fixed twin: ``with app.app_context():``.
"""

from __future__ import annotations

import typing as t

from harness.expectations import LeakTraits

from ._common import APP_CONTEXT_RESIDUE, entry, flask_twins

if t.TYPE_CHECKING:
    from flask import Flask


def _init_db() -> None:
    from flask import g

    g.schema_ready = True  # what an init_db() helper does with the app context


def _build(app: Flask, *, fixed: bool) -> None:
    if fixed:
        with app.app_context():
            _init_db()
    else:
        app.app_context().push()  # the bug: never popped
        _init_db()


__getattr__ = flask_twins(__name__, _build, session=True)

ENTRY = entry(
    __name__,
    source="Flask 3.1 RequestContext.push reuses an active app context",
    traits=LeakTraits(scope="import-context", resets=False),
    shows_through=APP_CONTEXT_RESIDUE,
    fix="with app.app_context(): around the import-time work",
)
