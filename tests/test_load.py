"""harness.load against real servers on 127.0.0.1, in this process, in background threads.

Every server runs in a daemon thread and is shut down by its fixture's finalizer. Results are
asserted in the main thread, after run_load() returned.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import typing as t
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from harness import backends
from harness.load import ERROR_KINDS, LoadResult, LoadSpec, driver, hostile, http, run_load
from harness.load.http import HttpProtocolError, dechunk, parse_head
from harness.load.tokens import carried_by_no_request
from harness.probe import install_probe
from harness.protocol import PHASES

WSGIApp = Callable[..., t.Any]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: t.Any) -> None:
        pass


ServeFactory = Callable[[WSGIApp], BaseWSGIServer]


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """Start a threaded werkzeug server for a WSGI app on 127.0.0.1; return the server."""
    started: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: WSGIApp) -> BaseWSGIServer:
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def core_probe_app() -> t.Any:
    import core

    app = core.App("load_test_core")
    app.config["SECRET_KEY"] = "load test key"
    return install_probe(app)


def probe_body(token: str, seen: str | None = None, app: str = "fake") -> bytes:
    """A complete probe response body in which every observation saw ``seen``."""
    seen = token if seen is None else seen
    obs: list[list[t.Any]] = [["entry", "residue.request_context", None]]
    obs += [[phase, "request", seen] for phase in PHASES]
    doc = {
        "token": seen,
        "app": app,
        "worker": {"pid": 1, "thread": threading.get_ident(), "greenlet": None},
        "obs": obs,
    }
    return json.dumps(doc).encode()


def token_of(environ: dict[str, t.Any]) -> str:
    for part in environ.get("QUERY_STRING", "").split("&"):
        if part.startswith("token="):
            return part[6:]
    return ""


def json_app(make_body: Callable[[str], bytes]) -> WSGIApp:
    def app(environ: dict[str, t.Any], start_response: t.Any) -> list[bytes]:
        data = make_body(token_of(environ))
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    return app


def spec(port: int, **kw: t.Any) -> LoadSpec:
    kw.setdefault("concurrency", 8)
    kw.setdefault("timeout", 10.0)
    kw.setdefault("mode", "werkzeug-threaded")
    return LoadSpec(host="127.0.0.1", port=port, **kw)


def assert_clean(result: LoadResult, n: int) -> None:
    assert result.requests == n
    assert result.errors == 0, result.error_kinds
    assert result.error_kinds == {}
    assert result.leaks == 0, [str(e) for e in result.evidence[:3]]
    assert result.evidence == []
    assert len(result.latencies_ms) == n
    assert result.statuses == {200: n}
    assert result.rps > 0
    assert all(lat > 0 for lat in result.latencies_ms)


# -- clean runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("connections", ["keepalive", "fresh"])
def test_exact_count_against_the_core_probe(serve: ServeFactory, connections: str) -> None:
    server = serve(core_probe_app())
    result = run_load(spec(server.port, requests=300, connections=connections, sleep_ms=0.5))
    assert_clean(result, 300)
    # werkzeug's dev server gives each connection its own thread.
    assert len(result.units) > 1
    assert {"request", "g", "current_app", "residue.request_context"} <= set(result.observed)
    if connections == "fresh":
        assert result.reconnects == 0


def test_a_load_that_keeps_no_latencies_still_checks_every_response(
    serve: ServeFactory,
) -> None:
    # A soak reports no latency, and kept every one: 36 bytes a request, some 170 MB an hour.
    server = serve(core_probe_app())
    result = run_load(spec(server.port, requests=300, keep_latencies=False))
    assert (result.requests, result.errors, result.leaks) == (300, 0, 0)
    assert result.statuses == {200: 300} and result.latencies_ms == []


def test_keepalive_reuses_connections_and_reconnects_when_closed(serve: ServeFactory) -> None:
    server = serve(core_probe_app())
    result = run_load(spec(server.port, requests=100, concurrency=4, connections="keepalive"))
    assert_clean(result, 100)
    # The dev server closes after every response: each user reconnects for every request but
    # its first, and none of that is an error.
    assert result.reconnects == 100 - 4


class KeepAliveHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 keep-alive server answering probe bodies; drops the connection silently
    (no ``Connection: close``) after ``drop_after`` responses on it, when set."""

    protocol_version = "HTTP/1.1"
    drop_after = 0
    connections: list[tuple[str, int]]

    def setup(self) -> None:
        super().setup()
        self.connections.append(self.client_address)  # list.append is atomic

    def do_GET(self) -> None:
        self.served = getattr(self, "served", 0) + 1
        data = probe_body(token_of({"QUERY_STRING": self.path.partition("?")[2]}))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.drop_after and self.served >= self.drop_after:
            self.close_connection = True

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


KeepAliveFactory = Callable[[int], tuple[int, list[tuple[str, int]]]]


@pytest.fixture
def keepalive_server() -> Iterator[KeepAliveFactory]:
    """Start a keep-alive server; return its port and the list of connections it accepted."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(drop_after: int = 0) -> tuple[int, list[tuple[str, int]]]:
        connections: list[tuple[str, int]] = []
        handler = type(
            "Handler", (KeepAliveHandler,), {"drop_after": drop_after, "connections": connections}
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, thread))
        return server.server_address[1], connections

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_keepalive_keeps_one_connection_per_user(keepalive_server: KeepAliveFactory) -> None:
    port, connections = keepalive_server(0)
    result = run_load(spec(port, requests=200, concurrency=4, connections="keepalive"))
    assert_clean(result, 200)
    assert result.reconnects == 0
    assert len(connections) == 4
    assert len(result.units) == 4  # one handler thread per connection, so per user


def test_fresh_opens_a_connection_per_request(keepalive_server: KeepAliveFactory) -> None:
    port, connections = keepalive_server(0)
    result = run_load(spec(port, requests=60, concurrency=3, connections="fresh"))
    assert_clean(result, 60)
    assert result.reconnects == 0
    assert len(connections) == 60


def test_silently_dropped_keepalive_connection_is_retried(
    keepalive_server: KeepAliveFactory,
) -> None:
    port, connections = keepalive_server(5)
    result = run_load(spec(port, requests=100, concurrency=2, connections="keepalive"))
    # Each connection serves 5 requests and is dropped without notice; the driver notices on
    # the next request, reconnects and resends it: no error, every request counted once.
    assert_clean(result, 100)
    assert result.reconnects == len(connections) - 2
    assert len(connections) >= 100 // 5


class SwallowingHandler(KeepAliveHandler):
    """Reads every request (recording its token) but closes the connection instead of answering
    its third: what a client sees when a proxy dies after forwarding a request upstream."""

    tokens: list[str]

    def do_GET(self) -> None:
        self.tokens.append(token_of({"QUERY_STRING": self.path.partition("?")[2]}))
        self.seen = getattr(self, "seen", 0) + 1
        if self.seen == 3:
            self.close_connection = True
            return
        super().do_GET()


def test_a_retried_request_carries_a_token_of_its_own() -> None:
    # The request the server swallowed reached it all the same: sent again with the same token,
    # the app would see that token twice (which the probe reports as a leak).
    tokens: list[str] = []
    handler = type("Handler", (SwallowingHandler,), {"tokens": tokens, "connections": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        result = run_load(spec(server.server_address[1], requests=40, concurrency=2))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert_clean(result, 40)
    assert result.reconnects > 0
    assert len(tokens) > 40  # the swallowed requests, then their retries
    assert len(set(tokens)) == len(tokens)


def test_duration_bound(serve: ServeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver's clock jumps past the duration when the app receives request number `due`:
    # the run goes on until then, starts nothing after it, and finishes the requests in flight
    # (at most one per other user). How long that takes in real time is the machine's business:
    # a wall-clock bound here fails on a busy machine.
    import harness.load.driver

    hour_ns = 3600 * 10**9
    skew = [0]
    real_ns = time.perf_counter_ns
    monkeypatch.setattr(harness.load.driver, "_perf_ns", lambda: real_ns() + skew[0])
    due, users = 20, 4
    arrived: list[str] = []
    lock = threading.Lock()
    app = core_probe_app()
    inner = app.wsgi_app

    def counting(environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        with lock:
            arrived.append(token_of(environ))
            if len(arrived) == due:
                skew[0] = hour_ns
        return inner(environ, start_response)

    app.wsgi_app = counting
    server = serve(app)
    seen: list[tuple[int, int, int]] = []
    result = run_load(
        spec(server.port, duration=3600.0, concurrency=users, sleep_ms=1, timeout=7200.0),
        progress=lambda done, errors, leaks: seen.append((done, errors, leaks)),
    )
    assert due <= result.requests <= due + users - 1, arrived
    assert_clean(result, result.requests)
    assert len(arrived) == result.requests
    assert seen[-1] == (result.requests, 0, 0)


def test_count_and_duration_whichever_first(serve: ServeFactory) -> None:
    server = serve(core_probe_app())
    result = run_load(spec(server.port, requests=20, duration=30.0, concurrency=4))
    assert_clean(result, 20)


def test_tokens_are_unique_per_request(serve: ServeFactory) -> None:
    tokens: list[str] = []
    lock = threading.Lock()

    def make(token: str) -> bytes:
        with lock:
            tokens.append(token)
        return probe_body(token)

    server = serve(json_app(make))
    result = run_load(spec(server.port, requests=150, concurrency=6, connections="fresh"))
    assert_clean(result, 150)
    assert len(tokens) == 150
    assert len(set(tokens)) == 150


def test_chunked_responses_are_read(serve: ServeFactory) -> None:
    def app(environ: dict[str, t.Any], start_response: t.Any) -> Iterator[bytes]:
        data = probe_body(token_of(environ))
        start_response("200 OK", [("Content-Type", "application/json")])
        # No Content-Length on HTTP/1.1: the dev server sends it chunked.
        yield data[:10]
        yield data[10:]

    server = serve(app)
    result = run_load(spec(server.port, requests=50, concurrency=2))
    assert_clean(result, 50)


# -- errors are not leaks --------------------------------------------------------------------


def test_server_errors_are_errors_not_leaks(serve: ServeFactory) -> None:
    import core

    app = core.App("broken")

    @app.route("/_ctxbench/probe")
    def fail() -> t.Any:
        raise RuntimeError("boom")

    server = serve(app)
    result = run_load(spec(server.port, requests=40, concurrency=4))
    assert result.requests == 40
    assert result.errors == 40
    assert result.error_kinds == {"non-2xx": 40}
    assert result.statuses == {500: 40}
    assert result.leaks == 0
    assert result.latencies_ms == []


def test_closed_port_is_refused(closed_port: int) -> None:
    result = run_load(spec(closed_port, requests=25, concurrency=3))
    assert result.requests == 25
    assert result.error_kinds == {"refused": 25}
    assert result.errors == 25
    assert result.leaks == 0
    assert result.rps == 0


class Gone(Exception):
    """What a caller's progress callback raises once it knows the server is gone."""


def test_a_refused_connection_is_reported_at_once_and_counted_once_per_user(
    closed_port: int,
) -> None:
    """A refused user tried again at once, in a loop that never reached the progress report:
    a server gone for the last 2.5 s of a 3 s load was counted as ~40,000 refused requests, and
    the runner, which ends a load whose server is gone at a progress report, heard of it only
    when the load ended (seen killing a --target's gunicorn mid-run: 33,276 requests and 31,692
    errors in a cell whose server was gone after a second)."""
    reports: list[tuple[float, int, int]] = []
    started = time.monotonic()

    def progress(requests: int, errors: int, leaks: int) -> None:
        reports.append((time.monotonic() - started, requests, errors))
        if errors:
            raise Gone  # as the runner does once the server's port refuses connections

    with pytest.raises(Gone):
        run_load(spec(closed_port, duration=3.0, concurrency=4), progress)
    when, requests, errors = reports[-1]
    assert (requests, errors) == (4, 4), reports  # each user's refused connection, once
    assert when < 1.0, reports  # at once, not at the next half-second report


def test_a_refused_user_waits_a_tick_before_it_tries_again(closed_port: int) -> None:
    # Without a caller to end it, the load goes on, each user trying again once a tick (20 ms):
    # about 4 x 15 requests in 0.3 s, where it made some 12,000.
    result = run_load(spec(closed_port, duration=0.3, concurrency=4))
    assert 4 <= result.requests <= 4 * (0.3 / 0.02 + 2), result.requests
    assert result.error_kinds == {"refused": result.requests}


def test_not_a_probe_is_a_protocol_error(serve: ServeFactory) -> None:
    server = serve(json_app(lambda token: b'{"hello": "world"}'))
    result = run_load(spec(server.port, requests=30, concurrency=3))
    assert result.error_kinds == {"protocol": 30}
    assert result.leaks == 0


def test_slow_server_times_out(serve: ServeFactory) -> None:
    def slow(token: str) -> bytes:
        time.sleep(0.6)
        return probe_body(token)

    server = serve(json_app(slow))
    result = run_load(spec(server.port, requests=3, concurrency=3, timeout=0.2))
    assert result.requests == 3
    assert result.error_kinds == {"timeout": 3}


@pytest.fixture
def rude_server() -> Iterator[int]:
    """A TCP server that accepts each connection and closes it without answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.recv(4096)
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("connections", ["keepalive", "fresh"])
def test_connection_closed_without_answer_is_reset(rude_server: int, connections: str) -> None:
    result = run_load(spec(rude_server, requests=12, concurrency=2, connections=connections))
    assert result.requests == 12
    assert result.error_kinds == {"reset": 12}
    assert result.leaks == 0


def _serve_each(answer: Callable[[socket.socket], None]) -> socket.socket:
    """A TCP listener on loopback that runs ``answer`` on each connection in a thread of its
    own, until the listener is closed (the caller closes it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def loop() -> None:
        with contextlib.suppress(OSError):  # closed by the caller
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener


@pytest.fixture
def flooding_server() -> Iterator[Callable[[bytes], int]]:
    """A TCP server that answers each request with ``head`` and then a body without end, until
    the client leaves; the factory returns its port."""
    listeners: list[socket.socket] = []

    def start(head: bytes) -> int:
        def answer(conn: socket.socket) -> None:
            piece = b"10000\r\n" + b"x" * 0x10000 + b"\r\n" if b"chunked" in head else b"x" * 65536
            with conn, contextlib.suppress(OSError):
                conn.recv(4096)
                conn.sendall(head)
                while True:
                    conn.sendall(piece)

        listeners.append(_serve_each(answer))
        return int(listeners[-1].getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", id="chunked"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n", id="100-GB"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", id="until-close"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="not-http"),
    ],
)
@pytest.mark.parametrize("connections", ["keepalive", "fresh"])
def test_a_body_without_end_is_an_http_error_not_a_memory_hog(
    flooding_server: Callable[[bytes], int], head: bytes, connections: str
) -> None:
    """A server that sends more than MAX_BODY is cut off at once: every byte of it was kept
    until the request timed out (200 MB in 5 s for 4 users, growing without bound). It is an
    ``http`` error, the server's or a proxy's doing, not a ``protocol`` one (a well-formed answer
    that is not the probe's, which the app's hooks give): both were ``protocol``, and ctxbench
    run --target told the user to let probe requests through the app's hooks."""
    port = flooding_server(head)
    result = run_load(spec(port, requests=4, concurrency=2, connections=connections, timeout=60))
    assert result.error_kinds == {"http": 4}


def _load_of_answers_in_parts(parts: Callable[[bytes], list[bytes]], pause_s: float) -> LoadResult:
    """3 probe requests on one kept-alive connection to a server that sends each answer as the
    ``parts`` of its probe body (head first), ``pause_s`` apart, so the driver reads it in parts."""

    def answer(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                token = data.split(b"token=", 1)[1].split(b" ", 1)[0].split(b"&", 1)[0].decode()
                for part in parts(probe_body(token)):
                    conn.sendall(part)
                    time.sleep(pause_s)

    listener = _serve_each(answer)
    try:
        port = int(listener.getsockname()[1])
        return run_load(spec(port, requests=3, concurrency=1, connections="keepalive"))
    finally:
        listener.close()


def test_a_chunked_body_that_arrives_a_few_chunks_at_a_time_is_decoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read decoded a chunked body again from its first chunk: quadratic in its chunks, a
    hostile server's one-byte chunks trickling in burnt the loop's CPU, every user's, for as
    long as the timeout let it. Each chunk is decoded once now."""
    decoded = [0]

    class Counting(http.Dechunker):
        def feed(self, data: bytes | bytearray) -> tuple[bytes, int] | None:
            before = len(self.parts)
            rv = super().feed(data)
            decoded[0] += len(self.parts) - before
            return rv

    monkeypatch.setattr(http, "Dechunker", Counting)
    monkeypatch.setattr(driver, "Dechunker", Counting)
    sizes: list[int] = []

    def chunked(body: bytes) -> list[bytes]:  # ten one-byte chunks at a time
        sizes.append(len(body))
        chunks = [b"1\r\n%c\r\n" % byte for byte in body] + [b"0\r\n\r\n"]
        parts = [b"".join(chunks[i : i + 10]) for i in range(0, len(chunks), 10)]
        return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", *parts]

    result = _load_of_answers_in_parts(chunked, pause_s=0.001)
    assert (result.requests, result.errors, result.leaks) == (3, 0, 0), result.error_kinds
    assert decoded[0] == sum(sizes), (decoded[0], sizes)  # every chunk once


def test_a_response_that_arrives_in_parts_is_appended_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read joined the response so far and the new part into a new bytes object: every
    byte was copied again at each read, quadratic in the reads, and a server trickling its body
    a few bytes at a time burnt the loop's CPU, every user's. The parts are appended in place to
    one buffer now: at most two buffers a response (its first part, then the one it grows in)."""
    stores = [0, 0]  # stores of a response's buffer: all of them, and those of a new object

    class Recording(driver._User):
        @property
        def buf(self) -> bytes | bytearray:
            return self._buf

        @buf.setter
        def buf(self, value: bytes | bytearray) -> None:
            if value:
                stores[0] += 1
                stores[1] += value is not self.__dict__.get("_buf")
            self._buf = value

    monkeypatch.setattr(driver, "_User", Recording)

    def in_20_parts(body: bytes) -> list[bytes]:
        step = -(-len(body) // 20)
        parts = [body[i : i + step] for i in range(0, len(body), step)]
        return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body), *parts]

    result = _load_of_answers_in_parts(in_20_parts, pause_s=0.002)
    assert (result.requests, result.errors, result.leaks) == (3, 0, 0), result.error_kinds
    assert stores[0] >= 3 * 5, stores  # the responses did come in parts
    assert stores[1] <= 3 * 2, stores  # not a new buffer at each part


@pytest.fixture
def early_hints_server() -> Iterator[int]:
    """A TCP server that answers each request on a kept-alive connection with a 100 Continue it
    was not asked for, a 103 Early Hints, then the probe's answer for the request's token."""

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                token = data.split(b"token=", 1)[1].split(b" ", 1)[0].split(b"&", 1)[0].decode()
                body = probe_body(token)
                conn.sendall(
                    b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    listener = _serve_each(answer)
    yield int(listener.getsockname()[1])
    listener.close()


def test_interim_responses_before_the_answer_are_skipped(early_hints_server: int) -> None:
    """RFC 9110 (15.2): a client reads any 1xx (but 101) before the final response. Each
    request that came after a 103 Early Hints was a protocol error."""
    result = run_load(spec(early_hints_server, requests=40, concurrency=4))
    assert_clean(result, 40)
    outcome = hostile.get("127.0.0.1", early_hints_server, "/_ctxbench/probe?token=abc-1")
    assert (outcome.kind, outcome.status) == ("answered", 200), outcome
    assert json.loads(outcome.body)["token"] == "abc-1"


def test_error_kinds_are_documented(serve: ServeFactory) -> None:
    assert set(ERROR_KINDS) >= {"refused", "reset", "timeout", "http", "non-2xx", "protocol"}


# -- leaks: the negative controls ------------------------------------------------------------


def test_leaking_app_is_reported(serve: ServeFactory) -> None:
    """A probe-like app that answers with the previous request's token: every answer but the
    first one it gives leaks, whatever the interleaving."""
    last: list[str | None] = [None]
    lock = threading.Lock()

    def make(token: str) -> bytes:
        with lock:
            previous, last[0] = last[0], token
        return probe_body(token, seen=previous or token)

    server = serve(json_app(make))
    n = 120
    result = run_load(spec(server.port, requests=n, concurrency=6, max_evidence=10))
    assert result.requests == n
    assert result.errors == 0
    assert result.leaky_requests == n - 1
    # Per leaky response: the echoed token plus one observation per phase.
    assert result.leaks == (n - 1) * (1 + len(PHASES))
    assert len(result.evidence) == 10
    ev = result.evidence[0]
    assert ev.mode == "werkzeug-threaded"
    assert ev.seen != ev.expected
    assert set(ev.unit._fields) == {"pid", "thread", "greenlet"}
    # Another request's token, and of the same run, even across loads: not 'carried by no
    # request of this run', which a value from outside it is.
    assert not any(carried_by_no_request(e.expected, e.seen) for e in result.evidence)
    again = run_load(spec(server.port, requests=2, concurrency=1, max_evidence=10))
    assert again.evidence and not any(
        carried_by_no_request(e.expected, e.seen) for e in again.evidence
    )
    assert carried_by_no_request(ev.expected, "zzzz-0-0")
    # Leaky answers are still answers: they are timed and counted in rps.
    assert len(result.latencies_ms) == n


def test_a_value_carried_by_no_request_of_the_run_is_told_apart() -> None:
    """A target that answered 'zzzz-0-0' (a forgery, or a cache of an earlier run) read as N
    leaks with nothing to say that no request of this run carried that value."""
    from harness.load.tokens import load_prefix

    first, second = load_prefix(), load_prefix()
    assert first != second and first.split("_")[0] == second.split("_")[0]
    mine = f"{first}-0-1"
    for seen in (f"{second}-3-4", f"{first}p1-0-9", f"{mine}-r"):  # loads, shards, retries
        assert not carried_by_no_request(mine, seen), seen
    for seen in ("zzzz-0-0", "00000000_1x0-0-1", ""):
        assert carried_by_no_request(mine, seen), seen
    # A token of results written before (8 hex digits, no session) or no token: not known.
    assert not carried_by_no_request("b88a687a-0-1", "zzzz-0-0")
    assert not carried_by_no_request(None, "zzzz-0-0")
    assert not carried_by_no_request(mine, None)


def test_leaks_of_the_framework_s_state_are_counted_apart_from_the_app_s(
    serve: ServeFactory,
) -> None:
    # Every answer leaks the app's own "user", one in ten the framework's "request" too: the
    # evidence kept (the first 5) holds the app's alone, so chaos blamed the app alone.
    answered = itertools.count(1)

    def make(token: str) -> bytes:
        doc = json.loads(probe_body(token))
        doc["obs"].append(["view", "user", "someone else"])
        if next(answered) % 10 == 0:
            doc["obs"][1][2] = "another token"
        return json.dumps(doc).encode()

    result = run_load(spec(serve(json_app(make)).port, requests=40, concurrency=1, max_evidence=5))
    assert (result.leaks, result.framework_leaks) == (44, 4)
    assert {e.name for e in result.evidence} == {"user"}


@pytest.fixture
def shared_global_storage() -> Iterator[None]:
    backends.install("shared-global")
    try:
        yield
    finally:
        backends.restore_default()


def test_shared_global_storage_leaks_under_overlap(
    serve: ServeFactory, shared_global_storage: None
) -> None:
    server = serve(core_probe_app())
    result = run_load(spec(server.port, requests=200, concurrency=8, sleep_ms=3))
    assert result.requests == 200
    assert result.leaks > 0
    assert result.leaky_requests > 0
    names = {e.name for e in result.evidence}
    assert names & {"request", "g", "token", "residue.request_context", "residue.app_context"}


# -- the spec is validated -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"host": "10.0.0.1"}, "loopback", id="private-ip"),
        pytest.param({"host": "example.com"}, "loopback", id="hostname"),
        pytest.param({"host": "0.0.0.0"}, "loopback", id="any"),
        pytest.param({"duration": None, "requests": None}, "needs a bound", id="unbounded"),
        pytest.param({"duration": 0}, "duration", id="zero-duration"),
        pytest.param({"duration": float("inf")}, "duration", id="inf-duration"),
        pytest.param({"requests": 0}, "requests", id="zero-requests"),
        pytest.param({"concurrency": 0}, "concurrency", id="zero-concurrency"),
        pytest.param({"connections": "pipelined"}, "connections", id="pattern"),
        pytest.param({"sleep_ms": -1}, "sleep_ms", id="sleep"),
        pytest.param({"timeout": 0}, "timeout", id="timeout"),
        pytest.param({"port": 70000}, "port", id="port"),
        pytest.param({"fail_phase": "lunch"}, "fail_phase", id="fail-phase"),
        pytest.param({"fail_fraction": 0.5}, "needs a fail_phase", id="fraction-alone"),
        pytest.param(
            {"fail_phase": "view", "fail_fraction": 1.5}, "fail_fraction", id="fraction-range"
        ),
    ],
)
def test_invalid_spec_is_refused(kw: dict[str, t.Any], match: str) -> None:
    kw.setdefault("requests", 1)
    with pytest.raises(ValueError, match=match):
        run_load(LoadSpec(**kw))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    LoadSpec(host=host, requests=1).validate()


# -- injected failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "outcome"),
    [("view", "500"), ("session", "500"), ("teardown_request", "200")],
)
@pytest.mark.parametrize("connections", ["keepalive", "fresh"])
def test_injected_failures_are_expected_errors_not_judged(
    serve: ServeFactory, phase: str, outcome: str, connections: str
) -> None:
    server = serve(core_probe_app())
    result = run_load(
        spec(
            server.port, requests=100, concurrency=4, connections=connections,
            fail_phase=phase, fail_fraction=0.2,
        )
    )  # fmt: skip
    assert result.requests == 100
    # Exactly a fifth of the requests, spread evenly; the correct core cleans up after each.
    assert result.injected == 20
    assert result.injected_outcomes == {outcome: 20}
    assert result.errors == 0, result.error_kinds
    assert result.leaks == 0, [str(e) for e in result.evidence[:3]]
    assert len(result.latencies_ms) == 80


def test_injected_failure_residue_is_caught_in_the_next_request() -> None:
    # An app that leaves a context pushed when a request fails: what a lifecycle mutant does.
    # A one-thread server, so the next request runs where the context was left.
    import core

    app = core.App("load_test_no_pop")
    install_probe(app)
    wsgi_app = app.wsgi_app

    def leave_pushed(environ: t.Any, start_response: t.Any) -> t.Any:
        if "fail=view" in environ.get("QUERY_STRING", ""):
            app.test_request_context("/left-behind").push()
        return wsgi_app(environ, start_response)

    app.wsgi_app = leave_pushed
    server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        result = run_load(
            spec(server.port, requests=40, concurrency=1, fail_phase="view", fail_fraction=0.25)
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert result.injected == 10
    assert result.leaky_requests >= 1
    assert {e.name for e in result.evidence} >= {"residue.request_context"}


# -- HTTP parsing ----------------------------------------------------------------------------


def test_parse_head() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\ncontent-length: 12")
    assert (head.status, head.length, head.close) == (200, 12, False)
    head = parse_head(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0")
    assert (head.status, head.length, head.close) == (503, 0, True)
    head = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 3")
    assert head.close
    head = parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3")
    assert not head.close
    with pytest.raises(HttpProtocolError):
        parse_head(b"SSH-2.0-OpenSSH")
    with pytest.raises(HttpProtocolError):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip")
    assert parse_head(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload").framing == 3
    with pytest.raises(HttpProtocolError):
        parse_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c")
    # Two Content-Lengths that differ leave the end unknown (RFC 9112, 6.3): the driver read
    # the first and checked the answer as if it were whole.
    with pytest.raises(HttpProtocolError, match="Content-Length given as"):
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 700\r\ncontent-length: 5")
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5").length == 5


def test_dechunk() -> None:
    data = b"HEAD\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: 1\r\n\r\n"
    start = data.index(b"\r\n\r\n") + 4
    assert dechunk(data, start) == (b"wikipedia", len(data))
    assert dechunk(data[:-2], start) is None
    assert dechunk(data[: start + 5], start) is None
    with pytest.raises(HttpProtocolError):
        dechunk(b"zz\r\n", 0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("size", [b"-6", b"-1", b"-0x1"])
def test_a_negative_chunk_size_is_a_protocol_error(size: bytes) -> None:
    # "-6" after a CRLF took the reader back to the start of its own line: the driver looped
    # there for ever, at 100% CPU and growing (1.7 GB in 2 minutes), past every timeout.
    data = b"HEAD\r\n\r\n" + size + b"\r\n"
    with pytest.raises(HttpProtocolError, match="bad chunk size"):
        dechunk(data, data.index(b"\r\n\r\n") + 4)


def test_extra_headers_reach_a_probe_behind_a_secret(serve: ServeFactory) -> None:
    import core

    app = core.App("load_test_secret")
    install_probe(app, secret="shared-secret")
    server = serve(app)
    locked = run_load(spec(server.port, requests=20))
    assert locked.errors == 20 and locked.error_kinds == {"non-2xx": 20}
    assert locked.statuses == {404: 20}
    opened = run_load(
        spec(server.port, requests=20, headers=(("X-Ctxbench-Probe-Secret", "shared-secret"),))
    )
    assert_clean(opened, 20)


def test_bad_extra_headers_are_refused() -> None:
    for headers in ((("Bad Name", "v"),), (("X-Ok", "a\r\nInjected: 1"),)):
        with pytest.raises(ValueError, match="bad request header"):
            spec(8000, requests=1, headers=headers).validate()
