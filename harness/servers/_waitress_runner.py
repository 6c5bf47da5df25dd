"""Serve ``harness.wsgi:app`` with waitress (``python -m`` this module).

Design note: waitress runs one process: an asyncore-style loop on the main thread reads and
parses requests, and a fixed pool of ``--threads`` threads (named ``waitress-N``) runs the app,
fed from one task queue. The app is loaded before the socket is bound, so an import failure ends
the process before it ever listens. No access log (waitress has none).
"""

from __future__ import annotations

import argparse
import socket
import typing as t

from harness.servers._runner import runner_parser
from harness.servers._state import loaded_app_info, write_state


def parser() -> argparse.ArgumentParser:
    rv = runner_parser("python -m harness.servers._waitress_runner")
    rv.add_argument("--threads", type=int, required=True)
    rv.add_argument("--connection-limit", type=int, required=True)
    return rv


def main(argv: t.Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import waitress
    from waitress.server import create_server

    from harness import wsgi

    app = wsgi.app  # load first (a failure ends the process before it listens), then report
    server = create_server(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=args.connection_limit,
        backlog=1024,
        ident="waitress",
    )
    adj = server.adj
    info = loaded_app_info()
    info.update(
        server_version=getattr(waitress, "__version__", None),
        threads=adj.threads,
        connection_limit=adj.connection_limit,
        channel_timeout=adj.channel_timeout,
        tcp_nodelay=(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in adj.socket_options,
    )
    write_state(f"worker-{info['pid']}", info)
    server.run()


if __name__ == "__main__":
    main()
