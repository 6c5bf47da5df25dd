"""``gunicorn-gevent``: gunicorn's gevent worker.

Design note: each worker process calls ``gevent.monkey.patch_all()`` after the fork and before it
imports the app, then serves every connection in its own greenlet (up to
``--worker-connections``), all on one OS thread; the greenlet serves every keep-alive request
on its connection. Requests overlap whenever one yields (I/O, ``time.sleep``), so process-wide
and OS-thread-keyed state both show cross-talk here. A ContextVar is isolated: every greenlet
has its own ``contextvars.Context`` (greenlet >= 1.0), and a new connection's greenlet starts
empty, so residue shows only on keep-alive connections.
"""

from __future__ import annotations

import signal

from harness.servers._gunicorn import GunicornMode
from harness.servers.base import ModeTraits, register


@register
class GunicornGevent(GunicornMode):
    name = "gunicorn-gevent"
    summary = "gunicorn gevent worker: a greenlet per connection, monkey-patched"
    order = 40
    traits = ModeTraits(unit="greenlet-per-connection", keepalive=True, monkey_patch="before-app")
    worker_class = "gevent"
    # gunicorn's gevent worker imports packaging too (its own `gevent` extra): without it the
    # worker exits at start-up, "class uri 'gevent' invalid or not found".
    requires = ("gevent", "greenlet", "packaging")
    # gunicorn's quick shutdown: SIGTERM lets the worker finish its loop, which checks once a
    # second, and then close its connections: 1.5-2 s per stop here under load, against 1-1.4 s.
    # The harness stops a server when it is done with it: none of its requests are in flight. The
    # worker logs "failed with SystemExit" on the way out (gunicorn exits from a greenlet).
    stop_signal = signal.SIGQUIT
