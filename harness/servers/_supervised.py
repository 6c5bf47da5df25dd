"""What the supervised modes share: a master process and ``--workers`` worker processes.

Design note: gunicorn, uWSGI, granian, uvicorn and hypercorn each run a supervising process (the
master) that serves nothing, and ``--workers`` worker processes that each import the app and
serve requests; requests in different workers never share memory, so any cross-talk happens
between requests of one worker (what runs inside a worker is each mode's own, see its module).
This module owns how many workers a run gets when it does not say: the same for every such
server, so that a matrix compares the servers, not their defaults.
"""

from __future__ import annotations

import typing as t

from harness.servers.base import ServerConfig, ServerMode, last_count

__all__ = ["DEFAULT_WORKERS", "SupervisedMode"]

#: Worker processes unless told otherwise: one per core on the 2-core machines we run on.
DEFAULT_WORKERS = 2


class SupervisedMode(ServerMode):
    """Base for a mode whose master supervises ``--workers`` serving processes."""

    #: The server's own options that set how many worker processes it runs (gunicorn's
    #: ``-w``/``--workers``, uWSGI's ``--processes``): given as server arguments, which come after
    #: ctxbench's own, the last one is what runs.
    workers_options: t.ClassVar[tuple[str, ...]] = ("--workers",)

    def workers(self, cfg: ServerConfig) -> int:
        """The worker processes the server runs with: the last whole number its own arguments
        give one of :attr:`workers_options`, else ``--workers``, else :data:`DEFAULT_WORKERS`.
        Start-up waits for that many to report: a server told ``--server-arg=--workers=1``
        that is waited for as two made every start wait out its 10 s deadline."""
        return last_count(cfg.extra_args, *self.workers_options) or cfg.workers or DEFAULT_WORKERS

    def serving_processes(self, cfg: ServerConfig) -> int:
        return self.workers(cfg)
