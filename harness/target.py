"""A server ctxbench did not start: ``ctxbench run --target http://127.0.0.1:8080``.

The user's own stack (their nginx, their uWSGI ini, their gunicorn config file) serves an app
with :func:`harness.probe.install_probe` and ``CTXBENCH_PROBE=1``; ctxbench sends the same load
and reaches the same verdict as against its own servers, but it cannot know how the stack serves
a request, so the results record what it can see instead of an effective configuration: the URL,
the ``Server`` header, and the units the probe reported (see :mod:`harness.exercised`).

A target URL may end in the path prefix the app is served under
(``http://127.0.0.1:8080/api``: an nginx ``location /api/``, werkzeug's ``DispatcherMiddleware``
mounting the app at ``/api``, gunicorn with ``SCRIPT_NAME=/api``, uWSGI ``--mount /api=...``):
the probe is then requested at ``/api/_ctxbench/probe``
(:func:`harness.protocol.probe_path`), and the app under that prefix is the one checked.

The load driver only talks to the loopback interface; so does a target. A probe protected by a
shared secret (``CTXBENCH_PROBE_SECRET`` in the server's environment) is reached by setting the
same variable where ``ctxbench`` runs: the harness sends it in ``X-Ctxbench-Probe-Secret``.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import socket
import time
import typing as t
import urllib.parse
from dataclasses import dataclass

from harness.errors import UsageError
from harness.load.http import INTERIM, MAX_BODY, HttpProtocolError, parse_head
from harness.load.spec import loopback_host
from harness.probe import SECRET_ENV, SECRET_HEADER
from harness.protocol import STOPPED_HEADER, parse_mount, probe_path
from harness.servers._process import INSTALL_PROBE, why_not_answered
from harness.verdict import ProbeProtocolError, examine_probe_response, printable

__all__ = ["Target", "gone", "identify", "parse_target", "secret_headers"]


@dataclass(frozen=True)
class Target:
    """A running server to check, as the user named it and as it answered."""

    url: str
    host: str
    port: int
    #: The path prefix the app is served under (``"/api"``), ``""`` for the server's root.
    mount: str = ""
    #: The ``Server`` response header of a probe request (``None`` when it sent none).
    server: str | None = None
    #: The name of the app the probe is installed on.
    app: str | None = None


def parse_target(url: str) -> Target:
    """Check ``url`` (``http://127.0.0.1:PORT``, or ``http://127.0.0.1:PORT/PREFIX`` for an app
    served under a path prefix) and return it as a :class:`Target`."""
    example = "e.g. http://127.0.0.1:8080, or http://127.0.0.1:8080/api for an app under /api"
    bad = f"bad --target {url!r}: give the URL the app is served at, {example}"
    try:
        # Spaces around it, as a pasted or quoted URL has (urlsplit drops the leading ones).
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:  # e.g. the unclosed bracket of an IPv6 address
        raise UsageError(bad) from None
    if parts.scheme == "https":
        raise UsageError(
            f"bad --target {url!r}: ctxbench speaks plain HTTP to a server on this machine; give"
            " the port that serves HTTP (behind a TLS proxy, the app server's own port), e.g."
            " http://127.0.0.1:8080"
        )
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(bad)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError(f"bad --target {url!r}: no query, fragment or user name; {example}")
    try:
        mount = parse_mount(parts.path or "/")
    except ValueError as e:
        raise UsageError(
            f"bad --target {url!r}: its path is the prefix the app is served under, and {e}"
        ) from None
    mount = "" if mount == "/" else mount
    try:
        port = parts.port  # None when not given; ValueError when not a port number
    except ValueError:
        port = 0
    if port is None:
        port = 80
    if not 0 < port < 65536:
        raise UsageError(f"bad --target {url!r}: its port must be a number from 1 to 65535")
    try:
        host = loopback_host(parts.hostname)
    except ValueError:
        raise UsageError(
            f"--target {url!r} is not on this machine: ctxbench only sends load to the loopback"
            " interface (127.0.0.1, ::1 or localhost)"
        ) from None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Target(url=f"http://{netloc}{mount}", host=host, port=port, mount=mount)


def secret_headers() -> tuple[tuple[str, str], ...]:
    """The probe secret header to send, from ``CTXBENCH_PROBE_SECRET`` (none when unset).

    Raises :class:`UsageError` when the secret is not one line."""
    secret = os.environ.get(SECRET_ENV)
    if secret and any(c in secret for c in "\r\n"):
        raise UsageError(
            f"{SECRET_ENV} holds a line break, which no HTTP header can carry; set it to one"
            " line, here and in the server's environment"
        )
    return ((SECRET_HEADER, secret),) if secret else ()


def secret_hint() -> str:
    """What to check of the probe secret, after "start the server with CTXBENCH_PROBE=1": a
    probe behind a secret answers 404 to a request without it, as if it were not there."""
    if secret_headers():
        return f" and the same {SECRET_ENV} as here (a probe with another one answers 404)"
    return (
        f"; {SECRET_ENV} is not set here, and a probe with one answers 404 to a request without"
        " it: if the server sets one (gunicorn raw_env, uWSGI env =), set the same here"
    )


def identify(target: Target, timeout: float = 5.0) -> Target:
    """Send one probe request; return ``target`` with its ``Server`` header and app name.

    Raises :class:`UsageError` when nothing listens there or it does not answer as a probe.
    """
    path = probe_path(target.mount)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        # Header values in UTF-8, as the load driver sends them and the probe reads them.
        headers = {name: value.encode() for name, value in secret_headers()}
        conn.request("GET", f"{path}?token=ctxbench-target-check", headers=headers)
        # Read through a bound on the whole answer, not on each read: a server that sends a
        # byte at a time, or a body without end, is cut off all the same.
        raw = _Bounded(conn.sock, timeout)
        resp = http.client.HTTPResponse(raw, method="GET")  # type: ignore[arg-type]
        resp.begin()
        while 100 <= resp.status < 200 and resp.status != 101:  # 103 Early Hints, as the load
            resp.fp = None  # type: ignore[assignment]  # its reader goes on to the final answer
            resp = http.client.HTTPResponse(raw, method="GET")  # type: ignore[arg-type]
            resp.begin()
        unreadable = _unreadable_head(raw.received)
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise _TooLong
    except ConnectionRefusedError:
        raise UsageError(
            f"cannot reach --target {target.url}: connection refused, nothing listens on port"
            f" {target.port}; start the server, or give the port it listens on (its bind"
            " setting: gunicorn -b, uWSGI http-socket, waitress --listen)"
        ) from None
    except TimeoutError:
        raise UsageError(
            f"cannot reach --target {target.url}: no answer to one probe request within"
            f" {timeout:g} s; check that the server there is up and not stuck (its log)"
        ) from None
    except _TooLong:
        raise UsageError(
            f"--target {target.url} answered {path} with more than {MAX_BODY >> 20} MiB, where"
            " a probe answer is about 1 KB: no ctxbench probe there, or something in front of it"
            " answered in its place"
        ) from None
    except (http.client.HTTPException, ValueError) as e:
        # BadStatusLine('...'), LineTooLong; a ValueError is http.client reading -6 bytes for
        # a chunk size of '-6'.
        said = str(e)[:60]
        raise UsageError(
            f"--target {target.url} did not answer {path} in HTTP/1.x ({type(e).__name__}"
            f"{': ' + ascii(said) if said else ''}); give the port that serves the app in plain"
            " HTTP (not TLS, HTTP/2 alone or another protocol)"
        ) from None
    except OSError as e:
        raise UsageError(
            f"cannot reach --target {target.url}: {e.strerror or e}; check that the server"
            " there is up and speaks HTTP"
        ) from None
    finally:
        conn.close()
    hint = f"{INSTALL_PROBE} and start the server with CTXBENCH_PROBE=1{secret_hint()}"
    if unreadable is not None:
        # http.client reads what the load driver refuses (two Content-Lengths that differ: it
        # takes the first): each request of the load would be an error of kind http.
        raise UsageError(
            f"--target {target.url} answered {path} with a head the load cannot read"
            f" ({printable(unreadable)}), so every request would be an error (http): the"
            " server's doing, or a proxy's in front of it, not the app's; fix what sends it, or"
            " give --target the app server's own port"
        )
    if resp.getheader(STOPPED_HEADER) is not None:
        # The probe is there, and the app answered in its place (an auth hook's 401).
        raise UsageError(f"--target {target.url} {why_not_answered(resp, path)}")
    if resp.status != 200:
        raise UsageError(
            f"--target {target.url} answered {resp.status} to {path}: no ctxbench probe"
            f" there; {hint}{_mount_hint(target)}"
        )
    try:
        doc = json.loads(body)
        app = str(doc["app"]) if doc.get("token") == "ctxbench-target-check" else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        app = None
    if app is None:
        raise UsageError(
            f"--target {target.url} answered {path} with something that is not a probe"
            f" response; {hint}"
        )
    try:
        examine_probe_response("ctxbench-target-check", 200, body, mode="target")
    except ProbeProtocolError as e:  # an answer of the app's own, which the load cannot read
        raise UsageError(
            f"--target {target.url} answered {path} with a probe response that cannot be"
            f" checked ({e.reason}), so every request would be an error; {hint}"
        ) from None
    server = resp.getheader("Server")
    return dataclasses.replace(
        target, server=None if server is None else printable(server), app=printable(app)
    )


class _TooLong(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A socket's bytes as http.client reads them, all within ``timeout`` seconds and at most
    :data:`MAX_BODY` of them (and a head's worth)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + timeout
        self.left = MAX_BODY + 64 * 1024
        #: Every byte read, the response's head first.
        self.received = bytearray()
        self.reader: io.BufferedReader | None = None

    def makefile(self, mode: str) -> io.BufferedReader:
        # One reader for every response read here: an interim one's, then the final one's.
        if self.reader is None:
            self.reader = io.BufferedReader(self)
        return self.reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        wait = self.deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError
        if self.left <= 0:
            raise _TooLong
        self.sock.settimeout(wait)
        n = self.sock.recv_into(memoryview(buffer)[: self.left])
        self.left -= n
        self.received += memoryview(buffer)[:n]
        return n


def _unreadable_head(received: bytes | bytearray) -> str | None:
    """Why the load driver would refuse the response head at the start of ``received``
    (:func:`harness.load.http.parse_head`, past any interim 1xx, as the driver reads), or
    ``None``."""
    start = 0
    while (end := received.find(b"\r\n\r\n", start)) >= 0:
        try:
            head = parse_head(bytes(received[start:end]))
        except HttpProtocolError as e:
            return str(e)
        if head.framing != INTERIM:
            return None
        start = end + 4
    # http.client read a head that ends in bare LFs; the driver waits for CRLF CRLF.
    return "no CRLF CRLF ends it: a line ended by a bare LF"


def _mount_hint(target: Target) -> str:
    # A 404 at the root of a server whose app is mounted under a prefix (an nginx location, a
    # dispatcher, SCRIPT_NAME) is the usual way to get here.
    if target.mount:
        return (
            f" (is the app served under {target.mount}? the probe must be installed on the app"
            f" that serves {target.url}/)"
        )
    return (
        "; if the app is served under a path prefix (an nginx location, a dispatcher,"
        f" SCRIPT_NAME), add it to the URL: --target {target.url}/api"
    )


def gone(host: str, port: int, url: str, timeout: float = 1.0) -> str | None:
    """Why the target at ``host:port`` is no longer there (it refuses a new connection: nothing
    listens), or ``None``. The runner asks about twice a second during a load, as it asks a
    server it started; a slow accept (a full backlog drops the handshake, it does not refuse it)
    is not taken for a gone server."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        # Followed by "during the run 1/3 of the keepalive cell" (the runner's died()).
        return (
            f"nothing listens on port {port} of the target {url} any more: it refused a new"
            " connection"
        )
    except OSError:  # timed out, or the network said something else: not known to be gone
        return None
