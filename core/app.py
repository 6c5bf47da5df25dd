"""The App: the request pipeline, error handling and responses.

Design note: an ``App`` holds no per-request state. Everything that belongs to one request lives
in the :class:`~core.ctx.RequestContext` that ``wsgi_app`` creates, pushes into the active
storage slot, and pops in a ``finally`` block, so any number of threads, greenlets or tasks can
run requests through one app at once. The only shared mutable state is set up before the first
request (routes, hooks, config: see :mod:`core.scaffold`), the once-only
``before_first_request`` flag (guarded by a lock), and the routing caches of
:mod:`core.routing`.

The pipeline reads as verbs: ``wsgi_app`` pushes the context (which matches the URL) and calls
``full_dispatch_request`` (``preprocess_request``, ``dispatch_request``), ``finalize_request``
(``make_response``, ``process_response``), and pops the context, which runs
``do_teardown_request`` and ``do_teardown_appcontext``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import typing as t
from collections.abc import Iterator

from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import Rule
from werkzeug.routing.exceptions import RoutingException
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Response as BaseResponse

from . import typing as ft
from .config import DEFAULT_CONFIG, Config
from .ctx import AppContext, RequestContext, _AppCtxGlobals, _sentinel
from .helpers import ContextStream, dumps
from .routing import RoutingMixin
from .scaffold import Scaffold
from .sessions import SecureCookieSessionInterface
from .wrappers import Request, Response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["App"]


class App(Scaffold, RoutingMixin):
    """A WSGI application: routes, hooks, error handlers and config.

    Create one per module and register views with :meth:`route`::

        app = App(__name__)
        app.secret_key = "change me"

        @app.route("/hello/<name>")
        def hello(name):
            return f"Hello {name}"

    Serve it with any WSGI server (``gunicorn module:app``), with :meth:`run` for development,
    or in tests with :meth:`test_client`. Routes and hooks must be registered before the first
    request.
    """

    request_class: type[Request] = Request
    response_class: type[Response] = Response
    app_ctx_globals_class: type[_AppCtxGlobals] = _AppCtxGlobals

    def __init__(self, import_name: str) -> None:
        if not isinstance(import_name, str) or not import_name:
            raise TypeError(f"App() takes the import name, usually __name__, got {import_name!r}.")
        self.import_name = import_name
        self.config = Config(DEFAULT_CONFIG)
        super().__init__()  # Scaffold: the registries; RoutingMixin: url_map and its caches
        self.session_interface = SecureCookieSessionInterface()
        self.logger = logging.getLogger(import_name)
        self._before_first_done = False
        self._before_first_lock = threading.Lock()

    @property
    def name(self) -> str:
        """The app's name: the import name, or the script's name when run as ``__main__``."""
        if self.import_name == "__main__":
            fn: str | None = getattr(sys.modules["__main__"], "__file__", None)
            if fn is None:
                return "__main__"
            return os.path.splitext(os.path.basename(fn))[0]
        return self.import_name

    @property
    def secret_key(self) -> str | bytes | None:
        """The key that signs the session cookie (the ``SECRET_KEY`` config key)."""
        return t.cast("str | bytes | None", self.config["SECRET_KEY"])

    @secret_key.setter
    def secret_key(self, value: str | bytes | None) -> None:
        self.config["SECRET_KEY"] = value

    @property
    def debug(self) -> bool:
        """Whether debug mode is on (the ``DEBUG`` config key)."""
        return bool(self.config["DEBUG"])

    @debug.setter
    def debug(self, value: bool) -> None:
        self.config["DEBUG"] = value

    @property
    def passthrough_errors(self) -> bool:
        """Whether unhandled exceptions propagate out of ``wsgi_app`` instead of giving a 500."""
        cfg = self.config
        return bool(cfg["PASSTHROUGH_ERRORS"] or (cfg["TESTING"] and cfg["DEBUG"]))

    def __repr__(self) -> str:
        return f"<App {self.name!r}>"

    # -- contexts -------------------------------------------------------------------------

    def app_context(self) -> AppContext:
        """Return a new app context: ``with app.app_context(): ...``."""
        return AppContext(self)

    def request_context(self, environ: WSGIEnvironment) -> RequestContext:
        """Return a new request context for the WSGI ``environ``."""
        return RequestContext(self, environ)

    def test_request_context(
        self, path: str = "/", method: str = "GET", **kwargs: t.Any
    ) -> RequestContext:
        """Return a request context for a made-up request (arguments as werkzeug's
        ``EnvironBuilder``: ``query_string``, ``headers``, ``data``, ``json``...)."""
        builder = EnvironBuilder(path, method=method, **kwargs)
        try:
            return self.request_context(builder.get_environ())
        finally:
            builder.close()

    def test_client(self, use_cookies: bool = True) -> Client:
        """Return a werkzeug test ``Client`` that calls this app directly."""
        return Client(self, use_cookies=use_cookies)

    # -- the request pipeline -------------------------------------------------------------

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        """The WSGI entry point; calls :meth:`wsgi_app` so middleware can wrap that."""
        return self.wsgi_app(environ, start_response)

    def wsgi_app(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        """Handle one request: push its context, dispatch, respond, pop the context.

        The context is popped in a ``finally`` block whatever fails (a view, a hook, the
        session, a teardown function), so nothing stays active in the serving thread.
        Replace it on the instance to install middleware: ``app.wsgi_app = mw(app.wsgi_app)``.
        """
        ctx = RequestContext(self, environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                response = self.full_dispatch_request(ctx)
            except Exception as e:
                error = e
                response = self.handle_exception(e, ctx)
            except BaseException as e:
                error = e
                raise
            if ctx._holds and not isinstance(response.response, ContextStream):
                # A stream_with_context() body the view did not return: nothing will close it.
                ctx._holds = 0
            return response(environ, start_response)
        finally:
            if ctx._pushed:
                self._pop_context(ctx, error)

    def _pop_context(self, ctx: RequestContext, error: BaseException | None) -> None:
        # A teardown error comes after the response was built: log it, keep the response.
        try:
            ctx.pop(error)
        except Exception:
            if self.passthrough_errors:
                raise
            self.logger.exception("Exception in a teardown function of %r", self)

    def full_dispatch_request(self, ctx: RequestContext | None = None) -> BaseResponse:
        """Run ``before_first_request`` (once), the ``before_request`` hooks and the view, turn
        exceptions into responses with the error handlers, and finalize the response."""
        if ctx is None:
            ctx = _request_ctx()
        if not self._before_first_done:
            self._try_trigger_before_first_request()
        try:
            rv = self.preprocess_request() if self.before_request_funcs else None
            if rv is None:
                rv = self.dispatch_request(ctx)
        except Exception as e:
            rv = self.handle_user_exception(e)
        return self.finalize_request(rv, ctx)

    def _try_trigger_before_first_request(self) -> None:
        with self._before_first_lock:
            self._got_first_request = True
            if self._before_first_done:
                return
            for func in self.before_first_request_funcs:
                func()
            self._before_first_done = True

    def preprocess_request(self) -> ft.ResponseReturnValue | None:
        """Run the ``before_request`` hooks in order; return the first non-``None`` value."""
        for func in self.before_request_funcs:
            rv = func()
            if rv is not None:
                return rv
        return None

    def dispatch_request(self, ctx: RequestContext | None = None) -> ft.ResponseReturnValue:
        """Call the view for the matched rule (or raise the routing error)."""
        if ctx is None:
            ctx = _request_ctx()
        req = ctx.request
        if req.routing_exception is not None:
            raise req.routing_exception
        rule = t.cast(Rule, req.url_rule)
        if req.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
            return self.make_default_options_response(ctx)
        view = self.view_functions.get(rule.endpoint)
        if view is None:
            raise LookupError(
                f"No view function is registered for endpoint {rule.endpoint!r} (rule"
                f" {rule.rule!r}). Register one with @app.endpoint({rule.endpoint!r})."
            )
        return view(**t.cast("dict[str, t.Any]", req.view_args))

    def make_default_options_response(self, ctx: RequestContext) -> BaseResponse:
        """Answer ``OPTIONS`` with an ``Allow`` header listing the rule's methods."""
        adapter = ctx.url_adapter
        methods = adapter.allowed_methods(ctx.request.path)
        rv = self.response_class()
        rv.allow.update(methods)
        return rv

    def finalize_request(
        self,
        rv: ft.ResponseReturnValue,
        ctx: RequestContext | None = None,
        from_error_handler: bool = False,
    ) -> BaseResponse:
        """Make a response from ``rv`` and run :meth:`process_response` on it."""
        if ctx is None:
            ctx = _request_ctx()
        response = self.make_response(rv, ctx)
        try:
            response = self.process_response(response, ctx)
        except Exception:
            if not from_error_handler:
                raise
            self.logger.exception(
                "Processing the response failed while handling an error; sending it unprocessed"
            )
        return response

    def process_response(
        self, response: BaseResponse, ctx: RequestContext | None = None
    ) -> BaseResponse:
        """Run the ``after_request`` hooks (in reverse order), then save the session."""
        if ctx is None:
            ctx = _request_ctx()
        for func in reversed(self.after_request_funcs):
            rv = func(response)
            if not isinstance(rv, BaseResponse):
                raise TypeError(
                    f"The after_request function {func!r} returned {rv!r}; it must return the"
                    " response it was given (or another Response)."
                )
            response = rv
        if ctx._session is not None:
            self.session_interface.save_session(self, ctx._session, response)
        return response

    def do_teardown_request(self, exc: BaseException | None = _sentinel) -> None:
        """Run every ``teardown_request`` function (reverse order); raise the first error."""
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        _call_all(reversed(self.teardown_request_funcs), exc, self, "teardown_request")

    def do_teardown_appcontext(self, exc: BaseException | None = _sentinel) -> None:
        """Run every ``teardown_appcontext`` function (reverse order); raise the first error."""
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        _call_all(reversed(self.teardown_appcontext_funcs), exc, self, "teardown_appcontext")

    # -- errors ---------------------------------------------------------------------------

    def _find_error_handler(self, e: BaseException) -> ft.ErrorHandlerCallable | None:
        handlers = self.error_handlers
        if not handlers:
            return None
        for cls in type(e).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return handler
        return None

    def handle_http_exception(self, e: HTTPException) -> ft.ResponseReturnValue:
        """Answer an HTTP exception: its registered handler, or the exception as a response."""
        if e.code is None or isinstance(e, RoutingException):
            # Routing redirects are responses, not errors.
            return e.get_response()
        handler = self._find_error_handler(e)
        if handler is None:
            return e.get_response()
        return handler(e)

    def handle_user_exception(self, e: Exception) -> ft.ResponseReturnValue:
        """Answer an exception from a hook or view with its handler; re-raise if there is none."""
        if isinstance(e, HTTPException):
            return self.handle_http_exception(e)
        handler = self._find_error_handler(e)
        if handler is None:
            raise e
        return handler(e)

    def handle_exception(self, e: Exception, ctx: RequestContext | None = None) -> BaseResponse:
        """Answer an unhandled exception with a 500 (no traceback for the client), logged.

        A handler registered for 500 / ``InternalServerError`` builds the response. With
        ``PASSTHROUGH_ERRORS`` the exception propagates instead.
        """
        if self.passthrough_errors:
            raise e
        if ctx is None:
            ctx = _request_ctx()
        self.logger.error("Exception on %s [%s]", ctx.request.path, ctx.request.method, exc_info=e)
        server_error = InternalServerError(original_exception=e)
        handler = self._find_error_handler(server_error)
        if handler is not None:
            try:
                return self.finalize_request(handler(server_error), ctx, from_error_handler=True)
            except Exception:
                self.logger.exception("The error handler for 500 failed; sending a plain 500")
        try:
            return self.finalize_request(server_error, ctx, from_error_handler=True)
        except Exception:  # pragma: no cover - a broken session interface
            self.logger.exception("Finalizing a 500 failed; sending a plain 500")
            return server_error.get_response()

    # -- responses ------------------------------------------------------------------------

    def make_response(
        self, rv: ft.ResponseReturnValue, ctx: RequestContext | None = None
    ) -> BaseResponse:
        """Turn a view's return value into a :class:`Response`.

        Accepts a ``Response``; ``str`` or ``bytes``; a ``dict`` or ``list`` (JSON); an iterator
        or generator (streamed); a WSGI callable; or a tuple ``(body, status)``,
        ``(body, headers)`` or ``(body, status, headers)``. Anything else raises ``TypeError``.
        """
        if type(rv) is str:  # the common case first
            return self.response_class(rv)
        status: t.Any = None
        headers: t.Any = None
        body: t.Any = rv
        if isinstance(body, tuple):
            n = len(body)
            if n == 3:
                body, status, headers = body
            elif n == 2:
                if isinstance(body[1], Headers | dict | tuple | list):
                    body, headers = body
                else:
                    body, status = body
            else:
                raise TypeError(
                    f"{_view_name(ctx)} returned a tuple of {n} items: {body!r}. Return (body,"
                    " status), (body, headers) or (body, status, headers)."
                )
        if body is None:
            raise TypeError(
                f"{_view_name(ctx)} did not return a valid response: it returned None or ended"
                " without a return statement. Return a str, bytes, dict, list, Response or"
                " iterator."
            )
        if status is not None and not isinstance(status, int | str):
            raise TypeError(
                f"{_view_name(ctx)} returned status {status!r}; a status must be an int or a str"
                " such as '200 OK'."
            )
        response_class = self.response_class
        if isinstance(body, BaseResponse):
            rv = body
        else:
            if isinstance(body, str | bytes | bytearray | Iterator):
                return response_class(body, status=status, headers=headers)  # type: ignore[arg-type]
            if isinstance(body, dict | list):
                return response_class(
                    f"{dumps(body)}\n", status=status, headers=headers, mimetype="application/json"
                )
            if isinstance(body, HTTPException):
                rv = body.get_response()
            elif callable(body):
                environ = ctx.request.environ if ctx is not None else _request_ctx().request.environ
                rv = response_class.force_type(body, environ)
            else:
                raise TypeError(
                    f"{_view_name(ctx)} returned {body!r} of type {type(body).__name__}; return a"
                    " str, bytes, dict, list, Response, iterator or a tuple of those with a"
                    " status and/or headers."
                )
        if status is not None:
            if isinstance(status, str):
                rv.status = status
            else:
                rv.status_code = status
        if headers:
            rv.headers.update(headers)
        return rv

    # -- serving --------------------------------------------------------------------------

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        debug: bool = False,
        threaded: bool = True,
        passthrough_errors: bool = False,
        **options: t.Any,
    ) -> None:
        """Serve the app with werkzeug's development server (not for production).

        ``debug`` turns on the reloader and the interactive debugger; ``passthrough_errors``
        lets unhandled exceptions reach the server. Other ``options`` go to
        ``werkzeug.serving.run_simple``.
        """
        from werkzeug.serving import run_simple

        if debug:
            self.debug = True
        self.config["PASSTHROUGH_ERRORS"] = passthrough_errors or debug
        options.setdefault("use_reloader", debug)
        options.setdefault("use_debugger", debug)
        run_simple(
            host, port, self, threaded=threaded, passthrough_errors=passthrough_errors, **options
        )


def _request_ctx() -> RequestContext:
    from .globals import _get_request_ctx

    return _get_request_ctx()


def _view_name(ctx: RequestContext | None) -> str:
    endpoint = ctx.request.endpoint if ctx is not None else None
    if endpoint is None:
        return "The view function (or a before_request hook or error handler)"
    return f"The view function for {endpoint!r}"


def _call_all(
    funcs: t.Iterable[ft.TeardownCallable], exc: BaseException | None, app: App, kind: str
) -> None:
    """Call every function with ``exc``; log all failures, then raise the first."""
    first: Exception | None = None
    for func in funcs:
        try:
            func(exc)
        except Exception as e:
            if first is None:
                first = e
            else:
                app.logger.error("Another %s function %r failed", kind, func, exc_info=e)
    if first is not None:
        raise first
