"""harness.load.shards: the virtual users shared out to driver processes, the results merged.

The servers here are fake probes in a background thread of this process (the driver processes
are separate interpreters, so they reach it over loopback like any server). Everything is
asserted in the main thread after run_load() returned.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from harness.load import LoadResult, LoadSpec, run_load
from harness.load.cpu import saturated
from harness.load.shards import auto_processes, merge_results, split
from harness.protocol import PHASES
from harness.verdict import Evidence, Unit


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeProbe:
    """A WSGI app answering probe bodies; every ``leak_every``-th answer shows another token."""

    def __init__(self, leak_every: int = 0) -> None:
        self.leak_every = leak_every
        self.count = itertools.count(1)
        self.tokens: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> list[bytes]:
        token = environ["QUERY_STRING"].split("&")[0].removeprefix("token=")
        with self.lock:
            n = next(self.count)
            self.tokens.append(token)
        seen = "someone-else-1" if self.leak_every and n % self.leak_every == 0 else token
        obs = [["entry", "residue.request_context", None]]
        obs += [[phase, "request", seen] for phase in PHASES]
        doc = {"token": token, "app": "fake", "worker": {"pid": 1, "thread": 2, "greenlet": None}}
        data = json.dumps({**doc, "obs": obs}).encode()
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]


@pytest.fixture
def serve() -> Iterator[Callable[[FakeProbe], int]]:
    started: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: FakeProbe) -> int:
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        started.append((server, thread))
        return server.port

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_split_shares_out_evenly() -> None:
    assert split(16, 2) == [8, 8]
    assert split(7, 3) == [3, 2, 2]
    assert split(1, 1) == [1]
    assert sum(split(1001, 7)) == 1001


def test_auto_is_half_the_cpus_and_at_most_one_per_user() -> None:
    assert auto_processes(1) == 1
    assert 1 <= auto_processes(1000) <= 128


def _result(i: int) -> LoadResult:
    unit = Unit(i, 1, None)
    return LoadResult(
        requests=100 * i,
        errors=i,
        error_kinds={"reset": i},
        leaks=2 * i,
        framework_leaks=i,
        evidence=[Evidence("m", "view", "g", f"t{i}", f"u{i}", unit) for _ in range(2 * i)],
        leaky_requests=i,
        latencies_ms=[float(i)] * (100 * i - i),
        elapsed_s=1.0 + i / 10,
        rps=(100 * i - i) / (1.0 + i / 10),
        units=[(i, 1, None), (0, 0, None)],
        reconnects=i,
        statuses={200: 100 * i - i, 500: i},
        driver_cpu=[0.25 * i],
        driver_cpu_wait=[0.1],
    )


def test_merged_figures_add_up() -> None:
    parts = [_result(1), _result(2), _result(3)]
    merged = merge_results(parts, max_evidence=5)
    assert merged.requests == 600
    assert merged.errors == 6 and merged.error_kinds == {"reset": 6}
    assert merged.leaks == 12 and merged.leaky_requests == 6 and merged.framework_leaks == 6
    assert len(merged.evidence) == 5  # capped, in process order
    assert [e.expected for e in merged.evidence] == ["t1", "t1", "t2", "t2", "t2"]
    # Latency samples are pooled, so every percentile comes from all of them.
    assert sorted(merged.latencies_ms) == sorted(x for p in parts for x in p.latencies_ms)
    assert merged.statuses == {200: 594, 500: 6}
    assert merged.rps == pytest.approx(sum(p.rps for p in parts))
    assert merged.elapsed_s == 1.3
    assert merged.units == [(0, 0, None), (1, 1, None), (2, 1, None), (3, 1, None)]
    assert merged.reconnects == 6
    assert merged.driver_cpu == [0.25, 0.5, 0.75] and merged.driver_cpu_wait == [0.1] * 3
    assert not merged.driver_bound  # 0.75 + 0.1 is not above 0.9
    merged = merge_results([*parts, _result(4)], max_evidence=5)
    assert merged.driver_bound  # 1.0 + 0.1: one saturated process is enough


def test_one_saturated_process_makes_the_cell_driver_bound() -> None:
    assert not saturated([0.5, 0.85], [0.0, 0.05])
    assert saturated([0.5, 0.85], [0.0, 0.06])
    assert saturated([0.95], [])  # no wait known: the CPU share decides
    assert not saturated([], [])


def test_two_processes_share_an_exact_count(serve: Callable[[FakeProbe], int]) -> None:
    app = FakeProbe()
    port = serve(app)
    seen: list[tuple[int, int, int]] = []
    result = run_load(
        LoadSpec(port=port, requests=301, concurrency=7, processes=2, mode="fake"),
        lambda *counts: seen.append(counts),
    )
    assert result.requests == 301
    assert result.errors == 0, result.error_kinds
    assert result.statuses == {200: 301}
    assert len(result.latencies_ms) == 301
    assert len(set(app.tokens)) == 301  # every token unique across the processes
    assert len({tok.split("-")[0] for tok in app.tokens}) == 2  # one run id per process
    assert len(result.driver_cpu) == 2 and len(result.driver_cpu_wait) in (0, 2)
    assert seen and seen[-1] == (301, 0, 0)  # progress relayed, the last one final


def test_leaks_from_every_process_are_counted(serve: Callable[[FakeProbe], int]) -> None:
    app = FakeProbe(leak_every=10)
    port = serve(app)
    result = run_load(LoadSpec(port=port, requests=200, concurrency=4, processes=2, mode="fake"))
    assert result.requests == 200 and result.errors == 0
    assert result.leaky_requests == 20
    assert result.leaks == 20 * len(PHASES)  # every "request" observation of those responses
    assert len(result.evidence) == 50  # the default max_evidence, out of 120
    assert {e.seen for e in result.evidence} == {"someone-else-1"}


def test_errors_in_the_processes_are_counted(closed_port: int) -> None:
    # A closed port: every request of both processes is refused, and counted.
    result = run_load(LoadSpec(port=closed_port, requests=40, concurrency=4, processes=2))
    assert result.requests == 40
    assert result.error_kinds == {"refused": 40}


def test_a_refused_connection_in_a_process_is_reported_at_once(closed_port: int) -> None:
    # The driver processes report a refused connection at once (see test_load), and the parent
    # passes it on at once, not at its next half-second report.
    reports: list[tuple[float, int]] = []
    started = time.monotonic()

    class Gone(Exception):
        pass

    def progress(requests: int, errors: int, leaks: int) -> None:
        reports.append((time.monotonic() - started, errors))
        if errors:
            raise Gone

    spec = LoadSpec(port=closed_port, duration=5.0, concurrency=4, processes=2)
    with pytest.raises(Gone):
        run_load(spec, progress)
    first = next(when for when, errors in reports if errors)
    # The processes start first (under a second), then the users' first refusals end it.
    assert reports[-1][1] <= 4 and first - reports[0][0] < 0.4, reports


# A harness process that starts a driver process, lets it go, prints its pid and waits.
_HARNESS = """
import sys, time
from harness.load import LoadSpec
from harness.load.shards import _Child, _pump

child = _Child(0, LoadSpec(port=int(sys.argv[1]), duration=60, concurrency=1), "run")
_pump([child], lambda: child.ready, time.monotonic() + 60)
child.go()
print(child.process.pid, flush=True)
time.sleep(60)
"""


def test_a_driver_process_dies_with_the_harness(closed_port: int) -> None:
    # `kill -9` of ctxbench left its driver processes loading the port for the rest of the
    # measurement (its --duration: up to a day).
    harness = subprocess.Popen(
        [sys.executable, "-c", _HARNESS, str(closed_port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert harness.stdout is not None
        driver = int(harness.stdout.readline())
    finally:
        harness.kill()
        harness.communicate()
    deadline = time.monotonic() + 10
    while _alive(driver) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(driver)
    if alive:
        os.kill(driver, signal.SIGKILL)
    assert not alive, "the driver process outlived the harness"


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, dead and not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"processes": 0}, "processes must be an integer"),
        ({"processes": 9, "concurrency": 8}, "must not exceed concurrency"),
        ({"processes": 3, "requests": 2, "concurrency": 8}, "must not exceed requests"),
    ],
)
def test_bad_process_counts_are_refused(kw: dict[str, t.Any], match: str) -> None:
    kw.setdefault("requests", 10)
    with pytest.raises(ValueError, match=match):
        run_load(LoadSpec(port=1, **kw))


def test_first_leak_is_counted_over_every_shard() -> None:
    # Side by side at about the same rate: the run had finished about first x shards requests.
    merged = merge_results(
        [LoadResult(first_leak_at=None), LoadResult(first_leak_at=7), LoadResult(first_leak_at=3)],
        max_evidence=10,
    )
    assert merged.first_leak_at == 9
    assert merge_results([LoadResult(), LoadResult()], max_evidence=10).first_leak_at is None


def test_a_driver_process_s_result_is_gathered_in_place() -> None:
    """A result of tens of MB comes from a driver process in 64 KiB reads; each read joined the
    bytes so far and the new ones into a new object, copying all of it again every time
    (measured: 0.59 s to gather 15 MB, 0.25 s in place)."""
    from harness.load import shards

    frame = shards._frame(("result", list(range(100_000))))
    child = object.__new__(shards._Child)
    child.buffer, child.result, child.error = bytearray(), None, None
    buffer = child.buffer
    for i in range(0, len(frame), 1 << 12):
        child.feed(frame[i : i + (1 << 12)])
        assert child.buffer is buffer  # grown in place, never a new copy
    assert child.result == list(range(100_000)) and not child.buffer
