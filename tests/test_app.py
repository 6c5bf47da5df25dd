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


# -- return values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rv", "status", "body", "mimetype"),
    [
        pytest.param("text", 200, b"text", "text/html", id="str"),
        pytest.param(b"bytes", 200, b"bytes", "text/html", id="bytes"),
        pytest.param({"a": 1}, 200, b'{"a":1}\n', "application/json", id="dict"),
        pytest.param([1, "x"], 200, b'[1,"x"]\n', "application/json", id="list"),
        pytest.param(("made", 201), 201, b"made", "text/html", id="body-status"),
        pytest.param(("gone", "410 GONE"), 410, b"gone", "text/html", id="body-status-str"),
        pytest.param(({"a": 1}, 202), 202, b'{"a":1}\n', "application/json", id="json-status"),
        pytest.param(("x", {"X-A": "1"}), 200, b"x", "text/html", id="body-headers"),
        pytest.param(("x", [("X-A", "1")]), 200, b"x", "text/html", id="body-header-list"),
        pytest.param(("x", 203, {"X-A": "1"}), 203, b"x", "text/html", id="body-status-headers"),
    ],
)
def test_return_values(
    app: App, client: Client, rv: object, status: int, body: bytes, mimetype: str
) -> None:
    app.add_url_rule("/", "index", lambda: rv)
    resp = client.get("/")
    assert resp.status_code == status
    assert resp.data == body
    assert resp.mimetype == mimetype
    if isinstance(rv, tuple) and not isinstance(rv[-1], int | str):
        assert resp.headers["X-A"] == "1"


def test_return_response_object_with_status_and_headers(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> object:
        return core.Response("r", mimetype="text/plain"), 418, {"X-B": "2"}

    resp = client.get("/")
    assert (resp.status_code, resp.data, resp.mimetype) == (418, b"r", "text/plain")
    assert resp.headers["X-B"] == "2"


def test_return_plain_werkzeug_response(app: App, client: Client) -> None:
    from werkzeug.utils import redirect

    app.add_url_rule("/", "index", lambda: redirect("/elsewhere"))
    resp = client.get("/")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/elsewhere"


def test_return_generator_is_streamed(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> object:
        def gen():  # type: ignore[no-untyped-def]
            yield "a"
            yield b"b"

        return gen()

    resp = client.get("/")
    assert resp.data == b"ab"
    assert not resp.is_sequence or resp.data == b"ab"


def test_return_wsgi_callable(app: App, client: Client) -> None:
    from werkzeug.exceptions import Forbidden

    app.add_url_rule("/", "index", lambda: Forbidden())
    assert client.get("/").status_code == 403


@pytest.mark.parametrize(
    ("rv", "message"),
    [
        pytest.param(None, "did not return a valid response", id="none"),
        pytest.param(42, "returned 42 of type int", id="int"),
        pytest.param(("a", 200, {}, "extra"), "tuple of 4 items", id="tuple4"),
        pytest.param(("a", 1.5), "status 1.5", id="bad-status"),
    ],
)
def test_bad_return_value_names_view_and_value(
    app: App, client: Client, rv: object, message: str
) -> None:
    app.add_url_rule("/", "the_view", lambda: rv)
    app.config["PASSTHROUGH_ERRORS"] = True
    with pytest.raises(TypeError, match=message) as info:
        client.get("/")
    assert "'the_view'" in str(info.value)


def test_bad_return_value_is_a_logged_500(
    app: App, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    app.add_url_rule("/", "the_view", lambda: 42)
    resp = client.get("/")
    assert resp.status_code == 500
    assert b"Traceback" not in resp.data
    assert "the_view" in caplog.text


# -- errors ---------------------------------------------------------------------------------


def test_unhandled_exception_is_500_without_traceback(
    app: App, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    @app.route("/")
    def index() -> str:
        raise ZeroDivisionError("secret detail")

    resp = client.get("/")
    assert resp.status_code == 500
    assert b"secret detail" not in resp.data
    assert b"ZeroDivisionError" not in resp.data
    assert "secret detail" in caplog.text


def test_passthrough_errors_reraises(app: App, client: Client) -> None:
    app.config["PASSTHROUGH_ERRORS"] = True

    @app.route("/")
    def index() -> str:
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        client.get("/")


def test_errorhandler_for_code(app: App, client: Client) -> None:
    @app.errorhandler(404)
    def not_found(e: Exception) -> tuple[str, int]:
        return f"custom {type(e).__name__}", 404

    resp = client.get("/missing")
    assert (resp.status_code, resp.data) == (404, b"custom NotFound")


def test_errorhandler_most_specific_class_wins(app: App, client: Client) -> None:
    class AppError(Exception):
        pass

    class SpecificError(AppError):
        pass

    @app.errorhandler(Exception)
    def any_error(e: Exception) -> tuple[str, int]:
        return "exception", 500

    @app.errorhandler(AppError)
    def app_error(e: Exception) -> tuple[str, int]:
        return "app", 400

    @app.route("/specific")
    def specific() -> str:
        raise SpecificError

    @app.route("/other")
    def other() -> str:
        raise KeyError

    assert client.get("/specific").data == b"app"
    assert client.get("/other").data == b"exception"


def test_errorhandler_500_gets_original_exception(app: App, client: Client) -> None:
    @app.errorhandler(500)
    def server_error(e: Exception) -> tuple[str, int]:
        return f"handled {type(e.original_exception).__name__}", 500  # type: ignore[attr-defined]

    @app.route("/")
    def index() -> str:
        raise ValueError

    assert client.get("/").data == b"handled ValueError"


def test_failing_500_handler_still_gives_500(
    app: App, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    @app.errorhandler(500)
    def server_error(e: Exception) -> str:
        raise RuntimeError("handler broke")

    @app.route("/")
    def index() -> str:
        raise ValueError

    resp = client.get("/")
    assert resp.status_code == 500
    assert "handler broke" in caplog.text


def test_errorhandler_validates_argument(app: App) -> None:
    with pytest.raises(ValueError, match="599"):
        app.errorhandler(599)
    with pytest.raises(TypeError, match="errorhandler"):
        app.errorhandler(ValueError())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="errorhandler"):
        app.errorhandler(str)  # type: ignore[arg-type]


def test_abort_in_view(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        core.abort(403)

    assert client.get("/").status_code == 403


# -- registration after the first request --------------------------------------------------


@pytest.mark.parametrize(
    "register",
    [
        pytest.param(lambda app: app.route("/late")(lambda: "x"), id="route"),
        pytest.param(lambda app: app.add_url_rule("/late", "late", lambda: "x"), id="rule"),
        pytest.param(lambda app: app.before_request(lambda: None), id="before_request"),
        pytest.param(lambda app: app.before_first_request(lambda: None), id="first"),
        pytest.param(lambda app: app.after_request(lambda r: r), id="after_request"),
        pytest.param(lambda app: app.teardown_request(lambda e: None), id="teardown_request"),
        pytest.param(lambda app: app.teardown_appcontext(lambda e: None), id="teardown_app"),
        pytest.param(lambda app: app.errorhandler(404)(lambda e: "x"), id="errorhandler"),
    ],
)
def test_registering_after_first_request_is_an_error(
    app: App, client: Client, register: object
) -> None:
    client.get("/")
    with pytest.raises(RuntimeError, match="already handled its first request"):
        register(app)  # type: ignore[operator]


# -- run -----------------------------------------------------------------------------------


def test_run_passes_options_to_run_simple(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    import werkzeug.serving

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    monkeypatch.setattr(werkzeug.serving, "run_simple", lambda *a, **kw: calls.append((a, kw)))
    app.run(port=5123, passthrough_errors=True)
    ((args, kwargs),) = calls
    assert args == ("127.0.0.1", 5123, app)
    assert kwargs["threaded"] is True
    assert kwargs["passthrough_errors"] is True
    assert kwargs["use_reloader"] is False
    assert app.passthrough_errors
