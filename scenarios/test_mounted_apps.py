"""Apps deployed under a path prefix (``--mount``), live: the app under the prefix is checked.

:mod:`scenarios.apps.mounted` is a ``DispatcherMiddleware`` with a leaking app at ``/api`` and an
isolated one at ``/admin``. Before ``--mount``, ``--app`` naming the dispatcher checked its root
app and exited 0; now the negative control (``/api``) must be caught under gunicorn-gthread,
waitress and behind nginx with ``location /api/``, and the isolated app (``/admin``) of the same
dispatcher must be clean, so the verdict follows the mount and nothing else. The dispatcher
without ``--mount`` is one line, exit 2; the leaking app alone with ``--mount /api`` is served
under the prefix by ctxbench and caught too. ``chaos`` and ``soak`` take the same ``--mount``:
a fault (hook-error) and a short soak catch ``/api``, and ``/admin`` comes out clean under
hook-error and kill-worker, whose recovery check requests the probe under the mount too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness import results
from harness.cli import main
from scenarios.conftest import skip_unavailable

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(importlib.util.find_spec("flask") is None, reason="flask is not installed"),
]

DISPATCHER = "scenarios.apps.mounted:dispatcher"
LEAKY = "scenarios.apps.mounted:leaky"
# 16 keep-alive users, a 10 ms sleep in the view: requests overlap in every worker process.
QUICK = [
    "--connections", "keepalive", "--requests", "200", "--repeats", "1", "--warmup", "0",
    "--sleep-ms", "10", "--workers", "1",
]  # fmt: skip


def _run(tmp_path: Path, *argv: str) -> tuple[int, str, Path]:
    run_dir = tmp_path / "run"
    status = main(["run", *argv, *QUICK, "--run-dir", str(run_dir)])
    return status, str(run_dir), run_dir


def test_the_app_under_the_mount_leaks_under_every_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modes = ["gunicorn-gthread", "waitress", "nginx+gunicorn-gthread"]
    for mode in modes:
        skip_unavailable(mode)
    status, _, run_dir = _run(
        tmp_path, "--app", DISPATCHER, "--mount", "/api", "--modes", ",".join(modes)
    )
    assert status == 1, capsys.readouterr().err
    cells = results.load(run_dir).cells
    assert [c.mode for c in cells] == modes
    for cell in cells:
        assert cell.checked == 200 and cell.errors == 0, cell
        assert cell.leaks > 0, cell.mode
        assert {e.name for e in cell.evidence} == {"current_user"}, cell.mode
        assert cell.server.effective["probe"] == "harness.wsgi inside DispatcherMiddleware at /api"
        assert cell.server.effective["mount"] == "/api"
    assert cells[2].server.effective["proxy"]["location"] == "/api/"


def test_the_isolated_app_of_the_same_dispatcher_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    status, _, run_dir = _run(
        tmp_path, "--app", DISPATCHER, "--mount", "/admin", "--modes", "gunicorn-gthread"
    )
    assert status == 0, capsys.readouterr().err
    [cell] = results.load(run_dir).cells
    assert (cell.checked, cell.leaks, cell.errors) == (200, 0, 0)
    assert "current_user" in cell.observed  # the app's own state was checked, and is isolated


def test_a_dispatcher_without_a_mount_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    status, _, run_dir = _run(tmp_path, "--app", DISPATCHER, "--modes", "gunicorn-gthread")
    err = capsys.readouterr().err
    assert status == 2, err
    assert "is a DispatcherMiddleware that serves apps under /admin, /api" in err, err
    assert err.endswith("--mount (--mount /api), or --mount / for its root app\n"), err
    assert err.count("\n") == 1, err
    assert not run_dir.exists()
    # chaos says the same, and the option it names is one chaos has.
    status = main(["chaos", "--faults", "hook-error", "--modes", "gunicorn-gthread", "--app",
                   DISPATCHER, "--run-dir", str(run_dir)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.endswith("--mount (--mount /api), or --mount / for its root app\n"), err
    assert not run_dir.exists()


def test_a_plain_app_served_under_the_mount_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    status, _, run_dir = _run(
        tmp_path, "--app", LEAKY, "--mount", "/api", "--modes", "gunicorn-gthread"
    )
    assert status == 1, capsys.readouterr().err
    [cell] = results.load(run_dir).cells
    assert cell.leaks > 0 and cell.checked == 200
    assert cell.server.effective["probe"] == "harness.wsgi, served under /api by ctxbench"


# hook-error (one load round per phase) is the cheapest fault that runs a load: about 4 s a cell.
CHAOS = [
    "chaos", "--modes", "gunicorn-gthread", "--app", DISPATCHER, "--round-requests", "200",
    "--after-requests", "100", "--sleep-ms", "10", "--injections", "1",
]  # fmt: skip


def test_chaos_catches_the_app_under_the_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: chaos had no --mount, and the dispatcher could not be fault-tested at all.
    skip_unavailable("gunicorn-gthread")
    run_dir = tmp_path / "run"
    status = main([*CHAOS, "--faults", "hook-error", "--mount", "/api/", "--run-dir",
                   str(run_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1, out
    run = results.load(run_dir)
    assert run.settings.mount == "/api"  # as normalised, and recorded as run's are
    [cell] = run.faults
    assert cell.verdict == "LEAK" and cell.leaks > 0, out
    assert {e.name for e in cell.evidence} == {"current_user"}, cell.evidence
    assert cell.server.effective["mount"] == "/api"
    assert cell.server.effective["probe"] == "harness.wsgi inside DispatcherMiddleware at /api"


def test_chaos_on_the_isolated_app_of_the_same_dispatcher_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    run_dir = tmp_path / "run"
    status = main([*CHAOS, "--faults", "hook-error,kill-worker", "--mount", "/admin",
                   "--run-dir", str(run_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    cells = results.load(run_dir).faults
    assert [(c.fault, c.verdict) for c in cells] == [("hook-error", "ok"), ("kill-worker", "ok")]
    for cell in cells:
        assert cell.leaks == 0 and cell.answered > 0, cell
        # The clean load after the fault ran: the recovery check found the probe at /admin.
        assert cell.after is not None and cell.after.requests >= 100, cell
        assert cell.server.effective["mount"] == "/admin"


def test_soak_catches_the_app_under_the_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")
    run_dir = tmp_path / "run"
    status = main([
        "soak", "--mode", "gunicorn-gthread", "--app", DISPATCHER, "--mount", "/api",
        "--minutes", "0.1", "--warmup", "2", "--sleep-ms", "10", "--run-dir", str(run_dir),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1, out
    run = results.load(run_dir)
    assert run.settings.mount == "/api"
    [soak] = run.soaks
    assert soak.verdict == "LEAK" and soak.leaks > 0 and soak.errors == 0, out
    assert {e.name for e in soak.evidence} == {"current_user"}, soak.evidence
    assert soak.server.effective["mount"] == "/api"
    heading = f"## Soak: gunicorn-gthread, {DISPATCHER} at /api, contextvar, fresh"
    assert heading in (run_dir / "report.md").read_text()
