"""Entry 4: A cache keyed by ``id()`` of a request-scoped object.

The app memoizes the user it resolved for a request in a process-wide dict keyed by ``id(g)``
and never evicts it. Once that ``g`` is gone, CPython hands its address to a later object: a
later request's ``g`` can take it and inherit the dead request's user (asgiref #144 keyed by
``id()`` the same way). A chance leak: it needs an address to be reused, so its catch rate per
mode is measured, not asserted. Fixed twin: a ``WeakKeyDictionary``, whose entries die with
their keys.
"""

from __future__ import annotations

import typing as t
import weakref

from harness.expectations import LeakTraits
from harness.probe import current_token, observe

from ._common import entry, flask_twins

if t.TYPE_CHECKING:
    from flask import Flask

NAME = "cached_user"


def _build(app: Flask, *, fixed: bool) -> None:
    from flask import g

    cache: t.Any = weakref.WeakKeyDictionary() if fixed else {}

    @app.before_request
    def resolve_user() -> None:
        holder = g._get_current_object()
        key = holder if fixed else id(holder)  # the bug: an address outlives its object
        observe(NAME, cache.setdefault(key, current_token()))


__getattr__ = flask_twins(__name__, _build)

ENTRY = entry(
    __name__,
    source="asgiref #144; apps keying by id(app_ctx) or id(g)",
    traits=LeakTraits(
        scope="process",
        resets=False,
        chance="only when a later request's g takes the address of a dead one",
    ),
    shows_through=frozenset({NAME}),
    fix="a WeakKeyDictionary keyed by the object itself",
)
