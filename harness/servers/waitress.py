"""``waitress``: waitress, one process with a fixed thread pool.

Design note: one process; its main thread runs the I/O loop (accepting, reading and parsing
requests, writing responses) and hands every complete request to a queue that a fixed pool of
``--threads`` threads drains. Requests overlap across the pool threads, so process-wide state
shows cross-talk; thread-keyed state is isolated between concurrent requests. Connections are
kept alive, but a connection is not pinned to a thread: consecutive requests on one connection go
to whichever pool thread is free, and every pool thread serves request after request across
connections, so state a request forgets to reset is seen by a later request, on a keep-alive
connection or a fresh one alike. ``--workers`` does not apply (waitress has no worker processes)
and is recorded as ignored.
"""

from __future__ import annotations

import dataclasses
import typing as t

from harness.errors import UsageError
from harness.servers._single import SingleProcessMode
from harness.servers.base import (
    Availability,
    ModeTraits,
    ServerConfig,
    connections_given,
    one_at_a_time,
    register,
    require_modules,
    threads_given,
)

#: Pool threads unless told otherwise (waitress's own default, and gthread's here).
DEFAULT_THREADS = 4
#: Connections waitress accepts at once unless told otherwise (its default is 100).
DEFAULT_CONNECTION_LIMIT = 1000
#: What waitress's ``--connection-limit`` counts besides client connections: its listening
#: socket and the pipe that wakes its I/O loop. At or under this it accepts no connection at all
#: (waitress 3: "total open connections reached the connection limit", from the start).
OWN_CHANNELS = 2


@register
class Waitress(SingleProcessMode):
    name = "waitress"
    summary = "waitress: one process, a fixed thread pool fed from a queue, keep-alive"
    order = 60
    traits = ModeTraits(unit="pool-thread", keepalive=True)
    runner = "harness.servers._waitress_runner"
    worker_class = "thread-pool"
    package = "waitress"
    ignored = ("workers",)

    def available(self) -> Availability:
        return require_modules("waitress", extra="waitress")

    def check_args(self, cfg: ServerConfig) -> None:
        super().check_args(cfg)
        limit = connections_given(cfg, "--connection-limit", DEFAULT_CONNECTION_LIMIT)
        if limit <= OWN_CHANNELS:
            raise UsageError(
                f"waitress: a connection limit of {limit} (--worker-connections, waitress's"
                " --connection-limit) leaves waitress no connection to accept: the limit counts"
                f" its own listening socket and wake-up pipe too, so it would never answer; give"
                f" {OWN_CHANNELS + 1} or more ({OWN_CHANNELS + 1}: one connection at a time)"
            )

    def traits_for(self, cfg: ServerConfig) -> ModeTraits:
        threads = threads_given(cfg, "--threads", DEFAULT_THREADS)
        # At its limit waitress accepts no connection until one of those it holds is closed.
        limit = connections_given(cfg, "--connection-limit", DEFAULT_CONNECTION_LIMIT)
        traits = dataclasses.replace(self.traits, connection_limit=limit - OWN_CHANNELS)
        return one_at_a_time(traits, threads, "a pool of one thread")

    def server_args(self, cfg: ServerConfig) -> list[str]:
        return [
            "--threads", str(cfg.threads or DEFAULT_THREADS),
            "--connection-limit", str(cfg.worker_connections or DEFAULT_CONNECTION_LIMIT),
        ]  # fmt: skip

    def runner_details(self, state: dict[str, t.Any]) -> dict[str, t.Any]:
        return {
            "threads": state.get("threads"),
            "worker_connections": state.get("connection_limit"),
            "channel_timeout_s": state.get("channel_timeout"),
            "tcp_nodelay": state.get("tcp_nodelay"),
        }
