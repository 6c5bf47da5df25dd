"""``werkzeug-threaded``: werkzeug's dev server, ``run_simple(threaded=True)``.

Design note: one process; every connection gets a brand-new daemon thread (unbounded), and every
response says ``Connection: close``. Requests overlap across threads, so process-wide state shows
cross-talk; but no thread ever serves a second request, so state a request forgets to reset dies
with its thread and residue never shows here: a harness that only tests the dev server misses
residue leaks. ``--workers`` and ``--threads`` do not apply (``threaded`` and ``processes > 1``
exclude each other) and are recorded as ignored.
"""

from __future__ import annotations

import typing as t

from harness.packages import package_version
from harness.servers._single import SingleProcessMode
from harness.servers.base import Availability, ModeTraits, register


@register
class WerkzeugThreaded(SingleProcessMode):
    name = "werkzeug-threaded"
    summary = "werkzeug dev server, threaded: a new thread per connection, no keep-alive"
    order = 10
    traits = ModeTraits(unit="thread-per-connection", keepalive=False)
    runner = "harness.servers._werkzeug_runner"
    worker_class = "thread-per-connection"
    package = "werkzeug"
    ignored = ("workers", "threads", "worker_connections")

    def available(self) -> Availability:
        if package_version("werkzeug") is None:
            return Availability(False, "werkzeug is not installed (pip install ctxbench)")
        return Availability(True)

    def runner_details(self, _state: dict[str, t.Any]) -> dict[str, t.Any]:
        return {
            "threads": None,  # unbounded: one new thread per connection
            "worker_connections": None,
        }
