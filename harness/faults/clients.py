"""The faults that come from clients: abort, slow-client, hook-error.

Design note: abort and slow-client are misbehaving clients (:mod:`harness.load.hostile`) running
in a few background threads of the harness beside the measured load; every request they make is
counted by outcome. An abandoned request is the fault itself (``aborted``), not an error. A slow
client's request must still be answered, and its response is judged like any other: the probe
response by :func:`harness.verdict.examine_probe_response`, a streamed body chunk by chunk.
hook-error needs no client of its own: the load driver makes a fraction of its own requests
raise at a probe phase (``fail=<phase>``, one phase per load round), so the next requests on the
same connection, thread or greenlet, which the driver judges, show what the failure left behind.
"""

from __future__ import annotations

import json
import typing as t

from harness.load.hostile import (
    HostileLoad,
    Outcome,
    abort_mid_body,
    abort_mid_request,
    by_status,
)
from harness.load.hostile import slow_read as _slow_read
from harness.load.hostile import slow_send as _slow_send
from harness.probe.middleware import STREAM_PATH
from harness.probe.stream import read_chunks
from harness.protocol import FAIL_PHASES, probe_path
from harness.servers import LiveServer, get_mode, poll_until
from harness.settings import ChaosSettings
from harness.verdict import Evidence, ProbeProtocolError, Unit, examine_probe_response

from .base import Fault, Injector, register
from .verdict import Tally

__all__ = ["Abort", "HookError", "SlowClient", "judge_outcome"]

#: Abort variants, in turn: half a request; a probe response left after its head; a streamed
#: body left after its first chunk, with a FIN and with a RST.
ABORTS = ("mid-request", "mid-response", "mid-stream", "mid-stream-rst")


def _probe(server: LiveServer, token: str) -> str:
    return f"{probe_path(server.mount)}?token={token}&sleep_ms=2"


def _stream(server: LiveServer, token: str, chunks: int, chunk_ms: int = 1) -> str:
    path = probe_path(server.mount, STREAM_PATH)
    return f"{path}?token={token}&chunks={chunks}&chunk_ms={chunk_ms}"


class _HostileInjector(Injector):
    """Runs a :class:`HostileLoad` beside the load; done when all its requests are.

    Where a kept-alive load connection holds its unit until the client closes it
    (:attr:`~harness.servers.base.Lifecycle.kept_alive_holds_unit`, uWSGI's ``--http11-socket``)
    and the load keeps its connections, a hostile client gets a unit only as a load round ends
    (every unit is held by a load client until then), so the load is held after the first round
    until the hostile clients are done: they meet the same units in the same state as between
    two rounds, without a round's wait for each of them."""

    def __init__(
        self, server: LiveServer, settings: ChaosSettings, hostile: HostileLoad | None = None
    ) -> None:
        super().__init__(server, settings)
        self.hostile = hostile

    def between_rounds(self, deadline: float) -> None:
        if self.done() or not self.kept_alive:
            return
        if get_mode(self.server.app_server.mode).lifecycle.kept_alive_holds_unit:
            poll_until(self.done, bool, deadline)


@register
class Abort(Fault):
    name = "abort"
    order = 50
    summary = (
        "clients leave mid-request and mid-response, including a streamed body"
        " (stream_with_context)"
    )

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        host, port = server.host, server.port

        def action(seq: int) -> Outcome:
            return by_status(_abort(seq))

        def _abort(seq: int) -> Outcome:
            kind = ABORTS[seq % len(ABORTS)]
            token = f"ctxbench-abort-{seq}"
            if kind == "mid-request":
                return abort_mid_request(host, port, _probe(server, token))
            if kind == "mid-response":
                return abort_mid_body(host, port, _probe(server, token), after_bytes=1)
            # The client leaves with the first chunk; the server still has 9 to write, 10 ms
            # apart, and finds out at the first or second. Few chunks: tornado's WSGIContainer
            # takes an IOLoop turn per chunk, shared with the load's requests (200 chunks of
            # 1 ms made the fault take 26 to 30 s of its 30 s bound there).
            stream = _stream(server, token, chunks=10, chunk_ms=10)
            return abort_mid_body(
                host, port, stream, after_bytes=64, reset=kind == "mid-stream-rst"
            )

        hostile = HostileLoad(
            action, users=settings.hostile_users, requests=settings.abort_requests, keep=False
        )
        return _HostileInjector(server, settings, hostile)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        return None if tally.aborted else "no client aborted a request"


class _SlowInjector(_HostileInjector):
    """Slow clients whose whole responses are judged as they arrive (``evidence``: every leak)."""

    def __init__(self, server: LiveServer, settings: ChaosSettings) -> None:
        super().__init__(server, settings)
        self.evidence: list[Evidence] = []
        host, port, seconds = server.host, server.port, settings.slow_seconds
        # Where the server ignores Connection: close, the streamed body ends only when the idle
        # connection times out (uWSGI: 4 s after the last chunk); in HTTP/1.0 it closes at once.
        mode = get_mode(server.mode)
        http10 = mode.traits.proxy is None and not mode.lifecycle.honours_connection_close

        def action(seq: int) -> Outcome:
            token = f"ctxbench-slow-{seq}"
            if seq % 2:
                outcome = _slow_send(
                    host, port, _probe(server, token), seconds=seconds, timeout=seconds + 10
                )
            else:
                outcome = _slow_read(
                    host, port, _stream(server, token, chunks=400), read_size=1024, pause_s=0.005,
                    max_seconds=seconds, timeout=seconds + 10, http10=http10,
                )  # fmt: skip
            kind, evidence = judge_outcome(outcome, token, mode=server.mode)
            self.evidence.extend(evidence)  # one client thread at a time holds the GIL here
            return outcome if kind == outcome.kind else Outcome(kind, outcome.status)

        self.hostile = HostileLoad(
            action, users=settings.hostile_users, requests=settings.slow_requests, keep=False
        )


@register
class SlowClient(Fault):
    name = "slow-client"
    order = 60
    summary = "clients that send the request or read the response slowly (bounded)"

    def injector(self, server: LiveServer, settings: ChaosSettings) -> Injector:
        return _SlowInjector(server, settings)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        return None if injector.hostile_counts.get("answered") else "no slow client was answered"


@register
class HookError(Fault):
    name = "hook-error"
    order = 70
    summary = (
        "a fraction of requests raise in session loading, before_request, the view,"
        " after_request or a teardown"
    )

    def round_overrides(self, index: int, settings: ChaosSettings) -> dict[str, t.Any]:
        return {"fail_phase": FAIL_PHASES[index % len(FAIL_PHASES)],
                "fail_fraction": settings.fail_fraction}  # fmt: skip

    def enough_rounds(self, rounds: int) -> bool:
        return rounds >= len(FAIL_PHASES)

    def not_exercised(
        self, tally: Tally, injector: Injector, before: set[int], after: set[int]
    ) -> str | None:
        return None if tally.injected else "no request was made to raise"


def judge_outcome(outcome: Outcome, token: str, *, mode: str) -> tuple[str, list[Evidence]]:
    """Classify a hostile client's outcome: ``(kind, evidence)``.

    ``kind`` is ``aborted`` (left on purpose), ``answered`` (a whole, valid response), or an
    error kind: the network ones, ``5xx``, ``other-status``, ``protocol``. A whole response to a
    probe or stream request is checked against the token the client sent; what differs is
    evidence.
    """
    if outcome.kind != "answered":
        return outcome.kind, []
    status = outcome.status or 0
    if status >= 500:
        return "5xx", []
    if not 200 <= status < 300:
        return "other-status", []
    body = outcome.body
    if body.startswith(b'{"i"'):
        try:
            chunks = read_chunks(body)
        except (ValueError, TypeError):
            return "protocol", []
        evidence = [
            Evidence(mode, "stream", name, token, chunk.get(name), _unit(chunk.get("worker")))
            for chunk in chunks
            for name in ("request", "g")
            if chunk.get(name) != token
        ]
        return "answered", evidence
    try:
        verdict = examine_probe_response(token, status, body, mode=mode)
    except (ProbeProtocolError, json.JSONDecodeError):
        return "protocol", []
    return "answered", list(verdict.evidence)


def _unit(raw: t.Any) -> Unit:
    raw = raw if isinstance(raw, dict) else {}
    return Unit(raw.get("pid") or 0, raw.get("thread") or 0, raw.get("greenlet"))
