"""The load driver: concurrent probe requests over raw sockets, every response checked.

``run_load(LoadSpec(...)) -> LoadResult``; see ``docs/architecture.md`` ("Load driver") and
:func:`harness.load.driver.run_load`.

The package also holds what a run's results are made of (``spec``, ``acks``, ``cpu``,
``fairness``), which the results model and the report import to read a run. Those must not
load the driver (its sockets, its selectors, the probe checker), so ``run_load`` and
``Progress`` are imported from ``driver`` on first use (PEP 562), not when the package is.
"""

from __future__ import annotations

import importlib
import typing as t

from .spec import CONNECTION_PATTERNS, ERROR_KINDS, LoadResult, LoadSpec

if t.TYPE_CHECKING:
    from .driver import Progress, run_load

__all__ = ["CONNECTION_PATTERNS", "ERROR_KINDS", "LoadResult", "LoadSpec", "Progress", "run_load"]

# Names this package gives from its driver module, loaded on first use.
_FROM_DRIVER = frozenset({"Progress", "run_load"})


def __getattr__(name: str) -> t.Any:
    if name in _FROM_DRIVER:
        return getattr(importlib.import_module(".driver", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
