"""What the harness's runners share: the command line a mode starts its runner with.

werkzeug, waitress, eventlet, uvicorn and hypercorn are served through a small runner of ours
(``harness.servers._<server>_runner``), which builds the server from its options, reports what
ran (:mod:`harness.servers._state`) and serves. Its mode starts it with ``--host`` and ``--port``
(and ``--workers`` where the server supervises worker processes), then the runner's own options
and the user's ``--server-arg``: :func:`runner_parser` reads the first ones, and each runner
adds its server's own options, under the server's own names.
"""

from __future__ import annotations

import argparse

from harness.servers._process import HOST

__all__ = ["runner_parser"]


def runner_parser(prog: str, *, workers: bool = False) -> argparse.ArgumentParser:
    """A runner's command line: ``--host`` (default ``127.0.0.1``) and ``--port``, and with
    ``workers`` ``--workers``, the number of worker processes; add the server's own options."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    if workers:
        parser.add_argument("--workers", type=int, required=True)
    return parser
