"""The verdict of a soak, from its samples (pure: no I/O).

After the warm-up, each server process that lived through the whole measured window must keep
its resident memory within :data:`RSS_GROWTH_LIMIT` of where it started, and its open file
descriptors must not keep growing; the load must see no leak and no error. RSS is compared as
the median of a few samples at each end of the window (one sample is noise: a garbage
collection, a burst of connections). File descriptors "keep growing" when even the fewest seen
in the last third of the window are more than the most seen in its first third: a count that
only moves with the connections in flight does not do that, a leaked descriptor per request
does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from harness.report.text import fmt_limit, fmt_mib, plural
from harness.results import SOAK_NOT_JUDGED, LoadSample, ProcessSample, ProcessTrend, median

__all__ = ["RSS_GROWTH_LIMIT", "ProcessTrend", "judge_soak", "trends"]

#: RSS may grow by at most this fraction after the warm-up.
RSS_GROWTH_LIMIT = 0.05
#: Samples whose median stands for each end of the window.
END_SAMPLES = 5
#: Samples in the window below which a process's descriptors are not judged: a third of them at
#: each end is too few to tell a growing count from the connections in flight.
FDS_MIN_SAMPLES = 6


def trends(samples: Sequence[ProcessSample], warmup_s: float, end_s: float) -> list[ProcessTrend]:
    """Each process's trend over ``[warmup_s, end_s]``."""
    by_pid: dict[int, list[ProcessSample]] = defaultdict(list)
    for sample in samples:
        if sample.t >= warmup_s:
            by_pid[sample.pid].append(sample)
    rv = []
    for pid, series in sorted(by_pid.items()):
        series.sort(key=lambda s: s.t)
        whole = series[0].t <= warmup_s + 1.5 and series[-1].t >= end_s - 1.5
        n = min(END_SAMPLES, max(1, len(series) // 3))
        start = int(median([s.rss for s in series[:n]]))
        end = int(median([s.rss for s in series[-n:]]))
        third = max(1, len(series) // 3)
        fds_growing = len(series) >= FDS_MIN_SAMPLES and min(s.fds for s in series[-third:]) > max(
            s.fds for s in series[:third]
        )
        rv.append(
            ProcessTrend(
                pid=pid,
                role=series[0].role,
                whole_window=whole,
                rss_start=start,
                rss_end=end,
                rss_growth=round((end - start) / start, 4) if start else 0.0,
                fds_start=series[0].fds,
                fds_end=series[-1].fds,
                fds_growing=fds_growing,
                threads_end=series[-1].threads,
                samples=len(series),
            )
        )
    return rv


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def judge_soak(
    process_trends: Sequence[ProcessTrend],
    load: Sequence[LoadSample],
    *,
    limit: float = RSS_GROWTH_LIMIT,
) -> tuple[str, str]:
    """``(verdict, reason)``: ``ok``, ``LEAK`` (requests saw another's state), ``errors``,
    ``memory`` (RSS grew past ``limit``), ``fds`` (descriptors kept growing), or ``no data``."""
    leaks = sum(s.leaks for s in load)
    errors = sum(s.errors for s in load)
    judged = [p for p in process_trends if p.whole_window]
    if not judged:
        return SOAK_NOT_JUDGED, "no server process was sampled through the whole measured window"
    if leaks:
        return "LEAK", f"{leaks:,} leaking observations during the soak"
    grown = [p for p in judged if p.rss_growth > limit]
    if grown:
        worst = max(grown, key=lambda p: p.rss_growth)
        return "memory", (
            f"RSS of {_processes(len(grown))} grew more than {fmt_limit(limit)} after the warm-up;"
            f" worst: {worst.role} {worst.pid} {fmt_mib(worst.rss_start)} ->"
            f" {fmt_mib(worst.rss_end)} (+{worst.rss_growth:.1%})"
        )
    growing = [p for p in judged if p.fds_growing]
    if growing:
        worst = max(growing, key=lambda p: p.fds_end - p.fds_start)
        return "fds", (
            f"open file descriptors kept growing in {_processes(len(growing))}; worst:"
            f" {worst.role} {worst.pid} {worst.fds_start} -> {worst.fds_end}"
        )
    if errors:
        return "errors", f"{errors:,} requests failed during the soak"
    worst = max(judged, key=lambda p: p.rss_growth)
    # A soak of a few seconds has too few samples to tell: say so, not "steady".
    few = min(p.samples for p in judged)
    fds = (
        "descriptors steady"
        if few >= FDS_MIN_SAMPLES
        else (
            f"descriptors not judged ({plural(few, 'sample')} after the warm-up, {FDS_MIN_SAMPLES}"
            " needed: soak longer)"
        )
    )
    return "ok", (
        f"{_processes(len(judged))} within {fmt_limit(limit)} (largest RSS change"
        f" {worst.rss_growth:+.1%}), {fds}"
    )
