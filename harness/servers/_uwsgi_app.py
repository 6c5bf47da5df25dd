"""What uWSGI loads: ``--module harness.servers._uwsgi_app:application`` (uWSGI only).

Design note: without ``--lazy-apps`` uWSGI imports this module once, in the master, and forks the
workers from it, so the app is loaded before any worker exists; ``uwsgi.post_fork_hook`` then
runs in every worker right after its fork and writes that worker's state file (its pid, its
worker id, whether gevent had patched ``threading`` when the app was imported, and whether
``--gevent-monkey-patch`` will patch it later: uWSGI does that when the worker's gevent loop
starts, after this hook, so it cannot be observed here). With ``--lazy-apps`` each worker
imports this module itself and reports at once. An import failure raises here, and
``--need-app`` makes uWSGI exit instead of serving 500s.
"""

from __future__ import annotations

import os
import sys
import typing as t

import uwsgi  # only importable inside a uWSGI process

from harness.servers._state import loaded_app_info, write_state


def _threading_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


#: Whether gevent had patched ``threading`` before the app was imported.
PATCHED_BEFORE_APP = _threading_patched()

from harness import wsgi  # noqa: E402  (after recording the patch state)

application = wsgi.app


def report_worker() -> None:
    """Write this worker's state file (``post_fork_hook``)."""
    opt: dict[str, t.Any] = getattr(uwsgi, "opt", {})
    info = loaded_app_info()
    info.update(
        ppid=os.getppid(),
        worker_id=uwsgi.worker_id(),
        server_version=_text(getattr(uwsgi, "version", None)),
        threads=int(_text(opt.get("threads")) or 1),
        gevent=int(_text(opt.get("gevent")) or 0),
        lazy_apps=uwsgi.worker_id() > 0 and "lazy-apps" in opt,
        patched_before_app=PATCHED_BEFORE_APP,
        patches_later="gevent-monkey-patch" in opt,
    )
    write_state(f"worker-{os.getpid()}", info)


def _text(value: t.Any) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None or value is True else str(value)


if uwsgi.worker_id() > 0:
    report_worker()  # loaded in the worker (--lazy-apps): the fork is already behind us
else:
    uwsgi.post_fork_hook = report_worker
