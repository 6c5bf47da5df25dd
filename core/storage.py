"""Where the current app context and request context live.

Design note: the core keeps exactly two pieces of per-request state, the active app context and
the active request context, each in a *slot* with the ``ContextVar`` interface (``get``,
``set`` returning a token, ``reset(token)``). The default slots are two module-level
``ContextVar``s. A ``ContextVar`` is isolated per OS thread, per greenlet (greenlet >= 1.0 gives
every greenlet its own ``contextvars.Context``) and per asyncio task (each task runs in a copy of
its creator's context), and resetting by token restores exactly what was there before the push.
That is why the default storage cannot leak between requests, whatever the server runs them on.

The slots are swappable at start-up through :func:`use_storage`. This seam exists so that the
harness can run the core with deliberately broken storage (its negative controls, which live in
``harness.backends``); the core itself knows nothing of them and never uses anything but the
default unless told to.

Core modules read the active slots as ``storage.app_slot`` / ``storage.request_slot`` (an
attribute of this module, looked up at call time), never ``from core.storage import app_slot``,
which would freeze the slot at import.
"""

from __future__ import annotations

import typing as t
from contextvars import ContextVar

__all__ = [
    "ContextSlot",
    "ContextStorage",
    "app_slot",
    "current_storage",
    "default_storage",
    "request_slot",
    "use_storage",
]


class ContextSlot(t.Protocol):
    """The part of the ``ContextVar`` interface that the core uses."""

    def get(self, default: None, /) -> t.Any: ...

    def set(self, value: t.Any, /) -> t.Any: ...

    def reset(self, token: t.Any, /) -> None: ...


class ContextStorage:
    """A named pair of slots: one for the app context, one for the request context."""

    __slots__ = ("app", "name", "request")

    def __init__(self, name: str, app: ContextSlot, request: ContextSlot) -> None:
        self.name = name
        self.app = app
        self.request = request

    def __repr__(self) -> str:
        return f"<ContextStorage {self.name!r}>"


_cv_app: ContextVar[t.Any] = ContextVar("core.app_ctx")
_cv_request: ContextVar[t.Any] = ContextVar("core.request_ctx")

#: The correct storage: one ContextVar per concern, reset by token on pop.
default_storage = ContextStorage("contextvar", _cv_app, _cv_request)

_storage: ContextStorage = default_storage
app_slot: ContextSlot = _cv_app
request_slot: ContextSlot = _cv_request


def current_storage() -> ContextStorage:
    """Return the storage in use."""
    return _storage


def use_storage(storage: ContextStorage) -> ContextStorage:
    """Swap the context storage and return the one that was in use.

    Call it at start-up, before the first request, from the thread that will not be serving a
    request at the time. Swapping while a context is active here would strand that context in
    the old storage, so it raises ``RuntimeError`` instead.
    """
    global _storage, app_slot, request_slot
    if not isinstance(storage, ContextStorage):
        raise TypeError(f"use_storage() takes a ContextStorage, got {storage!r}.")
    if app_slot.get(None) is not None or request_slot.get(None) is not None:
        raise RuntimeError(
            f"Cannot switch context storage to {storage.name!r} while an app or request"
            " context is active.\n\nThe active context would be stranded in the old storage."
            " Switch storage at start-up, before any context is pushed."
        )
    previous = _storage
    _storage = storage
    app_slot = storage.app
    request_slot = storage.request
    return previous
