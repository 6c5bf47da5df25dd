"""The matrix: apps x backends x server modes x connection patterns x repeats.

For each (app, backend, mode) the runner starts the server once; for each connection pattern
(``keepalive``, ``fresh``) it runs a short warm-up and then ``repeats`` measurements with the
load driver, and aggregates them into one results entry:

- ``requests``, ``leaks``, ``errors``, ``error_kinds`` and ``evidence`` cover every checked
  response, warm-up included (a leak seen while warming up is still a leak); ``warmup`` says
  how much of it came from the warm-up;
- ``rps`` is the median of the measured runs (``rps_runs``); ``rps_spread`` is their relative
  range, ``(max - min) / median``: 0.10 means the runs were within 10 % of the median, and a
  spread above :data:`SPREAD_WARNING` is flagged as too noisy to compare;
- ``latency_ms`` holds p50/p90/p99/max over all measured latencies pooled, ``latency_runs`` the
  same per run (linear interpolation between closest ranks);
- ``server.effective`` is what really ran (see :mod:`harness.servers`).

The document is rewritten atomically after every entry, so an interrupted run leaves a valid file
whose ``status`` says ``interrupted``. Progress lines go to stderr only when it is a terminal.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from harness import results
from harness.errors import UsageError
from harness.expectations import ConnectionPattern, applicable_patterns
from harness.probe.state import FAIL_PHASES
from harness.servers import MODES, LiveServer, get_mode, live_server
from harness.wsgi import DEFAULT_APP

__all__ = [
    "APP_LABELS",
    "CONNECTION_PATTERNS",
    "EVIDENCE_CAP",
    "SPREAD_WARNING",
    "Progress",
    "RunSettings",
    "aggregate",
    "app_label",
    "percentiles",
    "run_matrix",
]

CONNECTION_PATTERNS = ("keepalive", "fresh")
#: Evidence items kept per entry; the counts stay exact.
EVIDENCE_CAP = 20
#: Relative rps spread above which the median is flagged as too noisy to compare.
SPREAD_WARNING = 0.10
#: Labels of the bundled apps; any other app is labelled by its import string.
APP_LABELS = {
    "harness.apps.core_app:app": "core",
    "harness.apps.flask_app:app": "flask",
}


class LoadResultLike(t.Protocol):
    """The fields of :class:`harness.load.LoadResult` that the runner reads."""

    requests: int
    errors: int
    error_kinds: dict[str, int]
    leaks: int
    evidence: list[t.Any]
    latencies_ms: list[float]
    elapsed_s: float
    rps: float
    workers: t.Any


ProgressFn = Callable[[int, int, int], None]
LoadFn = Callable[[t.Any, ProgressFn | None], LoadResultLike]
ServerFn = Callable[..., AbstractContextManager[LiveServer]]


@dataclass(frozen=True)
class RunSettings:
    """Everything a run varies; recorded as the document's ``settings``."""

    apps: tuple[str, ...] = (DEFAULT_APP,)
    backends: tuple[str, ...] = ("contextvar",)
    modes: tuple[str, ...] = ()  # empty: every mode that can run here
    connections: tuple[str, ...] = CONNECTION_PATTERNS
    duration: float | None = 2.0
    requests: int | None = None
    concurrency: int = 16
    repeats: int = 3
    sleep_ms: float = 1.0
    warmup: float = 0.3
    timeout: float = 5.0
    workers: int | None = None
    threads: int | None = None
    worker_connections: int | None = None
    extra_args: tuple[str, ...] = ()
    #: Make ``fail_fraction`` of the requests raise at this probe phase (see LoadSpec).
    fail_phase: str | None = None
    fail_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.duration is None and self.requests is None:
            raise UsageError("give a duration or a number of requests per measurement")
        if self.duration is not None and not self.duration > 0:
            raise UsageError(f"bad duration {self.duration!r}: use a number of seconds > 0")
        for name in ("requests", "concurrency", "repeats"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"bad {name} {value!r}: use a number >= 1")
        if self.sleep_ms < 0 or self.warmup < 0 or not self.timeout > 0:
            raise UsageError("sleep-ms and warm-up must be >= 0 and the timeout > 0")
        if self.fail_phase is not None and self.fail_phase not in FAIL_PHASES:
            raise UsageError(
                f"unknown fail phase {self.fail_phase!r}: choose from {', '.join(FAIL_PHASES)}"
            )
        if not 0.0 <= self.fail_fraction <= 1.0 or (self.fail_fraction and not self.fail_phase):
            raise UsageError(
                f"bad fail fraction {self.fail_fraction!r}: use a number in [0, 1] with a fail"
                " phase"
            )
        for pattern in self.connections:
            if pattern not in CONNECTION_PATTERNS:
                raise UsageError(
                    f"unknown connection pattern {pattern!r}: choose from keepalive, fresh, both"
                )

    def resolved_modes(self) -> tuple[str, ...]:
        """The modes to run: the ones asked for (checked), or every available one."""
        if self.modes:
            for name in self.modes:
                mode = get_mode(name)
                availability = mode.available()
                if not availability.ok:
                    raise UsageError(f"server mode {name!r} cannot run here: {availability.reason}")
            return self.modes
        return tuple(name for name, mode in MODES.items() if mode.available().ok)

    def as_dict(self) -> dict[str, t.Any]:
        rv = dataclasses.asdict(self)
        rv["spread_formula"] = "(max - min) / median"
        return {k: list(v) if isinstance(v, tuple) else v for k, v in rv.items()}


def app_label(app: str) -> str:
    """A short name for an app import string: ``core``/``flask`` for the bundled ones."""
    return APP_LABELS.get(app, app)


# -- aggregation (pure) ----------------------------------------------------------------------


def percentiles(values: t.Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max of ``values`` (linear interpolation); ``None`` for an empty sequence."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {
        "p50": round(at(0.50), 3),
        "p90": round(at(0.90), 3),
        "p99": round(at(0.99), 3),
        "max": round(ordered[-1], 3),
    }


def _evidence_dict(item: t.Any) -> dict[str, t.Any]:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    if isinstance(item, dict):
        return dict(item)
    return dict(vars(item))


def _distinct_workers(runs: t.Sequence[LoadResultLike]) -> int:
    seen: set[t.Any] = set()
    most = 0
    for run in runs:
        if isinstance(run.workers, int):
            most = max(most, run.workers)
        else:
            seen.update(tuple(w) if isinstance(w, list) else w for w in run.workers)
    return max(most, len(seen))


def aggregate(
    *,
    mode: str,
    app: str,
    backend: str,
    connections: str,
    runs: t.Sequence[LoadResultLike],
    warmup: LoadResultLike | None = None,
    effective: dict[str, t.Any] | None = None,
    log_path: str | None = None,
) -> dict[str, t.Any]:
    """Fold the measured ``runs`` (and the warm-up) of one matrix cell into a results entry."""
    if not runs:
        raise ValueError("aggregate() needs at least one measured run")
    checked = [*runs, *([warmup] if warmup is not None else [])]
    error_kinds: Counter[str] = Counter()
    injected_outcomes: Counter[str] = Counter()
    evidence: list[dict[str, t.Any]] = []
    for run in checked:
        error_kinds.update(run.error_kinds)
        injected_outcomes.update(getattr(run, "injected_outcomes", {}))
        evidence.extend(_evidence_dict(e) for e in run.evidence[: EVIDENCE_CAP - len(evidence)])
    rps_runs = [round(float(run.rps), 1) for run in runs]
    rps = statistics.median(rps_runs)
    spread = (max(rps_runs) - min(rps_runs)) / rps if rps > 0 else 0.0
    all_latencies = [lat for run in runs for lat in run.latencies_ms]
    server: dict[str, t.Any] = {"effective": effective or {}}
    if log_path is not None:
        server["log"] = log_path
    return {
        "mode": mode,
        "app": app,
        "app_label": app_label(app),
        "backend": backend,
        "connections": connections,
        "requests": sum(run.requests for run in checked),
        "leaks": sum(run.leaks for run in checked),
        "errors": sum(run.errors for run in checked),
        "error_kinds": dict(sorted(error_kinds.items())),
        # Requests made to fail on purpose (--fail-phase): expected errors, never judged.
        "injected": sum(getattr(run, "injected", 0) for run in checked),
        "injected_outcomes": dict(sorted(injected_outcomes.items())),
        "rps": round(rps, 1),
        "rps_runs": rps_runs,
        "rps_spread": round(spread, 4),
        "rps_spread_warning": spread > SPREAD_WARNING,
        "latency_ms": percentiles(all_latencies),
        "latency_runs": [percentiles(run.latencies_ms) for run in runs],
        "elapsed_runs_s": [round(run.elapsed_s, 3) for run in runs],
        "workers_seen": _distinct_workers(checked),
        "warmup": {
            "requests": warmup.requests if warmup else 0,
            "leaks": warmup.leaks if warmup else 0,
            "errors": warmup.errors if warmup else 0,
        },
        "evidence": evidence,
        "server": server,
    }


# -- progress --------------------------------------------------------------------------------


@dataclass
class Progress:
    """One self-overwriting status line on stderr, only when stderr is a terminal."""

    stream: t.TextIO = field(default_factory=lambda: sys.stderr)
    enabled: bool | None = None
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _width: int = 0

    def __post_init__(self) -> None:
        if self.enabled is None:
            self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def show(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        line = f"{now - self.started:6.1f}s  {text}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


# -- the matrix ------------------------------------------------------------------------------


def _default_load() -> LoadFn:
    from harness.load import run_load

    return t.cast(LoadFn, run_load)


def _load_spec(
    settings: RunSettings, server: LiveServer, connections: str, *, warmup: bool
) -> t.Any:
    from harness.load import LoadSpec

    return LoadSpec(
        host=server.host,
        port=server.port,
        concurrency=settings.concurrency,
        duration=settings.warmup if warmup else settings.duration,
        requests=None if warmup else settings.requests,
        connections=connections,
        sleep_ms=settings.sleep_ms,
        timeout=settings.timeout,
        mode=server.mode,
        max_evidence=EVIDENCE_CAP,
        fail_phase=settings.fail_phase,
        fail_fraction=settings.fail_fraction,
    )


def _cells(settings: RunSettings, modes: t.Sequence[str]) -> Iterator[tuple[str, str, str]]:
    # Mode by mode, every app and backend back to back: a machine that slows down halfway
    # through a run then skews whole modes, not the core against Flask on the same mode.
    for mode in modes:
        for app in settings.apps:
            for backend in settings.backends:
                yield app, backend, mode


def run_matrix(
    settings: RunSettings,
    run_dir: str | Path,
    *,
    command: t.Sequence[str] = (),
    run_id: str | None = None,
    load: LoadFn | None = None,
    spec: Callable[..., t.Any] | None = None,
    server: ServerFn = live_server,
    progress: Progress | None = None,
) -> dict[str, t.Any]:
    """Run the whole matrix, write ``run_dir/results.json`` as it goes, return the document.

    ``load``, ``spec`` and ``server`` default to the real load driver, :class:`LoadSpec` and
    :func:`harness.servers.live_server`; tests pass fakes.
    """
    run_dir = Path(run_dir)
    modes = settings.resolved_modes()
    if not modes:
        raise UsageError("no server mode can run here: see 'ctxbench list'")
    load_fn = load or _default_load()
    make_spec = spec or _load_spec
    progress = progress or Progress()
    doc = results.new_document(
        run_id or run_dir.name, command, {**settings.as_dict(), "modes": list(modes)}
    )
    started = time.monotonic()
    try:
        for app, backend, mode in _cells(settings, modes):
            log_dir = run_dir / "logs" / f"{app_label(app).replace(':', '_')}-{backend}"
            with server(
                mode,
                app=app,
                backend=backend,
                workers=settings.workers,
                threads=settings.threads,
                worker_connections=settings.worker_connections,
                extra_args=settings.extra_args,
                log_dir=log_dir,
            ) as srv:
                applicable = _applicable(srv, mode, settings.connections)
                for connections in settings.connections:
                    if connections not in applicable:
                        _record_not_applicable(doc, mode, connections)
                        continue
                    entry = _measure_cell(
                        settings, srv, app, backend, connections, load_fn, make_spec, progress,
                        totals=_totals(doc),
                    )  # fmt: skip
                    entry["server"]["log"] = str(srv.log_path.relative_to(run_dir))
                    doc["entries"].append(entry)
                    results.write_results(run_dir, doc)
    except BaseException as e:
        progress.done()
        # Keep what was measured (a complete, valid file); a run that measured nothing leaves
        # no results file at all, only the server logs.
        if doc["entries"]:
            doc["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            doc["elapsed_s"] = round(time.monotonic() - started, 2)
            results.write_results(run_dir, doc)
        raise
    doc["status"] = "complete"
    doc["elapsed_s"] = round(time.monotonic() - started, 2)
    results.write_results(run_dir, doc)
    return doc


def _applicable(srv: t.Any, mode: str, patterns: t.Sequence[str]) -> tuple[str, ...]:
    """The connection patterns of ``patterns`` that can run against ``srv``."""
    traits = getattr(srv, "traits", None) or getattr(MODES.get(mode), "traits", None)
    if traits is None:
        return tuple(patterns)
    return applicable_patterns(traits, t.cast("t.Sequence[ConnectionPattern]", patterns))


def _record_not_applicable(doc: dict[str, t.Any], mode: str, connections: str) -> None:
    """Record a connection pattern that cannot run against ``mode`` (it is not measured)."""
    skipped = doc.setdefault("not_applicable", [])
    if not any(c["mode"] == mode and c["connections"] == connections for c in skipped):
        skipped.append(
            {
                "mode": mode,
                "connections": connections,
                "reason": f"{connections} connections cannot run against {mode}: the server closes"
                " every connection after one response without saying so",
            }
        )


def _totals(doc: dict[str, t.Any]) -> tuple[int, int]:
    entries = doc["entries"]
    return sum(e["requests"] for e in entries), sum(e["leaks"] for e in entries)


def _measure_cell(
    settings: RunSettings,
    srv: LiveServer,
    app: str,
    backend: str,
    connections: str,
    load_fn: LoadFn,
    make_spec: Callable[..., t.Any],
    progress: Progress,
    *,
    totals: tuple[int, int],
) -> dict[str, t.Any]:
    done_requests, done_leaks = totals

    def report(label: str) -> ProgressFn:
        def callback(requests: int, errors: int, leaks: int) -> None:
            progress.show(
                f"{srv.mode} {connections} {label}  requests {done_requests + requests}"
                f"  errors {errors}  leaks {done_leaks + leaks}"
            )

        return callback

    warmup = None
    if settings.warmup > 0:
        spec = make_spec(settings, srv, connections, warmup=True)
        warmup = load_fn(spec, report("warm-up"))
        done_requests += warmup.requests
        done_leaks += warmup.leaks
    runs: list[LoadResultLike] = []
    for i in range(settings.repeats):
        spec = make_spec(settings, srv, connections, warmup=False)
        run = load_fn(spec, report(f"run {i + 1}/{settings.repeats}"))
        runs.append(run)
        done_requests += run.requests
        done_leaks += run.leaks
    progress.show(
        f"{srv.mode} {connections} done  requests {done_requests}  leaks {done_leaks}", force=True
    )
    progress.done()
    return aggregate(
        mode=srv.mode,
        app=app,
        backend=backend,
        connections=connections,
        runs=runs,
        warmup=warmup,
        effective=srv.effective,
    )
