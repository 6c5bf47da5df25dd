"""``gunicorn-tornado``: gunicorn's tornado worker.

Design note: each worker process runs a tornado ``IOLoop`` on its main thread and wraps the WSGI
app in ``tornado.wsgi.WSGIContainer`` without an executor, so the app runs on that main thread,
one request at a time: requests never overlap inside a process, and shared state shows no
cross-talk. Connections are kept alive (gunicorn's ``--keep-alive`` reaches tornado only after
tornado copied it, so it cannot be turned off). The same OS thread serves every request, so a
``threading.local`` set by one request is still there in the next (residue); but tornado runs each
request in an asyncio task of its own, started from a copy of the connection's context, so a
``ContextVar`` set by one request is gone in the next: the ``no-reset`` mutant cannot leak here,
unlike under the sync worker, which also serves on its main thread. The harness stops it with
SIGINT, gunicorn's quick shutdown: after SIGTERM the tornado worker lingers about two seconds
(its watchdog ticks once a second), and no request is in flight when the harness stops a server.
That watchdog is also the worker's heartbeat: it cannot tick while a request blocks the IOLoop,
so gunicorn's ``--timeout`` kills a worker stuck in a request, as under the sync worker; but it
first ticks a second after the IOLoop starts, once the app is loaded, and the master does not
time a worker that has not heartbeated yet (``worker_timed``), so a request that blocks a new
worker before then is never timed out. Its ``--max-requests`` counts closed connections, not
requests (the worker counts in its server's ``on_close``): a kept-alive connection is one,
however many requests it carried. A streamed body is not streamed: ``WSGIContainer`` collects
every chunk, one IOLoop turn each, and sends the response only then, so a client that leaves
mid-body leaves after the app produced all of it.
"""

from __future__ import annotations

import dataclasses
import signal

from harness.servers._gunicorn import LIFECYCLE, GunicornMode
from harness.servers.base import ModeTraits, register


@register
class GunicornTornado(GunicornMode):
    name = "gunicorn-tornado"
    summary = "gunicorn tornado worker: one request at a time on the IOLoop thread, keep-alive"
    order = 50
    traits = ModeTraits(unit="main-thread", keepalive=True, context="request")
    worker_class = "tornado"
    requires = ("tornado",)
    extra = "tornado"
    stop_signal = signal.SIGINT
    # The app blocks the IOLoop, whose watchdog is what heartbeats, so --timeout kills a worker
    # stuck in a request (as under the sync worker); but the watchdog first ticks 1 s after the
    # IOLoop starts, after the app loaded, and until then the master does not time the worker
    # (worker_timed says when it does). --max-requests counts the connections the worker closed
    # (HTTPServer.on_close).
    lifecycle = dataclasses.replace(
        LIFECYCLE,
        timeout_args=("--timeout", "{seconds}"),
        recycle_counts="connections",
        notes={},
    )
