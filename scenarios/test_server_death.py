"""A server that dies on its own mid-run fails its cell, with a clear error, and the run goes on.

A real ``ctxbench run`` (gunicorn-gevent, keep-alive then fresh connections) runs in a
subprocess. Once its first measurement is under load (the ``load`` checkpoint of
:mod:`harness.checkpoints`), the test SIGKILLs the server's master; its workers die with it
(``PR_SET_PDEATHSIG``), so nothing of the server is left. The harness must end that cell within
a progress report or two, record why in results.json, the terminal summary and the report, start
a new server for the fresh-connection cell and measure it, and exit 2 (a cell failed, no leak).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import results
from harness.checkpoints import CHECKPOINT_ENV
from harness.servers import group_members

pytestmark = pytest.mark.live

MARKER_ENV = "CTXBENCH_SERVER_DEATH_TEST"


def marked_children(marker: str, parent: int) -> list[int]:
    """Live children of ``parent`` whose environment holds ``marker``: the servers it started."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == parent and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_a_dead_server_fails_its_cell_and_the_run_goes_on(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    reached = tmp_path / "reached"
    marker = uuid.uuid4().hex
    env = {**os.environ, CHECKPOINT_ENV: f"load:{reached}", MARKER_ENV: marker}
    # Two seconds per cell: the first is still running when its server is killed half a
    # second in, so the harness must end it early.
    argv = [sys.executable, "-m", "harness.cli", "run", "--modes", "gunicorn-gevent",
            "--connections", "both", "--duration", "2", "--repeats", "1", "--warmup", "0",
            "--concurrency", "4", "--run-dir", str(run_dir)]  # fmt: skip
    harness = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not reached.exists() and harness.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reached.exists(), "the run never got under load"
        started = marked_children(marker, harness.pid)
        assert len(started) == 1, started
        os.kill(started[0], signal.SIGKILL)  # the master; its workers follow it
        out, err = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.communicate()
        for pgid in started:
            # Whatever happened, no server of this test outlives it.
            for pid in group_members(pgid):
                os.kill(pid, signal.SIGKILL)

    assert harness.returncode == 2, (out, err)
    run = results.load(run_dir)
    assert run.status == "complete"
    failed, fresh = run.cells
    assert (failed.connections, fresh.connections) == ("keepalive", "fresh")
    assert failed.error is not None and failed.failed and not failed.clean
    assert failed.error.startswith(
        f"gunicorn-gevent: the server's main process (pid {started[0]}) was killed by SIGKILL"
        " during the run 1/1 of the keepalive cell, after"
    ), failed.error
    # Ended mid-measurement, at a progress report: what it had checked is counted.
    assert failed.runs == () and failed.requests > 0
    assert set(failed.error_kinds) <= {"cut short by the server's death"}
    # What failed is each user's request in flight on each worker as it died, and each user's
    # one refused connection: a refused user tried again at once, in a loop that never reached
    # the progress report, and the cell counted thousands of refused requests until its 2 s
    # were up.
    workers = failed.server.effective["workers"]
    assert failed.errors <= 4 * (workers + 1), (failed.errors, workers)
    # The next cell ran on a new server, to the end, without a leak.
    assert not fresh.failed and len(fresh.runs) == 1 and fresh.requests > 0
    assert fresh.leaks == 0 and fresh.errors == 0
    assert fresh.server.effective["master_pid"] != started[0]
    assert fresh.server.log == "logs/core-contextvar/restart-1/gunicorn-gevent.log"
    assert not group_members(started[0])
    # The terminal, stderr and the report say so.
    assert "FAILED" in out and "failed cells (the server died" in out
    assert f"ctxbench: error: 1 cell failed: {failed.error}" in err
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "FAILED: a server died, 1 cell not measured to the end" in report
    assert failed.error in report
