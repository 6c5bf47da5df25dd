"""harness.probe on core.App and flask.Flask, through each framework's test client."""

from __future__ import annotations

import json
import os
import sys
import typing as t
from collections.abc import Callable, Iterator

import pytest

import core
from harness import backends
from harness.probe import (
    SECRET_HEADER,
    current_token,
    install_probe,
    observe,
)
from harness.probe.frameworks import FailingSessionInterface, Framework
from harness.probe.middleware import ProbeQuery, parse_probe_query
from harness.probe.state import InjectedFailure, RecentTokens
from harness.protocol import FAIL_PHASES, PHASES, PROBE_PATH, app_observation_names
from harness.verdict import check_probe_response

flask = pytest.importorskip("flask", reason="flask is the reference framework (dev extra)")

FRAMEWORKS = [pytest.param("core", id="core"), pytest.param("flask", id="flask")]


def make_app(framework: str, *, secret: bool = True) -> t.Any:
    if framework == "core":
        app: t.Any = core.App("probe_test_core")
    else:
        app = flask.Flask("probe_test_flask")
    if secret:
        app.config["SECRET_KEY"] = "probe test key"
    return app


def fw_module(framework: str) -> t.Any:
    return core if framework == "core" else flask


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


@pytest.fixture
def probe_app(framework: str) -> t.Any:
    return install_probe(make_app(framework))


def get_probe(app: t.Any, token: str, sleep_ms: float = 0) -> tuple[int, dict[str, t.Any], t.Any]:
    client = app.test_client()
    resp = client.get(f"{PROBE_PATH}?token={token}&sleep_ms={sleep_ms:g}")
    return resp.status_code, json.loads(resp.data), resp


def test_every_phase_is_observed_and_clean(probe_app: t.Any) -> None:
    status, doc, resp = get_probe(probe_app, "tok-1", sleep_ms=1)
    assert status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert doc["token"] == "tok-1"
    assert doc["app"] == probe_app.name
    assert {o[0] for o in doc["obs"]} == set(PHASES)
    assert check_probe_response("tok-1", 200, resp.data, mode="test-client") == []
    names = {(o[0], o[1]) for o in doc["obs"]}
    for phase in ("before_request", "view", "after_request", "teardown_request"):
        assert (phase, "request") in names
    for phase in ("view", "after_request", "teardown_request", "teardown_appcontext"):
        assert (phase, "g") in names
        assert (phase, "current_app") in names
    assert ("view", "session") in names
    assert ("before_request", "residue.session") in names


def test_phases_come_in_order_and_content_length_is_exact(probe_app: t.Any) -> None:
    _, doc, resp = get_probe(probe_app, "tok-2")
    order = [PHASES.index(o[0]) for o in doc["obs"]]
    assert order == sorted(order)
    assert int(resp.headers["Content-Length"]) == len(resp.data)


def test_worker_identity(probe_app: t.Any) -> None:
    import os
    import threading

    import gevent

    _, doc, _ = get_probe(probe_app, "tok-3")
    assert doc["worker"]["pid"] == os.getpid()
    assert doc["worker"]["thread"] == threading.get_ident()
    # A thread's own greenlet is no greenlet unit: a new thread that reuses an old one's ident
    # must not look like a second greenlet of that thread.
    assert doc["worker"]["greenlet"] is None
    threads: list[t.Any] = []
    for _ in range(2):
        thread = threading.Thread(target=lambda: threads.append(get_probe(probe_app, "tok-4")[1]))
        thread.start()
        thread.join()
    assert [d["worker"]["greenlet"] for d in threads] == [None, None]
    spawned = [gevent.spawn(get_probe, probe_app, f"tok-{i}") for i in (5, 6)]
    greenlets = [g.get()[1]["worker"]["greenlet"] for g in spawned]
    assert all(isinstance(g, int) for g in greenlets) and greenlets[0] != greenlets[1]


def test_teardown_observations_are_spliced_in(framework: str) -> None:
    app = make_app(framework)
    install_probe(app)
    seen: dict[str, t.Any] = {}

    @app.teardown_request
    def app_teardown(exc: BaseException | None) -> None:
        observe("app_teardown", current_token())

    @app.teardown_appcontext
    def app_ctx_teardown(exc: BaseException | None) -> None:
        observe("app_ctx_teardown", current_token())
        seen["token"] = current_token()

    _, doc, resp = get_probe(app, "late-1")
    assert ["teardown_request", "app_teardown", "late-1"] in doc["obs"]
    assert ["teardown_appcontext", "app_ctx_teardown", "late-1"] in doc["obs"]
    assert seen["token"] == "late-1"
    assert check_probe_response("late-1", 200, resp.data, mode="m") == []


def test_app_hooks_observe_in_their_phase(framework: str) -> None:
    app = make_app(framework)
    mod = fw_module(framework)

    @app.before_request
    def before() -> None:
        observe("user", mod.request.args["token"])

    @app.after_request
    def after(response: t.Any) -> t.Any:
        observe("user", mod.request.args["token"])
        return response

    install_probe(app)
    _, doc, resp = get_probe(app, "hooked")
    assert ["before_request", "user", "hooked"] in doc["obs"]
    assert ["after_request", "user", "hooked"] in doc["obs"]
    # The probe's before_request runs before the app's: its residue check comes first.
    names = [o[1] for o in doc["obs"] if o[0] == "before_request"]
    assert names.index("residue.g") < names.index("user")
    assert check_probe_response("hooked", 200, resp.data, mode="m") == []


def test_observe_records_a_wrong_value_as_a_leak(framework: str) -> None:
    app = make_app(framework)

    @app.before_request
    def before() -> None:
        observe("cache", "someone-else")

    install_probe(app)
    _, _, resp = get_probe(app, "mine")
    [ev] = check_probe_response("mine", 200, resp.data, mode="m")
    # "someone-else" is no probe token: the probe reports its length, never the app's data.
    assert (ev.phase, ev.name, ev.expected, ev.seen) == (
        "before_request",
        "cache",
        "mine",
        "<not a probe token: 12 characters>",
    )


def test_observe_shows_another_requests_token(framework: str) -> None:
    app = make_app(framework)
    last: list[str | None] = [None]

    @app.before_request
    def before() -> None:
        if last[0] is not None:
            observe("cache", last[0])  # a "cache" holding the previous request's token
        last[0] = current_token()

    install_probe(app)
    get_probe(app, "first-request")
    _, _, resp = get_probe(app, "second-request")
    [ev] = check_probe_response("second-request", 200, resp.data, mode="m")
    assert (ev.name, ev.expected, ev.seen) == ("cache", "second-request", "first-request")


def test_the_probe_is_off_unless_switched_on(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTXBENCH_PROBE", raising=False)
    app = install_probe(make_app(framework))
    assert app.test_client().get(f"{PROBE_PATH}?token=t").status_code == 404
    monkeypatch.setenv("CTXBENCH_PROBE", "0")
    app = install_probe(make_app(framework))
    assert app.test_client().get(f"{PROBE_PATH}?token=t").status_code == 404
    monkeypatch.setenv("CTXBENCH_PROBE", "1")
    assert get_probe(install_probe(make_app(framework)), "on")[0] == 200
    monkeypatch.delenv("CTXBENCH_PROBE")
    assert get_probe(install_probe(make_app(framework), enabled=True), "forced")[0] == 200


def test_a_probe_with_a_secret_answers_only_with_it(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", "s3cret")
    app = install_probe(make_app(framework))
    client = app.test_client()
    url = f"{PROBE_PATH}?token=tok"
    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: ""}):
        resp = client.get(url, headers=headers)
        assert resp.status_code == 404, headers
        assert b"probe" not in resp.data.lower()
    resp = client.get(url, headers={SECRET_HEADER: "s3cret"})
    assert resp.status_code == 200
    assert check_probe_response("tok", 200, resp.data, mode="m") == []
    other = install_probe(make_app(framework), secret="given")
    assert other.test_client().get(url, headers={SECRET_HEADER: "given"}).status_code == 200
    assert other.test_client().get(url, headers={SECRET_HEADER: "s3cret"}).status_code == 404


@pytest.fixture
def c_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Sets variables in the C library's environment only, as pyuwsgi applies an .ini's
    ``env =`` lines after Python made ``os.environ``; unsets them afterwards."""
    names: list[str] = []

    def put(name: str, value: str) -> None:
        monkeypatch.delenv(name, raising=False)
        os.putenv(name, value)  # not os.environ: that is what the server embedding Python does
        names.append(name)

    yield put
    for name in names:
        os.unsetenv(name)


def test_the_probe_reads_what_the_server_set_in_the_c_environment(
    framework: str, monkeypatch: pytest.MonkeyPatch, c_environ: Callable[[str, str], None]
) -> None:
    """uWSGI as pyuwsgi sets an .ini's ``env = CTXBENCH_PROBE_SECRET=...`` in the C library's
    environment only: a probe that read ``os.environ`` alone answered anyone, without the
    secret the deployment was given (and an .ini's ``env = CTXBENCH_PROBE=1`` mounted nothing)."""
    c_environ("CTXBENCH_PROBE", "1")
    c_environ("CTXBENCH_PROBE_SECRET", "from-the-ini")
    assert "CTXBENCH_PROBE_SECRET" not in os.environ
    client = install_probe(make_app(framework)).test_client()
    url = f"{PROBE_PATH}?token=tok"
    assert client.get(url).status_code == 404
    assert client.get(url, headers={SECRET_HEADER: "from-the-ini"}).status_code == 200
    # os.environ still comes first: a value Python itself set there wins.
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", "from-python")
    client = install_probe(make_app(framework)).test_client()
    assert client.get(url, headers={SECRET_HEADER: "from-python"}).status_code == 200


def test_observe_outside_a_probe_request_raises() -> None:
    assert current_token() is None
    with pytest.raises(RuntimeError, match="outside a probe request"):
        observe("x", 1)


def test_observe_on_an_ordinary_route_raises_and_current_token_is_none(framework: str) -> None:
    app = make_app(framework)
    install_probe(app)
    rv: dict[str, t.Any] = {}

    @app.route("/plain")
    def plain() -> str:
        rv["token"] = current_token()
        try:
            observe("x", 1)
        except RuntimeError as exc:
            rv["error"] = str(exc)
        return "ok"

    resp = app.test_client().get("/plain?token=abc")
    assert resp.status_code == 200
    assert resp.data == b"ok"
    assert rv["token"] is None
    assert "outside a probe request" in rv["error"]


def test_stale_request_context_shows_as_residue(framework: str) -> None:
    app = install_probe(make_app(framework))
    # A request context left pushed in this thread is what a broken storage leaves behind.
    with app.test_request_context(f"{PROBE_PATH}?token=stale-7"):
        _, doc, resp = get_probe(app, "fresh-1")
    assert ["entry", "residue.request_context", "stale-7"] in doc["obs"]
    evidence = check_probe_response("fresh-1", 200, resp.data, mode="m")
    found = {(e.phase, e.name): e.seen for e in evidence}
    assert found[("entry", "residue.request_context")] == "stale-7"
    if framework == "flask":
        # Flask reuses the stale app context instead of pushing its own, so it never tears one
        # down for this request: a skipped phase, reported as a leak, not a protocol error.
        assert found[("teardown_appcontext", "skipped")] == "<did not run>"


def test_stale_request_without_token_shows_as_active(framework: str) -> None:
    app = install_probe(make_app(framework))
    with app.test_request_context("/elsewhere"):
        _, doc, _ = get_probe(app, "fresh-2")
    assert ["entry", "residue.request_context", "<active>"] in doc["obs"]


def test_stale_app_context_shows_as_residue(framework: str) -> None:
    app = install_probe(make_app(framework))
    mod = fw_module(framework)
    with app.app_context():
        setattr(mod.g, "_ctxbench_token", "old-token")  # noqa: B010 - the probe's private key
        _, doc, _ = get_probe(app, "fresh-3")
    assert ["entry", "residue.app_context", "old-token"] in doc["obs"]


@pytest.fixture
def no_reset_storage() -> Iterator[None]:
    backends.install("no-reset")
    try:
        yield
    finally:
        backends.restore_default()


def test_no_reset_backend_leaves_residue_on_the_next_request(no_reset_storage: None) -> None:
    app = install_probe(make_app("core"))
    client = app.test_client()
    first = client.get(f"{PROBE_PATH}?token=first")
    assert check_probe_response("first", 200, first.data, mode="m") == []
    second = client.get(f"{PROBE_PATH}?token=second")
    evidence = check_probe_response("second", 200, second.data, mode="no-reset")
    residue = {(e.phase, e.name): e.seen for e in evidence}
    assert residue[("entry", "residue.request_context")] == "first"
    assert residue[("entry", "residue.app_context")] == "first"


def test_session_key_does_not_travel_to_the_client(probe_app: t.Any) -> None:
    client = probe_app.test_client()
    for token in ("s-1", "s-2", "s-3"):
        resp = client.get(f"{PROBE_PATH}?token={token}")
        # The cookie-carrying client would bring the previous token back if it did.
        assert check_probe_response(token, 200, resp.data, mode="m") == []
        assert "s-" not in resp.headers.get("Set-Cookie", "")


def test_app_without_secret_key_skips_the_session(framework: str) -> None:
    app = install_probe(make_app(framework, secret=False))
    status, doc, resp = get_probe(app, "nosecret")
    assert status == 200
    assert not [o for o in doc["obs"] if "session" in o[1]]
    assert "Set-Cookie" not in resp.headers
    assert check_probe_response("nosecret", 200, resp.data, mode="m") == []


@pytest.mark.parametrize(
    ("query", "match"),
    [
        pytest.param("", b"needs a token", id="missing"),
        pytest.param("token=", b"must match", id="empty"),
        pytest.param("token=a%20b", b"must match", id="escaped"),
        pytest.param("token=" + "x" * 65, b"must match", id="too-long"),
        pytest.param("token=ok&sleep_ms=abc", b"sleep_ms must be a number", id="sleep-nan"),
        pytest.param("token=ok&sleep_ms=-1", b"sleep_ms must be between", id="sleep-negative"),
        pytest.param("token=ok&sleep_ms=inf", b"sleep_ms must be between", id="sleep-inf"),
        pytest.param("token=ok&fail=nowhere", b"fail must name the phase", id="fail-unknown"),
        pytest.param("token=ok&fail=", b"fail must name the phase", id="fail-empty"),
    ],
)
def test_malformed_probe_requests_get_400(probe_app: t.Any, query: str, match: bytes) -> None:
    resp = probe_app.test_client().get(f"{PROBE_PATH}?{query}")
    assert resp.status_code == 400
    assert match in resp.data


def test_ordinary_routes_are_untouched(framework: str) -> None:
    app = make_app(framework)

    @app.route("/hello")
    def hello() -> str:
        return "hi"

    install_probe(app)
    resp = app.test_client().get("/hello")
    assert (resp.status_code, resp.data) == (200, b"hi")


def test_view_error_passes_through(framework: str) -> None:
    app = make_app(framework)

    @app.before_request
    def refuse() -> t.Any:
        return "refused", 403

    install_probe(app)
    resp = app.test_client().get(f"{PROBE_PATH}?token=t")
    assert resp.status_code == 403
    assert resp.data == b"refused"


def test_install_twice_raises(probe_app: t.Any) -> None:
    with pytest.raises(RuntimeError, match="already called"):
        install_probe(probe_app)


def test_install_on_a_wsgi_callable_raises() -> None:
    def wsgi(environ: t.Any, start_response: t.Any) -> list[bytes]:
        return []

    with pytest.raises(TypeError, match=r"core\.App or a flask\.Flask") as info:
        install_probe(wsgi)
    # A Django user's application is the app itself: the message said to pass "the app object
    # itself, not a WSGI callable", and not that the framework has no probe. The server shows
    # the first line of it, at most 300 characters.
    first = str(info.value).splitlines()[0]
    assert first.endswith(
        ": it mounts into apps of those frameworks only (README, 'Apps of other frameworks'), and"
        " into the app itself, not a middleware around it."
    )
    django = "<django.core.handlers.wsgi.WSGIHandler object at 0x7fd89091f210>"
    assert len(first.replace(repr(wsgi), django)) <= 297


class _Exploding:
    def __getattr__(self, name: str) -> t.Any:
        raise RuntimeError("unbound")

    def __setattr__(self, name: str, value: t.Any) -> None:
        raise RuntimeError("unbound")

    def get(self, key: str) -> t.Any:
        raise LookupError("broken")


def test_broken_proxies_are_recorded_not_raised() -> None:
    fw = Framework("core", core.App("x"), core, hooks_by_blueprint=False)
    fw.g = _Exploding()
    fw.request = _Exploding()
    fw.current_app = _Exploding()
    fw.session = _Exploding()
    assert fw.read_g() == "<error: RuntimeError>"
    assert fw.read_request_token() == "<error: RuntimeError>"
    assert fw.read_app_name() == "<error: RuntimeError>"
    assert fw.read_session() == "<error: LookupError>"
    assert fw.store_g("t") == "<error: RuntimeError>"

    def boom() -> bool:
        raise RuntimeError("no storage")

    fw.has_request_context = boom
    fw.has_app_context = boom
    assert fw.entry_residue() == ("<error: RuntimeError>", "<error: RuntimeError>")


def test_probe_adds_no_work_to_other_paths(framework: str) -> None:
    app = make_app(framework)
    install_probe(app)
    calls: list[str] = []
    inner: Callable[..., t.Any] = app.wsgi_app.wsgi_app

    def spy(environ: t.Any, start_response: t.Any) -> t.Any:
        calls.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    app.wsgi_app.wsgi_app = spy
    app.test_client().get("/nothing-here")
    assert calls == ["/nothing-here"]


# -- injected failures (fail=<phase>) ----------------------------------------------------------


def test_fail_is_parsed_with_the_rest_of_the_query() -> None:
    assert parse_probe_query("token=t&sleep_ms=2&fail=view") == ProbeQuery("t", 0.002, "view")
    assert parse_probe_query("token=t") == ProbeQuery("t", 0.0, None)
    assert set(FAIL_PHASES) == {"session", *PHASES} - {"entry"}


def _fail_once(app: t.Any, phase: str) -> int | str:
    """Send one probe request that fails at ``phase``; return its status or the exception."""
    try:
        return int(app.test_client().get(f"{PROBE_PATH}?token=doomed&fail={phase}").status_code)
    except InjectedFailure as exc:  # a framework that lets a teardown error reach the server
        return f"raised at {exc.phase}"


# Where each framework ends up when a phase raises: core answers a teardown error with the
# response it already built (and logs the error); Flask lets it reach the server.
FAIL_OUTCOMES = {
    "core": {"teardown_request": 200, "teardown_appcontext": 200},
    "flask": {
        "teardown_request": "raised at teardown_request",
        "teardown_appcontext": "raised at teardown_appcontext",
    },
}


@pytest.mark.parametrize("phase", FAIL_PHASES)
def test_fail_raises_at_the_phase_and_the_next_request_is_clean(framework: str, phase: str) -> None:
    app = install_probe(make_app(framework))
    raised_at: list[str] = []

    @app.errorhandler(500)
    def record(e: t.Any) -> t.Any:
        original = getattr(e, "original_exception", None)
        raised_at.append(original.phase if isinstance(original, InjectedFailure) else repr(e))
        return "injected", 500

    outcome = _fail_once(app, phase)

    assert outcome == FAIL_OUTCOMES[framework].get(phase, 500)
    if outcome == 500:
        assert raised_at == [phase]
    # A correct framework cleans up after the failure: nothing shows in the next request.
    resp = app.test_client().get(f"{PROBE_PATH}?token=after")
    assert check_probe_response("after", resp.status_code, resp.data, mode="m") == []
    assert not fw_module(framework).has_request_context()


@pytest.mark.parametrize("phase", ["before_request", "view", "after_request"])
def test_fail_raises_after_the_phase_observed(phase: str) -> None:
    app = install_probe(make_app("core"))
    seen: list[list[t.Any]] = []

    @app.errorhandler(500)
    def record(e: t.Any) -> t.Any:
        from harness.probe.state import _cv_probe

        state = _cv_probe.get()
        assert state is not None
        seen.extend(state.obs)
        return "injected", 500

    assert _fail_once(app, phase) == 500
    assert phase in {o[0] for o in seen}


def test_fail_session_raises_from_the_session_interface(framework: str) -> None:
    app = install_probe(make_app(framework))
    assert isinstance(app.session_interface, FailingSessionInterface)
    # Every other use of the session interface goes to the wrapped one.
    inner = app.session_interface.inner
    assert app.session_interface.get_signing_serializer(app) is not None
    assert type(inner).__name__ == "SecureCookieSessionInterface"
    assert _fail_once(app, "session") == 500


def test_requests_without_fail_never_raise(probe_app: t.Any) -> None:
    for phase in ("view", "session"):
        resp = probe_app.test_client().get(f"{PROBE_PATH}?token=fine&sleep_ms=0")
        assert resp.status_code == 200, phase


def test_a_token_sent_twice_is_evidence(probe_app: t.Any) -> None:
    # A client that reuses a token makes every check of that request meaningless.
    assert get_probe(probe_app, "once")[0] == 200
    _, doc, resp = get_probe(probe_app, "once")
    assert ["entry", "residue.token", "once"] in doc["obs"]
    evidence = check_probe_response("once", 200, resp.data, mode="m")
    assert [(e.phase, e.name) for e in evidence] == [("entry", "residue.token")]


def test_recent_tokens_take_their_memory_at_start_up() -> None:
    """A soak judges the server's memory: the probe's own tables must not grow with requests
    (filling up, their sets grew in 1 MiB steps over a worker's first 15,000 requests)."""
    tokens = RecentTokens(size=64)
    table = sys.getsizeof(tokens._seen)
    assert tokens.add("first") and not tokens.add("first")
    for i in range(10_000):
        assert tokens.add(f"run-{i % 16}-{i}")
        assert sys.getsizeof(tokens._seen) == table
    assert "first" not in tokens and "run-15-9999" in tokens  # the last 64, no more
    # No valid token (``[A-Za-z0-9_-]``) equals a placeholder.
    with pytest.raises(ValueError):
        parse_probe_query("token=~placeholder.00001")


def test_a_probe_request_the_app_answers_itself_says_where_it_stopped(framework: str) -> None:
    # An auth hook that turns the probe request away: the app's answer passes through, marked
    # with the phase it was made in, so the harness can tell the user which hook stopped it.
    from werkzeug.wrappers import Response

    from harness.protocol import STOPPED_HEADER

    app = make_app(framework)

    @app.before_request
    def require_login() -> t.Any:
        return Response("login required", status=401)

    install_probe(app)
    resp = app.test_client().get(f"{PROBE_PATH}?token=gated")
    assert resp.status_code == 401 and resp.data == b"login required"
    assert resp.headers[STOPPED_HEADER] == "before_request"
    # A probe answer carries no such header.
    _, _, answered = get_probe(install_probe(make_app(framework)), "open")
    assert STOPPED_HEADER not in answered.headers


# werkzeug warns that the request's host is not the SERVER_NAME: that is the point here.
@pytest.mark.filterwarnings("ignore:Current server name:UserWarning")
def test_a_probe_path_the_app_does_not_route_says_routing() -> None:
    # SERVER_NAME with subdomain_matching: a request for 127.0.0.1 matches no rule, and Flask
    # answers 404 in the view's place after running the hooks.
    from harness.protocol import STOPPED_HEADER

    app = flask.Flask("probe_test_subdomains", subdomain_matching=True)
    app.config["SERVER_NAME"] = "app.example.com"
    install_probe(app)
    resp = app.test_client().get(f"{PROBE_PATH}?token=t", base_url="http://127.0.0.1/")
    assert resp.status_code == 404 and resp.headers[STOPPED_HEADER] == "routing"


def test_target_says_which_hook_answered_in_the_probes_place() -> None:
    # `ctxbench run --target` against a deployment whose auth hook answers the probe.
    import threading

    from werkzeug.serving import make_server

    from harness.errors import UsageError
    from harness.target import identify, parse_target

    app = make_app("flask")

    @app.before_request
    def require_login() -> t.Any:
        return flask.redirect("/login")

    install_probe(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UsageError) as info:
            identify(parse_target(f"http://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
        thread.join()
    message = str(info.value)
    assert "answered 302 (a redirect to /login) from the app itself" in message, message
    assert "before_request hooks" in message and "no ctxbench probe" not in message, message


def test_every_name_the_probe_observes_is_the_frameworks(probe_app: t.Any) -> None:
    # Who leaked is read from the names: one the probe observes and FRAMEWORK_NAMES lacks would
    # be blamed on the app's own observe() state.
    _, doc, _ = get_probe(probe_app, "tok-1")
    assert app_observation_names(o[1] for o in doc["obs"]) == []
