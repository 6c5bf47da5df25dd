"""Helpers for views: ``abort``, ``url_for``, ``jsonify``, and the two context carriers.

Design note on the carriers: a request context is active only in the thread, greenlet or task
that pushed it, and only until ``wsgi_app`` pops it, which happens *before* the server iterates
a streamed body.

* :func:`stream_with_context` keeps the request alive for a streamed body: it pushes the same
  request context (same ``request``, ``session`` and ``g``) around every step of the body, in
  whatever thread or greenlet the server iterates it, and pops it again before handing the chunk
  to the server. Teardown is deferred until the body finishes, fails or is closed.
* :func:`copy_current_request_context` gives a function a *copy* of the request context, pushed
  and popped around each call in the thread or greenlet that runs it. Nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import json
import typing as t
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime

from werkzeug.exceptions import abort as _abort
from werkzeug.http import http_date

from . import storage as _storage
from .globals import _no_req_msg

if t.TYPE_CHECKING:
    from .ctx import RequestContext
    from .wrappers import Response

__all__ = [
    "ContextStream",
    "abort",
    "copy_current_request_context",
    "jsonify",
    "stream_with_context",
    "url_for",
]

T = t.TypeVar("T")
F = t.TypeVar("F", bound=Callable[..., t.Any])

abort = _abort
"""Raise an HTTP error: ``abort(404)``, ``abort(403, description="...")`` or ``abort(response)``."""


def _current_request_ctx(what: str) -> RequestContext:
    ctx = _storage.request_slot.get(None)
    if ctx is None:
        raise RuntimeError(f"{what} needs an active request context.\n\n{_no_req_msg}")
    return t.cast("RequestContext", ctx)


class ContextStream(Iterator[T]):
    """An iterator that runs each step of ``iterator`` inside ``ctx`` (see module note).

    Made by :func:`stream_with_context`. ``close()`` closes the wrapped iterator inside the
    context too, and is safe to call at any time, more than once, or without iterating at all.
    """

    __slots__ = ("_ctx", "_done", "_it")

    def __init__(self, ctx: RequestContext, iterator: Iterator[T]) -> None:
        self._ctx = ctx
        self._it = iterator
        self._done = False
        ctx._holds += 1

    def __iter__(self) -> ContextStream[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        ctx = self._ctx
        ctx.push()
        exc: BaseException | None = None
        try:
            return next(self._it)
        except StopIteration:
            self._finish()
            raise
        except BaseException as e:
            exc = e
            self._finish()
            raise
        finally:
            ctx.app._pop_context(ctx, exc)

    def close(self) -> None:
        """Close the wrapped iterator (inside the context) and release the request."""
        if self._done:
            return
        ctx = self._ctx
        ctx.push()
        try:
            self._finish()
        finally:
            ctx.app._pop_context(ctx, None)

    def _finish(self) -> None:
        self._done = True
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            if self._ctx._holds > 0:
                self._ctx._holds -= 1


@t.overload
def stream_with_context(generator_or_function: Iterable[T]) -> ContextStream[T]: ...


@t.overload
def stream_with_context(
    generator_or_function: Callable[..., Iterable[T]],
) -> Callable[..., ContextStream[T]]: ...


def stream_with_context(
    generator_or_function: Iterable[T] | Callable[..., Iterable[T]],
) -> ContextStream[T] | Callable[..., ContextStream[T]]:
    """Keep ``request``, ``session`` and ``g`` usable while a streamed body is iterated.

    Call it inside a view on an iterable (usually a generator) and return the result, or use it
    as a decorator on a generator function that the view calls::

        @app.route("/stream")
        def stream():
            def generate():
                yield request.args["name"]
            return stream_with_context(generate())

    ``teardown_request`` functions run after the body is finished or closed. Raises
    ``RuntimeError`` when no request context is active.
    """
    if not isinstance(generator_or_function, Iterable):
        func = generator_or_function

        @functools.wraps(func)
        def decorator(*args: t.Any, **kwargs: t.Any) -> ContextStream[T]:
            return stream_with_context(func(*args, **kwargs))

        return decorator

    ctx = _current_request_ctx("stream_with_context()")
    return ContextStream(ctx, iter(generator_or_function))


def copy_current_request_context(f: F) -> F:
    """Return ``f`` wrapped to run with a copy of the current request context.

    Use it to hand work that needs ``request`` or ``session`` to another thread or greenlet::

        @copy_current_request_context
        def work():
            return request.args["token"]

        threading.Thread(target=work).start()

    Each call pushes its own copy (sharing the request object and the loaded session, with a
    fresh app context, so a fresh ``g``) and pops it before returning, so the thread that runs
    it keeps no context afterwards. Raises ``RuntimeError`` when no request context is active.
    """
    ctx = _current_request_ctx("copy_current_request_context()")

    @functools.wraps(f)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        with ctx.copy():
            return f(*args, **kwargs)

    return t.cast(F, wrapper)


def url_for(
    endpoint: str,
    *,
    _external: bool | None = None,
    _method: str | None = None,
    _scheme: str | None = None,
    _anchor: str | None = None,
    **values: t.Any,
) -> str:
    """Build the URL of ``endpoint`` with ``values`` for its rule (extra values become a query).

    Inside a request the URL is relative to the request's host and script root (absolute with
    ``_external=True``). Outside a request, inside an app context, the app's ``SERVER_NAME``
    config must be set; the URL is then external.
    """
    from .globals import _get_current_app

    return _get_current_app().url_for(
        endpoint,
        _external=_external,
        _method=_method,
        _scheme=_scheme,
        _anchor=_anchor,
        **values,
    )


def _json_default(o: t.Any) -> t.Any:
    if isinstance(o, datetime | date):
        return http_date(o)
    if isinstance(o, uuid.UUID | decimal.Decimal):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "__html__"):
        return str(o.__html__())
    raise TypeError(
        f"Object of type {type(o).__name__} is not JSON serializable: {o!r}. Convert it to a"
        " str, number, list or dict before returning it."
    )


def dumps(obj: t.Any) -> str:
    """Serialize ``obj`` to compact JSON (dates, UUIDs, decimals and dataclasses included)."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def jsonify(*args: t.Any, **kwargs: t.Any) -> Response:
    """Return an ``application/json`` response for one value, several (a list) or keywords."""
    from .globals import _get_current_app

    if args and kwargs:
        raise TypeError(
            f"jsonify() takes positional values or keywords, not both (got {args!r} and"
            f" {kwargs!r})."
        )
    if not args:
        data: t.Any = kwargs
    elif len(args) == 1:
        data = args[0]
    else:
        data = list(args)
    if _storage.app_slot.get(None) is not None:
        response_class = _get_current_app().response_class
    else:
        from .wrappers import Response as response_class
    return response_class(f"{dumps(data)}\n", mimetype="application/json")
