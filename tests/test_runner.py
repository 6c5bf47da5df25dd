"""The runner: aggregation of measured runs and the matrix loop (with a fake server and load)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import records, results
from harness.apps import app_label
from harness.errors import ServerStartError, UsageError
from harness.load import LoadResult
from harness.preflight import checked
from harness.results import EVIDENCE_CAP, Cell, Latency, LeakExpectation, ServerConnections
from harness.runner import (
    StatusLine,
    aggregate,
    expectation_for,
    run_matrix,
    server_connections_for,
)
from harness.servers import ServerConfig, get_mode
from harness.servers.base import ModeTraits
from harness.settings import RunSettings
from harness.verdict import Evidence, Unit


def evidence(token: str) -> Evidence:
    return Evidence(
        mode="gunicorn-gthread",
        phase="view",
        name="request",
        expected=token,
        seen="other",
        unit=Unit(1, 2, None),
    )


def result(rps: float, *, leaks: int = 0, errors: int = 0, latencies: list[float] | None = None,
           units: list[tuple[int, int, int | None]] | None = None,
           observed: tuple[str, ...] = ("g", "request")) -> LoadResult:  # fmt: skip
    latencies = latencies if latencies is not None else [1.0, 2.0, 3.0]
    return LoadResult(
        requests=len(latencies) + errors,
        errors=errors,
        error_kinds={"reset": errors} if errors else {},
        leaks=leaks,
        leaky_requests=min(leaks, 1),
        evidence=[evidence(f"t{i}") for i in range(leaks)],
        latencies_ms=latencies,
        elapsed_s=1.0,
        rps=rps,
        units=units or [(1, 2, None)],
        observed=observed,
    )


def test_aggregate_sums_medians_and_spreads() -> None:
    runs = [
        result(900.0, latencies=[1.0, 2.0], units=[(1, 2, None)]),
        result(1000.0, leaks=2, latencies=[3.0], units=[(1, 3, None)]),
        result(1100.0, errors=1, latencies=[4.0, 10.0], units=[(1, 2, None)]),
    ]
    warmup = result(500.0, leaks=1, latencies=[50.0], observed=("g", "my_local", "request"))
    cell = aggregate(
        mode="gunicorn-gthread",
        app="harness.apps.core_app:app",
        backend="shared-global",
        connections="keepalive",
        runs=runs,
        warmup=warmup,
        effective={"worker_class": "gthread"},
    )
    assert cell.requests == 2 + 1 + 3 + 1  # warm-up responses are checked too
    assert cell.leaks == 3
    assert cell.leaky_requests == 2
    assert cell.errors == 1
    assert cell.error_kinds == {"reset": 1}
    assert (cell.warmup.requests, cell.warmup.leaks, cell.warmup.errors) == (1, 1, 0)
    assert cell.rps == 1000.0
    assert cell.rps_runs == (900.0, 1000.0, 1100.0)
    assert cell.rps_spread == pytest.approx(0.2)  # (max - min) / median
    assert cell.noisy
    # Latency: measured runs pooled, the warm-up's 50 ms left out.
    assert cell.latency_ms.max == 10.0
    assert cell.latency_ms.p50 == 3.0
    assert [r.max for r in cell.latency_runs] == [2.0, 3.0, 10.0]
    assert cell.units_seen == 2
    assert cell.observed == ("g", "my_local", "request")  # every run's names, merged
    assert cell.app_label == "core"
    assert cell.evidence[0] == evidence("t0")
    assert cell.server.effective == {"worker_class": "gthread"}
    assert cell.latency_ms == Latency.of([1.0, 2.0, 3.0, 4.0, 10.0])


def test_aggregate_caps_evidence_but_not_counts() -> None:
    runs = [result(10.0, leaks=EVIDENCE_CAP), result(10.0, leaks=EVIDENCE_CAP)]
    runs[1].framework_leaks = 3  # of the leaks past the evidence kept
    cell = aggregate(mode="m", app="a:b", backend="no-reset", connections="fresh", runs=runs)
    assert cell.leaks == 2 * EVIDENCE_CAP and cell.framework_leaks == 3
    assert len(cell.evidence) == EVIDENCE_CAP
    assert cell.app_label == "a:b"


def test_aggregate_keeps_the_statuses_the_app_answered_in_the_probes_place() -> None:
    # 401s of an auth hook are errors, by status; the 500s of requests made to fail on purpose
    # (--fail-phase) and the 200s are not.
    run = result(1000.0)
    run.errors, run.error_kinds = 3, {"non-2xx": 3}
    run.statuses = {200: 3, 401: 3, 500: 2}
    run.injected, run.injected_outcomes = 2, {"500": 2}
    cell = aggregate(mode="m", app="a:b", backend="contextvar", connections="fresh", runs=[run])
    assert cell.error_statuses == {"401": 3}
    assert records.from_json(Cell, records.to_json(cell), "cell") == cell  # survives JSON


def test_aggregate_needs_a_run() -> None:
    with pytest.raises(ValueError):
        aggregate(mode="m", app="a:b", backend="x", connections="fresh", runs=[])


def test_a_load_is_aimed_at_the_servers_address_mode_mount_and_headers() -> None:
    from harness.runner import TargetServer, aimed_at

    target = TargetServer(
        mode="target:127.0.0.1:8080/api", host="127.0.0.1", port=8080, effective={},
        headers=(("X-Ctxbench-Probe-Secret", "s"),), mount="/api",
    )  # fmt: skip
    spec = aimed_at(target, concurrency=3, requests=10, timeout=2.0)
    assert (spec.host, spec.port, spec.mode, spec.mount) == (
        "127.0.0.1", 8080, "target:127.0.0.1:8080/api", "/api"
    )  # fmt: skip
    assert (spec.headers, spec.max_evidence) == (target.headers, EVIDENCE_CAP)
    assert (spec.concurrency, spec.requests, spec.timeout) == (3, 10, 2.0)
    # A server ctxbench started: its mount as given (a trailing slash or none), no headers.
    started: Any = SimpleNamespace(host="::1", port=9, mode="gunicorn-sync", mount="/api/")
    assert (aimed_at(started).mount, aimed_at(started).headers) == ("/api", ())
    started.mount = None
    assert aimed_at(started).mount == ""


def test_app_labels() -> None:
    assert app_label("harness.apps.core_app:app") == "core"
    assert app_label("harness.apps.flask_app:app") == "flask"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"duration": None}, "give --duration", id="unbounded"),
        pytest.param({"duration": 0.0}, "bad --duration 0.0", id="duration"),
        pytest.param({"repeats": 0}, "bad --repeats 0", id="repeats"),
        pytest.param({"concurrency": 0}, "bad --concurrency 0", id="concurrency"),
        pytest.param({"connections": ("pipelined",)}, "unknown connection pattern", id="pattern"),
    ],
)
def test_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        checked(RunSettings(**kwargs))


def test_unknown_mode_in_settings() -> None:
    with pytest.raises(UsageError, match="unknown server mode 'nope'"):
        checked(RunSettings(modes=("nope",)))


@dataclass
class FakeServer:
    """What the runners (of the matrix, the faults and the soak) use of a
    :class:`~harness.servers.LiveServer`, with nothing running: the mode's traits, no
    processes of its own (its ``pid`` is this process's), alive until ``dead`` says why it
    stopped. It has nothing a LiveServer has not (see the test below)."""

    mode: str
    log_path: Path
    traits: ModeTraits
    effective: dict[str, Any]
    host: str = "127.0.0.1"
    port: int = 1
    mount: str | None = None
    pid: int = field(default_factory=os.getpid)
    dead: str | None = None

    @classmethod
    def of(cls, mode: str, log_dir: Path, traits: ModeTraits | None = None) -> FakeServer:
        """A fake ``mode`` server logging into ``log_dir`` (made here)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            mode=mode,
            log_path=log_dir / f"{mode}.log",
            traits=traits or get_mode(mode).traits,
            effective={"worker_class": mode, "workers": 1},
        )

    @property
    def app_server(self) -> FakeServer:
        return self

    def gone(self) -> str | None:
        return self.dead

    def process_groups(self) -> list[int]:
        return []


def test_the_fake_server_has_nothing_a_live_server_has_not() -> None:
    # The runners' tests stand a FakeServer in for a LiveServer: renamed or gone there, a name
    # fails here, not only in a live run.
    from dataclasses import fields

    from harness.servers import LiveServer

    def names(cls: type) -> set[str]:
        own = {f.name for f in fields(cls)} | set(vars(cls))
        return {name for name in own if not name.startswith("_")}

    assert names(FakeServer) - {"dead", "of"} <= names(LiveServer)


class FakeWorld:
    """A fake server factory and load function recording what the runner asked for."""

    def __init__(
        self, *, interrupt_at: int | None = None, traits: ModeTraits | None = None
    ) -> None:
        self.started: list[tuple[str, str, str]] = []
        self.loads: list[dict[str, Any]] = []
        self.interrupt_at = interrupt_at
        self.traits = traits

    @contextlib.contextmanager
    def server(self, mode: str, cfg: ServerConfig, *, log_dir: Path) -> Iterator[FakeServer]:
        self.started.append((cfg.app, cfg.backend, mode))
        yield dataclasses.replace(FakeServer.of(mode, log_dir, self.traits), mount=cfg.mount)

    def spec(self, settings: RunSettings, srv: Any, connections: str, *, warmup: bool) -> Any:
        return {"mode": srv.mode, "connections": connections, "warmup": warmup}

    def load(self, spec: dict[str, Any], progress: Any) -> LoadResult:
        self.loads.append(spec)
        if self.interrupt_at is not None and len(self.loads) == self.interrupt_at:
            raise KeyboardInterrupt
        if progress is not None:
            progress(3, 0, 0)
        return result(100.0 + len(self.loads))


def test_run_matrix_order_and_document(tmp_path: Path) -> None:
    world = FakeWorld()
    settings = RunSettings(modes=("gunicorn-sync", "werkzeug-threaded"), repeats=2, duration=0.1)
    progress = StatusLine(stream=io.StringIO(), live=True)
    run = run_matrix(
        settings, tmp_path / "run", command=["ctxbench", "run"], load=world.load,
        spec=world.spec, server=world.server, status=progress,
    )  # fmt: skip
    assert [mode for _, _, mode in world.started] == ["gunicorn-sync", "werkzeug-threaded"]
    # Per server: keepalive then fresh, each a warm-up then two measurements.
    assert [(s["connections"], s["warmup"]) for s in world.loads[:6]] == [
        ("keepalive", True), ("keepalive", False), ("keepalive", False),
        ("fresh", True), ("fresh", False), ("fresh", False),
    ]  # fmt: skip
    assert run.status == "complete"
    assert run.run_id == "run"
    assert run.settings.modes == ("gunicorn-sync", "werkzeug-threaded")
    assert [(c.mode, c.connections) for c in run.cells] == [
        ("gunicorn-sync", "keepalive"), ("gunicorn-sync", "fresh"),
        ("werkzeug-threaded", "keepalive"), ("werkzeug-threaded", "fresh"),
    ]  # fmt: skip
    assert run.cells[0].server.log == "logs/core-contextvar/gunicorn-sync.log"
    assert results.load(tmp_path / "run") == run
    out = progress.stream.getvalue()  # type: ignore[attr-defined]
    assert "gunicorn-sync keepalive warm-up" in out  # later lines are throttled
    assert "werkzeug-threaded fresh done  run so far: 36 requests, 0 leaks\n" in out


def test_the_progress_line_names_the_prefix_an_app_is_served_under(tmp_path: Path) -> None:
    # 'ctxbench run --app pkg:dispatcher --mount /api' and '--mount /admin' both said
    # 'gunicorn-sync (pkg:dispatcher, contextvar) keepalive done': not which of its apps ran.
    for mount, name in (
        ("/api", "gunicorn-sync (pkg:dispatcher at /api, contextvar)"),
        (None, "gunicorn-sync (pkg:dispatcher, contextvar)"),
    ):
        world, out = FakeWorld(), io.StringIO()
        settings = RunSettings(
            apps=("pkg:dispatcher",), modes=("gunicorn-sync",), connections=("keepalive",),
            repeats=1, duration=0.1, mount=mount,
        )  # fmt: skip
        run_matrix(settings, tmp_path / f"run{mount}".replace("/", "-"), load=world.load,
                   spec=world.spec, server=world.server, status=StatusLine(stream=out))  # fmt: skip
        assert f"{name} keepalive done  run so far: " in out.getvalue(), out.getvalue()
    # The core app too, which is otherwise left unnamed at the root.
    world, out = FakeWorld(), io.StringIO()
    settings = RunSettings(modes=("gunicorn-sync",), connections=("keepalive",), repeats=1,
                           duration=0.1, mount="/api")  # fmt: skip
    run_matrix(settings, tmp_path / "core", load=world.load, spec=world.spec,
               server=world.server, status=StatusLine(stream=out))  # fmt: skip
    assert "gunicorn-sync (core at /api, contextvar) keepalive done" in out.getvalue()


def test_a_pattern_the_server_cannot_serve_is_recorded_once_and_not_measured(
    tmp_path: Path,
) -> None:
    # A server that closes every connection after one response (uWSGI's --http-socket), as its
    # traits say: the keep-alive pattern is never run, at any level of a sweep.
    closes = ModeTraits(unit="pool-thread", keepalive=False, keepalive_applicable=False)
    world = FakeWorld(traits=closes)
    settings = RunSettings(
        modes=("gunicorn-sync",), repeats=1, duration=0.1, concurrency_levels=(1, 2)
    )
    run = run_matrix(settings, tmp_path / "run", load=world.load, spec=world.spec,
                     server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    assert [(c.connections, c.concurrency) for c in run.cells] == [("fresh", 1), ("fresh", 2)]
    assert {s["connections"] for s in world.loads} == {"fresh"}
    [skipped] = run.not_measured
    assert (skipped.mode, skipped.connections) == ("gunicorn-sync", "keepalive")
    assert skipped.reason.endswith("after one response without saying so")


def test_each_cell_records_what_its_server_does_with_its_connections(tmp_path: Path) -> None:
    # The report names the likely cause of starved users from these, not from the registry of
    # the ctxbench that renders it (a mode may since be renamed, removed or changed).
    world = FakeWorld()
    modes = ("gunicorn-sync", "gunicorn-gthread", "uwsgi-processes", "nginx-keepalive+waitress")
    settings = RunSettings(modes=modes, repeats=1, duration=0.1)
    run = run_matrix(settings, tmp_path / "run", load=world.load, spec=world.spec,
                     server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    held = {(c.mode, c.connections): c.server.connections for c in run.cells}
    assert held == {
        # gunicorn's sync worker closes every connection after its response
        ("gunicorn-sync", "keepalive"): ServerConnections("fresh", False),
        ("gunicorn-sync", "fresh"): ServerConnections("fresh", False),
        ("gunicorn-gthread", "keepalive"): ServerConnections("keepalive", False),
        ("gunicorn-gthread", "fresh"): ServerConnections("fresh", False),
        # uWSGI's --http11-socket keeps a kept-alive connection on its process
        ("uwsgi-processes", "keepalive"): ServerConnections("keepalive", True),
        ("uwsgi-processes", "fresh"): ServerConnections("fresh", True),
        # behind nginx-keepalive, the proxy's upstream connections, whatever the client's
        ("nginx-keepalive+waitress", "keepalive"): ServerConnections(
            "keepalive", False, "nginx-keepalive"
        ),
        ("nginx-keepalive+waitress", "fresh"): ServerConnections(
            "keepalive", False, "nginx-keepalive"
        ),
    }
    assert results.load(tmp_path / "run") == run  # and they are in results.json
    # The traits as configured, not the mode's defaults: -k sync with --threads 4 is gunicorn's
    # gthread worker, which keeps connections alive.
    threaded = get_mode("gunicorn-sync").traits_for(ServerConfig(threads=4))
    assert server_connections_for("gunicorn-sync", threaded, "keepalive") == ServerConnections(
        "keepalive", False
    )


def test_each_cell_of_a_broken_backend_records_what_the_model_says_of_it(tmp_path: Path) -> None:
    # The report judges a negative control that showed no leak from the run alone: as expected
    # where it cannot leak, a leak the harness missed where it must.
    world = FakeWorld()
    settings = RunSettings(
        modes=("gunicorn-gevent", "nginx-keepalive+gunicorn-gevent"),
        backends=("contextvar", "no-reset", "teardown-skips-pop"),
        repeats=1,
        duration=0.1,
    )
    run = run_matrix(settings, tmp_path / "run", load=world.load, spec=world.spec,
                     server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    said = {(c.backend, c.mode, c.connections): c.expectation for c in run.cells}
    assert said["contextvar", "gunicorn-gevent", "keepalive"] is None  # the correct storage
    keepalive = said["no-reset", "gunicorn-gevent", "keepalive"]
    assert keepalive == LeakExpectation(
        True,
        "One greenlet serves every request of its keep-alive connection in turn, and sees what"
        " the previous request left set",
    )
    fresh = said["no-reset", "gunicorn-gevent", "fresh"]
    assert fresh is not None and not fresh.can_leak
    assert "each request comes on a new connection, with a new greenlet" in fresh.reason
    # behind nginx-keepalive the server sees the proxy's kept-alive connections, whatever the
    # client's (scenarios/test_mutants.py's PROXIED_TABLE)
    proxied = said["no-reset", "nginx-keepalive+gunicorn-gevent", "fresh"]
    assert proxied is not None and proxied.can_leak
    assert proxied.reason.startswith("Behind nginx-keepalive, upstream connections stay open")
    # a lifecycle control with no request made to fail cannot leave a context behind
    lifecycle = said["teardown-skips-pop", "gunicorn-gevent", "keepalive"]
    assert lifecycle is not None and not lifecycle.can_leak
    assert "--fail-phase teardown_request" in lifecycle.reason
    assert results.load(tmp_path / "run") == run  # and it is in results.json

    # The traits as configured: -k sync with --threads 4 is gunicorn's gthread worker, whose
    # requests overlap in one process, where one process-wide slot leaks.
    sync = get_mode("gunicorn-sync").traits
    threaded = get_mode("gunicorn-sync").traits_for(ServerConfig(threads=4))
    one_at_a_time = expectation_for("shared-global", "gunicorn-sync", sync, "fresh")
    assert one_at_a_time is not None and not one_at_a_time.can_leak
    assert one_at_a_time.reason.startswith("Each worker process serves one request at a time")
    leaky = expectation_for("shared-global", "gunicorn-sync", threaded, "fresh")
    assert leaky is not None and leaky.can_leak
    # --fail-phase: the model says for every phase whether a failure there leaves a context
    # behind (it said nothing, None, at any other phase than the control's own)
    gevent = get_mode("gunicorn-gevent").traits
    own = expectation_for("teardown-skips-pop", "gunicorn-gevent", gevent, "keepalive",
                          "teardown_request")  # fmt: skip
    assert own is not None and (own.can_leak, own.chance) == (True, None)
    assert own.reason == (
        "A failure at teardown_request leaves the request and app contexts pushed; one greenlet"
        " serves every request of its keep-alive connection in turn, and sees what the previous"
        " request left set"
    )
    other = expectation_for("teardown-skips-pop", "gunicorn-gevent", gevent, "keepalive", "view")
    assert other is not None and not other.can_leak
    assert other.reason.startswith("A failure at view is answered with a 500")
    app_ctx = expectation_for("teardown-skips-pop", "gunicorn-gevent", gevent, "keepalive",
                              "teardown_appcontext")  # fmt: skip
    assert app_ctx is not None and app_ctx.can_leak
    assert app_ctx.reason.startswith("A failure at teardown_appcontext leaves the app context")
    # a chance leak says so
    gthread = get_mode("gunicorn-gthread").traits
    race = expectation_for("before-first-request-race", "gunicorn-gthread", gthread, "keepalive")
    assert race is not None and race.can_leak and race.chance is not None


def test_a_target_s_progress_line_names_its_app_and_no_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ctxbench cannot know the context storage of a server it did not start: the line read
    # "target:127.0.0.1:8080 (ctxbench_echo, contextvar) keepalive done", the --backend default.
    from harness import runner

    def target_server(url: str) -> runner.TargetServer:
        return runner.TargetServer(
            mode="target:127.0.0.1:8080", host="127.0.0.1", port=8080,
            effective={"target": url, "server": "echo", "app": "ctxbench_echo"},
        )  # fmt: skip

    monkeypatch.setattr(runner, "_target_server", target_server)
    monkeypatch.setattr(runner.TargetServer, "gone", lambda self: None)  # nothing listens
    world = FakeWorld()
    settings = RunSettings(targets=("http://127.0.0.1:8080",), repeats=1, duration=0.1)
    progress = StatusLine(stream=io.StringIO(), live=False)
    run = run_matrix(
        settings, tmp_path / "run", command=["ctxbench", "run"], load=world.load,
        spec=world.spec, server=world.server, status=progress,
    )  # fmt: skip
    out = progress.stream.getvalue()  # type: ignore[attr-defined]
    assert "target:127.0.0.1:8080 (ctxbench_echo) keepalive done  run so far: " in out, out
    # what a server ctxbench did not start does with its connections is not known
    assert [c.server.connections for c in run.cells] == [None, None]


def test_a_status_line_off_a_terminal_beats_at_most_every_so_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("harness.runner.time.monotonic", lambda: now[0])
    status = StatusLine(stream=io.StringIO(), live=False, started=1000.0)
    for t_, text in [(0.0, "a"), (10.0, "b"), (29.9, "c"), (30.0, "d"), (45.0, "e"), (61.0, "f")]:
        now[0] = 1000.0 + t_
        status.beat(text, every=30.0)
    out = status.stream.getvalue()  # type: ignore[attr-defined]
    assert out == "   0.0s  a\n  30.0s  d\n  61.0s  f\n"
    live = StatusLine(stream=io.StringIO(), live=True)  # a terminal: the live line, as show()
    live.beat("x", every=30.0)
    assert live.stream.getvalue().startswith("\r")  # type: ignore[attr-defined]


def test_interrupted_run_keeps_what_it_measured(tmp_path: Path) -> None:
    world = FakeWorld(interrupt_at=3)  # the second cell's warm-up
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, tmp_path, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    run = results.load(tmp_path)
    assert run.status == "interrupted"
    assert len(run.cells) == 1


@pytest.mark.usefixtures("interrupt_the_complete_write")
def test_a_run_interrupted_while_it_writes_complete_keeps_every_cell_as_interrupted(
    tmp_path: Path,
) -> None:
    # The Ctrl-C came as the last write began: results.json kept the last cell's write, marked
    # running, which report and compare read as abandoned (killed outright).
    world = FakeWorld()
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, tmp_path, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    run = results.load(tmp_path)
    assert run.status == "interrupted"
    assert len(run.cells) == 2


def test_run_that_measured_nothing_writes_nothing(tmp_path: Path) -> None:
    world = FakeWorld(interrupt_at=1)
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, tmp_path, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    assert not (tmp_path / "results.json").exists()
    assert not (tmp_path / "logs").exists()  # no empty logs folder left behind


def test_a_run_that_measured_nothing_in_a_new_folder_leaves_no_folder(tmp_path: Path) -> None:
    world = FakeWorld(interrupt_at=1)
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, tmp_path / "results" / "run-1", load=world.load, spec=world.spec,
                   server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_into_a_folder_that_was_there_keeps_the_folder(tmp_path: Path) -> None:
    # `ctxbench run --run-dir DIR` with DIR there and empty: the run made DIR's contents, not DIR.
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    world = FakeWorld(interrupt_at=1)
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, run_dir, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []


class NoStartWorld(FakeWorld):
    """Every server writes its log and then fails to start."""

    @contextlib.contextmanager
    def server(self, mode: str, cfg: ServerConfig, *, log_dir: Path) -> Iterator[Any]:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{mode}.log").write_text("boom\n")
        raise ServerStartError(f"{mode} did not start")
        yield


def test_a_failed_start_keeps_its_log_and_everything_that_was_there(tmp_path: Path) -> None:
    run_dir = tmp_path / "mine"
    (run_dir / "notes").mkdir(parents=True)  # the user's empty folder
    (run_dir / "logs" / "old").mkdir(parents=True)  # an earlier run's, empty
    (run_dir / "readme.txt").write_text("mine")
    world = NoStartWorld()
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(ServerStartError):
        run_matrix(settings, run_dir, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    assert left == ["logs", "logs/core-contextvar", "logs/core-contextvar/gunicorn-sync.log",
                    "logs/old", "notes", "readme.txt"]  # fmt: skip


def test_a_failed_run_leaves_what_it_made_in_a_folder_that_was_there(tmp_path: Path) -> None:
    run_dir = tmp_path / "mine"
    (run_dir / "notes").mkdir(parents=True)
    world = FakeWorld(interrupt_at=1)
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_matrix(settings, run_dir, load=world.load, spec=world.spec, server=world.server,
                   status=StatusLine(enabled=False))  # fmt: skip
    assert [p.name for p in run_dir.iterdir()] == ["notes"]


def test_status_off_a_terminal_is_a_line_per_cell() -> None:
    stream = io.StringIO()
    status = StatusLine(stream=stream)
    status.show("hello", force=True)
    status.done()
    assert stream.getvalue() == ""
    status.finished("gunicorn-sync keepalive done")
    assert stream.getvalue().endswith("s  gunicorn-sync keepalive done\n")
    assert "\r" not in stream.getvalue()


class DyingWorld(FakeWorld):
    """The first server dies on its own during the ``die_at``-th load: ``gone()`` says so from
    then on, as a real LiveServer's does once its main process exited."""

    def __init__(self, die_at: int) -> None:
        super().__init__()
        self.die_at = die_at
        self.servers: list[FakeServer] = []

    @contextlib.contextmanager
    def server(self, mode: str, cfg: ServerConfig, *, log_dir: Path) -> Iterator[FakeServer]:
        with super().server(mode, cfg, log_dir=log_dir) as srv:
            self.servers.append(srv)
            yield srv

    def load(self, spec: dict[str, Any], progress: Any) -> LoadResult:
        if len(self.loads) + 1 == self.die_at:
            self.loads.append(spec)
            progress(7, 1, 0)  # the driver's last report before the death was seen
            self.servers[-1].dead = "gunicorn-sync: the server's main process (pid 9) was killed"
            progress(9, 3, 0)  # the runner sees it here and ends the load
            raise AssertionError("the runner should have ended this load")
        return super().load(spec, progress)


def test_a_server_that_dies_fails_its_cell_and_the_run_goes_on(tmp_path: Path) -> None:
    world = DyingWorld(die_at=2)  # the keepalive cell's first measurement
    settings = RunSettings(modes=("gunicorn-sync",), repeats=2, duration=0.1)
    stream = io.StringIO()
    run = run_matrix(settings, tmp_path, load=world.load, spec=world.spec, server=world.server,
                     status=StatusLine(stream=stream))  # fmt: skip
    assert run.status == "complete"
    failed, fresh = run.cells
    assert failed.failed and not failed.clean and not fresh.failed
    assert failed.error is not None
    assert failed.error.startswith(
        "gunicorn-sync: the server's main process (pid 9) was killed during the run 1/2 of the"
        " keepalive cell, after 9 requests checked (3 more failed)"
    )
    assert "logs/core-contextvar/gunicorn-sync.log" in failed.error
    # The warm-up and what the cut-short load had checked are counted; no run finished.
    assert (failed.requests, failed.errors, failed.runs) == (3 + 9, 3, ())
    assert failed.error_kinds == {"cut short by the server's death": 3}
    # A new server for the cell left, its log in a folder of its own.
    assert len(world.started) == 2
    assert fresh.server.log == "logs/core-contextvar/restart-1/gunicorn-sync.log"
    assert len(fresh.runs) == 2
    assert results.load(tmp_path) == run
    assert "gunicorn-sync keepalive FAILED  gunicorn-sync: the server's main" in stream.getvalue()


def test_a_dead_servers_message_counts_its_own_cells_checked_requests(tmp_path: Path) -> None:
    """The message said "after N requests checked" with N the run's requests so far, earlier
    cells' included, and the failed ones too: a gunicorn master killed mid-run read "after
    23,368 requests checked" where 3,807 were (19,561 refused as it went down)."""
    world = DyingWorld(die_at=5)  # the fresh cell's first measurement, after a full keepalive cell
    settings = RunSettings(modes=("gunicorn-sync",), repeats=2, duration=0.1)
    run = run_matrix(settings, tmp_path, load=world.load, spec=world.spec, server=world.server,
                     status=StatusLine(enabled=False))  # fmt: skip
    keepalive, failed = run.cells
    assert keepalive.requests == 9 and not keepalive.failed
    assert failed.connections == "fresh" and failed.error is not None
    # Its warm-up (3 answered) and the cut-short load (9, of which 3 failed).
    assert (failed.requests, failed.errors) == (12, 3)
    assert "during the run 1/2 of the fresh cell, after 9 requests checked (3 more failed);" in (
        failed.error
    )


def test_a_server_found_dead_after_a_load_fails_the_cell(tmp_path: Path) -> None:
    world = FakeWorld()
    settings = RunSettings(modes=("gunicorn-sync",), repeats=1, duration=0.1,
                           connections=("keepalive",))  # fmt: skip

    finished: list[LoadResult] = []

    def load(spec: dict[str, Any], progress: Any) -> LoadResult:
        finished.append(world.load(spec, progress))
        return finished[-1]

    class DiesAfterALoad(FakeServer):
        # Dies between the driver's last progress report and the end of the measurement.
        def gone(self) -> str | None:
            return "it exited with status 3" if len(finished) >= 2 else None

    @contextlib.contextmanager
    def server(mode: str, cfg: ServerConfig, *, log_dir: Path) -> Iterator[FakeServer]:
        yield DiesAfterALoad.of(mode, log_dir)

    run = run_matrix(settings, tmp_path, load=load, spec=world.spec, server=server,
                     status=StatusLine(enabled=False))  # fmt: skip
    [cell] = run.cells
    assert cell.error is not None and "during the run 1/1 of the keepalive cell" in cell.error
    assert len(cell.runs) == 1  # the run finished; the server was gone at its end


def test_the_cores_other_programs_used_are_the_machine_s_less_the_server_and_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the machine was shared during a measured run, which no figure said: measured,
    gunicorn-gthread's three repeats at 1,180, 770 and 2,155 rps while other programs used 0.89,
    1.25 and 0.38 cores of 2."""
    from harness.load import cpu
    from harness.load.cpu import ThreadCpu, machine_cpu
    from harness.runner import _others_cpu

    # user nice system idle iowait irq softirq steal: interrupts and idle are not programs
    (tmp_path / "stat").write_text("cpu  300 20 80 5000 70 9 40 100 0 0\ncpu0 1 2 3 4\n")
    monkeypatch.setattr(cpu, "_PROC", tmp_path)
    monkeypatch.setattr(cpu, "_TICKS", 100)
    assert machine_cpu() == 5.0  # (300 + 20 + 80 + 100) / 100 s
    (tmp_path / "stat").write_text("intr 1\n")
    assert machine_cpu() is None

    run = SimpleNamespace(driver_cpu=[0.25, 0.25], elapsed_s=2.0)  # 1 s of the driver's
    server = ThreadCpu(on_cpu=1.5, waiting=0.2, known_wait=True)
    # 4.5 s of the machine's CPU over 2 s: 1.5 the server's, 1.0 the driver's, 2.0 the others'
    assert _others_cpu(run, server, 4.5, 2.0) == 1.0  # type: ignore[arg-type]
    assert _others_cpu(run, server, 2.0, 2.0) == 0.0  # type: ignore[arg-type]
    assert _others_cpu(run, None, 4.5, 2.0) is None  # type: ignore[arg-type]
    assert _others_cpu(run, server, None, 2.0) is None  # type: ignore[arg-type]


def test_a_cell_whose_server_never_overlaps_requests_asks_no_longer_sleep(tmp_path: Path) -> None:
    # 'ctxbench run --app leaky:app --modes gunicorn-sync,...' listed gunicorn-sync, tornado and
    # uvicorn-asgiref under 'A zero below proves little', saying a longer --sleep-ms would make
    # requests overlap: their servers run one request per process at a time, whatever the sleep.
    world = FakeWorld()
    modes = ("gunicorn-sync", "gunicorn-gthread", "uvicorn-asgiref")
    settings = RunSettings(modes=modes, repeats=1, duration=0.1, connections=("fresh",))
    run = run_matrix(settings, tmp_path / "run", load=world.load, spec=world.spec,
                     server=world.server, status=StatusLine(enabled=False))  # fmt: skip
    can = {c.mode: c.exercised.can_overlap for c in run.cells if c.exercised is not None}
    assert can == {"gunicorn-sync": False, "gunicorn-gthread": True, "uvicorn-asgiref": False}
    for c in run.cells:
        if c.mode != "gunicorn-gthread":
            assert c.exercised is not None and c.exercised.notes(c.concurrency) == []
    assert results.load(tmp_path / "run") == run  # and it is in results.json
