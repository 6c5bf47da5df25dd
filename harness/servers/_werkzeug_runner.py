"""Serve ``harness.wsgi:app`` with werkzeug's dev server (``python -m`` this module).

Design note: this is what a Flask-style ``app.run()`` does: ``run_simple(threaded=True)`` in one
process, which starts a new daemon thread for every connection (unbounded) and answers every
request with ``Connection: close``. No reloader, no debugger, no access log. The app is loaded
before the socket is bound, so an import failure ends the process before it ever listens.
"""

from __future__ import annotations

import argparse
import typing as t

from harness.servers._runner import runner_parser
from harness.servers._state import loaded_app_info, write_state


def parser() -> argparse.ArgumentParser:
    return runner_parser("python -m harness.servers._werkzeug_runner")


def main(argv: t.Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import werkzeug
    from werkzeug.serving import WSGIRequestHandler, run_simple

    from harness import wsgi

    class QuietRequestHandler(WSGIRequestHandler):
        """No access log: logging every request costs throughput the benchmark would measure."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    app = wsgi.app  # load first (a failure ends the process before it listens), then report
    info = loaded_app_info()
    info.update(server_version=getattr(werkzeug, "__version__", None))
    write_state(f"worker-{info['pid']}", info)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        use_debugger=False,
        request_handler=QuietRequestHandler,
    )


if __name__ == "__main__":
    main()
