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
