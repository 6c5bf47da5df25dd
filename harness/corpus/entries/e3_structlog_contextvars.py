"""Entry 3: structlog contextvars bound and never cleared.

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

from harness.expectations import LeakTraits
from harness.probe import current_token, observe

from ._common import entry, flask_twins

if t.TYPE_CHECKING:
    from flask import Flask

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


def _build(app: Flask, *, fixed: bool) -> None:
    import structlog

    log = _logger()

    @app.before_request
    def bind_user() -> None:
        if fixed:
            structlog.contextvars.clear_contextvars()
        log.info("request started")  # not cleared first: the last request's user (the bug)
        structlog.contextvars.bind_contextvars(user=current_token())

    @app.after_request
    def log_finished(response: t.Any) -> t.Any:
        log.info("request finished")
        return response


__getattr__ = flask_twins(__name__, _build)

ENTRY = entry(
    __name__,
    source="structlog docs: clear_contextvars() at the start of each request",
    traits=LeakTraits(scope="context", resets=False),
    shows_through=frozenset({STARTED}),
    fix="structlog.contextvars.clear_contextvars() first in every request",
)
