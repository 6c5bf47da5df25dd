"""The app context and the request context.

Design note: a context is active in exactly the thread, greenlet or asyncio task that pushed it,
because pushing sets a slot of the active :mod:`core.storage` (by default a ``ContextVar``) and
popping resets that slot *by token*, which restores whatever was there before the push. Every
context remembers the slot and the token it pushed with, so a pop always undoes its own push,
even when the storage was swapped in between.

The core never checks that the context it pops is the one the slot holds. The harness runs the
core on deliberately broken storages, and those must serve every request to completion so that
the leak shows in its observations rather than as an error page.

``wsgi_app`` pushes a *fresh* app context with every request context (a new ``g`` per request,
whatever an earlier request left behind). A request context may be pushed again while it is
active (``with ctx:`` nested, or a :func:`~core.stream_with_context` body); it then re-pushes its
own app context, and teardown runs once, on the last pop.
"""

from __future__ import annotations

import sys
import typing as t
from collections.abc import Iterator

from . import storage as _storage

if t.TYPE_CHECKING:
    from types import TracebackType

    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.routing import MapAdapter

    from .app import App
    from .sessions import SecureCookieSession
    from .wrappers import Request

__all__ = [
    "AppContext",
    "RequestContext",
    "has_app_context",
    "has_request_context",
]

_sentinel: t.Any = object()


class _AppCtxGlobals:
    """The ``g`` namespace: an attribute bag that lives as long as one app context.

    ``g.name = value`` stores, ``g.name`` reads (``AttributeError`` if missing),
    ``g.get(name, default)``, ``g.pop(name[, default])``, ``g.setdefault(name, default)``,
    ``name in g`` and ``iter(g)`` work like a dict's.
    """

    def get(self, name: str, default: t.Any | None = None) -> t.Any:
        """Return the attribute ``name``, or ``default`` if it is not set."""
        return self.__dict__.get(name, default)

    def pop(self, name: str, default: t.Any = _sentinel) -> t.Any:
        """Remove and return the attribute ``name``; ``default`` (or ``KeyError``) if missing."""
        if default is _sentinel:
            return self.__dict__.pop(name)
        return self.__dict__.pop(name, default)

    def setdefault(self, name: str, default: t.Any = None) -> t.Any:
        """Return the attribute ``name``, setting it to ``default`` first if it is missing."""
        return self.__dict__.setdefault(name, default)

    def __contains__(self, item: str) -> bool:
        return item in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __repr__(self) -> str:
        ctx = _storage.app_slot.get(None)
        if ctx is not None:
            return f"<core.g of {ctx.app.name!r}>"
        return object.__repr__(self)


class _Context:
    """What both contexts share: their pushes not yet popped, and ``with`` as push and pop.

    Each push is kept as the slot it set and the token that resets it (see the module note); a
    ``with`` block pushes on entry and pops on exit, handing the block's exception to ``pop``.
    """

    __slots__ = ("_pushed",)

    _pushed: list[tuple[_storage.ContextSlot, t.Any]]

    def push(self) -> None:
        raise NotImplementedError

    def pop(self, exc: BaseException | None = _sentinel) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        """Reset the slot of the latest push by its token."""
        slot, token = self._pushed.pop()
        slot.reset(token)

    def _not_pushed(self) -> RuntimeError:
        return RuntimeError(
            f"Cannot pop {self!r}: it is not pushed.\n\nEvery pop() must match an earlier"
            " push(). Use the context as a 'with' block to keep them paired."
        )

    def __enter__(self) -> t.Self:
        self.push()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pop(exc_value)


class AppContext(_Context):
    """Makes ``current_app`` and ``g`` available; use it as a context manager.

    ``with app.app_context(): ...`` pushes it for the block. ``g`` is created on first use, and
    ``teardown_appcontext`` functions run when the last push is popped.
    """

    __slots__ = ("_g", "app")

    def __init__(self, app: App) -> None:
        self.app = app
        self._g: _AppCtxGlobals | None = None
        self._pushed: list[tuple[_storage.ContextSlot, t.Any]] = []

    @property
    def g(self) -> _AppCtxGlobals:
        """This context's ``g``, created on first access."""
        rv = self._g
        if rv is None:
            rv = self._g = self.app.app_ctx_globals_class()
        return rv

    @g.setter
    def g(self, value: _AppCtxGlobals) -> None:
        self._g = value

    def push(self) -> None:
        """Make this context the active app context in the current thread/greenlet/task."""
        slot = _storage.app_slot
        self._pushed.append((slot, slot.set(self)))

    def pop(self, exc: BaseException | None = _sentinel) -> None:
        """Undo the latest :meth:`push`; on the last one, run ``teardown_appcontext``.

        ``exc`` is passed to the teardown functions (default: the exception being handled).
        """
        pushed = self._pushed
        if len(pushed) == 1 and not self.app.teardown_appcontext_funcs:
            # The common last pop, inlined: ``with app.app_context()`` is on hot paths.
            slot, token = pushed.pop()
            slot.reset(token)
            return
        if not pushed:
            raise self._not_pushed()
        try:
            if len(pushed) == 1:
                if exc is _sentinel:
                    exc = sys.exc_info()[1]
                self.app.do_teardown_appcontext(exc)
        finally:
            self._reset()

    def __enter__(self) -> AppContext:
        # push(), inlined: ``with app.app_context()`` is on hot paths.
        slot = _storage.app_slot
        self._pushed.append((slot, slot.set(self)))
        return self

    def __repr__(self) -> str:
        return f"<AppContext of {self.app.name!r}>"


class RequestContext(_Context):
    """Makes ``request`` and ``session`` available, and with them ``current_app`` and ``g``.

    ``wsgi_app`` creates and pushes one per request. Pushing it the first time pushes a fresh
    :class:`AppContext` and matches the URL; popping it the last time runs ``teardown_request``,
    closes the request, then pops the app context (which runs ``teardown_appcontext``).
    """

    __slots__ = (
        "_app_ctx",
        "_holds",
        "_owns_request",
        "_session",
        "_torn_down",
        "_url_adapter",
        "app",
        "request",
    )

    def __init__(
        self,
        app: App,
        environ: WSGIEnvironment,
        request: Request | None = None,
        session: SecureCookieSession | None = None,
    ) -> None:
        self.app = app
        self._owns_request = request is None
        if request is None:
            request = app.request_class(environ)
            request._config = app.config
        self.request = request
        self._url_adapter: MapAdapter | None = None
        self._session = session
        self._app_ctx: AppContext | None = None
        self._pushed: list[tuple[_storage.ContextSlot, t.Any]] = []
        # Open stream_with_context() bodies; teardown waits until the last one finishes.
        self._holds = 0
        self._torn_down = False

    @property
    def session(self) -> SecureCookieSession:
        """The session, loaded from the cookie on first access."""
        rv = self._session
        if rv is None:
            rv = self.app.session_interface.open_session(self.app, self.request)
            if rv is None:
                raise RuntimeError(
                    "The session is unavailable because no secret key was set.\n\n"
                    "The session is stored in a cookie signed with app.secret_key (the"
                    " SECRET_KEY config key), and it is None, so the cookie cannot be signed"
                    " or verified.\n\n"
                    "Set app.secret_key (or app.config['SECRET_KEY']) to a long random string"
                    " before serving requests, for example secrets.token_hex(32)."
                )
            self._session = rv
        return rv

    @session.setter
    def session(self, value: SecureCookieSession) -> None:
        self._session = value

    @property
    def url_adapter(self) -> MapAdapter:
        """The URL adapter bound to this request's host, created on first use."""
        rv = self._url_adapter
        if rv is None:
            rv = self._url_adapter = t.cast("MapAdapter", self.app.create_url_adapter(self.request))
        return rv

    @url_adapter.setter
    def url_adapter(self, value: MapAdapter | None) -> None:
        self._url_adapter = value

    @property
    def app_ctx(self) -> AppContext | None:
        """The app context pushed with this request context (``None`` before the first push)."""
        return self._app_ctx

    @property
    def g(self) -> _AppCtxGlobals:
        """The ``g`` of this request (created on first access)."""
        if self._app_ctx is None:
            self._app_ctx = AppContext(self.app)
        return self._app_ctx.g

    def copy(self) -> RequestContext:
        """Return a new context for the same request, to push in another thread or greenlet.

        The copy shares the request object and, if it was loaded, the session; it gets its own
        app context (so its own, empty ``g``) when pushed, and it never closes the request.
        """
        rv = RequestContext(self.app, self.request.environ, self.request, self._session)
        rv._url_adapter = self._url_adapter
        return rv

    def push(self) -> None:
        """Make this request context (and its app context) active here."""
        app_ctx = self._app_ctx
        if app_ctx is None:
            # Always a fresh app context: never reuse one that happens to be active here.
            app_ctx = self._app_ctx = AppContext(self.app)
        slot = _storage.app_slot
        app_ctx._pushed.append((slot, slot.set(app_ctx)))
        try:
            slot = _storage.request_slot
            self._pushed.append((slot, slot.set(self)))
        except BaseException:
            app_ctx._reset()
            raise
        req = self.request
        if req.view_args is None and req.routing_exception is None:
            self.app.match_request(self)

    def pop(self, exc: BaseException | None = _sentinel) -> None:
        """Undo the latest :meth:`push`; the last one tears the request down.

        Teardown order: ``teardown_request`` functions, closing the request, resetting the
        request slot, ``teardown_appcontext`` functions, resetting the app slot. Every step runs
        even if an earlier one raised; the first error is raised at the end.
        """
        pushed = self._pushed
        if not pushed:
            raise self._not_pushed()
        app_ctx: AppContext = self._app_ctx  # type: ignore[assignment]  # set by push()
        teardown = len(pushed) == 1 and not self._holds and not self._torn_down
        if teardown:
            self._torn_down = True
            if exc is _sentinel:
                exc = sys.exc_info()[1]
        try:
            if teardown:
                try:
                    if self.app.teardown_request_funcs:
                        self.app.do_teardown_request(exc)
                finally:
                    # Only a request that parsed a multipart body has files to close.
                    if self._owns_request and "files" in self.request.__dict__:
                        self.request.close()
        finally:
            try:
                slot, token = pushed.pop()
                slot.reset(token)
            finally:
                try:
                    if teardown and self.app.teardown_appcontext_funcs:
                        self.app.do_teardown_appcontext(exc)
                finally:
                    slot, token = app_ctx._pushed.pop()
                    slot.reset(token)

    def __repr__(self) -> str:
        req = self.request
        return f"<RequestContext {req.method} {req.path!r} of {self.app.name!r}>"


def has_request_context() -> bool:
    """Return whether a request context is active here (in the storage in use).

    Use it to write code that works both inside and outside a request, for example to fall back
    when ``request`` is not available.
    """
    return _storage.request_slot.get(None) is not None


def has_app_context() -> bool:
    """Return whether an app context is active here (in the storage in use)."""
    return _storage.app_slot.get(None) is not None
