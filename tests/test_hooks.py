"""Hooks: before_first_request (once, under concurrency), before/after request, teardown."""

from __future__ import annotations

import threading

import pytest
from werkzeug.test import Client

from core import App, Response, g, has_request_context, request


@pytest.fixture
def calls() -> list[object]:
    return []


def test_before_first_request_runs_once(app: App, client: Client, calls: list[object]) -> None:
    app.before_first_request(lambda: calls.append("first"))
    app.add_url_rule("/", "index", lambda: "ok")
    for _ in range(3):
        client.get("/")
    assert calls == ["first"]


def test_before_first_request_once_under_many_threads(app: App, calls: list[object]) -> None:
    n = 32
    barrier = threading.Barrier(n)
    lock = threading.Lock()
    entered: list[int] = []
    all_in = threading.Event()
    inner = app.wsgi_app

    def counting(environ, start_response):  # type: ignore[no-untyped-def]
        with lock:
            entered.append(1)
            if len(entered) == n:
                all_in.set()
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]

    @app.before_first_request
    def first() -> None:
        calls.append(threading.get_ident())
        # Keep the first request busy until every request has entered the app.
        calls.append(all_in.wait(10))

    app.add_url_rule("/", "index", lambda: "ok")
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = app.test_client()
            barrier.wait(10)
            statuses.append(client.get("/").status_code)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    assert errors == []
    assert statuses == [200] * n
    assert len(calls) == 2
    assert calls[1] is True, "the other requests never arrived while the first one ran"


def test_before_first_request_failure_is_retried(
    app: App, client: Client, calls: list[object]
) -> None:
    @app.before_first_request
    def first() -> None:
        calls.append("try")
        if len(calls) == 1:
            raise RuntimeError("not yet")

    app.add_url_rule("/", "index", lambda: "ok")
    assert client.get("/").status_code == 500
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    assert calls == ["try", "try"]


def test_before_request_order_and_short_circuit(
    app: App, client: Client, calls: list[object]
) -> None:
    app.before_request(lambda: calls.append("one"))
    app.before_request(lambda: calls.append("two"))

    @app.before_request
    def gate() -> str | None:
        calls.append("gate")
        return "blocked" if request.args.get("block") else None

    app.before_request(lambda: calls.append("after-gate"))

    @app.route("/")
    def index() -> str:
        calls.append("view")
        return "view"

    assert client.get("/").data == b"view"
    assert calls == ["one", "two", "gate", "after-gate", "view"]
    calls.clear()
    assert client.get("/?block=1").data == b"blocked"
    assert calls == ["one", "two", "gate"]


def test_probe_style_insert_at_index_zero(app: App, client: Client, calls: list[object]) -> None:
    app.before_request(lambda: calls.append("registered"))
    app.before_request_funcs.insert(0, lambda: calls.append("inserted"))
    app.add_url_rule("/", "index", lambda: "ok")
    client.get("/")
    assert calls == ["inserted", "registered"]


def test_after_request_reverse_order(app: App, client: Client, calls: list[object]) -> None:
    def make(name: str):  # type: ignore[no-untyped-def]
        def hook(response: Response) -> Response:
            calls.append(name)
            response.headers.add("X-Hook", name)
            return response

        return hook

    app.after_request(make("first"))
    app.after_request(make("second"))
    app.add_url_rule("/", "index", lambda: "ok")
    resp = client.get("/")
    assert calls == ["second", "first"]
    assert resp.headers.getlist("X-Hook") == ["second", "first"]


def test_after_request_can_replace_response(app: App, client: Client) -> None:
    app.after_request(lambda r: Response("replaced", status=202))
    app.add_url_rule("/", "index", lambda: "ok")
    resp = client.get("/")
    assert (resp.status_code, resp.data) == (202, b"replaced")


def test_after_request_must_return_a_response(
    app: App, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    @app.after_request
    def forgot(response: Response) -> None:  # type: ignore[return]
        pass

    app.add_url_rule("/", "index", lambda: "ok")
    assert client.get("/").status_code == 500
    assert "must return the response" in caplog.text


def test_after_request_runs_on_handled_errors(app: App, client: Client) -> None:
    app.after_request(lambda r: (r.headers.set("X-After", "1"), r)[1])
    assert client.get("/missing").headers["X-After"] == "1"


def test_teardowns_get_none_on_success(app: App, client: Client, calls: list[object]) -> None:
    app.teardown_request(lambda exc: calls.append(("request", exc, has_request_context())))
    app.teardown_appcontext(lambda exc: calls.append(("app", exc, g.get("x"))))

    @app.route("/")
    def index() -> str:
        g.x = "gx"
        return "ok"

    assert client.get("/").data == b"ok"
    # teardown_request sees the request; teardown_appcontext runs after it is gone, with g.
    assert calls == [("request", None, True), ("app", None, "gx")]


def test_teardowns_get_the_exception(app: App, client: Client, calls: list[object]) -> None:
    app.teardown_request(lambda exc: calls.append(("request", type(exc))))
    app.teardown_appcontext(lambda exc: calls.append(("app", type(exc))))

    @app.route("/")
    def index() -> str:
        raise KeyError("x")

    assert client.get("/").status_code == 500
    assert calls == [("request", KeyError), ("app", KeyError)]


def test_handled_http_error_is_not_passed_to_teardown(
    app: App, client: Client, calls: list[object]
) -> None:
    app.teardown_request(lambda exc: calls.append(exc))
    assert client.get("/missing").status_code == 404
    assert calls == [None]


def test_all_teardowns_run_even_if_one_raises(
    app: App, client: Client, calls: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(exc: BaseException | None) -> None:
        calls.append("boom")
        raise RuntimeError("teardown broke")

    app.teardown_request(lambda exc: calls.append("request-1"))
    app.teardown_request(boom)
    app.teardown_request(lambda exc: calls.append("request-3"))
    app.teardown_appcontext(boom)
    app.teardown_appcontext(lambda exc: calls.append("app-2"))
    app.add_url_rule("/", "index", lambda: "body")
    resp = client.get("/")
    # The response was built before teardown; it is sent unchanged, and the error is logged.
    assert (resp.status_code, resp.data) == (200, b"body")
    assert calls == ["request-3", "boom", "request-1", "app-2", "boom"]
    assert "teardown broke" in caplog.text


def test_teardown_errors_propagate_with_passthrough(app: App, client: Client) -> None:
    app.config["PASSTHROUGH_ERRORS"] = True

    @app.teardown_request
    def boom(exc: BaseException | None) -> None:
        raise RuntimeError("teardown broke")

    app.add_url_rule("/", "index", lambda: "body")
    with pytest.raises(RuntimeError, match="teardown broke"):
        client.get("/")


def test_teardown_runs_when_before_request_raises(
    app: App, client: Client, calls: list[object]
) -> None:
    @app.before_request
    def broken() -> None:
        raise ValueError("hook")

    app.teardown_request(lambda exc: calls.append(type(exc)))
    app.add_url_rule("/", "index", lambda: "ok")
    assert client.get("/").status_code == 500
    assert calls == [ValueError]


def test_teardown_runs_when_after_request_raises(
    app: App, client: Client, calls: list[object]
) -> None:
    @app.after_request
    def broken(response: Response) -> Response:
        raise ValueError("after")

    app.teardown_request(lambda exc: calls.append(type(exc)))
    app.add_url_rule("/", "index", lambda: "ok")
    assert client.get("/").status_code == 500
    assert calls == [ValueError]


def test_app_context_teardown(app: App, calls: list[object]) -> None:
    app.teardown_appcontext(lambda exc: calls.append(exc))
    with app.app_context():
        pass
    assert calls == [None]
    err = ValueError("x")
    with pytest.raises(ValueError), app.app_context():
        raise err
    assert calls == [None, err]


def test_nested_app_context_tears_down_once(app: App, calls: list[object]) -> None:
    app.teardown_appcontext(lambda exc: calls.append("down"))
    ctx = app.app_context()
    with ctx:
        with ctx:
            pass
        assert calls == []
    assert calls == ["down"]
