"""More than one driver process: the virtual users shared out, the results merged.

Design note: one driver process checks a few tens of thousands of responses per second on one
core (``benchmarks/driver_vs_wrk.py``); a fast server on a large machine answers more. With
``LoadSpec(processes=N)`` the parent starts N driver processes (``python -m
harness.load.shards``, a fresh interpreter each: nothing of the parent, no gevent patching, no
inherited sockets), gives each its share of the virtual users (and of ``requests``), lets them
all start at once, and merges what they saw. Each child runs the ordinary single-threaded loop
of :mod:`harness.load.driver` with its own run id, so every token of the run stays unique; the
parent only relays progress and waits.

The merge keeps the single-process semantics: counts, error kinds, statuses, injected failures,
reconnects and the delayed-ACK counts (``acks``) add up; evidence is concatenated up to
``max_evidence``; the units seen are the union; latencies are the union of every sample (no
percentile is averaged); ``rps`` is the sum of the processes' rates, each over its own measured
window, and ``elapsed_s`` the longest window. ``driver_cpu`` and ``driver_cpu_wait`` keep one
entry per process, so a cell is driver-bound when any one process was saturated; so do
``waits``, judged together for starved users on the machine's one monotonic clock
(:mod:`harness.load.fairness`).

Parent and children talk over pipes in frames (4-byte length, then a pickle): the child sends
``ready``, waits for one byte on stdin, then sends ``progress`` frames and one ``result`` (or
``error``) frame. Pickles only ever travel between this process and the children it started.
"""

from __future__ import annotations

import functools
import os
import pickle
import selectors
import struct
import subprocess
import sys
import time
import traceback
import typing as t
from collections.abc import Callable, Sequence
from dataclasses import replace

from .spec import LoadResult, LoadSpec
from .tokens import load_prefix

__all__ = ["auto_processes", "merge_results", "run_sharded", "split"]

Progress = Callable[[int, int, int], None]

_HEADER = struct.Struct("!I")
#: Seconds a child may take to start (a fresh interpreter importing the driver).
_START_TIMEOUT = 60.0


def auto_processes(concurrency: int) -> int:
    """``--driver-processes auto``: half the CPUs this process may use (the other half is left
    to the server under test), at least 1 and at most one per virtual user."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus // 2, concurrency))


def split(total: int, parts: int) -> list[int]:
    """``total`` shared out as evenly as possible over ``parts`` (the first ones get one more)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def merge_results(results: Sequence[LoadResult], max_evidence: int) -> LoadResult:
    """One :class:`LoadResult` from the results of driver processes that ran side by side."""
    merged = LoadResult()
    units: set[tuple[int, int, int | None]] = set()
    for rv in results:
        merged.requests += rv.requests
        merged.errors += rv.errors
        merged.leaks += rv.leaks
        merged.framework_leaks += rv.framework_leaks
        merged.leaky_requests += rv.leaky_requests
        merged.reconnects += rv.reconnects
        merged.injected += rv.injected
        merged.rps += rv.rps
        merged.elapsed_s = max(merged.elapsed_s, rv.elapsed_s)
        room = max_evidence - len(merged.evidence)
        if room > 0:
            merged.evidence.extend(rv.evidence[:room])
        merged.latencies_ms.extend(rv.latencies_ms)
        units.update(rv.units)
        _add(merged.error_kinds, rv.error_kinds)
        _add(merged.statuses, rv.statuses)
        _add(merged.injected_outcomes, rv.injected_outcomes)
        merged.driver_cpu.extend(rv.driver_cpu)
        merged.driver_cpu_wait.extend(rv.driver_cpu_wait)
        merged.waits.extend(rv.waits)
        merged.acks += rv.acks
    merged.units = sorted(units, key=lambda u: (u[0], u[1], u[2] or -1))
    merged.observed = tuple(sorted({name for rv in results for name in rv.observed}))
    firsts = [rv.first_leak_at for rv in results if rv.first_leak_at is not None]
    if firsts:
        # Each shard counts its own requests; the shards run side by side at about the same
        # rate, so the run had finished about that many per shard when the first leak came.
        merged.first_leak_at = min(firsts) * len(results)
    if len(merged.driver_cpu_wait) != len(merged.driver_cpu):
        merged.driver_cpu_wait = []
    return merged


_K = t.TypeVar("_K")


def _add(into: dict[_K, int], counts: dict[_K, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


# -- the parent ------------------------------------------------------------------------------


class _Child:
    def __init__(self, index: int, spec: LoadSpec, run_id: str) -> None:
        # Here, not at the top: importing harness.servers imports every server mode, which a
        # child (a fresh interpreter running this module) has no use for.
        from harness.servers._state import die_with_parent

        self.index = index
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness.load.shards"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Killed with the harness, even by kill -9, as the servers are: a driver left alone
            # loads the port for the rest of its duration. Only prctl between fork and exec;
            # the harness's pid is taken before the fork.
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        stdin = t.cast(t.IO[bytes], self.process.stdin)
        stdin.write(_frame((spec, run_id)))
        stdin.flush()
        self.stdout = t.cast(t.IO[bytes], self.process.stdout)
        # Appended to in place: a result of tens of MB comes in 64 KiB reads, and a bytes
        # object joined at each read would copy all of it again every time.
        self.buffer = bytearray()
        self.ready = False
        self.progress = (0, 0, 0)
        self.result: LoadResult | None = None
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                return
            kind, payload = pickle.loads(self.buffer[_HEADER.size : _HEADER.size + size])
            del self.buffer[: _HEADER.size + size]
            if kind == "ready":
                self.ready = True
            elif kind == "progress":
                self.progress = payload
            elif kind == "result":
                self.result = payload
            else:
                self.error = str(payload)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def go(self) -> None:
        stdin = t.cast(t.IO[bytes], self.process.stdin)
        stdin.write(b"g")
        stdin.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stdout.close()
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


def _pump(children: list[_Child], until: Callable[[], bool], deadline: float) -> None:
    """Read the children's frames until ``until()`` holds; raise if a child dies or time is up."""
    with selectors.DefaultSelector() as selector:
        for child in children:
            selector.register(child.stdout, selectors.EVENT_READ, child)
        while not until():
            if time.monotonic() > deadline:
                raise RuntimeError("a driver process did not answer in time")
            for key, _ in selector.select(timeout=0.25):
                child = t.cast(_Child, key.data)
                data = os.read(key.fd, 1 << 16)
                if data:
                    child.feed(data)
                    continue
                selector.unregister(key.fileobj)
                if not child.finished:
                    code = child.process.wait()
                    raise RuntimeError(
                        f"driver process {child.index} exited with status {code} before"
                        " sending its result"
                    )
            for child in children:
                if child.error is not None:
                    raise RuntimeError(f"driver process {child.index} failed:\n{child.error}")


def run_sharded(spec: LoadSpec, progress: Progress | None = None) -> LoadResult:
    """Run ``spec`` over ``spec.processes`` driver processes and merge their results.

    Same contract as :func:`harness.load.run_load`, which calls this when ``processes > 1``.
    """
    parts = spec.processes
    users = split(spec.concurrency, parts)
    requests = split(spec.requests, parts) if spec.requests is not None else [None] * parts
    base = load_prefix()
    children: list[_Child] = []
    try:
        for i in range(parts):
            shard = replace(spec, concurrency=users[i], requests=requests[i], processes=1)
            children.append(_Child(i, shard, f"{base}p{i}"))
        _pump(children, lambda: all(c.ready for c in children), time.monotonic() + _START_TIMEOUT)
        for child in children:
            child.go()
        bound = (spec.duration or 0.0) + spec.timeout * 2 + _START_TIMEOUT
        if spec.duration is None:
            bound = float("inf")  # bounded by the request count; each request by its timeout
        last = 0.0
        errors = 0

        def finished() -> bool:
            nonlocal last, errors
            counts = [sum(c.progress[k] for c in children) for k in range(3)]
            # Twice a second, and at once on new errors: a child reports a refused connection
            # at once, and the caller may know the server is gone (see driver.Progress).
            if progress is not None and (time.monotonic() - last >= 0.5 or counts[1] > errors):
                last, errors = time.monotonic(), counts[1]
                progress(*counts)
            return all(c.finished for c in children)

        _pump(children, finished, time.monotonic() + bound)
    finally:
        for child in children:
            child.stop()
    merged = merge_results([t.cast(LoadResult, c.result) for c in children], spec.max_evidence)
    if progress is not None:
        progress(merged.requests, merged.errors, merged.leaks)
    return merged


def _frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


# -- the child -------------------------------------------------------------------------------


def _read_exactly(stream: t.IO[bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError("the parent closed the pipe")
        data += chunk
    return data


def _child_main() -> int:
    from .driver import _Run

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def send(kind: str, payload: object) -> None:
        stdout.write(_frame((kind, payload)))
        stdout.flush()

    try:
        (size,) = _HEADER.unpack(_read_exactly(stdin, _HEADER.size))
        spec, run_id = pickle.loads(_read_exactly(stdin, size))
        spec.validate()
        run = _Run(spec, lambda *counts: send("progress", counts), run_id=run_id)
        send("ready", None)
        if stdin.read(1) != b"g":
            return 1  # the parent gave up before the start
        send("result", run.run())
    except KeyboardInterrupt:
        return 130  # Ctrl-C reached the whole process group: the parent reports it, once
    except Exception:
        send("error", traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
