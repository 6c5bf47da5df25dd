"""The server's CPU time per measurement (harness.load.cpu), read from /proc for real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.load.cpu import ThreadCpu, cpu_between, group_cpu, processes_cpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

# Runs on a CPU for 0.2 s, says so, then waits for its stdin to close.
BUSY = (
    "import sys, time\n"
    "start = time.process_time()\n"
    "while time.process_time() - start < 0.2:\n"
    "    pass\n"
    "print('busy', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_a_worker_that_exits_during_a_measurement_makes_it_unknown_not_negative() -> None:
    # A gunicorn worker recycled by --max-requests during a run took its CPU time out of the
    # group's sum: the report showed server CPU -0.03 cores and server waiting -0.86.
    master = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        worker = subprocess.Popen(
            [sys.executable, "-c", BUSY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            process_group=master.pid,
        )
        assert worker.stdout is not None and worker.stdout.readline() == "busy\n"
        before = processes_cpu([master.pid])
        assert before is not None and set(before) == {master.pid, worker.pid}
        summed_before = group_cpu(master.pid)
        worker.communicate("")  # it exits, and is reaped
        after = processes_cpu([master.pid])
        summed_after = group_cpu(master.pid)
        assert after is not None and set(after) == {master.pid}
        assert summed_before is not None and summed_after is not None
        assert summed_after.on_cpu - summed_before.on_cpu < 0  # what the run recorded
        assert cpu_between(before, after) is None
    finally:
        master.kill()
        master.wait()


def test_a_measurement_counts_each_process_from_the_first_snapshot_or_its_start() -> None:
    before = {1: ThreadCpu(1.0, 0.5, True), 2: ThreadCpu(2.0, 0.0, True)}
    after = {
        1: ThreadCpu(1.5, 0.75, True),
        2: ThreadCpu(2.25, 0.0, True),
        3: ThreadCpu(0.5, 0, True),
    }
    assert cpu_between(before, after) == ThreadCpu(1.25, 0.25, True)
    assert cpu_between(None, after) is None
    assert cpu_between(before, None) is None
    mine = processes_cpu([os.getpgid(0)])
    assert mine is not None and os.getpid() in mine


# Runs three threads one after another, each on a CPU for 0.2 s, after each line on its stdin.
THREADS = (
    "import sys, threading, time\n"
    "def burn():\n"
    "    start = time.thread_time()\n"
    "    while time.thread_time() - start < 0.2:\n"
    "        pass\n"
    "print('ready', flush=True)\n"
    "for line in sys.stdin:\n"
    "    t = threading.Thread(target=burn)\n"
    "    t.start()\n"
    "    t.join()\n"
    "    print('done', flush=True)\n"
)


def test_threads_that_ended_during_a_measurement_keep_their_cpu_time_in_it() -> None:
    # A server with a thread per connection (werkzeug-threaded) showed 0.14 cores of server CPU
    # and 0.85 cores of "other programs" on a quiet machine: each connection's thread took its
    # time with it when it ended, as only the live threads were summed.
    with subprocess.Popen(
        [sys.executable, "-c", THREADS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    ) as server:
        try:
            assert server.stdin is not None and server.stdout is not None
            assert server.stdout.readline() == "ready\n"
            before = processes_cpu([server.pid])
            for _ in range(3):
                server.stdin.write("go\n")
                server.stdin.flush()
                assert server.stdout.readline() == "done\n"
            used = cpu_between(before, processes_cpu([server.pid]))
        finally:
            server.kill()
    assert used is not None and 0.5 <= used.on_cpu < 2.0, used  # three threads of 0.2 s each
