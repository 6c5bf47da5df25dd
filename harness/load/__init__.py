"""The load driver: concurrent probe requests over raw sockets, every response checked.

``run_load(LoadSpec(...)) -> LoadResult``; see ``docs/architecture.md`` ("Load driver") and
:func:`harness.load.driver.run_load`.
"""

from __future__ import annotations

from .driver import Progress, run_load
from .spec import CONNECTION_PATTERNS, ERROR_KINDS, LoadResult, LoadSpec

__all__ = ["CONNECTION_PATTERNS", "ERROR_KINDS", "LoadResult", "LoadSpec", "Progress", "run_load"]
