"""Bad input: malformed URLs, cookies, headers and bodies get a 4xx (or are tolerated), never
a 500, and never leave a context behind (the autouse fixture checks the latter)."""

from __future__ import annotations

import io
import typing as t

import pytest
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from core import App, has_request_context, request, session


@pytest.fixture
def app(app: App) -> App:
    @app.route("/", methods=["GET", "POST"])
    def index() -> object:
        return {"args": request.args.to_dict(), "s": session.get("x")}

    @app.route("/form", methods=["POST"])
    def form() -> object:
        return {"form": sorted(request.form), "files": sorted(request.files)}

    @app.route("/json", methods=["POST"])
    def json() -> object:
        return {"json": request.get_json()}

    @app.route("/data", methods=["POST"])
    def data() -> str:
        return str(len(request.get_data()))

    @app.route("/u/<name>")
    def user(name: str) -> str:
        return name

    return app


@pytest.fixture
def teardowns(app: App) -> list[object]:
    rv: list[object] = []
    app.teardown_request(lambda exc: rv.append(exc))
    return rv


def raw(app: App, path: str = "/", **environ: t.Any) -> tuple[int, bytes]:
    """Call the app with a hand-made environ, as a server would."""
    env = EnvironBuilder("/").get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["PATH_INFO"] = path
    env.update(environ)
    app_iter, status, _headers = run_wsgi_app(app, env)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    assert not has_request_context()
    return int(status.split()[0]), body


def post(app: App, path: str, body: bytes, content_type: str, **environ: t.Any) -> int:
    environ.setdefault("CONTENT_LENGTH", str(len(body)))
    status, _ = raw(
        app,
        path,
        REQUEST_METHOD="POST",
        CONTENT_TYPE=content_type,
        **{"wsgi.input": io.BytesIO(body)},
        **environ,
    )
    return status


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/%zz", 404, id="bad-percent"),
        pytest.param("/\xff\xfe", 404, id="invalid-utf8"),
        pytest.param("/u/\xff\xfe", 200, id="invalid-utf8-in-converter"),
        pytest.param("/" + "a" * 100_000, 404, id="very-long-path"),
        pytest.param("/u/%00", 200, id="nul"),
        pytest.param("", 200, id="empty-path"),
    ],
)
def test_bad_paths(app: App, teardowns: list[object], path: str, status: int) -> None:
    assert raw(app, path)[0] == status
    assert teardowns == [None]


def test_bad_query_string_is_tolerated(app: App) -> None:
    status, body = raw(app, "/", QUERY_STRING="a=%zz&b=%ff&%%&=&c")
    assert status == 200
    assert b'"a":"%zz"' in body


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param("session=\x00\xff; ;;; =; a", id="junk"),
        pytest.param("session=" + "x" * 100_000, id="huge"),
        pytest.param("=" * 1000, id="equals"),
        pytest.param('session="unterminated', id="quote"),
    ],
)
def test_bad_cookies_give_an_empty_session(app: App, cookie: str) -> None:
    assert raw(app, "/", HTTP_COOKIE=cookie) == (200, b'{"args":{},"s":null}\n')


def test_huge_header_is_tolerated(app: App) -> None:
    assert raw(app, "/", HTTP_X_BIG="x" * 1_000_000)[0] == 200


ROUTE_KINDS = [pytest.param("/", id="static-route"), pytest.param("/u/x", id="dynamic-route")]


@pytest.mark.parametrize("path", ROUTE_KINDS)
@pytest.mark.parametrize(
    "host",
    [
        pytest.param("a" * 300 + ".com", id="label-too-long"),
        pytest.param("a" * 64, id="64-char-name"),
        pytest.param("a..example.com", id="empty-label"),
        pytest.param(".example.com:8080", id="leading-dot"),
    ],
)
def test_malformed_host_is_400_on_every_route(app: App, path: str, host: str) -> None:
    # werkzeug cannot bind a URL adapter to these names (BadHost). The static-route shortcut,
    # which skips the adapter, must not answer them with a 200.
    assert raw(app, path, HTTP_HOST=host)[0] == 400


@pytest.mark.parametrize("path", ROUTE_KINDS)
@pytest.mark.parametrize(
    "host",
    [
        pytest.param("example.com", id="plain"),
        pytest.param("example.com.:8080", id="trailing-dot"),
        pytest.param(".".join(["abc"] * 30), id="long-name-short-labels"),
        pytest.param("[::1]:8080", id="ipv6"),
        pytest.param("bad host!", id="invalid-characters"),  # werkzeug: no host, not an error
        pytest.param("", id="empty"),
    ],
)
def test_acceptable_host_is_200_on_every_route(app: App, path: str, host: str) -> None:
    assert raw(app, path, HTTP_HOST=host)[0] == 200


def test_server_name_makes_the_host_irrelevant(app: App) -> None:
    app.config["SERVER_NAME"] = "example.com"
    for path in ("/", "/u/x"):
        assert raw(app, path, HTTP_HOST="a..b")[0] == 200


def test_invalid_method_is_405(app: App) -> None:
    assert raw(app, "/", REQUEST_METHOD="GE T")[0] == 405


def test_declared_body_over_the_limit_is_413(app: App, teardowns: list[object]) -> None:
    status = post(app, "/data", b"x" * 10, "text/plain", CONTENT_LENGTH=str(100 * 1024 * 1024))
    assert status == 413
    assert teardowns == [None]


def test_streamed_body_is_cut_at_the_limit_and_reading_past_it_is_413(app: App) -> None:
    # werkzeug's behaviour for a body without Content-Length: get_data() stops at
    # MAX_CONTENT_LENGTH, and reading past it raises RequestEntityTooLarge.
    app.config["MAX_CONTENT_LENGTH"] = 1000

    @app.route("/past", methods=["POST"])
    def past() -> str:
        data = request.get_data()
        request.stream.read(1)
        return str(len(data))

    chunked = {
        "REQUEST_METHOD": "POST",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input_terminated": True,
    }
    status, body = raw(app, "/data", **chunked, **{"wsgi.input": io.BytesIO(b"x" * 5000)})
    assert (status, body) == (200, b"1000")
    status, _ = raw(app, "/past", **chunked, **{"wsgi.input": io.BytesIO(b"x" * 5000)})
    assert status == 413


def test_limit_can_be_raised_per_request(app: App) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.before_request
    def allow_more() -> None:
        request.max_content_length = 100

    assert post(app, "/data", b"x" * 50, "text/plain") == 200


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", ""])
def test_malformed_content_length_is_tolerated(app: App, length: str) -> None:
    assert post(app, "/data", b"xx", "text/plain", CONTENT_LENGTH=length) == 200


def test_body_shorter_than_declared_is_400(app: App) -> None:
    assert post(app, "/data", b"", "text/plain", CONTENT_LENGTH="3") == 400


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"--xyz\r\ngarbagegarb", id="no-headers"),
        pytest.param(b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx", id="unterminated"),
        pytest.param(b"\x00" * 1000, id="binary"),
    ],
)
def test_malformed_multipart_is_not_a_server_error(app: App, body: bytes) -> None:
    # werkzeug answers some with 400 and parses others as an empty form; never a 500.
    assert post(app, "/form", body, "multipart/form-data; boundary=xyz") in {200, 400}


def test_multipart_without_boundary_is_an_empty_form(app: App) -> None:
    assert post(app, "/form", b"hello", "multipart/form-data") == 200


def test_too_many_multipart_parts_is_413(app: App) -> None:
    parts = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n1\r\n' % i for i in range(1500)
    )
    assert post(app, "/form", parts + b"--b--\r\n", "multipart/form-data; boundary=b") == 413


def test_multipart_field_over_memory_limit_is_413(app: App) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n'
        + b"x" * 600_000
        + b"\r\n--b--\r\n"
    )
    assert post(app, "/form", body, "multipart/form-data; boundary=b") == 413


def test_uploaded_files_are_closed(app: App) -> None:
    closed: list[bool] = []

    @app.route("/upload", methods=["POST"])
    def upload() -> str:
        f = request.files["f"]
        request_files.append(f)
        return f.read().decode()

    request_files: list[t.Any] = []

    @app.teardown_appcontext
    def check(exc: BaseException | None) -> None:
        closed.extend(f.stream.closed for f in request_files)

    client = app.test_client()
    resp = client.post("/upload", data={"f": (io.BytesIO(b"content"), "a.txt")})
    assert resp.data == b"content"
    assert closed == [True]


def test_malformed_json_is_400(app: App, client: Client) -> None:
    resp = client.post("/json", data=b"{bad}", content_type="application/json")
    assert resp.status_code == 400


def test_json_with_wrong_content_type_is_415(app: App, client: Client) -> None:
    assert client.post("/json", data=b"{}", content_type="text/plain").status_code == 415


def test_test_client_bad_inputs(app: App, client: Client) -> None:
    assert client.get("/%zz").status_code == 404
    assert client.get("/?%zz=%%").status_code == 200
    assert client.get("/", headers={"Cookie": "session=%%%"}).status_code == 200


# -- bad command lines ---------------------------------------------------------------------------
#
# Every user mistake on the command line is one line on stderr and exit status 2, before any
# server starts and before any results or logs folder is made: the values are checked when the
# settings are built (harness.preflight.checked, harness.servers.ServerConfig), with the
# limits the load driver and the servers enforce.

import importlib.util  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

from harness import results  # noqa: E402
from harness.cli import build_parser, main  # noqa: E402
from harness.load.spec import MAX_REQUESTS  # noqa: E402
from harness.results import Cell, Measurement, Run, ServerInfo  # noqa: E402
from harness.servers.base import pip_command  # noqa: E402
from harness.settings import RunSettings  # noqa: E402

FLASK = "harness.apps.flask_app:app"

BAD_INVOCATIONS = [
    # -- run: numbers out of the driver's and the servers' limits, and nonsense
    pytest.param(["run", "--modes", "gunicorn-sync", "--concurrency", "5000"],
                 "bad --concurrency 5000", id="concurrency-over-driver-limit"),
    pytest.param(["run", "--concurrency", "0"], "bad --concurrency 0", id="concurrency-0"),
    pytest.param(["run", "--concurrency", "-3"], "bad --concurrency -3", id="concurrency-neg"),
    pytest.param(["run", "--concurrency", "1.5"], "bad --concurrency '1.5'", id="conc-float"),
    pytest.param(["run", "--concurrency", "8,8"], "lists a level twice", id="concurrency-twice"),
    pytest.param(["run", "--concurrency", "1,x"], "bad --concurrency '1,x'", id="sweep-not-int"),
    pytest.param(["run", "--driver-processes", "0"], "bad --driver-processes 0", id="procs-0"),
    pytest.param(["run", "--driver-processes", "lots"], "bad --driver-processes 'lots'",
                 id="procs-word"),
    pytest.param(["run", "--sleep-ms", "70000"], "bad --sleep-ms 70000", id="sleep-over-limit"),
    pytest.param(["run", "--sleep-ms", "nan"], "bad --sleep-ms nan", id="sleep-nan"),
    pytest.param(["run", "--sleep-ms", "-1"], "bad --sleep-ms -1", id="sleep-negative"),
    pytest.param(["run", "--sleep-ms", "6000"], "request timeout", id="sleep-past-timeout"),
    pytest.param(["run", "--duration", "inf"], "bad --duration inf", id="duration-inf"),
    pytest.param(["run", "--duration", "nan"], "bad --duration nan", id="duration-nan"),
    pytest.param(["run", "--duration", "0"], "bad --duration 0", id="duration-0"),
    pytest.param(["run", "--duration", "-2"], "bad --duration -2", id="duration-negative"),
    pytest.param(["run", "--duration", "1e9"], "bad --duration", id="duration-over-limit"),
    pytest.param(["run", "--duration", "unbounded"], "invalid float value: 'unbounded'",
                 id="duration-unbounded"),
    pytest.param(["run", "--requests", "0"], "bad --requests 0", id="requests-0"),
    pytest.param(["run", "--requests", "lots"], "invalid int value", id="requests-word"),
    pytest.param(["run", "--requests", "10000000000"],
                 f"bad --requests 10000000000: use a whole number in 1..{MAX_REQUESTS}",
                 id="requests-over-limit"),
    pytest.param(["run", "--repeats", "0"], "bad --repeats 0", id="repeats-0"),
    pytest.param(["run", "--repeats", "5000"], "bad --repeats 5000", id="repeats-over-limit"),
    pytest.param(["run", "--warmup", "-1"], "bad --warmup -1", id="warmup-negative"),
    pytest.param(["run", "--warmup", "inf"], "bad --warmup inf", id="warmup-inf"),
    pytest.param(["run", "--workers", "0"], "bad --workers 0", id="workers-0"),
    pytest.param(["run", "--workers", "100000"], "bad --workers 100000", id="workers-huge"),
    pytest.param(["run", "--threads", "0"], "bad --threads 0", id="threads-0"),
    pytest.param(["run", "--threads", "5000"], "bad --threads 5000", id="threads-huge"),
    pytest.param(["run", "--worker-connections", "0"], "bad --worker-connections 0",
                 id="worker-connections-0"),
    # -- run: names
    pytest.param(["run", "--modes", ""], "--modes is empty", id="modes-empty"),
    pytest.param(["run", "--modes", "gunicorn-sync,gunicorn-sync"], "twice", id="modes-twice"),
    pytest.param(["run", "--modes", "gunicorn-sync,,werkzeug-threaded"], "empty value",
                 id="modes-empty-item"),
    pytest.param(["run", "--modes", "uwsgi-nope"], "unknown server mode 'uwsgi-nope'",
                 id="modes-unknown"),
    pytest.param(["run", "--proxy", "haproxy"], "unknown proxy 'haproxy'", id="proxy-unknown"),
    pytest.param(["run", "--proxy", "nginx,nginx"], "--proxy lists 'nginx' twice",
                 id="proxy-twice"),
    pytest.param(["run", "--backend", "nope"], "unknown backend 'nope'", id="backend-unknown"),
    pytest.param(["run", "--backend", ""], "empty value", id="backend-empty"),
    pytest.param(["run", "--backend", "no-reset,no-reset"], "twice", id="backend-twice"),
    pytest.param(["run", "--app", "not a path"], "bad app import string", id="app-spaces"),
    pytest.param(["run", "--app", "module_without_attr"], "bad app import string",
                 id="app-no-colon"),
    # -- run: app factories (gunicorn's and flask's forms; no code from an app string runs)
    pytest.param(["run", "--app", "pkg:create_app(__import__('os').system('x'))"],
                 "is not a literal", id="app-factory-code"),
    pytest.param(["run", "--app", "pkg:create_app(*args)"], "unpacks arguments",
                 id="app-factory-star"),
    pytest.param(["run", "--app", "pkg:app.factory()"], "is not a name in module 'pkg'",
                 id="app-factory-dotted"),
    pytest.param(["run", "--app", "pkg:create_app('x'"], "'(' was never closed",
                 id="app-factory-unclosed"),
    pytest.param(["run", "--app", "pkg:create_app(x=1, x=2)"], "given twice",
                 id="app-factory-keyword-twice"),
    pytest.param(["run", "--app", FLASK, "--backend", "no-reset"], "use --backend contextvar",
                 id="mutant-with-flask"),
    pytest.param(["run", "--connections", "pipelined"], "invalid choice", id="connections"),
    pytest.param(["run", "--modes", "uwsgi-gevent", "--connections", "keepalive"],
                 "nothing to measure: uwsgi-gevent cannot serve keepalive connections",
                 id="nothing-to-measure"),
    pytest.param(["run", "--fail-phase", "lunch"], "invalid choice", id="fail-phase"),
    pytest.param(["run", "--fail-phase", "view", "--fail-fraction", "2"],
                 "bad --fail-fraction 2", id="fail-fraction-over-1"),
    pytest.param(["run", "--fail-fraction", "0.5"], "--fail-fraction needs --fail-phase",
                 id="fail-fraction-alone"),
    pytest.param(["run", "--server-arg", "'unterminated"], "bad --server-arg", id="server-arg"),
    pytest.param(["run", "--server-arg", "--preload"], "goes after '=' (--server-arg=--preload)",
                 id="server-arg-without-equals"),
    pytest.param(["run", "--server-arg=--preload"], "name the modes it is for",
                 id="server-arg-without-modes"),
    # where a server listens is ctxbench's: --bind=0.0.0.0:8000 opened it, probe on, to others
    pytest.param(["run", "--modes", "gunicorn-gthread", "--server-arg=--bind=0.0.0.0:8000"],
                 "gunicorn-gthread: --server-arg=--bind=0.0.0.0:8000 sets where the server"
                 " listens, which ctxbench sets itself", id="server-arg-gunicorn-bind"),
    pytest.param(["serve", "--mode", "nginx+gunicorn-sync", "--server-arg=-b0.0.0.0:8000"],
                 "--server-arg=-b0.0.0.0:8000 sets where the server listens",
                 id="serve-server-arg-gunicorn-short-bind"),
    pytest.param(["run", "--modes", "waitress", "--server-arg=--host=0.0.0.0"],
                 "waitress: --server-arg=--host=0.0.0.0 sets where", id="server-arg-runner-host"),
    pytest.param(["run", "--modes", "granian", "--server-arg=--host 0.0.0.0"],
                 "granian: --server-arg=--host sets where", id="server-arg-granian-host"),
    pytest.param(["run", "--modes", "uwsgi-threads", "--server-arg=--http-socket=:9090"],
                 "uwsgi-threads: --server-arg=--http-socket=:9090 sets where",
                 id="server-arg-uwsgi-socket"),
    # the worker class is the mode's: a "gunicorn-sync" cell ran gevent, judged as sync
    pytest.param(["run", "--modes", "gunicorn-sync", "--server-arg=--worker-class=gevent"],
                 "gunicorn-sync: --server-arg=--worker-class=gevent picks gunicorn's worker class,"
                 " which is what the mode names (sync): run --modes gunicorn-gevent instead",
                 id="server-arg-gunicorn-worker-class"),
    pytest.param(["serve", "--mode", "gunicorn-gthread", "--server-arg=-k sync"],
                 "run --modes gunicorn-sync instead", id="serve-server-arg-gunicorn-k"),
    pytest.param(["run", "--modes", "gunicorn-gevent", "--server-arg=-kuvicorn.workers.X"],
                 "run the mode of that worker class instead", id="server-arg-gunicorn-k-other"),
    # what runs in a uWSGI worker is the mode's: --threads made uwsgi-processes the threads mode
    pytest.param(["run", "--modes", "uwsgi-processes", "--server-arg=--threads=4"],
                 "uwsgi-processes: --server-arg=--threads=4 runs threads in each uWSGI worker,"
                 " which is what uwsgi-threads is: run --modes uwsgi-threads instead",
                 id="server-arg-uwsgi-threads-on-processes"),
    pytest.param(["serve", "--mode", "uwsgi-threads", "--server-arg=--gevent 100"],
                 "run --modes uwsgi-gevent instead", id="serve-server-arg-uwsgi-gevent-on-threads"),
    # gunicorn reads one config file: the user's replaced ctxbench's hooks ("[] w0" recorded)
    pytest.param(["run", "--modes", "gunicorn-gthread", "--server-arg=--config=gunicorn.conf.py"],
                 "gunicorn-gthread: --server-arg=--config=gunicorn.conf.py gives gunicorn a config"
                 " file, but ctxbench runs gunicorn with its own", id="server-arg-gunicorn-config"),
    pytest.param(["run", "--modes", "nginx+gunicorn-sync", "--server-arg=-c gunicorn.conf.py"],
                 "--server-arg=-c gives gunicorn a config",
                 id="server-arg-gunicorn-config-behind-nginx"),
    # a uWSGI config file set the module (the user's, not the probe's), sockets and threads
    pytest.param(["run", "--modes", "uwsgi-threads", "--server-arg=--ini=uwsgi.ini"],
                 "uwsgi-threads: --server-arg=--ini=uwsgi.ini gives uWSGI a config file",
                 id="server-arg-uwsgi-ini"),
    pytest.param(["serve", "--mode", "uwsgi-processes", "--server-arg=deploy.yaml"],
                 "--server-arg=deploy.yaml gives uWSGI a config file", id="serve-uwsgi-bare-yaml"),
    pytest.param(["serve", "--mode", "gunicorn-gevent", "--server-arg=--conf=g.py"],
                 "--server-arg=--conf=g.py gives gunicorn a config file",
                 id="serve-server-arg-gunicorn-config"),
    pytest.param(["serve", "--mode", "gunicorn-gevent", "--server-arg", "--preload"],
                 "goes after '=' (--server-arg=--preload)", id="serve-server-arg-without-equals"),
    # a server argument of another server: the run's other modes' cells ran first, then uWSGI
    # refused it as it started
    pytest.param(["run", "--modes", "gunicorn-gevent,uwsgi-threads", "--server-arg=--preload",
                  "--duration", "1"],
                 "uwsgi-threads: uWSGI refuses the server argument --preload (unrecognized option"
                 " '--preload'): server arguments go to every mode of a run; name only the modes"
                 " of the server they are for", id="server-arg-of-gunicorn-to-uwsgi"),
    # an abbreviation that begins two of uWSGI's options: refused by uWSGI as it started
    pytest.param(["run", "--modes", "uwsgi-processes", "--server-arg=--max-req=5"],
                 "uwsgi-processes: uWSGI refuses the server argument --max-req=5 (option"
                 " '--max-req' is ambiguous; possibilities: '--max-requests'"
                 " '--max-requests-delta')", id="server-arg-uwsgi-ambiguous"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--server-arg=--lazy-apps"],
                 "gunicorn-sync: gunicorn refuses the server argument --lazy-apps (unrecognized"
                 " arguments: --lazy-apps)", id="serve-server-arg-of-uwsgi-to-gunicorn"),
    pytest.param(["run", "--modes", "granian", "--server-arg=--preload"],
                 "granian: granian refuses the server argument --preload (No such option",
                 id="server-arg-of-gunicorn-to-granian"),
    pytest.param(["soak", "--mode", "waitress", "--minutes", "1", "--server-arg=--backlog=64"],
                 "waitress: ctxbench's waitress runner refuses the server argument --backlog=64"
                 " (unrecognized arguments: --backlog=64)", id="soak-server-arg-to-waitress"),
    pytest.param(["run", "--modes", "uvicorn-asgiref", "--server-arg=--workers=x"],
                 "uvicorn-asgiref: ctxbench's uvicorn runner refuses the server argument"
                 " --workers=x (argument --workers: invalid int value: 'x')",
                 id="server-arg-bad-value"),
    # a server's --help or --version: printed and exited 0 in ctxbench's own process (gunicorn,
    # a runner: run said nothing and exited 0) or as a traceback (granian)
    pytest.param(["run", "--modes", "gunicorn-sync", "--server-arg=--help"],
                 "gunicorn-sync: the server argument --help makes gunicorn print its help or"
                 " version and exit, so it would serve nothing: drop it",
                 id="server-arg-gunicorn-help"),
    pytest.param(["serve", "--mode", "waitress", "--server-arg=-h"],
                 "makes ctxbench's waitress runner print its help", id="server-arg-runner-help"),
    pytest.param(["run", "--modes", "granian", "--server-arg=--version"],
                 "granian: the server argument --version makes granian print its help or version",
                 id="server-arg-granian-version"),
    pytest.param(["run", "--modes", "uwsgi-threads", "--server-arg=--version"],
                 "uwsgi-threads: the server argument --version makes uWSGI print its help",
                 id="server-arg-uwsgi-version"),
    pytest.param(["run", "--modes", "uwsgi-threads", "--server-arg=--vers"],  # its abbreviation
                 "uwsgi-threads: the server argument --vers makes uWSGI print its help",
                 id="server-arg-uwsgi-version-abbreviated"),
    pytest.param(["run", "--compare-flask", "--backend", "no-reset"], "--compare-flask",
                 id="compare-flask-mutant"),
    pytest.param(["run", "--compare-flask", "--app", "pkg.wsgi:app"], "--compare-flask",
                 id="compare-flask-app"),
    pytest.param(["run", "--target", "http://192.0.2.1:80"], "loopback", id="target-remote"),
    pytest.param(["run", "--target", "http://[::1"], "give the URL the app is served at",
                 id="target-unclosed-ipv6"),
    pytest.param(["run", "--target", "http://127.0.0.1:0"], "port must be a number from 1",
                 id="target-port-0"),
    pytest.param(["run", "--target", "http://127.0.0.1:99999"], "port must be a number from 1",
                 id="target-port-huge"),
    pytest.param(["run", "--target", "http://127.0.0.1:8080", "--modes", "gunicorn-sync"],
                 "--target", id="target-with-modes"),
    pytest.param(["run", "--no-such-option"], "unrecognized arguments", id="unknown-option"),
    pytest.param(["frobnicate"], "invalid choice", id="unknown-command"),
    # -- run: paths
    pytest.param(["run", "--out", "{file}"], "is a file, not a folder", id="out-is-a-file"),
    pytest.param(["run", "--run-dir", "{file}"], "is a file, not a folder", id="run-dir-file"),
    pytest.param(["run", "--out", "{file}/sub"], "is a file, not a folder", id="out-under-file"),
    pytest.param(["run", "--out", ""], "argument --out: give a folder", id="out-empty"),
    # what the system refuses where the checks above pass: a name too long, and /proc, where
    # root's access check passes and no folder can be made
    pytest.param(["run", "--out", "{tmp}/" + "a" * 300], "cannot create a folder there (File name",
                 id="out-name-too-long"),
    pytest.param(["run", "--run-dir", "{tmp}/out/" + "a" * 300],
                 "cannot create a folder there (File name", id="run-dir-name-too-long"),
    pytest.param(["chaos", "--out", "/proc/ctxbench-out"], "bad --out '/proc/ctxbench-out'",
                 id="out-in-proc"),
    pytest.param(["run", "--run-dir", "/proc/ctxbench-run"], "bad --run-dir '/proc/ctxbench-run'",
                 id="run-dir-in-proc"),
    pytest.param(["run", "--run-dir", " "], "argument --run-dir: give a folder",
                 id="run-dir-empty"),
    pytest.param(["chaos", "--run-dir", ""], "argument --run-dir: give a folder",
                 id="chaos-run-dir-empty"),
    pytest.param(["run", "--run-dir", "{tmp}/ref", "--out", "{tmp}/out"], "not both",
                 id="run-dir-and-out"),
    # -- serve
    pytest.param(["serve", "--mode", "nope"], "unknown server mode 'nope'", id="serve-mode"),
    pytest.param(["serve"], "required: --mode", id="serve-no-mode"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--port", "70000"], "bad --port 70000",
                 id="serve-port-huge"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--port", "0"], "bad --port 0",
                 id="serve-port-0"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--port", "{busy}"],
                 "is in use: stop the other program or pick another port", id="serve-port-busy"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--proxy", "nginx,nginx-keepalive"],
                 "serve runs one server", id="serve-two-proxies"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--workers", "0"], "bad --workers 0",
                 id="serve-workers-0"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--backend", "nope"], "unknown backend",
                 id="serve-backend"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--app", "pkg:create_app(x)"],
                 "'x' is not a literal", id="serve-app-factory"),
    # -- chaos and soak share the run's checks
    pytest.param(["chaos", "--concurrency", "5000"], "bad --concurrency 5000", id="chaos-5000"),
    pytest.param(["chaos", "--faults", "nope"], "unknown fault 'nope'", id="chaos-fault"),
    pytest.param(["chaos", "--modes", "gunicorn-sync,gunicorn-sync"], "twice", id="chaos-twice"),
    pytest.param(["chaos", "--interval", "0"], "bad --interval 0", id="chaos-interval-0"),
    pytest.param(["chaos", "--faults", "recycle,reload", "--modes", "waitress"],
                 "nothing to run: recycle, reload cannot happen under waitress (a single",
                 id="chaos-nothing-applies"),
    pytest.param(["chaos", "--worker-timeout", "0"], "bad --worker-timeout 0",
                 id="chaos-worker-timeout-0"),
    pytest.param(["chaos", "--max-seconds", "-1"], "bad --max-seconds -1", id="chaos-max-seconds"),
    pytest.param(["chaos", "--round-requests", "2000000"],
                 "bad --round-requests 2000000: use a whole number in 1..1000000",
                 id="chaos-round-requests-over-limit"),
    pytest.param(["chaos", "--after-requests", "0"], "bad --after-requests 0",
                 id="chaos-after-requests-0"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--concurrency", "5000"],
                 "bad --concurrency 5000", id="soak-concurrency-over-limit"),
    pytest.param(["chaos", "--app", "pkg:create_app(lambda: 0)"], "is not a literal",
                 id="chaos-app-factory"),
    # -- --mount: one option and one check for run, serve, chaos and soak
    pytest.param(["run", "--mount", "api"],
                 "bad --mount 'api': a mount is a path that starts with '/'", id="run-mount"),
    pytest.param(["serve", "--mode", "gunicorn-sync", "--mount", "/a//b"],
                 "bad --mount '/a//b': a mount's path segments", id="serve-mount"),
    pytest.param(["chaos", "--mount", "api"],
                 "bad --mount 'api': a mount is a path that starts with '/'", id="chaos-mount"),
    pytest.param(["chaos", "--faults", "hook-error", "--modes", "gunicorn-sync", "--mount",
                  "/a b"], "bad --mount '/a b': a mount's path segments", id="chaos-mount-space"),
    pytest.param(["chaos", "--mount", ""], "bad --mount '': a mount is a path",
                 id="chaos-mount-empty"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--mount", "/../x"],
                 "bad --mount '/../x': a mount's path segments", id="soak-mount-dotdot"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--mount", "/api?x=1"],
                 "bad --mount '/api?x=1'", id="soak-mount-query"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--mount"],
                 "argument --mount: expected one argument", id="soak-mount-missing"),
    # -- corpus
    pytest.param(["corpus", "--entries", "nope"], "unknown corpus entry 'nope'",
                 id="corpus-entry"),
    pytest.param(["corpus", "--requests", "0"], "bad --requests 0", id="corpus-requests-0"),
    pytest.param(["corpus", "--fixed-requests", "-1"], "bad --fixed-requests -1",
                 id="corpus-fixed-requests"),
    pytest.param(["corpus", "--requests", "10000000000"],
                 f"bad --requests 10000000000: use a whole number in 1..{MAX_REQUESTS}",
                 id="corpus-requests-over-limit"),
    pytest.param(["corpus", "--fixed-requests", "10000000000"],
                 f"bad --fixed-requests 10000000000: use a whole number in 1..{MAX_REQUESTS}",
                 id="corpus-fixed-requests-over-limit"),
    pytest.param(["corpus", "--concurrency", "5000"], "bad --concurrency 5000",
                 id="corpus-concurrency-over-limit"),
    pytest.param(["corpus", "--modes", "nope"], "unknown server mode 'nope'", id="corpus-mode"),
    pytest.param(["corpus", "--modes", "uwsgi-gevent", "--connections", "keepalive"],
                 "nothing to measure", id="corpus-nothing-to-measure"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "-1"], "bad --minutes",
                 id="soak-minutes"),
    pytest.param(["soak", "--mode", "nope", "--minutes", "1"], "unknown server mode",
                 id="soak-mode"),
    pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--app", "pkg"],
                 "'pkg:app' for an app object or 'pkg:create_app()'", id="soak-app-bare-module"),
    # -- report and compare
    pytest.param(["report", "{tmp}/nowhere"], "no such folder", id="report-missing"),
    pytest.param(["report", "{tmp}"], "no results at", id="report-no-results"),
    pytest.param(["report", "{corrupt}"], "is not valid JSON", id="report-corrupt"),
    pytest.param(["compare", "{a}", "{tmp}/nowhere"], "no such folder", id="compare-missing"),
    pytest.param(["compare", "{a}", "{b}", "--threshold", "abc"], "threshold", id="threshold-abc"),
    pytest.param(["compare", "{a}", "{b}", "--threshold", "0"], "threshold", id="threshold-0"),
    pytest.param(["compare", "{a}", "{b}", "--threshold", "-5%"], "threshold", id="threshold-neg"),
    pytest.param(["compare", "{a}", "{b}"], "no cell in common", id="compare-nothing-in-common"),
    pytest.param(["compare", "{api}", "{admin}"],
                 "differ only in the mount (A /api, B /admin)", id="compare-other-mount"),
]  # fmt: skip


def _run_folder(path: Path, mode: str, mount: str | None = None) -> Path:
    cell = Cell(app="harness.apps.core_app:app", backend="contextvar", mode=mode,
                connections="keepalive", requests=10, leaks=0, errors=0,
                runs=(Measurement(100.0),),
                server=ServerInfo(effective={"mount": mount}))  # fmt: skip
    run = Run.start(path.name, ["ctxbench", "run"], RunSettings(modes=(mode,), mount=mount))
    results.write(path, run.replace(cells=(cell,), status="complete"))
    return path


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and refuse) any attempt to spawn a server process."""
    import harness.servers.base

    spawned: list[object] = []

    def refuse(*args: object, **kwargs: object) -> t.NoReturn:
        spawned.append(args)
        raise RuntimeError("a bad command line started a server")

    monkeypatch.setattr(harness.servers.base, "spawn", refuse)
    return spawned


@pytest.mark.parametrize(("argv", "expected"), BAD_INVOCATIONS)
def test_bad_command_line_is_one_line_and_exit_2(
    argv: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_server: list[object],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CTXBENCH_PROBE_SECRET", "WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "a-file").write_text("not a folder")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.json").write_text("{not json")
    places = {
        "tmp": str(tmp_path),
        "file": str(tmp_path / "a-file"),
        "corrupt": str(corrupt),
        "a": str(_run_folder(tmp_path / "run-a", "gunicorn-sync")),
        "b": str(_run_folder(tmp_path / "run-b", "werkzeug-threaded")),
        "api": str(_run_folder(tmp_path / "run-api", "gunicorn-sync", "/api")),
        "admin": str(_run_folder(tmp_path / "run-admin", "gunicorn-sync", "/admin")),
    }
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    places["busy"] = str(busy.getsockname()[1])
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        status = main([arg.format(**places) for arg in argv])
    except SystemExit as e:  # argparse's own errors
        status = int(e.code or 0)
    finally:
        busy.close()
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("ctxbench"), err
    assert expected in err, err
    assert "Traceback" not in err + out
    assert "--timeout" not in err, "there is no --timeout option to point at"
    assert no_server == [], "no server may start"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be left behind"


@pytest.mark.parametrize(
    ("argv", "missing", "expected"),
    [
        pytest.param(["run", "--compare-flask", "--modes", "werkzeug-threaded"], "flask",
                     "needs Flask, which is not installed here: {pip} install flask",
                     id="compare-flask-without-flask"),
        pytest.param(["corpus", "--modes", "werkzeug-threaded"], "structlog",
                     "structlog is not installed ({pip} install", id="corpus-without-its-extra"),
    ],
)  # fmt: skip
def test_a_missing_library_is_found_before_anything_starts(
    argv: list[str],
    missing: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_server: list[object],
) -> None:
    # Found late, the core's cells ran first and left a run folder behind.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name)
    )
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected.format(pip=pip_command()) in err, err
    assert no_server == [] and list(tmp_path.iterdir()) == []


def test_at_least_forty_bad_command_lines_are_tried() -> None:
    assert len(BAD_INVOCATIONS) >= 40


def test_duration_help_names_no_value_the_option_rejects() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    duration = next(a for a in run._actions if "--duration" in a.option_strings)
    assert "unbounded" not in (duration.help or "")
    assert "--requests" in (duration.help or "")
