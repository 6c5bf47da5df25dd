"""Entry 2: an app context pushed at import.

``app.app_context().push()`` in module code (common in scripts and ``init_db`` helpers) leaves
that context current in the importing thread. Flask 3.1's ``RequestContext.push`` reuses an
active app context of the same app instead of pushing a fresh one, so every request served on
the importing thread (gunicorn sync's main thread) runs in it: ``g`` carries over from request
to request and ``teardown_appcontext`` never runs. Fixed twin: ``with app.app_context():``.
"""

from __future__ import annotations

import typing as t

from harness.corpus import Entry, Variant
from harness.expectations import LeakTraits

from ._lazy import lazy_apps


def _make(name: str) -> t.Any:
    from flask import Flask

    app = Flask(name)
    app.config["SECRET_KEY"] = "ctxbench-corpus-not-a-secret"
    return app


def _init_db() -> None:
    from flask import g

    g.schema_ready = True  # what an init_db() helper does with the app context


def _buggy() -> t.Any:
    app = _make("corpus_app_context_at_import")
    app.app_context().push()  # the bug: never popped
    _init_db()
    return app


def _fixed() -> t.Any:
    app = _make("corpus_app_context_at_import_fixed")
    with app.app_context():
        _init_db()
    return app


__getattr__ = lazy_apps(buggy=_buggy, fixed=_fixed)

ENTRIES = (
    Entry(
        key="app-context-at-import",
        number="2",
        title="An app context pushed at import",
        source="Flask 3.1 RequestContext.push reuses an active app context",
        buggy=Variant(f"{__name__}:buggy"),
        fixed=Variant(f"{__name__}:fixed"),
        traits=LeakTraits(scope="import-context", resets=False),
        shows_through=frozenset({"residue.app_context", "residue.g", "g", "skipped"}),
        fix="with app.app_context(): around the import-time work",
        requires=("flask",),
    ),
)
