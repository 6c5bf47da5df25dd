"""What entry modules share: building apps on first access, and the ContextVar fix.

``__getattr__ = lazy_apps(buggy=..., fixed=...)`` builds each app on first access;
:func:`keep_user_in_contextvar` is the fixed twin of every entry whose bug is per-request state
in something shared (a thread-local, the event loop).
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from contextvars import ContextVar

from harness.probe import current_token, observe

if t.TYPE_CHECKING:
    from flask import Flask


def lazy_apps(**builders: Callable[[], t.Any]) -> Callable[[str], t.Any]:
    """A module ``__getattr__`` that builds each named app once, when it is first looked up."""
    built: dict[str, t.Any] = {}

    def __getattr__(name: str) -> t.Any:
        if name not in builders:
            raise AttributeError(name)
        if name not in built:
            built[name] = builders[name]()
        return built[name]

    return __getattr__


def keep_user_in_contextvar(app: Flask, name: str) -> None:
    """Keep the request's user in a ``ContextVar``, set at the start and reset by token at the
    end, and report it as ``name`` after the view (a Flask app)."""
    from flask import g

    user: ContextVar[str | None] = ContextVar(f"corpus.{name}", default=None)

    @app.before_request
    def remember_user() -> None:
        g.corpus_user_reset = user.set(current_token())

    @app.after_request
    def report_user(response: t.Any) -> t.Any:
        observe(name, user.get())
        return response

    @app.teardown_request
    def forget_user(exc: BaseException | None) -> None:
        token = g.pop("corpus_user_reset", None)
        if token is not None:
            user.reset(token)
