"""Entry 8: State bound to the per-thread asyncio event loop under gevent.

Sync code that needs a loop takes "the thread's loop" (``asyncio.get_event_loop()``, creating
and setting one when there is none) and hangs clients or per-user state on it. asyncio keeps
the current loop in a ``threading.local`` subclass created when ``asyncio`` is imported; in an
app preloaded into a gevent server that is before the patch, so every greenlet of a worker gets
the same loop, and whatever one request hangs on it the others see (asgiref #443, gunicorn
#3053). Checked here: with gunicorn's gevent worker importing the app after the patch, each
greenlet gets its own loop and nothing leaks; with ``--preload`` it leaks, and under eventlet it
always does, because ``import eventlet`` imports asyncio before ``monkey_patch()``. Fixed twin:
keep the state in a ``ContextVar``, not on the loop.
"""

from __future__ import annotations

import asyncio
import typing as t
import warnings

from harness.expectations import LeakTraits

from ._common import entry, flask_twins, keep_user_in_contextvar, keep_user_on

if t.TYPE_CHECKING:
    from flask import Flask

NAME = "loop_user"


def thread_loop() -> asyncio.AbstractEventLoop:
    """The calling thread's event loop, created and set on first use (the common idiom)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop


def _build(app: Flask, *, fixed: bool) -> None:
    if fixed:
        keep_user_in_contextvar(app, NAME)
    else:
        keep_user_on(app, NAME, thread_loop)  # the bug: the user hangs on the thread's loop


__getattr__ = flask_twins(__name__, _build)

ENTRY = entry(
    __name__,
    source="asgiref #443; gunicorn #3053",
    # asyncio's loop holder is a threading.local made when asyncio is imported.
    traits=LeakTraits(scope="thread-local", resets=True, created_by="asyncio"),
    shows_through=frozenset({NAME}),
    fix="per-request state in a ContextVar, not on the loop",
    preload=True,
    note="yes wherever asyncio is imported before the patch: gunicorn --preload, uWSGI's"
    " late patch, and always under eventlet (which imports asyncio itself); not when the"
    " worker patches first",
)
