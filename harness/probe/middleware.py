"""The probe's WSGI middleware: trusted token in, teardown observations spliced out.

Design note: the middleware wraps ``app.wsgi_app`` and runs in whatever thread or greenlet the
server calls the app from (a gunicorn sync worker's main thread, a gthread pool thread, a gevent
greenlet per connection, a werkzeug dev-server thread per connection). For a probe request it
reads the token from the WSGI environ, *before* the framework pushes any context, and keeps it in
the probe's own ``ContextVar`` (see :mod:`harness.probe.state`), which it resets by token when the
call returns; nothing of one request survives into the next one served by the same thread or
greenlet. It then records the ``entry`` residue: any request or app context the framework shows
at this point was left by another request.

Teardown hooks run after the view has built the body. To carry their observations in the same
response, the middleware holds back ``start_response``, drains the app's iterable (closing it,
which is when a lazy framework would tear down), splices the late observations into the JSON
``obs`` array and sends the final ``Content-Length``. A phase that never ran for a request the
view answered is recorded as ``[phase, "skipped", "<did not run>"]``, which the verdict reports
as a leak. A probe request the view never answered (the app's own ``before_request`` hook
returned a 401 or a redirect) gets :data:`~harness.protocol.STOPPED_HEADER` with the last phase
it reached. Requests to any other path pass straight
through, untouched and unbuffered.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import typing as t
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from .frameworks import Framework

if t.TYPE_CHECKING:
    from _typeshed import OptExcInfo
from harness.protocol import FAIL_PHASES, MAX_SLEEP_MS, PHASES, PROBE_PATH, STOPPED_HEADER

from .state import ProbeState, RecentTokens, _cv_probe, recent_tokens

__all__ = [
    "SECRET_HEADER",
    "SEEN_KEY",
    "STREAM_PATH",
    "ProbeMiddleware",
    "ProbeQuery",
    "parse_probe_query",
]

#: The probe's streamed route (see :mod:`harness.probe.stream`): passed through unbuffered, but
#: behind the same secret.
STREAM_PATH = "/_ctxbench/probe/stream"
#: The request header that must carry the shared secret when the probe has one.
SECRET_HEADER = "X-Ctxbench-Probe-Secret"
_SECRET_ENVIRON_KEY = "HTTP_" + SECRET_HEADER.upper().replace("-", "_")

#: Set in the WSGI environ of every probe request the middleware handles, so that a wrapper in
#: front of the app (:class:`harness.probe.locate.InFront`) can tell an answer the probe made
#: from one a middleware in front of it made in its place.
SEEN_KEY = "ctxbench.probe.seen"

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_json_encode = json.JSONEncoder(separators=(",", ":")).encode


class ProbeQuery(t.NamedTuple):
    """A parsed probe query: the token, how long the view sleeps, where the request fails."""

    token: str
    sleep_s: float
    #: One of :data:`~harness.protocol.FAIL_PHASES`, or ``None`` for a request that succeeds.
    fail: str | None = None


def parse_probe_query(query: str) -> ProbeQuery:
    """Return the :class:`ProbeQuery` of a probe query string.

    ``token=<T>`` is required; ``sleep_ms=<ms>`` and ``fail=<phase>`` are optional. Raises
    ``ValueError`` with a message for the client when the token is missing or malformed,
    ``sleep_ms`` is not a number in ``[0, 60000]`` or ``fail`` names no phase it can fail at.
    """
    token: str | None = None
    sleep_ms = 0.0
    fail: str | None = None
    for part in query.split("&"):
        if part.startswith("token="):
            token = part[6:]
        elif part.startswith("sleep_ms="):
            raw = part[9:]
            try:
                sleep_ms = float(raw)
            except ValueError:
                raise ValueError(
                    f"sleep_ms must be a number of milliseconds, got {raw!r}."
                ) from None
            if not (math.isfinite(sleep_ms) and 0.0 <= sleep_ms <= MAX_SLEEP_MS):
                raise ValueError(f"sleep_ms must be between 0 and {MAX_SLEEP_MS:g}, got {raw!r}.")
        elif part.startswith("fail="):
            fail = part[5:]
            if fail not in FAIL_PHASES:
                raise ValueError(
                    f"fail must name the phase to raise at, one of {', '.join(FAIL_PHASES)};"
                    f" got {fail!r}."
                )
    if token is None:
        raise ValueError(
            "The probe needs a token: GET /_ctxbench/probe?token=<T>&sleep_ms=<ms>[&fail=<phase>]."
        )
    if _TOKEN_RE.match(token) is None:
        raise ValueError(f"The token must match [A-Za-z0-9_-]{{1,64}}, got {token!r}.")
    return ProbeQuery(token, sleep_ms / 1000.0, fail)


class _HeldResponse:
    """Collects what the app passes to ``start_response`` instead of sending it."""

    __slots__ = ("chunks", "exc_info", "headers", "status")

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.exc_info: OptExcInfo | None = None
        self.chunks: list[bytes] = []

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> t.Callable[[bytes], object]:
        self.status = status
        self.headers = headers
        self.exc_info = exc_info
        return self.chunks.append


def _bad_request(message: str, start_response: StartResponse) -> Iterable[bytes]:
    body = message.encode("utf-8", "replace") + b"\n"
    start_response(
        "400 Bad Request",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _not_found(start_response: StartResponse) -> Iterable[bytes]:
    # What any app answers for a path it does not serve: nothing tells a client without the
    # secret that a probe is mounted here.
    body = b"Not Found\n"
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _mark_skipped(state: ProbeState) -> None:
    # A phase whose hooks never ran (a framework that reuses a stale app context does not tear it
    # down) is a failure of isolation, not a malformed response: record it as an observation
    # that cannot equal the token, so the verdict reports it as a leak.
    for phase in PHASES:
        if phase not in state.phases:
            state.obs.append([phase, "skipped", "<did not run>"])


def _answered_at(state: ProbeState) -> str:
    # The phase in which the app made its response: the last one before after_request, which
    # (like the teardowns) runs once there is a response; "routing" when the framework did not
    # route the probe path to the probe's view.
    if state.routing_failed:
        return "routing"
    phases = state.phases
    if "after_request" in phases:
        return phases[max(phases.index("after_request") - 1, 0)]
    return state.phase


class ProbeMiddleware:
    """Wraps an app's ``wsgi_app``; see the module docstring."""

    __slots__ = ("framework", "secret", "served", "wsgi_app")

    def __init__(
        self, wsgi_app: WSGIApplication, framework: Framework, secret: str | None = None
    ) -> None:
        self.wsgi_app = wsgi_app
        self.framework = framework
        #: When set, a probe request without this value in :data:`SECRET_HEADER` gets a 404.
        self.secret = None if secret is None else secret.encode("utf-8")
        #: The tokens this app served lately: a token sent twice makes every check of that
        #: request meaningless (a leak from its namesake would look right), so it is evidence.
        self.served = RecentTokens()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path != PROBE_PATH:
            if path == STREAM_PATH and not self._authorized(environ):
                return _not_found(start_response)
            return self.wsgi_app(environ, start_response)
        environ[SEEN_KEY] = True
        if not self._authorized(environ):
            return _not_found(start_response)
        try:
            query = parse_probe_query(environ.get("QUERY_STRING", ""))
        except ValueError as exc:
            return _bad_request(str(exc), start_response)

        recent_tokens.add(query.token)
        state = ProbeState(*query)
        if not self.served.add(query.token):
            state.obs.append(["entry", "residue.token", query.token])
        reset_token = _cv_probe.set(state)
        try:
            stale_request, stale_app = self.framework.entry_residue()
            state.obs += (
                ["entry", "residue.request_context", stale_request],
                ["entry", "residue.app_context", stale_app],
            )
            held = _HeldResponse()
            app_iter = self.wsgi_app(environ, held.start_response)
            try:
                held.chunks.extend(app_iter)
            finally:
                close = getattr(app_iter, "close", None)
                if close is not None:
                    close()
            body = b"".join(held.chunks)
            headers = held.headers
            if state.view_done and held.status[:3] == "200":
                if len(state.phases) != len(PHASES):
                    _mark_skipped(state)
                body = self._splice(state, body)
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            elif not state.view_done:
                # The app answered in the probe's place: say how far the request got, so that
                # the harness can tell the user which of the app's hooks stopped it.
                headers = [*headers, (STOPPED_HEADER, _answered_at(state))]
            start_response(held.status, headers, held.exc_info)
            return [body]
        finally:
            _cv_probe.reset(reset_token)

    def _authorized(self, environ: WSGIEnvironment) -> bool:
        return self.secret is None or hmac.compare_digest(
            environ.get(_SECRET_ENVIRON_KEY, "").encode("latin-1"), self.secret
        )

    @staticmethod
    def _splice(state: ProbeState, body: bytes) -> bytes:
        # The view encodes {"token":..,"app":..,"worker":..,"obs":[...]} with "obs" last and at
        # least one observation, so the body ends with "]}" and the late ones follow a comma.
        late = state.obs[state.spliced_at :]
        if not late or not body.endswith(b"]}"):
            return body
        encoded = _json_encode(late).encode()
        return b"".join((body[:-2], b",", encoded[1:-1], b"]}"))
