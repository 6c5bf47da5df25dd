"""Serve ``harness.wsgi:app`` with ``eventlet.wsgi.server``, monkey-patched first.

Design note: the process must be monkey-patched before anything imports ``socket``,
``threading`` or the app, and importing this module imports the ``harness.servers`` package
first; so the mode starts Python with :data:`BOOTSTRAP` (``python -c``), which patches and only
then imports this module and calls :func:`main`. The app is loaded before the socket is bound,
so an import failure ends the process before it ever listens. No access log, no tracebacks in
responses; ``TCP_NODELAY`` is set on the listening socket (accepted sockets inherit it), or every
keep-alive response would wait for the client's delayed ACK.
"""

from __future__ import annotations

import argparse
import socket
import sys
import typing as t

from harness.servers._runner import runner_parser
from harness.servers._state import loaded_app_info, write_state

#: What ``python -c`` runs: patch the world, then serve.
BOOTSTRAP = (
    "import eventlet; eventlet.monkey_patch(); "
    "from harness.servers._eventlet_runner import main; main()"
)


def parser() -> argparse.ArgumentParser:
    rv = runner_parser("ctxbench eventlet runner")
    rv.add_argument("--max-size", type=int, required=True)
    return rv


def main(argv: t.Sequence[str] | None = None) -> None:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)

    import eventlet
    import eventlet.patcher
    import eventlet.wsgi

    from harness import wsgi

    app = wsgi.app  # load first (a failure ends the process before it listens), then report
    listener = eventlet.listen((args.host, args.port), backlog=1024)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    info = loaded_app_info()
    info.update(
        server_version=getattr(eventlet, "__version__", None),
        max_size=args.max_size,
        eventlet_patched=eventlet.patcher.is_monkey_patched("thread"),
    )
    write_state(f"worker-{info['pid']}", info)
    eventlet.wsgi.server(
        listener, app, max_size=args.max_size, keepalive=True, log_output=False, debug=False
    )
