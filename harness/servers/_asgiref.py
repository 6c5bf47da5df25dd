"""What the ASGI-server modes share: a WSGI app in asgiref's ``WsgiToAsgi`` under an ASGI server.

Design note: Flask's "Deploying to Production / ASGI" page serves a WSGI app as
``WsgiToAsgi(app)`` under an ASGI server. Whatever the server, asgiref runs each WSGI call
through ``SyncToAsync`` with ``thread_sensitive=True``, which, outside any ``async_to_sync``, is
asgiref's ``single_thread_executor``: one thread per server process, not the main one, the same
for every request and connection (the ``dedicated-thread`` unit). What differs between servers
is the context each request's task starts from (see each mode module). Each server runs
``--workers N`` processes from a small runner (``harness.servers._<server>_runner``) that
reports what ran. Both supervisors bind the listening socket and hand it to the workers they spawn
(``multiprocessing``'s spawn start method, which also starts its resource tracker in the
server's process group: not a worker, see :data:`harness.servers._process.HELPER_PROCESSES`); what
each does when a worker dies, on SIGHUP, and after N requests is its mode's ``lifecycle``.
"""

from __future__ import annotations

import typing as t

from harness.servers._runner import RunnerMode
from harness.servers._supervised import SupervisedMode
from harness.servers.base import (
    Availability,
    Reported,
    ServerConfig,
    ignored_options,
    require_modules,
)


class AsgirefMode(SupervisedMode, RunnerMode):
    """Base for the ASGI servers that serve the app through asgiref's ``WsgiToAsgi``."""

    requires = ("asgiref", "h11")
    listen_options = frozenset({"--host", "--port", "--uds", "--fd", "--bind", "-b"})

    def available(self) -> Availability:
        return require_modules(self.package, "asgiref", extra="asgi")

    def runner_args(self, cfg: ServerConfig) -> list[str]:
        return [
            "--host", cfg.host, "--port", str(cfg.port),
            "--workers", str(self.workers(cfg)),
            *cfg.extra_args,
        ]  # fmt: skip

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        return {
            "worker_class": reported.first.get("worker_class"),
            "requested_workers": self.workers(cfg),
            # asgiref's single-thread executor: the threads that run WSGI calls per process.
            "threads": reported.first.get("wsgi_threads"),
            "worker_connections": None,
            "access_log": None,
            **self.server_details(reported),
            "ignored_options": ignored_options(cfg, ("threads", "worker_connections")),
        }

    def server_details(self, reported: Reported) -> dict[str, t.Any]:
        """What this server reports of its own settings (event loop, keep-alive timeout)."""
        return {}
