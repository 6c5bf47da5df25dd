"""Server modes: start, answer the probe, report what ran, stop, leave nothing behind."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
import typing as t
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness.errors import AppLoadError, PortInUseError, ServerStartError, UsageError
from harness.servers import (
    MODES,
    PROXIES,
    Availability,
    LiveServer,
    ServerConfig,
    ServerMode,
    available_modes,
    get_mode,
    group_members,
    live_server,
    nginx,
    start_server,
)
from harness.servers._process import PortRaceLost
from harness.servers._proxy import ProxiedMode, ProxiedServer
from harness.servers.base import Reported

# A probe-speaking WSGI callable with no framework: these tests are about the servers, not the
# app, so they do not depend on core or flask.
STAND_IN = textwrap.dedent(
    """
    import json, os, threading
    from urllib.parse import parse_qs

    PHASES = ("entry", "before_request", "view", "after_request", "teardown_request",
              "teardown_appcontext")

    def app(environ, start_response, phases=PHASES):
        if environ["PATH_INFO"] != "/_ctxbench/probe":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        token = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        body = json.dumps({
            "token": token, "app": "stand-in",
            "worker": {"pid": os.getpid(), "thread": threading.get_ident(), "greenlet": 0},
            "obs": [[phase, "request", token] for phase in phases],
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def view_only(environ, start_response):
        # An answer of its own, as a view of another framework might write it: it echoes the
        # token, but the load driver counts every such answer as an error.
        return app(environ, start_response, phases=("view",))

    def no_probe(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no probe here"]

    def plain(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    def raises(environ, start_response):  # a middleware that calls observe() in front of it
        raise RuntimeError("observe('audit_user', ...) was called outside a probe request.")

    not_callable = 42

    def failing_factory():
        raise RuntimeError("no DATABASE_URL")
    """
)
APP = "ctxbench_stand_in:app"
ALL_MODES = [pytest.param(name, id=name) for name in MODES]


@pytest.fixture(scope="module")
def stand_in_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stand_in")
    (path / "ctxbench_stand_in.py").write_text(STAND_IN)
    return path


#: A variable set to a value unique to each test: every server process the test starts inherits
#: it, so a survivor is found by it (other test runs on the machine use the same app names).
TEST_MARK = "CTXBENCH_TEST_MARK"


@pytest.fixture(autouse=True)
def server_env(monkeypatch: pytest.MonkeyPatch, stand_in_dir: Path) -> None:
    """Scrub gunicorn's variables, mark this test's processes and make the stand-in app
    importable by the servers."""
    for name in ("WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(TEST_MARK, uuid.uuid4().hex)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(stand_in_dir), os.getcwd()]))


def skip_unavailable(name: str) -> None:
    availability = get_mode(name).available()
    if not availability.ok:
        pytest.skip(f"{name} cannot run here: {availability.reason}")


def probe(url: str, token: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_ctxbench/probe?token={token}", timeout=5) as response:
        rv: dict[str, object] = json.loads(response.read())
        return rv


def assert_gone(pgid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group_members(pgid) == [], f"processes of group {pgid} survived"


def test_registry_names_and_order() -> None:
    assert list(MODES)[:13] == [
        "werkzeug-threaded",
        "gunicorn-sync",
        "gunicorn-gthread",
        "gunicorn-gevent",
        "gunicorn-tornado",
        "waitress",
        "eventlet",
        "uwsgi-processes",
        "uwsgi-threads",
        "uwsgi-gevent",
        "granian",
        "uvicorn-asgiref",
        "hypercorn-asgiref",
    ]
    for mode in MODES.values():
        assert isinstance(mode.available(), Availability)
        assert mode.summary


def test_a_proxy_in_front_of_any_mode_is_a_mode() -> None:
    for upstream in MODES:
        plain = get_mode(f"nginx+{upstream}")
        kept = get_mode(f"nginx-keepalive+{upstream}")
        assert isinstance(plain, ProxiedMode) and isinstance(kept, ProxiedMode)
        assert (plain.name, kept.name) == (f"nginx+{upstream}", f"nginx-keepalive+{upstream}")
        assert plain.traits.proxy is not None and kept.traits.proxy is not None
        assert plain.traits.proxy.reuses_upstream_connections is False
        assert kept.traits.proxy.reuses_upstream_connections is True
        upstream_traits = MODES[upstream].traits
        # The client talks to the proxy, which keeps client connections alive for any upstream.
        assert kept.traits.keepalive_applicable and plain.traits.keepalive_applicable
        assert (
            dataclasses.replace(
                kept.traits, proxy=None, keepalive_applicable=upstream_traits.keepalive_applicable
            )
            == upstream_traits
        )
    assert list(PROXIES) == ["nginx", "nginx-keepalive"]
    assert "nginx+gunicorn-gevent" not in MODES  # composed on demand, never registered


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("apache+gunicorn-sync", "unknown proxy 'apache'", id="proxy"),
        pytest.param("nginx+uwsgi", "unknown server mode 'uwsgi' behind proxy 'nginx'", id="mode"),
        pytest.param("nginx+nginx+gunicorn-sync", "unknown server mode 'nginx+gunicorn-s", id="2"),
    ],
)
def test_unknown_proxy_or_mode_behind_it(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        get_mode(name)


def test_nginx_config_keeps_every_path_in_its_folder(tmp_path: Path) -> None:
    upstream = types.SimpleNamespace(mode="gunicorn-gevent", host="127.0.0.1", port=4321)
    cfg = ServerConfig(app=APP, backend="contextvar", host="127.0.0.1", port=1234)
    prefix = tmp_path / "with space" / "nginx"
    for name, keepalive in (("nginx", False), ("nginx-keepalive", True)):
        proxy = nginx.Nginx(name, keepalive=16 if keepalive else 0)
        front = nginx.NginxFront(
            proxy, "/usr/sbin/nginx", prefix, upstream, MODES["gunicorn-gevent"].traits
        )  # type: ignore[arg-type]
        text = front.render_config(cfg)
        assert "daemon off;" in text and "listen 127.0.0.1:1234;" in text
        assert "server 127.0.0.1:4321;" in text
        paths = re.findall(r'^\s*(\w+)\s+"([^"]+)";', text, re.MULTILINE)
        assert {directive for directive, _ in paths} == {
            "pid", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
            "uwsgi_temp_path", "scgi_temp_path",
        }  # fmt: skip
        assert all(Path(path).parent == prefix for _, path in paths), paths
        assert ("keepalive 16;" in text) is keepalive
        assert ('proxy_set_header Connection "";' in text) is keepalive
        assert f"proxy_http_version {'1.1' if keepalive else '1.0'};" in text
    prefix.mkdir(parents=True)
    argv = front.command(cfg)  # writes the configuration it runs
    assert argv[-7:] == ["/usr/sbin/nginx", "-e", "stderr", "-p", f"{prefix}/",
                         "-c", str(prefix / "nginx.conf")]  # fmt: skip
    assert "_guard.py" in argv[2]
    assert (prefix / "nginx.conf").read_text() == text


def test_a_stopped_proxy_leaves_no_empty_folder_in_the_run(tmp_path: Path) -> None:
    # nginx makes its five temp paths at start; a run's folder keeps what was written only.
    workdir = tmp_path / "nginx+gunicorn-sync"
    prefix = workdir / "nginx"
    for name in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        (prefix / name).mkdir(parents=True)
    (prefix / "proxy_temp" / "1").mkdir()
    (prefix / "nginx.conf").write_text("daemon off;\n")
    (workdir / "gunicorn-sync.log").write_text("")
    (workdir / "kept").mkdir()
    (workdir / "kept" / "0000000001").write_text("a body nginx buffered")
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    server = ProxiedServer(
        mode="nginx+gunicorn-sync", host="127.0.0.1", port=1, process=process,
        log_path=workdir / "gunicorn-sync.log", traits=MODES["gunicorn-sync"].traits,
        workdir=workdir,
    )  # fmt: skip
    server.stop()
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == [
        "gunicorn-sync.log", "kept", "kept/0000000001", "nginx", "nginx/nginx.conf",
    ]  # fmt: skip


def test_missing_nginx_is_one_line_with_the_install_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx, "find_nginx", lambda: None)
    mode = get_mode("nginx-keepalive+gunicorn-sync")
    assert not mode.available().ok
    assert mode.available().explain() == "nginx is not installed (apt-get install nginx)"
    with pytest.raises(UsageError, match=r"cannot run here: nginx is not installed \(apt-get"):
        start_server(mode, app=APP)


def test_unknown_mode_lists_valid_ones() -> None:
    with pytest.raises(UsageError, match="unknown server mode 'uwsgi'") as info:
        get_mode("uwsgi")
    for name in MODES:
        assert name in str(info.value)


def test_commands_are_explicit() -> None:
    cfg = ServerConfig(app=APP, backend="contextvar", host="127.0.0.1", port=1234)
    argv = get_mode("gunicorn-gthread").command(cfg)
    for flag in ("-w", "--threads", "--worker-connections", "--no-control-socket", "-b"):
        assert flag in argv
    assert "127.0.0.1:1234" in argv
    assert argv[-1] == "harness.wsgi:app"
    assert not any("access" in arg for arg in argv)


def test_supervised_modes_share_one_default_worker_count() -> None:
    from harness.servers._supervised import DEFAULT_WORKERS, SupervisedMode

    supervised = [mode for mode in MODES.values() if isinstance(mode, SupervisedMode)]
    assert {m.name.split("-")[0] for m in supervised} == {
        "gunicorn", "uwsgi", "granian", "uvicorn", "hypercorn"
    }  # fmt: skip
    cfg = ServerConfig(app=APP, port=1234)
    for mode in supervised:
        family = mode.name.split("-")[0]
        flag = {"gunicorn": "-w", "uwsgi": "--processes"}.get(family, "--workers")
        for workers, expected in ((None, DEFAULT_WORKERS), (3, 3)):
            argv = mode.command(cfg.replace(workers=workers))
            assert argv[argv.index(flag) + 1] == str(expected), (mode.name, workers)
            assert mode.serving_processes(cfg.replace(workers=workers)) == expected
    for name in ("werkzeug-threaded", "waitress", "eventlet"):
        assert MODES[name].serving_processes(cfg.replace(workers=3)) == 1, name


def test_runners_read_the_options_their_modes_write(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.servers._runner import runner_parser

    for name in ("werkzeug-threaded", "waitress", "uvicorn-asgiref"):
        mode = MODES[name]
        argv = mode.command(ServerConfig(app=APP, host="127.0.0.2", port=1234))
        supervised = name == "uvicorn-asgiref"
        args, rest = runner_parser("runner", workers=supervised).parse_known_args(argv[3:])
        assert (args.host, args.port) == ("127.0.0.2", 1234), name
        workers = mode.serving_processes(ServerConfig()) if supervised else None
        assert getattr(args, "workers", None) == workers, name
        assert not any(arg in ("--host", "--port", "--workers") for arg in rest), name
    assert runner_parser("runner").parse_args(["--port", "1"]).host == "127.0.0.1"
    for argv, needs in ((["--workers", "1"], "--port"), (["--port", "1"], "--workers")):
        with pytest.raises(SystemExit) as info:
            runner_parser("runner", workers=True).parse_args(argv)
        assert info.value.code == 2
        assert needs in capsys.readouterr().err


def test_unavailable_mode_is_a_usage_error() -> None:
    class Missing(ServerMode):
        name = "missing"
        summary = "never available"

        def available(self) -> Availability:
            return Availability(False, "frobnicator is not installed")

        def command(self, cfg: ServerConfig) -> list[str]:
            raise AssertionError("must not be called")

    with pytest.raises(UsageError, match="cannot run here: frobnicator is not installed"):
        start_server(Missing(), app=APP)


class _LosesPortRaces(ServerMode):
    """A mode whose port another program takes before the server binds it, ``losses`` times."""

    name = "loses-port-races"
    summary = "a fake"

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.ports: list[int | None] = []

    def available(self) -> Availability:
        return Availability(True)

    def command(self, cfg: ServerConfig) -> list[str]:
        raise AssertionError("must not be called")

    def start(self, cfg: ServerConfig, log_dir: object, ready_timeout: float) -> LiveServer:
        self.ports.append(cfg.port)
        if len(self.ports) <= self.losses:
            raise PortRaceLost
        return t.cast(LiveServer, cfg.port)


def test_a_free_port_taken_before_the_bind_is_drawn_again_twice() -> None:
    mode = _LosesPortRaces(losses=2)
    started = start_server(mode, app=APP)
    assert len(mode.ports) == 3 and None not in mode.ports and started == mode.ports[-1]
    with pytest.raises(ServerStartError, match=r"free port on 127\.0\.0\.1 after 3"):
        start_server(_LosesPortRaces(losses=3), app=APP)


def test_a_port_given_and_taken_before_the_bind_is_in_use() -> None:
    # serve --port N: the user's port is not replaced by another.
    mode = _LosesPortRaces(losses=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PortInUseError, match=re.escape(f"port {port} on 127.0.0.1 is in use")):
        start_server(mode, app=APP, port=port)
    assert mode.ports == [port]


def test_the_modes_that_can_run_here_are_one_filter_of_each_command_s_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run, run --proxy, chaos, corpus and the pytest plugin each filtered their list by hand.
    waitress = MODES["waitress"]
    monkeypatch.setattr(waitress, "available", lambda: Availability(False, "not installed"))
    assert "waitress" not in available_modes() and "gunicorn-sync" in available_modes()
    # In the order asked, with a proxy's name for the mode behind it.
    assert available_modes(["waitress", "gunicorn-sync", "nginx+waitress"]) == ("gunicorn-sync",)


def test_busy_port_is_refused_before_start() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            start_server("gunicorn-sync", app=APP, port=port)
    assert str(info.value) == (
        f"port {port} on 127.0.0.1 is in use: stop the other program or pick another port"
    )


@pytest.mark.live
@pytest.mark.parametrize("mode", ALL_MODES)
def test_start_probe_stop_leaves_nothing(mode: str, tmp_path: Path) -> None:
    skip_unavailable(mode)
    with live_server(mode, app=APP, log_dir=tmp_path) as srv:
        pgid = srv.pid
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert probe(srv.url, "hello")["token"] == "hello"
        eff = srv.effective
        assert eff["mode"] == mode
        assert eff["app"] == APP
        assert eff["backend"] == "contextvar"
        assert eff["storage"] == "contextvar"
        assert eff["probe"] == "none"  # a plain WSGI callable speaking the probe itself
        assert eff["worker_pids"] and all(isinstance(p, int) for p in eff["worker_pids"])
        assert eff["server_version"]
        assert set(group_members(pgid)) >= {pgid, *eff["worker_pids"]}
        # The app was loaded in the workers, or in a process of the server that forked them.
        assert eff["app_loaded_in"] and set(group_members(pgid)) >= set(eff["app_loaded_in"])
        assert srv.log_path.parent == tmp_path
    assert srv.process.returncode is not None
    assert_gone(pgid)


@pytest.mark.live
def test_effective_config_gunicorn_defaults() -> None:
    skip_unavailable("gunicorn-gevent")
    with live_server("gunicorn-gevent", app=APP, worker_connections=50) as srv:
        eff = srv.effective
    assert eff["worker_class"] == "gevent"
    assert eff["workers"] == 2 and len(eff["worker_pids"]) == 2
    assert eff["worker_connections"] == 50
    assert eff["gevent_patched"] is True
    assert eff["access_log"] is None
    assert eff["packages"]["gevent"]


@pytest.mark.live
def test_sync_with_threads_really_runs_gthread() -> None:
    skip_unavailable("gunicorn-sync")
    with live_server("gunicorn-sync", app=APP, workers=1, threads=4) as srv:
        eff = srv.effective
    assert eff["requested_worker_class"] == "sync"
    assert eff["worker_class"] == "gthread"
    assert eff["threads"] == 4
    assert eff["workers"] == 1


@pytest.mark.live
def test_gunicorn_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    skip_unavailable("gunicorn-sync")
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--workers 5 --threads 3")
    monkeypatch.setenv("PORT", "1")
    with live_server("gunicorn-sync", app=APP, workers=1) as srv:
        eff = srv.effective
    assert eff["workers"] == 1
    assert eff["worker_class"] == "sync"


@pytest.mark.parametrize(
    ("mode", "ignored"),
    [
        pytest.param("uwsgi-processes", ["--threads", "--worker-connections"], id="processes"),
        pytest.param("uwsgi-threads", ["--worker-connections"], id="uwsgi-threads"),
        pytest.param("uwsgi-gevent", ["--threads"], id="uwsgi-gevent"),
        pytest.param("granian", ["--worker-connections"], id="granian"),
    ],
)  # fmt: skip
def test_options_a_mode_has_no_use_for_are_recorded_as_ignored(
    mode: str, ignored: list[str]
) -> None:
    # run --modes uwsgi-processes,granian --threads 3 --worker-connections 7 recorded neither
    # as ignored where eventlet, waitress and the asgiref modes record theirs: nothing of the
    # run said that uWSGI's processes ran one thread each, whatever --threads said.
    reported = Reported([{"pid": 1}])
    given = get_mode(mode).details(ServerConfig(threads=3, worker_connections=7), reported)
    assert given["ignored_options"] == ignored
    assert get_mode(mode).details(ServerConfig(), reported)["ignored_options"] == []


@pytest.mark.parametrize(
    ("mode", "ran", "ignored"),
    [
        pytest.param("gunicorn-sync", "sync", ["--worker-connections"], id="sync"),
        pytest.param("gunicorn-sync", "gthread", [], id="sync-with-threads-is-gthread"),
        pytest.param("gunicorn-gthread", "gthread", [], id="gthread"),
        pytest.param("gunicorn-gevent", "gevent", ["--threads"], id="gevent"),
        pytest.param("gunicorn-tornado", "tornado", ["--threads", "--worker-connections"],
                     id="tornado"),
    ],
)  # fmt: skip
def test_gunicorn_records_what_its_worker_class_ignored(
    mode: str, ran: str, ignored: list[str]
) -> None:
    # run --modes gunicorn-tornado --threads 3 --worker-connections 7 recorded
    # worker_connections 7 and nothing ignored: the tornado worker runs neither.
    reported = Reported([{"pid": 1, "worker_class": ran}])
    given = get_mode(mode).details(ServerConfig(threads=3, worker_connections=7), reported)
    assert given["ignored_options"] == ignored
    assert get_mode(mode).details(ServerConfig(), reported)["ignored_options"] == []


@pytest.mark.live
def test_werkzeug_records_ignored_options() -> None:
    with live_server("werkzeug-threaded", app=APP, workers=3) as srv:
        eff = srv.effective
    assert eff["workers"] == 1
    assert eff["ignored_options"] == ["--workers"]
    assert eff["worker_class"] == MODES["werkzeug-threaded"].worker_class == "thread-per-connection"


@pytest.mark.live
@pytest.mark.parametrize(
    ("app", "message"),
    [
        pytest.param("no_such_module_xyz:app", "cannot import app 'no_such_mod", id="module"),
        pytest.param("ctxbench_stand_in:nope", "has no attribute 'nope'", id="attribute"),
        pytest.param("ctxbench_stand_in:not_callable", "is not a WSGI callable", id="not-callable"),
        pytest.param("ctxbench_stand_in:no_probe", "answered 404", id="no-probe"),
        pytest.param(
            "ctxbench_stand_in:raises",
            # It said to mount the probe on the app, which was mounted.
            "answered 500, and not from the probe: the app, or a middleware in front of the"
            " probe, raised an error before the probe answered; its traceback is in the"
            " server's log (its tail below)",
            id="raises",
        ),
        pytest.param(
            "ctxbench_stand_in:plain",
            # A plain WSGI callable answering every path: install_probe() would refuse it.
            "answered 200 from ctxbench_stand_in.plain, which is no core or Flask app",
            id="not-probe",
        ),
        pytest.param(
            "ctxbench_stand_in:view_only",
            "answered 200 with a probe response that cannot be checked (no observations from"
            " phase(s) after_request, before_request, entry, teardown_appcontext,"
            " teardown_request), so every request would be an error",
            id="view-only",
        ),
        pytest.param(
            "ctxbench_stand_in:failing_factory()",
            "app factory"
            " 'ctxbench_stand_in:failing_factory()' raised RuntimeError: no DATABASE_URL",
            id="factory-raises",
        ),
    ],
)
@pytest.mark.parametrize("mode", [pytest.param("werkzeug-threaded"), pytest.param("gunicorn-sync")])
def test_bad_app_is_one_line(mode: str, app: str, message: str, tmp_path: Path) -> None:
    skip_unavailable(mode)
    with pytest.raises(AppLoadError) as info:
        start_server(mode, app=app, log_dir=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    if "tail below" in message:
        assert "was called outside a probe request" in info.value.detail, info.value.detail
    # The failed server's pid is not known here: no process may still carry its environment.
    survivors = _processes_mentioning(f"{TEST_MARK}={os.environ[TEST_MARK]}")
    assert not survivors, [Path(f"/proc/{pid}/stat").read_text() for pid in survivors]


@pytest.mark.live
# The other ways an app gets loaded: eventlet's patch-first bootstrap, uWSGI's master (before
# the fork), granian's workers (after it). waitress and tornado load like werkzeug and gunicorn.
@pytest.mark.parametrize(
    ("app", "message"),
    [
        pytest.param("no_such_module_xyz:app", "cannot import app", id="module"),
        pytest.param("ctxbench_stand_in:failing_factory()", "app factory", id="factory-raises"),
    ],
)
@pytest.mark.parametrize("mode", ["eventlet", "uwsgi-threads", "granian"])
def test_bad_app_is_one_line_in_the_other_modes(
    mode: str, app: str, message: str, tmp_path: Path
) -> None:
    skip_unavailable(mode)
    with pytest.raises(AppLoadError) as info:
        start_server(mode, app=app, log_dir=tmp_path)
    assert f"{message} {app!r}" in str(info.value)
    assert "\n" not in str(info.value)
    survivors = _processes_mentioning(f"{TEST_MARK}={os.environ[TEST_MARK]}")
    assert not survivors, [Path(f"/proc/{pid}/stat").read_text() for pid in survivors]


@pytest.mark.live
@pytest.mark.parametrize(
    ("mode", "arg", "logged"),
    [
        # An argument the server's parser takes and its start-up refuses: one its parser
        # refuses is refused before the start (test_bad_input.py).
        pytest.param("gunicorn-sync", "--chdir=/no-such-dir-q", "can't chdir to '/no-such-dir-q'",
                     id="gunicorn-sync"),
        pytest.param("uwsgi-processes", "--chdir=/no-such-dir-q", "chdir(): No such file",
                     id="uwsgi-processes"),
        pytest.param("granian", "--pid-file=/no-such-dir-q/pid", "'/no-such-dir-q/pid'",
                     id="granian"),
    ],
)  # fmt: skip
def test_early_exit_shows_log_tail(mode: str, arg: str, logged: str, tmp_path: Path) -> None:
    skip_unavailable(mode)
    with pytest.raises(ServerStartError) as info:
        start_server(mode, app=APP, extra_args=[arg], log_dir=tmp_path)
    assert "exited with status" in str(info.value)
    assert "\n" not in str(info.value)
    assert logged in info.value.detail


@pytest.mark.parametrize(
    ("raw", "seconds"), [("", 30.0), ("120", 120.0), (" 2.5 ", 2.5), ("3600", 3600.0)]
)
def test_start_timeout_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float
) -> None:
    from harness.servers._process import start_timeout

    monkeypatch.setenv("CTXBENCH_START_TIMEOUT", raw)
    assert start_timeout() == seconds


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf", "3601", "30s"])
def test_a_bad_start_timeout_is_one_line_before_any_server_starts(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("CTXBENCH_START_TIMEOUT", raw)
    with pytest.raises(UsageError) as info:
        start_server("werkzeug-threaded", app=APP)
    assert str(info.value).startswith(f"CTXBENCH_START_TIMEOUT={raw!r} is not a number of seconds")
    assert "\n" not in str(info.value)


@pytest.mark.live
def test_an_app_slower_to_start_than_the_timeout_says_how_to_wait_longer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An app whose import takes longer than the 30 s wait had no way to get more time.
    (tmp_path / "ctxbench_slow_start.py").write_text(
        "import time\n\ntime.sleep(20)\nfrom ctxbench_stand_in import app\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("CTXBENCH_START_TIMEOUT", "1.5")
    with pytest.raises(ServerStartError) as info:
        start_server("werkzeug-threaded", app="ctxbench_slow_start:app", log_dir=tmp_path)
    message = str(info.value)
    assert "did not answer a probe request within 1.5 s" in message, message
    assert message.endswith("can be given more time with CTXBENCH_START_TIMEOUT=SECONDS")


#: Every kind of process tree: gunicorn's master and forked workers, uWSGI's (whose workers
#: watch their master themselves), granian's Python main process and its forked workers running
#: Rust servers, and eventlet's single process.
DIES_WITH_HARNESS = ["gunicorn-sync", "uwsgi-threads", "granian", "eventlet"]


@pytest.mark.live
@pytest.mark.parametrize("mode", DIES_WITH_HARNESS)
def test_server_dies_with_the_harness(mode: str, tmp_path: Path) -> None:
    """SIGKILL the process that started a server: the kernel kills the server too."""
    skip_unavailable(mode)
    script = textwrap.dedent(
        f"""
        import sys, time
        from harness.servers import start_server
        srv = start_server({mode!r}, app={APP!r}, workers=2)
        print(srv.pid, " ".join(map(str, srv.effective["worker_pids"])), flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        pgid, *worker_pids = map(int, parent.stdout.readline().split())
        assert set(group_members(pgid)) >= {pgid, *worker_pids}
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert_gone(pgid, timeout=10)
    for pid in worker_pids:  # a worker that left the group would not show above
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state_of(pid), pid


def _state_of(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2]


def _processes_mentioning(text: str) -> list[int]:
    rv = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                environ = (entry / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if (text in cmdline or text in environ) and "pytest" not in cmdline:
                rv.append(int(entry.name))
    return rv


def test_stop_is_idempotent_after_exit() -> None:
    # A LiveServer around an already-finished process stops without error, twice.
    from harness.servers.base import LiveServer

    process = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    process.wait()
    srv = LiveServer("x", "127.0.0.1", 1, process, Path(os.devnull), MODES["waitress"].traits)
    srv.stop()
    srv.stop()
    assert process.returncode == 0


def test_a_main_process_that_wants_the_stop_signal_again_stops_on_its_own() -> None:
    """uWSGI's master, told to stop, looks for its exited workers only once a second or when a
    signal wakes it: every uWSGI stop took 1.03 s, and now and then 5 s, ended by SIGKILL. This
    one exits on its second SIGINT only."""
    from harness.servers._process import stop_group

    script = textwrap.dedent("""
        import signal, sys, time
        seen = []
        def stop(*_):
            seen.append(1)
            if len(seen) == 2:
                sys.exit(0)
        signal.signal(signal.SIGINT, stop)
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
    """)
    for again, status in ((True, 0), (False, -signal.SIGKILL)):
        with subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True
        ) as process:
            try:
                assert process.stdout is not None and process.stdout.readline() == b"ready\n"
                stop_group(process, grace=0.5, sig=signal.SIGINT, again=again)
            finally:  # a failed stop must not leave the stand-in running forever
                if process.poll() is None:
                    process.kill()
        assert process.returncode == status


@pytest.mark.live
def test_readiness_counts_only_answers_from_the_spawned_process_group(tmp_path: Path) -> None:
    # Another run's server answering on the same port (while ours still retries its bind) must
    # never pass for ours: it could be a broken-storage mutant.
    from harness.servers._process import _probe_once

    with live_server("gunicorn-sync", log_dir=tmp_path) as srv:
        assert _probe_once(srv.host, srv.port, "mine", 2.0, group=srv.pid) == "ready"
        assert _probe_once(srv.host, srv.port, "theirs", 2.0, group=os.getpgrp()) is None


def test_uvicorn_workers_accept_connections_with_tcp_nodelay() -> None:
    # uvicorn #3149: Config.bind_socket leaves the listener's proto at 0, accepted sockets inherit
    # it, and asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP. Under --workers N
    # every response on a kept-alive connection after the first then waited for the client's
    # delayed ACK (44 ms), and uvicorn-asgiref measured the ACK timer, not the server.
    import asyncio

    uvicorn = pytest.importorskip("uvicorn")
    from harness.servers._uvicorn_runner import tcp_listener

    async def nodelay_of_accepted(listener: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Accept, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()

    config = uvicorn.Config("harness.servers._asgiref_app:app", host="127.0.0.1", port=0)
    listener = tcp_listener(config.bind_socket())
    assert listener.type == socket.SOCK_STREAM
    assert asyncio.run(nodelay_of_accepted(listener)) != 0


@pytest.mark.parametrize(
    ("threads", "extra_args", "expected"),
    [
        pytest.param(None, (), 4, id="default"),
        pytest.param(2, (), 2, id="threads"),
        pytest.param(None, ("--blocking-threads=1",), 1, id="server-arg-with-equals"),
        pytest.param(8, ("--blocking-threads", "3"), 3, id="server-arg-after-threads"),
        pytest.param(None, ("--blocking-threads=2", "--blocking-threads=6"), 6, id="last-wins"),
    ],
)
def test_granian_records_the_thread_pool_it_runs(
    threads: int | None, extra_args: tuple[str, ...], expected: int
) -> None:
    # granian takes the last --blocking-threads, and the server's own arguments come after the
    # one --threads sets: --server-arg=--blocking-threads=1 ran one thread per worker while the
    # effective configuration (and the table's "t4") said the default.
    mode = get_mode("granian")
    cfg = ServerConfig(threads=threads, extra_args=extra_args)
    argv = mode.command(cfg)
    assert argv[len(argv) - 1 - len(extra_args) : -1] == list(extra_args)  # after --threads
    details = mode.details(cfg, Reported(workers=[]))
    assert details["threads"] == expected


@pytest.mark.parametrize(
    ("threads", "extra_args", "expected"),
    [
        pytest.param(None, (), "gunicorn-sync", id="default"),
        pytest.param(1, (), "gunicorn-sync", id="one-thread"),
        pytest.param(4, (), "gunicorn-gthread", id="threads"),
        pytest.param(None, ("--threads=4",), "gunicorn-gthread", id="server-arg"),
        pytest.param(4, ("--threads", "1"), "gunicorn-sync", id="server-arg-after-threads"),
    ],
)
def test_gunicorn_sync_with_threads_has_the_gthread_workers_traits(
    threads: int | None, extra_args: tuple[str, ...], expected: str
) -> None:
    # gunicorn runs -k sync with more than one thread as its gthread worker (the effective
    # worker_class says so): the expectations must judge that, not one request per process.
    cfg = ServerConfig(threads=threads, extra_args=extra_args)
    assert get_mode("gunicorn-sync").traits_for(cfg) == get_mode(expected).traits


@pytest.mark.parametrize(
    ("mode", "workers", "extra_args", "expected"),
    [
        pytest.param("gunicorn-sync", None, ("--workers=1",), 1, id="gunicorn-long"),
        pytest.param("gunicorn-gevent", 4, ("-w", "1"), 1, id="gunicorn-short"),
        pytest.param("gunicorn-gthread", None, ("-w3",), 3, id="gunicorn-short-attached"),
        pytest.param("gunicorn-gthread", 1, ("--workers", "3", "-w", "2"), 2, id="last-wins"),
        pytest.param("uwsgi-threads", None, ("--processes=1",), 1, id="uwsgi-processes"),
        pytest.param("uwsgi-processes", None, ("-p", "3"), 3, id="uwsgi-short"),
        pytest.param("granian", None, ("--workers", "1"), 1, id="granian"),
        pytest.param("uvicorn-asgiref", None, ("--workers=1",), 1, id="uvicorn"),
        pytest.param("hypercorn-asgiref", 3, ("--workers=1",), 1, id="hypercorn"),
        pytest.param("nginx+gunicorn-sync", None, ("--workers=1",), 1, id="behind-nginx"),
        pytest.param("gunicorn-sync", 3, ("--backlog=64",), 3, id="none-given"),
        pytest.param("gunicorn-sync", None, ("--worker-class-x",), 2, id="default"),
    ],
)  # fmt: skip
def test_a_server_argument_that_sets_the_workers_sets_those_waited_for(
    mode: str, workers: int | None, extra_args: tuple[str, ...], expected: int
) -> None:
    # run --modes gunicorn-gthread --server-arg=--workers=1: gunicorn ran one worker, the start
    # waited for two to report until its 10 s deadline, and every cell took 10 s more (11.2 s
    # where --workers 1 took 1.5 s; the same under uWSGI, granian, uvicorn and hypercorn).
    cfg = ServerConfig(workers=workers, extra_args=extra_args)
    server_mode = get_mode(mode)
    upstream = getattr(server_mode, "upstream", server_mode)  # behind a proxy, its server's
    assert upstream.serving_processes(cfg) == expected


@pytest.mark.parametrize(
    ("mode", "args"),
    [
        # what gunicorn takes, an abbreviation included, as its own parser does
        pytest.param("gunicorn-gevent", ("--preload", "--backlog=64", "--max-requests-j", "5"),
                     id="gunicorn"),
        pytest.param("nginx+gunicorn-sync", ("--keep-alive", "5"), id="gunicorn-behind-nginx"),
        # what uWSGI takes: long, abbreviated, short, and a value that is not an option
        pytest.param("uwsgi-threads", ("--listen", "64", "--lazy-apps", "--buffer-s=65535", "-b",
                                       "32768", "--env", "A=-x"), id="uwsgi"),
        # a plugin's options, which uWSGI's --help lists only once the plugin is loaded: uWSGI
        # itself refuses them as it starts if they are not the plugin's
        pytest.param("uwsgi-processes", ("--plugin=corerouter", "--corerouter-foo=1"),
                     id="uwsgi-plugin"),
        pytest.param("uwsgi-threads", ("--need-plugins", "a,b", "--b-opt", "--pre"),
                     id="uwsgi-need-plugins"),
        pytest.param("granian", ("--backlog", "256", "--blocking-threads=1"), id="granian"),
        pytest.param("waitress", ("--threads=2",), id="waitress"),
        pytest.param("uvicorn-asgiref", ("--timeout-keep-alive", "2"), id="uvicorn"),
    ],
)  # fmt: skip
def test_a_server_argument_the_server_takes_passes_the_check(
    mode: str, args: tuple[str, ...]
) -> None:
    # Each server's own parser is asked (gunicorn's, granian's, a runner's; uWSGI's --help), so
    # an argument refused up front is one the server would refuse as it starts.
    if not get_mode(mode).available().ok:
        pytest.skip(f"{mode} cannot run here")
    get_mode(mode).check_args(ServerConfig(extra_args=args))


def test_a_uwsgi_plugin_loaded_still_leaves_no_option_that_prints_and_exits() -> None:
    skip_unavailable("uwsgi-processes")
    with pytest.raises(UsageError, match="makes uWSGI print its help or version"):
        get_mode("uwsgi-processes").check_args(
            ServerConfig(extra_args=("--plugin", "corerouter", "--version"))
        )


def test_a_uwsgi_mode_takes_its_own_worker_option_and_refuses_another_modes() -> None:
    # The refusal names what ran instead; a mode's own option (--threads for uwsgi-threads) only
    # sizes what the mode runs, and must pass, behind a proxy too.
    for name, args in (("uwsgi-threads", ("--threads=8",)), ("uwsgi-gevent", ("--gevent", "50")),
                       ("nginx+uwsgi-threads", ("--threads=8",))):  # fmt: skip
        get_mode(name).check_args(ServerConfig(extra_args=args))
    for name, args, other in (("uwsgi-processes", ("--threads=8",), "uwsgi-threads"),
                              ("uwsgi-threads", ("--gevent=9",), "uwsgi-gevent")):  # fmt: skip
        with pytest.raises(UsageError, match=f"run --modes {other} instead"):
            get_mode(name).check_args(ServerConfig(extra_args=args))


@pytest.mark.parametrize(
    ("mode", "cfg", "said"),
    [
        pytest.param("waitress", ServerConfig(worker_connections=1), "give 3 or more",
                     id="waitress"),
        pytest.param("waitress", ServerConfig(extra_args=("--connection-limit=2",)),
                     "a connection limit of 2", id="waitress-server-arg"),
        pytest.param("nginx+waitress", ServerConfig(worker_connections=2), "give 3 or more",
                     id="nginx+waitress"),
        pytest.param("uwsgi-gevent", ServerConfig(worker_connections=1), "requires async mode",
                     id="uwsgi-gevent"),
        pytest.param("uwsgi-gevent", ServerConfig(extra_args=("--gevent", "1")),
                     "give 2 or more", id="uwsgi-gevent-server-arg"),
    ],
)  # fmt: skip
def test_a_connection_limit_the_server_cannot_serve_under_is_refused_up_front(
    mode: str, cfg: ServerConfig, said: str
) -> None:
    # run --modes waitress --worker-connections 1 (or uwsgi-gevent) waited 30 s for a server that
    # never answers and said 'an app that takes longer to start can be given more time'.
    skip_unavailable(mode.rpartition("+")[2])
    with pytest.raises(UsageError, match=said):
        get_mode(mode).check_args(cfg)
    enough = dataclasses.replace(cfg, worker_connections=3, extra_args=())
    get_mode(mode).check_args(enough)


def test_the_last_of_several_spellings_of_a_server_option_is_what_runs() -> None:
    # gunicorn's parser takes the last of -w and --workers, whichever the spelling: the worker
    # class of "--worker-class gevent -k sync" is sync, as the workers of "-w 3 --workers=1" are 1.
    from harness.servers.base import last_count, last_option

    assert last_option(["--worker-class", "gevent", "-k", "sync"], "--worker-class", "-k") == "sync"
    assert last_option(["-kgevent"], "--worker-class", "-k") == "gevent"
    assert last_count(["-w", "3", "--workers=1"], "-w", "--workers") == 1
    assert last_count(["--workers", "2", "-w4"], "-w", "--workers") == 4
    assert last_count(["--threads=0"], "--threads") is None  # refused by the server, not a count
    assert last_count(["--threads"], "--threads") is None
    assert last_option(["--keep-alive", "5"], "-k") is None  # a long option is not -k
