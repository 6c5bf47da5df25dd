"""The context-bound proxies: ``current_app``, ``g``, ``request``, ``session``.

Each proxy is a werkzeug ``LocalProxy`` (with a faster attribute path) over a small getter that
reads the *active* storage slot (``core.storage.app_slot`` / ``request_slot``) at call time, so
swapping the storage at start-up also redirects the proxies. Outside a context the getters raise
``RuntimeError`` saying what happened, why, and how to fix it.
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


class _ContextProxy(LocalProxy[t.Any]):
    """A ``LocalProxy`` that looks public attributes up on the proxied object directly.

    ``LocalProxy`` reaches the object through ``__getattr__``, which Python calls only after a
    failed lookup on the proxy itself (an ``AttributeError`` raised and caught on every
    ``request.args``). Skipping that for public names makes an attribute read about three times
    cheaper; names starting with ``_`` (``_get_current_object``, ``__class__``, ``__doc__``...)
    keep ``LocalProxy``'s own handling, including its fallbacks when no context is active.
    """

    __slots__ = ()

    def __getattribute__(self, name: str) -> t.Any:
        if name[0] == "_":
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_get_current_object")(), name)

    def __setattr__(self, name: str, value: t.Any) -> None:
        setattr(object.__getattribute__(self, "_get_current_object")(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_get_current_object")(), name)


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


current_app: App = _ContextProxy(_get_current_app)  # type: ignore[assignment]
g: _AppCtxGlobals = _ContextProxy(_get_g)  # type: ignore[assignment]
request: Request = _ContextProxy(_get_request)  # type: ignore[assignment]
session: SecureCookieSession = _ContextProxy(_get_session)  # type: ignore[assignment]
