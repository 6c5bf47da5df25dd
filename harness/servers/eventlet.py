"""``eventlet``: ``eventlet.monkey_patch()``, then ``eventlet.wsgi.server``.

Design note: one process, monkey-patched before anything else is imported (the app included), so
every ``threading.local`` the app creates is greenthread-local. ``eventlet.wsgi.server`` accepts
on the main greenlet and serves each connection in a greenthread of its own (a pool of up to
``--worker-connections``, default 1024), which serves every keep-alive request on that connection
in turn; all greenthreads run on the one OS thread. Requests overlap whenever one yields (I/O,
the patched ``time.sleep``), so process-wide and OS-thread-keyed state show cross-talk here. A
ContextVar is isolated: every greenlet has its own ``contextvars.Context``, and a new
connection's greenthread starts empty, so residue shows only on keep-alive connections. gunicorn
27 has no eventlet worker, so eventlet serves the app itself; ``--workers`` and ``--threads`` do
not apply and are recorded as ignored. eventlet is in maintenance mode and warns so on import
(in the server log).
"""

from __future__ import annotations

import dataclasses
import typing as t

from harness.servers._eventlet_runner import BOOTSTRAP
from harness.servers._single import SingleProcessMode
from harness.servers.base import (
    Availability,
    ModeTraits,
    ServerConfig,
    connections_given,
    one_at_a_time,
    register,
    require_modules,
)

#: Greenthreads (connections served at once) unless told otherwise: eventlet's own default.
DEFAULT_MAX_SIZE = 1024


@register
class Eventlet(SingleProcessMode):
    name = "eventlet"
    summary = "eventlet.wsgi: a greenthread per connection, monkey-patched first, keep-alive"
    order = 70
    traits = ModeTraits(
        unit="greenlet-per-connection",
        keepalive=True,
        monkey_patch="before-app",
        # `import eventlet` imports asyncio (its asyncio hub) before monkey_patch() runs.
        imported_before_patch=("asyncio",),
    )
    runner = "harness.servers._eventlet_runner"
    launch = ("-c", BOOTSTRAP)
    worker_class = "greenthread-per-connection"
    package = "eventlet"
    ignored = ("workers", "threads")

    def available(self) -> Availability:
        return require_modules("eventlet", extra="eventlet")

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        given = connections_given(cfg, "--max-size", DEFAULT_MAX_SIZE)
        why = "one connection at a time"
        # A pool of that many greenthreads, each holding its connection while it is open.
        traits = dataclasses.replace(self.traits, connection_limit=given)
        return one_at_a_time(traits, given, why)

    def server_args(self, cfg: ServerConfig) -> list[str]:
        return ["--max-size", str(cfg.worker_connections or DEFAULT_MAX_SIZE)]

    def runner_details(self, state: dict[str, t.Any]) -> dict[str, t.Any]:
        return {
            "threads": 1,
            "worker_connections": state.get("max_size"),
            "eventlet_patched": state.get("eventlet_patched"),
        }
