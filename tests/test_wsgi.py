"""Loading the app (harness.wsgi.load_app): a name, or the app an application factory returns.

Loading runs in this process against a small module of factories written to ``tmp_path``, so
each way a factory can fail is checked without a server; the live side is
``scenarios/test_factory.py`` and ``tests/test_servers.py``.
"""

from __future__ import annotations

import sys
import textwrap
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from harness import wsgi
from harness.apps import CORE_APP
from harness.errors import AppLoadError
from harness.wsgi import load_app

FACTORIES = textwrap.dedent(
    """
    calls = []

    def wsgi(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    def create_app(name="app", *, debug=False):
        calls.append((name, debug))
        return wsgi

    class App:
        def __init__(self, name):
            self.name = name

        def __call__(self, environ, start_response):
            return wsgi(environ, start_response)

    def raises():
        raise RuntimeError("no DATABASE_URL")

    def raises_type_error():
        return len(42)

    def exits():
        raise SystemExit(3)

    def returns_none():
        pass

    def returns_text():
        return "app"

    not_callable = 42

    app_object = App("x")
    """
)


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of factories, importable under a name unique to the test."""
    name = f"ctxbench_factories_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_factory_is_called_with_the_string_arguments(factories: str) -> None:
    app = load_app(f"{factories}:create_app('prod', debug=True)")
    module = sys.modules[factories]
    assert app is module.wsgi
    assert module.calls == [("prod", True)]


def test_a_class_is_a_factory(factories: str) -> None:
    app = load_app(f"{factories}:App('x')")
    assert type(app).__name__ == "App" and app.name == "x"


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        pytest.param("raises()", "raised RuntimeError: no DATABASE_URL (at ", id="raises"),
        # A TypeError raised inside the factory is the factory's, not a bad argument list.
        pytest.param("raises_type_error()", "raised TypeError: object of type 'int' has no len()",
                     id="type-error-inside"),
        pytest.param("exits()", "raised SystemExit: 3", id="exits"),
        pytest.param("create_app(1, 2)", "cannot take these arguments: too many positional"
                     " arguments (it is create_app(name='app', *, debug=False))", id="too-many"),
        pytest.param("create_app(bogus=1)", "unexpected keyword argument 'bogus'",
                     id="unknown-keyword"),
        pytest.param("returns_none()", "returned None, not a WSGI app", id="none"),
        pytest.param("returns_text()", "returned 'app', not a WSGI app", id="not-callable"),
        pytest.param("not_callable()", "cannot be called", id="factory-not-callable"),
        # The app itself with a call after it (a Flask app object, a WSGI function): it said
        # "cannot take these arguments: missing a required argument: 'environ'".
        pytest.param("app_object()", "calls {m}.app_object, which is the WSGI app itself (called"
                     " as app_object(environ, start_response)), not an app factory: name it"
                     " without the call, '{m}:app_object'", id="app-object-called"),
        pytest.param("wsgi()", "which is the WSGI app itself", id="wsgi-function-called"),
        pytest.param("nope()", "has no attribute 'nope'", id="missing"),
        # The factory named without its parentheses (flask's --app would call it).
        # Found in the module's source before anything is imported (harness.app_string).
        pytest.param("create_app", "create_app is an app factory (def create_app(name='app', *,"
                     " debug=False) at ", id="factory-without-call"),
        pytest.param("raises", "name its call, '{m}:raises()'", id="no-argument-function"),
    ],
)  # fmt: skip
def test_factory_failures_are_one_line(factories: str, attr: str, message: str) -> None:
    text = f"{factories}:{attr}"
    with pytest.raises(AppLoadError) as info:
        load_app(text)
    assert message.format(m=factories) in str(info.value)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_name_gets_its_module_name(
    factories: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{factories}.py:create_app()")
    assert f"('{factories}.py' is a file: name its module, '{factories}:create_app()')" in str(
        info.value
    )


def _loading_fails(
    files: dict[str, str], text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Write ``files`` (path -> source) into a project in ``tmp_path``, load ``text`` from it as
    the servers do (from the project's folder) and return the one-line error."""
    for path, source in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    top = text.partition(":")[0].split(".")[0]
    try:
        with pytest.raises(AppLoadError) as info:
            load_app(text)
    finally:
        for name in [m for m in sys.modules if m == top or m.startswith(f"{top}.")]:
            del sys.modules[name]
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("source", "attr", "line"),
    [
        pytest.param("KEY = os.environ[{v!r}]\n", "app", 3, id="at-import"),
        # The README's factory reads os.environ["DATABASE_URL"]: it said "fix the factory or
        # its arguments", where the same line at import says to set the variable.
        pytest.param("def create_app():\n    return os.environ[{v!r}]\n", "create_app()", 4,
                     id="in-a-factory"),
    ],
)  # fmt: skip
def test_an_app_that_needs_a_setting_says_where_and_what_to_do(
    source: str, attr: str, line: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `SECRET_KEY = os.environ["SECRET_KEY"]`, the variable in a .env file that `flask run`
    # would load and nothing under ctxbench (or gunicorn) does.
    name = f"ctxbench_settings_{uuid.uuid4().hex}"
    variable = f"CTXBENCH_TEST_{uuid.uuid4().hex.upper()}"
    files = {f"{name}.py": "import os\n\n" + source.format(v=variable),
             ".env": f"{variable}=from-dotenv\n"}  # fmt: skip
    message = _loading_fails(files, f"{name}:{attr}", tmp_path, monkeypatch)
    assert message.endswith(
        f"KeyError: '{variable}' (at {name}.py:{line}): if {variable} is an environment"
        " variable, set it where you run ctxbench (every server inherits it); a .env file is"
        " here, but nothing loads it: export it (set -a; . ./.env; set +a)"
    ), message


def test_an_app_that_does_not_compile_names_its_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said "(syn.py, line 2) (at ../../usr/lib/python3.11/importlib/__init__.py:126)": the
    # file without its folder, then a line of the standard library's importlib.
    package = f"ctxbench_syntax_{uuid.uuid4().hex}"
    files = {f"{package}/__init__.py": "",
             f"{package}/wsgi.py": "from flask import Flask\napp = Flask(__name__\n"}  # fmt: skip
    message = _loading_fails(files, f"{package}.wsgi:app", tmp_path, monkeypatch)
    assert message == (
        f"importing app '{package}.wsgi:app' failed: SyntaxError: '(' was never closed"
        f" (at {package}/wsgi.py:2)"
    )


def test_a_plain_wsgi_function_is_not_taken_for_a_factory(factories: str) -> None:
    assert load_app(f"{factories}:wsgi") is sys.modules[factories].wsgi


def test_an_app_string_runs_no_code(factories: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(AppLoadError, match="is not a literal"):
        load_app(f"{factories}:create_app(open({str(marker)!r}, 'w').close())")
    assert not marker.exists()
    assert factories not in sys.modules  # refused before the import


def test_the_probe_goes_behind_a_middleware_around_the_app_object() -> None:
    # `app = ProxyFix(flask_app)`: the import string names a plain WSGI callable, and the Flask
    # app it passes every request to is in `.app`. The probe goes on that app, so the probe
    # request goes through the middleware, as every request of the app does.
    flask = pytest.importorskip("flask")
    from werkzeug.middleware.proxy_fix import ProxyFix
    from werkzeug.test import Client

    from harness.wsgi import _ensure_probe

    inner = flask.Flask("behind_proxyfix")
    seen: list[str] = []

    @inner.before_request
    def remember() -> None:
        seen.append(flask.request.remote_addr)

    outer = ProxyFix(ProxyFix(inner, x_for=1))
    served, where = _ensure_probe(outer, "m:app", None)
    assert where == "harness.wsgi inside ProxyFix inside ProxyFix"
    assert served.app is outer  # behind InFront, which only marks what a middleware answers
    response = Client(served).get(
        "/_ctxbench/probe?token=t-1", headers={"X-Forwarded-For": "10.1.2.3"}
    )
    assert response.status_code == 200 and response.json["token"] == "t-1"
    assert seen == ["10.1.2.3"]  # the middleware saw the probe request
    assert _ensure_probe(outer, "m:app", None)[1] == "app"  # mounted once


class StaticFiles:
    """A middleware that keeps the app it wraps in ``.application``, as whitenoise's
    ``WhiteNoise(app)`` and Paste's middlewares do, and answers its own paths itself."""

    def __init__(self, application: t.Any) -> None:
        self.application = application

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        if environ.get("PATH_INFO", "").startswith("/static/"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"a static file\n"]
        return self.application(environ, start_response)


def test_the_probe_goes_behind_a_middleware_that_keeps_the_app_in_application() -> None:
    # `app = WhiteNoise(flask_app)`: the probe was not mounted, and the run stopped with
    # 'answered 404, and not from the probe' for an app with the probe's framework inside.
    flask = pytest.importorskip("flask")
    from werkzeug.middleware.proxy_fix import ProxyFix

    from harness.wsgi import _ensure_probe

    outer = ProxyFix(StaticFiles(flask.Flask("behind_static_files")))
    served, where = _ensure_probe(outer, "m:app", None)
    assert where == "harness.wsgi inside StaticFiles inside ProxyFix"
    client = Client(served)
    assert client.get("/_ctxbench/probe?token=t-1").json["token"] == "t-1"
    assert client.get("/static/a.css").text == "a static file\n"


class ApiKeyGate:
    """A user's middleware around the app object that turns away requests without an API key,
    and lets probe requests through when asked to."""

    def __init__(self, app: t.Any, let_probe_through: bool = False) -> None:
        self.app = app
        self.let_probe_through = let_probe_through

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        from harness.probe import probe_enabled

        probe = environ.get("PATH_INFO", "").endswith("/_ctxbench/probe")
        if self.let_probe_through and probe and probe_enabled():
            return self.app(environ, start_response)
        if environ.get("HTTP_X_API_KEY") != "k":
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"api key required\n"]
        return self.app(environ, start_response)


def _first_probe_answer(app: t.Any, path: str) -> str | None:
    """What the servers' readiness check says of ``app``'s first answer to a probe request
    for ``path`` (``"ready"``, or why it is not a probe app), served by werkzeug."""
    import threading

    from werkzeug.serving import make_server

    from harness.servers._process import _probe_once

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return _probe_once("127.0.0.1", server.server_port, "t-1", 5.0, path=path)
    finally:
        server.shutdown()
        thread.join()


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b"not json", b"[" * 100_000 + b"]" * 100_000], ids=["list", "text", "deep"]
)
def test_a_200_that_is_no_probe_response_is_said_to_be_one(body: bytes) -> None:
    # JSON nested 100,000 deep raised a RecursionError out of the readiness check: a traceback.
    from harness.servers._process import INSTALL_PROBE

    def app(environ: dict[str, t.Any], start_response: t.Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    assert _first_probe_answer(app, "/_ctxbench/probe") == (
        f"answered 200 with something that is not a probe response: {INSTALL_PROBE}"
    )


@pytest.mark.parametrize("mount", [None, "/api"])
def test_a_middleware_in_front_that_answers_the_probe_is_named(
    mount: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `app = ApiKeyGate(flask_app)`: the probe goes behind the gate, which turns the probe
    # request away. The harness said to mount the probe (it was mounted); it names the gate.
    flask = pytest.importorskip("flask")

    from harness.protocol import ENABLE_ENV, STOPPED_HEADER, probe_path
    from harness.wsgi import _ensure_probe

    served, where = _ensure_probe(ApiKeyGate(flask.Flask("gated")), "m:app", mount)
    assert where.startswith("harness.wsgi inside ApiKeyGate")
    path = probe_path(mount)
    assert _first_probe_answer(served, path) == (
        "answered 401 from ApiKeyGate, the middleware in front of the app the probe is on: it"
        " turned the probe request away before the app saw it, so nothing could be checked;"
        f" let requests for {path} through it while harness.probe.probe_enabled() is true"
        " (CTXBENCH_PROBE=1, set by ctxbench, never in production)"
    )
    # Following that advice, the probe answers; an app's own hook behind the gate is named as
    # before, and other paths pass the gate untouched.
    monkeypatch.setenv(ENABLE_ENV, "1")
    served, _ = _ensure_probe(
        ApiKeyGate(flask.Flask("gated_ok"), let_probe_through=True), "m:app", mount
    )
    client = Client(served)
    assert client.get(f"{path}?token=t-2").json["token"] == "t-2"
    other = client.get(f"{mount or ''}/elsewhere")
    assert other.status_code == 401 and STOPPED_HEADER not in other.headers
    hooked = flask.Flask("gated_hook")
    hooked.before_request(lambda: ("login required", 401))
    served, _ = _ensure_probe(ApiKeyGate(hooked, let_probe_through=True), "m:app", mount)
    assert Client(served).get(f"{path}?token=t-3").headers[STOPPED_HEADER] == "before_request"


def test_a_wsgi_callable_without_a_wrapped_app_answers_the_probe_itself() -> None:
    from harness.load.echo import echo_body_template
    from harness.wsgi import _ensure_probe

    def plain(environ: t.Any, start_response: t.Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [echo_body_template("t-1", "1").encode()]

    served, where = _ensure_probe(plain, "m:plain", None)
    assert where == "none" and served.app is plain
    response = Client(served).get("/_ctxbench/probe?token=t-1")  # passes as it is
    assert response.status_code == 200 and response.text == echo_body_template("t-1", "1")
    assert _first_probe_answer(served, "/_ctxbench/probe") == "ready"


def test_a_wsgi_callable_that_answers_200_to_every_path_is_named() -> None:
    # `def app(e, s): s("200 OK", []); return [b"hi"]` was told that the probe answered
    # 'something that is not a probe response: install the probe with install_probe(app)',
    # which refuses a plain WSGI callable; a 404 of the same app was told why.
    from harness.wsgi import _ensure_probe

    def hi(environ: t.Any, start_response: t.Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"hi"]

    served, _ = _ensure_probe(hi, "m:hi", None)
    said = _first_probe_answer(served, "/_ctxbench/probe")
    assert said is not None and said.startswith(
        f"answered 200 from {__name__}.{hi.__qualname__}, which is no core or Flask app,"
    ), said
    assert Client(served).get("/elsewhere").headers.get("X-Ctxbench-Probe-Stopped") is None


class Bottle:
    """An app of a framework the probe has no support for: it routes nothing of ctxbench's."""

    def __call__(self, environ: t.Any, start_response: t.Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<h1>Not Found</h1>"]


def _closure(app: t.Any) -> t.Any:
    """A middleware that keeps the app it wraps where ctxbench cannot see it."""

    def wrapped(environ: t.Any, start_response: t.Any) -> t.Any:
        return app(environ, start_response)

    return wrapped


def test_a_core_app_hidden_in_a_closure_is_checked_with_install_probe_in_its_module() -> None:
    from core import App
    from harness.probe import install_probe
    from harness.wsgi import _ensure_probe

    inner = App("hidden")
    install_probe(inner, enabled=True)
    served, where = _ensure_probe(_closure(inner), "m:app", None)
    assert where == "none"  # ctxbench found no app, but the module mounted the probe itself
    assert Client(served).get("/_ctxbench/probe?token=t-1").json["token"] == "t-1"


@pytest.mark.parametrize(
    ("app", "mount", "reached"),
    [
        pytest.param(Bottle(), None, f"{__name__}.Bottle", id="app"),
        pytest.param(
            _closure(Bottle()), None, f"{__name__}._closure.<locals>.wrapped", id="closure"
        ),
        pytest.param(StaticFiles(Bottle()), "/api", f"{__name__}.Bottle", id="wrapped-mounted"),
        pytest.param(
            StaticFiles(Bottle().__call__),
            None,
            f"{__name__}.Bottle.__call__",
            id="function",
        ),
    ],
)
def test_an_app_of_another_framework_is_named_with_what_to_read(
    app: t.Any, mount: str | None, reached: str
) -> None:
    # Django's WSGIHandler, a Bottle, Falcon or Pyramid app: the run stopped with 'answered 404,
    # and not from the probe: mount the probe on the app (harness.probe.install_probe(app))',
    # which install_probe then refused.
    from harness.protocol import probe_path
    from harness.wsgi import _ensure_probe

    served, where = _ensure_probe(app, "m:app", mount)
    assert where.startswith("none")
    assert _first_probe_answer(served, probe_path(mount)) == (
        f"answered 404 from {reached}, which is no core or Flask app, and ctxbench found none"
        " behind it (a middleware's .app or .application, a dispatcher's .mounts): its probe"
        " mounts into those two frameworks only and has none yet for others (Django, Falcon,"
        " Bottle, Pyramid, a plain WSGI callable), so nothing of this app can be checked; a core"
        " or Flask app hidden in a closure takes install_probe(app) in its own module; see the"
        " README, 'Apps of other frameworks'"
    )


# -- a module that is not there: the app's own, or one it imports ---------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's package, importable under a name unique to the test, with the current folder
    where it is (as ctxbench's servers run)."""
    name = f"ctxbench_proj_{uuid.uuid4().hex}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from flask import Flask

            app = Flask(__name__)

            def create_app():
                import ctxbench_no_such_requirement  # imported inside the factory
                return app
            """
        )
    )
    (package / "needs.py").write_text("import ctxbench_no_such_requirement.sub\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def _load_error(text: str) -> str:
    with pytest.raises(AppLoadError) as info:
        load_app(text)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_a_requirement_the_interpreter_lacks_says_to_install_it_there(project: str) -> None:
    # ctxbench's own venv without the project's requirements: the servers run on it.
    from harness.servers.base import pip_command

    for text in (f"{project}.needs:app", f"{project}:create_app()"):
        message = _load_error(text)
        assert "No module named 'ctxbench_no_such_requirement" in message, message
        assert "the app needs 'ctxbench_no_such_requirement', which the Python ctxbench" in (
            message
        ), message
        assert f"({sys.executable}) does not have" in message, message
        assert f"{pip_command()} install -r requirements.txt" in message, message
        assert f"{project}" in message and ".py:" in message, message  # where it was imported
        assert "fix the factory" not in message, message


def test_an_app_module_that_is_not_there_says_where_it_was_looked_for(
    project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    message = _load_error("ctxbench_absent_project_q.wsgi:app")
    assert f"(not in {elsewhere}, the folder ctxbench runs in" in message, message
    assert "run ctxbench from the folder that holds 'ctxbench_absent_project_q'" in message
    assert "the app needs" not in message, message
    # A src layout: the package is in src/ of the folder ctxbench runs in.
    (elsewhere / "src" / "ctxbench_absent_project_q").mkdir(parents=True)
    (elsewhere / "src" / "ctxbench_absent_project_q" / "__init__.py").write_text("")
    message = _load_error("ctxbench_absent_project_q.wsgi:app")
    assert f"(not in {elsewhere}, the folder ctxbench runs in" in message, message
    assert ", but in its src folder): put src on the import path" in message, message
    assert "PYTHONPATH=src ctxbench ..., or pythonpath = src in pytest's ini" in message, message
    assert "ctxbench_absent_project_q" not in sys.modules, message
    # The package is there, its module is not.
    message = _load_error(f"{project}.wsgi:app")
    assert f"(package {project!r} at {tmp_path / project} has no module 'wsgi')" in message
    assert "name a module that is there" in message, message


def test_a_missing_attribute_names_the_apps_the_module_has(project: str) -> None:
    message = _load_error(f"{project}:application")
    assert message.endswith(
        f"has no attribute 'application': name one it has, '{project}:app',"
        f" '{project}:create_app()'"
    ), message


DJANGO_LIKE = """
from os.path import join  # an imported function that takes two arguments: no app


class WSGIHandler:
    def __call__(self, environ, start_response):
        return []


def get_wsgi_application():
    return WSGIHandler()


application = get_wsgi_application()
"""


def test_a_missing_attribute_names_any_wsgi_app_the_module_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Django project's 'mysite.wsgi:app' was told only that the module has no 'app': its
    # 'application' is no core or Flask app, so none was named.
    name = f"ctxbench_site_{uuid.uuid4().hex}"
    message = _loading_fails({f"{name}.py": DJANGO_LIKE}, f"{name}:app", tmp_path, monkeypatch)
    assert message.endswith(f"has no attribute 'app': name one it has, '{name}:application'")


FLASK_FACTORY = """
from flask import Flask, g, request, session  # proxies: looking at one outside a request raises


def create_app():
    app = Flask(__name__)

    @app.before_request
    def load_user():
        g.user = request.headers.get("X-User")
        session.permanent = True

    return app
"""


def test_a_missing_factory_names_the_factory_a_flask_module_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A typo in a factory's name ('create_ap()') said "loading the app failed: RuntimeError:
    # Working outside of application context." over four lines: listing what the module has
    # looked at the g, request and session it imported from flask.
    pytest.importorskip("flask")
    name = f"ctxbench_flask_{uuid.uuid4().hex}"
    message = _loading_fails({f"{name}.py": FLASK_FACTORY}, f"{name}:create_ap()", tmp_path,
                             monkeypatch)  # fmt: skip
    assert message.endswith(f"has no attribute 'create_ap': name one it has, '{name}:create_app()'")


def test_a_flask_app_that_served_a_request_before_the_probe_is_refused_in_one_line() -> None:
    # An app module that sends itself a warm-up request at import: flask refuses the probe's
    # route after it, and ctxbench said "loading the app failed: AssertionError: ..." over two
    # lines, in flask's words alone.
    flask = pytest.importorskip("flask")
    app = flask.Flask("warm_app")
    app.add_url_rule("/", "index", lambda: "hi")
    assert app.test_client().get("/").status_code == 200  # the warm-up
    with pytest.raises(AppLoadError) as info:
        wsgi._ensure_probe(app, "'warm_app:app'", None)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(
        "cannot mount the probe: the app served a request before ctxbench could (a warm-up"
        " request at import?) and refuses new routes after one (The setup method "
    ), message
    assert message.endswith(
        "...); call harness.probe.install_probe(app) where the app is set up, before that request"
    ), message


ASGI_APPS = """
class ASGIHandler:  # Django's mysite.asgi:application, Starlette, FastAPI
    async def __call__(self, scope, receive, send):
        pass


application = ASGIHandler()


def get_asgi_application():
    return application


async def bare(scope, receive, send):  # made so the source check cannot see it
    pass


app = bare
"""


@pytest.mark.parametrize(
    ("attr", "says"),
    [
        pytest.param(
            "application", "app '{m}:application' is an ASGI app ({m}.ASGIHandler)", id="object"
        ),
        pytest.param(
            "get_asgi_application()",
            "app factory '{m}:get_asgi_application()' returned an ASGI app ({m}.ASGIHandler)",
            id="factory",
        ),
        pytest.param("app", "app '{m}:app' is an ASGI app (async def)", id="function"),
    ],
)
def test_an_asgi_app_is_refused_as_one(
    attr: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A WSGI server called it with environ and start_response, it raised, and the run stopped
    # with 'answered 500, and not from the probe: mount the probe'.
    name = f"ctxbench_asgi_{uuid.uuid4().hex}"
    message = _loading_fails({f"{name}.py": ASGI_APPS}, f"{name}:{attr}", tmp_path, monkeypatch)
    assert message == says.format(m=name) + (
        ", called as app(scope, receive, send), and every server ctxbench starts calls a WSGI"
        " app, app(environ, start_response): name your project's WSGI app (uvicorn-asgiref and"
        " hypercorn-asgiref serve that WSGI app through asgiref)"
    )


#: A server process loading an app whose folder holds a package named ``core``, as ctxbench's
#: regular (not editable) install sees it: the editable install's import hook is taken away,
#: since it finds ctxbench's core modules that the app's package lacks.
SHADOWED_CORE = """
import sys

import harness.wsgi as wsgi

sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "_EditableFinder"]
sys.path.insert(0, "")
try:
    wsgi.app
except Exception as e:
    print(type(e).__name__, e)
else:
    import core

    print("loaded", type(wsgi.app).__name__, wsgi.LOADED["storage"], core.OWN)
"""


@pytest.mark.parametrize(
    ("app", "backend", "said"),
    [
        # The default storage imports none of ctxbench's core: the app runs with its own.
        ("app:app", "contextvar", "loaded Flask contextvar the project's"),
        # A mutant swaps the storage of ctxbench's core, which the app's package hides.
        ("app:app", "no-reset", "AppLoadError the app has its own package or module named"
         " 'core' (core/__init__.py), which hides ctxbench's framework package"),
        # ctxbench's own app (the default --app) runs on ctxbench's core, which it hides too.
        (CORE_APP, "contextvar", f"AppLoadError cannot import app '{CORE_APP}', which runs on"
         " ctxbench's core framework: the folder ctxbench runs in has its own package or module"
         " named 'core' (core/__init__.py), which hides ctxbench's framework package"),
    ],
)  # fmt: skip
def test_an_app_with_its_own_core_package(
    tmp_path: Path, app: str, backend: str, said: str
) -> None:
    import os
    import subprocess

    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text('OWN = "the project\'s"\n')
    (tmp_path / "app.py").write_text(
        "import core\nfrom flask import Flask\n\napp = Flask(__name__)\n"
    )
    env = {**os.environ, "CTXBENCH_APP": app, "CTXBENCH_BACKEND": backend}
    env.pop("CTXBENCH_STATE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", SHADOWED_CORE],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.startswith(said), out
    if backend != "contextvar":
        assert "use --backend contextvar (the default) with this app" in out, out
    if app == CORE_APP:
        assert out.rstrip().endswith("or name your own app with --app"), out
