"""Entry 3: structlog context variables bound and never cleared.

``structlog.contextvars.bind_contextvars(user=...)`` stores each key in a ``ContextVar`` of the
thread or greenlet; nothing unbinds it when the request ends. The app logs "request started"
before it binds this request's user, so that line carries whatever the previous request served
by the same thread or greenlet bound: the wrong user in the log, wherever a thread or greenlet
serves a later request. structlog's documentation says to call ``clear_contextvars()`` at the
start of each request; the fixed twin does.
"""

from __future__ import annotations

import typing as t
from collections.abc import MutableMapping

from harness.corpus import Entry, Variant
from harness.expectations import LeakTraits
from harness.probe import current_token, observe

from ._lazy import lazy_apps

#: What the "request started" line says the user is: nothing may be bound yet.
STARTED = "residue.log_user"
#: What the "request finished" line says: this request's user.
FINISHED = "log_user"


def _logger() -> t.Any:
    import structlog

    def to_probe(logger: t.Any, method: str, event_dict: MutableMapping[str, t.Any]) -> t.Any:
        # Report what each line would carry, then drop it: the server log stays quiet.
        name = STARTED if event_dict["event"] == "request started" else FINISHED
        observe(name, event_dict.get("user"))
        raise structlog.DropEvent

    return structlog.wrap_logger(
        None, processors=[structlog.contextvars.merge_contextvars, to_probe]
    )


def _make(name: str, *, clear_first: bool) -> t.Any:
    import structlog
    from flask import Flask

    app = Flask(name)
    log = _logger()

    @app.before_request
    def bind_user() -> None:
        if clear_first:
            structlog.contextvars.clear_contextvars()
        log.info("request started")
        structlog.contextvars.bind_contextvars(user=current_token())

    @app.after_request
    def log_finished(response: t.Any) -> t.Any:
        log.info("request finished")
        return response

    return app


__getattr__ = lazy_apps(
    buggy=lambda: _make("corpus_structlog_contextvars", clear_first=False),
    fixed=lambda: _make("corpus_structlog_contextvars_fixed", clear_first=True),
)

ENTRIES = (
    Entry(
        key="structlog-contextvars",
        number="3",
        title="structlog contextvars bound and never cleared",
        source="structlog docs: clear_contextvars() at the start of each request",
        buggy=Variant(f"{__name__}:buggy"),
        fixed=Variant(f"{__name__}:fixed"),
        traits=LeakTraits(scope="context", resets=False),
        shows_through=frozenset({STARTED}),
        fix="structlog.contextvars.clear_contextvars() first in every request",
        requires=("flask", "structlog"),
    ),
)
