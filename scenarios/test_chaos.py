"""Faults during load, live: a representative subset of faults x modes (the full matrix is
``ctxbench chaos``).

Each case runs one fault against one real server during a fully checked load and asserts its
verdict: every request accounted for, no leak on a correct stack (core or Flask), a negative
control still caught under the fault, and clean requests on the surviving and respawned workers
afterwards. The knobs are smaller than ``ctxbench chaos``'s defaults, to keep the whole file
near 80 s on 2 cores (72 s on a quiet machine, with the ASGI modes' cases, before the timeout
case with a slow start, which took 9.6 s of the file's 116 s at load 4 to 8).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness.apps import CORE_APP, FLASK_APP
from harness.cli import main
from harness.faults import FAULTS, LoadSettings, run_fault_cell
from harness.faults.base import worker_pids
from harness.results import FaultCell
from harness.servers import get_mode, live_server, poll_until
from harness.settings import ChaosSettings


def skip_unavailable(mode: str) -> None:
    availability = get_mode(mode).available()
    if not availability.ok:
        pytest.skip(f"{mode} is not available: {availability.reason}")


CI = ChaosSettings(
    interval_s=0.3, injections=2, round_requests=300, after_requests=200, abort_requests=60,
    slow_requests=4, slow_seconds=0.4, max_seconds=20.0, recycle_requests=100,
    recycle_jitter=20,
)  # fmt: skip

#: The core app in a worker that takes 1.5 s to load it, as on a loaded machine (2 cores at load
#: 13: the tornado worker's first heartbeat came 1.5 to 1.8 s after it started).
SLOW_START_APP = "scenarios.apps.slow_start:create_app(1500)"

#: A stack that leaks under every mode (corpus entry 5: one copied request context pushed in
#: several pool threads), for the ASGI modes, where no storage backend or control can leak.
LEAKY_APP = "harness.corpus.entries.e5_copy_context_pool:buggy"

CASES = [
    # fault, mode, app, backend, connections, verdict
    # kill-worker and hook-error on the correct core under gthread: the CLI test below.
    ("kill-worker", "gunicorn-gthread", CORE_APP, "no-reset", "keepalive", "caught"),
    ("recycle", "gunicorn-gthread", CORE_APP, "contextvar", "keepalive", "ok"),
    # tornado's worker counts connections, not requests: asked in requests it took ~28 s.
    ("recycle", "gunicorn-tornado", CORE_APP, "contextvar", "keepalive", "ok"),
    ("reload", "gunicorn-gevent", FLASK_APP, "contextvar", "keepalive", "ok"),
    ("timeout", "gunicorn-sync", CORE_APP, "contextvar", "fresh", "ok"),
    ("timeout", "gunicorn-tornado", CORE_APP, "contextvar", "keepalive", "ok"),
    # The master times a tornado worker from its first heartbeat, a second after the app loaded:
    # asked 2 s after the worker's start, both sleeping requests were answered (3 of 3).
    ("timeout", "gunicorn-tornado", SLOW_START_APP, "contextvar", "keepalive", "ok"),
    # --harakiri times a worker only while no other request runs on it: the load is held.
    ("timeout", "uwsgi-threads", CORE_APP, "contextvar", "keepalive", "ok"),
    ("abort", "gunicorn-gevent", FLASK_APP, "contextvar", "keepalive", "ok"),
    # tornado collects a streamed body an IOLoop turn per chunk, shared with the load.
    ("abort", "gunicorn-tornado", CORE_APP, "contextvar", "fresh", "ok"),
    # A kept-alive connection holds a uWSGI process: the fault's clients go between two rounds.
    ("abort", "uwsgi-processes", CORE_APP, "contextvar", "keepalive", "ok"),
    ("slow-client", "gunicorn-sync", CORE_APP, "contextvar", "keepalive", "ok"),
    # uWSGI's --http11-socket ignores Connection: close: the streamed body is asked in HTTP/1.0.
    ("slow-client", "uwsgi-threads", CORE_APP, "contextvar", "keepalive", "ok"),
    ("hook-error", "gunicorn-gevent", CORE_APP, "thread-ident", "keepalive", "caught"),
    # Behind nginx the fault kills the app server's workers, not nginx's; nginx answers a request
    # whose upstream died with a 502, and never makes the correct core look leaky.
    ("kill-worker", "nginx+gunicorn-sync", CORE_APP, "contextvar", "keepalive", "ok"),
    (
        "kill-worker",
        "nginx-keepalive+gunicorn-gthread",
        CORE_APP,
        "no-reset",
        "keepalive",
        "caught",
    ),
    # Flask's ASGI deployment: uvicorn's supervisor respawns a killed worker; hypercorn's
    # reload stops every worker, then starts new ones. No storage backend or control can leak
    # under these modes (one request at a time per process, a context per request), so the
    # leaking stack is an app: a leak is still reported under the fault, as LEAK.
    ("kill-worker", "uvicorn-asgiref", CORE_APP, "contextvar", "keepalive", "ok"),
    ("kill-worker", "uvicorn-asgiref", LEAKY_APP, "contextvar", "keepalive", "LEAK"),
    ("reload", "hypercorn-asgiref", CORE_APP, "contextvar", "keepalive", "ok"),
    ("reload", "hypercorn-asgiref", LEAKY_APP, "contextvar", "fresh", "LEAK"),
]


def accounted(cell: FaultCell) -> None:
    parts = cell.answered + cell.error_count + cell.aborted + cell.injected
    assert cell.requests > 0 and parts == cell.requests, cell


@pytest.mark.live
@pytest.mark.parametrize(
    ("fault", "mode", "app", "backend", "connections", "expected"),
    [
        pytest.param(
            *case,
            id="-".join((case[0], case[1], case[2].split(".")[-1].split(":")[0], case[3], case[4])),
        )
        for case in CASES
    ],
)
def test_fault(
    fault: str, mode: str, app: str, backend: str, connections: str, expected: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    skip_unavailable(mode)
    # One reload is enough to replace every worker; each waits out its keep-alive clients.
    settings = dataclasses.replace(CI, injections=1) if fault == "reload" else CI
    if app == LEAKY_APP:  # it leaks in every request: a short load shows it
        pytest.importorskip("flask", reason="the corpus apps need flask (ctxbench[corpus])")
        settings = dataclasses.replace(settings, round_requests=100, after_requests=100)
    cell = run_fault_cell(
        FAULTS[fault],
        mode,
        app=app,
        backend=backend,
        connections=connections,
        settings=settings,
        log_dir=tmp_path / "logs",
    )
    detail = f"{cell.verdict}: {cell.reason}\n{cell}"
    assert cell.verdict == expected, detail
    accounted(cell)
    assert (
        cell.events
        or cell.aborted
        or cell.injected
        or cell.fault == "recycle"
        or cell.fault == "slow-client"
    ), detail
    if fault == "kill-worker" and "+" in mode:  # the first victim: one of the app's workers
        kills = [e.pid for e in cell.events if e.action == "SIGKILL"]
        assert kills and kills[0] in cell.server.effective["worker_pids"], detail
    if expected == "ok":
        assert cell.leaks == 0 and cell.after is not None and cell.after.leaks == 0, detail
        behind_proxy = {"5xx"} if "+" in mode else set()
        assert set(cell.errors) <= FAULTS[fault].expected_for(get_mode(mode)) | behind_proxy, detail
    else:
        assert cell.leaks > 0 and cell.evidence, detail


@pytest.mark.live
def test_a_control_under_gunicorn_sync_with_threads_is_judged_as_what_ran(tmp_path: Path) -> None:
    """gunicorn runs `-k sync --threads 4` as its gthread worker, where a process-wide storage
    leaks: chaos judged that from the sync worker's traits, "LEAK: ... where none can happen"
    (exit 1), for `ctxbench chaos --modes gunicorn-sync --threads 4 --backend shared-global`."""
    skip_unavailable("gunicorn-sync")
    cell = run_fault_cell(
        FAULTS["hook-error"],
        "gunicorn-sync",
        app=CORE_APP,
        backend="shared-global",
        connections="keepalive",
        settings=CI,
        load=LoadSettings(threads=4),
        log_dir=tmp_path / "logs",
    )
    detail = f"{cell.verdict}: {cell.reason}\n{cell}"
    assert cell.server.effective["worker_class"] == "gthread", detail
    assert cell.verdict == "caught" and cell.leaks > 0, detail
    accounted(cell)


@pytest.mark.live
def test_chaos_command_writes_results_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable("gunicorn-gthread")
    run_dir = tmp_path / "run"
    status = main([
        "chaos", "--faults", "hook-error,kill-worker", "--modes",
        "gunicorn-gthread,werkzeug-threaded", "--round-requests", "300", "--after-requests",
        "200", "--injections", "2", "--interval", "0.3", "--run-dir", str(run_dir),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    doc = json.loads((run_dir / "results.json").read_text())
    verdicts = {(c["fault"], c["mode"]): c["verdict"] for c in doc["faults"]}
    assert verdicts == {
        ("hook-error", "gunicorn-gthread"): "ok",
        ("hook-error", "werkzeug-threaded"): "ok",
        ("kill-worker", "gunicorn-gthread"): "ok",
        ("kill-worker", "werkzeug-threaded"): "n/a",
    }, out
    hook = next(c for c in doc["faults"] if c["fault"] == "hook-error")
    assert hook["injected"] == 6 * 30 and sum(hook["injected_outcomes"].values()) == 6 * 30
    report = (run_dir / "report.md").read_text()
    assert "## Faults during load" in report and "n/a" in report
    for line in ("fault", "verdict"):
        assert line in out


@pytest.mark.live
def test_hypercorn_stops_altogether_when_a_worker_is_killed(tmp_path: Path) -> None:
    """Why kill-worker is n/a under hypercorn-asgiref: its master replaces only a worker that
    exits 0; a worker killed outright makes it stop the others and exit, with the status of the
    last one it stopped (0, or 241 when that one was still stopping at SIGTERM). When a
    hypercorn release respawns the worker instead, this fails: then let the fault apply
    (``HypercornAsgiref.lifecycle``)."""
    skip_unavailable("hypercorn-asgiref")
    with live_server("hypercorn-asgiref", workers=2, log_dir=tmp_path) as server:
        victim = min(worker_pids(server))
        os.kill(victim, signal.SIGKILL)
        gone = poll_until(server.gone, bool, time.monotonic() + 10.0)
        assert gone and "exited with status" in gone, (gone, worker_pids(server))
        assert "SIGKILL" not in gone and "status 137" not in gone, gone
