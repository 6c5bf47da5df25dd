"""``ctxbench run --target``: checking a server ctxbench did not start.

The live tests start gunicorn by hand from ``examples/gunicorn-conf/gunicorn.conf.py`` (the file
README.md shows), as a user would, in a process group of their own, and point the CLI at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import typing as t
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import results
from harness.checkpoints import CHECKPOINT_ENV
from harness.cli import main
from harness.errors import UsageError
from harness.probe import SECRET_HEADER
from harness.servers._process import free_port
from harness.target import identify, parse_target

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gunicorn-conf"
SECRET = "test-secret"
# A 10 ms sleep in the view keeps several requests in flight per worker even on a busy machine.
QUICK = ["--requests", "300", "--repeats", "1", "--warmup", "0", "--sleep-ms", "10"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1:8080", "ctxbench speaks plain HTTP .* give the port that serves"),
        ("127.0.0.1:8080", "give the URL the app is served at"),
        ("http://127.0.0.1:8080/?x=1", "no query, fragment"),
        ("http://10.1.2.3:8080", "not on this machine"),
        ("http://example.com", "not on this machine"),
        ("http://[::1", "give the URL the app is served at"),
        ("http://127.0.0.1:0", "port must be a number from 1 to 65535"),
        ("http://localhost:70000", "port must be a number from 1 to 65535"),
    ],
)
def test_bad_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_target(url)


def test_target_urls_are_normalised() -> None:
    assert parse_target("http://localhost:8080/").url == "http://127.0.0.1:8080"
    assert parse_target("http://[::1]:9000").url == "http://[::1]:9000"
    assert parse_target("http://127.0.0.1").port == 80
    # A trailing space was read as part of the port: 'its port must be a number from 1 to 65535'.
    assert parse_target("http://127.0.0.1:8080 ").url == "http://127.0.0.1:8080"
    assert parse_target(" http://127.0.0.1:8080/api\n").url == "http://127.0.0.1:8080/api"


@pytest.mark.parametrize(
    "extra",
    [
        ["--modes", "gunicorn-sync"],
        ["--app", "harness.apps.core_app:app"],
        ["--backend", "no-reset"],
        ["--workers", "2"],
        ["--compare-flask"],
        ["--target", "http://127.0.0.1:1"],  # the same URL twice
    ],
)
def test_options_that_shape_a_server_do_not_go_with_target(
    extra: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["run", "--target", "http://127.0.0.1:1", *extra, "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_nothing_listening_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    port = closed_port
    assert main(["run", "--target", f"http://127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ctxbench: error: cannot reach --target http://127.0.0.1:{port}")
    # What is wrong and what to do, not only the OS's words ("Connection refused").
    assert f"nothing listens on port {port}; start the server, or give the port" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_a_target_that_never_answers_says_so() -> None:
    """A server that accepts but never answers (stuck workers, a full backlog) is not "timed
    out" alone: one line saying what to check."""
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen()
        url = f"http://127.0.0.1:{stuck.getsockname()[1]}"
        with pytest.raises(UsageError) as caught:
            identify(parse_target(url), timeout=0.2)
    assert str(caught.value) == (
        f"cannot reach --target {url}: no answer to one probe request within 0.2 s; check that"
        " the server there is up and not stuck (its log)"
    )


@contextlib.contextmanager
def answering(answer: t.Callable[[socket.socket], None]) -> Iterator[str]:
    """A server on 127.0.0.1 that reads one request and hands its connection to ``answer``,
    in a thread of this process; yields its URL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):  # the client left: the answer ends
                conn.recv(65536)
                answer(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        thread.join(timeout=10)


def _endless(head: bytes, piece: bytes) -> t.Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head)
        while True:
            conn.sendall(piece)

    return answer


def _trickle(conn: socket.socket) -> None:
    # A whole probe answer, a byte every 5 ms: 3 s in all, each byte well within any timeout.
    body = b'{"token": "ctxbench-target-check", "app": "x"}'.ljust(600)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body):
        conn.sendall(bytes([byte]))
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            lambda c: c.sendall(b"\x15\x03\x01\x00\x02\x02\x46"),
            "did not answer /_ctxbench/probe in HTTP/1.x (BadStatusLine:",
            id="tls-alert",
        ),
        pytest.param(
            lambda c: c.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n"),
            "did not answer /_ctxbench/probe in HTTP/1.x (HTTPException: 'got more than 100",
            id="many-headers",
        ),
        pytest.param(
            lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n"),
            "did not answer /_ctxbench/probe in HTTP/1.x (LineTooLong:",
            id="huge-header",
        ),
        pytest.param(
            lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\n"),
            "did not answer /_ctxbench/probe in HTTP/1.x (ValueError:",
            id="negative-chunk-size",
        ),
        pytest.param(
            _endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                     b"10000\r\n" + b"x" * 0x10000 + b"\r\n"),
            "answered /_ctxbench/probe with more than 1 MiB, where a probe answer is about 1 KB",
            id="endless-chunked",
        ),
        pytest.param(
            _endless(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n", b"x" * 65536),
            "answered /_ctxbench/probe with more than 1 MiB, where a probe answer is about 1 KB",
            id="100-GB-content-length",
        ),
        pytest.param(
            _endless(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x" * 65536),
            "answered /_ctxbench/probe with more than 1 MiB, where a probe answer is about 1 KB",
            id="endless-until-close",
        ),
        pytest.param(
            _trickle, "no answer to one probe request within 0.5 s", id="a-byte-at-a-time"
        ),
    ],
)  # fmt: skip
def test_a_target_that_misbehaves_is_one_line_within_the_timeout(
    answer: t.Callable[[socket.socket], None], message: str
) -> None:
    """A server that answers the first probe request with something that is not HTTP, without
    end, or a byte at a time: one line, exit status 2. http.client's exceptions came out as a
    traceback (exit status 1, which says a leak was found), an endless body filled memory (10 GB
    in a minute) and a trickle held the run for as long as it went on."""
    with answering(answer) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url), timeout=0.5)
    assert message in str(caught.value), caught.value
    assert "\n" not in str(caught.value)


@contextlib.contextmanager
def serving(app: t.Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1 by wsgiref in a thread of this process; yields its URL."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: t.Any) -> None:
            pass

    with make_server("127.0.0.1", 0, app, handler_class=Quiet) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()


def test_a_secret_beyond_ascii_reaches_the_probe_as_the_load_sends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # identify sent it in latin-1 and the load in UTF-8, which the probe reads: 'é' was 'no
    # ctxbench probe there' with the same secret on both sides, and '€' a UnicodeEncodeError.
    import core
    from harness.probe import install_probe

    app = core.App("secret_app")
    app.secret_key = "k"
    install_probe(app, enabled=True, secret="é€")
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", "é€")
    with serving(app) as url:
        assert identify(parse_target(url)).app == "secret_app"


def test_a_probe_behind_a_secret_it_was_not_given_says_to_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The 404 said "the same CTXBENCH_PROBE_SECRET as here, if it has one" with none set here,
    # where a deployment that keeps its secret in its own config (raw_env) answers so.
    import core
    from harness.probe import install_probe

    app = core.App("secret_app")
    install_probe(app, enabled=True, secret="s3cret")
    with serving(app) as url:
        monkeypatch.delenv("CTXBENCH_PROBE_SECRET", raising=False)
        with pytest.raises(UsageError) as unset:
            identify(parse_target(url))
        monkeypatch.setenv("CTXBENCH_PROBE_SECRET", "other")
        with pytest.raises(UsageError) as other:
            identify(parse_target(url))
    assert (
        "; CTXBENCH_PROBE_SECRET is not set here, and a probe with one answers 404 to a request"
        " without it: if the server sets one (gunicorn raw_env, uWSGI env =), set the same here;"
    ) in str(unset.value)
    assert (
        "CTXBENCH_PROBE=1 and the same CTXBENCH_PROBE_SECRET as here (a probe with another one"
        " answers 404);"
    ) in str(other.value)


def test_a_secret_of_two_lines_is_one_line_of_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # http.client's ValueError('Invalid header value') was a traceback, exit 1.
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", "a\nb")
    assert main(["run", "--target", "http://127.0.0.1:1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "ctxbench: error: CTXBENCH_PROBE_SECRET holds a line break, which no HTTP header can"
        " carry; set it to one line, here and in the server's environment\n"
    )


def test_what_a_target_calls_itself_is_shown_printable_and_short() -> None:
    """The app name and Server header a target answers with go to the terminal's progress
    lines and table and into both reports: their escape sequences (a window title, a cleared
    screen) went there as they were, and a 3,000-character Server header widened the table."""
    import core
    from harness.probe import install_probe

    app = core.App("evil\x1b]0;pwned\x07")
    app.secret_key = "k"
    install_probe(app, enabled=True)
    body = app.test_client().get("/_ctxbench/probe?token=ctxbench-target-check").data
    head = b"HTTP/1.1 200 OK\r\nServer: \x1b[2J%s\r\nContent-Length: %d\r\n\r\n"
    with answering(lambda c: c.sendall(head % (b"A" * 3000, len(body)) + body)) as url:
        target = identify(parse_target(url))
    assert target.app == "evil\\x1b]0;pwned\\x07"
    assert target.server == "\\x1b[2J" + "A" * 93 + "..."


def test_a_head_the_load_cannot_read_is_refused_at_the_start() -> None:
    """A probe answer with two Content-Lengths that differ: http.client took the first and the
    target was checked, and the load driver, which cannot tell where such an answer ends,
    counted every request of the run as an error of kind http."""
    import core
    from harness.load.http import HttpProtocolError, parse_head
    from harness.probe import install_probe

    app = core.App("twice")
    install_probe(app, enabled=True)
    body = app.test_client().get("/_ctxbench/probe?token=ctxbench-target-check").data
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d" % (len(body), 7)
    with pytest.raises(HttpProtocolError) as driver:  # what the load makes of it
        parse_head(head)
    answer = head + b"\r\n\r\n" + body
    with answering(lambda c: c.sendall(answer)) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url))
    assert str(caught.value) == (
        f"--target {url} answered /_ctxbench/probe with a head the load cannot read"
        f" ({driver.value}), so every request would be an error (http): the server's doing, or"
        " a proxy's in front of it, not the app's; fix what sends it, or give --target the app"
        " server's own port"
    )
    # One that only repeats its length is read, by the load as here; and an interim 100 before
    # the answer is skipped, as both do.
    same = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    with answering(
        lambda c: c.sendall(same + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    ) as url:
        assert identify(parse_target(url)).app == "twice"
    # A 103 Early Hints before the answer: the load skips it, and so does the check, which took
    # it for the answer ("answered 103 ... no ctxbench probe there").
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    with answering(lambda c: c.sendall(hints + ok + body)) as url:
        assert identify(parse_target(url)).app == "twice"
    # A head of bare LFs: http.client reads it, and the load, waiting for CRLF CRLF, never did.
    bare = hints + ok.replace(b"\r\n", b"\n") + body
    with answering(lambda c: c.sendall(bare)) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url))
    assert "a head the load cannot read (no CRLF CRLF ends it: a line ended by a bare LF)" in str(
        caught.value
    )


def test_a_redirect_of_the_app_s_own_is_named_printable() -> None:
    # The Location went into the one line of error as it was: a target's escape sequence
    # cleared the terminal.
    head = (
        b"HTTP/1.1 302 Found\r\nLocation: \x1b[2J/login\r\n"
        b"X-Ctxbench-Probe-Stopped: before_request\r\nContent-Length: 0\r\n\r\n"
    )
    with answering(lambda c: c.sendall(head)) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url))
    assert "answered 302 (a redirect to \\x1b[2J/login) from the app itself" in str(caught.value)


def test_a_target_without_the_probe_is_told_which_apps_take_it() -> None:
    # A Django deployment was told to mount the probe with install_probe(app), which refuses it.
    def django_404(environ: t.Any, start_response: t.Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<h1>Not Found</h1>"]

    with serving(django_404) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url))
    assert (
        "no ctxbench probe there; install the probe with harness.probe.install_probe(app) (a"
        " core or Flask"
        " app; for others see the README, 'Apps of other frameworks') and start the server with"
        " CTXBENCH_PROBE=1"
    ) in str(caught.value)


def test_a_probe_answer_the_load_cannot_read_is_refused_at_the_start() -> None:
    """An app that answers the probe request itself (a view of another framework) with the token
    but not every phase: each request of the run was an error, and the run ended with 'the app
    answered them itself', however many it sent."""

    def view_only(environ: t.Any, start_response: t.Any) -> list[bytes]:
        body = json.dumps(
            {
                "token": "ctxbench-target-check",
                "app": "mysite",
                "worker": {"pid": 1, "thread": 1, "greenlet": None},
                "obs": [["view", "request", "ctxbench-target-check"]],
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    with serving(view_only) as url, pytest.raises(UsageError) as caught:
        identify(parse_target(url))
    assert str(caught.value).startswith(
        f"--target {url} answered /_ctxbench/probe with a probe response that cannot be checked"
        " (no observations from phase(s) after_request, before_request, entry,"
        " teardown_appcontext, teardown_request), so every request would be an error; install"
        " the probe with harness.probe.install_probe(app)"
    )


@contextlib.contextmanager
def hand_started_gunicorn(app: str, cwd: Path, *extra: str, mount: str = "") -> Iterator[str]:
    """gunicorn from the example config, as a user starts it; yields its URL (the probe is
    under ``mount``)."""
    with hand_started_gunicorn_process(app, cwd, *extra, mount=mount) as (url, _):
        yield url


@contextlib.contextmanager
def hand_started_gunicorn_process(
    app: str, cwd: Path, *extra: str, mount: str = ""
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`hand_started_gunicorn`, yielding its master process too (its own group)."""
    port = free_port()
    # A HOME of its own: the example must not open gunicorn's control socket there.
    home = Path(tempfile.mkdtemp(prefix="ctxbench-home-"))
    env = {**os.environ, "CTXBENCH_PROBE_SECRET": SECRET, "HOME": str(home)}
    for name in ("WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(EXAMPLE / "gunicorn.conf.py"),
         "-b", f"127.0.0.1:{port}", *extra, app],
        cwd=cwd, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            request = urllib.request.Request(
                f"{url}{mount}/_ctxbench/probe?token=ready", headers={SECRET_HEADER: SECRET}
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as resp:
                    if json.load(resp)["token"] == "ready":
                        break
            except (OSError, urllib.error.URLError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield url, proc
        assert not (home / ".gunicorn").exists(), "the example opened gunicorn's control socket"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.live
def test_a_hand_started_gunicorn_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with hand_started_gunicorn("myapp:app", EXAMPLE) as url:
        # Without the secret the probe is a 404: one line, exit 2, nothing written.
        monkeypatch.delenv("CTXBENCH_PROBE_SECRET", raising=False)
        assert main(["run", "--target", url, *QUICK, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "answered 404" in err and len(err.strip().splitlines()) == 1
        assert not any(tmp_path.iterdir())

        monkeypatch.setenv("CTXBENCH_PROBE_SECRET", SECRET)
        run_dir = tmp_path / "run"
        assert main(["run", "--target", url, *QUICK, "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert url in out or "target:127.0.0.1" in out
    run = results.load(run_dir)
    assert [c.connections for c in run.cells] == ["keepalive", "fresh"]
    for cell in run.cells:
        assert cell.target == url
        assert cell.app == "myapp"
        assert str(cell.server.effective["server"]).startswith("gunicorn")
        assert (cell.requests, cell.leaks, cell.errors) == (300, 0, 0)
        seen = cell.exercised
        assert seen is not None
        # Read back from the probe: gthread workers (the config says 2; keep-alive connections
        # may all land on one), pool threads serving several requests at once.
        assert 1 <= seen.processes <= 2 and seen.threads > seen.processes, seen
        assert seen.overlap and seen.unit_reused, seen
        # gthread keeps connections alive: no note that the keepalive cell was not.
        assert seen.reconnects is None or seen.reconnects < 30, seen
    assert not [n for c in run.cells for n in c.exercised.notes() if "closed" in n.sentence]  # type: ignore[union-attr]
    assert run.settings.targets == (url,)
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## What the runs exercised" in report
    assert f"{url} (Server: gunicorn" in report


LEAKY = """
    from flask import Flask
    from harness.probe import current_token, install_probe, observe

    app = Flask(__name__)
    _current = {}  # one dict for the process: shared by the gthread pool

    @app.before_request
    def remember():
        _current["user"] = current_token()

    @app.after_request
    def check(response):
        observe("current_user", _current.get("user"))
        return response

    install_probe(app)
"""


@pytest.mark.live
def test_a_leaking_deployment_exits_1_with_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leaky.py").write_text(textwrap.dedent(LEAKY), encoding="utf-8")
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", SECRET)
    with hand_started_gunicorn("leaky:app", tmp_path) as url:
        run_dir = tmp_path / "run"
        argv = ["run", "--target", url, *QUICK, "--connections", "keepalive"]
        assert main([*argv, "--run-dir", str(run_dir)]) == 1
    [cell] = results.load(run_dir).cells
    assert cell.leaks > 0
    assert {(e.phase, e.name) for e in cell.evidence} == {("after_request", "current_user")}


MOUNTED = """
    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from leaky import app as leaky_app

    app = DispatcherMiddleware(NotFound(), {"/api": leaky_app})
"""


@pytest.mark.live
def test_a_deployment_under_a_path_prefix_is_checked_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leaking app mounted at /api, as DispatcherMiddleware (or an nginx location, or
    # SCRIPT_NAME) serves it: the target's path names the prefix, and the leak is caught there.
    (tmp_path / "leaky.py").write_text(textwrap.dedent(LEAKY), encoding="utf-8")
    (tmp_path / "mounted.py").write_text(textwrap.dedent(MOUNTED), encoding="utf-8")
    monkeypatch.setenv("CTXBENCH_PROBE_SECRET", SECRET)
    with hand_started_gunicorn("mounted:app", tmp_path, mount="/api") as url:
        # At the root: a 404 from the dispatcher, one line saying to add the prefix.
        argv = [*QUICK, "--connections", "keepalive", "--out", str(tmp_path / "out")]
        assert main(["run", "--target", url, *argv]) == 2
        err = capsys.readouterr().err
        assert f"add it to the URL: --target {url}/api" in err and err.count("\n") == 1, err
        run_dir = tmp_path / "run"
        argv = ["run", "--target", f"{url}/api/", *QUICK, "--connections", "keepalive"]
        assert main([*argv, "--run-dir", str(run_dir)]) == 1
    [cell] = results.load(run_dir).cells
    assert cell.target == f"{url}/api" and cell.mode.endswith("/api")
    assert cell.leaks > 0 and cell.checked == 300
    assert {(e.phase, e.name) for e in cell.evidence} == {("after_request", "current_user")}


UWSGI_INI = """
    [uwsgi]
    http-socket = 127.0.0.1:{port}
    chdir = {example}
    module = myapp:app
    master = true
    processes = 2
    threads = 4
    need-app = true
    ; the probe's switch and secret in the .ini, as a deployment keeps its settings
    env = CTXBENCH_PROBE=1
    env = CTXBENCH_PROBE_SECRET={secret}
"""


@pytest.mark.live
def test_a_uwsgi_ini_that_sets_the_secret_keeps_the_probe_behind_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uWSGI from an .ini whose ``env =`` lines switch the probe on and set its secret. The
    ``uwsgi`` of ``ctxbench[uwsgi]`` is pyuwsgi, which sets them after Python made
    ``os.environ``: the probe was not mounted (``env = CTXBENCH_PROBE=1`` ignored), and with
    ``CTXBENCH_PROBE=1`` in the shell it answered anyone, without the .ini's secret."""
    uwsgi = Path(sys.executable).parent / "uwsgi"
    if not uwsgi.is_file():
        pytest.skip("uWSGI is not installed (pip install 'ctxbench[uwsgi]')")
    port = free_port()
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        textwrap.dedent(UWSGI_INI).format(port=port, example=EXAMPLE, secret=SECRET),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    env["CTXBENCH_PROBE"] = "1"  # as an SRE exports it; the secret is only in the .ini
    env.pop("CTXBENCH_PROBE_SECRET", None)
    log = tmp_path / "uwsgi.log"  # a file, not a pipe: uWSGI logs every request, and blocks
    with log.open("wb") as out:  # on a full pipe that nobody reads
        proc = subprocess.Popen(
            [str(uwsgi), "--ini", str(ini)], cwd=tmp_path, env=env, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    probe = f"{url}/_ctxbench/probe?token=ready"
    try:
        deadline = time.monotonic() + 30
        while True:
            request = urllib.request.Request(probe, headers={SECRET_HEADER: SECRET})
            try:
                with urllib.request.urlopen(request, timeout=2) as resp:
                    if json.load(resp)["token"] == "ready":
                        break
            except (OSError, urllib.error.URLError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"uwsgi did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        # Without the .ini's secret: a plain 404, whatever the shell holds.
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(probe, timeout=5)
        assert caught.value.code == 404
        monkeypatch.setenv("CTXBENCH_PROBE_SECRET", SECRET)
        run_dir = tmp_path / "run"
        argv = ["run", "--target", url, *QUICK, "--connections", "keepalive"]
        assert main([*argv, "--run-dir", str(run_dir)]) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # uWSGI stops on SIGINT (SIGTERM re-executes it)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    [cell] = results.load(run_dir).cells
    assert (cell.requests, cell.leaks, cell.errors) == (300, 0, 0)
    assert cell.app == "myapp" and cell.exercised is not None and cell.exercised.processes >= 1
    # --http-socket closes after every response (without saying so): the keepalive cell had
    # hardly any kept-alive connection, and the report says so under "What the runs exercised".
    assert cell.exercised.reconnects is not None and cell.exercised.reconnects >= 270
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "the server closed the connection after nearly every response" in report


@pytest.mark.live
def test_a_target_that_goes_away_fails_its_cell_and_the_cells_after_it(tmp_path: Path) -> None:
    """The user's gunicorn stops mid-run. The cell under way fails with the reason, and the next
    one at its start: the run used to load the closed port to the end of every cell (191,305
    refused requests in a 6 s fresh cell, flagged driver-bound), then blame too few checks."""
    reached = tmp_path / "reached"
    run_dir = tmp_path / "run"
    with hand_started_gunicorn_process("myapp:app", EXAMPLE) as (url, gunicorn):
        env = {**os.environ, "CTXBENCH_PROBE_SECRET": SECRET, CHECKPOINT_ENV: f"load:{reached}"}
        argv = [sys.executable, "-m", "harness.cli", "run", "--target", url, "--duration", "3",
                "--repeats", "1", "--warmup", "0", "--sleep-ms", "10",
                "--run-dir", str(run_dir)]  # fmt: skip
        harness = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not reached.exists() and harness.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert reached.exists(), "the run never got under load"
            os.killpg(gunicorn.pid, signal.SIGKILL)  # the whole server, as an OOM kill or a crash
            out, err = harness.communicate(timeout=60)
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.communicate()
    assert harness.returncode == 2, err
    assert "Traceback" not in err
    keepalive, fresh = results.load(run_dir).cells
    port = url.rsplit(":", 1)[1]
    # Not "... nothing listens on port N now during the run 1/1 of the keepalive cell".
    gone = (
        f"nothing listens on port {port} of the target {url} any more: it refused a new connection"
    )
    assert keepalive.failed and keepalive.error is not None
    assert keepalive.error.startswith(f"{gone} during the run 1/1 of the keepalive cell, after")
    assert fresh.failed and fresh.error is not None
    assert fresh.error.startswith(f"{gone} at the start of the fresh cell;"), fresh.error
    # ctxbench has no log of a server it did not start: "(see the server log)" sent users
    # looking for one.
    assert keepalive.error.endswith("nothing of it was left to serve the rest (see its own log)")
    # Seen within a progress report or two: the 3 s measurement never finished, and nothing
    # loaded the closed port after it.
    assert keepalive.runs == () and fresh.requests == 0
    # What failed is each user's request in flight on each of its 2 workers as it died, and
    # each user's one refused connection: a refused user tried again at once, in a loop that
    # never reached the progress report, and the cell counted tens of thousands of them.
    assert keepalive.concurrency is not None
    assert keepalive.errors <= keepalive.concurrency * (2 + 1), keepalive.errors
    assert f"ctxbench: error: 2 cells failed: {gone}" in err
    assert "failed cells (the server died; a target is not restarted: the cells after it" in out
    # One death, two cells: not "the server died on its own in 2 cells".
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "**Verdict: FAILED: a server died, 2 cells not measured to the end.**" in report
    assert "The server died on its own, and 2 cells were not measured to the end" in report
