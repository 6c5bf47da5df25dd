"""harness.faults and harness.soak without servers: the verdict rules, the accounting, where each
fault applies, the records in the results, and the report's faults and soak sections."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import typing as t
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import results
from harness.cli import main
from harness.errors import UsageError
from harness.faults import FAULTS, VERDICTS, get_fault
from harness.faults.verdict import Tally, judge, split_statuses
from harness.protocol import FRAMEWORK_NAMES
from harness.report import render_reports
from harness.report.charts import Line, Point, line_chart
from harness.report.faults import faults_table
from harness.report.tree import text_table
from harness.results import (
    AfterFault,
    FaultCell,
    FaultEvent,
    LoadSample,
    ProcessSample,
    Run,
    Soak,
)
from harness.servers import MODES
from harness.settings import ChaosSettings, RunSettings
from harness.soak import judge_soak, trends
from harness.soak.runner import default_warmup
from harness.verdict import Evidence, Unit
from tests.test_runner import FakeServer

CLEAN_AFTER = AfterFault(requests=300, survivors_reached=1, respawned_reached=1)


def serving(default_dir: Path) -> t.Callable[..., t.ContextManager[FakeServer]]:
    """A stand-in for ``live_server``: a :class:`FakeServer` of the mode asked for, logging into
    the folder the runner gives (``default_dir`` when it gives none)."""

    @contextlib.contextmanager
    def server(mode: str, *, log_dir: Path | None = None, **_: object) -> t.Iterator[FakeServer]:
        yield FakeServer.of(mode, Path(log_dir or default_dir))

    return server


def tally(**fields: object) -> Tally:
    rv = Tally(sent=1000, accounted=1000, answered=998)
    for name, value in fields.items():
        setattr(rv, name, value)
    return rv


def verdict(t: Tally, **kw: object) -> str:
    args: dict[str, object] = {
        "can_leak": False,
        "expected_errors": frozenset({"reset"}),
        "not_exercised": None,
        "after": CLEAN_AFTER,
        "replaces_workers": True,
    }
    args.update(kw)
    return judge(t, **args)[0]  # type: ignore[arg-type]


# -- the verdict rules ---------------------------------------------------------------------------


def test_a_clean_fault_cell_is_ok() -> None:
    assert verdict(tally(errors=Counter(reset=2))) == "ok"


def test_statuses_the_app_answered_itself_are_said_so() -> None:
    def reason(kind: str) -> str:
        verdict, why = judge(
            tally(errors=Counter({kind: 7})),
            can_leak=False,
            expected_errors=frozenset(),
            not_exercised=None,
            after=CLEAN_AFTER,
            replaces_workers=True,
        )
        assert verdict == "errors"
        return why

    assert "the app answering in the probe's place" in reason("other-status")  # a 429, a 401
    assert "probe's place" not in reason("5xx")


def test_requests_that_vanish_are_lost_before_anything_else() -> None:
    assert verdict(tally(accounted=999, leaks=5)) == "lost"


def test_a_leak_on_a_correct_stack_is_a_leak_whatever_the_fault() -> None:
    assert verdict(tally(leaks=1)) == "LEAK"


def test_a_leak_of_the_app_s_own_state_is_said_to_be_the_app_s() -> None:
    # An app that keeps the current user in a module-level dict, under gunicorn-gthread: chaos
    # said "8,396 leaking observations where none can happen", of a leak that can.
    def reason(*leaked: str) -> str:
        framework = any(name in FRAMEWORK_NAMES for name in leaked)
        verdict, why = judge(
            tally(leaks=8396, framework_leaks=framework),
            can_leak=False,
            expected_errors=frozenset(),
            not_exercised=None,
            after=CLEAN_AFTER,
            replaces_workers=True,
            leaked=leaked,
        )
        assert verdict == "LEAK"
        return why

    assert reason("middleware_user", "dict_user") == (
        "8,396 leaking observations of the app's own state (dict_user, middleware_user, given to"
        " observe()): the app keeps it where requests share it, a bug of the app's (the"
        " framework's storage cannot leak here)"
    )
    assert reason("g", "dict_user") == (
        "8,396 leaking observations where none can happen (the app's own state among them:"
        " dict_user)"
    )
    assert reason("g", "residue.request_context") == (
        "8,396 leaking observations where none can happen"
    )
    # The report's legend of the verdicts said so of every LEAK, the app's own state's too.
    assert "where none can happen" not in VERDICTS["LEAK"]
    assert "the app's own (given to observe())" in VERDICTS["LEAK"]


def test_the_app_s_own_state_is_blamed_only_where_the_framework_s_never_leaked() -> None:
    # The blame read only the evidence kept (the first 20): the app's own state leaking on
    # every request, the framework's on one in a hundred, read as the app's bug alone.
    from harness.faults.runner import _add_round
    from harness.load.spec import LoadResult, LoadSpec

    user = Evidence("gunicorn-gthread", "view", "user", "a", "b", Unit(1, 2, None))
    result = LoadResult(requests=1000, leaks=1010, framework_leaks=10, evidence=[user] * 20)
    t, evidence = Tally(), list[Evidence]()
    _add_round(t, LoadSpec("127.0.0.1", 9, requests=1000), result, evidence)
    verdict, why = judge(t, can_leak=False, expected_errors=frozenset(), not_exercised=None,
                         after=CLEAN_AFTER, replaces_workers=True,
                         leaked={e.name for e in evidence})  # fmt: skip
    assert (verdict, why) == (
        "LEAK",
        "1,010 leaking observations where none can happen (the app's own state among them: user)",
    )


def test_a_negative_control_must_be_caught_under_the_fault() -> None:
    assert verdict(tally(leaks=3), can_leak=True) == "caught"
    assert verdict(tally(), can_leak=True) == "missed"


def test_only_the_errors_a_fault_explains_are_allowed() -> None:
    assert verdict(tally(errors=Counter(timeout=1))) == "errors"
    assert verdict(tally(errors=Counter({"5xx": 1})), expected_errors=frozenset()) == "errors"


def test_a_fault_that_did_not_happen_proves_nothing() -> None:
    assert verdict(tally(), not_exercised="no SIGKILL was sent") == "not exercised"
    assert verdict(tally(), after=None) == "not exercised"
    unreached = AfterFault(requests=300, survivors_reached=2, respawned_reached=0)
    assert verdict(tally(), after=unreached) == "not exercised"
    assert verdict(tally(), after=unreached, replaces_workers=False) == "ok"


def test_the_requests_after_the_fault_must_be_clean() -> None:
    dirty = AfterFault(requests=300, leaks=1, respawned_reached=1)
    assert verdict(tally(), after=dirty) == "residue"
    failed = AfterFault(requests=300, errors={"reset": 1}, respawned_reached=1)
    assert verdict(tally(), after=failed) == "residue"
    # A fault in the server's arguments (recycle) still acts then: its errors are no residue
    # (uvicorn reset 1 of 300 clean requests as a worker recycled), its leaks and others are.
    still = {"after_expected_errors": frozenset({"reset"})}
    assert verdict(tally(), after=failed, **still) == "ok"
    leaky = AfterFault(requests=300, errors={"reset": 1}, leaks=1, respawned_reached=1)
    assert verdict(tally(), after=leaky, **still) == "residue"
    other = AfterFault(requests=300, errors={"5xx": 1}, respawned_reached=1)
    assert verdict(tally(), after=other, **still) == "residue"
    assert [f.name for f in FAULTS.values() if f.persists] == ["recycle"]


def test_every_verdict_is_explained() -> None:
    assert set(VERDICTS) == {"ok", "caught", "n/a", "LEAK", "missed", "lost", "errors",
                             "not exercised", "residue"}  # fmt: skip


# -- accounting ----------------------------------------------------------------------------------


def test_non_2xx_splits_into_5xx_and_other_statuses_without_the_injected_ones() -> None:
    kinds = {"reset": 1, "non-2xx": 4}
    statuses = {200: 90, 500: 5, 404: 1}
    # Two of the 500s answered requests made to fail on purpose: not errors.
    assert split_statuses(kinds, statuses, {"500": 2}) == Counter(
        {"reset": 1, "5xx": 3, "other-status": 1}
    )


def test_hostile_outcomes_are_sorted_into_answered_aborted_and_errors() -> None:
    t = Tally()
    seen = [Evidence("m", "stream", name, "a", "b", Unit(1, 2, None)) for name in ("g", "user")]
    t.add_hostile(10, {"answered": 4, "aborted": 5, "reset": 1}, seen)
    assert (t.sent, t.accounted, t.answered, t.aborted, t.leaks) == (10, 10, 4, 5, 2)
    assert t.framework_leaks == 1
    assert t.errors == Counter(reset=1) and t.lost == 0


# -- where each fault applies --------------------------------------------------------------------


def test_faults_are_registered_in_order() -> None:
    assert list(FAULTS) == ["kill-worker", "recycle", "reload", "timeout", "abort",
                            "slow-client", "hook-error"]  # fmt: skip
    with pytest.raises(UsageError, match="unknown fault 'nope'"):
        get_fault("nope")


def test_applicability_comes_from_the_modes_lifecycle() -> None:
    single = MODES["werkzeug-threaded"]
    for name in ("kill-worker", "recycle", "reload", "timeout"):
        assert FAULTS[name].not_applicable(single), name
    for name in ("abort", "slow-client", "hook-error"):
        assert FAULTS[name].not_applicable(single) is None, name
    for mode in ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent"):
        for name in ("kill-worker", "recycle", "reload"):
            assert FAULTS[name].not_applicable(MODES[mode]) is None, (name, mode)
    # The sync worker and tornado's IOLoop stop heartbeating while a request runs (measured).
    for mode in ("gunicorn-sync", "gunicorn-tornado"):
        assert FAULTS["timeout"].not_applicable(MODES[mode]) is None, mode
    why = FAULTS["timeout"].not_applicable(MODES["gunicorn-gthread"])
    assert why and "heartbeat" in why
    # uWSGI's --harakiri kills a worker whose request runs past it, also on a pool thread or in
    # a greenlet, but only while no other request starts or ends on that worker (measured).
    for mode in ("uwsgi-processes", "uwsgi-threads", "uwsgi-gevent"):
        assert FAULTS["timeout"].not_applicable(MODES[mode]) is None, mode
    assert not MODES["uwsgi-processes"].lifecycle.timeout_needs_idle_worker
    for mode in ("uwsgi-threads", "uwsgi-gevent"):
        assert MODES[mode].lifecycle.timeout_needs_idle_worker, mode


def test_a_master_that_respawns_only_when_asked_gets_asked() -> None:
    granian = MODES.get("granian")
    if granian is None:
        pytest.skip("no granian mode registered")
    assert FAULTS["kill-worker"].not_applicable(granian) is None
    assert "--respawn-failed-workers" in FAULTS["kill-worker"].server_args(granian, ChaosSettings())
    assert FAULTS["recycle"].not_applicable(granian)
    # granian's master exits when a worker it respawned dies within 5.5 s (a "crash loop").
    assert granian.lifecycle.respawn_crash_window_s > 5.5
    assert FAULTS["kill-worker"].server_args(MODES["gunicorn-sync"], ChaosSettings()) == ()


def test_the_asgi_servers_supervisors_declare_what_they_do() -> None:
    uvicorn, hypercorn = MODES["uvicorn-asgiref"], MODES["hypercorn-asgiref"]
    settings = ChaosSettings(recycle_requests=7, recycle_jitter=3)
    # uvicorn's supervisor respawns a dead worker and replaces them one by one on SIGHUP.
    for name in ("kill-worker", "recycle", "reload"):
        assert FAULTS[name].not_applicable(uvicorn) is None, name
    assert FAULTS["recycle"].server_args(uvicorn, settings) == (
        "--limit-max-requests", "266", "--limit-max-requests-jitter", "114"
    )  # fmt: skip
    # hypercorn's master replaces a worker that exits 0 and reloads on SIGHUP; a worker that
    # dies otherwise takes the whole server down (scenarios/test_chaos.py checks it live).
    for name in ("recycle", "reload"):
        assert FAULTS[name].not_applicable(hypercorn) is None, name
    why = FAULTS["kill-worker"].not_applicable(hypercorn)
    assert why and "status 0" in why and "exits" in why and "241" in why
    assert FAULTS["recycle"].server_args(hypercorn, settings) == (
        "--max-requests", "266", "--max-requests-jitter", "114"
    )  # fmt: skip
    for mode in (uvicorn, hypercorn):
        why = FAULTS["timeout"].not_applicable(mode)
        assert why and "no worker timeout" in why, mode.name
        assert FAULTS["reload"].server_args(mode, settings) == ()
        assert not mode.lifecycle.refuses_during  # the supervisor holds the listening socket


@pytest.mark.parametrize("mode", ["uvicorn-asgiref", "hypercorn-asgiref"])
def test_the_asgi_runners_take_the_recycling_arguments(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    runner = importlib.import_module(MODES[mode].runner)  # type: ignore[attr-defined]
    args = FAULTS["recycle"].server_args(MODES[mode], ChaosSettings(recycle_requests=7))
    seen: dict[str, t.Any] = {}
    monkeypatch.setattr(runner, "write_state", lambda name, state: seen.update(state))
    server = "uvicorn.run" if mode.startswith("uvicorn") else "hypercorn.run.run"
    monkeypatch.setattr(server, lambda *a, **kw: 0)
    with pytest.raises(SystemExit) if mode.startswith("hypercorn") else contextlib.nullcontext():
        runner.main(["--port", "1", "--workers", "1", *args])
    key = "limit_max_requests" if mode.startswith("uvicorn") else "max_requests"
    assert (seen[key], seen[f"{key}_jitter"]) == (int(args[1]), int(args[3]))
    assert seen[key] > 7  # see test_a_recycle_that_is_an_outage_asks_for_fewer_recycles


def test_a_recycle_that_is_an_outage_asks_for_fewer_recycles() -> None:
    # A new ASGI worker comes seconds after the old one went (hypercorn waits out its graceful
    # timeout, uvicorn its health check), and the other worker goes down meanwhile: at 60 + 30
    # requests a hypercorn cell saw 10 to 14 outages, 26 to 33 s against a 30 s bound.
    recycle, settings = FAULTS["recycle"], ChaosSettings()
    least = settings.min_rounds * settings.round_requests
    for name in ("uvicorn-asgiref", "hypercorn-asgiref"):
        mode = MODES[name]
        assert mode.lifecycle.recycle_outage_s >= 3, name
        requests, jitter = recycle.counts(mode, settings)
        # Fewer recycles, but still the planned ones within the faulted load's least requests.
        assert settings.recycle_requests < requests <= least // settings.injections, name
        assert jitter == round(requests * settings.recycle_jitter / settings.recycle_requests)
        args = recycle.server_args(mode, settings)
        assert (args[1], args[3]) == (str(requests), str(jitter))
    # Where a recycle is a fork (gunicorn), many are cheap: the settings as they are.
    assert recycle.counts(MODES["gunicorn-gthread"], settings) == (60, 30)
    # A short outage leaves room for more recycles than the limit gives: the settings again.
    quick = dataclasses.replace(MODES["hypercorn-asgiref"].lifecycle, recycle_outage_s=0.2)
    mode = t.cast(t.Any, type("Quick", (), {"lifecycle": quick}))
    assert recycle.counts(mode, settings) == (60, 30)
    # The limit follows the bound: a longer one fits more outages.
    longer = dataclasses.replace(settings, max_seconds=120.0)
    hypercorn = MODES["hypercorn-asgiref"]
    assert recycle.counts(hypercorn, longer)[0] < recycle.counts(hypercorn, settings)[0]


@pytest.fixture
def group_with_a_tracker() -> t.Iterator[tuple[int, int, int]]:
    """``(master, worker, tracker)``: a "master" in its own process group with two children, a
    worker and a process whose command line is that of multiprocessing's resource tracker
    (uvicorn's and hypercorn's spawn start method starts one beside the workers)."""
    import subprocess
    import sys

    from harness.servers import group_members

    script = (
        "import subprocess, sys, time\n"
        "cmd = 'import time; time.sleep(30)'\n"
        "subprocess.Popen([sys.executable, '-c', cmd])\n"
        "subprocess.Popen([sys.executable, '-c', cmd + '  # multiprocessing.resource_tracker'])\n"
        "time.sleep(30)\n"
    )
    master = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)

    def started() -> bool:
        # Both children in the group, each past its exec: until then a child's command line is
        # empty or its parent's (which names the tracker too), and the test read it flakily.
        children = set(group_members(master.pid)) - {master.pid}
        lines = [_cmdline(p) for p in children]
        return len(children) == 2 and all(line and b"Popen" not in line for line in lines)

    try:
        deadline = time.monotonic() + 10
        while not started() and time.monotonic() < deadline:
            time.sleep(0.02)
        members = set(group_members(master.pid)) - {master.pid}
        assert len(members) == 2, members
        (tracker,) = [p for p in members if b"resource_tracker" in _cmdline(p)]
        (worker,) = members - {tracker}
        yield master.pid, worker, tracker
    finally:
        os.killpg(master.pid, 9)
        master.wait()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_worker_pids_leave_out_the_resource_tracker(
    group_with_a_tracker: tuple[int, int, int], tmp_path: Path
) -> None:
    # Killed as a "worker", the tracker would not be replaced, and nothing would be faulted.
    from harness.faults.base import worker_pids

    master, worker, _ = group_with_a_tracker
    server = dataclasses.replace(FakeServer.of("uvicorn-asgiref", tmp_path), pid=master)
    assert worker_pids(t.cast(t.Any, server)) == {worker}


def test_a_soak_samples_the_server_processes_not_the_resource_tracker(
    group_with_a_tracker: tuple[int, int, int],
) -> None:
    # Sampled, the tracker was one more "worker" in the soak's table and verdict (measured:
    # 12.8 MiB, 4 descriptors, 1 thread beside uvicorn's and hypercorn's two workers).
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak.sampler import Sampler

    master, worker, _ = group_with_a_tracker
    sampler = Sampler(master, single_process=False)
    sampler.tick()
    assert {(s.pid, s.role) for s in sampler.processes} == {(master, "master"), (worker, "worker")}


def test_the_reload_fault_sets_the_pace_of_a_reload_that_has_one() -> None:
    reload = FAULTS["reload"]
    # gunicorn's SIGHUP replaces its workers at its own pace; granian sleeps
    # --respawn-interval per worker (3.5 s by default: 2 reloads of 2 workers took 14 s).
    assert reload.server_args(MODES["gunicorn-gthread"], ChaosSettings()) == ()
    granian = MODES.get("granian")
    if granian is not None:
        assert reload.server_args(granian, ChaosSettings()) == ("--respawn-interval", "1")


@pytest.mark.parametrize(
    ("mode", "kept_alive", "holds"),
    [
        pytest.param("uwsgi-processes", True, True, id="uwsgi-processes-keepalive"),
        pytest.param("uwsgi-processes", False, False, id="uwsgi-processes-fresh"),
        pytest.param("gunicorn-gthread", True, False, id="gunicorn-gthread-keepalive"),
    ],
)
def test_client_faults_hold_the_load_where_a_kept_alive_connection_holds_its_unit(
    mode: str, kept_alive: bool, holds: bool, tmp_path: Path
) -> None:
    import threading

    from harness.faults.clients import _HostileInjector
    from harness.load.hostile import HostileLoad, Outcome

    release = threading.Event()

    def action(seq: int) -> Outcome:
        release.wait(10.0)
        return Outcome("aborted")

    server = FakeServer.of(mode, tmp_path)
    hostile = HostileLoad(action, users=1, requests=1)
    injector = _HostileInjector(server, ChaosSettings(), hostile)  # type: ignore[arg-type]
    injector.kept_alive = kept_alive
    injector.start()
    unblock = threading.Timer(0.05, release.set) if holds else None
    if unblock is not None:
        unblock.start()
    injector.between_rounds(time.monotonic() + 10.0)
    assert injector.done() is holds  # held until the hostile client was done, or not at all
    release.set()
    injector.stop()
    assert injector.done()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/<pid>/fd")
def test_a_gunicorn_worker_is_timed_from_its_first_heartbeat() -> None:
    # gunicorn's own heartbeat file, in this process: the master kills a worker once
    # monotonic() - mtime passes --timeout, which the file's creation time never lets happen.
    pytest.importorskip("gunicorn", reason="gunicorn is a pip extra (ctxbench[servers])")
    from gunicorn.config import Config
    from gunicorn.workers.workertmp import WorkerTmp

    tornado = MODES["gunicorn-tornado"]
    assert tornado.worker_timed(os.getpid()) is None  # no heartbeat file: no account
    tmp = WorkerTmp(Config())
    try:
        assert time.monotonic() - tmp.last_update() < 0  # never past any timeout
        assert tornado.worker_timed(os.getpid()) is False
        tmp.notify()
        assert tornado.worker_timed(os.getpid()) is True
    finally:
        tmp.close()
    assert MODES["uwsgi-processes"].worker_timed(os.getpid()) is None


def _timeout_injector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heartbeats_after: int | None
) -> tuple[t.Any, list[bool]]:
    """A timeout injector against a fake gunicorn-tornado of two workers, which the master
    times once each was asked about ``heartbeats_after`` times (never: ``None``); returns it
    and, for each request it sent, whether the master timed every worker then."""
    from harness.faults import process
    from harness.load.hostile import Outcome

    workers = {101, 102}
    asked = Counter[int]()

    def worker_timed(self: object, pid: int) -> bool:
        asked[pid] += 1
        return heartbeats_after is not None and asked[pid] > heartbeats_after

    def all_timed() -> bool:
        return heartbeats_after is not None and all(asked[p] > heartbeats_after for p in workers)

    sent_when_timed: list[bool] = []

    def get(*_: object, **__: object) -> Outcome:
        sent_when_timed.append(all_timed())
        return Outcome("reset")

    monkeypatch.setattr(process, "worker_pids", lambda server: set(workers))
    monkeypatch.setattr(type(MODES["gunicorn-tornado"]), "worker_timed", worker_timed)
    monkeypatch.setattr(process, "get", get)
    server = FakeServer.of("gunicorn-tornado", tmp_path)
    injector = FAULTS["timeout"].injector(t.cast(t.Any, server), ChaosSettings())
    return injector, sent_when_timed


def test_the_timeout_requests_go_once_the_master_times_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sent a fixed 2 s after the workers started, they reached a tornado worker whose app took
    # longer to load, which the master did not time yet: both answered, "not exercised".
    from harness.servers import poll_until

    injector, sent_when_timed = _timeout_injector(tmp_path, monkeypatch, heartbeats_after=3)
    injector.start()
    poll_until(injector._hostile_finished, bool, time.monotonic() + 10.0)
    injector.stop()
    assert sent_when_timed == [True, True]
    assert injector.hostile_counts == Counter(reset=2)


def test_a_worker_never_timed_holds_the_timeout_requests_only_until_the_fault_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They go, and are counted: answered, they make the cell "not exercised", as it was.
    injector, sent_when_timed = _timeout_injector(tmp_path, monkeypatch, heartbeats_after=None)
    injector.start()
    started = time.monotonic()
    injector.stop()
    assert time.monotonic() - started < 5.0  # not the faulted load's 30 s bound
    assert sent_when_timed == [False, False]
    assert injector.hostile_counts == Counter(reset=2)


def test_which_modes_hold_a_unit_for_a_kept_alive_connection() -> None:
    # uWSGI's --http11-socket keeps a process or thread on a kept-alive connection; its
    # --http-socket (uwsgi-gevent) closes every connection, and the others share their units.
    held = {name for name, mode in MODES.items() if mode.lifecycle.kept_alive_holds_unit}
    direct = {name for name in held if "+" not in name}
    assert direct == {"uwsgi-processes", "uwsgi-threads"}
    # The same socket ignores Connection: close (it closes only after an HTTP/1.0 request).
    ignored = {name for name, mode in MODES.items() if not mode.lifecycle.honours_connection_close}
    assert {name for name in ignored if "+" not in name} == {"uwsgi-processes", "uwsgi-threads"}


def test_an_http10_request_line_for_a_server_that_ignores_connection_close() -> None:
    from harness.load.hostile import _request_bytes

    assert _request_bytes("/s", "h:1", close=True).startswith(b"GET /s HTTP/1.1\r\n")
    http10 = _request_bytes("/s", "h:1", close=True, version="1.0")
    assert http10 == b"GET /s HTTP/1.0\r\nHost: h:1\r\nConnection: close\r\n\r\n"


def test_refused_is_expected_only_where_the_server_refuses_under_the_fault() -> None:
    kill, reload = FAULTS["kill-worker"], FAULTS["reload"]
    # gunicorn's master keeps the listening socket while its workers come and go.
    for name in ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent", "gunicorn-tornado"):
        assert kill.expected_for(MODES[name]) == {"reset"}, name
        assert reload.expected_for(MODES[name]) == {"reset"}, name
    # uWSGI's master re-executes itself on a reload; a granian worker has its own socket.
    assert kill.expected_for(MODES["uwsgi-threads"]) == {"reset"}
    assert reload.expected_for(MODES["uwsgi-threads"]) == {"reset", "refused"}
    if "granian" in MODES:
        assert kill.expected_for(MODES["granian"]) == {"reset", "refused"}
        assert reload.expected_for(MODES["granian"]) == {"reset", "refused"}
    assert FAULTS["timeout"].expected_for(MODES["granian"]) == FAULTS["timeout"].expected_errors


def test_server_args_fill_the_lifecycle_templates() -> None:
    settings = ChaosSettings(recycle_requests=7, recycle_jitter=3, worker_timeout_s=4)
    sync = MODES["gunicorn-sync"]
    assert FAULTS["recycle"].server_args(sync, settings) == (
        "--max-requests", "7", "--max-requests-jitter", "3"
    )  # fmt: skip
    assert FAULTS["timeout"].server_args(sync, settings) == ("--timeout", "4")
    # uWSGI recycles no worker younger than --min-worker-lifetime (10 s unless told).
    assert FAULTS["recycle"].server_args(MODES["uwsgi-processes"], settings) == (
        "--max-requests", "7", "--max-requests-delta", "3", "--min-worker-lifetime", "2"
    )  # fmt: skip
    # A server that counts requests ignores how many a connection carries.
    assert FAULTS["recycle"].server_args(sync, settings, requests_per_connection=5) == (
        "--max-requests", "7", "--max-requests-jitter", "3"
    )  # fmt: skip


def test_a_worker_that_counts_connections_recycles_after_as_many_as_carry_the_requests() -> None:
    tornado = MODES["gunicorn-tornado"]
    assert tornado.lifecycle.recycle_counts == "connections"
    settings = ChaosSettings(recycle_requests=60, recycle_jitter=30)
    recycle = FAULTS["recycle"]
    assert recycle.server_args(tornado, settings) == (
        "--max-requests", "60", "--max-requests-jitter", "30"
    )  # fmt: skip
    assert recycle.server_args(tornado, settings, requests_per_connection=25) == (
        "--max-requests", "2", "--max-requests-jitter", "1"
    )  # fmt: skip
    assert recycle.server_args(tornado, settings, requests_per_connection=1000)[1] == "1"


def test_the_fault_load_is_the_run_settings_load() -> None:
    from harness.faults.runner import LOAD_TIMEOUT_S, LoadSettings

    settings = RunSettings(
        concurrency=3, sleep_ms=2.5, timeout=7.0, workers=2, threads=4, mount="/api", repeats=1
    )
    assert LoadSettings.of(settings) == LoadSettings(
        concurrency=3, sleep_ms=2.5, timeout=7.0, workers=2, threads=4, mount="/api"
    )
    # Run's defaults but for the timeout, which ctxbench chaos passes on (a dying worker's
    # request is an answer or a reset, not a timeout).
    default = RunSettings()
    assert (LoadSettings().concurrency, LoadSettings().sleep_ms) == (
        default.concurrency, default.sleep_ms
    )  # fmt: skip
    assert LoadSettings().timeout == LOAD_TIMEOUT_S > default.timeout


def test_requests_per_connection_follow_the_connections_the_server_sees() -> None:
    from harness.faults.runner import LoadSettings, _requests_per_connection
    from harness.servers import get_mode

    load, settings = LoadSettings(concurrency=16), ChaosSettings(round_requests=400)
    tornado = get_mode("gunicorn-tornado")
    assert _requests_per_connection(tornado, "keepalive", load, settings) == 25
    assert _requests_per_connection(tornado, "fresh", load, settings) == 1
    # gunicorn's sync worker closes after every response, whatever the client does.
    assert _requests_per_connection(get_mode("gunicorn-sync"), "keepalive", load, settings) == 1
    # Behind a proxy, its upstream connections: a new one per request unless it keeps them.
    proxied = get_mode("nginx+gunicorn-tornado")
    assert _requests_per_connection(proxied, "keepalive", load, settings) == 1
    kept = get_mode("nginx-keepalive+gunicorn-tornado")
    assert _requests_per_connection(kept, "fresh", load, settings) == 25


def test_hook_error_walks_every_phase_round_by_round() -> None:
    fault = FAULTS["hook-error"]
    phases = [fault.round_overrides(i, ChaosSettings())["fail_phase"] for i in range(6)]
    assert len(set(phases)) == 6 and "session" in phases and "teardown_request" in phases
    assert not fault.enough_rounds(5) and fault.enough_rounds(6)


@pytest.mark.parametrize(
    "changes",
    [
        {"injections": 0},
        {"interval_s": 0},
        {"fail_fraction": 1.5},
        {"recycle_jitter": -1},
        {"round_requests": True},
    ],
)
def test_chaos_settings_are_checked(changes: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        dataclasses.replace(ChaosSettings(), **changes)


# -- records, report, CLI ------------------------------------------------------------------------


def fault_cell(**changes: object) -> FaultCell:
    cell = FaultCell(
        fault="kill-worker", mode="gunicorn-sync", app="harness.apps.core_app:app",
        backend="contextvar", connections="fresh", verdict="ok", reason="fine",
        requests=1000, answered=998, errors={"reset": 2}, leaks=0,
        events=(FaultEvent(0.5, "SIGKILL", 123),), workers_before=(1, 2), workers_after=(2, 3),
        after=CLEAN_AFTER,
    )  # fmt: skip
    return dataclasses.replace(cell, **changes)


def soak_record(grow: float = 0.0) -> Soak:
    processes = tuple(
        ProcessSample(
            float(s), pid, role, int(30e6 * (1 + grow * (role == "worker") * s / 20)), 10, 1
        )
        for s in range(1, 21)
        for pid, role in ((10, "master"), (11, "worker"))
    )
    load = tuple(LoadSample(float(s), 1000.0, 1000, 0, 0) for s in range(1, 21))
    found = trends(processes, 5.0, 20.0)
    verdict_, reason = judge_soak(found, load)
    return Soak(
        mode="gunicorn-gevent", app="harness.apps.core_app:app", backend="contextvar",
        connections="fresh", seconds=20.0, warmup_s=5.0, verdict=verdict_, reason=reason,
        requests=20000, rps=1000.0, processes=processes, load=load, trends=tuple(found),
    )  # fmt: skip


def chaos_run() -> Run:
    leak = Evidence("gunicorn-gthread", "view", "g", "a", "b", Unit(1, 2, None))
    cells = (
        fault_cell(),
        fault_cell(
            fault="recycle",
            mode="werkzeug-threaded",
            verdict="n/a",
            reason="single",
            requests=0,
            answered=0,
            errors={},
            after=None,
        ),
        fault_cell(
            fault="abort",
            backend="no-reset",
            verdict="caught",
            leaks=9,
            evidence=(leak,),
            aborted=120,
        ),
    )
    run = Run.start("chaos-test", ["ctxbench", "chaos"], RunSettings(requests=400, duration=None))
    return run.replace(chaos=ChaosSettings(), faults=cells, soaks=(soak_record(),),
                       status="complete")  # fmt: skip


def test_fault_and_soak_records_round_trip_through_json() -> None:
    run = chaos_run()
    assert Run.from_json(run.to_json()) == run
    assert run.to_json()["faults"][0]["after"]["respawned_reached"] == 1


def test_the_faults_table_has_errors_by_kind_leaks_and_verdict() -> None:
    lines = text_table(faults_table(chaos_run().faults))
    header = lines[0].split()
    for column in ("fault", "mode", "requests", "reset", "refused", "timeout", "5xx", "leaks",
                   "verdict"):  # fmt: skip
        assert column in header
    assert "caught" in lines[-1] and "n/a" in lines[3]


def test_the_report_shows_faults_and_plots_the_soak() -> None:
    run = chaos_run()
    files = render_reports(run)
    md = files["report.md"]
    assert "## Faults during load" in md and "Verdict: pass" in md
    assert "## Soak: gunicorn-gevent" in md
    # The faults' knobs are what it takes to run it again: the environment showed none of them.
    chaos = md[md.index("### Chaos settings") :]
    assert "| injections | 3 |" in chaos and "| interval_s | 0.5 |" in chaos
    charts = [name for name in files if name.startswith("soak-")]
    assert sorted(charts) == [
        "soak-rps-gunicorn-gevent-contextvar-fresh.svg",
        "soak-rss-gunicorn-gevent-contextvar-fresh.svg",
    ]
    assert "<polyline" in files[charts[0]] and "<svg" in files["report.html"]
    # deterministic (one run: two would differ in their creation time across a second's tick)
    assert render_reports(run) == files
    failing = chaos_run().replace(faults=(fault_cell(verdict="LEAK", leaks=1),))
    # It names what failed: "1 failure" alone sent the reader down the page to find out.
    assert "**Verdict: 1 failure (1 x LEAK).** " in render_reports(failing)["report.md"]
    # A soak with no verdict (no process lived through its window) is no failure, nor a pass.
    unjudged = dataclasses.replace(soak_record(), verdict="no data", reason="no process lived")
    md = render_reports(chaos_run().replace(soaks=(unjudged,)))["report.md"]
    assert "**Verdict: pass.** 2 fault cells ran (1 not applicable), " in md
    assert "; 1 soak not judged (no data), every other verdict as it must be." in md
    both = failing.replace(soaks=(unjudged, soak_record()))
    md = render_reports(both)["report.md"]
    assert "**Verdict: 1 failure (1 x LEAK).** " in md
    assert "; 2 soaks, 1 not judged (no data)." in md


@pytest.mark.parametrize("status", ["interrupted", "failed"])
def test_a_chaos_run_stopped_early_passes_only_so_far(status: str) -> None:
    # Ctrl-C after the first cell of 'chaos --faults hook-error,kill-worker,reload', then
    # 'ctxbench report' of it: the green box said "Verdict: pass." of one cell in three. As
    # 'ctxbench run' says "OK so far" (amber), what did not run was not checked.
    run = chaos_run().replace(soaks=(), status=status)
    files = render_reports(run)
    md = files["report.md"]
    assert "**Verdict: pass so far.** 2 fault cells ran (1 not applicable), " in md, md
    assert "Verdict: pass." not in md
    box = files["report.html"].split("Verdict: pass so far")[0].rsplit("<section", 1)[1]
    assert "warning" in box and "verdict ok" not in box, box
    # A complete run still passes, in green; a failure stays a failure, stopped early or not.
    assert "**Verdict: pass.** " in render_reports(run.replace(status="complete"))["report.md"]
    failing = run.replace(faults=(fault_cell(verdict="LEAK", leaks=1),))
    assert "**Verdict: 1 failure (1 x LEAK).** " in render_reports(failing)["report.md"]


def test_the_verdict_counts_the_cells_not_applicable_only_when_there_are_some() -> None:
    # 'chaos --faults abort --modes gunicorn-gthread,waitress,uwsgi-threads,gunicorn-gevent'
    # said "Verdict: pass. 16 fault cells ran (0 not applicable), 11,920 requests ...".
    md = render_reports(chaos_run().replace(faults=(fault_cell(),), soaks=()))["report.md"]
    assert "**Verdict: pass.** 1 fault cell ran, 1,000 requests accounted for, every" in md, md


def test_the_faults_section_names_each_cells_app_and_counts_in_words() -> None:
    # --compare-flask: the core's and Flask's cells differ only in their app, which each line
    # of reasons names (it named the fault, mode, connections and backend only).
    from harness.apps import FLASK_APP

    cells = (fault_cell(reason="core's"), fault_cell(app=FLASK_APP, reason="flask's"))
    md = render_reports(chaos_run().replace(faults=cells))["report.md"]
    assert "`kill-worker` on `gunicorn-sync` (`core`, contextvar, fresh): ok: core's" in md
    assert "`kill-worker` on `gunicorn-sync` (`flask`, contextvar, fresh): ok: flask's" in md
    assert "2 fault cells, 0 failing." in md
    one = render_reports(chaos_run().replace(faults=(fault_cell(app="myapp:app"),)))["report.md"]
    assert "1 fault cell, 0 failing." in one and "(`myapp:app`, contextvar, fresh)" in one


def test_the_report_names_the_cell_and_the_soak_each_piece_of_evidence_is_from() -> None:
    # Two faults that leaked under one mode were listed as one flat list tagged "[mode]" alone,
    # and a soak's evidence was recorded but never shown (seen on a Flask app with a
    # module-level current-user dict: chaos --faults kill-worker,hook-error, soak LEAK).
    def leak(seen: str) -> Evidence:
        return Evidence("gunicorn-gthread", "after_request", "user", "a", seen, Unit(1, 2, None))

    cells = tuple(
        fault_cell(fault=f, mode="gunicorn-gthread", verdict="LEAK", leaks=n, evidence=ev)
        for f, n, ev in (("kill-worker", 7, tuple(leak(f"k{i}") for i in range(7))),
                         ("hook-error", 1, (leak("h0"),)))
    )  # fmt: skip
    soak = dataclasses.replace(soak_record(), verdict="LEAK", leaks=1, evidence=(leak("s0"),))
    md = render_reports(chaos_run().replace(faults=cells, soaks=(soak,)))["report.md"]
    kill = md.index("Evidence of `kill-worker` on `gunicorn-gthread` (`core`, contextvar, fresh):"
                    " the first 5 of the 7 pieces recorded")  # fmt: skip
    hook = md.index("Evidence of `hook-error` on `gunicorn-gthread` (`core`, contextvar, fresh):"
                    " 1 piece recorded")  # fmt: skip
    assert kill < md.index('"k4"') < hook < md.index('"h0"') and '"k5"' not in md
    assert "Evidence of the soak (gunicorn-gevent, core, contextvar, fresh): 1 piece" in md
    assert md.index("## Soak") < md.index('"s0"')


def test_a_cells_reason_writes_its_counts_as_the_table_does() -> None:
    big = tally(sent=12000, accounted=12000, answered=11998, errors=Counter({"reset": 2}))
    after = dataclasses.replace(CLEAN_AFTER, requests=3000)
    _, reason = judge(big, can_leak=False, expected_errors=frozenset({"reset"}),
                      not_exercised=None, after=after, replaces_workers=True)  # fmt: skip
    assert reason.startswith("11,998 answered") and "afterwards 3,000 clean requests" in reason
    lost = tally(sent=12000, accounted=11000)
    assert "1,000 of 12,000 requests" in verdict_reason(lost)


def test_a_cells_reason_writes_its_error_kinds_as_the_run_report_does() -> None:
    # The chaos report and terminal read "errors {'reset': 2}", a Python dict.
    errors = Counter({"timeout": 1, "reset": 2, "refused": 0})
    ok = judge(tally(errors=errors), can_leak=False, expected_errors=frozenset(errors),
               not_exercised=None, after=CLEAN_AFTER, replaces_workers=True)[1]  # fmt: skip
    assert ok.startswith("998 answered, errors: 2 x reset, 1 x timeout; afterwards"), ok
    assert verdict_reason(tally()).startswith("998 answered, errors: none; afterwards")
    unexpected = verdict_reason(tally(errors=errors))
    assert unexpected == "unexpected errors: 2 x reset, 1 x timeout (expected: none)"
    after = dataclasses.replace(CLEAN_AFTER, errors={"timeout": 3})
    residue = judge(tally(), can_leak=False, expected_errors=frozenset(), not_exercised=None,
                    after=after, replaces_workers=True)[1]  # fmt: skip
    assert residue == "after the fault: 0 leaks, errors: 3 x timeout in 300 requests"
    still = judge(tally(), can_leak=False, expected_errors=frozenset(), not_exercised=None,
                  after=after, replaces_workers=True,
                  after_expected_errors=frozenset({"timeout"}))[1]  # fmt: skip
    assert still.endswith(" (errors: 3 x timeout, as the fault still acts)"), still


def verdict_reason(t: Tally) -> str:
    return judge(t, can_leak=False, expected_errors=frozenset(), not_exercised=None,
                 after=CLEAN_AFTER, replaces_workers=True)[1]  # fmt: skip


def test_line_chart_is_deterministic_and_handles_empty_series() -> None:
    lines = [Line("a", (Point(1.0, 2.0), Point(2.0, 3.0)))]
    ticks = [(0.0, "0 s"), (2.0, "2 s")]
    chart = line_chart("t", ["t"], lines, ticks, shade_to=1.0, markers=False)
    assert chart == line_chart("t", ["t"], lines, ticks, shade_to=1.0, markers=False)
    assert "<svg" in line_chart("empty", ["e"], [], [], shade_to=0.0, markers=False).svg


# -- soak verdict --------------------------------------------------------------------------------


def test_a_flat_soak_passes_and_growing_memory_fails() -> None:
    assert soak_record(0.0).verdict == "ok"
    grown = soak_record(0.2)
    assert grown.verdict == "memory" and "worker 11" in grown.reason
    assert grown.reason.startswith("RSS of 1 process grew more than 5%"), grown.reason


def test_a_soak_states_its_limit_as_it_was_set_and_counts_processes_in_words() -> None:
    # The page read "RSS may grow by at most 5.0%" beside the verdict's "within 5%", and a
    # soak of one process passed with "1 processes within 5%".
    one = trends([ProcessSample(float(s), 11, "worker", 30_000_000, 10, 1) for s in range(20)],
                 0.0, 19.0)  # fmt: skip
    assert judge_soak(one, [])[1].startswith("1 process within 5% (")
    assert judge_soak(one, [], limit=0.025)[1].startswith("1 process within 2.5% (")
    md = render_reports(chaos_run())["report.md"]
    assert "**ok**: 2 processes within 5% (" in md and "RSS may grow by at most 5% after" in md


def test_a_soak_s_errors_are_told_by_kind() -> None:
    # The soak's page said "3 errors" of a soak whose results held {"reset": 2, "timeout": 1}.
    soak = dataclasses.replace(soak_record(), errors=3, error_kinds={"reset": 2, "timeout": 1})
    md = render_reports(chaos_run().replace(soaks=(soak,)))["report.md"]
    assert " 3 errors (2 x reset, 1 x timeout), 0 leaks," in md
    assert " 0 errors, 0 leaks," in render_reports(chaos_run())["report.md"]


def test_descriptors_that_keep_growing_fail_the_soak() -> None:
    processes = [ProcessSample(float(s), 11, "worker", 30_000_000, 10 + s, 1) for s in range(30)]
    found = trends(processes, 0.0, 29.0)
    assert found[0].fds_growing
    assert judge_soak(found, [])[0] == "fds"
    assert "kept growing in 1 process; worst: worker 11 10 -> 39" in judge_soak(found, [])[1]
    steady = [ProcessSample(float(s), 11, "worker", 30_000_000, 10 + s % 3, 1) for s in range(30)]
    assert judge_soak(trends(steady, 0.0, 29.0), [])[0] == "ok"


def test_a_soak_too_short_to_judge_descriptors_does_not_call_them_steady() -> None:
    # `soak --minutes 0.03` passed with "descriptors steady" on 2 samples after its warm-up,
    # where descriptors are judged on 6 at least.
    def soak(seconds: int) -> list[ProcessSample]:
        return [ProcessSample(float(s), 11, "worker", 30_000_000, 10, 1) for s in range(seconds)]

    short = judge_soak(trends(soak(2), 0.0, 1.0), [])
    assert short == ("ok", "1 process within 5% (largest RSS change +0.0%), descriptors not"
                     " judged (2 samples after the warm-up, 6 needed: soak longer)")  # fmt: skip
    assert judge_soak(trends(soak(6), 0.0, 5.0), [])[1].endswith(", descriptors steady")


def test_leaks_and_errors_fail_a_soak_and_no_sample_is_no_data() -> None:
    flat = trends([ProcessSample(float(s), 1, "worker", 1000, 5, 1) for s in range(10)], 0, 9)
    assert judge_soak(flat, [LoadSample(1.0, 1.0, 1, 0, 1)])[0] == "LEAK"
    assert judge_soak(flat, [LoadSample(1.0, 1.0, 1, 1, 0)])[0] == "errors"
    assert judge_soak([], [])[0] == "no data"


def test_a_tick_without_a_new_progress_report_records_no_load_sample() -> None:
    # A report that comes late (a busy machine) is not a second in which the server served
    # nothing: no sample for it, and the next one covers the whole span.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak.sampler import Sampler

    sampler = Sampler(os.getpid(), single_process=True)
    sampler.started = time.monotonic()
    sampler._latest = sampler._previous = (sampler.started, 0, 0, 0)
    sampler.progress(100, 1, 0)
    sampler.tick()
    sampler.tick()  # no report since the last tick
    assert [(s.requests, s.errors) for s in sampler.load] == [(100, 1)]
    sampler.progress(150, 1, 2)
    sampler.tick()
    assert [(s.requests, s.leaks) for s in sampler.load] == [(100, 0), (50, 2)]
    assert all(s.rps > 0 for s in sampler.load)
    assert len({s.pid for s in sampler.processes}) == 1 and len(sampler.processes) == 3


def test_the_last_partial_second_of_a_soak_joins_the_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The load ends just after a tick: the last tick, 0.02 s later, plotted as a rate of its
    # own, ended the soak's rps chart in a vertical line.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    import harness.soak.sampler as sampler_module

    clock = [100.0]
    monkeypatch.setattr(sampler_module.time, "monotonic", lambda: clock[0])
    sampler = sampler_module.Sampler(os.getpid(), single_process=True)
    sampler.started = 100.0
    sampler._latest = sampler._previous = sampler._before = (100.0, 0, 0, 0)
    for now, requests, leaks in ((101.0, 1000, 0), (102.0, 1800, 1), (102.02, 1816, 1)):
        clock[0] = now
        sampler.progress(requests, 0, leaks)
        if now == 102.02:
            sampler.stop()
        else:
            sampler.tick()
    assert [(s.t, s.requests, s.leaks, s.rps) for s in sampler.load] == [
        (1.0, 1000, 0, 1000.0),
        (2.02, 816, 1, 800.0),
    ]


def test_an_interrupted_soak_keeps_what_it_sampled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ctrl-C (or SIGTERM) ten minutes into a soak must not lose its samples, nor, with them,
    # the run folder: the results say "interrupted", as an interrupted run's do.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    import harness.soak.runner as soak_runner

    @contextlib.contextmanager
    def server(mode: str, *, log_dir: Path, **_: object) -> t.Iterator[FakeServer]:
        srv = FakeServer.of(mode, Path(log_dir))
        srv.log_path.write_text("served\n")
        yield srv

    def interrupted_load(spec: object, progress: t.Callable[[int, int, int], None]) -> None:
        progress(1200, 0, 0)
        raise KeyboardInterrupt

    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "group_members", lambda pid: [pid])
    monkeypatch.setattr(soak_runner, "run_load", interrupted_load)
    run_dir = tmp_path / "run"
    assert main(["soak", "--mode", "gunicorn-sync", "--minutes", "10", "--run-dir",
                 str(run_dir)]) == 130  # fmt: skip
    run = results.load(run_dir)
    assert run.status == "interrupted"
    (soak,) = run.soaks
    assert soak.requests == 1200 and soak.processes and soak.load
    assert (run_dir / "logs" / "gunicorn-sync.log").is_file()
    err = capsys.readouterr().err
    # A soak has no cells: the line says what is kept (it said "the cells finished").
    assert "ctxbench: what the soak sampled before the interrupt is kept in" in err, err
    assert "writes its report" in err and "cells" not in err, err
    # Stopped inside its warm-up: said so, not "no process sampled through the window".
    assert soak.verdict == "no data" and soak.reason.startswith("stopped after "), soak.reason
    assert soak.reason.endswith("inside its 180 s warm-up: nothing was judged"), soak.reason
    # The report gives the length it ran, not the 600 s asked for, and no "median 0 rps".
    md = render_reports(run)["report.md"]
    assert " s of steady load (stopped early: 600 s were asked for; 180 s warm-up" in md
    assert "no load sample after the warm-up" in md and "median 0 " not in md
    # Neither a pass nor a failure: the headline said "Verdict: 1 failure" (the exit is 130).
    assert "**Verdict: not judged.** 1 soak stopped early, not judged (no data)." in md, md
    assert "failure" not in md and "Verdict: pass" not in md


def test_a_process_born_after_the_warm_up_is_shown_not_judged() -> None:
    processes = [ProcessSample(float(s), 11, "worker", 1000 * (1 + s), 5, 1) for s in range(15, 30)]
    found = trends(processes, 5.0, 29.0)
    assert not found[0].whole_window
    assert judge_soak(found, [])[0] == "no data"


def test_default_warmup_is_bounded() -> None:
    assert default_warmup(600) == 180.0
    assert default_warmup(3600) == 180.0
    assert default_warmup(30) == 10.0
    assert default_warmup(8) == 4.0


# -- the CLI's usage errors ----------------------------------------------------------------------


def test_soak_help_offers_only_the_patterns_a_soak_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # 'ctxbench soak --help' said '--connections {keepalive,fresh,both}', and '--connections
    # both' was then refused: "a soak runs one connection pattern".
    with pytest.raises(SystemExit):
        main(["soak", "--help"])
    out = capsys.readouterr().out
    assert "--connections {keepalive,fresh}" in out and "both" not in out, out
    # --minutes 0.25 warmed up 7.5 s where the help said "10 to 180 s" (default_warmup: at most
    # half of the soak).
    assert "10 to 180 s and at most half of it" in " ".join(out.split()), out
    with pytest.raises(SystemExit) as exc:
        main(["soak", "--mode", "gunicorn-gevent", "--minutes", "1", "--connections", "both"])
    assert exc.value.code == 2
    assert "invalid choice: 'both' (choose from 'keepalive', 'fresh')" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chaos", "--faults", "nope"], "unknown fault 'nope'"),
        (  # werkzeug-threaded: without the check nothing starts (recycle is n/a there)
            ["chaos", "--faults", "recycle,recycle", "--modes", "werkzeug-threaded"],
            "--faults lists 'recycle' twice",
        ),
        (["chaos", "--faults", "recycle,"], "--faults has an empty value"),
        (["chaos", "--modes", "nope"], "unknown server mode 'nope'"),
        (["chaos", "--interval", "0"], "bad --interval 0"),
        (["soak", "--mode", "gunicorn-gevent", "--minutes", "0"], "--minutes"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_chaos_list_names_every_fault_and_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "--list"]) == 0
    out = capsys.readouterr().out
    for name in FAULTS:
        assert f"{name}:" in out
    assert "werkzeug-threaded: n/a: a single server process" in out


def test_results_document_lists_psutil() -> None:
    assert "psutil" in results.PACKAGES


def test_a_pattern_the_mode_cannot_serve_is_not_applicable_and_starts_nothing() -> None:
    from harness.expectations import situation
    from harness.faults import run_fault_cell

    unserved = [
        (name, pattern)
        for name, mode in MODES.items()
        for pattern in ("keepalive", "fresh")
        if not situation(mode.traits, pattern).applicable
    ]
    if not unserved:
        pytest.skip("every registered mode serves both connection patterns")
    mode, pattern = unserved[0]
    cell = run_fault_cell(FAULTS["abort"], mode, app="harness.apps.core_app:app",
                          backend="contextvar", connections=pattern)  # fmt: skip
    assert cell.verdict == "n/a" and "cannot serve" in cell.reason, cell
    # said once, in words that continue the verdict's: 'n/a: the mode cannot serve ...'
    assert "applicable" not in cell.reason.lower() and cell.reason.count("keep") == 1, cell


@pytest.mark.parametrize(
    ("cells", "status"),
    [
        pytest.param(
            [fault_cell(verdict="errors", errors={"other-status": 557}, answered=2)], 2,
            id="answered-by-app",
        ),
        pytest.param(
            [fault_cell(after=dataclasses.replace(CLEAN_AFTER, errors={"other-status": 3}))], 2,
            id="answered-after-the-fault",
        ),
        pytest.param(
            [fault_cell(verdict="errors", errors={"other-status": 5}),
             fault_cell(verdict="LEAK", leaks=4)], 1,
            id="a-leak-still-wins",
        ),
        pytest.param([fault_cell(verdict="errors", errors={"5xx": 9})], 1, id="5xx-is-a-finding"),
        pytest.param([fault_cell()], 0, id="ok"),
    ],
)  # fmt: skip
def test_chaos_exits_2_when_the_app_answered_in_the_probes_place(
    cells: list[FaultCell],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As `ctxbench run`: a 401 or 429 from the app was never checked, so no verdict (exit 2),
    # not a failing cell (exit 1).
    from harness.faults import runner

    def fake_chaos(faults: t.Any, settings: RunSettings, *args: t.Any, **kw: t.Any) -> Run:
        return results.Run.start("x", ["ctxbench"], settings).replace(faults=tuple(cells))

    monkeypatch.setattr(runner, "run_chaos", fake_chaos)
    argv = ["chaos", "--faults", "abort", "--modes", "werkzeug-threaded", "--run-dir",
            str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == status
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("ctxbench: error: ")]
    if status == 2:
        assert len(said) == 1 and "neither 2xx nor 5xx" in said[0], err
        assert "the app answered them itself" in said[0], err
    else:
        assert not said, err


def test_chaos_names_the_app_of_a_failing_cell_in_the_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.apps import FLASK_APP
    from harness.faults import runner

    cell = fault_cell(app=FLASK_APP, verdict="LEAK", leaks=1, reason="1 leaking observation")

    def fake_chaos(faults: t.Any, settings: RunSettings, *args: t.Any, **kw: t.Any) -> Run:
        return results.Run.start("x", ["ctxbench"], settings).replace(faults=(cell,))

    monkeypatch.setattr(runner, "run_chaos", fake_chaos)
    argv = ["chaos", "--faults", "abort", "--modes", "werkzeug-threaded", "--run-dir",
            str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "kill-worker gunicorn-sync flask contextvar fresh: LEAK: 1 leaking observation" in out
    assert "\n1 fault cell, 1 failing, 1,000 requests accounted for" in out


def test_soak_error_kinds_split_the_statuses() -> None:
    # The soak records its failures by kind, as a fault cell does, so that `soak` can tell the
    # app answering in the probe's place (exit 2) from the server failing (exit 1).
    soak = dataclasses.replace(soak_record(), errors=7, error_kinds={"other-status": 7})
    doc = results.Run.start("x", ["ctxbench"], RunSettings()).replace(soaks=(soak,)).to_json()
    assert results.Run.from_json(doc).soaks[0].error_kinds == {"other-status": 7}


def test_the_soak_verdict_line_names_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `soak --app myproject.wsgi:app` said "soak gunicorn-gevent contextvar fresh: ok": which
    # app was soaked was in the report only.
    pytest.importorskip("psutil", reason="ctxbench soak needs psutil (ctxbench[soak])")
    import harness.soak

    soak = dataclasses.replace(soak_record(), app="myproject.wsgi:app")
    monkeypatch.setattr(harness.soak, "run_soak", lambda *a, **kw: soak)
    argv = ["soak", "--mode", "gunicorn-gevent", "--minutes", "0.5", "--app", "myproject.wsgi:app"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\nsoak gunicorn-gevent myproject.wsgi:app contextvar fresh: ok: " in out, out


@pytest.mark.parametrize("command", ["chaos", "run"])
def test_a_run_stopped_by_an_error_says_the_results_it_kept(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `--app <a Flask app> --backend contextvar,no-reset`: the no-reset server fails to start
    # after the contextvar cells ran; exit 2 with one line, and the run folder kept (marked
    # failed) without a word of it. The line now says where, as a Ctrl-C's does.
    from harness import runner as run_runner
    from harness.errors import ServerStartError
    from harness.faults import runner as chaos_runner

    said = "gunicorn-sync: backend 'no-reset' swaps the storage of ctxbench's core framework"
    stop = ServerStartError(said)

    def stopped(settings: RunSettings, run_dir: Path, **kw: t.Any) -> Run:
        run = results.Run.start("x", ["ctxbench"], settings)
        results.write_ended(run_dir, run.replace(faults=(fault_cell(),)), 1.0, stop)
        raise stop

    monkeypatch.setattr(chaos_runner, "run_chaos", lambda f, s, c, d, **kw: stopped(s, d))
    monkeypatch.setattr(run_runner, "run_matrix", stopped)
    run_dir = tmp_path / "run"
    argv = [command, "--modes", "werkzeug-threaded", "--run-dir", str(run_dir)]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"ctxbench: error: {said}; the cells finished before the"
                           f" error are kept in {run_dir / 'results.json'} (marked failed);"
                           f" ctxbench report {run_dir} writes their report"), line  # fmt: skip
    assert results.load(run_dir).status == "failed"

    # An error before anything was measured keeps nothing, and says nothing of it.
    def fails(*args: t.Any, **kw: t.Any) -> Run:
        raise ServerStartError(said)

    monkeypatch.setattr(run_runner, "run_matrix", fails)
    monkeypatch.setattr(chaos_runner, "run_chaos", fails)
    assert main([command, "--modes", "werkzeug-threaded", "--run-dir", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == f"ctxbench: error: {said}\n"
    assert not (tmp_path / "b").exists()


def test_whether_a_backend_can_leak_follows_the_traits_the_server_runs_with() -> None:
    # gunicorn-sync with --threads 4 is gthread's pool: chaos took sync's traits and called the
    # leak of a process-wide storage there "a leak where none can happen".
    from harness.faults.runner import _leak_expected
    from harness.servers import ServerConfig, get_mode

    sync = get_mode("gunicorn-sync")
    fault = FAULTS["hook-error"]
    assert not _leak_expected(fault, "shared-global", sync.name, sync.traits, "keepalive").can_leak
    threaded = sync.traits_for(ServerConfig(threads=4))
    assert _leak_expected(fault, "shared-global", sync.name, threaded, "keepalive").can_leak


@pytest.mark.parametrize("mode", ["gunicorn-sync", "nginx+gunicorn-sync"])
def test_which_faults_apply_follows_the_server_as_configured(
    mode: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'chaos --modes gunicorn-sync --threads 4 --faults timeout,recycle' judged the timeout cell
    # by the sync worker's lifecycle and ran it: "not exercised: 2 requests that slept past the
    # worker timeout were answered" (exit 1). gunicorn runs that as its gthread worker, which
    # heartbeats while a request runs: the fault cannot happen there.
    from harness.apps import CORE_APP
    from harness.faults import runner as chaos_runner
    from harness.faults.runner import LoadSettings, run_fault_cell
    from harness.servers import ServerConfig, get_mode

    timeout = FAULTS["timeout"]
    assert timeout.not_applicable(get_mode(mode).configured(ServerConfig(threads=1))) is None
    why = timeout.not_applicable(get_mode(mode).configured(ServerConfig(threads=4)))
    assert why is not None and "gunicorn runs -k sync with 4 threads as its gthread worker" in why
    assert "never kills it mid-request" in why
    configured = get_mode(mode).configured(ServerConfig(threads=4))
    assert configured.traits == get_mode(mode).traits_for(ServerConfig(threads=4))
    assert get_mode(mode).lifecycle.timeout_args  # the registered mode is left as it was

    def no_server(*args: object, **kw: object) -> t.NoReturn:
        raise AssertionError("a cell that cannot happen started a server")

    monkeypatch.setattr(chaos_runner, "live_server", no_server)
    cell = run_fault_cell(timeout, mode, app=CORE_APP, backend="contextvar",
                          connections="keepalive", load=LoadSettings(threads=4))  # fmt: skip
    assert (cell.verdict, cell.reason) == ("n/a", why)
    # Alone, it is nothing to run: a usage error before any server starts, not an empty run.
    # It says so of the settings given: 'chaos --list', where it pointed, shows each mode with
    # its default settings, under which the timeout applies to gunicorn-sync.
    if mode == "gunicorn-sync":
        argv = ["chaos", "--modes", mode, "--threads", "4", "--faults", "timeout"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "nothing to run: timeout cannot happen under gunicorn-sync with --threads 4 (" in err
        assert "); gunicorn-sync takes timeout with its default settings, as 'ctxbench" in err
        assert err.rstrip().endswith("shows: leave out --threads 4 to run it"), err
        assert "see 'ctxbench chaos --list'" not in err


def test_a_soak_writes_what_it_sampled_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A soak wrote results.json at its end only: killed outright (kill -9, the OOM killer) it
    # kept nothing of what it sampled, and an interrupt during that write removed the run
    # folder, the server's log with it. Now it is written once the server serves, then every
    # SAVE_EVERY seconds, marked running (read back as abandoned once its writer is gone).
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak import runner as soak_runner

    run_dir = tmp_path / "run"
    written: list[Run] = []

    @contextlib.contextmanager
    def server(mode: str, *, log_dir: Path, **_: object) -> t.Iterator[FakeServer]:
        srv = FakeServer.of(mode, Path(log_dir))
        srv.log_path.write_text("served\n")
        yield srv

    def load(spec: object, progress: t.Callable[[int, int, int], None]) -> t.NoReturn:
        written.append(results.load(run_dir))  # before the first request
        progress(100, 0, 0)  # less than SAVE_EVERY seconds in: not written again
        written.append(results.load(run_dir))
        raise KeyboardInterrupt  # stands in for the kill: what is on disk is what was kept

    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: None)
    monkeypatch.setattr(soak_runner, "run_load", load)
    argv = ["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--run-dir", str(run_dir)]
    assert main(argv) == 130
    first, second = written
    assert first.status == second.status == "running"
    assert first.owner is not None and first.owner.pid == os.getpid()
    (soak,) = first.soaks
    assert (soak.mode, soak.requests, soak.seconds) == ("gunicorn-sync", 0, 60.0)
    assert second.soaks[0].requests == 0  # the write is bounded in rate, not one per report
    assert (run_dir / "logs" / "gunicorn-sync.log").read_text() == "served\n"
    assert results.load(run_dir).soaks[0].requests == 100  # the interrupt's write, as before


def test_a_soak_in_progress_is_saved_at_a_bounded_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each save writes every sample so far, in the load's thread: 2.4 s for six hours of five
    # processes. Every 10 s, a soak of a day held its load up most of the time; now the saves
    # take at most a twentieth of it. (A fake clock: each save "takes" 1 s.)
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak import runner as soak_runner

    offset = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + offset[0])
    saved: list[int] = []

    def save(soak: Soak) -> None:
        saved.append(soak.requests)
        offset[0] += 1.0

    server = serving(tmp_path)

    def reports(spec: object, progress: t.Callable[[int, int, int], None]) -> t.NoReturn:
        for n in range(1, 6):
            offset[0] += 5.0
            progress(10 * n, 0, 0)
        raise KeyboardInterrupt

    monkeypatch.setattr(soak_runner, "time", clock)
    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: None)
    monkeypatch.setattr(soak_runner, "run_load", reports)
    with pytest.raises(soak_runner.SoakInterrupted):
        soak_runner.run_soak("gunicorn-sync", seconds=60.0, app="x:app", save=save, save_every=0)
    # Saved at the start, at 5 s (done at 6 s: the next is due 20 s later), then at 26 s.
    assert saved == [0, 10, 50]


def test_a_soak_is_saved_in_its_first_seconds_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first save after the start was 10 s in: a soak killed in its first 10 s kept no
    # sample. Now the saves are 1, 2, 4, 8 and 16 s in, then every 10 s.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak import runner as soak_runner

    offset = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + offset[0])
    saved: list[int] = []

    server = serving(tmp_path)

    def reports(spec: object, progress: t.Callable[[int, int, int], None]) -> t.NoReturn:
        for n in range(1, 81):  # a report every half second, as the driver's
            offset[0] += 0.5
            progress(n, 0, 0)  # the count stands for the time: n half seconds
        raise KeyboardInterrupt

    monkeypatch.setattr(soak_runner, "time", clock)
    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: None)
    monkeypatch.setattr(soak_runner, "run_load", reports)
    save = lambda soak: saved.append(soak.requests)  # noqa: E731
    with pytest.raises(soak_runner.SoakInterrupted):
        soak_runner.run_soak("gunicorn-sync", seconds=60.0, app="x:app", save=save)
    assert [n / 2 for n in saved] == [0, 1, 2, 4, 8, 16, 26, 36]


def test_a_soak_keeps_no_latency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It reports none, and its driver kept every one: the harness grew by 36 bytes a request
    # (0.5 MB every 10 s at 1,300 requests/s, measured), some 4 GB in a soak of a day.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak import runner as soak_runner

    loads: list[dict[str, object]] = []

    server = serving(tmp_path)

    def load(spec: object, progress: object) -> t.NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: loads.append(load))
    monkeypatch.setattr(soak_runner, "run_load", load)
    with pytest.raises(soak_runner.SoakInterrupted):
        soak_runner.run_soak("gunicorn-sync", seconds=60.0, app="x:app")
    assert [load["keep_latencies"] for load in loads] == [False]


def test_a_soak_in_progress_encodes_each_sample_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each save of a soak in progress encoded every sample so far, in the load's thread: 0.35 s
    # for an hour of five processes, and the seconds of load around each save dipped to half
    # their rate (measured). Now each sample is encoded by the first save that holds it.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness import records
    from harness.soak import runner as soak_runner

    run_dir = tmp_path / "run"
    offset = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + offset[0])
    samplers: list[soak_runner.Sampler] = []
    encoded: Counter[int] = Counter()  # by identity: two samples may be equal
    to_json = records.to_json

    def counting(value: object) -> object:
        if isinstance(value, ProcessSample | LoadSample):
            encoded[id(value)] += 1
        return to_json(value)

    class Sampler(soak_runner.Sampler):
        def start(self) -> soak_runner.Sampler:
            samplers.append(self)
            return super().start()

    server = serving(tmp_path)

    def load(spec: object, progress: t.Callable[[int, int, int], None]) -> t.NoReturn:
        for n in range(1, 4):
            samplers[0].tick()  # a second of samples, then a save
            offset[0] += soak_runner.SAVE_EVERY
            progress(100 * n, 0, 0)
        saves = dict(encoded)  # before the write of the interrupted soak, which encodes all
        soak = results.load(run_dir).soaks[0]
        assert soak.requests == 300 and len(soak.processes) >= 3
        assert len(saves) >= len(soak.processes) + len(soak.load)
        assert max(saves.values()) == 1, saves
        raise KeyboardInterrupt

    monkeypatch.setattr(records, "to_json", counting)
    monkeypatch.setattr(soak_runner, "time", clock)
    monkeypatch.setattr(soak_runner, "Sampler", Sampler)
    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: None)
    monkeypatch.setattr(soak_runner, "run_load", load)
    argv = ["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--run-dir", str(run_dir)]
    assert main(argv) == 130


def test_a_soak_written_in_progress_is_the_document_results_write_writes(
    tmp_path: Path,
) -> None:
    from harness.soak.saves import SoakWriter

    def samples(rss: int) -> tuple[list[LoadSample], list[ProcessSample]]:
        load = [LoadSample(float(i), 9.5, 10, 0, 0) for i in range(9)]
        return load, [ProcessSample(float(i), 7, "worker", rss, 5, 2) for i in range(9)]

    def soak(series: tuple[list[LoadSample], list[ProcessSample]], n: int, m: int) -> Soak:
        load, processes = series
        return dataclasses.replace(soak_record(), load=tuple(load[:n]),
                                   processes=tuple(processes[:m]))  # fmt: skip

    run = results.Run.start("x", ["ctxbench"], RunSettings(modes=("gunicorn-sync",)))
    write = SoakWriter(tmp_path, run)
    one, another = samples(1 << 20), samples(2 << 20)
    # Grown, then another soak's (longer, then shorter), then none at all.
    for sampled in (soak(one, 2, 3), soak(one, 3, 5), soak(another, 4, 6), soak(another, 1, 1),
                    soak(one, 0, 0)):  # fmt: skip
        write(sampled)
        written = (tmp_path / "results.json").read_text()
        results.write(tmp_path / "all", run.replace(soaks=(sampled,)))
        assert json.loads(written) == json.loads((tmp_path / "all/results.json").read_text())
        assert results.load(tmp_path).soaks == (sampled,)


def test_a_soak_interrupted_while_it_writes_its_end_keeps_all_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Ctrl-C during the write of a finished soak left the last save of it in progress,
    # without its last seconds, marked running (then abandoned, "killed outright"); now the
    # whole soak is written, marked interrupted, as a Ctrl-C a moment before leaves it.
    pytest.importorskip("psutil", reason="the soak's sampler needs psutil (ctxbench[soak])")
    from harness.soak import runner as soak_runner

    run_dir = tmp_path / "run"
    write_ended = results.write_ended

    def interrupted(run_dir: Path, run: Run, elapsed: float, stopped_by: object) -> Run:
        if stopped_by is None:
            raise KeyboardInterrupt
        return write_ended(run_dir, run, elapsed, t.cast(BaseException, stopped_by))

    server = serving(tmp_path)

    done = SimpleNamespace(requests=100, errors=0, leaks=0, evidence=(), error_kinds={},
                           statuses={200: 100})  # fmt: skip
    monkeypatch.setattr(soak_runner, "live_server", server)
    monkeypatch.setattr(soak_runner, "aimed_at", lambda server, **load: None)
    monkeypatch.setattr(soak_runner, "run_load", lambda spec, progress: done)
    monkeypatch.setattr(results, "write_ended", interrupted)
    argv = ["soak", "--mode", "gunicorn-sync", "--minutes", "1", "--run-dir", str(run_dir)]
    assert main(argv) == 130
    run = results.load(run_dir)
    assert run.status == "interrupted" and run.soaks[0].requests == 100


@pytest.mark.usefixtures("interrupt_the_complete_write")
def test_chaos_interrupted_while_it_writes_complete_keeps_every_cell_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Ctrl-C came as the last write began: results.json kept the last cell's write, marked
    # running, which report and compare read as abandoned (killed outright).
    from harness.faults import runner

    monkeypatch.setattr(runner, "run_fault_cell", lambda fault, mode, **kw: fault_cell(mode=mode))
    settings = RunSettings(modes=("gunicorn-sync",), connections=("fresh",))
    with pytest.raises(KeyboardInterrupt):
        runner.run_chaos([FAULTS["kill-worker"]], settings, ChaosSettings(), tmp_path)
    run = results.load(tmp_path)
    assert run.status == "interrupted"
    assert len(run.faults) == 1


def test_chaos_off_a_terminal_prints_a_line_per_finished_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Piped (CI, a log), 'chaos --faults abort --modes ... --connections both --backend
    # contextvar,no-reset' printed nothing for its 38 s until the table: the live line is a
    # terminal's only, and no line said a cell had ended, where `run` prints one per cell.
    from harness.faults import runner

    def judged(fault: t.Any, mode: str, **kw: t.Any) -> FaultCell:
        verdict = "missed" if kw["backend"] == "no-reset" else "ok"
        return fault_cell(fault=fault.name, mode=mode, backend=kw["backend"], verdict=verdict)

    monkeypatch.setattr(runner, "run_fault_cell", judged)
    argv = ["chaos", "--faults", "kill-worker", "--modes", "gunicorn-sync", "--connections",
            "fresh", "--backend", "contextvar,no-reset",
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 1
    err = [line.split("s  ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert err == [
        "kill-worker gunicorn-sync core contextvar fresh: ok  run so far: 1 cell, 0 failing",
        "kill-worker gunicorn-sync core no-reset fresh: missed  run so far: 2 cells, 1 failing",
    ], err


def test_a_control_that_needs_no_failure_can_leak_under_every_fault() -> None:
    # 'chaos --modes gunicorn-gthread --faults kill-worker,abort --backend shared-app-slot' said
    # "LEAK: 13,421 leaking observations where none can happen" (exit 1): a process-wide slot
    # leaks wherever requests overlap, and only lifecycle controls need a failed request.
    from harness.faults.runner import _leak_expected, _no_leak_why
    from harness.servers import get_mode

    gthread, sync = get_mode("gunicorn-gthread"), get_mode("gunicorn-sync")

    def expected(fault: str, backend: str, mode: t.Any = gthread) -> t.Any:
        return _leak_expected(FAULTS[fault], backend, mode.name, mode.traits, "keepalive")

    for fault in ("kill-worker", "abort", "hook-error"):
        assert expected(fault, "shared-app-slot").can_leak, fault
        assert not expected(fault, "shared-app-slot", sync).can_leak, fault
    # A lifecycle control leaks only where hook-error makes a request fail, and its reason names
    # that fault, not run's --fail-phase, which chaos has not.
    lifecycle = expected("kill-worker", "teardown-skips-pop")
    assert not lifecycle.can_leak and "--fail-phase" not in lifecycle.reason
    assert _no_leak_why(lifecycle) == (
        "teardown-skips-pop cannot leak here: it leaves a context behind only after a request"
        " fails at teardown_request or teardown_appcontext, which only the hook-error fault"
        " makes happen"
    )
    assert expected("hook-error", "teardown-skips-pop").can_leak
    # A race on a worker's first requests shows only by chance: no leak is no blindness.
    race = expected("kill-worker", "before-first-request-race")
    assert race.can_leak and race.chance
    assert _no_leak_why(race).startswith("before-first-request-race shows a leak here only by")
    judged = {"expected_errors": frozenset(), "not_exercised": None, "replaces_workers": False}
    assert judge(Tally(sent=10, accounted=10, answered=10), can_leak=True, chance=race.chance,
                 after=CLEAN_AFTER, **judged)[0] == "ok"  # fmt: skip
    residue = dataclasses.replace(CLEAN_AFTER, leaks=3)
    caught = judge(Tally(sent=10, accounted=10, answered=10), can_leak=True, chance=race.chance,
                   after=residue, **judged)  # fmt: skip
    assert caught == ("caught", "3 leaking observations after the fault")
    assert "(or after it, for one that shows a leak only by chance)" in VERDICTS["caught"]
    assert judge(Tally(sent=10, accounted=10, answered=10), can_leak=True, after=CLEAN_AFTER,
                 **judged)[0] == "missed"  # fmt: skip


def test_chaos_says_on_the_terminal_why_a_cell_is_not_applicable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'chaos --modes gunicorn-gthread,waitress --faults kill-worker,hook-error' showed an n/a row
    # for waitress and no why; the report alone said it.
    from harness.faults import runner

    def judged(fault: t.Any, mode: str, **kw: t.Any) -> FaultCell:
        if mode == "waitress":
            return fault_cell(mode=mode, connections=kw["connections"], verdict="n/a",
                              reason="a single server process", requests=0)  # fmt: skip
        return fault_cell(mode=mode, connections=kw["connections"])

    monkeypatch.setattr(runner, "run_fault_cell", judged)
    argv = ["chaos", "--faults", "kill-worker", "--modes", "gunicorn-gthread,waitress",
            "--connections", "both", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("kill-worker waitress: n/a: a single server process\n") == 1, out
