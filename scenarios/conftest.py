"""Fixtures for the live scenarios: real servers on 127.0.0.1, driven by the load driver.

- ``live_server``: a factory; each call starts a server (``harness.servers.live_server``) for the
  current test and stops it when the test ends, however it ends.
- ``shared_server``: the same factory, but a server started with the same arguments is reused by
  the following tests of the module (both connection patterns run against one server). Starting a
  server with other arguments stops the previous ones (in the background, while the new one
  starts), so at most one shared server serves at a time; whatever is left is stopped, and every
  background stop waited for, when the module ends.
- ``drive``: one bounded load run against a server (``harness.load.run_load``), with the settings
  every scenario shares: enough concurrency and a sleep in the view so that requests overlap.
- ``assert_exercised``: checks that a run really did what the mode's traits claim (requests
  overlapped in a process, a thread or greenlet served several requests, or one request at a time
  per process), so that a zero-leak result proves something.
- ``assert_clean``: every request answered, no leak, no error, and ``assert_exercised``.
- ``require_mode``: the skip rule below, for a test that starts a server some other way.

A mode whose server or worker library is missing is skipped with the reason; a proxy in front
(``nginx+gunicorn-gevent``) that is missing in CI (``CI=true``, set by ``.ci/run``, which installs
it) fails the test instead, so the nginx scenarios cannot silently stop running there. When a test
fails, the tail of the log of every server it used is attached to its report. At the end of the
session no server process started by these tests may still be alive: every process group they
started is checked (a proxied mode has two: the proxy's and the server's), and so is every
process that inherited this session's marker variable (nginx rewrites its own environment, so its
processes are found by their group).
"""

from __future__ import annotations

import contextlib
import os
import threading
import typing as t
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.apps import CORE_APP
from harness.exercised import Exercised, exercised
from harness.expectations import situation
from harness.load import LoadResult, LoadSpec, run_load
from harness.load.spec import ConnectionPattern
from harness.servers import PROXY_SEPARATOR, LiveServer, get_mode, group_members
from harness.servers import live_server as serve
from harness.servers._process import log_tail
from harness.servers.base import ModeTraits

ROOT = Path(__file__).resolve().parent.parent

#: Shared load settings: 16 clients against 2 workers, and a 10 ms sleep in the view that yields
#: (cooperatively under gevent), so requests overlap wherever a mode lets them.
CONCURRENCY = 16
SLEEP_MS = 10.0
#: Where requests cannot overlap in a process (one at a time, on its main thread) a long sleep
#: has nothing to make overlap and only stretches the run; a short one still bounds, by Little's
#: law, the requests in flight that ``assert_exercised`` checks.
SLEEP_MS_ONE_AT_A_TIME = 2.0
#: The view's sleep when a run is driven again because the first did not show overlap where
#: the mode runs requests side by side (see ``drive``): on a machine so busy that the server's
#: throughput fell, 10 ms no longer shows it by Little's law; a longer sleep does.
SLEEP_MS_AGAIN = 4 * SLEEP_MS
REQUESTS = 300
#: Bounds of one run: it normally ends after REQUESTS, in one to two seconds.
MAX_RUN_S = 20.0
REQUEST_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40

#: The environment variable that marks every process started during this session.
SESSION_MARKER = "CTXBENCH_SCENARIO_SESSION"

_LOGS_KEY = pytest.StashKey[list[tuple[str, Path]]]()
#: (mode, pgid) of every server these fixtures started.
_STARTED: list[tuple[str, int]] = []


# -- hooks -----------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> t.Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for label, path in item.stash.get(_LOGS_KEY, []):
            tail = log_tail(path, LOG_TAIL_LINES) or "(empty or missing)"
            report.sections.append((f"server log tail: {label} ({path})", tail))
    return report


# -- session ---------------------------------------------------------------------------------


def _marked_processes(marker: str) -> list[tuple[int, str]]:
    """Live processes (zombies excluded) whose environment holds ``marker``."""
    needle = f"{SESSION_MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat[stat.rindex(")") + 2] != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


@pytest.fixture(scope="session", autouse=True)
def _scenario_session() -> Iterator[None]:
    """Make the scenario apps importable by servers; at the end, check that no server survives."""
    marker = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS"):
            mp.delenv(name, raising=False)
        path = os.environ.get("PYTHONPATH")
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))
        mp.setenv(SESSION_MARKER, marker)
        yield
    survivors = {
        f"{mode} (pgid {pgid})": members
        for mode, pgid in _STARTED
        if (members := group_members(pgid))
    }
    marked = _marked_processes(marker) if Path("/proc").is_dir() else []
    assert not survivors and not marked, (
        f"server processes outlived the tests: groups {survivors}, processes {marked}"
    )


# -- servers ---------------------------------------------------------------------------------


def skip_unavailable(mode: str) -> None:
    """Skip the test, with the reason, when ``mode`` cannot run here.

    In CI a missing proxy is a failure: ``.ci/run`` installs it, so its absence means the nginx
    scenarios would silently stop running.
    """
    availability = get_mode(mode).available()
    if availability.ok:
        return
    if os.environ.get("CI") == "true" and PROXY_SEPARATOR in mode:
        pytest.fail(
            f"{mode} cannot run in CI: {availability.reason}; .ci/run installs it before"
            " 'make test'",
            pytrace=False,
        )
    pytest.skip(f"{mode} is not available: {availability.reason}")


class ServerFactory:
    """Starts servers; stops all of them on :meth:`close` (an ``ExitStack``)."""

    def __init__(self, log_root: Path) -> None:
        self._log_root = log_root
        self._stack = contextlib.ExitStack()
        self._count = 0

    def start(self, node: pytest.Item, mode: str, **options: t.Any) -> LiveServer:
        skip_unavailable(mode)
        self._count += 1
        log_dir = self._log_root / f"{self._count:03d}-{mode}"
        label = f"{mode} {options.get('app', CORE_APP)} {options.get('backend', 'contextvar')}"
        # Registered before the start, so that a server that fails to start shows its log too.
        for path in get_mode(mode).log_paths(log_dir):
            attach_log(node, f"{label}: {path.name}", path)
        server = self._stack.enter_context(serve(mode, log_dir=log_dir, **options))
        _STARTED.extend((mode, pgid) for pgid in server.process_groups())
        return server

    def close(self) -> None:
        self._stack.close()


def attach_log(node: pytest.Item, label: str, path: Path) -> None:
    logs = node.stash.setdefault(_LOGS_KEY, [])
    if (label, path) not in logs:
        logs.append((label, path))


class SharedServers(ServerFactory):
    """A :class:`ServerFactory` that reuses a running server started with the same arguments.

    A server replaced by one with other arguments is stopped in a background thread while the
    next one starts (a stop is mostly waiting: gunicorn's gevent worker takes over a second), and
    :meth:`close` waits for every such stop before it returns, so nothing outlives the module.
    """

    def __init__(self, log_root: Path) -> None:
        super().__init__(log_root)
        self._running: dict[tuple[str, str], tuple[LiveServer, list[tuple[str, Path]]]] = {}
        self._stopping: list[tuple[threading.Thread, list[BaseException]]] = []

    def _stop_in_background(self, server: LiveServer) -> None:
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                server.stop()
            except BaseException as e:  # re-raised by close(), in the main thread
                errors.append(e)

        thread = threading.Thread(target=stop, name=f"stop {server.mode}", daemon=True)
        thread.start()
        self._stopping.append((thread, errors))

    def close(self) -> None:
        # LiveServer.stop() is idempotent: the ExitStack's second call would return at once, so
        # wait for the background stops first; they end within their mode's stop grace.
        try:
            for thread, _ in self._stopping:
                thread.join()
        finally:
            super().close()
        for _, errors in self._stopping:
            if errors:
                raise errors[0]

    def get(self, node: pytest.Item, mode: str, **options: t.Any) -> LiveServer:
        key = (mode, repr(sorted(options.items())))
        found = self._running.get(key)
        if found is not None and found[0].process.poll() is None:
            server, logs = found
            for label, path in logs:
                attach_log(node, label, path)
            return server
        for other, _ in self._running.values():
            self._stop_in_background(other)  # the ExitStack's own stop at the end is a no-op
        self._running.clear()
        before = len(node.stash.get(_LOGS_KEY, []))
        server = self.start(node, mode, **options)
        self._running[key] = (server, node.stash[_LOGS_KEY][before:])
        return server


StartServer = Callable[..., LiveServer]


@pytest.fixture
def require_mode() -> Callable[[str], None]:
    """``require_mode(mode)``: skip (or in CI, fail) a test that starts ``mode`` itself."""
    return skip_unavailable


@pytest.fixture
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """``live_server(mode, app=..., backend=..., workers=..., ...)``: a server for this test.

    Takes the keyword arguments of :func:`harness.servers.live_server`; skips the test when the
    mode is unavailable; every server it started is stopped when the test ends.
    """
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))

    def start(mode: str, **options: t.Any) -> LiveServer:
        return factory.start(request.node, mode, **options)

    try:
        yield start
    finally:
        factory.close()


@pytest.fixture(scope="module")
def _shared_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServers]:
    servers = SharedServers(tmp_path_factory.mktemp("shared-servers"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def shared_server(request: pytest.FixtureRequest, _shared_servers: SharedServers) -> StartServer:
    """Like ``live_server``, but reuses this module's server started with the same arguments."""

    def get(mode: str, **options: t.Any) -> LiveServer:
        return _shared_servers.get(request.node, mode, **options)

    return get


# -- load ------------------------------------------------------------------------------------


Drive = Callable[..., LoadResult]


def sleep_ms_for(traits: ModeTraits, connections: ConnectionPattern) -> float:
    """The view's sleep for a mode: :data:`SLEEP_MS` where requests can overlap in a process,
    :data:`SLEEP_MS_ONE_AT_A_TIME` where they cannot."""
    return SLEEP_MS if situation(traits, connections).overlap_in_process else SLEEP_MS_ONE_AT_A_TIME


#: The view's sleep in each run ``drive`` made, by ``id`` of its result (kept with it, so that
#: the id is not reused).
Sleeps = dict[int, tuple[LoadResult, float]]


def _slept(sleeps: Sleeps, result: LoadResult) -> float | None:
    """The view's sleep in ``result``'s run, where ``drive`` made it."""
    return sleeps[id(result)][1] if id(result) in sleeps else None


@pytest.fixture
def sleeps() -> Sleeps:
    """The :data:`Sleeps` of this test's runs."""
    return {}


@pytest.fixture
def drive(sleeps: Sleeps) -> Drive:
    """``drive(server, connections, **spec_overrides)``: one bounded, fully checked load run.

    A clean run that did not show requests overlapping in a process, where the mode runs them
    side by side, is driven once more with a longer sleep (:data:`SLEEP_MS_AGAIN`), and that run
    is returned: on a busy machine the server's throughput can fall so far that the first run's
    lower bound (:mod:`harness.exercised`) no longer shows the overlap that was there. A run that
    leaked or had errors is returned as it is, and so is one whose sleep or users the test set.
    """

    def run(server: LiveServer, connections: ConnectionPattern, **overrides: t.Any) -> LoadResult:
        traits = server.traits
        settings: dict[str, t.Any] = {
            "concurrency": CONCURRENCY,
            "requests": REQUESTS,
            "duration": MAX_RUN_S,
            "sleep_ms": sleep_ms_for(traits, connections),
            "timeout": REQUEST_TIMEOUT_S,
        }
        settings.update(overrides)

        def once(sleep_ms: float) -> LoadResult:
            spec = LoadSpec(
                host=server.host, port=server.port, connections=connections, mode=server.mode,
                **{**settings, "sleep_ms": sleep_ms},
            )  # fmt: skip
            result = run_load(spec)
            sleeps[id(result)] = (result, sleep_ms)
            return result

        result = once(settings["sleep_ms"])
        if (
            not overrides.keys() & {"sleep_ms", "concurrency"}
            and result.leaks == result.errors == 0
            and situation(traits, connections).overlap_in_process
            and not _seen(result, settings["sleep_ms"], connections).overlap
        ):
            result = once(SLEEP_MS_AGAIN)
        return result

    return run


def _seen(result: LoadResult, sleep_ms: float, connections: ConnectionPattern) -> Exercised:
    return exercised(
        result.units,
        answered=result.requests - result.errors,
        rps=result.rps,
        sleep_ms=sleep_ms,
        connections=connections,
    )


def describe(result: LoadResult, server: LiveServer | None = None) -> str:
    """A summary of a run for assertion messages: counts, errors, the first pieces of evidence."""
    lines = [
        f"requests={result.requests} errors={result.errors} {result.error_kinds}"
        f" leaks={result.leaks} leaky_requests={result.leaky_requests} rps={result.rps:.0f}"
        f" elapsed={result.elapsed_s:.2f}s units={len(result.units)}"
        f" reconnects={result.reconnects}"
    ]
    if server is not None:
        lines.append(f"server: {server.effective}")
    lines += [f"  {e}" for e in result.evidence[:5]]
    return "\n".join(lines)


def _assert_exercised(
    result: LoadResult,
    mode: str,
    connections: ConnectionPattern,
    sleep_ms: float | None = None,
    traits: ModeTraits | None = None,
) -> None:
    """Fail unless the run did what ``mode``'s traits claim for ``connections``.

    :func:`harness.exercised.exercised` reads what the run did from the units the probe reported
    (requests in flight per process by Little's law, units serving more than one request); a
    process serving one request at a time cannot exceed one request in flight. ``traits`` are
    the server's own (:attr:`LiveServer.traits`) when server arguments changed them; by default
    the mode's. ``sleep_ms`` is the view's sleep in the run: what ``drive`` used, by default.
    """
    traits = traits or get_mode(mode).traits
    expected = situation(traits, connections)
    if sleep_ms is None:
        sleep_ms = sleep_ms_for(traits, connections)
    seen = _seen(result, sleep_ms, connections)
    summary = describe(result)
    assert seen.answered > 0, f"no request was answered: {summary}"
    if expected.overlap_in_process:
        assert seen.overlap, (
            f"{mode}/{connections}: requests did not overlap inside a worker ({seen.in_flight:.2f}"
            f" in flight per process on average, {seen.units} units), so a clean run proves"
            f" nothing: {summary}"
        )
    else:
        assert seen.in_flight <= 1.05, (
            f"{mode}/{connections}: {seen.in_flight:.2f} requests in flight per process on"
            f" average, but its traits say one at a time: {summary}"
        )
        assert seen.units == seen.processes, (
            f"{mode}/{connections}: more than one thread per process answered: {summary}"
        )
    if expected.unit_reused:
        assert seen.unit_reused, (
            f"{mode}/{connections}: no thread or greenlet answered twice ({seen.units}"
            f" distinct for {seen.answered} answered requests): {summary}"
        )


@pytest.fixture
def assert_exercised(sleeps: Sleeps) -> Callable[..., None]:
    """``assert_exercised(result, mode, connections)``; see :func:`_assert_exercised`."""

    def check(result: LoadResult, *args: t.Any, sleep_ms: float | None = None, **kw: t.Any) -> None:
        slept = _slept(sleeps, result) if sleep_ms is None else sleep_ms
        _assert_exercised(result, *args, sleep_ms=slept, **kw)

    return check


def _assert_clean(
    result: LoadResult,
    server: LiveServer,
    mode: str,
    connections: ConnectionPattern,
    sleep_ms: float | None = None,
) -> None:
    """Fail unless the run answered every request, without a leak or an error, and exercised
    what ``mode``'s traits claim for ``connections``."""
    summary = describe(result, server)
    assert result.requests == REQUESTS, summary
    assert result.errors == 0, summary
    assert result.leaks == 0, summary
    _assert_exercised(result, mode, connections, sleep_ms, traits=server.traits)


@pytest.fixture
def assert_clean(sleeps: Sleeps) -> Callable[..., None]:
    """``assert_clean(result, server, mode, connections)``; see :func:`_assert_clean`."""

    def check(result: LoadResult, *args: t.Any) -> None:
        _assert_clean(result, *args, sleep_ms=_slept(sleeps, result))

    return check


@pytest.fixture
def describe_run() -> Callable[..., str]:
    """``describe_run(result, server=None)``: a run summary for assertion messages."""
    return describe
