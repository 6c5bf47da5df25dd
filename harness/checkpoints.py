"""Checkpoints: named moments of a run where a test can stop the harness and kill it.

The crash-safety tests (``scenarios/test_kill9.py``) SIGKILL a real ``ctxbench run`` while it
starts a server, while it is under load and while it writes results, and then check what it left
behind. To kill it at those moments deterministically, instead of sleeping and hoping, the test
starts the harness with::

    CTXBENCH_CHECKPOINT=<point>[#<n>]:<file>

When the harness reaches ``point`` (the n-th time in this process; the first by default) it
writes its pid to ``file``, and at a point that *pauses* it then waits there, doing nothing,
until it is killed. Without the variable a checkpoint costs one environment lookup.

The points:

- ``server-spawned`` (pauses): a server's process has just been started, before it is ready
  (:func:`harness.servers.base.start_server`);
- ``load`` (does not pause): a measurement's load driver has had its first responses checked;
  the load goes on, so a kill lands with requests in flight;
- ``write:<file name>`` (pauses), e.g. ``write:results.json``: the new content is complete and
  on disk under a temporary name, and not yet renamed over the file
  (:func:`harness.results.write_atomic`).

This is a test hook: it never changes what a run does unless the variable is set.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

__all__ = ["CHECKPOINT_ENV", "checkpoint"]

CHECKPOINT_ENV = "CTXBENCH_CHECKPOINT"

_reached: Counter[str] = Counter()


def checkpoint(point: str, *, pause: bool = True) -> None:
    """Mark that the harness reached ``point``; see the module docstring."""
    spec = os.environ.get(CHECKPOINT_ENV)
    if not spec:
        return
    # "<point>[#<n>]:<file>"; a point name may itself hold a colon ("write:results.json").
    wanted, _, marker = spec.rpartition(":")
    name, _, nth = wanted.partition("#")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] != (int(nth) if nth else 1):
        return
    tmp = Path(f"{marker}.tmp")
    tmp.write_text(str(os.getpid()), encoding="utf-8")
    os.replace(tmp, marker)
    while pause:
        time.sleep(3600)
