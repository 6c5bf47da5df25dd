"""harness.load.hostile: misbehaving clients against an in-process server, and the probe's
streamed route they aim at.

The server is werkzeug's threaded server in a daemon thread of this process, stopped by the
fixture; outcomes are asserted in the main thread.
"""

from __future__ import annotations

import json
import socket
import threading
import typing as t
from collections.abc import Iterator

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

import core
from harness.load import hostile
from harness.load.http import MAX_BODY
from harness.probe import install_probe
from harness.probe.stream import STREAM_PATH, parse_stream_query, read_chunks


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: t.Any) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    app = core.App("hostile_test")
    app.secret_key = "k"
    install_probe(app)
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_stream_route_streams_the_requests_token_in_every_chunk(port: int) -> None:
    outcome = hostile.get("127.0.0.1", port, f"{STREAM_PATH}?token=abc&chunks=5&size=200")
    assert outcome.kind == "answered" and outcome.status == 200, outcome
    chunks = read_chunks(outcome.body)
    assert [c["i"] for c in chunks] == [0, 1, 2, 3, 4]
    assert all(c["request"] == "abc" and c["g"] == "abc" for c in chunks), chunks
    assert all(len(line) == 200 for line in outcome.body.splitlines(keepends=True))


def test_stream_route_rejects_bad_parameters(port: int) -> None:
    for query in ("token=a&chunks=0", "token=bad!", "chunks=2", "token=a&size=x"):
        outcome = hostile.get("127.0.0.1", port, f"{STREAM_PATH}?{query}")
        assert outcome.status == 400, (query, outcome)
    with pytest.raises(ValueError, match="chunk_ms"):
        parse_stream_query({"token": "a", "chunk_ms": "nan"})


def test_abort_mid_body_leaves_after_the_head(port: int) -> None:
    outcome = hostile.abort_mid_body(
        "127.0.0.1", port, f"{STREAM_PATH}?token=a&chunks=1000", after_bytes=10, reset=True
    )
    assert (outcome.kind, outcome.status) == ("aborted", 200), outcome
    # A body shorter than the abort point is simply answered.
    short = hostile.abort_mid_body(
        "127.0.0.1", port, "/_ctxbench/probe?token=b", after_bytes=1_000_000
    )
    assert short.kind == "answered" and json.loads(short.body)["token"] == "b", short


def test_abort_mid_request_and_the_server_goes_on(port: int) -> None:
    assert hostile.abort_mid_request("127.0.0.1", port, "/_ctxbench/probe?token=c").kind == (
        "aborted"
    )
    outcome = hostile.get("127.0.0.1", port, "/_ctxbench/probe?token=d")
    assert outcome.status == 200 and json.loads(outcome.body)["token"] == "d"


def test_slow_send_and_slow_read_get_whole_responses(port: int) -> None:
    sent = hostile.slow_send("127.0.0.1", port, "/_ctxbench/probe?token=e", seconds=0.1)
    assert sent.kind == "answered" and json.loads(sent.body)["token"] == "e", sent
    read = hostile.slow_read(
        "127.0.0.1", port, f"{STREAM_PATH}?token=f&chunks=200", read_size=4096, max_seconds=0.2
    )
    assert read.kind == "answered" and len(read_chunks(read.body)) == 200, read.kind


def test_connection_reuses_one_socket_for_several_requests(port: int) -> None:
    with hostile.Connection("127.0.0.1", port, timeout=5) as conn:
        first = conn.request("/_ctxbench/probe?token=g1")
        second = conn.request("/_ctxbench/probe?token=g2")
    assert (first.status, second.status) == (200, 200)
    assert json.loads(second.body)["token"] == "g2"


@pytest.fixture
def closes_after_one() -> Iterator[tuple[int, list[bytes]]]:
    """A server that answers one request per connection as if it kept the connection alive,
    then closes it (an idle keep-alive connection closed by the server); records requests."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    received.append(data.split(b"\r\n", 1)[0])
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    stop.set()
    thread.join(timeout=10)
    listener.close()


def test_a_kept_connection_the_server_closed_is_a_reset_not_a_resent_request(
    closes_after_one: tuple[int, list[bytes]],
) -> None:
    port, received = closes_after_one
    with hostile.Connection("127.0.0.1", port, timeout=5) as conn:
        first = conn.request("/one")
        second = conn.request("/two")
    assert first.kind == "answered" and first.body == b"ok"
    assert second.kind == "reset", second
    assert received == [b"GET /one HTTP/1.1"]  # /two was sent once, to the closed connection


def test_refused_and_unroutable_are_outcomes_not_exceptions(closed_port: int) -> None:
    assert hostile.get("127.0.0.1", closed_port, "/").kind == "refused"
    with pytest.raises(ValueError, match="loopback"):
        hostile.Connection("192.0.2.1", 80)


def test_hostile_load_counts_every_call(port: int) -> None:
    def action(seq: int) -> hostile.Outcome:
        if seq % 5 == 0:
            raise RuntimeError("a broken action")
        return hostile.abort_mid_body("127.0.0.1", port, f"{STREAM_PATH}?token=h{seq}&chunks=50")

    with hostile.HostileLoad(action, users=3, requests=40) as load:
        pass
    assert load.sent == 40
    assert sum(load.counts.values()) == 40, load.counts
    assert load.counts["harness-error"] == 8 and len(load.errors) == 8
    assert load.counts["aborted"] == 32, load.counts
    with pytest.raises(ValueError, match="bound"):
        hostile.HostileLoad(action)


class _Dribble:
    """A connected socket whose response arrives ``step`` bytes per ``recv``, then closes."""

    def __init__(self, data: bytes, step: int = 1 << 16) -> None:
        self.data, self.step, self.at = data, step, 0

    def sendall(self, data: bytes) -> None:
        pass

    def recv(self, size: int) -> bytes:
        piece = self.data[self.at : self.at + min(size, self.step)]
        self.at += len(piece)
        return piece

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        pytest.param(b"Content-Length: %d" % (MAX_BODY + 1), b"x", id="length"),
        pytest.param(b"Transfer-Encoding: chunked", b"1\r\nx\r\n" * (MAX_BODY // 5), id="chunked"),
        pytest.param(b"Connection: close", b"x" * (MAX_BODY + 1), id="until-close"),
        pytest.param(b"Transfer-Encoding: chunked", b"-6\r\n", id="bad-chunk"),
    ],
)
def test_an_answer_too_long_or_not_http_is_an_http_error(framing: bytes, body: bytes) -> None:
    # The driver stops at MAX_BODY; these clients read any body whole, into memory. An answer
    # that is not HTTP/1.x is an error of the driver's kind "http"; it was "protocol", the
    # driver's word for a 2xx answer that is not a probe response.
    conn = hostile.Connection("127.0.0.1", 9)
    conn.sock = t.cast(
        socket.socket, _Dribble(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n" + body)
    )
    outcome = conn.request("/")
    assert outcome.kind == "http", outcome


def test_a_chunked_body_that_arrives_a_chunk_at_a_time_is_decoded_once() -> None:
    # Every read decoded the body from its first chunk again: quadratic in its chunks.
    class Counted(bytearray):
        work = 0  # bytes looked at by find() and copied by bytes()

        def find(self, sub: t.Any, start: t.Any = 0, *end: t.Any) -> int:
            rv = super().find(sub, start, *end)
            self.work += (rv if rv >= 0 else len(self)) - start
            return rv

        def __bytes__(self) -> bytes:
            self.work += len(self)
            return bytes(memoryview(self))

    chunks = b"1\r\nx\r\n" * 2000 + b"0\r\n\r\n"
    conn = hostile.Connection("127.0.0.1", 9)
    conn.sock = t.cast(socket.socket, _Dribble(chunks, step=6))
    buf = Counted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    outcome = conn.answer(buf)
    assert outcome.body == b"x" * 2000
    assert buf.work < 4 * len(buf), buf.work
