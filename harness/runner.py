"""The matrix: apps x backends x modes x connection patterns x concurrency levels x repeats.

For each (app, backend, mode) the runner starts the server (a ``--target`` stands in for one);
for each connection pattern (``keepalive``, ``fresh``) and concurrency level it runs a short
warm-up and then ``repeats`` measurements with the load driver, and folds them into one
:class:`~harness.results.Cell` (:func:`aggregate`): the counts cover every checked response,
warm-up included (a leak seen while warming up is still a leak); throughput and latency come
from the measured runs; ``server.effective`` is what really ran (see :mod:`harness.servers`).
The statistics are the results model's own. A pattern the mode cannot serve is recorded as not
measured. A server that dies on its own fails the cell it was measuring (:class:`ServerGone`),
and a new one, its logs in a folder of their own, serves the cells left.

The results file is rewritten atomically after every cell, so an interrupted run leaves a valid
file whose ``status`` says ``interrupted``; a run that fails before it wrote one leaves nothing
but the log of a server that did not start (:func:`harness.run_folder.cleaned_up_on_failure`).
A :class:`StatusLine` shows progress on stderr: one self-overwriting line on a terminal, one
line per finished cell otherwise (CI and make logs).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from harness import results
from harness.apps import app_folder, app_label, mounted
from harness.checkpoints import checkpoint
from harness.exercised import exercised
from harness.expectations import (
    BACKEND_TRAITS,
    applicable_patterns,
    derive_expectation,
    server_connections,
    situation,
)
from harness.load import LoadResult, LoadSpec, Progress, run_load
from harness.load.cpu import ThreadCpu, cpu_between, machine_cpu, processes_cpu
from harness.load.spec import ConnectionPattern
from harness.preflight import checked, server_config
from harness.protocol import DEFAULT_BACKEND
from harness.results import Cell, Latency, Measurement, NotMeasured, Run, ServerInfo, Warmup
from harness.run_folder import cleaned_up_on_failure
from harness.servers import LiveServer, get_mode, live_server
from harness.servers.base import CLOSES_EVERY_CONNECTION, ModeTraits
from harness.settings import RunSettings
from harness.target import gone as refuses_connections
from harness.target import identify, parse_target, secret_headers

__all__ = [
    "StatusLine",
    "aggregate",
    "aimed_at",
    "expectation_for",
    "load_spec",
    "run_matrix",
    "server_connections_for",
]


LoadFn = Callable[[t.Any, Progress | None], LoadResult]
ServerFn = Callable[..., AbstractContextManager[LiveServer]]


# -- aggregation (pure) ----------------------------------------------------------------------


def aggregate(
    *,
    mode: str,
    app: str,
    backend: str,
    connections: str,
    runs: t.Sequence[LoadResult],
    warmup: LoadResult | None = None,
    effective: dict[str, t.Any] | None = None,
    log_path: str | None = None,
    server_connections: results.ServerConnections | None = None,
    expectation: results.LeakExpectation | None = None,
    sleep_ms: float | None = None,
    concurrency: int | None = None,
    driver_processes: int = 1,
    server_cpu: t.Sequence[ThreadCpu | None] = (),
    others_cpu: t.Sequence[float | None] = (),
    error: str | None = None,
    cut_short: LoadResult | None = None,
    can_overlap: bool = True,
) -> Cell:
    """Fold the measured ``runs`` (and the warm-up) of one matrix cell into a :class:`Cell`.

    With ``sleep_ms`` (what each request slept in the view) the cell also records what the runs
    exercised (:mod:`harness.exercised`). ``server_cpu`` holds, per measured run, the CPU time
    the server's processes used during it (``None`` when unknown), made into shares of each
    run's elapsed time. A cell whose server died (``error``) may have no finished run;
    ``cut_short`` holds what the load that it interrupted had checked by then, counted but not
    measured. ``server_connections`` is what the server does with the cell's connections
    (:func:`server_connections_for`; ``None`` for a server ctxbench did not start);
    ``expectation`` whether its deliberately broken backend can leak there
    (:func:`expectation_for`); ``can_overlap`` whether the server's traits let two requests run
    in one process at once (:attr:`harness.exercised.Exercised.can_overlap`).
    """
    if not runs and error is None:
        raise ValueError("aggregate() needs at least one measured run")
    checked = [*runs, *([warmup] if warmup is not None else [])]
    checked += [cut_short] if cut_short is not None else []
    error_kinds: Counter[str] = Counter()
    injected_outcomes: Counter[str] = Counter()
    evidence: list[t.Any] = []
    units: set[tuple[int, int, int | None]] = set()
    statuses: Counter[str] = Counter()
    for run in checked:
        error_kinds.update(run.error_kinds)
        injected_outcomes.update(run.injected_outcomes)
        statuses.update({str(k): v for k, v in run.statuses.items() if not 200 <= k < 300})
        results.keep_evidence(evidence, run.evidence)
        units.update(tuple(u) for u in run.units)  # type: ignore[misc]
    return Cell(
        app=app,
        backend=backend,
        mode=mode,
        connections=connections,
        requests=sum(run.requests for run in checked),
        leaks=sum(run.leaks for run in checked),
        leaky_requests=sum(run.leaky_requests for run in checked),
        framework_leaks=sum(run.framework_leaks for run in checked),
        errors=sum(run.errors for run in checked),
        error_kinds=dict(sorted(error_kinds.items())),
        # The requests made to fail on purpose are counted by status too: not errors.
        error_statuses=dict(sorted((statuses - injected_outcomes).items())),
        injected=sum(run.injected for run in checked),
        injected_outcomes=dict(sorted(injected_outcomes.items())),
        concurrency=concurrency,
        driver_processes=driver_processes,
        runs=tuple(
            _measurement(
                run,
                server_cpu[i] if i < len(server_cpu) else None,
                others_cpu[i] if i < len(others_cpu) else None,
            )
            for i, run in enumerate(runs)
        ),
        latency_ms=Latency.of([lat for run in runs for lat in run.latencies_ms]),
        warmup=Warmup(warmup.requests, warmup.leaks, warmup.errors) if warmup else Warmup(),
        units_seen=len(units),
        evidence=tuple(evidence),
        observed=tuple(sorted({name for run in checked for name in run.observed})),
        server=ServerInfo(
            effective=dict(effective or {}), log=log_path, connections=server_connections
        ),
        error=error,
        expectation=expectation,
        exercised=None
        if sleep_ms is None
        else exercised(
            units,
            answered=sum(run.requests - run.errors for run in checked),
            rps=results.median([run.rps for run in runs]),
            sleep_ms=sleep_ms,
            connections=connections,
            reconnects=sum(run.reconnects for run in checked),
            can_overlap=can_overlap,
        ),
    )


def server_connections_for(
    mode: str, traits: ModeTraits, connections: str
) -> results.ServerConnections:
    """What the server of ``mode``, run with ``traits`` (as configured), does with a cell's
    ``connections``, from the server registry.

    The runner records it on every cell it measures (:attr:`ServerInfo.connections`), so the
    report names the likely cause of starved users from the run alone.
    """
    pattern = server_connections(traits, t.cast(ConnectionPattern, connections))[0]
    return results.ServerConnections(
        # A server that closes every connection after its response sees each request on a new one.
        pattern=pattern if traits.keepalive else "fresh",
        kept_alive_holds_unit=get_mode(mode).lifecycle.kept_alive_holds_unit,
        proxy=traits.proxy.name if traits.proxy is not None else None,
        connection_limit=traits.connection_limit,
    )


def expectation_for(
    backend: str,
    mode: str,
    traits: ModeTraits,
    connections: str,
    fail_phase: str | None = None,
) -> results.LeakExpectation | None:
    """Whether the deliberately broken ``backend`` can leak under the server of ``mode``, run
    with ``traits`` (as configured), on the client's ``connections``, from the expectations
    model; ``None`` for the default backend, and where the model cannot say.

    The runner records it on every cell it measures on another backend (:attr:`Cell.
    expectation`), so the report judges the negative control from the run alone. Behind a proxy
    the traits carry it, and the model reads the connections the proxy makes (as
    ``scenarios/test_mutants.py`` does for the proxied modes). A storage backend leaks on every
    request, so a run's ``fail_phase`` changes nothing for it; a lifecycle control leaks only
    after a request fails at a phase that leaves a context behind, and the model says for every
    phase (:func:`harness.controls.expectation`, as ``scenarios/test_control_leaks.py`` drives
    it): with no ``fail_phase``, or one that is handled and popped normally, it cannot leak.
    """
    if backend == DEFAULT_BACKEND:
        return None
    pattern = t.cast(ConnectionPattern, connections)
    if backend in BACKEND_TRAITS:
        cell = derive_expectation(backend, BACKEND_TRAITS[backend], mode, traits, pattern)
    else:
        # The controls patch the core framework: imported on use, as preflight.check_backend does.
        from harness.controls import CONTROLS, expectation

        if backend not in CONTROLS:
            return None
        cell = expectation(backend, mode, traits, pattern, fail_phase)
    if not cell.applicable:  # never measured
        return None
    return results.LeakExpectation(cell.can_leak, cell.reason, cell.chance)


def _measurement(
    run: LoadResult, server: ThreadCpu | None, others: float | None = None
) -> Measurement:
    wall = run.elapsed_s if run.elapsed_s > 0 else None
    return Measurement(
        rps=round(float(run.rps), 1),
        elapsed_s=round(run.elapsed_s, 3),
        latency_ms=Latency.of(run.latencies_ms),
        driver_cpu=tuple(run.driver_cpu),
        driver_cpu_wait=tuple(run.driver_cpu_wait),
        server_cpu=None if server is None or wall is None else round(server.on_cpu / wall, 4),
        server_cpu_wait=(
            round(server.waiting / wall, 4)
            if server is not None and wall is not None and server.known_wait
            else None
        ),
        others_cpu=others,
        starved=run.starved,
        acks=run.acks,
    )


# -- a server that dies on its own ------------------------------------------------------------


class ServerGone(Exception):
    """The server of the cell being measured stopped on its own (see :meth:`LiveServer.gone`)."""

    def __init__(self, why: str, during: str) -> None:
        super().__init__(f"{why} during the {during}")
        self.why = why
        self.during = during


# -- progress --------------------------------------------------------------------------------


@dataclass
class StatusLine:
    """Progress on stderr: a self-overwriting line on a terminal, else a line per finished cell.

    ``show`` updates the live line (a terminal only); ``finished`` ends a cell: on a terminal it
    leaves the live line standing, elsewhere (a CI or make log) it prints one line.
    """

    stream: t.TextIO = field(default_factory=lambda: sys.stderr)
    live: bool | None = None
    enabled: bool = True
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _width: int = 0

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def show(self, text: str, *, force: bool = False) -> None:
        if not (self.enabled and self.live):
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        line = f"{now - self.started:6.1f}s  {text}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def beat(self, text: str, every: float) -> None:
        """:meth:`show` on a terminal; elsewhere a line at most every ``every`` seconds, for a
        cell that runs for minutes (a soak), whose log would otherwise stay silent until it
        ends, as a CI job that kills a silent step would kill it."""
        if self.live or not self.enabled:
            self.show(text)
            return
        now = time.monotonic()
        if now - self._last >= every:
            self._last = now
            self._line(text, now)

    def finished(self, text: str) -> None:
        if not self.enabled:
            return
        if self.live:
            self.show(text, force=True)
            self.done()
        else:
            self._line(text, time.monotonic())

    def _line(self, text: str, now: float) -> None:
        """A line of its own, off a terminal: ``  12.3s  text``."""
        self.stream.write(f"{now - self.started:6.1f}s  {text}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


# -- the matrix ------------------------------------------------------------------------------


def aimed_at(server: LiveServer | TargetServer, **load: t.Any) -> LoadSpec:
    """A :class:`~harness.load.LoadSpec` of ``load`` (its other fields) sent to ``server``: its
    address, mode, mount and headers (a target's probe secret), keeping as much evidence as a
    results document does. The matrix, the fault cells and the soak all load a server this way."""
    return LoadSpec(
        host=server.host,
        port=server.port,
        mode=server.mode,
        mount=(server.mount or "").rstrip("/"),
        headers=server.headers if isinstance(server, TargetServer) else (),
        max_evidence=results.EVIDENCE_CAP,
        **load,
    )


def load_spec(
    settings: RunSettings, server: LiveServer | TargetServer, connections: str, *, warmup: bool
) -> LoadSpec:
    """The :class:`~harness.load.LoadSpec` of one measurement (or the warm-up) of a cell run
    with ``settings`` against ``server``."""
    return aimed_at(
        server,
        concurrency=settings.concurrency,
        processes=settings.processes_at(settings.concurrency),
        duration=settings.warmup if warmup else settings.duration,
        requests=None if warmup else settings.requests,
        connections=connections,
        sleep_ms=settings.sleep_ms,
        timeout=settings.timeout,
        fail_phase=settings.fail_phase,
        fail_fraction=settings.fail_fraction,
    )


def _cells(settings: RunSettings) -> Iterator[tuple[str, str, str]]:
    # Mode by mode, every app and backend back to back: a machine that slows down halfway
    # through a run then skews whole modes, not the core against Flask on the same mode.
    for mode in settings.modes:
        for app in settings.apps:
            for backend in settings.backends:
                yield app, backend, mode


def run_matrix(
    settings: RunSettings,
    run_dir: str | Path,
    *,
    command: t.Sequence[str] = (),
    run_id: str | None = None,
    load: LoadFn = run_load,
    spec: Callable[..., t.Any] = load_spec,
    server: ServerFn = live_server,
    status: StatusLine | None = None,
) -> Run:
    """Run the whole matrix, write ``run_dir/results.json`` after every cell, return the run.

    ``load``, ``spec`` and ``server`` default to the real load driver, :class:`LoadSpec` and
    :func:`harness.servers.live_server`; tests pass fakes.
    """
    run_dir = Path(run_dir)
    settings = checked(settings)
    with cleaned_up_on_failure(run_dir):
        targets = [_target_server(url) for url in settings.targets]  # all reachable, or stop
        run = Run.start(run_id or run_dir.name, command, settings)
        return _run_cells(
            run, settings, targets, run_dir, load, spec, server, status or StatusLine()
        )


def _run_cells(
    run: Run,
    settings: RunSettings,
    targets: t.Sequence[TargetServer],
    run_dir: Path,
    load_fn: LoadFn,
    make_spec: Callable[..., t.Any],
    server: ServerFn,
    status: StatusLine,
) -> Run:
    started = time.monotonic()
    try:
        for app, backend, mode, serve in _servers(settings, targets, run_dir, server):
            # (connections, concurrency level) left to measure; leaks are checked at every level.
            pending = [(c, level) for c in settings.connections for level in settings.levels]
            restarts = 0
            while pending:
                # A server that dies on its own ends its cell (with the error) and is replaced
                # by a new one, in a folder of its own for the logs, for the cells left.
                with serve(restarts) as srv:
                    log = None if srv.log_path is None else str(srv.log_path.relative_to(run_dir))
                    applicable = _applicable(srv, settings.connections)
                    while pending:
                        connections, level = pending.pop(0)
                        if connections not in applicable:
                            run = _record_not_applicable(run, mode, connections)
                            continue
                        cell, ended = _measure_cell(
                            settings.replace(concurrency=level), srv, app, backend, connections,
                            load_fn, make_spec, status, totals=(run.requests, run.leaks), log=log,
                        )  # fmt: skip
                        run = run.replace(cells=(*run.cells, cell))
                        results.write(run_dir, run)
                        # Said once the cell is in results.json: a Ctrl-C right after a "done"
                        # line keeps that cell.
                        status.finished(ended)
                        if cell.failed:
                            restarts += 1
                            break
        # Inside the try: a Ctrl-C while "complete" is written leaves the last cell's file,
        # marked running (read as abandoned), where the interrupt's write marks it interrupted.
        return results.write_ended(run_dir, run, time.monotonic() - started, None)
    except BaseException as e:
        status.done()
        # Keep what was measured (a complete, valid file). A run that measured nothing writes
        # no results file, and cleaned_up_on_failure removes what it made.
        results.write_ended(run_dir, run, time.monotonic() - started, e)
        raise


@dataclass(frozen=True)
class TargetServer:
    """A server ctxbench did not start (``run --target``), as the runner uses its own servers.

    Its ``effective`` configuration is what can be seen from outside (the URL, the ``Server``
    header, the app's name); each cell adds the units the probe reported.
    """

    mode: str
    host: str
    port: int
    effective: dict[str, t.Any]
    headers: tuple[tuple[str, str], ...] = ()
    log_path: Path | None = None
    #: The path prefix of the target URL (``run --target http://127.0.0.1:8080/api``).
    mount: str = ""

    def gone(self) -> str | None:
        """Why the target stopped (it refuses connections), as :meth:`LiveServer.gone` says why
        a server ctxbench started did: its cell then fails with the reason, and the cells after
        it fail at their start, instead of loading a closed port to the end."""
        return refuses_connections(self.host, self.port, str(self.effective["target"]))

    def process_groups(self) -> list[int]:
        """None: a target's processes are not ctxbench's to measure (its CPU time is not known)."""
        return []


def _target_server(url: str) -> TargetServer:
    target = identify(parse_target(url))
    return TargetServer(
        mode=f"target:{target.host}:{target.port}{target.mount}",
        host=target.host,
        port=target.port,
        effective={"target": target.url, "server": target.server, "app": target.app},
        headers=secret_headers(),
        mount=target.mount,
    )


Serve = Callable[[int], AbstractContextManager[t.Any]]


def _servers(
    settings: RunSettings,
    targets: t.Sequence[TargetServer],
    run_dir: Path,
    server: ServerFn,
) -> Iterator[tuple[str, str, str, Serve]]:
    """(app, backend, mode, ``serve``) for every server of the run: ``serve(restarts)`` is a
    context manager serving it, the first time (0) or again after it died (1, 2, ...)."""
    for target in targets:

        def serve_target(restarts: int, target: TargetServer = target) -> nullcontext[t.Any]:
            return nullcontext(target)

        yield str(target.effective["app"]), DEFAULT_BACKEND, target.mode, serve_target
    for app, backend, mode in _cells(settings):
        log_dir = run_dir / results.LOGS / f"{app_folder(app)}-{backend}"
        cfg = server_config(settings, app, backend)

        def serve(
            restarts: int, mode: str = mode, cfg: t.Any = cfg, log_dir: Path = log_dir
        ) -> AbstractContextManager[t.Any]:
            # A new server's log must not overwrite the log of the one that died.
            logs = log_dir / f"restart-{restarts}" if restarts else log_dir
            return server(mode, cfg, log_dir=logs)

        yield app, backend, mode, serve


def _applicable(srv: LiveServer | TargetServer, patterns: t.Sequence[str]) -> tuple[str, ...]:
    """The connection patterns of ``patterns`` that can run against ``srv`` (a target's traits
    are not known: every pattern)."""
    if isinstance(srv, TargetServer):
        return tuple(patterns)
    return applicable_patterns(srv.traits, t.cast("t.Sequence[ConnectionPattern]", patterns))


def _record_not_applicable(run: Run, mode: str, connections: str) -> Run:
    """Record a connection pattern that cannot run against ``mode`` (it is not measured)."""
    if any(c.mode == mode and c.connections == connections for c in run.not_measured):
        return run
    reason = f"{connections} connections cannot run against {mode}: {CLOSES_EVERY_CONNECTION}"
    return run.replace(not_measured=(*run.not_measured, NotMeasured(mode, connections, reason)))


#: Where a cell found its server gone before any load (``ServerGone.during``).
_CELL_START = "start of the cell"


def _measure_cell(
    settings: RunSettings,
    srv: LiveServer | TargetServer,
    app: str,
    backend: str,
    connections: str,
    load_fn: LoadFn,
    make_spec: Callable[..., t.Any],
    status: StatusLine,
    *,
    totals: tuple[int, int],
    log: str | None,
) -> tuple[Cell, str]:
    """Measure one cell on ``srv``; return it with the line that says how it ended, for the
    caller to show once the cell is recorded."""
    loads = _CellLoads(
        settings, srv, connections, load_fn, make_spec, status,
        _cell_name(settings, srv, app, backend), *totals,
    )  # fmt: skip
    cut_short = loads.cut_short  # what a load the server's death ended had checked
    warmup = None
    runs: list[LoadResult] = []
    server_cpu: list[ThreadCpu | None] = []
    others_cpu: list[float | None] = []
    groups = srv.process_groups()
    error: str | None = None
    try:
        loads.check_alive(_CELL_START)
        if settings.warmup > 0:
            warmup = loads.run("warm-up", warmup=True)
            loads.check_alive("warm-up")
        for i in range(settings.repeats):
            label = f"run {i + 1}/{settings.repeats}"
            procs, busy, start = _usage(groups)
            run = loads.run(label, warmup=False)
            procs_after, busy_after, end = _usage(groups)
            server_cpu.append(cpu_between(procs, procs_after))
            machine = None if busy is None or busy_after is None else busy_after - busy
            others_cpu.append(_others_cpu(run, server_cpu[-1], machine, end - start))
            runs.append(run)
            loads.check_alive(label)
    except ServerGone as e:
        error = loads.died(e, log)
        ended = f"{loads.name} {connections} FAILED  {e.why}"
        if cut_short.errors:
            # The driver had not classified its errors yet: mostly refused and reset connections.
            cut_short.error_kinds = {"cut short by the server's death": cut_short.errors}
    else:
        so_far = f"{loads.run_requests:,} requests, {loads.run_leaks:,} leaks"
        ended = f"{loads.name} {connections} done  run so far: {so_far}"
    cell = aggregate(
        mode=srv.mode,
        app=app,
        backend=backend,
        connections=connections,
        runs=runs,
        warmup=warmup,
        effective=srv.effective,
        log_path=log,
        server_connections=None
        if isinstance(srv, TargetServer)
        else server_connections_for(srv.mode, srv.traits, connections),
        expectation=None
        if isinstance(srv, TargetServer)  # its storage is its own, not a --backend's
        else expectation_for(backend, srv.mode, srv.traits, connections, settings.fail_phase),
        # What a cell cut short exercised is not known: its units are not all in.
        sleep_ms=settings.sleep_ms if error is None else None,
        concurrency=settings.concurrency,
        driver_processes=settings.processes_at(settings.concurrency),
        server_cpu=server_cpu,
        others_cpu=others_cpu,
        error=error,
        cut_short=cut_short if cut_short.requests else None,
        # A sync worker never overlaps requests: no note asks a longer sleep to show it.
        can_overlap=isinstance(srv, TargetServer)
        or situation(srv.traits, t.cast(ConnectionPattern, connections)).overlap_in_process,
    )
    # The interrupted load's leaks are counted, its leaking requests were not.
    return (dataclasses.replace(cell, leaky_requests=None) if cut_short.leaks else cell), ended


def _cell_name(
    settings: RunSettings, srv: LiveServer | TargetServer, app: str, backend: str
) -> str:
    """How the status line names a cell: its mode, with its app (and the prefix it is served
    under, ``--mount``) and backend but for the core app at the root on the default backend (a
    target's app alone: its prefix is in its mode), and its level in a sweep, as the report's
    lists of cells name it."""
    at = mounted(app_label(app), srv.mount or "/")
    if isinstance(srv, TargetServer):  # its storage is its own, not a --backend's
        name = f"{srv.mode} ({app_label(app)})"
    elif at == "core" and backend == DEFAULT_BACKEND:
        name = srv.mode
    else:
        name = f"{srv.mode} ({at}, {backend})"
    if settings.concurrency_levels:
        name += f" @{settings.concurrency} users"
    return name


@dataclass
class _CellLoads:
    """The loads of one cell, one after another on its server: each shows its progress on the
    status line and ends as soon as the server is gone (:class:`ServerGone`), and what each
    checked is counted, a load the server's death cut short included."""

    settings: RunSettings
    srv: LiveServer | TargetServer
    connections: str
    load_fn: LoadFn
    make_spec: Callable[..., t.Any]
    status: StatusLine
    #: The cell's name on the status line (:func:`_cell_name`).
    name: str
    #: The run's requests and leaks so far, earlier cells' included.
    run_requests: int
    run_leaks: int
    #: This cell's finished loads' requests and errors.
    requests: int = 0
    errors: int = 0
    #: What the load in progress has checked, from its last progress report: if the server dies,
    #: the driver never returns its result, and these counts are all that is known of it.
    cut_short: LoadResult = field(default_factory=LoadResult)

    def check_alive(self, during: str) -> None:
        # A server ctxbench started: its main process; a target (run --target): its port.
        why = self.srv.gone()
        if why is not None:
            raise ServerGone(why, during)

    def run(self, label: str, *, warmup: bool) -> LoadResult:
        """Run the warm-up or one measurement (``label`` on the status line) and count it."""
        cut = self.cut_short
        cut.requests = cut.errors = cut.leaks = 0
        spec = self.make_spec(self.settings, self.srv, self.connections, warmup=warmup)
        rv = self.load_fn(spec, self._progress(label))
        cut.requests = cut.errors = cut.leaks = 0  # counted in rv
        self.run_requests += rv.requests
        self.run_leaks += rv.leaks
        self.requests += rv.requests
        self.errors += rv.errors
        return rv

    def _progress(self, label: str) -> Progress:
        def callback(requests: int, errors: int, leaks: int) -> None:
            if requests:
                checkpoint("load", pause=False)  # a test hook (harness.checkpoints)
            self.status.show(
                f"{self.name} {self.connections} {label}  errors {errors}  run so far:"
                f" {self.run_requests + requests:,} requests, {self.run_leaks + leaks:,} leaks"
            )
            cut = self.cut_short
            cut.requests, cut.errors, cut.leaks = requests, errors, leaks
            # Raising here ends the load driver's run (it closes its connections first).
            self.check_alive(label)

        return callback

    def died(self, e: ServerGone, log: str | None) -> str:
        """The error of the cell whose server died (``e``): when, after how many requests
        checked, and where its log is (a target's is its own)."""
        failed = self.errors + self.cut_short.errors
        checked = self.requests + self.cut_short.requests - failed
        when = (
            f"at the start of the {self.connections} cell"
            if e.during == _CELL_START
            else f"during the {e.during} of the {self.connections} cell, after {checked:,}"
            f" requests checked{f' ({failed:,} more failed)' if failed else ''}"
        )
        # A --target's log is its own, wherever its deployment writes it: ctxbench has none.
        where = "its own log" if isinstance(self.srv, TargetServer) else "the server log"
        return (
            f"{e.why} {when}; nothing of it was left to serve the rest (see {where}"
            f"{f': {log}' if log else ''})"
        )


def _usage(groups: t.Sequence[int]) -> tuple[dict[int, ThreadCpu] | None, float | None, float]:
    """The CPU time so far of a server's processes and of the machine, and the clock."""
    return processes_cpu(groups) if groups else None, machine_cpu(), time.monotonic()


def _others_cpu(
    run: LoadResult, server: ThreadCpu | None, machine: float | None, wall: float
) -> float | None:
    """The cores other programs used during a measured run: the CPU seconds the ``machine``
    used meanwhile (:func:`~harness.load.cpu.machine_cpu`) less the server's and the load
    driver's, over the ``wall`` seconds it took; ``None`` when not known (a ``--target``
    server's CPU time is not)."""
    if server is None or machine is None or wall <= 0:
        return None
    driver = sum(run.driver_cpu) * run.elapsed_s
    return round(max(0.0, machine - server.on_cpu - driver) / wall, 4)
