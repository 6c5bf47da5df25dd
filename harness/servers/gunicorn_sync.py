"""``gunicorn-sync``: gunicorn's sync worker.

Design note: each worker process serves one request at a time on its main thread and closes the
connection after every response (no keep-alive). Two requests never overlap inside a process, so
shared state does not show cross-talk here; but the same thread serves request after request, so
state a request forgets to reset is seen by the next one (residue). Asking for ``--threads > 1``
makes gunicorn silently switch to the gthread worker: the effective class is recorded, and the
traits are then gthread's (requests overlap on a pool of threads), so that the expectations
(chaos's "a leak where none can happen", the corpus) judge what really ran.
"""

from __future__ import annotations

import dataclasses

from harness.servers._gunicorn import GTHREAD_TRAITS, LIFECYCLE, GunicornMode
from harness.servers.base import Lifecycle, ModeTraits, ServerConfig, register


@register
class GunicornSync(GunicornMode):
    name = "gunicorn-sync"
    summary = "gunicorn sync worker: one request at a time per process, no keep-alive"
    order = 20
    traits = ModeTraits(unit="main-thread", keepalive=False)
    worker_class = "sync"
    # The worker heartbeats between requests only, so --timeout kills one stuck in a request.
    lifecycle = dataclasses.replace(LIFECYCLE, timeout_args=("--timeout", "{seconds}"), notes={})

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        # -k sync with --threads 4 (ctxbench's, or the server's own) is gunicorn's gthread worker.
        if self.threads(cfg) > 1:
            return GTHREAD_TRAITS
        return super().traits_for(cfg)

    def lifecycle_for(self, cfg: ServerConfig) -> Lifecycle:
        # The gthread worker heartbeats while a request runs: the timeout fault cannot happen
        # there ('chaos --modes gunicorn-sync --threads 4' called it "not exercised", a failure).
        threads = self.threads(cfg)
        if threads > 1:
            why = (
                f"gunicorn runs -k sync with {threads} threads as its gthread worker, whose main"
                " loop keeps heartbeating while a request runs on a pool thread, so --timeout"
                " never kills it mid-request"
            )
            return dataclasses.replace(LIFECYCLE, notes={**LIFECYCLE.notes, "timeout": why})
        return super().lifecycle_for(cfg)
