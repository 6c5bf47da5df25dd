"""Helpers: url_for, jsonify, abort, stream_with_context."""

from __future__ import annotations

import dataclasses
import threading
import typing as t
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from werkzeug.routing import BuildError
from werkzeug.test import Client, EnvironBuilder

from core import (
    App,
    g,
    has_app_context,
    has_request_context,
    jsonify,
    request,
    session,
    stream_with_context,
    url_for,
)

# -- url_for ---------------------------------------------------------------------------------


@pytest.fixture
def routed(app: App) -> App:
    app.add_url_rule("/", "index", lambda: "i")
    app.add_url_rule("/user/<int:uid>", "user", lambda uid: str(uid))
    app.add_url_rule("/post", "post", lambda: "p", methods=["POST"])
    return app


def test_url_for_in_a_request(routed: App) -> None:
    with routed.test_request_context("/", base_url="http://example.com/root"):
        assert url_for("index") == "/root/"
        assert url_for("user", uid=3) == "/root/user/3"
        assert url_for("user", uid=3, q="a b") == "/root/user/3?q=a+b"
        assert url_for("index", _external=True) == "http://example.com/root/"
        assert url_for("index", _scheme="https", _external=True) == "https://example.com/root/"
        assert url_for("index", _anchor="top") == "/root/#top"
        assert url_for("post", _method="POST") == "/root/post"


def test_url_for_from_a_view(routed: App, client: Client) -> None:
    routed.add_url_rule("/link", "link", lambda: url_for("user", uid=7))
    assert client.get("/link").data == b"/user/7"


def test_url_for_errors(routed: App) -> None:
    with routed.test_request_context():
        with pytest.raises(BuildError):
            url_for("missing")
        with pytest.raises(ValueError, match="needs _external=True"):
            url_for("index", _scheme="https", _external=False)


def test_url_for_outside_a_request_needs_server_name(routed: App) -> None:
    with routed.app_context():
        with pytest.raises(RuntimeError, match="SERVER_NAME is not set"):
            url_for("index")
        routed.config["SERVER_NAME"] = "example.org"
        assert url_for("user", uid=1) == "http://example.org/user/1"
        assert url_for("user", uid=1, _external=False) == "/user/1"


# -- jsonify ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_jsonify_shapes(app: App) -> None:
    with app.app_context():
        assert jsonify({"a": 1}).get_data() == b'{"a":1}\n'
        assert jsonify(a=1).get_data() == b'{"a":1}\n'
        assert jsonify(1, 2).get_data() == b"[1,2]\n"
        assert jsonify().get_data() == b"{}\n"
        assert jsonify([]).mimetype == "application/json"
        with pytest.raises(TypeError, match="not both"):
            jsonify(1, a=2)


def test_jsonify_outside_a_context() -> None:
    assert jsonify(x=1).get_data() == b'{"x":1}\n'


def test_jsonify_types() -> None:
    u = uuid.UUID(int=1)
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    rv = jsonify(u=u, when=when, p=Point(1, 2)).get_json()
    assert rv == {"u": str(u), "when": "Tue, 02 Jan 2024 03:04:05 GMT", "p": {"x": 1, "y": 2}}
    with pytest.raises(TypeError, match="not JSON serializable: <object"):
        jsonify(object())


def test_jsonify_in_view(app: App, client: Client) -> None:
    app.add_url_rule("/", "index", lambda: jsonify(ok=True))
    assert client.get("/").get_json() == {"ok": True}


# -- stream_with_context -----------------------------------------------------------------------


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
    pass


@pytest.fixture
def events(app: App) -> list[object]:
    rv: list[object] = []
    app.teardown_request(lambda exc: rv.append(("teardown_request", exc)))
    app.teardown_appcontext(lambda exc: rv.append(("teardown_appcontext", exc)))
    return rv


@pytest.fixture
def streaming(app: App, events: list[object]) -> App:
    @app.route("/stream")
    def stream() -> object:
        g.where = "g"
        session["s"] = "session"

        def generate() -> Iterator[str]:
            try:
                yield request.args["t"]
                yield g.where
                events.append("middle")
                yield session["s"]
                if request.args.get("fail"):
                    raise ValueError("mid-stream")
            finally:
                events.append(("generator finally", has_request_context()))

        return stream_with_context(generate())

    return app


def test_stream_keeps_request_g_and_session(streaming: App, client: Client) -> None:
    assert client.get("/stream?t=tok").data == b"tokgsession"


def test_stream_pops_between_chunks_and_tears_down_at_the_end(
    streaming: App, events: list[object]
) -> None:
    environ = EnvironBuilder("/stream", query_string="t=tok").get_environ()
    app_iter = streaming(environ, _start_response)
    # wsgi_app returned: nothing is active in this thread, teardown has not run.
    assert not has_request_context() and not has_app_context()
    assert events == []
    it = iter(app_iter)
    assert next(it) == b"tok"
    assert not has_request_context()
    assert list(it) == [b"g", b"session"]
    t.cast(t.Any, app_iter).close()
    assert events == [
        "middle",
        ("generator finally", True),
        ("teardown_request", None),
        ("teardown_appcontext", None),
    ]
    assert not has_request_context() and not has_app_context()


def test_stream_closed_without_iterating(streaming: App, events: list[object]) -> None:
    environ = EnvironBuilder("/stream", query_string="t=tok").get_environ()
    app_iter = streaming(environ, _start_response)
    t.cast(t.Any, app_iter).close()
    # The generator never started, so its finally does not run; teardown does.
    assert events == [("teardown_request", None), ("teardown_appcontext", None)]
    t.cast(t.Any, app_iter).close()  # closing twice is harmless
    assert len(events) == 2


def test_stream_closed_early_by_a_departing_client(streaming: App, events: list[object]) -> None:
    environ = EnvironBuilder("/stream", query_string="t=tok").get_environ()
    app_iter = streaming(environ, _start_response)
    assert next(iter(app_iter)) == b"tok"
    t.cast(t.Any, app_iter).close()
    assert events == [
        ("generator finally", True),
        ("teardown_request", None),
        ("teardown_appcontext", None),
    ]


def test_stream_error_reaches_teardown(streaming: App, events: list[object]) -> None:
    environ = EnvironBuilder("/stream", query_string="t=tok&fail=1").get_environ()
    app_iter = streaming(environ, _start_response)
    with pytest.raises(ValueError, match="mid-stream"):
        list(app_iter)
    t.cast(t.Any, app_iter).close()
    kinds = [e[0] if isinstance(e, tuple) else e for e in events]
    assert kinds == ["middle", "generator finally", "teardown_request", "teardown_appcontext"]
    assert isinstance(t.cast(tuple[str, object], events[2])[1], ValueError)


def test_stream_iterated_in_another_thread(streaming: App, events: list[object]) -> None:
    environ = EnvironBuilder("/stream", query_string="t=tok").get_environ()
    app_iter = streaming(environ, _start_response)
    out: list[object] = []

    def server_thread() -> None:
        out.append(b"".join(app_iter))
        t.cast(t.Any, app_iter).close()
        out.append((has_request_context(), has_app_context()))

    th = threading.Thread(target=server_thread)
    th.start()
    th.join(10)
    assert out == [b"tokgsession", (False, False)]
    assert events[-2:] == [("teardown_request", None), ("teardown_appcontext", None)]


def test_stream_decorator_form(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> object:
        @stream_with_context
        def generate() -> Iterator[str]:
            yield request.path

        return generate()

    assert client.get("/").data == b"/"


def test_stream_consumed_inside_the_view(app: App, client: Client, events: list[object]) -> None:
    @app.route("/")
    def index() -> str:
        return "".join(stream_with_context(iter(["a", request.path])))

    assert client.get("/").data == b"a/"
    assert events == [("teardown_request", None), ("teardown_appcontext", None)]


def test_stream_created_but_not_returned(app: App, client: Client, events: list[object]) -> None:
    @app.route("/")
    def index() -> str:
        stream_with_context(iter(["never"]))
        return "other"

    assert client.get("/").data == b"other"
    assert events == [("teardown_request", None), ("teardown_appcontext", None)]


def test_stream_needs_a_request_context() -> None:
    with pytest.raises(RuntimeError, match="needs an active request context"):
        stream_with_context(iter(["x"]))
