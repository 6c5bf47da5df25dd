"""Contexts and proxies: availability, freshness, nesting, several apps, storage, threads."""

from __future__ import annotations

import threading
import typing as t
from contextvars import ContextVar

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

import core.storage
from core import (
    App,
    copy_current_request_context,
    current_app,
    g,
    has_app_context,
    has_request_context,
    request,
    session,
)
from core.storage import ContextStorage


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        pytest.param(lambda: request.args, "outside of request context", id="request"),
        pytest.param(lambda: session.get("x"), "outside of request context", id="session"),
        pytest.param(lambda: current_app.name, "outside of application context", id="app"),
        pytest.param(lambda: g.x, "outside of application context", id="g"),
    ],
)
def test_proxies_outside_context_explain(proxy: t.Callable[[], object], message: str) -> None:
    with pytest.raises(RuntimeError, match=message) as info:
        proxy()
    text = str(info.value)
    # What happened, why, and how to fix it: three paragraphs.
    assert text.count("\n\n") == 2
    assert "To solve this" in text


def test_has_context_helpers(app: App) -> None:
    assert not has_app_context()
    assert not has_request_context()
    with app.app_context():
        assert has_app_context()
        assert not has_request_context()
    with app.test_request_context():
        assert has_app_context()
        assert has_request_context()
        assert current_app._get_current_object() is app  # type: ignore[attr-defined]
    assert not has_app_context()


def test_test_request_context(app: App) -> None:
    with app.test_request_context("/p?q=1", method="POST", data={"f": "v"}) as ctx:
        assert request.path == "/p"
        assert request.method == "POST"
        assert request.args["q"] == "1"
        assert request.form["f"] == "v"
        assert ctx.request is request._get_current_object()  # type: ignore[attr-defined]


def test_g_is_fresh_for_every_request(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        before = g.get("count", 0)
        g.count = before + 1
        return str(before)

    assert [client.get("/").data for _ in range(3)] == [b"0", b"0", b"0"]


def test_g_is_fresh_even_with_a_stale_app_context_active(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        return repr(g.get("stale"))

    with app.app_context():
        g.stale = "left over"
        assert client.get("/").data == b"None"
        # The request restored what was active before it, by token.
        assert g.stale == "left over"


def test_g_namespace_api(app: App) -> None:
    with app.app_context():
        assert g.get("a") is None
        assert g.get("a", 1) == 1
        g.a = 2
        assert "a" in g
        assert "b" not in g
        assert g.setdefault("a", 3) == 2
        assert g.setdefault("b", 4) == 4
        assert sorted(g) == ["a", "b"]
        assert g.pop("a") == 2
        assert g.pop("a", None) is None
        with pytest.raises(KeyError):
            g.pop("a")
        with pytest.raises(AttributeError):
            g.missing  # noqa: B018
        assert repr(g) == "<core.g of 'test_app'>"


def test_current_app_with_two_apps_in_one_process() -> None:
    apps = {name: App(name) for name in ("front", "back")}
    for name, a in apps.items():

        def view(name: str = name) -> str:
            g.who = name
            return f"{current_app.name}:{g.who}:{request.script_root}"

        a.add_url_rule("/", "index", view)
    mw = DispatcherMiddleware(apps["front"], {"/back": apps["back"]})
    client = Client(mw)
    assert client.get("/").data == b"front:front:"
    assert client.get("/back/").data == b"back:back:/back"


def test_nested_app_context_of_another_app(app: App, client: Client) -> None:
    other = App("other")
    seen: list[object] = []

    @app.route("/")
    def index() -> str:
        g.mine = "A"
        with other.app_context():
            seen.append((current_app.name, g.get("mine"), has_request_context()))
            g.mine = "B"
        seen.append((current_app.name, g.mine, request.path))
        return "ok"

    assert client.get("/").data == b"ok"
    assert seen == [("other", None, True), ("test_app", "A", "/")]


def test_exception_in_view_leaves_nothing_behind(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        raise ValueError

    assert client.get("/").status_code == 500
    assert not has_request_context()
    assert not has_app_context()


def test_base_exception_in_view_still_pops(app: App, client: Client) -> None:
    @app.route("/")
    def index() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.get("/")
    assert not has_request_context()


def test_pop_without_push_raises(app: App) -> None:
    with pytest.raises(RuntimeError, match="not pushed"):
        app.app_context().pop()
    with pytest.raises(RuntimeError, match="not pushed"):
        app.test_request_context().pop()


def test_manual_push_pop(app: App) -> None:
    ctx = app.test_request_context("/x")
    ctx.push()
    try:
        assert request.path == "/x"
        assert ctx.app_ctx is not None
        assert current_app._get_current_object() is app  # type: ignore[attr-defined]
    finally:
        ctx.pop()
    assert not has_app_context()


def test_nested_push_of_one_request_context(app: App) -> None:
    downs: list[object] = []
    app.teardown_request(lambda exc: downs.append(exc))
    ctx = app.test_request_context()
    with ctx:
        g.x = 1
        with ctx:
            assert g.x == 1
        assert downs == []
        assert g.x == 1
    assert downs == [None]


# -- storage ---------------------------------------------------------------------------------


class RecordingSlot:
    """A slot that keeps ContextVar semantics and records which tokens were reset."""

    def __init__(self, name: str) -> None:
        self.var: ContextVar[t.Any] = ContextVar(name)
        self.set_tokens: list[object] = []
        self.reset_tokens: list[object] = []

    def get(self, default: None, /) -> t.Any:
        return self.var.get(default)

    def set(self, value: t.Any, /) -> t.Any:
        token = self.var.set(value)
        self.set_tokens.append(token)
        return token

    def reset(self, token: t.Any, /) -> None:
        self.reset_tokens.append(token)
        self.var.reset(token)


def test_contexts_reset_by_the_token_they_pushed_with(app: App, client: Client) -> None:
    app_slot, req_slot = RecordingSlot("a"), RecordingSlot("r")
    core.storage.use_storage(ContextStorage("recording", app_slot, req_slot))

    @app.route("/")
    def index() -> str:
        return str(has_request_context())

    assert client.get("/").data == b"True"
    with app.app_context():
        pass
    assert len(app_slot.set_tokens) == 2
    assert app_slot.reset_tokens == app_slot.set_tokens
    assert req_slot.reset_tokens == req_slot.set_tokens
    assert app_slot.get(None) is None
    assert req_slot.get(None) is None


def test_pop_uses_the_slot_it_pushed_with(app: App) -> None:
    first = ContextStorage("first", ContextVar("a1"), ContextVar("r1"))
    core.storage.use_storage(first)
    ctx = app.app_context()
    ctx.push()
    with pytest.raises(RuntimeError, match="while an app or request context is active"):
        core.storage.use_storage(core.storage.default_storage)
    # Force a swap underneath the pushed context, as a broken start-up might.
    core.storage._storage = core.storage.default_storage
    core.storage.app_slot = core.storage.default_storage.app
    core.storage.request_slot = core.storage.default_storage.request
    ctx.pop()
    assert first.app.get(None) is None


class SharedSlot:
    """A deliberately broken slot: one value for the whole process, reset restores nothing."""

    def __init__(self) -> None:
        self.value: t.Any = None

    def get(self, default: None, /) -> t.Any:
        return self.value if self.value is not None else default

    def set(self, value: t.Any, /) -> t.Any:
        self.value = value
        return object()

    def reset(self, token: t.Any, /) -> None:
        pass


def test_broken_storage_serves_requests_and_shows_the_residue(app: App, client: Client) -> None:
    # The core never raises "popped wrong context": the leak must show, not a 500.
    app_slot, req_slot = SharedSlot(), SharedSlot()
    core.storage.use_storage(ContextStorage("no-reset", app_slot, req_slot))

    @app.route("/")
    def index() -> str:
        return request.args["t"]

    assert client.get("/?t=1").data == b"1"
    assert client.get("/?t=2").data == b"2"
    assert has_request_context()  # the residue of the last request, visible as designed
    app_slot.value = req_slot.value = None


# -- threads -------------------------------------------------------------------------------


def test_copy_current_request_context_in_a_thread(app: App, client: Client) -> None:
    results: list[object] = []

    @app.route("/")
    def index() -> str:
        g.in_view = True
        session["k"] = "v"

        @copy_current_request_context
        def work() -> None:
            results.append(
                (
                    request.args["token"],
                    session.get("k"),
                    current_app.name,
                    "in_view" in g,
                    has_request_context(),
                )
            )

        def run() -> None:
            work()
            results.append((has_request_context(), has_app_context()))

        th = threading.Thread(target=run)
        th.start()
        th.join(10)
        return "ok"

    assert client.get("/?token=abc").data == b"ok"
    assert results == [("abc", "v", "test_app", False, True), (False, False)]


def test_copy_current_request_context_in_a_greenlet(app: App, client: Client) -> None:
    gevent = pytest.importorskip("gevent", reason="gevent is not installed")
    results: list[object] = []

    @app.route("/")
    def index() -> str:
        g.in_view = True

        @copy_current_request_context
        def work() -> None:
            gevent.sleep(0)  # yield while holding the copied context
            results.append((request.args["token"], current_app.name, "in_view" in g))

        def run() -> None:
            # A new greenlet starts with an empty contextvars.Context: nothing is visible
            # before the copy is pushed, and nothing is left after it pops.
            results.append(has_request_context())
            work()
            results.append((has_request_context(), has_app_context()))

        gevent.spawn(run).join(10)
        results.append(request.args["token"])  # the view's own context is intact
        return "ok"

    assert client.get("/?token=abc").data == b"ok"
    assert results == [False, ("abc", "test_app", False), (False, False), "abc"]


def test_copy_current_request_context_after_the_request_ended(app: App, client: Client) -> None:
    results: list[object] = []
    handed_over: list[t.Callable[[], None]] = []

    @app.route("/")
    def index() -> str:
        handed_over.append(copy_current_request_context(lambda: results.append(request.path)))
        return "ok"

    client.get("/later")
    client.get("/")
    th = threading.Thread(target=handed_over[0])
    th.start()
    th.join(10)
    assert results == ["/"]


def test_copy_current_request_context_needs_a_request() -> None:
    with pytest.raises(RuntimeError, match="needs an active request context"):
        copy_current_request_context(lambda: None)


def test_overlapping_requests_in_two_threads_are_isolated(app: App) -> None:
    started = threading.Barrier(2)
    seen: dict[str, list[object]] = {}

    @app.route("/")
    def index() -> str:
        token = request.args["t"]
        g.token = token
        started.wait(10)  # both requests are inside their views now
        seen[token] = [request.args["t"], g.token]
        return token

    out: dict[str, bytes] = {}

    def worker(token: str) -> None:
        out[token] = app.test_client().get(f"/?t={token}").data

    threads = [threading.Thread(target=worker, args=(x,)) for x in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert out == {"a": b"a", "b": b"b"}
    assert seen == {"a": ["a", "a"], "b": ["b", "b"]}


# -- proxy behaviour ---------------------------------------------------------------------------


def test_proxies_behave_like_their_objects(app: App) -> None:
    from core import Request

    with app.test_request_context("/?a=1"):
        assert isinstance(request, Request)
        assert request.args["a"] == "1"
        g.x = 1
        assert g.x == 1
        del g.x
        assert "x" not in g
        with pytest.raises(AttributeError):
            request.no_such_attribute  # noqa: B018
        session["k"] = "v"
        assert session["k"] == "v"
        assert len(session) == 1
        assert dict(session) == {"k": "v"}
        assert current_app.config is app.config


def test_unbound_proxies_are_inspectable() -> None:
    from core import Request

    assert repr(request) == "<_ContextProxy unbound>"
    assert not request
    assert not isinstance(request, Request)


def test_core_imports_nothing_heavy_and_not_the_harness() -> None:
    import subprocess
    import sys

    code = (
        "import sys, core\n"
        "bad = {'harness', 'flask', 'gevent', 'greenlet', 'gunicorn', 'locust'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_g_is_created_lazily(app: App, client: Client) -> None:
    ctx = app.app_context()
    with ctx:
        assert ctx._g is None
        g.x = 1
        assert ctx._g is not None
    seen: list[object] = []
    app.add_url_rule("/", "index", lambda: "ok")
    app.teardown_request(lambda exc: seen.append(t.cast(t.Any, request)._get_current_object()))
    client.get("/")
    assert len(seen) == 1
