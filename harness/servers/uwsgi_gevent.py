"""``uwsgi-gevent``: uWSGI, ``--processes N --gevent C``, monkey-patched before the app.

Design note: each worker process runs gevent's hub on its main thread and serves every request
in a new greenlet (up to ``C`` async cores at once): a greenlet per *request*, not per
connection, all on one OS thread. Requests overlap whenever one yields, so process-wide and
OS-thread-keyed state show cross-talk; a ContextVar is isolated, and since no greenlet ever
serves a second request, residue never shows. uWSGI's gevent loop cannot keep connections alive
(``--http11-socket`` hangs on the second request), so this mode uses ``--http-socket``, which
closes after every response without ``Connection: close``: the keep-alive pattern is not
applicable here.

When the patch happens matters for the app's own module-level ``threading.local``: by default
this mode passes ``--gevent-early-monkey-patch``, which patches in the master before the app is
imported, so the local is greenlet-local; with ``--server-arg=--gevent-monkey-patch`` uWSGI
patches only after the app is loaded (with or without ``--lazy-apps``), and every greenlet of a
worker shares one native local (:meth:`traits_for` says so, and the effective configuration
records the order the workers saw).
"""

from __future__ import annotations

import dataclasses

from harness.errors import UsageError
from harness.servers._uwsgi import SIDE_BY_SIDE_LIFECYCLE, UwsgiMode
from harness.servers.base import ModeTraits, ServerConfig, connections_given, register

#: Async cores (greenlets serving requests at once) per worker unless told otherwise.
DEFAULT_ASYNC = 100
LATE_PATCH = "--gevent-monkey-patch"
EARLY_PATCH = "--gevent-early-monkey-patch"


@register
class UwsgiGevent(UwsgiMode):
    name = "uwsgi-gevent"
    summary = "uWSGI --gevent: a greenlet per request, monkey-patched first, no keep-alive"
    worker_class = "gevent"
    worker_option = "--gevent"
    requires = ("gevent", "greenlet")  # uWSGI's gevent plugin imports them in each worker
    # --harakiri times a request only while no other starts or ends on its worker.
    # --http-socket closes every connection after its response: none holds a greenlet.
    lifecycle = dataclasses.replace(
        SIDE_BY_SIDE_LIFECYCLE, kept_alive_holds_unit=False, honours_connection_close=True
    )
    order = 82
    socket_option = "--http-socket"
    ignored = ("threads",)  # a greenlet per request, all on each worker's main thread
    traits = ModeTraits(
        unit="greenlet-per-request",
        keepalive=False,
        keepalive_applicable=False,
        monkey_patch="before-app",
    )

    #: A late patch loads the app (in the master) before gevent patches anything.
    preload_args = (LATE_PATCH,)

    def check_args(self, cfg: ServerConfig) -> None:
        super().check_args(cfg)
        if (cores := connections_given(cfg, "--gevent", DEFAULT_ASYNC)) < 2:
            raise UsageError(
                f"uwsgi-gevent: {cores} async core per worker (--worker-connections, uWSGI's"
                " --gevent) is no async mode, which uWSGI's gevent loop needs: each worker"
                " exits as it starts ('the gevent loop engine requires async mode') and the"
                " server never answers; give 2 or more, or run gunicorn-gevent or eventlet with"
                " --worker-connections 1 for one connection at a time"
            )

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        if LATE_PATCH in cfg.extra_args and EARLY_PATCH not in cfg.extra_args:
            return dataclasses.replace(self.traits, monkey_patch="after-app")
        return self.traits

    def worker_args(self, cfg: ServerConfig) -> list[str]:
        chosen = LATE_PATCH in cfg.extra_args or EARLY_PATCH in cfg.extra_args
        patch = [] if chosen else [EARLY_PATCH]
        return ["--gevent", str(cfg.worker_connections or DEFAULT_ASYNC), *patch]
