"""Run one fault cell: a server, the faulted load beside the fault, recovery, a clean load.

Design note: everything here runs in the harness's main thread except the fault's injector (a
background thread, see :mod:`harness.faults.base`). The server is started with the fault's
extra arguments; the load then runs in rounds of ``round_requests`` requests (each round exactly
accounted for by the driver) until the injector says the fault did all it planned, within
``max_seconds`` (a round ends at that deadline too). The harness then waits until the server
has its workers back, runs a clean load of ``after_requests`` (each run of it bounded by
``max_seconds`` as well) and judges the cell (:mod:`harness.faults.verdict`). A fault that does not
apply to a mode starts nothing and is recorded as ``n/a`` with the reason.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import results
from harness.apps import app_folder
from harness.expectations import BACKEND_TRAITS, Expectation, derive_expectation, situation
from harness.load import LoadResult, LoadSpec, run_load
from harness.load.hostile import get
from harness.preflight import checked
from harness.protocol import DEFAULT_BACKEND, FAIL_PHASES, probe_path
from harness.report.text import plural
from harness.results import AfterFault, FaultCell, Run, ServerInfo, keep_evidence
from harness.runner import aimed_at
from harness.servers import LiveServer, ServerMode, get_mode, live_server
from harness.servers.base import CLOSES_EVERY_CONNECTION, ModeTraits, ServerConfig
from harness.settings import ChaosSettings, RunSettings

from .base import Fault, worker_pids
from .verdict import Tally, judge, split_statuses

__all__ = ["LOAD_TIMEOUT_S", "LoadSettings", "run_chaos", "run_fault_cell"]

#: How long the server may take to have its workers back after the fault.
RECOVERY_S = 20.0
#: The load's request timeout beside a fault: longer than ``ctxbench run``'s, so that a request
#: stuck behind a dying worker is an answer or a reset, not a timeout.
LOAD_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LoadSettings:
    """The ordinary load a fault runs beside: the :class:`~harness.settings.RunSettings` fields
    of the same names (:meth:`of`). The defaults are ``ctxbench run``'s but for the timeout,
    :data:`LOAD_TIMEOUT_S`."""

    concurrency: int = RunSettings.concurrency
    sleep_ms: float = RunSettings.sleep_ms
    timeout: float = LOAD_TIMEOUT_S
    workers: int | None = None
    threads: int | None = None
    #: The path prefix the app is served under (``--mount``; see ``ServerConfig.mount``).
    mount: str | None = None

    @classmethod
    def of(cls, settings: RunSettings) -> LoadSettings:
        """The load of ``settings``: its fields of the names above."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


def _spec(server: LiveServer, connections: str, load: LoadSettings, requests: int,
          **overrides: t.Any) -> LoadSpec:  # fmt: skip
    return aimed_at(
        server,
        concurrency=load.concurrency,
        requests=requests,
        connections=connections,
        sleep_ms=load.sleep_ms,
        timeout=load.timeout,
        **overrides,
    )


def _add_round(tally: Tally, spec: LoadSpec, result: LoadResult, evidence: list[t.Any]) -> None:
    # A round sends exactly spec.requests, unless --max-seconds ran out first: the driver then
    # sent no more than it finished (it finishes every request in flight).
    planned = spec.requests or 0
    cut = spec.duration is not None and result.elapsed_s >= spec.duration
    tally.sent += result.requests if cut and result.requests < planned else planned
    tally.accounted += result.requests
    tally.injected += result.injected
    tally.injected_outcomes.update(result.injected_outcomes)
    tally.errors.update(split_statuses(result.error_kinds, result.statuses,
                                       result.injected_outcomes))  # fmt: skip
    tally.answered += result.requests - result.errors - result.injected
    tally.leaks += result.leaks
    tally.framework_leaks += result.framework_leaks
    tally.leaky_requests += result.leaky_requests
    keep_evidence(evidence, result.evidence)


def _leak_expected(
    fault: Fault, backend: str, mode: str, traits: ModeTraits, connections: str
) -> Expectation:
    """Whether ``backend`` can leak under ``mode`` run with ``traits`` (the server's as it was
    configured: gunicorn-sync with ``--threads 4`` is gunicorn's gthread worker), and why, from
    :mod:`harness.expectations` and :func:`harness.controls.expectation`.

    A control that needs no failed request (``shared-app-slot``: a process-wide slot) leaks where
    its traits say, under any fault. A lifecycle control breaks only when a request fails at a
    phase, so it can leak only under a fault that makes requests fail (``hook-error``, which
    fails them at every phase in turn), where a failure at one of them can.
    """
    pattern = t.cast(t.Any, connections)
    if backend in BACKEND_TRAITS:
        return derive_expectation(backend, BACKEND_TRAITS[backend], mode, traits, pattern)
    from harness.controls import CONTROLS, expectation

    control = CONTROLS[backend][0]
    if fault.name != "hook-error":  # no request is made to fail
        rv = expectation(backend, mode, traits, pattern)
        if control.fail_phase is None or not rv.applicable:
            return rv
        # Its reason names run's --fail-phase, which chaos has not: the hook-error fault fails
        # requests here.
        where = " or ".join(control.leak_phases)
        return dataclasses.replace(rv, reason=(
            f"It leaves a context behind only after a request fails at {where}, which only the"
            " hook-error fault makes happen"
        ))  # fmt: skip
    cells = {phase: expectation(backend, mode, traits, pattern, phase) for phase in FAIL_PHASES}
    if leaking := [c for c in cells.values() if c.can_leak]:
        return leaking[0]
    # Why not: at the phase whose failure would leave a context behind.
    own = control.leak_phases
    return cells[own[0]] if own else cells[FAIL_PHASES[0]]


def _no_leak_why(expected: Expectation) -> str:
    """Why a negative control's cell that showed no leak is ``ok``, not blind: ``ok`` alone read
    as a control the fault failed to catch (``abort gunicorn-gevent no-reset fresh: ok``)."""
    if expected.can_leak:
        chance = expected.chance
        return f"{expected.backend} shows a leak here only by chance ({chance}), not this time"
    why = expected.reason[:1].lower() + expected.reason[1:]
    return f"{expected.backend} cannot leak here: {why}"


def _kept_alive(mode: ServerMode, connections: str) -> bool:
    """Whether the load's connections to the server of ``mode`` (as configured:
    :meth:`~harness.servers.base.ServerMode.configured`) carry more than one request: kept-alive
    ones, or behind a proxy, the proxy's upstream connections."""
    traits = mode.traits
    if traits.proxy is not None:
        return traits.proxy.reuses_upstream_connections
    return connections == "keepalive" and traits.keepalive


def _requests_per_connection(
    mode: ServerMode, connections: str, load: LoadSettings, settings: ChaosSettings
) -> float:
    """How many requests one connection to the server carries in a load round: 1 on fresh
    connections, a client's share of the round on kept-alive ones (each virtual user keeps one
    for the round). Behind a proxy, the proxy's upstream connections decide."""
    kept = _kept_alive(mode, connections)
    return settings.round_requests / load.concurrency if kept else 1.0


def _wait_recovered(server: LiveServer, expected: int) -> tuple[set[int], str | None]:
    """Wait until ``expected`` workers run and answer: the count holds for a moment, then
    enough probe requests in a row on fresh connections succeed (a respawned worker of a
    server whose workers each listen on their own socket refuses connections until it is up)."""
    deadline = time.monotonic() + RECOVERY_S
    stable_since: float | None = None
    pids: set[int] = set()
    streak = attempt = 0
    while time.monotonic() < deadline:
        if gone := server.gone():
            return set(), gone
        pids = worker_pids(server)
        if len(pids) != expected:
            stable_since, streak = None, 0
        else:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 0.3:
                attempt += 1
                token = f"ctxbench-recovered-{attempt}"
                path = f"{probe_path(server.mount)}?token={token}"
                outcome = get(server.host, server.port, path, timeout=5.0)
                status = outcome.status or 0
                if 300 <= status < 500:  # neither 2xx nor 5xx: the app, not a recovering server
                    return pids, (
                        f"the app answered a probe request itself ({status}) once the workers"
                        " were back, so no clean load after the fault could be checked"
                    )
                streak = streak + 1 if status == 200 else 0
                if streak >= 8 * expected:
                    return pids, None
                continue
        time.sleep(0.05)  # poll interval, not a synchronisation
    return pids, (
        f"{len(pids)} workers running {RECOVERY_S:g} s after the fault, expected {expected},"
        f" {streak} probe requests in a row answered"
    )


def _after_load(
    server: LiveServer,
    connections: str,
    load: LoadSettings,
    settings: ChaosSettings,
    before: set[int],
    evidence: list[t.Any],
) -> AfterFault:
    """The clean load after the fault, in the cell's connection pattern; when it reached no
    worker started during the fault (a keep-alive client sticks to the workers that accepted
    it first), up to two more runs on fresh connections, so the respawned workers are judged
    too."""
    requests = leaks = 0
    errors: Counter[str] = Counter()
    reached: set[int] = set()
    for attempt in range(3):
        pattern = connections if attempt == 0 else "fresh"
        # Bounded in time too: --after-requests goes up to 1,000,000.
        spec = _spec(server, pattern, load, settings.after_requests,
                     duration=settings.max_seconds)  # fmt: skip
        result = run_load(spec)
        requests += result.requests
        leaks += result.leaks
        errors.update(split_statuses(result.error_kinds, result.statuses, {}))
        reached |= {unit[0] for unit in result.units}
        keep_evidence(evidence, result.evidence)
        if reached - before or worker_pids(server) <= before:
            break
    return AfterFault(
        requests=requests,
        errors=dict(sorted(errors.items())),
        leaks=leaks,
        survivors_reached=len(reached & before),
        respawned_reached=len(reached - before),
    )


def run_fault_cell(
    fault: Fault,
    mode: str,
    *,
    app: str,
    backend: str,
    connections: str,
    settings: ChaosSettings | None = None,
    load: LoadSettings | None = None,
    log_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FaultCell:
    """Run ``fault`` against ``mode`` serving ``app`` on ``backend``; return the judged cell."""
    settings = settings or ChaosSettings()
    load = load or LoadSettings()
    cfg = ServerConfig(app=app, backend=backend, workers=load.workers, threads=load.threads,
                       mount=load.mount)  # fmt: skip
    # The mode as this server runs: gunicorn-sync with --threads 4 is gunicorn's gthread worker,
    # where the timeout fault cannot happen; the defaults judged it by the sync worker's.
    server_mode = get_mode(mode).configured(cfg)

    def cell(**fields: t.Any) -> FaultCell:
        return FaultCell(fault=fault.name, mode=mode, app=app, backend=backend,
                         connections=connections, **fields)  # fmt: skip

    why_not = fault.not_applicable(server_mode)
    served = situation(server_mode.traits, t.cast(t.Any, connections))
    if why_not is None and not served.applicable:
        # The model's own words open with "Not applicable:", which the n/a verdict says.
        why_not = f"the mode cannot serve {connections} connections: {CLOSES_EVERY_CONNECTION}"
    if why_not is not None:
        return cell(verdict="n/a", reason=why_not)
    say = progress or (lambda text: None)
    started = time.monotonic()
    per_connection = _requests_per_connection(server_mode, connections, load, settings)
    with live_server(
        mode,
        cfg,
        extra_args=fault.server_args(server_mode, settings, requests_per_connection=per_connection),
        log_dir=log_dir,
    ) as server:
        expected = _leak_expected(fault, backend, mode, server.traits, connections)
        expected_workers = len(worker_pids(server))
        before = worker_pids(server)
        tally = Tally()
        evidence: list[t.Any] = []
        injector = fault.injector(server, settings)
        injector.kept_alive = _kept_alive(server_mode, connections)
        rounds = 0
        injector.start()
        try:
            deadline = time.monotonic() + settings.max_seconds
            while rounds < settings.min_rounds or not (
                injector.done() and fault.enough_rounds(rounds)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # A round ends at the deadline too (--round-requests goes up to 1,000,000).
                spec = _spec(server, connections, load, settings.round_requests,
                             duration=remaining,
                             **fault.round_overrides(rounds, settings))  # fmt: skip
                result = run_load(spec)
                rounds += 1
                _add_round(tally, spec, result, evidence)
                errors = sum(tally.errors.values())
                say(f"{fault.name} {mode} {connections} round {rounds}: {tally.accounted:,}"
                    f" requests, {errors:,} errors, {tally.leaks:,} leaks")  # fmt: skip
                injector.between_rounds(deadline)
        finally:
            injector.stop()
        hostile_evidence = getattr(injector, "evidence", [])  # every leak its clients saw
        tally.add_hostile(injector.hostile_sent, injector.hostile_counts, hostile_evidence)
        keep_evidence(evidence, hostile_evidence)
        after_pids, recovery_error = _wait_recovered(server, expected_workers)
        after: AfterFault | None = None
        if recovery_error is None:
            after = _after_load(server, connections, load, settings, before, evidence)
        not_exercised = recovery_error or fault.not_exercised(tally, injector, before, after_pids)
        if not injector.done() or not fault.enough_rounds(rounds):
            not_exercised = not_exercised or (
                f"the fault had not done all it planned after {settings.max_seconds:g} s"
            )
        expected_errors = _as_client_sees(fault.expected_for(server_mode), server)
        verdict, reason = judge(
            tally,
            can_leak=expected.can_leak,
            chance=expected.chance,
            expected_errors=expected_errors,
            not_exercised=not_exercised,
            after=after,
            replaces_workers=fault.replaces_workers,
            after_expected_errors=expected_errors if fault.persists else frozenset(),
            leaked={e.name for e in evidence},
        )
        if verdict == "ok" and backend != DEFAULT_BACKEND:
            reason += f"; {_no_leak_why(expected)}"
        info = ServerInfo(effective=dict(server.effective), log=_log(server, log_dir))
    return cell(
        verdict=verdict,
        reason=reason,
        requests=tally.sent,
        answered=tally.answered,
        errors=dict(sorted(tally.errors.items())),
        aborted=tally.aborted,
        injected=tally.injected,
        injected_outcomes=dict(sorted(tally.injected_outcomes.items())),
        leaks=tally.leaks,
        leaky_requests=tally.leaky_requests,
        evidence=tuple(evidence),
        events=tuple(injector.events),
        workers_before=tuple(sorted(before)),
        workers_after=tuple(sorted(after_pids)),
        after=after,
        rounds=rounds,
        elapsed_s=round(time.monotonic() - started, 2),
        server=info,
    )


def _as_client_sees(errors: frozenset[str], server: LiveServer) -> frozenset[str]:
    """The error kinds a fault's ``errors`` reach the client as: behind a proxy, an upstream
    connection reset or refused comes back as a 502 Bad Gateway (``5xx``)."""
    behind_proxy = server.app_server is not server
    return errors | {"5xx"} if behind_proxy and errors & {"reset", "refused"} else errors


def _log(server: LiveServer, log_dir: str | Path | None) -> str:
    """The server log's path, relative to the run folder when the log lives in it."""
    if log_dir is None:
        return str(server.log_path)
    try:
        return str(server.log_path.relative_to(Path(log_dir).parent.parent))
    except ValueError:
        return str(server.log_path)


def _finished_line(run: Run, cell: FaultCell) -> str:
    """``kill-worker gunicorn-sync core contextvar fresh: ok  run so far: 3 cells, 0 failing``:
    the cell that just ended, and the run's counts so far."""
    failing = sum(not c.passed for c in run.faults)
    return (
        f"{cell.fault} {cell.mode} {cell.app_label} {cell.backend} {cell.connections}:"
        f" {cell.verdict}  run so far: {plural(len(run.faults), 'cell')}, {failing:,} failing"
    )


def run_chaos(
    faults: t.Sequence[Fault],
    settings: RunSettings,
    chaos: ChaosSettings,
    run_dir: str | Path,
    *,
    command: t.Sequence[str] = (),
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    finished: Callable[[str], None] | None = None,
) -> Run:
    """Every fault x mode x app x backend x connection pattern of ``settings``, one cell at a
    time, each judged; ``run_dir/results.json`` is rewritten after every cell. ``progress`` is
    given a line as each load round ends, ``finished`` one as each cell ends (with the run's
    counts so far)."""
    run_dir = Path(run_dir)
    settings = checked(settings)
    modes = settings.modes
    run = Run.start(run_id or run_dir.name, command, settings)
    run = run.replace(chaos=chaos)
    load = LoadSettings.of(settings)
    started = time.monotonic()
    try:
        for fault in faults:
            for mode in modes:
                for app in settings.apps:
                    for backend in settings.backends:
                        for connections in settings.connections:
                            name = f"{fault.name}-{app_folder(app)}-{backend}-{connections}"
                            log_dir = run_dir / results.LOGS / name
                            cell = run_fault_cell(
                                fault, mode, app=app, backend=backend, connections=connections,
                                settings=chaos, load=load, log_dir=log_dir, progress=progress,
                            )  # fmt: skip
                            run = run.replace(faults=(*run.faults, cell))
                            results.write(run_dir, run)
                            if finished is not None:
                                finished(_finished_line(run, cell))
        # Inside the try: a Ctrl-C while "complete" is written marks the run interrupted.
        return results.write_ended(run_dir, run, time.monotonic() - started, None)
    except BaseException as exc:
        results.write_ended(run_dir, run, time.monotonic() - started, exc)
        raise
