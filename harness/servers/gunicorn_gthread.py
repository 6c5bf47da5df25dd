"""``gunicorn-gthread``: gunicorn's threaded worker.

Design note: each worker process runs requests on a pool of ``--threads`` OS threads; a poller
thread accepts connections and hands ready ones to the pool. Requests overlap across the pool
threads, so process-wide state shows cross-talk; pool threads are reused across connections,
and a keep-alive connection goes back to the poller between requests, so consecutive requests on
one connection can land on different threads. Thread-keyed state is isolated between concurrent
requests here but shows residue on reuse.
"""

from __future__ import annotations

from harness.servers._gunicorn import GTHREAD_TRAITS, GunicornMode
from harness.servers.base import register


@register
class GunicornGthread(GunicornMode):
    name = "gunicorn-gthread"
    summary = "gunicorn gthread worker: a thread pool per process, keep-alive"
    order = 30
    traits = GTHREAD_TRAITS
    worker_class = "gthread"
    default_threads = 4
