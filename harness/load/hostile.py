"""Misbehaving clients: requests abandoned half-sent or half-read, and slow senders and readers.

Design note: these clients are deliberately simple and slow, so they live apart from the load
driver's hot loop (:mod:`harness.load.driver`). Each call opens blocking sockets in the calling
thread, does one thing to one request and returns an :class:`Outcome`; none of them raises on a
network failure (the failure is the outcome). :class:`HostileLoad` runs one of them over and over
from a few background threads, bounded in count and time, next to a normal measured load, and
counts every outcome, so nothing a hostile client sent can vanish from the counts.

The clients only talk to the loopback interface (:func:`harness.load.spec.loopback_host`).

Typical uses::

    # a streamed response abandoned after its first byte of body
    outcome = abort_mid_body("127.0.0.1", port, "/_ctxbench/probe/stream?token=t1&chunks=200")
    outcome.kind  # "aborted" (or an error kind, when the server failed first)

    # 2 users abandoning streamed bodies in the background while the driver measures
    with HostileLoad(lambda seq: abort_mid_body(host, port, stream_target(f"ab-{seq}")),
                     users=2, duration=3.0) as hostile:
        result = run_load(spec)
    hostile.counts  # {"aborted": 61}
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
import struct
import threading
import time
import typing as t
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from .http import (
    CHUNKED,
    INTERIM,
    LENGTH,
    MAX_BODY,
    Dechunker,
    HttpProtocolError,
    ResponseHead,
    parse_head,
)
from .spec import loopback_host

__all__ = [
    "OUTCOME_KINDS",
    "Connection",
    "HostileLoad",
    "Outcome",
    "abort_mid_body",
    "abort_mid_request",
    "by_status",
    "get",
    "slow_read",
    "slow_send",
]

#: What an :class:`Outcome` can be: a whole response (``answered``, whatever its status), a
#: request the client abandoned on purpose (``aborted``), or how it failed, in the driver's words
#: (:data:`harness.load.spec.ERROR_KINDS`: ``http``, an answer that is not HTTP/1.x these clients
#: can read). :func:`by_status` adds ``5xx`` and ``other-status`` for a whole response that is
#: not a 2xx, and the faults' judge ``protocol`` for a 2xx one that is not a probe response.
OUTCOME_KINDS = (
    "answered", "aborted", "reset", "refused", "timeout", "http", "protocol", "os-error", "5xx",
    "other-status",
)  # fmt: skip

_RECV = 64 * 1024
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    """What became of one request: see :data:`OUTCOME_KINDS`.

    ``status`` is the HTTP status when a response head arrived (also for an abandoned body),
    ``body`` the body when all of it arrived, ``detail`` a few words on a failure.
    """

    kind: str
    status: int | None = None
    body: bytes = b""
    detail: str = ""

    @property
    def answered(self) -> bool:
        return self.kind == "answered"


def by_status(outcome: Outcome) -> Outcome:
    """``outcome`` with a whole response that is not a 2xx turned into an error kind: ``5xx``
    or ``other-status`` (the status is kept)."""
    status = outcome.status or 0
    if outcome.kind != "answered" or 200 <= status < 300:
        return outcome
    return Outcome("5xx" if status >= 500 else "other-status", status, outcome.body)


class _Failed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


def _kind_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOTCONN, errno.EPIPE):
        return "reset"
    return "os-error"


def _failed(exc: _Failed | OSError) -> Outcome:
    """How a request failed: the reader's own kind, or what the socket error means."""
    if isinstance(exc, _Failed):
        return Outcome(exc.kind, detail=exc.detail)
    return Outcome(_kind_of(exc), detail=str(exc))


def _request_bytes(target: str, netloc: str, *, close: bool, version: str = "1.1") -> bytes:
    if not target.startswith("/"):
        raise ValueError(f"target must be a path starting with '/', got {target!r}.")
    connection = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/{version}\r\nHost: {netloc}\r\n{connection}\r\n".encode()


class Connection:
    """One blocking HTTP/1.1 connection to ``host:port`` that reads one whole response per request.

    ``request(target)`` sends a GET and returns its :class:`Outcome`; the connection is kept for
    the next request unless the server closes it. A request is sent once: a failure, even on a
    kept connection the server had closed, is its outcome (a resent request would carry the
    same token). Every socket operation is bounded by ``timeout`` seconds. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = loopback_host(host)
        self.port = port
        self.timeout = timeout
        self.netloc = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        self.sock: socket.socket | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def open(self, *, rcvbuf: int | None = None) -> socket.socket:
        """Connect now (if not connected) and return the socket; raises ``OSError``."""
        if self.sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if rcvbuf is not None:  # before connect, so the window is small from the start
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.connect((self.host, self.port))
            except BaseException:
                sock.close()
                raise
            self.sock = sock
        return self.sock

    def close(self, *, reset: bool = False) -> None:
        """Close the connection; ``reset=True`` sends a TCP RST instead of a FIN."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        if reset:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_head(self, buf: bytearray) -> tuple[ResponseHead, int]:
        """Receive into ``buf`` until a whole response head is there; return it and where the
        body starts. Raises :class:`_Failed`."""
        sock = t.cast(socket.socket, self.sock)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                try:
                    head = parse_head(bytes(buf[:end]))
                except HttpProtocolError as exc:
                    raise _Failed("http", str(exc)) from None
                if head.framing != INTERIM:
                    return head, end + 4
                del buf[: end + 4]  # 103 Early Hints: the final response follows
                continue
            if len(buf) > _MAX_HEAD:
                raise _Failed("http", "response head too long")
            data = sock.recv(_RECV)
            if not data:
                raise _Failed("reset", "closed before a response head")
            buf += data

    def read_body(self, buf: bytearray, head: ResponseHead, start: int) -> bytes:
        """Receive into ``buf`` until the whole body is there and return it; at most
        :data:`MAX_BODY` bytes of it, as the driver reads. Raises :class:`_Failed`."""
        sock = t.cast(socket.socket, self.sock)
        if head.framing == LENGTH and head.length > MAX_BODY:
            raise _Failed("http", f"Content-Length {head.length} is over {MAX_BODY} bytes")
        chunks = Dechunker(start)
        while True:
            if head.framing == LENGTH:
                if len(buf) >= start + head.length:
                    return bytes(buf[start : start + head.length])
            elif head.framing == CHUNKED:
                try:
                    decoded = chunks.feed(buf)
                except HttpProtocolError as exc:
                    raise _Failed("http", str(exc)) from None
                if decoded is not None:
                    return decoded[0]
            if len(buf) - start > MAX_BODY:  # a chunked body, or one until close, without end
                raise _Failed("http", f"a body of more than {MAX_BODY} bytes")
            data = sock.recv(_RECV)
            if not data:
                if head.framing not in (LENGTH, CHUNKED):
                    return bytes(buf[start:])
                raise _Failed("reset", "closed in the middle of the body")
            buf += data

    def answer(self, buf: bytearray) -> Outcome:
        """Read the whole response that starts in ``buf``: ``answered`` with its body."""
        head, start = self.read_head(buf)
        return Outcome("answered", head.status, self.read_body(buf, head, start))

    # -- one request ---------------------------------------------------------------------------

    def request(self, target: str, *, close: bool = False) -> Outcome:
        """Send ``GET target`` and read its whole response; never raises on a network failure."""
        data = _request_bytes(target, self.netloc, close=close)
        try:
            sock = self.open()
            sock.sendall(data)
            buf = bytearray()
            head, start = self.read_head(buf)
            body = self.read_body(buf, head, start)
        except (_Failed, OSError) as exc:
            self.close()
            return _failed(exc)
        if close or head.close:
            self.close()
        return Outcome("answered", head.status, body)


def get(host: str, port: int, target: str, *, timeout: float = 10.0) -> Outcome:
    """One ordinary request on a new connection: the well-behaved baseline."""
    with Connection(host, port, timeout=timeout) as conn:
        return conn.request(target, close=True)


def abort_mid_request(
    host: str, port: int, target: str, *, sent_fraction: float = 0.5, timeout: float = 10.0
) -> Outcome:
    """Send the first ``sent_fraction`` of a request head, then close the connection (a FIN).

    The server is left reading a request that never completes. ``aborted`` when the bytes were
    sent, else how connecting or sending failed.
    """
    if not 0.0 < sent_fraction < 1.0:
        raise ValueError(f"sent_fraction must be in (0, 1), got {sent_fraction!r}.")
    conn = Connection(host, port, timeout=timeout)
    data = _request_bytes(target, conn.netloc, close=False)
    try:
        conn.open().sendall(data[: max(1, int(len(data) * sent_fraction))])
    except OSError as exc:
        return Outcome(_kind_of(exc), detail=str(exc))
    finally:
        conn.close()
    return Outcome("aborted")


def abort_mid_body(
    host: str,
    port: int,
    target: str,
    *,
    after_bytes: int = 1,
    reset: bool = False,
    timeout: float = 10.0,
) -> Outcome:
    """Send a whole request, read the response head and ``after_bytes`` of its body, then close.

    Aimed at a streamed response (``stream_with_context``): the server is still producing the
    body when the client goes away, and finds out only when it writes the next chunk.
    ``reset=True`` closes with a TCP RST instead of a FIN. The outcome is ``aborted`` (with the
    status) when the client left as planned, ``answered`` when the whole body arrived before
    ``after_bytes`` did (a body shorter than that), else how the request failed.
    """
    if after_bytes < 0:
        raise ValueError(f"after_bytes must be >= 0, got {after_bytes!r}.")
    conn = Connection(host, port, timeout=timeout)
    try:
        sock = conn.open()
        sock.sendall(_request_bytes(target, conn.netloc, close=True))
        buf = bytearray()
        head, start = conn.read_head(buf)
        while len(buf) - start < after_bytes:
            data = sock.recv(_RECV)
            if not data:
                body = bytes(buf[start:])
                if head.framing == LENGTH and len(body) == head.length:
                    return Outcome("answered", head.status, body)
                return Outcome("reset", head.status, detail="closed before the abort point")
            buf += data
        return Outcome("aborted", head.status)
    except (_Failed, OSError) as exc:
        return _failed(exc)
    finally:
        conn.close(reset=reset)


def slow_send(
    host: str, port: int, target: str, *, seconds: float = 1.0, pieces: int = 8,
    timeout: float = 10.0,
) -> Outcome:  # fmt: skip
    """Send a request in ``pieces`` spread over ``seconds``, then read the whole response.

    The server is left holding a connection whose request trickles in (what a client on a bad
    network, or a slowloris, does); a worker that serves one connection at a time is tied up
    for those seconds.
    """
    if pieces < 1 or seconds < 0:
        raise ValueError(f"need pieces >= 1 and seconds >= 0, got {pieces!r}, {seconds!r}.")
    conn = Connection(host, port, timeout=timeout)
    data = _request_bytes(target, conn.netloc, close=True)
    step = max(1, -(-len(data) // pieces))
    pause = seconds / max(pieces - 1, 1)
    try:
        sock = conn.open()
        for i in range(0, len(data), step):
            if i:
                time.sleep(pause)  # the client's pace is the fault itself
            sock.sendall(data[i : i + step])
        buf = bytearray()
        return conn.answer(buf)
    except (_Failed, OSError) as exc:
        return _failed(exc)
    finally:
        conn.close()


def slow_read(
    host: str,
    port: int,
    target: str,
    *,
    read_size: int = 512,
    pause_s: float = 0.01,
    max_seconds: float = 2.0,
    timeout: float = 10.0,
    http10: bool = False,
) -> Outcome:
    """Send a request, then read its response ``read_size`` bytes at a time, ``pause_s`` apart.

    The receive buffer is made small, so a long (streamed) response fills it and the server's
    writes block. Bounded: after ``max_seconds`` the client reads the rest at full speed. The
    outcome is ``answered`` with the whole body, or how the request failed. ``http10`` sends
    an HTTP/1.0 request, for a server that keeps the connection whatever ``Connection: close``
    says and so ends a body without a length only when the connection times out.
    """
    conn = Connection(host, port, timeout=timeout)
    deadline = time.monotonic() + max_seconds
    try:
        sock = conn.open(rcvbuf=4096)
        version = "1.0" if http10 else "1.1"
        sock.sendall(_request_bytes(target, conn.netloc, close=True, version=version))
        buf = bytearray()
        while time.monotonic() < deadline:
            data = sock.recv(read_size)
            if not data:
                break
            buf += data
            time.sleep(pause_s)  # the client's pace is the fault itself
        return conn.answer(buf)
    except (_Failed, OSError) as exc:
        return _failed(exc)
    finally:
        conn.close()


Action = Callable[[int], Outcome]


class HostileLoad:
    """Run ``action(seq)`` over and over from ``users`` background threads, and count outcomes.

    Bounded by ``requests`` (a total count of calls) and/or ``duration`` seconds, whichever ends
    first; at least one is required. ``seq`` numbers the calls from 1 (use it in tokens). Use it
    as a context manager around the measured load: it starts on entry and is waited for on exit
    (each call is bounded by its own timeout). ``sent`` counts the calls started, ``counts`` the
    outcomes by kind; an action that raises is counted under ``"harness-error"`` with the
    exception kept in ``errors``, so ``sum(counts.values()) == sent`` once it is done.
    ``outcomes`` keeps every outcome (for checking bodies) unless ``keep=False``.
    """

    def __init__(
        self,
        action: Action,
        *,
        users: int = 1,
        requests: int | None = None,
        duration: float | None = None,
        keep: bool = True,
    ) -> None:
        if users < 1:
            raise ValueError(f"users must be >= 1, got {users!r}.")
        if requests is None and duration is None:
            raise ValueError("HostileLoad needs a bound: requests, duration, or both.")
        self.action = action
        self.users = users
        self.requests = requests
        self.duration = duration
        self.keep = keep
        self.sent = 0
        self.counts: Counter[str] = Counter()
        self.outcomes: list[Outcome] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    def _next(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.requests is not None and self.sent >= self.requests):
                return None
            if self.duration is not None and time.monotonic() >= self._deadline:
                return None
            self.sent += 1
            return next(self._seq)

    def _user(self) -> None:
        while (seq := self._next()) is not None:
            try:
                outcome = self.action(seq)
            except Exception as exc:  # a bug in the action: counted, never lost
                with self._lock:
                    self.counts["harness-error"] += 1
                    self.errors.append(exc)
                continue
            with self._lock:
                self.counts[outcome.kind] += 1
                if self.keep:
                    self.outcomes.append(outcome)

    def start(self) -> HostileLoad:
        self._deadline = time.monotonic() + (self.duration or 0.0)
        for i in range(self.users):
            thread = threading.Thread(target=self._user, name=f"ctxbench-hostile-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """Start no new call; wait for the calls in flight."""
        self._stop.set()
        self.join()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> HostileLoad:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._stop.set()
        self.join()
