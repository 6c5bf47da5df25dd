"""Registration: routes, hooks and error handlers, and the rule that they come first.

Design note: everything a :class:`Scaffold` registers (view functions, rules, hook lists, error
handlers) is shared by every request, and requests read it without a lock. That is safe only
because it stops changing once the app serves: each decorator checks that the app has not
handled its first request yet and raises otherwise, instead of letting a route or hook apply to
some concurrent requests and not others.

:class:`~core.app.App` inherits these methods; the request pipeline in :mod:`core.app` reads
the lists directly (``before_request_funcs``...), so registration adds nothing per request.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable

from werkzeug.exceptions import default_exceptions
from werkzeug.routing import Map, Rule

from . import typing as ft

__all__ = ["Scaffold"]


class Scaffold:
    """The registration half of :class:`~core.app.App`: ``route``, the hook decorators and
    ``errorhandler``. Not used on its own."""

    #: The URL map rules are added to (created by :class:`~core.routing.RoutingMixin`).
    url_map: Map

    def __init__(self) -> None:
        super().__init__()
        self.view_functions: dict[str, ft.RouteCallable] = {}
        self.before_first_request_funcs: list[ft.BeforeFirstRequestCallable] = []
        self.before_request_funcs: list[ft.BeforeRequestCallable] = []
        self.after_request_funcs: list[ft.AfterRequestCallable] = []
        self.teardown_request_funcs: list[ft.TeardownCallable] = []
        self.teardown_appcontext_funcs: list[ft.TeardownCallable] = []
        #: Exception class -> handler (``errorhandler(404)`` registers ``NotFound``).
        self.error_handlers: dict[type[BaseException], ft.ErrorHandlerCallable] = {}
        #: Set (under the app's lock) when the first request starts; registration ends then.
        self._got_first_request = False

    def _check_setup_finished(self, what: str) -> None:
        if self._got_first_request:
            raise RuntimeError(
                f"Cannot call {what}() on {self!r}: it has already handled its first request.\n\n"
                "Requests may be running concurrently, and routes and hooks registered now would"
                " apply to some of them and not others.\n\n"
                "Register every route and hook at import time, before the app serves requests."
            )

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: ft.RouteCallable | None = None,
        methods: t.Iterable[str] | None = None,
        **options: t.Any,
    ) -> None:
        """Map the URL ``rule`` to ``view_func`` under ``endpoint`` (default: its ``__name__``).

        ``methods`` lists the HTTP methods (default ``["GET"]``; ``HEAD`` follows ``GET``, and
        ``OPTIONS`` is answered automatically). Other ``options`` go to werkzeug's ``Rule``
        (``defaults``, ``strict_slashes``, ``redirect_to``...). Binding an endpoint that already
        has a different function raises ``ValueError``.
        """
        self._check_setup_finished("add_url_rule")
        if endpoint is None:
            if view_func is None:
                raise TypeError(
                    f"add_url_rule({rule!r}) needs an endpoint or a view_func to name it after."
                )
            endpoint = view_func.__name__
        if methods is None:
            methods = getattr(view_func, "methods", None) or ("GET",)
        if isinstance(methods, str):
            raise TypeError(
                f"Allowed methods must be a list of strings, for example"
                f" methods=['POST'], got {methods!r}."
            )
        method_set = {m.upper() for m in methods}
        provide_automatic_options = "OPTIONS" not in method_set
        if provide_automatic_options:
            method_set.add("OPTIONS")

        if view_func is not None:
            old = self.view_functions.get(endpoint)
            if old is not None and old is not view_func:
                raise ValueError(
                    f"Endpoint {endpoint!r} is already bound to {old!r}; cannot bind it to"
                    f" {view_func!r} for rule {rule!r}.\n\nTwo views with the same function name"
                    " get the same endpoint. Pass a distinct endpoint= or rename one function."
                )

        rule_obj = Rule(rule, endpoint=endpoint, methods=method_set, **options)
        rule_obj.provide_automatic_options = provide_automatic_options  # type: ignore[attr-defined]
        self.url_map.add(rule_obj)
        if view_func is not None:
            self.view_functions[endpoint] = view_func

    def route(self, rule: str, **options: t.Any) -> Callable[[ft.T_route], ft.T_route]:
        """Decorate a view function to serve ``rule``; same options as :meth:`add_url_rule`."""

        def decorator(f: ft.T_route) -> ft.T_route:
            endpoint = options.pop("endpoint", None)
            self.add_url_rule(rule, endpoint, f, **options)
            return f

        return decorator

    def endpoint(self, endpoint: str) -> Callable[[ft.T_route], ft.T_route]:
        """Decorate the view function for an endpoint added without one."""

        def decorator(f: ft.T_route) -> ft.T_route:
            self._check_setup_finished("endpoint")
            self.view_functions[endpoint] = f
            return f

        return decorator

    def before_first_request(self, f: ft.T_before_first_request) -> ft.T_before_first_request:
        """Register ``f()`` to run once, before the first request this process handles.

        It runs exactly once even when many first requests arrive at once; the others wait for
        it. If it raises, the request fails with a 500 and the next request tries again.
        """
        self._check_setup_finished("before_first_request")
        self.before_first_request_funcs.append(f)
        return f

    def before_request(self, f: ft.T_before_request) -> ft.T_before_request:
        """Register ``f()`` to run before every view, in registration order.

        If it returns anything but ``None``, that value is the response and the view is skipped.
        """
        self._check_setup_finished("before_request")
        self.before_request_funcs.append(f)
        return f

    def after_request(self, f: ft.T_after_request) -> ft.T_after_request:
        """Register ``f(response)`` to run after every view; it must return a response.

        They run in reverse registration order, and not when the view raised an unhandled
        exception.
        """
        self._check_setup_finished("after_request")
        self.after_request_funcs.append(f)
        return f

    def teardown_request(self, f: ft.T_teardown) -> ft.T_teardown:
        """Register ``f(exc)`` to run when the request context is popped, always.

        ``exc`` is the unhandled exception, or ``None``. They run in reverse registration order
        and all of them run even if one raises.
        """
        self._check_setup_finished("teardown_request")
        self.teardown_request_funcs.append(f)
        return f

    def teardown_appcontext(self, f: ft.T_teardown) -> ft.T_teardown:
        """Register ``f(exc)`` to run when an app context is popped (after ``teardown_request``).

        Same rules as :meth:`teardown_request`; ``g`` is still available.
        """
        self._check_setup_finished("teardown_appcontext")
        self.teardown_appcontext_funcs.append(f)
        return f

    def errorhandler(
        self, code_or_exception: int | type[BaseException]
    ) -> Callable[[ft.T_error_handler], ft.T_error_handler]:
        """Register a handler for an HTTP status code or an exception class.

        The handler takes the exception and returns a response value. The most specific
        registered class (by MRO) wins; ``errorhandler(500)`` also handles unhandled exceptions,
        which it receives as ``InternalServerError`` with ``original_exception`` set.
        """
        exc_class = self._exception_class(code_or_exception)

        def decorator(f: ft.T_error_handler) -> ft.T_error_handler:
            self._check_setup_finished("errorhandler")
            self.error_handlers[exc_class] = f
            return f

        return decorator

    @staticmethod
    def _exception_class(code_or_exception: int | type[BaseException]) -> type[BaseException]:
        if isinstance(code_or_exception, int) and not isinstance(code_or_exception, bool):
            try:
                return default_exceptions[code_or_exception]
            except KeyError:
                raise ValueError(
                    f"{code_or_exception!r} is not an HTTP error code werkzeug knows. Register a"
                    " subclass of werkzeug.exceptions.HTTPException with that code instead."
                ) from None
        if isinstance(code_or_exception, type) and issubclass(code_or_exception, Exception):
            return code_or_exception
        raise TypeError(
            f"errorhandler() takes an HTTP status code or an Exception subclass, got"
            f" {code_or_exception!r}."
        )
