"""Context-storage backends: the correct default and the harness's negative controls.

Design note: the core keeps the active app context and request context in two *slots* with the
``ContextVar`` interface (``get(default)``, ``set(value) -> token``, ``reset(token)``), see
:mod:`core.storage`. This module provides the slots' correct implementation under a name and three
deliberately broken ones. A harness that reports "no leak" proves nothing until it has reported
the leaks of these mutants, so every isolation check runs against them too. None of them is ever
the default; they are installed only through :func:`install`.

What runs where, and why each one leaks or not:

``contextvar`` (:data:`core.storage.default_storage`)
    A ``ContextVar`` per concern. Every OS thread, every greenlet (greenlet >= 1.0) and every
    asyncio task has its own ``contextvars.Context``, and pop resets by token, so nothing is shared
    between concurrent requests and nothing survives a request. Leaks nowhere.

``shared-global``
    One process-wide value per concern. ``set`` returns a token that holds the previous value and
    ``reset`` puts it back, so one request at a time behaves perfectly; as soon as two requests
    overlap in one process (threads, greenlets or asyncio tasks) the second push overwrites the
    first and each sees the other's context. Leaks wherever requests overlap.

``thread-ident``
    A dict keyed by the OS thread id: what a ``threading.local`` created before gevent's
    monkey-patching does. The ``get_ident`` function is captured at import, and if gevent has
    already patched ``_thread`` by then (gunicorn's gevent worker patches before it loads the app)
    the original is taken back from ``gevent.monkey``, so the key is always the real OS thread.
    Isolated across real threads; every greenlet and every asyncio task of one thread shares one
    entry, so it leaks across concurrent greenlets and tasks.

``no-reset``
    A ``ContextVar`` per concern that is set on push and never reset on pop. Concurrent requests
    are isolated (each thread, greenlet and task has its own context), but the popped context stays
    visible to the next request served by the same thread, greenlet or task: residue on sequential
    reuse. A server that starts a new thread or greenlet per connection never shows it.

``never-release``
    One stack of values per execution unit, in a dict keyed by the unit object itself (the
    current greenlet, which is the thread's main greenlet outside gevent). Pop resets correctly,
    so requests never see each other's contexts; but the unit's entry is never dropped, and it
    holds the unit alive: every new thread or greenlet adds an entry for good. This is the
    werkzeug #2205 class (a ``Local`` that kept a storage entry per greenlet): a memory leak,
    not cross-talk. Only a soak (``ctxbench soak``) catches it, where units come and go (a
    greenlet or a thread per connection).

The mutants keep state outside any request (a global, a dict, a stale ContextVar value), which
:func:`core.storage.use_storage` rightly takes for an active context. :func:`clear` forgets that
state so that a test can switch back with :func:`restore_default`.
"""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Callable
from contextvars import ContextVar

from core import storage as core_storage
from core.storage import ContextStorage
from harness.osthread import original_get_ident
from harness.protocol import DEFAULT_BACKEND

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # greenlet is optional: a thread is then the only unit
    _getcurrent = None

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "MutantSlot",
    "NeverReleaseSlot",
    "NoResetSlot",
    "SharedGlobalSlot",
    "SlotToken",
    "ThreadIdentSlot",
    "clear",
    "install",
    "restore_default",
]


class _Missing:
    """The marker for "no value" (a slot may legitimately hold ``None``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: t.Final = _Missing()


#: The OS thread id, even when gevent had patched ``_thread`` before this module was imported.
_get_ident: Callable[[], int] = original_get_ident()


class SlotToken:
    """What a mutant slot's ``set`` returns: the slot, and the value to put back on ``reset``."""

    __slots__ = ("previous", "slot", "used")

    def __init__(self, slot: MutantSlot, previous: object) -> None:
        self.slot = slot
        self.previous = previous
        self.used = False

    def __repr__(self) -> str:
        return f"<SlotToken for {self.slot.name!r} previous={self.previous!r}>"


class MutantSlot:
    """Base of the broken slots: the ``ContextVar`` interface plus :meth:`clear`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def get(self, default: t.Any = None, /) -> t.Any:
        raise NotImplementedError

    def set(self, value: t.Any, /) -> t.Any:
        raise NotImplementedError

    def reset(self, token: t.Any, /) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every value this slot holds, in every thread, greenlet and task."""
        raise NotImplementedError

    def _check_token(self, token: object) -> SlotToken:
        # The same errors as ContextVar.reset: a foreign token is a ValueError, a token used
        # twice a RuntimeError. A mutant must break isolation only in the way it is meant to.
        if not isinstance(token, SlotToken) or token.slot is not self:
            raise ValueError(f"{token!r} was created by a different slot than {self!r}.")
        if token.used:
            raise RuntimeError(f"{token!r} has already been used once.")
        token.used = True
        return token


class SharedGlobalSlot(MutantSlot):
    """One value for the whole process, shared by every thread, greenlet and task."""

    __slots__ = ("_value",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._value: object = _MISSING

    def get(self, default: t.Any = None, /) -> t.Any:
        rv = self._value
        return default if rv is _MISSING else rv

    def set(self, value: t.Any, /) -> SlotToken:
        token = SlotToken(self, self._value)
        self._value = value
        return token

    def reset(self, token: t.Any, /) -> None:
        self._value = self._check_token(token).previous

    def clear(self) -> None:
        self._value = _MISSING


class ThreadIdentSlot(MutantSlot):
    """One value per OS thread, keyed by the ``get_ident`` captured at import."""

    __slots__ = ("_get_ident", "_values")

    def __init__(self, name: str, get_ident: Callable[[], int] | None = None) -> None:
        super().__init__(name)
        self._get_ident = _get_ident if get_ident is None else get_ident
        self._values: dict[int, object] = {}

    def get(self, default: t.Any = None, /) -> t.Any:
        return self._values.get(self._get_ident(), default)

    def set(self, value: t.Any, /) -> SlotToken:
        key = self._get_ident()
        token = SlotToken(self, self._values.get(key, _MISSING))
        self._values[key] = value
        return token

    def reset(self, token: t.Any, /) -> None:
        token = self._check_token(token)
        # Like a thread-local, reset acts on the calling thread's entry; popping the entry when
        # nothing was there before keeps ids of finished threads from piling up.
        key = self._get_ident()
        if token.previous is _MISSING:
            self._values.pop(key, None)
        else:
            self._values[key] = token.previous

    def clear(self) -> None:
        self._values.clear()


class NoResetSlot(MutantSlot):
    """A ``ContextVar`` that is set on push and never reset on pop."""

    __slots__ = ("_var",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._var: ContextVar[t.Any] = ContextVar(f"ctxbench.no-reset.{name}")

    def get(self, default: t.Any = None, /) -> t.Any:
        return self._var.get(default)

    def set(self, value: t.Any, /) -> SlotToken:
        self._var.set(value)
        return SlotToken(self, _MISSING)

    def reset(self, token: t.Any, /) -> None:
        # The bug under test: the token is accepted and the popped value stays where it is.
        self._check_token(token)

    def clear(self) -> None:
        # The stale values live in the contexts of threads, greenlets and tasks that cannot be
        # reached from here; a fresh ContextVar makes all of them unreachable at once.
        self._var = ContextVar(f"ctxbench.no-reset.{self.name}")


def _current_unit() -> object:
    """The object that stands for the running execution unit: its greenlet, else its thread."""
    if _getcurrent is not None:
        return _getcurrent()
    return threading.current_thread()


class NeverReleaseSlot(MutantSlot):
    """A stack of values per execution unit whose entry outlives the unit (never released)."""

    __slots__ = ("_stacks",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # Keyed by the greenlet or thread object itself: the key keeps the unit alive, so an
        # id is never reused and the dict only grows.
        self._stacks: dict[object, list[object]] = {}

    def get(self, default: t.Any = None, /) -> t.Any:
        stack = self._stacks.get(_current_unit())
        return stack[-1] if stack else default

    def set(self, value: t.Any, /) -> SlotToken:
        stack = self._stacks.setdefault(_current_unit(), [])
        stack.append(value)
        return SlotToken(self, len(stack) - 1)

    def reset(self, token: t.Any, /) -> None:
        depth = self._check_token(token).previous
        stack = self._stacks.get(_current_unit())
        if stack is not None and isinstance(depth, int):
            # The bug under test: the value goes, the (now empty) entry of the unit stays.
            del stack[depth:]

    def clear(self) -> None:
        self._stacks.clear()

    def __len__(self) -> int:
        """How many units have an entry (what a soak sees growing)."""
        return len(self._stacks)


def _mutant(name: str, slot_type: Callable[[str], MutantSlot]) -> Callable[[], ContextStorage]:
    def factory() -> ContextStorage:
        return ContextStorage(name, slot_type("app"), slot_type("request"))

    factory.__name__ = f"{name.replace('-', '_')}_storage"
    factory.__doc__ = f"Return a fresh {name!r} storage (a negative control)."
    return factory


def _default_storage() -> ContextStorage:
    """Return the core's correct storage (the same object every time)."""
    return core_storage.default_storage


#: Backend names to storage factories. Each mutant factory returns a fresh storage with empty
#: slots; ``contextvar`` returns the core's default storage.
BACKENDS: dict[str, Callable[[], ContextStorage]] = {
    DEFAULT_BACKEND: _default_storage,
    "shared-global": _mutant("shared-global", SharedGlobalSlot),
    "thread-ident": _mutant("thread-ident", ThreadIdentSlot),
    "no-reset": _mutant("no-reset", NoResetSlot),
    "never-release": _mutant("never-release", NeverReleaseSlot),
}


def install(name: str) -> ContextStorage:
    """Make the core use the backend called ``name`` and return the new storage.

    Call it at start-up, before any context is pushed in this thread: the core refuses to switch
    while a context is active (``RuntimeError``). An unknown name raises ``ValueError``.
    """
    try:
        factory = BACKENDS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in BACKENDS)
        raise ValueError(
            f"Unknown context-storage backend {name!r}. Valid backends: {valid}."
        ) from None
    storage = factory()
    core_storage.use_storage(storage)
    return storage


def clear(storage: ContextStorage | None = None) -> None:
    """Forget whatever a mutant storage (by default the one in use) still holds.

    A mutant can leave contexts behind that no pop will ever remove: stale ``no-reset`` values,
    a ``thread-ident`` entry left by greenlets that popped out of order, a ``shared-global`` value
    restored from an overlapping request. The correct storage holds nothing outside a ``with``
    block, so clearing it is a no-op.
    """
    if storage is None:
        storage = core_storage.current_storage()
    for slot in (storage.app, storage.request):
        if isinstance(slot, MutantSlot):
            slot.clear()


def restore_default() -> ContextStorage:
    """Clear the storage in use and switch back to the default; return the default.

    Meant for test teardown after a mutant run. It still raises ``RuntimeError`` if a context of
    the *default* storage is active in this thread: that is a real leak, not mutant residue.
    """
    clear()
    core_storage.use_storage(core_storage.default_storage)
    return core_storage.default_storage
