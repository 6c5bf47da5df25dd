"""The tokens the load driver sends: ``<session>_<pid>x<load>-<user>-<seq>``.

Each request's token is its own. ``session`` is drawn once per ctxbench process, so every load
of a run shares it (the driver processes of a sharded load are given their prefix by the
process that starts them); ``pid`` and ``load`` number the loads, so that no two loads, in a
forked process either, send the same token. A value an answer holds where the request's token
belongs, and that does not start with that token's session, was carried by no request of this
run: what answered kept it from before the run (a cache, a process of an earlier run) or made
it up (:func:`carried_by_no_request`). Each is a leak all the same: a request saw a value that
is not its own.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["carried_by_no_request", "load_prefix"]

_SESSION = secrets.token_hex(4)
_loads = itertools.count()


def load_prefix() -> str:
    """A new load's token prefix: this process's session, its pid and the load's number."""
    return f"{_SESSION}_{os.getpid()}x{next(_loads)}"


def _session(token: str | None) -> str | None:
    """The session part of a token of this form (``a1b2c3d4_``); ``None`` for any other value
    (a token of results written before it, an app's name)."""
    if token is None:
        return None
    session, sep, rest = token.partition("_")
    if not sep or len(session) != 8 or "x" not in rest.partition("-")[0]:
        return None
    return session + sep


def carried_by_no_request(expected: str | None, seen: str | None) -> bool:
    """``seen``, found where the token ``expected`` belongs, was carried by no request of the
    run that sent ``expected``; ``False`` when that cannot be known (``expected`` is no token
    of this form)."""
    session = _session(expected)
    return session is not None and seen is not None and not seen.startswith(session)
