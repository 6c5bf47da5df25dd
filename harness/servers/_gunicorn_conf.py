"""gunicorn hooks that report what really runs: ``-c python:harness.servers._gunicorn_conf``.

Design note: this module is imported by the gunicorn *master*, before any worker forks, so it
imports nothing but the stdlib (gevent's worker patches the world after the fork; importing
gevent or the app here would put them in the master's unpatched process). ``when_ready`` runs
in the master once it listens; ``post_worker_init`` runs in each worker after it loaded
``harness.wsgi:app``, so it sees the worker class that gunicorn really chose (``sync`` with
``--threads > 1`` silently becomes ``gthread``) and whether gevent patched the process.
"""

from __future__ import annotations

import os
import sys
import typing as t

from harness.servers._state import die_with_parent, loaded_app_info, write_state

#: gunicorn worker classes by their short ``-k`` name.
WORKER_CLASS_NAMES = {
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent_pywsgi",
    "gunicorn.workers.gtornado.TornadoWorker": "tornado",
}


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


def when_ready(server: t.Any) -> None:
    cfg = server.cfg
    write_state(
        "master",
        {
            "pid": os.getpid(),
            "requested_worker_class": str(cfg.worker_class_str),
            "workers": cfg.workers,
            "threads": cfg.threads,
            "worker_connections": cfg.worker_connections,
            "keepalive": cfg.keepalive,
            "bind": list(cfg.bind),
            "preload_app": cfg.preload_app,
            "accesslog": cfg.accesslog,
        },
    )


def post_fork(server: t.Any, worker: t.Any) -> None:
    # Without this, a worker whose master was SIGKILLed lives on until its next heartbeat
    # check (up to half the worker timeout) with nobody to stop it. worker.ppid is the master
    # that forked it, so a master killed before this line is noticed too.
    die_with_parent(worker.ppid)


def post_worker_init(worker: t.Any) -> None:
    cls = type(worker)
    path = f"{cls.__module__}.{cls.__qualname__}"
    info = loaded_app_info()
    info.update(
        ppid=os.getppid(),
        worker_class=WORKER_CLASS_NAMES.get(path, path),
        worker_class_path=path,
        threads=worker.cfg.threads,
        worker_connections=worker.cfg.worker_connections,
        gevent_patched=_gevent_patched(),
    )
    write_state(f"worker-{os.getpid()}", info)
