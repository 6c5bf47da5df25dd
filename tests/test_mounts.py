"""Apps served under a path prefix: ``--mount``, ``--target`` with a path, the probe's lookup.

In-process only (werkzeug's test client); the live runs are in ``scenarios/test_mounted_apps.py``.
"""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client

from harness.cli import main
from harness.errors import AppLoadError, UsageError
from harness.load.spec import LoadSpec
from harness.probe.locate import ServedUnder, locate
from harness.protocol import PROBE_PATH, parse_mount, probe_path
from harness.servers import ServerConfig
from harness.servers._process import SCRUBBED_ENV
from harness.target import parse_target

flask = pytest.importorskip("flask")


def _flask(name: str) -> t.Any:
    app = flask.Flask(name)

    @app.route("/where")
    def where() -> dict[str, str]:
        return {"script_name": flask.request.script_root, "url": flask.url_for("where")}

    return app


def _ensure(app: t.Any, mount: str | None) -> tuple[t.Any, str]:
    from harness.wsgi import _ensure_probe

    return _ensure_probe(app, "m:app", mount)


def _probe(app: t.Any, path: str, token: str = "t-1") -> t.Any:
    return Client(app).get(f"{path}?token={token}")


@pytest.mark.parametrize(
    ("text", "mount"),
    [("/api", "/api"), ("/api/", "/api"), ("/", "/"), ("/a/v-1.2_~", "/a/v-1.2_~")],
)
def test_mounts_are_normalised(text: str, mount: str) -> None:
    assert parse_mount(text) == mount


@pytest.mark.parametrize("text", ["api", "", "/a//b", "/a b", "/../x", "/a/.", "/a%20", "/a;b"])
def test_bad_mounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="mount"):
        parse_mount(text)


def test_the_probe_path_under_a_mount() -> None:
    assert probe_path(None) == probe_path("") == probe_path("/") == PROBE_PATH
    assert probe_path("/api") == "/api" + PROBE_PATH


def test_a_dispatcher_gets_the_probe_on_the_app_mounted_where_named() -> None:
    root, api, admin = _flask("root"), _flask("api"), _flask("admin")
    served, where = _ensure(DispatcherMiddleware(root, {"/api": api, "/admin": admin}), "/api")
    assert where == "harness.wsgi inside DispatcherMiddleware at /api"
    response = _probe(served, "/api" + PROBE_PATH)
    assert response.status_code == 200 and response.json["app"] == "api"
    assert _probe(served, PROBE_PATH).status_code == 404  # the root app has no probe
    assert _probe(served, "/admin" + PROBE_PATH).status_code == 404


def test_a_dispatcher_without_a_mount_is_one_line_naming_its_mounts() -> None:
    # Before: the probe went on the root app (a Flask app here), and a run checked it, never
    # the app under /api, and said "no leak".
    dispatcher = DispatcherMiddleware(_flask("root"), {"/api": _flask("api"), "/a": _flask("a")})
    with pytest.raises(AppLoadError) as info:
        _ensure(dispatcher, None)
    message = str(info.value)
    assert "\n" not in message
    assert "is a DispatcherMiddleware that serves apps under /a, /api" in message
    assert "--mount (--mount /a), or --mount / for its root app" in message


def test_mount_root_names_a_dispatchers_root_app() -> None:
    dispatcher = DispatcherMiddleware(_flask("root"), {"/api": _flask("api")})
    served, where = _ensure(dispatcher, "/")
    assert where == "harness.wsgi inside DispatcherMiddleware at /"
    assert _probe(served, PROBE_PATH).json["app"] == "root"


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("/admin", "nothing is mounted at /admin (its DispatcherMiddleware serves /api)"),
        ("/ap", "nothing is mounted at /ap (its DispatcherMiddleware serves /api)"),
        ("/api/v2", "nothing is mounted at /api/v2 (its DispatcherMiddleware serves /api/v1)"),
        ("/api", "is a DispatcherMiddleware that serves apps under /api/v1: ctxbench"),
    ],
)
def test_a_mount_nothing_serves_is_refused(mount: str, message: str) -> None:
    inner = DispatcherMiddleware(NotFound(), {"/v1": _flask("v1")})
    with pytest.raises(AppLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _ensure(DispatcherMiddleware(NotFound(), {"/api": inner}), mount)


def test_nested_dispatchers_and_middleware_are_followed() -> None:
    inner = DispatcherMiddleware(NotFound(), {"/v1": ProxyFix(_flask("v1"))})
    outer = ProxyFix(DispatcherMiddleware(NotFound(), {"/api": inner}))
    served, where = _ensure(outer, "/api/v1")
    assert where == (
        "harness.wsgi inside ProxyFix inside DispatcherMiddleware at /v1"
        " inside DispatcherMiddleware at /api inside ProxyFix"
    )
    assert _probe(served, "/api/v1" + PROBE_PATH).json["app"] == "v1"


def test_a_probe_the_mounted_app_installed_itself_is_used() -> None:
    from harness.probe import install_probe

    api = install_probe(_flask("api"), enabled=True)
    served, where = _ensure(DispatcherMiddleware(NotFound(), {"/api": api}), "/api")
    assert where == "app"
    assert _probe(served, "/api" + PROBE_PATH).status_code == 200


def test_a_plain_app_is_served_under_its_mount() -> None:
    # uWSGI's --mount /api=module:app, gunicorn with SCRIPT_NAME=/api: the app sees the prefix
    # in SCRIPT_NAME, and its URLs carry it.
    app = _flask("plain")
    served, where = _ensure(app, "/api")
    assert where == "harness.wsgi, served under /api by ctxbench"
    assert isinstance(served, ServedUnder)
    assert _probe(served, "/api" + PROBE_PATH).json["app"] == "plain"
    assert _probe(served, PROBE_PATH).status_code == 404
    where_json = Client(served).get("/api/where").json
    assert where_json == {"script_name": "/api", "url": "/api/where"}
    assert Client(served).get("/apix/where").status_code == 404


def test_a_mount_left_over_inside_a_dispatchers_app_is_refused() -> None:
    dispatcher = DispatcherMiddleware(NotFound(), {"/api": _flask("api")})
    with pytest.raises(AppLoadError, match="serves nothing under /v1 itself"):
        _ensure(dispatcher, "/api/v1")


def test_a_plain_wsgi_callable_is_left_to_answer_itself() -> None:
    def plain(environ: object, start_response: object) -> list[bytes]:
        return []

    found = locate(plain, None, "m:plain")
    assert (found.app, found.where, found.serve_under) == (None, "none", "")


@pytest.mark.parametrize(
    ("url", "normalised", "mount"),
    [
        ("http://localhost:8080/", "http://127.0.0.1:8080", ""),
        ("http://127.0.0.1:8080/api", "http://127.0.0.1:8080/api", "/api"),
        ("http://localhost:8080/api/v1/", "http://127.0.0.1:8080/api/v1", "/api/v1"),
        ("http://[::1]:9000/api", "http://[::1]:9000/api", "/api"),
    ],
)
def test_target_urls_with_a_path_prefix(url: str, normalised: str, mount: str) -> None:
    target = parse_target(url)
    assert (target.url, target.mount) == (normalised, mount)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/a b", "its path is the prefix the app is served under"),
        ("http://127.0.0.1:8080/../x", "its path is the prefix the app is served under"),
        ("http://127.0.0.1:8080/api?x=1", "no query, fragment or user name"),
        ("http://127.0.0.1:8080/api#top", "no query, fragment or user name"),
        ("http://me@127.0.0.1:8080/api", "no query, fragment or user name"),
        ("http://10.1.2.3:8080/api", "not on this machine"),
    ],
)
def test_bad_target_prefixes_are_refused(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_target(url)


def test_server_config_and_load_spec_check_the_mount() -> None:
    assert ServerConfig(mount="/api/").mount == "/api"
    with pytest.raises(UsageError, match=r"bad --mount 'api': a mount is a path"):
        ServerConfig(mount="api")
    LoadSpec(duration=1.0, mount="/api").validate()
    with pytest.raises(ValueError, match="mount must be a path prefix"):
        LoadSpec(duration=1.0, mount="/api/").validate()


def test_the_servers_do_not_inherit_a_prefix_from_the_environment() -> None:
    # gunicorn alone would serve under SCRIPT_NAME (a 500 for every probe request at the root).
    assert {"SCRIPT_NAME", "CTXBENCH_MOUNT"} <= set(SCRUBBED_ENV)


def test_the_driver_requests_the_probe_under_the_mount() -> None:
    from harness.load.driver import _Run

    run = _Run(LoadSpec(duration=1.0, mount="/api"), None)
    assert run.prefix == b"GET /api/_ctxbench/probe?token="


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mount", "api"], "bad --mount 'api': a mount is a path that starts with '/'"),
        (["--mount", "/a b"], "bad --mount '/a b': a mount's path segments hold only"),
        (
            ["--target", "http://127.0.0.1:1", "--mount", "/api"],
            "put the path prefix in its URL (--target http://127.0.0.1:8080/api)",
        ),
    ],
)
def test_bad_mount_options_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["run", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctxbench: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_nginx_forwards_only_the_mount() -> None:
    import types

    from harness.servers import MODES, nginx

    upstream = types.SimpleNamespace(mode="gunicorn-gthread", host="127.0.0.1", port=4321)
    front = nginx.NginxFront(
        nginx.Nginx("nginx", keepalive=0), "/usr/sbin/nginx", Path("/tmp/x"), upstream,
        MODES["gunicorn-gthread"].traits,
    )  # type: ignore[arg-type]  # fmt: skip
    assert "location /api/ {" in front.render_config(ServerConfig(port=1234, mount="/api"))
    assert "location / {" in front.render_config(ServerConfig(port=1234))


def test_a_request_the_server_moved_under_the_mount_passes() -> None:
    # gunicorn run with --env SCRIPT_NAME=/api strips the prefix from PATH_INFO itself.
    served, _ = _ensure(_flask("plain"), "/api")
    client = Client(served)
    environ = {"SCRIPT_NAME": "/api"}
    response = client.get(PROBE_PATH + "?token=t-2", environ_overrides=environ)
    assert response.status_code == 200 and response.json["token"] == "t-2"
    assert client.get("/where", environ_overrides=environ).json["url"] == "/api/where"


def test_the_same_target_twice_is_refused_as_normalised() -> None:
    from harness.preflight import checked
    from harness.settings import RunSettings

    targets = ("http://localhost:8080/api/", "http://127.0.0.1:8080/api")
    with pytest.raises(UsageError, match=re.escape("lists 'http://127.0.0.1:8080/api' twice")):
        checked(RunSettings(targets=targets))
    checked(RunSettings(targets=("http://127.0.0.1:8080/api", "http://127.0.0.1:8080/admin")))


def test_the_dispatcher_message_names_the_option_every_command_has() -> None:
    # run, serve, chaos and soak all take --mount: the line said "chaos and soak take no
    # --mount", so a chaos user was told to give a mounted app's import string instead.
    dispatcher = DispatcherMiddleware(_flask("root"), {"/api": _flask("api")})
    with pytest.raises(AppLoadError) as info:
        _ensure(dispatcher, None)
    assert str(info.value).endswith("with --mount (--mount /api), or --mount / for its root app")


@pytest.mark.parametrize("command", ["run", "serve", "chaos", "soak"])
def test_every_command_that_starts_a_server_takes_one_mount_option(command: str) -> None:
    from harness.cli import build_parser

    subparsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    run_mount = next(a for a in subparsers["run"]._actions if "--mount" in a.option_strings)
    mount = next(a for a in subparsers[command]._actions if "--mount" in a.option_strings)
    assert (mount.help, mount.metavar, mount.default) == (
        run_mount.help,
        run_mount.metavar,
        run_mount.default,
    )


def _mounted_server(mode: str = "gunicorn-gthread") -> t.Any:
    import types

    server = types.SimpleNamespace(
        host="127.0.0.1", port=9, mode=mode, mount="/api", pid=0, gone=lambda: None
    )
    server.app_server = server
    return server


def test_every_request_of_a_faults_own_clients_goes_under_the_mount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # abort, slow-client and timeout send requests of their own beside the load: at the root
    # they hit the dispatcher's root app (a 404), never the app under --mount.
    from harness.faults import FAULTS, clients, process
    from harness.load.hostile import Outcome
    from harness.probe.middleware import STREAM_PATH
    from harness.settings import ChaosSettings

    paths: list[str] = []

    def record(host: str, port: int, target: str, *args: object, **kwargs: object) -> Outcome:
        paths.append(target)
        return Outcome("refused")

    for name in ("abort_mid_request", "abort_mid_body", "_slow_send", "_slow_read"):
        monkeypatch.setattr(clients, name, record)
    monkeypatch.setattr(process, "get", record)
    monkeypatch.setattr(process, "worker_pids", lambda server: set())
    for fault in ("abort", "slow-client", "timeout"):
        injector = FAULTS[fault].injector(_mounted_server("gunicorn-sync"), ChaosSettings())
        injector.stop()  # lets a timeout request go at once, as the runner's end does
        assert injector.hostile is not None
        for seq in range(1, 5):
            injector.hostile.action(seq)
    assert len(paths) == 12
    assert {p.split("?")[0] for p in paths} == {"/api" + PROBE_PATH, "/api" + STREAM_PATH}


def test_the_fault_load_and_the_recovery_check_go_under_the_mount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.faults import runner
    from harness.load.hostile import Outcome

    server = _mounted_server()
    spec = runner._spec(server, "keepalive", runner.LoadSettings(), 10)
    assert spec.mount == "/api"
    paths: list[str] = []

    def get(host: str, port: int, target: str, **kwargs: object) -> Outcome:
        paths.append(target)
        return Outcome("answered", 200)

    monkeypatch.setattr(runner, "get", get)
    monkeypatch.setattr(runner, "worker_pids", lambda server: {1})
    assert runner._wait_recovered(server, 1) == ({1}, None)
    assert paths and all(p.startswith("/api" + PROBE_PATH + "?") for p in paths)


def _flask_dispatching() -> tuple[t.Any, t.Any]:
    # Flask's documented pattern: the frontend app's wsgi_app dispatches to other apps.
    frontend, backend = _flask("frontend"), _flask("backend")
    frontend.wsgi_app = DispatcherMiddleware(frontend.wsgi_app, {"/backend": backend})
    return frontend, backend


def test_an_app_whose_wsgi_app_dispatches_is_probed_at_the_mount() -> None:
    # Before: the probe went on the frontend app, which answered /backend/_ctxbench/probe once
    # served under the mount, so the backend app was never checked (a run said "ok").
    frontend, _ = _flask_dispatching()
    served, where = _ensure(frontend, "/backend")
    assert where == "harness.wsgi inside DispatcherMiddleware at /backend inside Flask.wsgi_app"
    assert served is frontend
    assert _probe(served, "/backend" + PROBE_PATH).json["app"] == "backend"
    assert _probe(served, PROBE_PATH).status_code == 404


def test_an_app_whose_wsgi_app_dispatches_needs_a_mount() -> None:
    frontend, _ = _flask_dispatching()
    with pytest.raises(AppLoadError) as info:
        _ensure(frontend, None)
    assert "is a Flask app whose wsgi_app is a DispatcherMiddleware that serves apps under" in str(
        info.value
    )
    assert "--mount (--mount /backend), or --mount / for its root app" in str(info.value)
    with pytest.raises(AppLoadError, match=r"nothing is mounted at /x \(its Dispatcher"):
        _ensure(_flask_dispatching()[0], "/x")


def test_mount_root_names_the_dispatching_app_itself() -> None:
    frontend, _ = _flask_dispatching()
    served, where = _ensure(frontend, "/")
    assert where == "harness.wsgi"
    assert _probe(served, PROBE_PATH).json["app"] == "frontend"


def test_a_probe_the_dispatching_app_installed_itself_is_looked_through() -> None:
    from harness.probe import install_probe

    frontend, _ = _flask_dispatching()
    install_probe(frontend, enabled=True)  # its module called install_probe on the frontend
    served, where = _ensure(frontend, "/backend")
    assert where.startswith("harness.wsgi inside DispatcherMiddleware at /backend")
    assert _probe(served, "/backend" + PROBE_PATH).json["app"] == "backend"


MOUNTED_CORE = """
from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from core import App

core_inside = DispatcherMiddleware(NotFound(), {"/api": App("core_api")})
flask_inside = DispatcherMiddleware(App("core_root"), {"/api": Flask("flask_api")})
"""


def test_a_storage_mutant_is_judged_by_the_app_under_the_mount(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # --backend swaps the core's storage: the app that serves the probe requests must be a core
    # app, whatever is in front of it (it said the dispatcher was no core.App).
    from harness import backends, wsgi
    from harness.protocol import APP_ENV, BACKEND_ENV, MOUNT_ENV

    (tmp_path / "mounted_core.py").write_text(MOUNTED_CORE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(wsgi, "LOADED", {})
    monkeypatch.setenv(BACKEND_ENV, "no-reset")
    monkeypatch.setenv(MOUNT_ENV, "/api")
    try:
        monkeypatch.setenv(APP_ENV, "mounted_core:core_inside")
        wsgi._bootstrap()
        assert wsgi.LOADED["probe"] == "harness.wsgi inside DispatcherMiddleware at /api"
        assert wsgi.LOADED["storage"] != backends.DEFAULT_BACKEND
        monkeypatch.setenv(APP_ENV, "mounted_core:flask_inside")
        with pytest.raises(
            AppLoadError, match=r"serves its probe requests from a flask\.app\.Flask"
        ):
            wsgi._bootstrap()
    finally:
        backends.restore_default()
