"""The context-bound proxies: ``current_app``, ``g``, ``request``, ``session``.

Each proxy is a werkzeug ``LocalProxy`` over a small getter that reads the *active* storage slot
(``core.storage.app_slot`` / ``request_slot``) at call time, so swapping the storage at start-up
also redirects the proxies. Outside a context the getters raise ``RuntimeError`` saying what
happened, why, and how to fix it.
"""

from __future__ import annotations

import typing as t

from werkzeug.local import LocalProxy

from . import storage as _storage

if t.TYPE_CHECKING:
    from .app import App
    from .ctx import AppContext, RequestContext, _AppCtxGlobals
    from .sessions import SecureCookieSession
    from .wrappers import Request

__all__ = ["current_app", "g", "request", "session"]

_no_app_msg = """\
Working outside of application context.

This typically means that you attempted to use functionality that needed the current
application (current_app or g), but no app context is active in this thread, greenlet or task.

To solve this, push an app context around the code: 'with app.app_context(): ...'. Inside a
request, or in a function wrapped with copy_current_request_context(), one is already active.\
"""

_no_req_msg = """\
Working outside of request context.

This typically means that you attempted to use functionality that needed an active HTTP
request (request or session), but no request context is active in this thread, greenlet or
task, for example in a background thread, or in a generator that runs after the view returned.

To solve this, wrap the function with copy_current_request_context() before handing it to
another thread, wrap a streamed body with stream_with_context(), or, in tests, use
'with app.test_request_context(): ...'.\
"""


def _get_app_ctx() -> AppContext:
    ctx = _storage.app_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_app_msg)
    return t.cast("AppContext", ctx)


def _get_request_ctx() -> RequestContext:
    ctx = _storage.request_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_req_msg)
    return t.cast("RequestContext", ctx)


def _get_current_app() -> App:
    ctx = _storage.app_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_app_msg)
    return t.cast("App", ctx.app)


def _get_g() -> _AppCtxGlobals:
    ctx = _storage.app_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_app_msg)
    rv = ctx._g
    if rv is None:
        rv = ctx.g
    return t.cast("_AppCtxGlobals", rv)


def _get_request() -> Request:
    ctx = _storage.request_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_req_msg)
    return t.cast("Request", ctx.request)


def _get_session() -> SecureCookieSession:
    ctx = _storage.request_slot.get(None)
    if ctx is None:
        raise RuntimeError(_no_req_msg)
    rv = ctx._session
    if rv is None:
        rv = ctx.session
    return t.cast("SecureCookieSession", rv)


current_app: App = LocalProxy(_get_current_app)  # type: ignore[assignment]
g: _AppCtxGlobals = LocalProxy(_get_g)  # type: ignore[assignment]
request: Request = LocalProxy(_get_request)  # type: ignore[assignment]
session: SecureCookieSession = LocalProxy(_get_session)  # type: ignore[assignment]
