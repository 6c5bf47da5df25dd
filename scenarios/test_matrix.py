"""The live matrix on the correct core: no leak and no error in any server mode.

The bundled core probe app (``harness.apps.core_app``) with the ``contextvar`` backend runs under
every server mode, and behind nginx (with and without upstream keep-alive) in front of
gunicorn-gevent, once per connection pattern (one server per mode serves both). Each run sends
300 requests from 16 concurrent clients, each request sleeping 10 ms in the view (2 ms where the
mode serves one request at a time per process: nothing can overlap there), and checks every
response. A clean run counts only if the run exercised what the mode is said to do: requests
overlapping inside a worker where the mode runs them concurrently, a thread or greenlet serving
several requests where the mode reuses them, one request at a time where it does not overlap
(see ``assert_exercised`` in ``conftest.py``).
"""

from __future__ import annotations

import typing as t

import pytest

from harness.apps import CORE_APP
from harness.expectations import applicable_patterns
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
