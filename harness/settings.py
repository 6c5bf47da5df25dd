"""What a run is asked to do: :class:`RunSettings` and :class:`ChaosSettings`, as recorded.

Every value the user can give ``ctxbench run`` lands in one :class:`RunSettings`, and the
results document records it as it ran (see :mod:`harness.results`). This module holds the
records and the checks that need nothing but a value and its limits (:func:`check_unique`,
:func:`check_number`); it imports neither the server registry (:mod:`harness.servers`) nor the
expectations model, so that the results model, and every reader of results (the report,
``compare``), loads no server to read a run. Whether the settings can run here (the modes known
and installed, the app, the backend, the server options) is checked where they are built, before
anything starts: :func:`harness.preflight.checked`.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t
from dataclasses import dataclass

from harness.apps import CORE_APP
from harness.errors import UsageError, check_count
from harness.load.shards import auto_processes
from harness.load.spec import CONNECTION_PATTERNS
from harness.protocol import DEFAULT_BACKEND

__all__ = [
    "DEFAULT_DURATION_S",
    "MAX_REPEATS",
    "ChaosSettings",
    "RunSettings",
    "check_number",
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
    checks nothing, :func:`harness.preflight.checked` checks everything (the CLI and the runner
    call it before a server starts).
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

    def replace(self, **changes: t.Any) -> RunSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


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
            check_number(_option(name), getattr(self, name), high=3600)
        check_number("--fail-fraction", self.fail_fraction, high=1)


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


def check_number(
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
