"""``granian``: granian's WSGI interface, ``--workers N --blocking-threads T``.

Design note: granian's main process (Python) only supervises; it forks ``--workers`` worker
processes, each running a Rust HTTP server (tokio) that parses requests and keeps connections
alive, and hands every WSGI call to a pool of up to ``--blocking-threads`` Python threads that
Rust created (Python names them ``Dummy-N``); the worker's main thread only waits. Requests
overlap across those threads (process-wide state shows cross-talk; thread-keyed state is
isolated between concurrent requests), and a connection is not pinned to a thread: every
pool thread serves request after request, across connections, so state a request forgets to
reset is seen by a later request on a keep-alive connection or a fresh one alike. Each pool
thread keeps its Python thread state, and with it its ``contextvars.Context``, between calls
(a ContextVar left set is still there in the next request on that thread, measured here); a
thread idle for ``--blocking-threads-idle-timeout`` may be retired and replaced by a new, empty
one. granian's workers do not die with a main process killed outright, so the app module the
workers load (``harness.servers._granian_app``) asks the kernel for that.
"""

from __future__ import annotations

import contextlib
import io
import signal
import typing as t

from harness.servers._supervised import SupervisedMode
from harness.servers.base import (
    PRINTS_AND_EXITS,
    Availability,
    Lifecycle,
    ModeTraits,
    Reported,
    ServerConfig,
    ignored_options,
    one_at_a_time,
    register,
    require_command,
    threads_given,
    venv_script,
)

#: Python threads per worker for WSGI calls unless told otherwise.
DEFAULT_THREADS = 4
#: What granian serves: the harness's WSGI entry point, in a module that ties its workers'
#: lives to the main process.
APP = "harness.servers._granian_app:app"


@register
class Granian(SupervisedMode):
    name = "granian"
    summary = "granian WSGI: Rust I/O, a pool of Python threads per worker, keep-alive"
    order = 90
    traits = ModeTraits(unit="pool-thread", keepalive=True)
    package = "granian"
    listen_options = frozenset({"--host", "--port", "--uds"})
    # The main process respawns a dead worker only when asked to, and then exits on what it
    # takes for a crash loop: a worker it respawned dying within 5.5 s (`_serve_loop` in
    # granian/server/common.py). It replaces every worker on SIGHUP, recycles workers by age
    # or memory only, and has no request timeout. On SIGHUP it replaces the workers one after
    # the other: it starts the new worker, sleeps --respawn-interval (3.5 s by default; a
    # dead worker is respawned without it), then stops the old one. SIGHUPs that come during a
    # reload make one more reload after it. Measured with the reload fault's 3 SIGHUPs 0.5 s
    # apart and 2 workers: 2 reloads, 14 s of waiting for the workers to settle, 16.9 to
    # 18.1 s a cell (5 runs); with 1 s, every new worker had started before its old one
    # stopped, no request failed, and the cell took 6.1 to 7.5 s.
    lifecycle = Lifecycle(
        respawns=True,
        respawn_args=("--respawn-failed-workers",),
        respawn_crash_window_s=6.0,
        reload_signal=signal.SIGHUP,
        reload_args=("--respawn-interval", "1"),
        refuses_during=frozenset({"kill-worker", "reload"}),
        notes={
            # Measured: --workers-max-rss 1 --rss-sample-interval 1 replaced both workers every
            # second or so, and 2 of 3 such cells saw refused connections (475, 4763).
            "recycle": "granian recycles a worker by age (--workers-lifetime, 60 s at least) or"
            " by memory (--workers-max-rss, sampled every 1 s at least), never after a number"
            " of requests; a memory limit below a worker's size replaces every worker at every"
            " sample, which is the graceful respawn of its SIGHUP reload (the reload fault)",
            "timeout": "granian has no worker timeout: a slow request is left to finish",
        },
    )

    def available(self) -> Availability:
        return require_command("granian", "granian", extra="granian")

    def check_args(self, cfg: ServerConfig) -> None:
        super().check_args(cfg)
        # A pip extra (ctxbench[granian]), and click with it: imported where they are used.
        import click
        from granian.cli import cli

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cli.make_context("granian", [*cfg.extra_args, APP])
        except click.ClickException as e:
            raise self.refused_args(cfg, "granian", e.format_message()) from None
        except click.exceptions.Exit:  # --help, --version
            raise self.refused_args(cfg, "granian", PRINTS_AND_EXITS) from None

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        why = "a pool of one thread per worker"
        return one_at_a_time(self.traits, blocking_threads(cfg), why)

    def command(self, cfg: ServerConfig) -> list[str]:
        return [
            str(venv_script("granian") or "granian"),
            "--interface", "wsgi",
            "--host", cfg.host, "--port", str(cfg.port),
            "--workers", str(self.workers(cfg)),
            "--blocking-threads", str(cfg.threads or DEFAULT_THREADS),
            "--http", "1", "--no-ws", "--no-access-log",
            "--backlog", "1024",
            *cfg.extra_args,
            APP,
        ]  # fmt: skip

    def details(self, cfg: ServerConfig, reported: Reported) -> dict[str, t.Any]:
        return {
            "worker_class": "wsgi-blocking-threads",
            "requested_workers": self.workers(cfg),
            # The pool's bound; granian starts its threads lazily.
            "threads": blocking_threads(cfg),
            "worker_connections": None,
            "access_log": None,
            "ignored_options": ignored_options(cfg, ("worker_connections",)),
        }


def blocking_threads(cfg: ServerConfig) -> int:
    """The bound of each worker's pool of Python threads that granian runs with: the last
    ``--blocking-threads`` of its command line, so ``--server-arg=--blocking-threads=1`` over
    ``--threads`` (the effective configuration said 4, the default, while one thread per worker
    answered)."""
    return threads_given(cfg, "--blocking-threads", DEFAULT_THREADS)
