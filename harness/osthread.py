"""The identity of the OS thread, even inside a gevent- or eventlet-patched process.

Design note: gevent's ``monkey.patch_all()`` and eventlet's ``monkey_patch()`` replace
``_thread.get_ident`` with a function that returns the id of the current *greenlet*. Anything
that wants the real OS thread (the evidence of a leak between greenlets of one thread, or a
thread-local created before the patch) takes the original back, with
``gevent.monkey.get_original`` or ``eventlet.patcher.original``. Without ``gevent.monkey`` or
``eventlet.patcher`` imported nothing can have been patched, and neither is imported here.
"""

from __future__ import annotations

import _thread
import sys
from collections.abc import Callable

__all__ = ["original_get_ident"]


def original_get_ident() -> Callable[[], int]:
    """Return the unpatched ``_thread.get_ident``: it keys by the OS thread, never a greenlet."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        get_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")
        return get_ident
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        original: Callable[[], int] = patcher.original("_thread").get_ident
        return original
    return _thread.get_ident
