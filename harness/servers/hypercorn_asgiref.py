"""``hypercorn-asgiref``: hypercorn serving the WSGI app in asgiref's ``WsgiToAsgi``.

Design note: the other server of Flask's "Deploying to Production / ASGI" page,
``hypercorn module:asgi_app`` with ``asgi_app = WsgiToAsgi(app)`` (``--workers N``, the asyncio
worker class). Each worker process imports the app on its main thread, then runs one asyncio
loop there: a task per connection parses HTTP/1.1 and starts each request in a task of its own.
The WSGI call runs as under uvicorn (see :mod:`.uvicorn_asgiref`): ``SyncToAsync`` with
``thread_sensitive=True`` puts it on asgiref's single-thread executor, one thread per process,
not the main one, the same for every request and connection; calls never overlap in a process,
and a ``threading.local`` left set is seen by the next request, kept-alive or fresh. Each
request runs in a copy of its task's context, and the task's context is a copy of its
connection task's: a ContextVar a request leaves set is gone in the next one (measured: the
``no-reset`` storage shows nothing here, on kept-alive connections either). But all those copies
descend from the main thread's context, in which the app was imported before the loop started,
so what the import left set, every request sees (measured: an app context pushed at import, the
corpus's entry 2, is current in every request, on fresh connections too; under uvicorn, which
starts every request from an empty context, it is not). Connections are kept alive
(``--keep-alive``, 5 s).
"""

from __future__ import annotations

import signal
import typing as t

from harness.servers._asgiref import AsgirefMode
from harness.servers.base import Lifecycle, ModeTraits, Reported, register


@register
class HypercornAsgiref(AsgirefMode):
    name = "hypercorn-asgiref"
    summary = (
        "hypercorn + asgiref WsgiToAsgi: one WSGI thread per worker, a context copy per request,"
        " keep-alive"
    )
    order = 96
    traits = ModeTraits(
        unit="dedicated-thread", keepalive=True, context="request", import_context_copied=True
    )
    package = "hypercorn"
    runner = "harness.servers._hypercorn_runner"
    # hypercorn's master (hypercorn/run.py, 0.18) waits for a worker to end: one that exits
    # with status 0 (--max-requests, with its jitter) is replaced; on SIGHUP it tells every
    # worker to stop (each stops accepting, finishes its requests within --graceful-timeout,
    # 3 s), waits for all of them, then starts as many new ones: no worker serves in between,
    # and new connections wait in the listening socket's backlog, which the master holds.
    lifecycle = Lifecycle(
        reload_signal=signal.SIGHUP,
        recycle_args=("--max-requests", "{requests}", "--max-requests-jitter", "{jitter}"),
        # Under kept-alive load a stopping worker waits out its --graceful-timeout (3 s) on the
        # connections whose next request came as it stopped, which it closed unanswered (their
        # tasks wait until that timeout cancels them), then the new one imports the app: a
        # pair of workers recycled every 3.5 to 4.5 s (0.7 to 2 s on fresh connections).
        recycle_outage_s=4.0,
        notes={
            "kill-worker": "hypercorn's master replaces only a worker that exits with status 0"
            " (after --max-requests): when one dies otherwise, SIGKILL included, it stops every"
            " other worker and exits, with the status of the last worker it stopped, 0 or"
            " 241 (measured: the whole server gone within 0.25 s of one worker's SIGKILL);"
            " run hypercorn under a supervisor that restarts it (systemd, a container"
            " runtime)",
            "timeout": "hypercorn has no worker timeout: a slow request is left to finish",
        },
    )

    def server_details(self, reported: Reported) -> dict[str, t.Any]:
        master = reported.master
        return {
            "event_loop": master.get("worker_class"),
            "keepalive_timeout_s": master.get("keep_alive_timeout"),
        }
