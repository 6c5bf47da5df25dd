"""``uwsgi-threads``: uWSGI, ``--processes N --threads T``.

Design note: each worker process runs ``T`` threads (core 0 is the worker's main thread, the
others are started by uWSGI; ``--threads`` always enables Python threads), each accepting and
serving on its own, so requests overlap across the threads of a process and process-wide state
shows cross-talk, while thread-keyed state is isolated between concurrent requests. A thread
serves request after request across connections (residue on reuse); with ``--http11-socket``
a kept-alive connection stays with the thread that accepted it until the client closes it or it
is idle for ``--socket-timeout``, so the default of 8 threads per worker (16 in all) is chosen to
serve the harness's 16 keep-alive clients at once; with more clients than threads the others
wait, as under uwsgi-processes.
"""

from __future__ import annotations

from harness.servers._uwsgi import SIDE_BY_SIDE_LIFECYCLE, UwsgiMode
from harness.servers.base import ModeTraits, ServerConfig, one_at_a_time, register, threads_given

#: Threads per worker unless told otherwise.
DEFAULT_THREADS = 8


@register
class UwsgiThreads(UwsgiMode):
    name = "uwsgi-threads"
    summary = "uWSGI --processes --threads: a thread pool per process, keep-alive (http11)"
    worker_class = "threads"
    worker_option = "--threads"
    ignored = ("worker_connections",)
    # --harakiri times a request only while no other starts or ends on its worker.
    lifecycle = SIDE_BY_SIDE_LIFECYCLE
    order = 81
    # Core 0 of each worker's pool is its main thread, which imported the app (in the master).
    traits = ModeTraits(unit="pool-thread", keepalive=True, main_thread_serves=True)

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        # With one thread, core 0, the worker's main thread, serves alone.
        threads = threads_given(cfg, "--threads", DEFAULT_THREADS)
        return one_at_a_time(self.traits, threads, "one thread per worker")

    def worker_args(self, cfg: ServerConfig) -> list[str]:
        return ["--threads", str(cfg.threads or DEFAULT_THREADS)]
