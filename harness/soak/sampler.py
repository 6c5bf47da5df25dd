"""Once a second: every server process's RSS, open file descriptors and threads, and the load.

Design note: the sampler runs in a background thread of the harness while the load runs in the
main thread. Each tick it lists the server's processes anew (the master and every child of it,
so a worker that was respawned is followed under its new pid; not a helper that a supervisor
starts beside its workers and that serves nothing, :func:`harness.servers.is_helper`, which the
faults leave out too) and reads each one with psutil; a process that exits between the listing
and the read is skipped for that tick. The load's counts arrive through the driver's progress
callback (:meth:`Sampler.progress`, about twice a second, cumulative); each tick turns the
change since the previous tick into that second's requests per second, errors and leaks,
dividing by the time between the two progress reports, so the figure is right even when ticks
and reports drift apart. A tick with no new report (the harness itself was held up: the driver's
report or this thread's tick came late on a busy machine) records no load sample, since nothing
was measured; its requests count in the next one. So a load sample of 0 requests/s means the
server answered nothing between two reports, never that a report came late. The last tick, when
the load has ended, comes a fraction of a second after the one before: its requests join that
one's sample, whose rate then covers both (alone, a few hundredths of a second would be a rate
of its own, and the chart would end in a vertical line). psutil is imported
here only (``pip install 'ctxbench[soak]'``).
"""

from __future__ import annotations

import threading
import time
import typing as t

from harness.errors import UsageError
from harness.results import LoadSample, ProcessSample
from harness.servers import is_helper
from harness.servers.base import pip_install

__all__ = ["LoadSample", "ProcessSample", "Sampler", "import_psutil"]


def import_psutil() -> t.Any:
    """psutil, or a :class:`UsageError` saying how to install it."""
    try:
        import psutil
    except ImportError:
        raise UsageError(
            "ctxbench soak samples the server's processes with psutil, which is not installed:"
            f" {pip_install('soak')}"
        ) from None
    return psutil


class Sampler:
    """Samples the process tree under ``master_pid`` every ``interval`` seconds until stopped.

    ``single_process``: the master is the only process and serves requests (its role is then
    ``worker``). Read ``processes`` and ``load`` after :meth:`stop`.
    """

    def __init__(self, master_pid: int, *, single_process: bool, interval: float = 1.0) -> None:
        self.psutil = import_psutil()
        self.master_pid = master_pid
        self.single_process = single_process
        self.interval = interval
        self.processes: list[ProcessSample] = []
        self.load: list[LoadSample] = []
        self.started = 0.0
        self._procs: dict[int, t.Any] = {}
        self._latest: tuple[float, int, int, int] = (0.0, 0, 0, 0)
        self._previous: tuple[float, int, int, int] = (0.0, 0, 0, 0)
        self._before: tuple[float, int, int, int] = (0.0, 0, 0, 0)  # where _previous's sample began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self, requests: int, errors: int, leaks: int) -> None:
        """The driver's progress callback (cumulative counts)."""
        self._latest = (time.monotonic(), requests, errors, leaks)  # one atomic assignment

    @property
    def totals(self) -> tuple[int, int, int]:
        """Requests, errors and leaks so far, as the driver last reported them."""
        _, requests, errors, leaks = self._latest
        return requests, errors, leaks

    def start(self) -> Sampler:
        self.started = time.monotonic()
        self._latest = self._previous = self._before = (self.started, 0, 0, 0)
        self._thread = threading.Thread(target=self._run, name="ctxbench-soak", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tick(last=True)  # the last partial second

    def _run(self) -> None:
        next_tick = self.started + self.interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            self.tick()
            next_tick += self.interval

    def _tree(self) -> list[tuple[t.Any, str]]:
        psutil = self.psutil
        try:
            master = self._procs.get(self.master_pid) or psutil.Process(self.master_pid)
            self._procs[self.master_pid] = master
            children = master.children(recursive=True)
        except psutil.Error:
            return []
        rv = [(master, "worker" if self.single_process else "master")]
        for child in children:
            if is_helper(child.pid):  # multiprocessing's resource tracker: serves nothing
                continue
            proc = self._procs.setdefault(child.pid, child)  # keep one object per pid
            rv.append((proc, "worker"))
        return rv

    def tick(self, *, last: bool = False) -> None:
        now = time.monotonic()
        stamp = round(now - self.started, 3)
        psutil = self.psutil
        for proc, role in self._tree():
            try:
                with proc.oneshot():
                    sample = ProcessSample(
                        stamp, proc.pid, role, proc.memory_info().rss, proc.num_fds(),
                        proc.num_threads(),
                    )  # fmt: skip
            except psutil.Error:
                continue
            self.processes.append(sample)
        latest, previous = self._latest, self._previous
        span = latest[0] - previous[0]
        if span <= 0:  # no report since the last tick: nothing to say about the load
            return
        if last and self.load and stamp - self.load[-1].t < self.interval / 2:
            self.load.pop()  # a partial last second joins the one before (see the design note)
            previous = self._before
            span = latest[0] - previous[0]
        requests = latest[1] - previous[1]
        errors = latest[2] - previous[2]
        leaks = latest[3] - previous[3]
        self.load.append(
            LoadSample(
                stamp,
                # The driver counts an error when it checks a response, a little after it
                # counted the request done: a second of failures only can lag below zero.
                max(0.0, round((requests - errors) / span, 1)),
                requests,
                errors,
                leaks,
            )
        )
        self._before, self._previous = previous, latest
