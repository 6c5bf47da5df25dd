"""Entry 5: One ``copy_current_request_context`` callable run in several pool threads.

Flask's ``copy_current_request_context`` copies the request context once, when it wraps the
function; the wrapper pushes and pops that one copy around each call. Submitted to a thread pool
several times at once (flask-executor's pattern, Flask #5252), the calls overlap: each thread
pushes the same copy, and each pop takes the *other* thread's token, which ``ContextVar.reset``
refuses (``ValueError``). The pops fail and the copy stays current in those pool threads, so a
later request's task sees this request (checked here on Flask 3.1: it still does). Fixed twin:
wrap the function once per submission.
"""

from __future__ import annotations

import contextlib
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from harness.expectations import LeakTraits
from harness.probe import observe

from ._common import entry, flask_twins

if t.TYPE_CHECKING:
    from flask import Flask

NAME = "residue.pool_request"
#: Pool threads, and the calls one request fans out to them.
POOL_SIZE = 4
FAN_OUT = 3


def _visible_request() -> str | None:
    # Runs in a pool thread before anything of this request was handed to it.
    from flask import has_request_context, request

    return request.args.get("token") if has_request_context() else None


def _lookup() -> str | None:
    from flask import request

    time.sleep(0.002)  # I/O in the task: the calls overlap
    return request.args.get("token")


def _build(app: Flask, *, fixed: bool) -> None:
    from flask import copy_current_request_context

    pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="corpus-pool")

    @app.before_request
    def fan_out() -> None:
        observe(NAME, pool.submit(_visible_request).result())
        if fixed:
            futures = [pool.submit(copy_current_request_context(_lookup)) for _ in range(FAN_OUT)]
        else:
            work = copy_current_request_context(_lookup)  # the bug: one copy, many threads
            futures = [pool.submit(work) for _ in range(FAN_OUT)]
        for future in futures:
            # A ValueError here is the failed pop; the app's own code never sees it.
            with contextlib.suppress(ValueError):
                future.result()


__getattr__ = flask_twins(__name__, _build)

ENTRY = entry(
    __name__,
    source="Flask #5252 (with flask-executor)",
    # The app's own pool threads outlive every request, whatever the server does.
    traits=LeakTraits(scope="process", resets=False),
    shows_through=frozenset({NAME}),
    fix="copy_current_request_context once per submitted call",
    note="yes (Flask 3.1.3): the overlapping pops raise ValueError and the copy stays"
    " current in the pool threads",
)
