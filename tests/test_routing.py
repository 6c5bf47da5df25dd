"""Routing: rules, endpoints, methods, 404/405/redirects, and the static-route fast path."""

from __future__ import annotations

import pytest
from werkzeug.routing import Rule
from werkzeug.test import Client

from core import App, request


def test_route_is_sugar_over_add_url_rule(app: App, client: Client) -> None:
    @app.route("/a")
    def view_a() -> str:
        return "a"

    def view_b() -> str:
        return "b"

    app.add_url_rule("/b", view_func=view_b)
    assert app.view_functions == {"view_a": view_a, "view_b": view_b}
    assert client.get("/a").data == b"a"
    assert client.get("/b").data == b"b"
    assert {r.endpoint for r in app.url_map.iter_rules()} == {"view_a", "view_b"}


def test_explicit_endpoint(app: App, client: Client) -> None:
    @app.route("/", endpoint="home")
    def index() -> str:
        return "home"

    assert "home" in app.view_functions
    assert client.get("/").data == b"home"


def test_rebinding_endpoint_to_another_function_raises(app: App) -> None:
    @app.route("/one")
    def view() -> str:
        return "1"

    def other() -> str:
        return "2"

    with pytest.raises(ValueError, match="Endpoint 'view' is already bound"):
        app.add_url_rule("/two", "view", other)


def test_same_function_on_two_rules(app: App, client: Client) -> None:
    def view() -> str:
        return request.path

    app.add_url_rule("/one", view_func=view)
    app.add_url_rule("/two", view_func=view)
    assert client.get("/two").data == b"/two"


def test_add_url_rule_without_endpoint_or_view(app: App) -> None:
    with pytest.raises(TypeError, match="needs an endpoint or a view_func"):
        app.add_url_rule("/x")


def test_endpoint_decorator_binds_later(app: App, client: Client) -> None:
    app.add_url_rule("/x", "x")

    @app.endpoint("x")
    def x() -> str:
        return "x"

    assert client.get("/x").data == b"x"


def test_rule_without_view_function_is_500(app: App, client: Client) -> None:
    app.add_url_rule("/x", "x")
    assert client.get("/x").status_code == 500


def test_methods_as_string_is_rejected(app: App) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        app.add_url_rule("/", "i", lambda: "", methods="POST")


def test_converters_and_view_args(app: App, client: Client) -> None:
    @app.route("/user/<int:uid>/<name>")
    def user(uid: int, name: str) -> str:
        assert request.view_args == {"uid": uid, "name": name}
        return f"{uid + 1}:{name}"

    assert client.get("/user/41/bob").data == b"42:bob"
    assert client.get("/user/x/bob").status_code == 404


def test_404(client: Client) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404
    assert b"Not Found" in resp.data


def test_405_lists_allowed_methods(app: App, client: Client) -> None:
    @app.route("/", methods=["GET", "POST"])
    def index() -> str:
        return request.method

    resp = client.delete("/")
    assert resp.status_code == 405
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert client.post("/").data == b"POST"


def test_automatic_options(app: App, client: Client) -> None:
    @app.route("/", methods=["POST"])
    def index() -> str:
        return "x"

    resp = client.options("/")
    assert resp.status_code == 200
    assert set(resp.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert resp.data == b""


def test_explicit_options_handled_by_view(app: App, client: Client) -> None:
    @app.route("/", methods=["GET", "OPTIONS"])
    def index() -> str:
        return "mine"

    assert client.options("/").data == b"mine"


def test_head_runs_get_view_without_body(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        return "body"

    resp = client.head("/")
    assert resp.status_code == 200
    assert resp.data == b""
    assert resp.headers["Content-Length"] == "4"


def test_strict_slash_redirect_keeps_query(app: App, client: Client) -> None:
    @app.route("/dir/")
    def directory() -> str:
        return "dir"

    resp = client.get("/dir?x=1")
    assert resp.status_code == 308
    assert resp.headers["Location"].endswith("/dir/?x=1")
    assert client.get("/dir/").data == b"dir"


def test_defaults_and_redirect_rules_still_work(app: App, client: Client) -> None:
    @app.route("/page/", defaults={"n": 1})
    @app.route("/page/<int:n>")
    def page(n: int) -> str:
        return str(n)

    app.add_url_rule("/old", "old", redirect_to="/page/")
    assert client.get("/page/").data == b"1"
    assert client.get("/page/5").data == b"5"
    assert client.get("/old").status_code == 308


def test_static_rule_beats_dynamic_rule(app: App, client: Client) -> None:
    @app.route("/<name>")
    def dynamic(name: str) -> str:
        return "dynamic " + name

    @app.route("/hello")
    def static() -> str:
        return "static"

    @app.route("/hello", methods=["POST"], endpoint="post_hello")
    def post_hello() -> str:
        return "static post"

    assert client.get("/hello").data == b"static"
    assert client.post("/hello").data == b"static post"
    assert client.get("/other").data == b"dynamic other"
    assert client.put("/hello").status_code == 405


def test_url_map_changes_are_seen(app: App) -> None:
    # Rules added straight to the map (not through add_url_rule) invalidate the fast path.
    app.add_url_rule("/a", "a", lambda: "a")
    with app.test_request_context("/b"):
        pass
    app.url_map.add(Rule("/b", endpoint="b"))
    app.view_functions["b"] = lambda: "b"
    assert app.test_client().get("/b").data == b"b"


@pytest.mark.parametrize(
    "path",
    ["/", "/a", "/a/", "/b", "/b/", "/c/1", "/c/x", "//a", "/a//", "/A", "/d", "/d/", "/e"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS", "DELETE"])
def test_fast_path_agrees_with_werkzeug(path: str, method: str) -> None:
    app = App("agree")
    for rule, kwargs in [
        ("/", {}),
        ("/a", {}),
        ("/b/", {}),
        ("/c/<int:n>", {}),
        ("/c/<name>", {"endpoint": "c_name"}),
        ("/d", {"methods": ["POST"]}),
        ("/d/", {"endpoint": "d_slash"}),
        ("/e", {"strict_slashes": False}),
    ]:
        endpoint = kwargs.pop("endpoint", rule)
        app.add_url_rule(rule, endpoint, lambda **kw: "x", **kwargs)

    with app.test_request_context(path, method=method) as ctx:
        req = ctx.request
        got = (req.url_rule, req.view_args, type(req.routing_exception))
        adapter = app.url_map.bind("localhost")
        try:
            rule, args = adapter.match(req.path, method, return_rule=True)
            want = (rule, args, type(None))
        except Exception as e:
            want = (None, None, type(e))
    assert got == want


def test_abort_with_response(app: App, client: Client) -> None:
    from core import Response, abort

    @app.route("/")
    def index() -> str:
        abort(Response("teapot", status=418))

    resp = client.get("/")
    assert (resp.status_code, resp.data) == (418, b"teapot")
