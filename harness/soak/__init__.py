"""Soak: a steady load for minutes, every server process sampled each second (RSS, file
descriptors, threads) beside the load's requests, errors and leaks per second.

``run_soak(mode, seconds=..., app=...)`` returns a :class:`harness.results.Soak` with the time
series and the verdict (:mod:`.verdict`); ``ctxbench soak --mode M --minutes N`` runs it and
writes it into the results and the report. Needs psutil (``pip install 'ctxbench[soak]'``).
"""

from __future__ import annotations

from harness.results import LoadSample, ProcessSample, ProcessTrend, Soak

from .runner import SoakInterrupted, default_warmup, run_soak
from .verdict import RSS_GROWTH_LIMIT, judge_soak, trends

__all__ = [
    "RSS_GROWTH_LIMIT",
    "LoadSample",
    "ProcessSample",
    "ProcessTrend",
    "Soak",
    "SoakInterrupted",
    "default_warmup",
    "judge_soak",
    "run_soak",
    "trends",
]
