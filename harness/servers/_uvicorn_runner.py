"""Serve ``harness.servers._asgiref_app:app`` with uvicorn (``python -m`` this module).

Design note: the runner builds uvicorn's own ``Config`` from its options and writes what that
config resolved (workers, HTTP implementation, event loop, keep-alive timeout) into
``master.json`` before it hands the same options to ``uvicorn.run``. With ``--workers`` above
one, uvicorn's supervisor binds the socket and spawns that many worker processes
(``multiprocessing``'s spawn start method; they import this module again as ``__mp_main__``,
which does nothing) and starts a new one for each that dies; with one, this process serves. The
HTTP implementation and the loop are pinned (``h11``, ``asyncio``) so that installing httptools
or uvloop does not change, unseen, what is measured; the lifespan protocol is off
(``WsgiToAsgi`` takes only HTTP); and every request starts from an empty context
(``reset_contextvars``, see :mod:`.uvicorn_asgiref`).

With ``--workers`` above one the runner does what ``uvicorn.run`` does (bind the socket, hand it
to the ``Multiprocess`` supervisor) with one change: the listening socket says it is TCP
(:func:`tcp_listener`). uvicorn's ``Config.bind_socket`` leaves its ``proto`` at 0, accepted
sockets inherit that, and asyncio turns ``TCP_NODELAY`` on only for sockets that say
``IPPROTO_TCP`` (uvicorn #3149, open in 0.54). With Nagle's algorithm left on, the response
body, written after its headers, waits for the client's delayed ACK: every request on a
kept-alive connection after the first took 44 ms with a 0 ms view, and 16 keep-alive clients
got 338 requests/s from two workers (wrk), the ACK timer's rate, not the server's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import typing as t

from harness.servers._runner import runner_parser
from harness.servers._state import write_state

#: The app uvicorn loads in every serving process.
APP = "harness.servers._asgiref_app:app"


def tcp_listener(sock: socket.socket) -> socket.socket:
    """``sock``, a listening TCP socket, as a socket object whose ``proto`` is ``IPPROTO_TCP``
    (the same file descriptor), so that asyncio sets ``TCP_NODELAY`` on what it accepts."""
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())


def parser() -> argparse.ArgumentParser:
    rv = runner_parser("python -m harness.servers._uvicorn_runner", workers=True)
    rv.add_argument("--timeout-keep-alive", type=int, default=5)
    # uvicorn's own recycling: a worker exits after that many requests (plus up to the jitter),
    # and the supervisor starts another (the recycle fault).
    rv.add_argument("--limit-max-requests", type=int)
    rv.add_argument("--limit-max-requests-jitter", type=int, default=0)
    return rv


def main(argv: t.Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import uvicorn

    options: dict[str, t.Any] = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "http": "h11",
        "loop": "asyncio",
        "interface": "asgi3",
        "lifespan": "off",
        "access_log": False,
        "backlog": 1024,
        "timeout_keep_alive": args.timeout_keep_alive,
        "limit_max_requests": args.limit_max_requests,
        "limit_max_requests_jitter": args.limit_max_requests_jitter,
        # Each request's task starts from an empty context. Without it (uvicorn's default), a
        # request that arrives on a kept-alive connection before the previous response ended
        # starts in a copy of that response's context (CPython #140947; uvicorn #2167, #3158).
        "reset_contextvars": True,
    }
    config = uvicorn.Config(APP, **options)
    write_state(
        "master",
        {
            "pid": os.getpid(),
            "server_version": uvicorn.__version__,
            "workers": config.workers,
            "http": config.http,
            "loop": config.loop,
            "interface": config.interface,
            "lifespan": config.lifespan,
            "timeout_keep_alive": config.timeout_keep_alive,
            "limit_concurrency": config.limit_concurrency,
            "backlog": config.backlog,
            "limit_max_requests": config.limit_max_requests,
            "limit_max_requests_jitter": config.limit_max_requests_jitter,
            "reset_contextvars": config.reset_contextvars,
            "tcp_nodelay": True,  # tcp_listener (uvicorn #3149)
        },
    )
    if config.workers == 1:
        uvicorn.run(APP, **options)
        return
    from uvicorn.supervisors import Multiprocess

    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: the workers have stopped
        Multiprocess(config, sockets=[tcp_listener(config.bind_socket())]).run()


if __name__ == "__main__":
    main()
