"""What a ctxbench killed outright leaves behind, as later readers and runs see it.

An :class:`~harness.owner.Owner` names a process so that a later one with the same pid is not
mistaken for it; a ``running`` results document whose owner is gone reads as ``abandoned``.
The live side (a real ``ctxbench run`` killed with SIGKILL) is in ``scenarios/test_kill9.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import results
from harness.cli import main
from harness.owner import (
    OWNER_FILE,
    Owner,
    _start_ticks,
    disown,
    file_tag,
    owned_tempdir,
    process_age,
    sweep_tempdirs,
)
from harness.results import Run
from harness.settings import RunSettings


@pytest.fixture
def dead_owner() -> Iterator[Owner]:
    """The identity of a process that ran and is gone (killed and reaped)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        owner = dataclasses.replace(Owner.here(), pid=proc.pid, started=_start_ticks(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    yield owner


def test_this_process_is_alive_and_a_reused_pid_is_not_its_owner() -> None:
    me = Owner.here()
    assert me.started is not None and me.boot_id is not None
    assert me.alive() is True
    # Same pid, another start time: the pid was reused, the owner is gone.
    assert dataclasses.replace(me, started=me.started - 1).alive() is False
    # The machine restarted since.
    assert dataclasses.replace(me, boot_id="another-boot").alive() is False
    # Another host (a run folder on a shared disk): nothing can be proved from here.
    assert dataclasses.replace(me, host=me.host + "-elsewhere").alive() is None


def test_a_killed_process_is_gone(dead_owner: Owner) -> None:
    assert dead_owner.started is not None
    assert dead_owner.alive() is False


def running_run(tmp_path: Path, owner: Owner | None) -> Path:
    run = Run.start("r1", ["ctxbench", "run"], RunSettings()).replace(owner=owner)
    assert run.status == "running"
    results.write(tmp_path, run)
    return tmp_path


def test_a_running_document_whose_writer_is_gone_reads_as_abandoned(
    tmp_path: Path, dead_owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    run = results.load(running_run(tmp_path, dead_owner))
    assert run.status == "abandoned"
    assert f"(pid {dead_owner.pid} on {dead_owner.host}) is gone" in run.status_reason
    assert main(["report", str(tmp_path)]) == 0
    assert "is abandoned, not complete: the ctxbench process" in capsys.readouterr().err
    assert "This run is abandoned, not complete" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param(Owner.here(), id="writer-alive"),
        pytest.param(None, id="no-owner-recorded"),
        pytest.param(dataclasses.replace(Owner.here(), host="elsewhere"), id="another-host"),
    ],
)
def test_a_running_document_stays_running_unless_its_writer_is_provably_gone(
    tmp_path: Path, owner: Owner | None
) -> None:
    assert results.load(running_run(tmp_path, owner)).status == "running"


def test_a_running_document_from_another_machine_does_not_claim_it_is_being_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CI job's artifact, its ctxbench killed outright on the runner: it said "it is still
    # being written", which nothing here can tell.
    owner = dataclasses.replace(Owner.here(), host="runner-7", pid=4242)
    run = results.load(running_run(tmp_path, owner))
    assert run.status == "running"
    assert run.status_reason == (
        "it was being written by pid 4242 on runner-7, which this machine cannot check: still"
        " running there, or killed before it finished"
    )
    assert main(["report", str(tmp_path)]) == 0
    assert "still being written" not in capsys.readouterr().err
    mine = results.load(running_run(tmp_path, Owner.here()))
    assert mine.status_reason == "it is still being written"


def test_the_owner_round_trips_and_only_running_documents_are_judged(
    tmp_path: Path, dead_owner: Owner
) -> None:
    run = Run.start("r1", ["ctxbench", "run"], RunSettings())
    assert run.owner == Owner.here()
    assert Run.from_json(run.to_json()) == run
    results.write(tmp_path, run.replace(owner=dead_owner, status="complete"))
    assert results.load(tmp_path).status == "complete"


def test_a_write_removes_the_temporary_files_of_dead_writers_only(
    tmp_path: Path, dead_owner: Owner
) -> None:
    boot = (dead_owner.boot_id or "")[:8]
    dead = tmp_path / f".results.json.{boot}-{dead_owner.pid}-{dead_owner.started}-0a1b2c3d.tmp"
    pid, started = dead_owner.pid, dead_owner.started
    kept = [
        # This process: a write under way.
        tmp_path / f".results.json.{file_tag()}-0a1b2c3d.tmp",
        # Another boot, or another host on a shared disk: nothing can be proved.
        tmp_path / f".results.json.0000ffff-{pid}-{started}-00.tmp",
        # An older ctxbench's name, and a name that is not a writer's: not ours to judge.
        tmp_path / ".results.json.0a1b2c3d.tmp",
        tmp_path / f".notes.{boot}-x-y-00.tmp",
    ]
    for path in (dead, *kept):
        path.write_text("{")
    results.write_atomic(tmp_path / "report.md", "# report\n")
    assert not dead.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.md", *(p.name for p in kept)]
    )


def test_a_sweep_removes_the_folders_of_dead_owners_only(
    tmp_path: Path, dead_owner: Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live = owned_tempdir("ctxbench-gunicorn-sync-")  # this process: a run going on now
    dead = owned_tempdir("ctxbench-gunicorn-gevent-")
    (dead / OWNER_FILE).write_text(json.dumps(dataclasses.asdict(dead_owner)))
    (dead / "worker-1.json").write_text("{}")
    elsewhere = owned_tempdir("ctxbench-uwsgi-threads-")
    other_host = dataclasses.replace(dead_owner, host="elsewhere")
    (elsewhere / OWNER_FILE).write_text(json.dumps(dataclasses.asdict(other_host)))
    kept = owned_tempdir("ctxbench-waitress-")  # a failed start keeps its log for good
    disown(kept)
    unowned = tmp_path / "ctxbench-granian-abc"  # an older ctxbench's: no owner recorded
    unowned.mkdir()
    not_ours = tmp_path / "other-gunicorn-sync-"
    not_ours.mkdir()
    (not_ours / OWNER_FILE).write_text(json.dumps(dataclasses.asdict(dead_owner)))
    assert sweep_tempdirs() == [dead]
    assert sorted(tmp_path.iterdir()) == sorted([live, elsewhere, kept, unowned, not_ours])


def test_process_age_reads_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        own, new = process_age(os.getpid()), process_age(child.pid)
        assert own is not None and new is not None
        assert 0.0 <= new <= own  # started after this test process, a moment ago
    finally:
        child.kill()
        child.wait()
    assert process_age(child.pid) is None  # reaped: gone
