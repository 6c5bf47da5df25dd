"""Serve ``harness.servers._asgiref_app:app`` with hypercorn (``python -m`` this module).

Design note: the runner fills hypercorn's own ``Config`` from its options, writes what it holds
(workers, worker class, keep-alive timeout, backlog) into ``master.json``, and runs it with
``hypercorn.run.run``, what hypercorn's command line calls. With ``--workers`` N, hypercorn binds
the socket and spawns N worker processes (``multiprocessing``'s spawn start method; they import
this module again as ``__mp_main__``, which does nothing); it replaces a worker that exits with
status 0 (``--max-requests``), and stops altogether when one dies otherwise (see
:mod:`.hypercorn_asgiref`). Each worker imports the app on its main thread, then runs its
asyncio loop there. No access log (hypercorn
logs none unless asked).
"""

from __future__ import annotations

import argparse
import os
import typing as t

from harness.servers._runner import runner_parser
from harness.servers._state import write_state

#: The app hypercorn loads in every worker process.
APP = "harness.servers._asgiref_app:app"


def parser() -> argparse.ArgumentParser:
    rv = runner_parser("python -m harness.servers._hypercorn_runner", workers=True)
    rv.add_argument("--keep-alive", type=float, default=5.0)
    # hypercorn's own recycling: a worker exits after that many requests (plus up to the
    # jitter), and the master starts another (the recycle fault).
    rv.add_argument("--max-requests", type=int)
    rv.add_argument("--max-requests-jitter", type=int, default=0)
    return rv


def main(argv: t.Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    from hypercorn.config import Config
    from hypercorn.run import run

    config = Config()
    config.application_path = APP
    config.bind = [f"{args.host}:{args.port}"]
    config.workers = args.workers
    config.worker_class = "asyncio"
    config.keep_alive_timeout = args.keep_alive
    config.backlog = 1024
    config.max_requests = args.max_requests
    config.max_requests_jitter = args.max_requests_jitter
    write_state(
        "master",
        {
            "pid": os.getpid(),
            "workers": config.workers,
            "worker_class": config.worker_class,
            "keep_alive_timeout": config.keep_alive_timeout,
            "backlog": config.backlog,
            "max_requests": config.max_requests,
            "max_requests_jitter": config.max_requests_jitter,
            "graceful_timeout": config.graceful_timeout,
        },
    )
    raise SystemExit(run(config))


if __name__ == "__main__":
    main()
