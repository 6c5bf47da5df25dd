"""Micro benchmarks: the core against Flask 3.1 and a bare werkzeug app, in one process, one run.

Three groups, each with one benchmark per framework so that pytest-benchmark's table for the
group shows the ratios side by side:

- ``full-wsgi-call``: ``app(environ, start_response)`` through a route that reads
  ``request.args`` and sets ``g``, body consumed and *checked* inside the measured call;
- ``request-context``: create, push and pop a request context for a prebuilt environ;
- ``app-context``: create, push and pop an app context.

werkzeug has no contexts; in the context groups its row is the floor a context can cost: a
``ContextVar`` set and reset (of a new ``Request`` for the request context). Every call gets a
fresh copy of a prebuilt environ, so the cost of building one (``EnvironBuilder``) stays out.

Run: ``.venv/bin/pytest benchmarks/ --benchmark-only``. Targets (see README.md): the core's full
call at least 2x Flask's throughput, the core's app-context push+pop under 1 µs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

flask = pytest.importorskip("flask", reason="the micro suite compares against Flask (dev extra)")
core = pytest.importorskip("core")

FRAMEWORKS = ["core", "flask", "werkzeug"]
NAME = "ctxbench"
EXPECTED_BODY = f"hello {NAME}".encode()
ENVIRON: dict[str, Any] = EnvironBuilder(path="/hello", query_string={"name": NAME}).get_environ()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_core_app() -> Any:
    app = core.App("bench-core")

    @app.route("/hello")
    def hello() -> str:
        core.g.name = core.request.args["name"]
        return f"hello {core.g.name}"

    return app


def make_flask_app() -> Any:
    app = flask.Flask("bench-flask")

    @app.route("/hello")
    def hello() -> str:
        flask.g.name = flask.request.args["name"]
        return f"hello {flask.g.name}"

    return app


def werkzeug_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    request = Request(environ)
    response = Response(f"hello {request.args['name']}")
    return response(environ, start_response)


def make_app(framework: str) -> Any:
    if framework == "core":
        return make_core_app()
    if framework == "flask":
        return make_flask_app()
    return werkzeug_app


def full_call(app: WSGIApp) -> Callable[[], None]:
    """One WSGI call with a fresh environ copy; the body is consumed and checked."""
    environ = ENVIRON
    status: list[str] = []

    def start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(status_line)

    def call() -> None:
        status.clear()
        app_iter = app(environ.copy(), start_response)
        try:
            body = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        # A fast app that answers with the wrong body has failed, not won.
        if status != ["200 OK"] or body != EXPECTED_BODY:
            raise AssertionError(f"wrong response: {status!r} {body!r}")

    return call


@pytest.mark.benchmark(group="full-wsgi-call")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_wsgi_call(benchmark: Any, framework: str) -> None:
    call = full_call(make_app(framework))
    call()  # correctness and warm-up outside the measurement
    benchmark(call)


def request_context_cycle(framework: str) -> Callable[[], None]:
    environ = ENVIRON
    if framework == "werkzeug":
        var: ContextVar[Request] = ContextVar("bench.request")

        def cycle() -> None:
            var.reset(var.set(Request(environ.copy())))

        return cycle

    app = make_app(framework)
    request_context = app.request_context

    def cycle() -> None:
        ctx = request_context(environ.copy())
        ctx.push()
        ctx.pop()

    return cycle


def check_contexts_visible(framework: str) -> None:
    # The context groups measure nothing if push() does not make the context visible.
    if framework == "werkzeug":
        return
    module = core if framework == "core" else flask
    app = make_app(framework)
    with app.request_context(ENVIRON.copy()):
        assert module.request.args["name"] == NAME
        assert module.current_app.name == app.name
    with app.app_context():
        module.g.x = framework
        assert module.g.x == framework
    assert not module.has_app_context()


@pytest.mark.benchmark(group="request-context")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_request_context_push_pop(benchmark: Any, framework: str) -> None:
    check_contexts_visible(framework)
    cycle = request_context_cycle(framework)
    cycle()
    benchmark(cycle)


def app_context_cycle(framework: str) -> Callable[[], None]:
    if framework == "werkzeug":
        var: ContextVar[object] = ContextVar("bench.app")
        value = object()

        def cycle() -> None:
            var.reset(var.set(value))

        return cycle

    app_context = make_app(framework).app_context

    def cycle() -> None:
        ctx = app_context()
        ctx.push()
        ctx.pop()

    return cycle


@pytest.mark.benchmark(group="app-context")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_app_context_push_pop(benchmark: Any, framework: str) -> None:
    check_contexts_visible(framework)
    cycle = app_context_cycle(framework)
    cycle()
    benchmark(cycle)
