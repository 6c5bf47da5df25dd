"""CPU use of the load driver and of the server under test, to tell which one was the limit.

A throughput figure measures the server only while the driver has CPU to spare. The driver
measures its own loop's thread (:func:`thread_cpu`): the time it ran on a CPU and, on Linux
(``/proc/thread-self/schedstat``), the time it was ready to run but waited for a CPU held by
other programs. Their sum over the wall time of the run is the driver's *demand*: near 1.0, the
server was waiting for the driver, whether the driver was working or queued for a core; a driver
facing a server slower than itself spends most of its run blocked on the network instead.

The server's CPU time comes from ``/proc`` too, summed over every thread of every process in its
process group, threads that ended included (gunicorn's master and workers, nginx's master and
workers: each server runs in its own group, see :mod:`harness.servers._process`):
:func:`group_cpu`. A measurement takes it
per process (:func:`processes_cpu`, :func:`cpu_between`): a worker that exits during it
(recycled after ``--max-requests``, killed) takes its CPU time with it, so that measurement's is
not known; a sum over the live processes went down then, a negative share. A share is CPU
seconds over wall seconds: 1.0 is one core busy for the whole measurement. Without ``/proc`` the
server's share and the driver's wait are not recorded; the driver's own CPU time always is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "DRIVER_BOUND_ADVICE",
    "DRIVER_BOUND_SHARE",
    "ThreadCpu",
    "cpu_between",
    "group_cpu",
    "machine_cpu",
    "processes_cpu",
    "saturated",
    "thread_cpu",
]

#: A driver process whose demand (on a CPU, or waiting for one) passed this share of its run was
#: saturated: its figures may measure the driver, not the server.
DRIVER_BOUND_SHARE = 0.90

#: What to do about a driver-bound cell; the terminal summary and the report print it.
DRIVER_BOUND_ADVICE = (
    "the load driver was saturated (on a CPU, or waiting for one, for more than 90% of the run),"
    " so this throughput may be the driver's, not the server's: add driver processes"
    " (--driver-processes N, or auto), stop other programs on this machine, or drive the server"
    " from more machines with the locustfile in master/worker mode (ctxbench locustfile;"
    " README, 'Load testing with locust')"
)

_PROC = Path("/proc")
_SCHEDSTAT = _PROC / "thread-self" / "schedstat"
try:
    _TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _TICKS = 100


class ThreadCpu(NamedTuple):
    """Seconds the calling thread ran on a CPU and waited for one (see :func:`thread_cpu`)."""

    on_cpu: float
    waiting: float
    #: Whether ``waiting`` was measured (Linux schedstat) or is just 0.0.
    known_wait: bool

    def __sub__(self, other: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(
            self.on_cpu - other.on_cpu,
            self.waiting - other.waiting,
            self.known_wait and other.known_wait,
        )


def thread_cpu() -> ThreadCpu:
    """The calling thread's CPU time so far and its time waiting on a run queue (Linux)."""
    try:
        on_cpu_ns, waiting_ns, _ = _SCHEDSTAT.read_text().split()
        return ThreadCpu(int(on_cpu_ns) / 1e9, int(waiting_ns) / 1e9, True)
    except (OSError, ValueError):
        return ThreadCpu(time.thread_time(), 0.0, False)


def group_cpu(pgid: int) -> ThreadCpu | None:
    """CPU time so far of every thread of the live processes in process group ``pgid``: the
    seconds they ran and (Linux schedstat) the seconds they waited for a CPU.

    Processes that already exited are not counted. Returns ``None`` where ``/proc`` is missing.
    """
    by_pid = processes_cpu([pgid])
    if by_pid is None:
        return None
    rv = ThreadCpu(0.0, 0.0, True)
    for used in by_pid.values():
        rv = ThreadCpu(
            rv.on_cpu + used.on_cpu, rv.waiting + used.waiting, rv.known_wait and used.known_wait
        )
    return rv


def processes_cpu(pgids: Iterable[int]) -> dict[int, ThreadCpu] | None:
    """CPU time so far of each live process in the process groups ``pgids``, by pid: what
    :func:`cpu_between` takes. Returns ``None`` where ``/proc`` is missing."""
    if not _PROC.is_dir():
        return None
    groups = set(pgids)
    rv: dict[int, ThreadCpu] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            if int(stat[stat.rindex(")") + 2 :].split()[2]) not in groups:
                continue
            tasks = list((entry / "task").iterdir())
        except (OSError, ValueError, IndexError):
            continue
        on_cpu = waiting = 0.0
        known_wait = True
        # The process's tick counts include its threads that exited (a server's thread per
        # connection); the live threads' own, the rest: those are added to the live threads'
        # schedstat, so a thread that ends during a measurement keeps its time in it.
        dead_ticks = _ticks(stat)
        for task in tasks:
            try:
                ran, waited, _ = (task / "schedstat").read_text().split()
                task_ticks = _ticks((task / "stat").read_text())
                on_cpu += int(ran) / 1e9
                waiting += int(waited) / 1e9
                dead_ticks -= task_ticks
            except (OSError, ValueError, IndexError):
                # No schedstat (or a thread gone meanwhile): the whole process's tick counts.
                on_cpu, waiting, dead_ticks = _ticks(stat) / _TICKS, 0.0, 0
                known_wait = False
                break
        rv[int(entry.name)] = ThreadCpu(on_cpu + max(0, dead_ticks) / _TICKS, waiting, known_wait)
    return rv


def _ticks(stat: str) -> int:
    """User and system clock ticks of a ``/proc`` stat line: a process's include its threads
    that exited, a thread's (``task/<tid>/stat``) are its own."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_between(
    before: Mapping[int, ThreadCpu] | None, after: Mapping[int, ThreadCpu] | None
) -> ThreadCpu | None:
    """The CPU time the processes used between two :func:`processes_cpu` snapshots, or ``None``
    when it is not known: ``/proc`` is missing, or a process of ``before`` exited in between
    (a worker recycled after ``--max-requests``, killed, reloaded), taking the time it used
    with it. A process started in between counts from its start."""
    if before is None or after is None or not before.keys() <= after.keys():
        return None
    rv = ThreadCpu(0.0, 0.0, True)
    for pid, used in after.items():
        if pid in before:
            used -= before[pid]
        rv = ThreadCpu(
            rv.on_cpu + used.on_cpu, rv.waiting + used.waiting, rv.known_wait and used.known_wait
        )
    return rv


def machine_cpu() -> float | None:
    """CPU seconds the whole machine spent so far running programs (user, nice and system time
    of every CPU) or lost to other machines on its host (steal); ``None`` without ``/proc/stat``.

    Interrupt time is left out: on loopback it grows with the requests the run itself sends.
    """
    try:
        fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()
        user, nice, system, steal = (int(fields[i]) for i in (1, 2, 3, 8))
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + steal) / _TICKS


def saturated(cpu: Sequence[float], cpu_wait: Sequence[float]) -> bool:
    """Whether any driver process was saturated: its demand (the share of its run on a CPU plus
    the share spent waiting for one) passed :data:`DRIVER_BOUND_SHARE`.

    ``cpu`` and ``cpu_wait`` hold one share per driver process (:attr:`LoadResult.driver_cpu`
    and :attr:`LoadResult.driver_cpu_wait`); ``cpu_wait`` may be empty where it is not known,
    and then the CPU share decides alone.
    """
    waits = list(cpu_wait) if len(cpu_wait) == len(cpu) else [0.0] * len(cpu)
    return any(used + waited > DRIVER_BOUND_SHARE for used, waited in zip(cpu, waits, strict=True))
