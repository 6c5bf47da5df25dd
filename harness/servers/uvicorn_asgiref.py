"""``uvicorn-asgiref``: uvicorn serving the WSGI app in asgiref's ``WsgiToAsgi``.

Design note: this is the stack of Flask's "Deploying to Production / ASGI" page,
``asgi_app = WsgiToAsgi(app)`` served by uvicorn (``--workers N``, HTTP/1.1 by h11 on the
asyncio loop), plus uvicorn's ``--reset-contextvars``. Each serving process runs one asyncio
loop on its main thread, and every request in an asyncio task of its own; the task reads the
whole body, then hands the WSGI call to ``SyncToAsync`` with ``thread_sensitive=True``, which,
outside any ``async_to_sync``, runs it on asgiref's ``single_thread_executor``: one thread per
process (``ThreadPoolExecutor-0_0``), not the main thread, the same for every request and
connection. WSGI calls therefore never overlap inside a process (shared state shows no
cross-talk there), and that one thread serves request after request, so a ``threading.local``
a request forgets to reset is seen by the next one, on a keep-alive connection or a fresh one
alike. ContextVars are not: ``SyncToAsync`` runs the app in a copy of the request task's
context and copies the changes back into that task's context, which ends with the task, and
with ``--reset-contextvars`` each request's task starts from an empty context.

Without that flag (uvicorn's default, and the page's command line) the task starts from a copy
of the context current when uvicorn creates it, and that is not always the connection's: when
the next request on a kept-alive connection arrives before the previous response ended (asgiref
sends the body, then an empty last message; a client that counted Content-Length bytes is
already sending), uvicorn pauses reading, and resumes it from the previous request's task, whose
context the next request then inherits (CPython #140947; uvicorn #2167, #3158). Measured here
without the flag, 16 keep-alive clients, 300 requests, 5 runs each: with the correct
``contextvar`` storage 41 to 113 requests failed with a 500, because asgiref's own
``AsyncToSync.executors`` (a context-based local) leaks too and the next request's WSGI call
goes to the previous request's finished executor ("CurrentThreadExecutor already quit or is
broken"); the ``no-reset`` storage leaked into 2 to 11 requests (and 32 to 92 failed); fresh
connections were clean. With the flag: no leak and no error, kept-alive or fresh.

Connections are kept alive (``--timeout-keep-alive``, 5 s). asgiref never calls ``close()`` on
the response iterable (PEP 3333 asks for it), but it iterates a body to its end in that one
thread even after the client left (uvicorn drops what it is sent after a disconnect), so a
streamed body's context is popped where it was pushed.
"""

from __future__ import annotations

import signal
import typing as t

from harness.servers._asgiref import AsgirefMode
from harness.servers.base import Lifecycle, ModeTraits, Reported, register


@register
class UvicornAsgiref(AsgirefMode):
    name = "uvicorn-asgiref"
    summary = (
        "uvicorn + asgiref WsgiToAsgi: one WSGI thread per worker, an empty context per request,"
        " keep-alive"
    )
    order = 95
    traits = ModeTraits(unit="dedicated-thread", keepalive=True, context="request")
    package = "uvicorn"
    runner = "harness.servers._uvicorn_runner"
    # uvicorn's supervisor (uvicorn/supervisors/multiprocess.py, 0.54) checks its workers every
    # 0.5 s and starts a new one for each that died; on SIGHUP it replaces them one at a time,
    # the new one serving before the old one gets SIGTERM (a graceful stop: requests in flight
    # finish, idle kept-alive connections close); --limit-max-requests (with its jitter) makes a
    # worker stop as gracefully after that many requests.
    lifecycle = Lifecycle(
        respawns=True,
        reload_signal=signal.SIGHUP,
        recycle_args=(
            *("--limit-max-requests", "{requests}"),
            *("--limit-max-requests-jitter", "{jitter}"),
        ),
        # A worker that exits by itself (its limit) is seen dead only when a health-check ping
        # sent before it died times out (--timeout-worker-healthcheck, 5 s: the supervisor
        # holds the pipe's other end, so no end of file): new workers came 4.6 to 4.8 s after
        # the old ones were gone, at once with a 1 s health check; a pair recycled every 6 to
        # 8 s under load.
        recycle_outage_s=6.0,
        notes={
            "timeout": "uvicorn has no worker timeout: its supervisor kills a worker only when"
            " the worker stops answering its health-check ping (--timeout-worker-healthcheck),"
            " which a thread of the worker's own answers while a request runs, so a slow"
            " request is left to finish",
        },
    )

    def server_details(self, reported: Reported) -> dict[str, t.Any]:
        master = reported.master
        return {
            "worker_connections": master.get("limit_concurrency"),
            "http": master.get("http"),
            "event_loop": reported.first.get("event_loop"),
            "keepalive_timeout_s": master.get("timeout_keep_alive"),
            "reset_contextvars": master.get("reset_contextvars"),
            "tcp_nodelay": master.get("tcp_nodelay"),
        }
