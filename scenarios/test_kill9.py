"""``kill -9`` of the harness: no server process survives it, and results.json is never torn.

A real ``ctxbench run`` runs in a subprocess, into a run folder that already holds a complete
results.json (a previous run's). The test stops it at a checkpoint (:mod:`harness.checkpoints`:
no sleeping and hoping) and SIGKILLs it there:

- while it starts a server: the server's process exists and is booting;
- under load: a measurement's driver has checked its first responses and goes on;
- while it writes results: the second results.json is complete under a temporary name and not
  yet renamed over the first.

Then every process the run started must be gone, within a few seconds (the kernel's
``PR_SET_PDEATHSIG`` kills each server with the harness, and gunicorn's workers with their
master), and results.json must be a complete document: the previous one, untouched, or the new
run's as of its last finished cell, which says ``running`` and reads (and is reported) as
``abandoned``: its writer is gone. The temporary file of a write cut short is removed by the
next write into the folder (``ctxbench report``), the server's state folder in the temporary
folder by the next start of a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
import uuid
from pathlib import Path

import pytest

from harness import results
from harness.checkpoints import CHECKPOINT_ENV
from harness.cli import main
from harness.owner import OWNER_FILE, owned_tempdir
from harness.results import Run
from harness.servers import group_members, live_server
from harness.settings import RunSettings

pytestmark = pytest.mark.live

#: Marks every process started by one test's harness (servers inherit the environment).
MARKER_ENV = "CTXBENCH_KILL9_TEST"
MODE = "gunicorn-gevent"
#: The server the test starts after the kill, to see what a new start sweeps (a fast one).
NEXT_MODE = "werkzeug-threaded"
REACH_TIMEOUT_S = 30.0
#: How long the kernel and the servers get to finish dying after the harness is killed.
GONE_TIMEOUT_S = 10.0


def marked_processes(marker: str) -> dict[int, int]:
    """``{pid: pgid}`` of the live processes whose environment holds ``marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and needle in environ.split(b"\0"):
            found[int(entry.name)] = int(fields[2])
    return found


def wait_for(what: t.Callable[[], t.Any], timeout: float, message: str) -> t.Any:
    deadline = time.monotonic() + timeout
    while True:
        rv = what()
        if rv:
            return rv
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.02)


def seed_previous_run(run_dir: Path) -> bytes:
    """A complete results.json from an earlier run, as ``--run-dir`` finds it."""
    previous = Run.start("previous", ["ctxbench", "run"], RunSettings())
    results.write(run_dir, previous.replace(status="complete", elapsed_s=1.0))
    return (run_dir / results.RESULTS_FILE).read_bytes()


@pytest.mark.parametrize(
    ("point", "args", "cells"),
    [
        pytest.param("server-spawned", ("--duration", "30"), None, id="starting-a-server"),
        pytest.param("load", ("--duration", "30"), None, id="under-load"),
        pytest.param("write:results.json#2", ("--requests", "100"), 1, id="writing-results"),
    ],
)
def test_kill9_leaves_no_server_and_no_torn_results(
    tmp_path: Path,
    point: str,
    args: tuple[str, ...],
    cells: int | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = tmp_path / "run"
    previous = seed_previous_run(run_dir)
    reached = tmp_path / "reached"
    marker = uuid.uuid4().hex
    temp = tmp_path / "tmp"  # the harness's temporary folder (its servers' state folders)
    temp.mkdir()
    env = {**os.environ, CHECKPOINT_ENV: f"{point}:{reached}", MARKER_ENV: marker}
    env["TMPDIR"] = str(temp)
    argv = [sys.executable, "-m", "harness.cli", "run", "--modes", MODE, "--connections", "both",
            "--repeats", "1", "--warmup", "0", "--concurrency", "4", *args,
            "--run-dir", str(run_dir)]  # fmt: skip
    harness = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: reached.exists() or harness.poll() is not None,
            REACH_TIMEOUT_S,
            f"the harness never reached checkpoint {point!r}",
        )
        assert harness.poll() is None, harness.communicate()[1].decode()
        assert int(reached.read_text()) == harness.pid
        started = marked_processes(marker)
        servers = {pid: pgid for pid, pgid in started.items() if pid != harness.pid}
        assert servers, "the harness had started no server process"
        harness.send_signal(signal.SIGKILL)
        harness.wait(5)
    finally:
        if harness.poll() is None:
            harness.kill()
        harness.communicate()

    groups = set(servers.values())
    try:
        wait_for(
            lambda: not marked_processes(marker) and not any(map(group_members, groups)),
            GONE_TIMEOUT_S,
            f"server processes outlived the harness: {marked_processes(marker)}, groups"
            f" {[(g, group_members(g)) for g in groups]}",
        )
    finally:
        # After a failure, stop what this test started, so no server outlives the session.
        for pgid in groups | set(marked_processes(marker).values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    # The server's state folder outlives the harness, recorded as its own; the next start of a
    # server removes it, and never the folder of a run going on now (here this process's).
    orphans = [p for p in temp.iterdir() if p.name.startswith(f"ctxbench-{MODE}-")]
    assert len(orphans) == 1, list(temp.iterdir())
    assert json.loads((orphans[0] / OWNER_FILE).read_text())["pid"] == harness.pid
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    concurrent = owned_tempdir(f"ctxbench-{MODE}-")
    with live_server(NEXT_MODE):
        assert not orphans[0].exists()
        assert concurrent.exists()
    shutil.rmtree(concurrent)

    # Never a torn file: the previous results, byte for byte, or a complete new document.
    now = (run_dir / results.RESULTS_FILE).read_bytes()
    if cells is None:
        assert now == previous
    else:
        # The document says "running", and its writer is gone: readers see it abandoned.
        assert json.loads(now)["status"] == "running"
        run = results.load(run_dir)
        assert run.run_id == run_dir.name and run.status == "abandoned"
        assert run.owner is not None and run.owner.pid == harness.pid
        assert len(run.cells) == cells and run.cells[0].mode == MODE
        # Killed between the write and the rename: the new content is left under its
        # temporary name, until the next write into the folder (here the report's) removes it.
        assert len(list(run_dir.glob(".results.json.*.tmp"))) == 1
        assert main(["report", str(run_dir)]) == 0
        assert list(run_dir.glob(".*.tmp")) == []
        err = capsys.readouterr().err
        assert f"the ctxbench process writing it (pid {harness.pid} on" in err, err
        assert "This run is abandoned, not complete" in (run_dir / "report.md").read_text()
