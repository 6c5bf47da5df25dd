"""Registries of names to implementations (server modes, faults), filled by a class decorator.

Each registry is a plain ``dict`` owned by the module of its concept (``MODES`` in
:mod:`harness.servers.base`, ``FAULTS`` in :mod:`harness.faults.base`); :func:`registrar` makes
its ``register`` decorator, which adds one instance per class under the class's ``name``.
"""

from __future__ import annotations

import typing as t


class Named(t.Protocol):
    name: t.ClassVar[str]


_C = t.TypeVar("_C", bound=type[Named])


def registrar(table: dict[str, t.Any], kind: str) -> t.Callable[[_C], _C]:
    """A class decorator that adds an instance of the class to ``table`` under its ``name``;
    a name registered twice raises :class:`ValueError` naming the ``kind``."""

    def register(cls: _C) -> _C:
        if cls.name in table:
            raise ValueError(f"{kind} {cls.name!r} is registered twice")
        table[cls.name] = cls()
        return cls

    return register
