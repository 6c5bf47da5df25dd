"""harness.load.fairness: the virtual users a server starved, measured by the driver.

The servers are http.server probes in a background thread of this process, one handler on two
servers: a serial one (one connection at a time, kept alive until the client closes it, as
uWSGI's --http11-socket does with one process) starves every user but the one it serves; a
threading one serves every connection and must starve none (the negative control). Everything
is asserted in the main thread after run_load() returned.
"""

from __future__ import annotations

import json
import threading
import time
import typing as t
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest

from harness.load import LoadSpec, run_load
from harness.load.fairness import (
    MAX_SAMPLES,
    STARVED_MIN_WAIT_NS,
    Timeline,
    Waits,
    overtaken,
    starved_users,
)
from harness.protocol import PHASES

MS = 1_000_000


class ProbeHandler(BaseHTTPRequestHandler):
    """Answers probe bodies on kept-alive HTTP/1.1 connections, after ``sleep_s``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go out in two writes
    timeout = 10  # a connection the client forgot cannot hold the server's thread for good
    sleep_s = 0.0

    def do_GET(self) -> None:
        token = self.path.partition("token=")[2].partition("&")[0]
        if self.sleep_s:
            time.sleep(self.sleep_s)
        obs: list[list[t.Any]] = [["entry", "residue.request_context", None]]
        obs += [[phase, "request", token] for phase in PHASES]
        worker = {"pid": 1, "thread": threading.get_ident(), "greenlet": None}
        data = json.dumps({"token": token, "app": "fake", "worker": worker, "obs": obs}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


Serve = Callable[..., int]
#: The http_server fixture of tests/conftest.py: start(server_class, handler_class) -> port.
HttpServer = Callable[[type[HTTPServer], type[BaseHTTPRequestHandler]], int]


@pytest.fixture
def serve(http_server: HttpServer) -> Serve:
    """``serve(server_class, sleep_s=0.0)`` starts a probe server; returns its port."""

    def start(server_class: type[HTTPServer], sleep_s: float = 0.0) -> int:
        return http_server(server_class, type("Handler", (ProbeHandler,), {"sleep_s": sleep_s}))

    return start


def spec(port: int, **kw: t.Any) -> LoadSpec:
    kw.setdefault("concurrency", 4)
    return LoadSpec(host="127.0.0.1", port=port, connections="keepalive", mode="fake", **kw)


# -- measured against real sockets --------------------------------------------------------------


def test_a_server_holding_one_connection_starves_the_other_users(serve: Serve) -> None:
    result = run_load(spec(serve(HTTPServer), duration=0.6))
    assert result.errors == 0, result.error_kinds
    assert result.starved == 3
    waits = sorted(result.longest_waits_ms)
    # the served user's longest wait is one response; the others waited the whole window
    assert waits[0] < 300 and all(w > 500 for w in waits[1:]), waits


def test_a_server_serving_every_connection_starves_none(serve: Serve) -> None:
    result = run_load(spec(serve(ThreadingHTTPServer), duration=0.6))
    assert result.errors == 0, result.error_kinds
    assert result.starved == 0
    assert len(result.longest_waits_ms) == 4
    assert max(result.longest_waits_ms) < 300, result.longest_waits_ms


class UnreadableHandler(ProbeHandler):
    """Holds the first request 1 s, then answers every request with a head the driver cannot
    read (two Content-Lengths that differ)."""

    held: t.ClassVar[list[bool]] = []

    def do_GET(self) -> None:
        if not self.held:
            self.held.append(True)
            time.sleep(1.0)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")


def test_a_user_overtaken_only_by_errors_was_not_starved(http_server: HttpServer) -> None:
    # Every request errored, and the one held 1 s was reported starved, "overtaken" by the
    # others' failures: a user who got no answer was not starved by the server's fairness.
    handler = type("Handler", (UnreadableHandler,), {"held": []})
    result = run_load(spec(http_server(ThreadingHTTPServer, handler), duration=0.6))
    assert result.rps == 0 and result.error_kinds.keys() == {"http"}, result.error_kinds
    assert result.errors > 50 and max(result.longest_waits_ms) > 500, result.longest_waits_ms
    assert result.starved == 0


def test_without_a_duration_the_window_is_the_run(serve: Serve) -> None:
    # 300 requests of at least 2 ms each, one at a time: longer than the floor of a wait.
    result = run_load(spec(serve(HTTPServer, sleep_s=0.002), requests=300))
    assert result.requests == 300 and result.errors == 0
    assert result.starved == 3


def test_a_whole_driver_process_starved_is_seen_from_the_others(serve: Serve) -> None:
    # Two driver processes of two users each: one user of one process is served, and the other
    # process's two users are starved though nothing in their own process overtook them.
    result = run_load(spec(serve(HTTPServer), duration=0.6, processes=2))
    assert len(result.waits) == 2
    assert result.errors == 0, result.error_kinds
    assert result.starved == 3


# -- the rule, on made-up timelines -------------------------------------------------------------


def _waits(longest: list[tuple[int, int]], samples: list[tuple[int, int, int]]) -> Waits:
    return Waits(window_ns=1000 * MS, longest=longest, timeline=Timeline(samples))


# Four users; requests started and finished every 100 ms: the served users overtake.
_BUSY = [(i * 100 * MS, 4 + 50 * i, 50 * i) for i in range(11)]


def test_a_long_wait_while_others_are_answered_is_starvation() -> None:
    waits = _waits([(0, 1000 * MS), (0, 2 * MS), (0, 3 * MS), (50 * MS, 700 * MS)], _BUSY)
    assert overtaken([waits], 0, 1000 * MS) == 500 - 4
    assert starved_users([waits]) == 2


def test_a_stall_of_every_user_is_not_starvation() -> None:
    # Nothing finishes from 100 to 800 ms: everybody waited, nobody was passed over.
    samples = [(0, 4, 0), (100 * MS, 40, 36), (800 * MS, 40, 36), (1000 * MS, 80, 76)]
    waits = _waits([(100 * MS, 700 * MS)] * 4, samples)
    assert overtaken([waits], 100 * MS, 800 * MS) == 0
    assert starved_users([waits]) == 0


def test_a_wait_of_half_the_window_or_under_the_floor_is_not_starvation() -> None:
    assert starved_users([_waits([(0, 500 * MS)], _BUSY)]) == 0
    # a run of a tenth of a second: its start-up queue is not starvation
    short = Waits(100 * MS, [(0, 99 * MS)], Timeline([(i * MS, 4 + i, i) for i in range(100)]))
    assert short.longest[0][1] < STARVED_MIN_WAIT_NS
    assert starved_users([short]) == 0


def test_the_timeline_thins_out_and_stays_a_lower_bound() -> None:
    timeline = Timeline()
    for tick in range(10 * MAX_SAMPLES):
        timeline.tick(tick * 20 * MS, tick + 4, tick)
    assert len(timeline.samples) < MAX_SAMPLES
    assert timeline.samples[0] == (0, 4, 0)
    waits = Waits(10 * MAX_SAMPLES * 20 * MS, [], timeline)
    # exactly tick - 4 requests started after tick 4 and finished by the end; the bound is below
    bound = overtaken([waits], 4 * 20 * MS, 10 * MAX_SAMPLES * 20 * MS)
    assert 10 * MAX_SAMPLES - 200 < bound <= 10 * MAX_SAMPLES - 4


def test_the_advice_has_a_step_for_a_server_ctxbench_did_not_start() -> None:
    # It offered only `--proxy nginx`, which `run --target` refuses.
    from harness.errors import UsageError
    from harness.load.fairness import starved_advice
    from harness.preflight import checked
    from harness.settings import RunSettings

    advice = starved_advice({"keepalive"})
    assert "--proxy nginx" in advice and "for a --target, a proxy of your own" in advice
    with pytest.raises(UsageError, match="drop --modes \\(and --proxy\\)"):
        checked(RunSettings(targets=("http://127.0.0.1:8080",), modes=("nginx+gunicorn-gevent",)))


def test_the_advice_fits_the_connection_pattern_that_starved() -> None:
    # A wsgiref target (listen backlog 5) with 16 users on fresh connections: 15 of 16 starved,
    # p99 1,004 ms (SYN retries), and the advice said "use fresh connections", which it did.
    from harness.load.fairness import starved_advice

    fresh = starved_advice({"fresh"})
    assert "listen backlog" in fresh and "use fresh connections" not in fresh, fresh
    keepalive = starved_advice({"keepalive"})
    assert "use fresh connections" in keepalive and "backlog" not in keepalive, keepalive
    both = starved_advice({"fresh", "keepalive"})
    assert "listen backlog" in both and "use fresh connections" in both, both
