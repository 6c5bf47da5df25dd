"""What a run is asked to do: :class:`RunSettings`, checked once, before anything starts.

Every value the user can give ``ctxbench run`` lands in one :class:`RunSettings`; building it
checks each value against the same limits the load driver and the servers enforce (they import
them from the modules that own them: :mod:`harness.load.spec` for the load,
:mod:`harness.servers.base` for the server options), so a user mistake is one
:class:`~harness.errors.UsageError` before a server starts, never a traceback halfway through a
run. The results document records the settings as they ran (see :mod:`harness.results`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import shlex
import typing as t
from dataclasses import dataclass

from harness.apps import CORE_APP, FLASK_APP, app_label
from harness.errors import UsageError, check_count
from harness.expectations import applicable_patterns
from harness.load.shards import auto_processes
from harness.load.spec import (
    CONNECTION_PATTERNS,
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_PROCESSES,
    MAX_REQUESTS,
)
from harness.protocol import DEFAULT_BACKEND, FAIL_PHASES, MAX_SLEEP_MS
from harness.servers import MODES, available_modes, get_mode, proxied_modes
from harness.servers.base import CLOSES_EVERY_CONNECTION, ServerConfig, pip_command
from harness.target import parse_target

__all__ = [
    "DEFAULT_DURATION_S",
    "MAX_REPEATS",
    "ChaosSettings",
    "RunSettings",
    "check_backend",
    "check_unique",
]

#: Measurements per cell; more than this is a typo, not a benchmark.
MAX_REPEATS = 1000


#: Seconds per measurement unless told otherwise: short enough that ``ctxbench run`` (every
#: mode that can run here, behind nginx too, both connection patterns, 3 repeats and a warm-up
#: each) ends within 3 minutes on 2 cores. Longer runs (``--duration``) narrow the spread.
DEFAULT_DURATION_S = 1.0


@dataclass(frozen=True)
class RunSettings:
    """Everything a run varies; recorded as the results' ``settings``.

    ``modes`` empty means every mode that can run here; ``None`` for ``workers``, ``threads``
    and ``worker_connections`` means each mode's own default. A record of what ran: building one
    checks nothing, :meth:`checked` checks everything (the CLI and the runner call it before a
    server starts).
    """

    apps: tuple[str, ...] = (CORE_APP,)
    backends: tuple[str, ...] = (DEFAULT_BACKEND,)
    modes: tuple[str, ...] = ()
    connections: tuple[str, ...] = CONNECTION_PATTERNS
    duration: float | None = DEFAULT_DURATION_S
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
    #: The path prefix the app is served under (``--mount``; see ``ServerConfig.mount``).
    mount: str | None = None
    #: Make ``fail_fraction`` of the requests raise at this probe phase (see ``LoadSpec``).
    fail_phase: str | None = None
    fail_fraction: float = 0.0
    #: Root URLs of servers ctxbench did not start (``--target``); no server is started, and
    #: ``apps``, ``backends`` and ``modes`` do not apply.
    targets: tuple[str, ...] = ()
    #: A concurrency sweep (``--concurrency 1,8,32``): every mode and connection pattern is
    #: measured at each level, a cell per level. Empty: ``concurrency`` alone.
    concurrency_levels: tuple[int, ...] = ()
    #: Driver processes the virtual users are shared out to (``--driver-processes``); ``None``
    #: is ``auto`` (:func:`harness.load.shards.auto_processes`, at most one per virtual user).
    driver_processes: int | None = 1

    @property
    def levels(self) -> tuple[int, ...]:
        """The concurrency levels to measure, in order."""
        return self.concurrency_levels or (self.concurrency,)

    def processes_at(self, concurrency: int) -> int:
        """The driver processes of a cell run with ``concurrency`` virtual users: the ones asked
        for, but never more than the virtual users (nor the requests) they share (a cell
        records how many it really ran)."""
        wanted = self.driver_processes
        if wanted is None:
            wanted = auto_processes(concurrency)
        return max(1, min(wanted, concurrency, self.requests or wanted))

    def checked(self) -> RunSettings:
        """Check every value; return these settings with ``modes`` resolved.

        Raises :class:`UsageError` naming the option and the bad value, with the limits the
        load driver and the servers enforce. The modes are the ones asked for (each must be
        known and able to run here) or every mode that can run here.
        """
        check_unique("--app", self.apps, allow_empty=False)
        check_unique("--backend", self.backends, allow_empty=False)
        check_unique("--modes", self.modes, allow_empty=True)
        check_unique("--connections", self.connections, allow_empty=False)
        for pattern in self.connections:
            if pattern not in CONNECTION_PATTERNS:
                raise UsageError(
                    f"unknown connection pattern {pattern!r}: choose from keepalive, fresh, both"
                )
        if self.duration is None and self.requests is None:
            raise UsageError("give --duration (seconds) or --requests (a count) per measurement")
        _number("--duration", self.duration, high=MAX_DURATION_S, optional=True)
        check_count("--requests", self.requests, high=MAX_REQUESTS, optional=True)
        check_count("--concurrency", self.concurrency, high=MAX_CONCURRENCY)
        for level in self.concurrency_levels:
            check_count("--concurrency", level, high=MAX_CONCURRENCY)
        if len(set(self.concurrency_levels)) != len(self.concurrency_levels):
            raise UsageError(
                f"--concurrency lists a level twice ({self.concurrency_levels!r}): give each once"
            )
        check_count("--driver-processes", self.driver_processes, high=MAX_PROCESSES, optional=True)
        check_count("--repeats", self.repeats, high=MAX_REPEATS)
        _number("--sleep-ms", self.sleep_ms, high=MAX_SLEEP_MS, zero_ok=True)
        _number("--warmup", self.warmup, high=MAX_DURATION_S, zero_ok=True)
        _number("request timeout", self.timeout, high=MAX_DURATION_S)
        if self.sleep_ms / 1000 >= self.timeout:
            raise UsageError(
                f"bad --sleep-ms {self.sleep_ms:g}: each probe request would sleep past the"
                f" driver's {self.timeout:g} s request timeout; use less than"
                f" {self.timeout * 1000:g}"
            )
        if self.fail_phase is not None and self.fail_phase not in FAIL_PHASES:
            raise UsageError(
                f"unknown --fail-phase {self.fail_phase!r}: choose from {', '.join(FAIL_PHASES)}"
            )
        _number("--fail-fraction", self.fail_fraction, high=1, zero_ok=True)
        if self.fail_fraction and self.fail_phase is None:
            raise UsageError("--fail-fraction needs --fail-phase (where those requests fail)")
        if self.targets:
            # As normalised: localhost:8080/api/ and 127.0.0.1:8080/api are one target.
            urls = tuple(parse_target(u).url for u in self.targets)
            check_unique("--target", urls, allow_empty=False)
            if self.modes:
                raise UsageError(
                    "--target checks servers ctxbench did not start: drop --modes (and --proxy)"
                )
            if self.mount is not None:
                raise UsageError(
                    "--target checks servers ctxbench did not start: put the path prefix in the"
                    " target's URL (http://127.0.0.1:8080/api), not in --mount"
                )
            return self
        if self.extra_args and not self.modes:
            raise UsageError(
                f"--server-arg {shlex.join(self.extra_args)} goes to the server's own command"
                " line, and every mode runs when none is named: servers of several kinds, which"
                " take different arguments; name the modes it is for (--modes gunicorn-gevent"
                " --server-arg=--preload)"
            )
        for app in self.apps:
            for backend in self.backends:
                self.server_config(app, backend)  # checks the app and the server options
                check_backend(backend, app)
            # Found before a server starts: the servers would fail to import it only after the
            # core's cells had run.
            if app == FLASK_APP and importlib.util.find_spec("flask") is None:
                raise UsageError(
                    "the Flask probe app (--compare-flask) needs Flask, which is not installed"
                    f" here: {pip_command()} install flask"
                )
        mount = self.server_config(self.apps[0], self.backends[0]).mount  # as normalised
        rv = self.replace(modes=self._resolved_modes(), mount=mount)
        for name in rv.modes:  # server arguments a mode cannot run with, before any starts
            get_mode(name).check_args(rv.server_config(rv.apps[0], rv.backends[0]))
        rv._check_something_runs()
        return rv

    def _check_something_runs(self) -> None:
        """A run where no mode can serve any connection pattern asked for would measure nothing
        and exit 0: refuse it (one pattern a mode cannot serve is skipped as not measured)."""
        cfg = self.server_config(self.apps[0], self.backends[0])
        patterns = t.cast("tuple[t.Any, ...]", self.connections)
        if any(applicable_patterns(get_mode(m).traits_for(cfg), patterns) for m in self.modes):
            return
        raise UsageError(
            f"nothing to measure: {', '.join(self.modes)} cannot serve"
            f" {' or '.join(self.connections)} connections ({CLOSES_EVERY_CONNECTION}):"
            " use --connections fresh"
        )

    def server_config(self, app: str, backend: str) -> ServerConfig:
        """The server options of the cell that runs ``app`` on ``backend``."""
        return ServerConfig(
            app=app,
            backend=backend,
            workers=self.workers,
            threads=self.threads,
            worker_connections=self.worker_connections,
            extra_args=self.extra_args,
            mount=self.mount,
        )

    def _resolved_modes(self) -> tuple[str, ...]:
        if self.modes:
            for name in self.modes:
                get_mode(name).check_available()
            return self.modes
        # Every available mode, then every available proxy in front of the representative modes.
        rv = available_modes([*MODES, *proxied_modes()])
        if not rv:
            raise UsageError("no server mode can run here: see 'ctxbench list'")
        return rv

    def replace(self, **changes: t.Any) -> RunSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def check_backend(backend: str, app: str) -> None:
    """Check that ``backend`` names a context storage or a negative control that fits ``app``."""
    # The backends and controls load the core framework: imported on use, so that the results
    # model, which records these settings, stays light to import.
    from harness.backends import BACKENDS
    from harness.controls import CONTROLS

    if backend not in BACKENDS and backend not in CONTROLS:
        raise UsageError(
            f"unknown backend {backend!r}: choose from {', '.join([*BACKENDS, *CONTROLS])}"
        )
    if backend != DEFAULT_BACKEND and app_label(app) == "flask":
        raise UsageError(
            f"backend {backend!r} swaps the core framework's storage and cannot apply to the"
            f" Flask app {app!r}: use --backend {DEFAULT_BACKEND} with it"
        )


@dataclass(frozen=True)
class ChaosSettings:
    """The knobs of the faults (``ctxbench chaos``), recorded with their results.

    Every one is bounded; the defaults keep one fault cell to a few seconds on 2 cores. See
    :mod:`harness.faults` for what each fault does with them.
    """

    #: kill-worker, reload: seconds between two injections, and how many.
    interval_s: float = 0.5
    injections: int = 3
    #: recycle: each worker is recycled after ``recycle_requests`` (+ up to ``recycle_jitter``).
    recycle_requests: int = 60
    recycle_jitter: int = 30
    #: timeout: the server's worker timeout (s); that many requests sleep past it.
    worker_timeout_s: int = 2
    timeout_requests: int = 2
    #: abort and slow-client: hostile clients in flight at once, and how many requests in all.
    hostile_users: int = 2
    abort_requests: int = 120
    slow_requests: int = 6
    #: slow-client: how long each slow client takes to send its request or read its response.
    slow_seconds: float = 0.6
    #: hook-error: the fraction of each round's requests that raise (one round per phase).
    fail_fraction: float = 0.1
    #: Requests per load round, and the bounds of the whole faulted load.
    round_requests: int = 400
    min_rounds: int = 2
    max_seconds: float = 30.0
    #: Requests of the clean load after the fault, judged on their own.
    after_requests: int = 300

    def __post_init__(self) -> None:
        for name in (
            "injections", "recycle_requests", "timeout_requests", "hostile_users",
            "abort_requests", "slow_requests", "round_requests", "min_rounds", "after_requests",
            "worker_timeout_s",
        ):  # fmt: skip
            check_count(_option(name), getattr(self, name), high=1_000_000)
        if isinstance(self.recycle_jitter, bool) or not (
            isinstance(self.recycle_jitter, int) and self.recycle_jitter >= 0
        ):
            raise UsageError(f"bad --recycle-jitter {self.recycle_jitter!r}: use a count >= 0")
        for name in ("interval_s", "slow_seconds", "max_seconds"):
            _number(_option(name), getattr(self, name), high=3600)
        _number("--fail-fraction", self.fail_fraction, high=1)


def _option(field_name: str) -> str:
    """The command-line option of a settings field: ``interval_s`` is ``--interval``."""
    return "--" + field_name.removesuffix("_s").replace("_", "-")


def check_unique(option: str, values: tuple[str, ...], *, allow_empty: bool) -> None:
    """Check that ``option`` lists each of its ``values`` once, none empty (and at least one
    unless ``allow_empty``); raise :class:`UsageError` naming the option if not."""
    if not values and not allow_empty:
        raise UsageError(f"{option} needs at least one value")
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{option} has an empty value: give a comma-separated list")
        if value in seen:
            raise UsageError(f"{option} lists {value!r} twice: give each value once")
        seen.add(value)


def _number(
    option: str, value: object, *, high: float, optional: bool = False, zero_ok: bool = False
) -> None:
    """Check that ``option``'s ``value`` is a number above 0 (or 0 itself, with ``zero_ok``) up
    to ``high``, or ``None`` when ``optional``; raise :class:`UsageError` naming both if not."""
    if value is None and optional:
        return
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if zero_ok else value > 0)
        and value <= high
    )
    if not ok:
        lower = "[0" if zero_ok else "(0"
        raise UsageError(f"bad {option} {value!r}: use a number in {lower}, {high:g}]")
