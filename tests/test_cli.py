"""``ctxbench``: exit statuses, one-line errors, and clean shutdown on Ctrl-C / SIGTERM."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import results
from harness.apps import FLASK_APP
from harness.cli import STOP_SIGNALS, _settings_from_args, build_parser, main
from harness.errors import UsageError
from harness.packages import package_version
from harness.results import LeakExpectation, ServerConnections
from harness.run_folder import hold_run_dir, replacing_earlier_run
from harness.servers import MODES, PROXIES, base, get_mode, group_members, nginx
from harness.servers.base import pip_install

needs_core_app = pytest.mark.skipif(
    importlib.util.find_spec("harness.apps.core_app") is None,
    reason="harness.apps.core_app (the bundled core probe app) is not in this tree yet",
)


@pytest.fixture(autouse=True)
def scrub_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)


def one_line_error(err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ctxbench")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_list_shows_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*MODES, *PROXIES]:
        assert name in out
    assert "--proxy NAME" in out
    assert out.count("\n") == len(MODES) + 2 + len(PROXIES)


def test_locustfile_prints_the_path_of_the_locustfile_in_the_package(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``locust -f "$(ctxbench locustfile)"``: the file ships inside the ``harness`` package, so
    a user who installed the wheel has it too (tests/test_packaging.py checks the wheel)."""
    import harness

    assert main(["locustfile"]) == 0
    path = Path(capsys.readouterr().out.removesuffix("\n"))
    assert path.is_absolute() and path.is_file(), path
    assert path.is_relative_to(Path(harness.__file__).resolve().parent), path
    assert "class ProbeUser(FastHttpUser)" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([flag])
    assert exit_info.value.code == 0
    assert (
        capsys.readouterr().out
        == f"ctxbench {package_version('ctxbench')} (Python {sys.version.split()[0]})\n"
    )


def test_list_says_how_to_install_a_missing_nginx(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(nginx, "find_nginx", lambda: None)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("nginx", "nginx-keepalive"):
        [line] = [line for line in out.splitlines() if line.startswith(f"{name} ")]
        assert "unavailable: nginx is not installed (apt-get install nginx)" in line


def test_default_run_adds_nginx_in_front_of_the_representative_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    available = [name for name, mode in MODES.items() if mode.available().ok]
    # Whether this machine has nginx is not what this test checks (a missing one is the second
    # half): the settings see one wherever it runs.
    monkeypatch.setattr(nginx, "find_nginx", lambda: "/usr/sbin/nginx")
    settings = _settings_from_args(build_parser().parse_args(["run"]))
    assert settings.modes == (
        *available, "nginx+gunicorn-gevent", "nginx-keepalive+gunicorn-gevent"
    )  # fmt: skip
    monkeypatch.setattr(nginx, "find_nginx", lambda: None)
    settings = _settings_from_args(build_parser().parse_args(["run"]))
    assert settings.modes == tuple(available)  # without nginx: skipped, not an error


def test_the_commands_declare_their_shared_options_alike() -> None:
    import argparse

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {
        name: {a.dest: a.help for a in subparsers.choices[name]._actions}
        for name in ("run", "corpus", "chaos", "soak")
    }
    assert all(h["out"] == helps["run"]["out"] for h in helps.values()), helps
    assert all(h["run_dir"] == helps["run"]["run_dir"] for h in helps.values()), helps
    # --modes and --connections alike where a command takes them; only the default differs.
    matrix = ("run", "corpus", "chaos")
    assert all(helps[name]["modes"] == helps["run"]["modes"] for name in matrix), helps
    assert {helps[name]["connections"] for name in helps} == {
        f"connection pattern (default {default})" for default in ("both", "keepalive", "fresh")
    }, helps


def test_worker_connections_help_names_every_mode_that_takes_it() -> None:
    # It said "gunicorn --worker-connections (default 1000)", though eventlet, waitress and
    # uwsgi-gevent take it too (under their own names and defaults), and the last two refuse
    # values they cannot serve under: read from each mode's command, which ones pass it on.
    import argparse

    from harness.servers import MODES
    from harness.servers.base import ServerConfig

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    [text] = [a.help for a in subparsers.choices["run"]._actions if a.dest == "worker_connections"]
    taken = {
        name.split("-")[0] if name.startswith("gunicorn-") else name
        for name, mode in MODES.items()
        if mode.command(ServerConfig(port=1))
        != mode.command(ServerConfig(port=1, worker_connections=7))
    }
    assert taken == {"gunicorn", "waitress", "eventlet", "uwsgi-gevent"}
    assert all(name in (text or "") for name in taken), text
    assert "the other modes ignore it" in (text or "")


@pytest.mark.parametrize(
    ("option", "named", "ignored"),
    [
        pytest.param("workers", ("gunicorn", "uWSGI", "granian", "uvicorn", "hypercorn"),
                     ("waitress", "eventlet", "werkzeug-threaded"), id="workers"),
        pytest.param("threads", ("gunicorn", "waitress", "uwsgi-threads", "granian"), (),
                     id="threads"),
    ],
)  # fmt: skip
def test_workers_and_threads_help_name_the_modes_that_take_them(
    option: str, named: tuple[str, ...], ignored: tuple[str, ...]
) -> None:
    # '--workers: server processes (gunicorn -w; default 2)' and '--threads: threads per server
    # process (gunicorn --threads)' named gunicorn alone, as --worker-connections' help did.
    import argparse

    from harness.servers import MODES
    from harness.servers.base import ServerConfig

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    [text] = [a.help or "" for a in subparsers.choices["run"]._actions if a.dest == option]
    changes = {
        name
        for name, mode in MODES.items()
        if mode.command(ServerConfig(port=1)) != mode.command(ServerConfig(port=1, **{option: 7}))
    }
    assert all(name in text for name in named), text
    assert all(name not in changes for name in ignored), changes
    assert all(name in text for name in ignored), text
    assert "ignore it" in text


@pytest.mark.parametrize(
    ("missing", "modes", "extra"),
    [
        pytest.param("pyuwsgi", ("uwsgi-processes", "uwsgi-threads", "uwsgi-gevent"), "uwsgi",
                     id="uwsgi"),
        pytest.param("granian", ("granian",), "granian", id="granian"),
        pytest.param("waitress", ("waitress",), "waitress", id="waitress"),
        pytest.param("eventlet", ("eventlet",), "eventlet", id="eventlet"),
        pytest.param("tornado", ("gunicorn-tornado",), "tornado", id="tornado"),
        pytest.param("uvicorn", ("uvicorn-asgiref",), "asgi", id="uvicorn"),
        pytest.param("hypercorn", ("hypercorn-asgiref",), "asgi", id="hypercorn"),
        pytest.param("asgiref", ("uvicorn-asgiref", "hypercorn-asgiref"), "asgi", id="asgiref"),
    ],
)  # fmt: skip
def test_list_says_how_to_install_a_missing_server(
    missing: str,
    modes: tuple[str, ...],
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name)
    )
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in modes:
        [line] = [line for line in out.splitlines() if line.startswith(f"{name} ")]
        assert f"unavailable: {missing} is not installed ({pip_install(extra)})" in line
    # Running one says the same, on one line.
    assert main(["run", "--modes", modes[0]]) == 2
    one_line_error(
        capsys.readouterr().err,
        f"server mode {modes[0]!r} cannot run here: {missing} is not installed"
        f" ({pip_install(extra)})",
    )
    assert main(["serve", "--mode", modes[-1]]) == 2
    one_line_error(capsys.readouterr().err, f"({pip_install(extra)})")
    assert all(
        line.split()[1] == "ok"
        for line in out.splitlines()
        if line.split() and line.split()[0] in MODES and line.split()[0] not in modes
    )


def test_list_says_gevent_is_missing_for_both_gevent_modes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # uWSGI's gevent plugin imports gevent in each worker: without it uwsgi-gevent was "ok" and
    # every server failed at start-up.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gevent" else find_spec(name)
    )
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    for mode, extra in (("uwsgi-gevent", "uwsgi"), ("gunicorn-gevent", "servers")):
        assert f"unavailable: gevent is not installed ({pip_install(extra)})" in lines[mode]
    assert lines["uwsgi-threads"].split()[1] == "ok"


@pytest.mark.parametrize(
    ("direct_url", "step"),
    [
        pytest.param(None, "pip install 'ctxbench[uwsgi]'", id="by-name"),
        pytest.param({"url": "https://example.org/ctxbench-0.1.tar.gz", "archive_info": {}},
                     "pip install 'ctxbench[uwsgi]'", id="archive"),
        pytest.param({"url": "file:///src/ctx%20bench", "dir_info": {"editable": True}},
                     "pip install -e '/src/ctx bench[uwsgi]'", id="editable-checkout"),
        pytest.param({"url": "file:///src/ctxbench", "dir_info": {}},
                     "pip install '/src/ctxbench[uwsgi]'", id="checkout"),
    ],
)  # fmt: skip
def test_the_install_step_names_where_ctxbench_came_from(
    direct_url: dict[str, object] | None, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Dist:
        def read_text(self, name: str) -> str | None:
            assert name == "direct_url.json"
            return None if direct_url is None else json.dumps(direct_url)

    class EggInfo:  # a source tree's ctxbench.egg-info, first on sys.path
        def read_text(self, name: str) -> None:
            return None

    monkeypatch.setattr(base.metadata, "distributions", lambda name: [EggInfo(), Dist()])
    monkeypatch.setattr(base.shutil, "which", lambda name: str(Path(sys.executable).parent / name))
    assert pip_install("uwsgi") == step


@pytest.mark.parametrize(
    "pip_on_path",
    [
        pytest.param("/usr/local/bin/pip", id="another-python"),
        pytest.param("/home/me/.pyenv/shims/pip", id="pyenv-shim"),
        pytest.param(None, id="no-pip-on-path"),
    ],
)
def test_the_install_step_runs_this_interpreters_pip(
    pip_on_path: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv's ctxbench run by its path (``venv/bin/ctxbench list``, the venv not activated)
    printed ``pip install ...``: typed as printed, that installs into whatever Python's pip comes
    first on PATH, and the mode stays unavailable here. The step names this interpreter then."""
    monkeypatch.setattr(base.metadata, "distributions", lambda name: [])
    monkeypatch.setattr(base.shutil, "which", lambda name: pip_on_path)
    step = pip_install("uwsgi")
    assert step == f"{shlex.quote(sys.executable)} -m pip install 'ctxbench[uwsgi]'"
    # The step as printed runs, from a shell, the pip of the interpreter that printed it.
    argv = shlex.split(step)
    assert argv[:3] == [sys.executable, "-m", "pip"]
    out = subprocess.run([*argv[:3], "--version"], capture_output=True, text=True, check=True)
    where = Path(out.stdout.split(" from ", 1)[1].rsplit(" (python", 1)[0])
    assert where.resolve().is_relative_to(Path(sys.prefix).resolve()), out.stdout


def test_proxy_option_puts_each_mode_behind_each_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx, "find_nginx", lambda: "/usr/sbin/nginx")  # installed or not
    settings = _settings_from_args(
        build_parser().parse_args(
            ["run", "--modes", "gunicorn-sync,gunicorn-gevent", "--proxy", "none,nginx-keepalive"]
        )
    )
    assert settings.modes == (
        "gunicorn-sync", "nginx-keepalive+gunicorn-sync",
        "gunicorn-gevent", "nginx-keepalive+gunicorn-gevent",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["run", "--modes", "uwsgi"], "unknown server mode 'uwsgi'", id="mode"),
        pytest.param(["serve", "--mode", "uwsgi"], "unknown server mode 'uwsgi'", id="serve-mode"),
        pytest.param(["run", "--backend", "nope"], "unknown backend 'nope'", id="backend"),
        pytest.param(
            ["run", "--app", FLASK_APP, "--backend", "no-reset"],
            "use --backend contextvar",
            id="mutant-with-flask",
        ),
        pytest.param(["run", "--app", "not a path"], "bad app import string", id="app-string"),
        pytest.param(["run", "--repeats", "0"], "bad --repeats 0", id="repeats"),
        pytest.param(["run", "--connections", "pipelined"], "invalid choice", id="choice"),
        pytest.param(["run", "--no-such-option"], "unrecognized arguments", id="option"),
        pytest.param(["frobnicate"], "invalid choice", id="command"),
        pytest.param(["run", "--fail-phase", "lunch"], "invalid choice", id="fail-phase"),
        pytest.param(
            ["run", "--fail-fraction", "0.2"], "--fail-fraction needs --fail-phase", id="fraction"
        ),
        pytest.param(
            ["run", "--fail-phase", "view", "--fail-fraction", "2"],
            "bad --fail-fraction 2.0",
            id="fraction-range",
        ),
        pytest.param(["run", "--proxy", "apache"], "unknown proxy 'apache'", id="proxy"),
        pytest.param(
            ["run", "--modes", "apache+gunicorn-sync"], "unknown proxy 'apache'", id="proxy-mode"
        ),
        pytest.param(
            ["serve", "--mode", "uwsgi", "--proxy", "nginx"],
            "unknown server mode 'uwsgi' behind proxy 'nginx'",
            id="serve-proxy-mode",
        ),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors
        status = int(e.code or 0)
    assert status == 2
    one_line_error(capsys.readouterr().err, expected)


def test_ctrl_c_while_the_command_line_is_read_is_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Building the parser imports most of the harness: a Ctrl-C in the first few tenths of a
    # second of `ctxbench run` landed there and was a traceback (the process died by SIGINT).
    import harness.cli

    def interrupted() -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "build_parser", interrupted)
    try:
        status = main(["run", "--target", "http://127.0.0.1:8080"])
    except KeyboardInterrupt:  # pytest would take it for the user's own Ctrl-C
        pytest.fail("the interrupt escaped main(): a traceback, and death by SIGINT")
    assert status == 130
    out, err = capsys.readouterr()
    # It said 'every server was stopped', of a --target the user's own server goes on serving.
    assert err == "ctxbench: interrupted; no server was started\n", err
    assert out == ""


def test_an_interrupted_target_run_says_it_left_the_targets_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `run --target` starts no server: "every server was stopped" read as if the user's own
    # server, which goes on serving, had been stopped too.
    import harness.cli

    def interrupted(args: object) -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "cmd_run", interrupted)
    assert main(["run", "--target", "http://127.0.0.1:8080"]) == 130
    assert capsys.readouterr().err == (
        "ctxbench: interrupted; no server was started, and the --target servers are left running\n"
    )
    assert main(["run"]) == 130
    assert capsys.readouterr().err == "ctxbench: interrupted; every server was stopped\n"


def test_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["serve", "--mode", "gunicorn-sync", "--port", str(port)]) == 2
    one_line_error(
        capsys.readouterr().err,
        f"port {port} on 127.0.0.1 is in use: stop the other program or pick another port",
    )


def test_a_package_named_harness_where_the_servers_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A project's own top-level harness package hid ctxbench's in the servers, which failed with
    # "No module named 'harness.servers'" in their log (a regular install).
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--modes", "gunicorn-sync", "--duration", "1"]) == 2
    one_line_error(
        capsys.readouterr().err,
        f"the package harness{os.sep} comes first on the servers' import path",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harness"]  # no results folder


@pytest.mark.live
def test_a_run_of_all_modes_names_those_that_cannot_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "--modes all" (the default) skipped them without a word: a clean run under the base
    # install's four modes read as clean under every server. Here only the dev server is left.
    find_spec = importlib.util.find_spec
    gone = {"gunicorn", "pyuwsgi", "granian", "waitress", "eventlet", "tornado", "asgiref"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in gone else find_spec(name)
    )
    monkeypatch.setattr(nginx, "find_nginx", lambda: None)
    left_out = [name for name, mode in MODES.items() if not mode.available().ok]
    assert [name for name in MODES if name not in left_out] == ["werkzeug-threaded"]
    short = ["--requests", "100", "--repeats", "1", "--warmup", "0", "--connections", "fresh",
             "--out", str(tmp_path)]  # fmt: skip
    status = main(["run", *short])
    out = capsys.readouterr().out
    assert status == 0, out
    assert (
        f"not measured: {len(left_out) + 2} modes that cannot run here: {', '.join(left_out)},"
        " nginx+MODE, nginx-keepalive+MODE ('ctxbench list' says why, with each one's install"
        " step)\n"
    ) in out, out
    # Modes named on the command line are the ones meant: nothing more is said.
    assert main(["run", "--modes", "werkzeug-threaded", *short]) == 0
    assert "cannot run here" not in capsys.readouterr().out


@pytest.mark.live
@pytest.mark.parametrize(
    ("mode", "args", "held"),
    [
        # closes every connection after its response: each request comes on a new one
        pytest.param("werkzeug-threaded", (), ServerConnections("fresh", False),
                     id="werkzeug-threaded"),
        # -k sync with --threads 4 is gunicorn's gthread worker: the traits as configured
        pytest.param("gunicorn-sync", ("--threads", "4"), ServerConnections("keepalive", False),
                     id="gunicorn-sync-threads"),
        # --http11-socket keeps a kept-alive connection on its process
        pytest.param("uwsgi-processes", (), ServerConnections("keepalive", True),
                     id="uwsgi-processes"),
        # a greenlet of a pool of --worker-connections per connection, in each of 2 workers
        pytest.param("gunicorn-gevent", ("--workers", "2", "--worker-connections", "3"),
                     ServerConnections("keepalive", False, connection_limit=6),
                     id="gunicorn-gevent-limit"),
    ],
)  # fmt: skip
def test_a_run_records_what_each_cell_s_server_does_with_its_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, args: tuple[str, ...],
    held: ServerConnections,
) -> None:  # fmt: skip
    # The report names the likely cause of starved users from these facts, as the run recorded
    # them from the registry, so that another ctxbench renders the same advice.
    if not get_mode(mode).available().ok:
        pytest.skip(f"{mode} cannot run here")
    status = main(["run", "--modes", mode, *args, "--connections", "keepalive", "--concurrency",
                   "2", "--requests", "60", "--repeats", "1", "--warmup", "0",
                   "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert status == 0, capsys.readouterr()
    [cell] = results.load(tmp_path / "run").cells
    assert cell.requests == 60 and cell.errors == 0
    assert cell.server.connections == held
    assert held.kept_alive_holds_unit is get_mode(mode).lifecycle.kept_alive_holds_unit
    raw = json.loads((tmp_path / "run" / results.RESULTS_FILE).read_text(encoding="utf-8"))
    assert raw["cells"][0]["server"]["connections"] == {
        "pattern": held.pattern, "kept_alive_holds_unit": held.kept_alive_holds_unit,
        "proxy": None, "connection_limit": held.connection_limit,
    }  # fmt: skip


@pytest.mark.live
def test_a_run_of_a_broken_backend_records_and_reports_what_the_model_says_of_each_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The report said of every silent negative control "Either this server and connection
    # pattern cannot expose that bug, or the harness missed it", where the model knows which.
    # no-reset under gunicorn-gevent: one greenlet per kept-alive connection carries the stale
    # context to its next request; on fresh connections every request has a new greenlet.
    if not get_mode("gunicorn-gevent").available().ok:
        pytest.skip("gunicorn-gevent cannot run here")
    status = main(["run", "--modes", "gunicorn-gevent", "--backend", "no-reset", "--connections",
                   "both", "--concurrency", "4", "--requests", "200", "--repeats", "1",
                   "--warmup", "0", "--run-dir", str(tmp_path / "run")])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1, out  # the mutant leaked, as it must
    cells = {c.connections: c for c in results.load(tmp_path / "run").cells}
    keepalive, fresh = cells["keepalive"], cells["fresh"]
    assert keepalive.expectation == LeakExpectation(
        True,
        "One greenlet serves every request of its keep-alive connection in turn, and sees what"
        " the previous request left set",
    )
    assert keepalive.leaks > 0, out
    assert fresh.expectation is not None and not fresh.expectation.can_leak
    assert fresh.leaks == 0 and fresh.requests == 200, out
    md = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert (
        "- gunicorn-gevent with `no-reset`, fresh: 200 of 200 requests checked, no leak. As"
        " expected: every OS thread, greenlet and asyncio task has its own contextvars.Context;"
        " each request comes on a new connection, with a new greenlet; a new thread, greenlet or"
        " context starts empty." in md
    )
    assert "or the harness missed it" not in md and "MISSED" not in md
    assert "cannot happen" not in md and "NOT as expected" not in md


@pytest.mark.live
def test_bad_app_path(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--modes", "werkzeug-threaded", "--app", "no_such_mod_q:app",
                   "--out", os.devnull + "-unused"])  # fmt: skip
    assert status == 2
    one_line_error(capsys.readouterr().err, "cannot import app 'no_such_mod_q:app'")


# -- subprocesses --------------------------------------------------------------------------


def ctxbench(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: our signal reaches only it
        **kw,  # type: ignore[call-overload]
    )


@contextlib.contextmanager
def serving(mode: str, **kw: object) -> Iterator[subprocess.Popen[str]]:
    """``ctxbench serve --mode MODE`` of the Flask probe app, killed at the end if still up."""
    proc = ctxbench("serve", "--mode", mode, "--app", FLASK_APP, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def children(pid: int) -> list[int]:
    rv = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                rv.append(int(entry.name))
    return rv


def wait_for(predicate: object, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rv = predicate()  # type: ignore[operator]
        if rv:
            return rv
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


def test_an_interrupted_serve_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A signal is how a server is stopped: gunicorn, uvicorn and `flask run` exit 0 on it, and
    # so does serve (`kill $pid; wait $pid` under a CI job, a supervisor's stop).
    import harness.cli

    def interrupted(args: object) -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "cmd_serve", interrupted)
    assert main(["serve", "--mode", "gunicorn-sync"]) == 0
    assert capsys.readouterr().err == "ctxbench: interrupted; every server was stopped\n"


# `ctxbench run` in a subprocess, whose command blocks until signalled (the first time; the
# second time it returns at once): what the console script does after the interrupt.
_BLOCKED_RUN = """
import sys, time
from pathlib import Path
import harness.cli

def cmd_run(args):
    if not marker.exists():
        marker.write_text("running")
        time.sleep(60)
    return 0

marker = Path(sys.argv[1])
harness.cli.cmd_run = cmd_run
sys.argv[1:] = ["run"]
harness.cli.console_script()
"""


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=[s.name for s in STOP_SIGNALS])
def test_an_interrupted_run_dies_of_the_signal(sig: signal.Signals, tmp_path: Path) -> None:
    # It exited with status 130 whatever the signal; the shell reports 128 + its number now.
    marker = tmp_path / "running"
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_RUN, str(marker)],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(marker.exists, timeout=30)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -sig, err
    assert err == "ctxbench: interrupted; every server was stopped\n"


def test_ctrl_c_stops_the_shell_loop_ctxbench_runs_in(tmp_path: Path) -> None:
    # A Ctrl-C reaches the shell and ctxbench, and bash stops its loop only when the command died
    # of it: ctxbench exited 130 (as "handled"), and the loop went on to its next run.
    marker = tmp_path / "running"
    child = shlex.join([sys.executable, "-c", _BLOCKED_RUN, str(marker)])
    loop = f'for i in 1 2; do {child}; echo "went on after $?"; done'
    proc = subprocess.Popen(
        ["bash", "-c", loop], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        wait_for(marker.exists, timeout=30)
        os.killpg(proc.pid, signal.SIGINT)  # a Ctrl-C: the whole foreground group
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert out == ""
    assert proc.returncode == -signal.SIGINT


def assert_gone(pgid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group_members(pgid) == [], f"processes of group {pgid} survived"


@pytest.mark.live
def test_a_hangup_ignored_at_start_stays_ignored() -> None:
    """`nohup ctxbench soak ... &`: closing the terminal sends SIGHUP, which nohup ignores, and
    ctxbench turned it into an interrupt that stopped the run."""
    import urllib.request

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with serving("werkzeug-threaded", preexec_fn=nohup) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ")[1].strip()
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):  # it stopped in well under a second
            proc.wait(timeout=2)
        with urllib.request.urlopen(f"{url}_ctxbench/probe?token=after-hup", timeout=10) as rv:
            assert json.load(rv)["token"] == "after-hup"
        proc.send_signal(signal.SIGTERM)  # not ignored: stops it as before
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "interrupted; every server was stopped" in err


@pytest.mark.live
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", ["gunicorn-gthread", "werkzeug-threaded"])
def test_serve_stops_cleanly(mode: str, sig: signal.Signals) -> None:
    if not get_mode(mode).available().ok:
        pytest.skip(f"{mode} cannot run here")
    with serving(mode) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"{mode} serving {FLASK_APP} (contextvar) at http://127.0.0.1:" in first
        server_pid = int(proc.stdout.readline().split("pid=")[1].split()[0])
        assert group_members(server_pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err  # as gunicorn's: a signal is how a server is stopped
    assert "interrupted; every server was stopped" in err
    assert "Traceback" not in err
    assert_gone(server_pid)
    assert_gone(proc.pid)


@pytest.mark.live
def test_run_interrupted_leaves_nothing(tmp_path: Path) -> None:
    proc = ctxbench("run", "--modes", "gunicorn-gevent,gunicorn-sync", "--app", FLASK_APP,
                    "--duration", "30", "--out", str(tmp_path))  # fmt: skip
    try:
        server_pid = t_int(wait_for(lambda: children(proc.pid), timeout=20))
        # Wait until the server answers (its log says so), then interrupt mid-measurement.
        wait_for(lambda: list(tmp_path.glob("*/logs/*/gunicorn-gevent.log")), timeout=20)
        time.sleep(0.5)  # let the measurement get under way; this is not a synchronisation
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, err
    assert "Traceback" not in err
    assert_gone(server_pid)
    assert_gone(proc.pid)


@pytest.mark.live
def test_run_interrupted_after_a_cell_keeps_it_and_says_where(tmp_path: Path) -> None:
    """Ctrl-C after a finished cell: death by SIGINT, no process left, results.json kept and marked
    interrupted, and stderr says where it is and how to get its report (it said only
    "interrupted; every server was stopped", and no report is written)."""
    run_dir = tmp_path / "run"
    proc = ctxbench("run", "--modes", "gunicorn-sync", "--app", FLASK_APP, "--duration", "1",
                    "--repeats", "2", "--warmup", "0", "--concurrency", "4",
                    "--run-dir", str(run_dir))  # fmt: skip
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # not a terminal: one line per finished cell
        assert "gunicorn-sync (flask, contextvar) keepalive done" in first, first
        server_pid = t_int(children(proc.pid))
        proc.send_signal(signal.SIGINT)  # the fresh cell is under way (2 s)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, err
    assert "Traceback" not in err
    assert_gone(server_pid)
    run = results.load(run_dir)
    assert run.status == "interrupted"
    assert [(c.mode, c.connections) for c in run.cells] == [("gunicorn-sync", "keepalive")]
    assert not (run_dir / "report.md").exists()
    kept, last = err.strip().splitlines()[-2:]
    assert kept == (
        f"ctxbench: the cells finished before the interrupt are kept in {run_dir}/results.json"
        f" (marked interrupted); ctxbench report {run_dir} writes their report"
    ), err
    assert last == "ctxbench: interrupted; every server was stopped"
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()


def t_int(pids: object) -> int:
    assert isinstance(pids, list) and len(pids) == 1, pids
    return int(pids[0])


@pytest.mark.live
def test_small_run_writes_results(tmp_path: Path) -> None:
    proc = ctxbench("run", "--modes", "gunicorn-sync,werkzeug-threaded", "--app", FLASK_APP,
                    "--duration", "0.2", "--repeats", "1", "--warmup", "0", "--concurrency", "4",
                    "--out", str(tmp_path))  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [run_dir] = tmp_path.iterdir()
    run = results.load(run_dir)
    assert run.status == "complete"
    assert [(c.mode, c.connections) for c in run.cells] == [
        ("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh"),
        ("werkzeug-threaded", "keepalive"), ("werkzeug-threaded", "fresh"),
    ]  # fmt: skip
    assert all(c.leaks == 0 and c.requests > 0 for c in run.cells)
    assert run.cells[0].app_label == "flask"
    assert run.cells[0].server.effective["worker_class"] == "sync"
    assert "gunicorn-sync" in out and "verdict" in out and "0 leaks" in out
    # Not a terminal: one progress line per finished cell, nothing else.
    lines = err.splitlines()
    assert len(lines) == 4 and all(" done  run so far: " in line for line in lines), err
    assert json.loads((run_dir / "results.json").read_text())["run_id"] == run_dir.name


@pytest.mark.live
@needs_core_app
def test_a_leak_exits_1(tmp_path: Path) -> None:
    proc = ctxbench("run", "--modes", "gunicorn-gthread", "--backend", "shared-global",
                    "--duration", "0.3", "--repeats", "1", "--warmup", "0",
                    "--connections", "keepalive", "--out", str(tmp_path))  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "LEAK" in out


@pytest.mark.live
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["run", "--modes", "gunicorn-sync", "--duration", "0.2"], id="run"),
        pytest.param(["chaos", "--faults", "kill-worker", "--modes", "gunicorn-sync"],
                     id="chaos"),
        pytest.param(["soak", "--mode", "gunicorn-sync", "--minutes", "0.05"], id="soak"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("where", ["out", "run-dir"])
def test_an_app_that_cannot_load_leaves_nothing_and_removes_nothing(
    argv: list[str], where: str, tmp_path: Path
) -> None:
    if argv[0] == "soak":
        pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")
    mine = tmp_path / "mine"  # a folder that was there: --run-dir into it, or --out under it
    mine.mkdir()
    folder = ["--out", str(mine / "results")] if where == "out" else ["--run-dir", str(mine)]
    proc = ctxbench(*argv, "--app", "no_such_module_q:app", *folder)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "cannot import app 'no_such_module_q:app'" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
    assert list(mine.iterdir()) == []


def _finished_run(settings: t.Any, run_dir: Path, *args: t.Any, **kw: t.Any) -> results.Run:
    """Stands for run_matrix and run_chaos: a run that measured nothing, in ``run_dir``."""
    run = results.Run.start(kw.get("run_id") or "r", ["ctxbench"], settings)
    run = run.replace(status="complete")
    results.write(Path(run_dir), run)
    return run


@pytest.mark.parametrize("also_caught", [False, True], ids=["alone", "beside-a-caught-one"])
def test_a_negative_control_that_missed_its_leak_gives_no_verdict(
    also_caught: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The report said "negative controls NOT as expected" while the run exited 0 (nothing
    # leaked), or 1 (another control leaked, as it must), as if the harness could be trusted.
    import harness.runner
    from tests.test_report import mutant_cell

    # A user's app mounted at /api: the line names the cell with both, as the terminal does.
    missed = mutant_cell("gunicorn-gevent", "no-reset", "keepalive")
    missed = dataclasses.replace(
        missed,
        app="myproject.wsgi:app",
        server=dataclasses.replace(
            missed.server, effective={**missed.server.effective, "mount": "/api"}
        ),
    )
    cells = (missed,)
    if also_caught:
        cells += (mutant_cell("waitress", "no-reset", "keepalive", leaks=4),)

    def measured(settings: t.Any, run_dir: Path, *args: t.Any, **kw: t.Any) -> results.Run:
        run = _finished_run(settings, run_dir, *args, **kw).replace(cells=cells)
        results.write(Path(run_dir), run)
        return run

    monkeypatch.setattr(harness.runner, "run_matrix", measured)
    argv = ["run", "--modes", "gunicorn-gevent", "--backend", "no-reset", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "ctxbench: error: the harness missed the leak a deliberately broken backend must show,"
        " in 1 cell (gunicorn-gevent · myproject.wsgi:app at /api · no-reset keepalive): a"
        " ctxbench bug: report it with this run's results.json\n"
    )


def test_a_run_in_a_folder_with_a_gunicorn_conf_py_says_it_was_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A project's gunicorn.conf.py (preload_app = True, gevent workers, a threading.local made
    # at import) was silently not read: gunicorn-gevent ran without --preload and passed, where
    # the deployment leaks.
    import harness.runner

    if not get_mode("nginx+gunicorn-gevent").available().ok:
        pytest.skip("nginx+gunicorn-gevent cannot run here")
    monkeypatch.setattr(harness.runner, "run_matrix", _finished_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    (tmp_path / "gunicorn.conf.py").write_text("preload_app = True\nworker_class = 'gevent'\n")
    out = tmp_path / "results"
    assert main(["run", "--modes", "nginx+gunicorn-gevent", "--out", str(out)]) == 0
    assert (
        "not read: gunicorn.conf.py: ctxbench runs gunicorn with a config of its own (-c"
        " python:harness.servers._gunicorn_conf) and none of yours, so your settings"
        " (preload_app, worker_class, max_requests, ...) do not apply; give those that matter"
        " as server arguments (--server-arg=--preload), or start gunicorn with yours and check"
        " it with ctxbench run --target (README, 'Checking a running deployment')\n"
    ) in capsys.readouterr().out
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--preload")
    assert main(["run", "--modes", "gunicorn-gevent", "--out", str(out)]) == 0
    assert "not read: gunicorn.conf.py and GUNICORN_CMD_ARGS: " in capsys.readouterr().out
    # No gunicorn ran: nothing to say.
    assert main(["run", "--modes", "werkzeug-threaded", "--out", str(out)]) == 0
    assert "not read" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "given"),
    [
        pytest.param(["serve", "--mode", "gunicorn-gevent"], "(--server-arg=--preload), or",
                     id="serve"),
        pytest.param(["chaos", "--modes", "gunicorn-sync,gunicorn-gevent", "--faults",
                      "kill-worker"], "do not apply; start gunicorn with yours", id="chaos"),
        pytest.param(["soak", "--mode", "gunicorn-gevent", "--minutes", "1"],
                     "(--server-arg=--preload), or", id="soak"),
    ],
)  # fmt: skip
def test_every_command_that_starts_gunicorn_says_once_that_gunicorn_conf_py_was_not_read(
    argv: list[str],
    given: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Only run said it: serve, chaos and soak ran gunicorn without the project's preload_app
    # and said nothing, a pass where the deployment leaks.
    import types

    import harness.faults.runner
    import harness.servers
    import harness.soak

    if argv[0] == "soak":
        pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")

    @contextlib.contextmanager
    def serving(mode: str, cfg: object) -> Iterator[object]:
        process = types.SimpleNamespace(wait=lambda: 0)
        yield types.SimpleNamespace(
            mode=mode,
            url="http://127.0.0.1:1",
            mount=None,
            pid=1,
            effective={},
            process=process,
            log_path=tmp_path / "none",
        )

    def soaked(mode: str, **kw: t.Any) -> results.Soak:
        return results.Soak(mode=mode, app=kw["app"], backend=kw["backend"],
                            connections=kw["connections"], seconds=60.0, warmup_s=20.0,
                            verdict="ok")  # fmt: skip

    monkeypatch.setattr(harness.servers, "live_server", serving)
    monkeypatch.setattr(
        harness.faults.runner, "run_chaos", lambda f, s, c, d, **kw: _finished_run(s, d, **kw)
    )
    monkeypatch.setattr(harness.soak, "run_soak", soaked)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    (tmp_path / "gunicorn.conf.py").write_text("preload_app = True\n")
    folder = [] if argv[0] == "serve" else ["--out", str(tmp_path / "results")]
    main([*argv, *folder])
    out = capsys.readouterr().out
    assert out.count("not read: gunicorn.conf.py: ctxbench runs gunicorn") == 1, out
    assert given in out, out
    (tmp_path / "gunicorn.conf.py").unlink()
    main([*argv, *folder])
    assert "not read" not in capsys.readouterr().out


@pytest.mark.parametrize(("given", "judged_from"), [([], 20.0), (["--warmup", "5"], 5.0)])
def test_a_soak_records_the_warm_up_it_ran_with(
    given: list[str], judged_from: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings said "warmup 0.0" in the report of a soak that said "15 s warm-up, not
    # judged" above them: the run's warm-up is the soak's, the seconds not judged.
    import harness.soak

    pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")
    asked: list[float | None] = []

    def soaked(mode: str, **kw: t.Any) -> results.Soak:
        asked.append(kw["warmup_s"])
        return results.Soak(mode=mode, app=kw["app"], backend=kw["backend"],
                            connections=kw["connections"], seconds=60.0,
                            warmup_s=kw["warmup_s"], verdict="ok")  # fmt: skip

    monkeypatch.setattr(harness.soak, "run_soak", soaked)
    run_dir = tmp_path / "run"
    argv = ["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--run-dir", str(run_dir)]
    assert main([*argv, *given]) == 0
    assert asked == [judged_from]
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["settings"]["warmup"] == doc["soaks"][0]["warmup_s"] == judged_from


def test_a_soak_off_a_terminal_says_how_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Piped to a log (CI), a soak of minutes printed nothing until it ended: its progress went
    # to the live line of a terminal only, and CI services end a step that is silent too long.
    import harness.soak

    pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")

    def soaked(mode: str, **kw: t.Any) -> results.Soak:
        for n in range(3):  # the driver reports about twice a second
            kw["progress"](f"soak {mode} {n}/60 s  requests {n}")
        return results.Soak(mode=mode, app=kw["app"], backend=kw["backend"],
                            connections=kw["connections"], seconds=60.0,
                            warmup_s=kw["warmup_s"], verdict="ok")  # fmt: skip

    monkeypatch.setattr(harness.soak, "run_soak", soaked)
    argv = ["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 0
    beats = [line for line in capsys.readouterr().err.splitlines() if "soak gunicorn-sync" in line]
    assert [line.split("s  ", 1)[1] for line in beats] == ["soak gunicorn-sync 0/60 s  requests 0"]


@pytest.mark.parametrize("command", ["run", "chaos"])
def test_a_reused_run_folder_holds_this_run_only_and_is_held_until_its_reports_are_written(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The earlier run's log of a mode this one did not measure stayed beside this run's
    # results, and the folder was let go before the reports were written: a second run into it
    # could start and write its results under the first one's report.
    import harness.faults.runner
    import harness.report
    import harness.runner

    held: list[bool] = []
    write_reports = harness.report.write_reports

    def writing(run_dir: Path, run: results.Run | None = None) -> list[Path]:
        try:
            with hold_run_dir(run_dir):
                held.append(False)
        except results.ResultsError:
            held.append(True)
        return write_reports(run_dir, run)

    monkeypatch.setattr(harness.report, "write_reports", writing)
    folder = tmp_path / "ci"
    logs = folder / "logs" / "core-contextvar"
    logs.mkdir(parents=True)
    for log in ("gunicorn-sync.log", "werkzeug-threaded.log"):
        (logs / log).write_text("the earlier run's")
    for name in ("results.json", "report.md", "latency-fresh.svg", ".keep"):
        (folder / name).write_text("the earlier run's")

    def measured(settings: t.Any, run_dir: Path, *args: t.Any, **kw: t.Any) -> results.Run:
        (logs / "werkzeug-threaded.log").write_text("this run's")  # the mode it measured
        return _finished_run(settings, run_dir, *args, **kw)

    monkeypatch.setattr(harness.runner, "run_matrix", measured)
    monkeypatch.setattr(
        harness.faults.runner, "run_chaos", lambda f, s, c, d, **kw: measured(s, d, **kw)
    )
    main([command, "--modes", "werkzeug-threaded", "--run-dir", str(folder)])
    assert held == [True]
    assert results.load(folder).status == "complete"
    assert [p.name for p in logs.iterdir()] == ["werkzeug-threaded.log"]
    assert not (folder / "latency-fresh.svg").exists()
    assert (folder / ".keep").read_text() == "the earlier run's"


def test_an_earlier_run_stays_whole_where_the_next_one_wrote_no_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.runner

    def stopped(*args: object, **kw: object) -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.runner, "run_matrix", stopped)
    folder = tmp_path / "ci"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "gunicorn-sync.log").write_text("the earlier run's")
    (folder / "results.json").write_text("the earlier run's")
    assert main(["run", "--modes", "werkzeug-threaded", "--run-dir", str(folder)]) == 130
    assert (folder / "logs" / "gunicorn-sync.log").read_text() == "the earlier run's"


def test_an_interrupt_while_the_reports_are_written_says_where_the_run_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ctrl-C after the last cell: results.json held the whole run, marked complete, but half of
    # its reports were written, and stderr said only "interrupted", not where the run was.
    import harness.report
    import harness.runner

    def measured(settings: t.Any, run_dir: Path, *, command: list[str], run_id: str) -> t.Any:
        return results.write_ended(run_dir, results.Run.start(run_id, command, settings), 1, None)

    def stopped(*args: object, **kw: object) -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.runner, "run_matrix", measured)
    monkeypatch.setattr(harness.report, "write_reports", stopped)
    folder = tmp_path / "run"
    assert main(["run", "--modes", "werkzeug-threaded", "--run-dir", str(folder)]) == 130
    assert capsys.readouterr().err == (
        f"ctxbench: the cells finished before the interrupt are kept in {folder / 'results.json'}"
        f" (marked complete); ctxbench report {folder} writes their report\n"
        "ctxbench: interrupted; every server was stopped\n"
    )


def test_a_run_folder_that_is_not_a_run_s_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --run-dir docs/: ctxbench wrote its report.md over the user's, and removed every SVG
    # there that its report did not draw (the project's logo.svg).
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("report.md", "logo.svg", "notes.txt"):
        (folder / name).write_text("the user's")
    assert main(["run", "--modes", "werkzeug-threaded", "--run-dir", str(folder)]) == 2
    one_line_error(
        capsys.readouterr().err, "it holds files that are no ctxbench run's ('notes.txt')"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["logo.svg", "notes.txt", "report.md"]
    (folder / "notes.txt").unlink()  # report files without results are no run's either
    assert main(["run", "--modes", "werkzeug-threaded", "--run-dir", str(folder)]) == 2
    assert "('logo.svg', 'report.md')" in capsys.readouterr().err
    # A run killed (kill -9) before its results left its server logs alone: the same command,
    # run again, may use the folder; a folder named logs of other files is not a run's.
    stopped = tmp_path / "stopped"
    (stopped / "logs" / "restart-1").mkdir(parents=True)
    (stopped / "logs" / "gunicorn-sync.log").write_text("the killed run's")
    (stopped / "logs" / "restart-1" / "gunicorn-sync.log").write_text("the killed run's")
    with replacing_earlier_run(stopped):
        pass
    (stopped / "logs" / "app.py").write_text("the user's")
    with (
        pytest.raises(UsageError, match=r"no ctxbench run's \('logs'\)"),
        replacing_earlier_run(stopped),
    ):
        pass
    # make reference: the benchmarks' JSON first, which the report reads, then the run.
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("micro.json", "driver_vs_wrk.json", ".DS_Store"):
        (reference / name).write_text("{}")
    with replacing_earlier_run(reference):
        pass


@pytest.mark.parametrize("command", ["run", "chaos", "corpus"])
def test_a_run_folder_another_run_is_writing_is_refused(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two CI jobs given the same --run-dir both ran, each wrote results.json and the logs over
    # the other's, and both said 'results: <that file>', exit 0: one job's results were lost.
    import harness.corpus.run
    import harness.faults.runner
    import harness.runner

    def measured(*args: object, **kw: object) -> t.NoReturn:
        raise AssertionError("a run started in a folder another run holds")

    for module, name in ((harness.runner, "run_matrix"), (harness.faults.runner, "run_chaos"),
                         (harness.corpus.run, "run_corpus")):  # fmt: skip
        if hasattr(module, name):
            monkeypatch.setattr(module, name, measured)
    shared = tmp_path / "ci"
    shared.mkdir()
    (shared / "results.json").write_text("the other run's\n")
    with hold_run_dir(shared):  # the other job, still running
        status = main([command, "--modes", "werkzeug-threaded", "--run-dir", str(shared)])
    assert status == 2
    one_line_error(capsys.readouterr().err, "another ctxbench run is writing into that folder")
    assert [p.name for p in shared.iterdir()] == ["results.json"]
    assert (shared / "results.json").read_text() == "the other run's\n"


@pytest.mark.live
def test_a_leak_exits_1_when_the_reader_of_the_output_is_gone(tmp_path: Path) -> None:
    # `ctxbench run 2>&1 | head -1` in a CI job (set -o pipefail): the next progress line met
    # the closed pipe, the run stopped there (results.json marked failed) and exited 0, leaks
    # found.
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--modes", "gunicorn-gthread",
         "--backend", "shared-global", "--duration", "0.3", "--repeats", "1", "--warmup", "0",
         "--run-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert b" done  run so far: " in proc.stdout.readline()  # the first cell's line
        proc.stdout.close()  # head -1 has read its line
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run = results.load(tmp_path / "r")
    assert run.status == "complete"
    assert [c.connections for c in run.cells] == ["keepalive", "fresh"]
    assert all(c.leaks for c in run.cells)


def test_a_regression_exits_1_when_the_reader_of_the_output_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ctxbench compare A B | head -1`: the write to the closed pipe ended the command with 0.
    from tests.test_compare import doc, entry

    for name, rps in (("a", 5000.0), ("b", 4000.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc(name.upper(), entry(rps=rps))))
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w", buffering=1) as closed:  # line-buffered: as a long output
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1


@pytest.mark.parametrize(
    ("options", "effective", "said"),
    [
        pytest.param(
            ["--mode", "waitress", "--workers", "2"],
            {"workers": 1, "threads": 4, "ignored_options": ["--workers"]},
            ["--workers 2 does not apply to waitress, which runs workers=1"], id="waitress",
        ),
        pytest.param(
            ["--mode", "werkzeug-threaded", "--threads", "3"],
            {"workers": 1, "threads": None, "ignored_options": ["--threads"]},
            ["--threads 3 does not apply to werkzeug-threaded, which has no threads"],
            id="werkzeug",
        ),
        pytest.param(
            ["--mode", "gunicorn-gthread", "--workers", "3", "--threads", "2"],
            {"workers": 3, "threads": 2, "ignored_options": []}, [], id="applied",
        ),
    ],
)  # fmt: skip
def test_serve_says_which_server_options_do_not_apply(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    effective: dict[str, t.Any],
    said: list[str],
) -> None:
    # 'serve --mode waitress --workers 2' served with one process, and only 'workers=1' on its
    # effective line said so: waitress takes --workers without a word.
    import contextlib
    import types

    import harness.servers

    @contextlib.contextmanager
    def served(mode: str, cfg: t.Any) -> t.Any:
        yield types.SimpleNamespace(
            mode=mode, url="http://127.0.0.1:9", mount=None, pid=1, log_path=Path("/dev/null"),
            effective={"worker_class": "x", "worker_pids": [1], **effective},
            process=types.SimpleNamespace(wait=lambda: 0),
        )  # fmt: skip

    monkeypatch.setattr(harness.servers, "live_server", served)
    main(["serve", *options])
    notes = [line.strip() for line in capsys.readouterr().out.splitlines() if "apply" in line]
    assert [note.split(" (")[0] for note in notes] == said, notes
