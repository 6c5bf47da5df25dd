"""The live matrix on the correct core: no leak and no error in any server mode.

The bundled core probe app (``harness.apps.core_app``) with the ``contextvar`` backend runs under
every server mode, and behind nginx (with and without upstream keep-alive) in front of
gunicorn-gevent, once per connection pattern (one server per mode serves both). Each run sends
300 requests from 16 concurrent clients, each request sleeping 10 ms in the view (2 ms where the
mode serves one request at a time per process: nothing can overlap there), and checks every
response. A clean run counts only if the run exercised what the mode is said to do: requests
overlapping inside a worker where the mode runs them concurrently, a thread or greenlet serving
several requests where the mode reuses them, one request at a time where it does not overlap
(see ``assert_exercised`` in ``conftest.py``). A clean run that did not show the overlap is
driven once more with a longer sleep, whose run must show it (``drive``): on a machine so busy
that the server's throughput fell, the 10 ms sleep no longer shows it by Little's law.
"""

from __future__ import annotations

import types
import typing as t

import pytest

from harness.apps import CORE_APP
from harness.expectations import applicable_patterns
from harness.load import LoadResult
from harness.servers import MODES, get_mode, proxied_modes

CASES = [
    pytest.param(mode, connections, id=f"{mode}-{connections}")
    for mode in [*MODES, *proxied_modes()]
    # innermost: both patterns share one server; keep-alive only where it can run
    for connections in applicable_patterns(get_mode(mode).traits)
]


@pytest.mark.live
@pytest.mark.parametrize(("mode", "connections"), CASES)
def test_correct_core_is_isolated(
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    drive: t.Any,
    assert_clean: t.Any,
) -> None:
    server = shared_server(mode, app=CORE_APP, backend="contextvar")
    assert server.effective["storage"] == "contextvar", server.effective

    result = drive(server, connections)

    assert_clean(result, server, mode, connections)


def test_a_clean_run_that_did_not_show_overlap_is_driven_again_with_a_longer_sleep(
    drive: t.Any, assert_clean: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 requests from 2 processes of 4 threads each: every thread served several.
    units = [(pid, thread, None) for pid in (1, 2) for thread in range(4)]
    slow = LoadResult(requests=300, rps=150, units=units)  # 150 x 10 ms / 2 = 0.75 in flight
    again = LoadResult(requests=300, rps=150, units=units)  # 150 x 40 ms / 2 = 3
    leaky = LoadResult(requests=300, rps=150, units=units, leaks=1)
    sleeps: list[float] = []
    answers: list[LoadResult] = []

    def run_load(spec: t.Any) -> LoadResult:
        sleeps.append(spec.sleep_ms)
        return answers.pop(0)

    monkeypatch.setitem(drive.__globals__, "run_load", run_load)
    mode = get_mode("gunicorn-gthread")
    server = types.SimpleNamespace(
        host="127.0.0.1", port=1, mode=mode.name, traits=mode.traits, effective={}
    )

    answers[:] = [slow, again]
    assert drive(server, "keepalive") is again
    assert sleeps == [10.0, 40.0]
    assert_clean(again, server, "gunicorn-gthread", "keepalive")  # at the sleep it ran with
    with pytest.raises(AssertionError, match="did not overlap"):
        assert_clean(slow, server, "gunicorn-gthread", "keepalive")

    # A leak is returned as it came; so is a run whose sleep the test chose.
    sleeps.clear()
    answers[:] = [leaky]
    assert drive(server, "keepalive") is leaky
    answers[:] = [slow]
    assert drive(server, "keepalive", sleep_ms=10.0) is slow
    assert sleeps == [10.0, 10.0]
