"""App basics: construction, config, the WSGI entry points, return values."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

import core
from core import App, g, request


def test_public_api_imports() -> None:
    from core import (  # noqa: F401
        App,
        abort,
        copy_current_request_context,
        current_app,
        g,
        has_app_context,
        has_request_context,
        jsonify,
        request,
        session,
        stream_with_context,
        url_for,
    )


def test_hello(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        g.user = "u"
        return "hello " + request.args.get("name", "")

    rv = client.get("/?name=x")
    assert rv.status_code == 200
    assert rv.data == b"hello x"
    assert rv.mimetype == "text/html"


def test_call_goes_through_wsgi_app_attribute(app: App, client: Client) -> None:
    seen: list[str] = []

    @app.route("/")
    def index() -> str:
        return "ok"

    inner = app.wsgi_app

    def middleware(environ, start_response):  # type: ignore[no-untyped-def]
        seen.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    app.wsgi_app = middleware  # type: ignore[method-assign]
    assert client.get("/").data == b"ok"
    assert seen == ["/"]


def test_hook_lists_are_plain_lists(app: App) -> None:
    for name in (
        "before_first_request_funcs",
        "before_request_funcs",
        "after_request_funcs",
        "teardown_request_funcs",
        "teardown_appcontext_funcs",
    ):
        assert type(getattr(app, name)) is list


def test_attributes(app: App) -> None:
    assert app.name == "test_app"
    assert app.secret_key == "test secret key"
    app.secret_key = "other"
    assert app.config["SECRET_KEY"] == "other"
    assert app.view_functions == {}
    assert repr(app) == "<App 'test_app'>"
    assert isinstance(core.App("x").config, dict)


def test_bad_import_name() -> None:
    with pytest.raises(TypeError, match="import name"):
        App("")
