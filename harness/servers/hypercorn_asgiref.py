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

import sys
import typing as t

from harness.servers.base import (
    Availability,
    Lifecycle,
    ModeTraits,
    Reported,
    ServerConfig,
    ServerMode,
    ignored_options,
    register,
    require_modules,
)

#: Worker processes unless told otherwise: one per core on the 2-core machines we run on.
DEFAULT_WORKERS = 2


@register
class HypercornAsgiref(ServerMode):
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
    requires = ("asgiref", "h11")
    # hypercorn's parent replaces a worker that exits cleanly and stops on any other exit (read
    # in hypercorn/run.py, not measured): no chaos test covers it here yet.
    lifecycle = Lifecycle(
        notes={
            fault: "not yet covered under hypercorn's supervisor: no chaos test checks it"
            for fault in ("kill-worker", "recycle", "reload", "timeout")
        }
    )

    def available(self) -> Availability:
        return require_modules("hypercorn", "asgiref", extra="asgi")

    def serving_processes(self, cfg: ServerConfig) -> int:
        return cfg.workers or DEFAULT_WORKERS

    def command(self, cfg: ServerConfig) -> list[str]:
        return [
            sys.executable, "-m", "harness.servers._hypercorn_runner",
            "--host", cfg.host, "--port", str(cfg.port),
            "--workers", str(cfg.workers or DEFAULT_WORKERS),
            *cfg.extra_args,
        ]  # fmt: skip

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        first, master = reported.first, reported.master
        return {
            "worker_class": first.get("worker_class"),
            "requested_workers": cfg.workers or DEFAULT_WORKERS,
            # asgiref's single-thread executor: the threads that run WSGI calls per process.
            "threads": first.get("wsgi_threads"),
            "worker_connections": None,
            "access_log": None,
            "event_loop": master.get("worker_class"),
            "keepalive_timeout_s": master.get("keep_alive_timeout"),
            "ignored_options": ignored_options(cfg, ("threads", "worker_connections")),
        }
