"""What a load run is asked to do (:class:`LoadSpec`) and what it found (:class:`LoadResult`)."""

from __future__ import annotations

import ipaddress
import math
import re
import typing as t
from dataclasses import dataclass, field

from harness.protocol import FAIL_PHASES, MAX_SLEEP_MS, parse_mount
from harness.verdict import Evidence

from .acks import AckCounts, waited_on_delayed_acks
from .cpu import saturated
from .fairness import Waits, starved_users

__all__ = [
    "CONNECTION_PATTERNS",
    "ERROR_KINDS",
    "ConnectionPattern",
    "LoadResult",
    "LoadSpec",
    "connection_patterns",
]

#: How the client connects: ``keepalive``, each virtual user reuses one HTTP/1.1 connection,
#: reconnecting when the server closes it; ``fresh``, a new connection per request, sent with
#: ``Connection: close``.
ConnectionPattern = t.Literal["keepalive", "fresh"]
CONNECTION_PATTERNS: tuple[ConnectionPattern, ...] = ("keepalive", "fresh")


def connection_patterns(choice: str) -> tuple[str, ...]:
    """The patterns a ``--connections`` choice names: one of them, or ``both``."""
    return CONNECTION_PATTERNS if choice == "both" else (choice,)


#: The keys of :attr:`LoadResult.error_kinds`: the connection was ``refused`` or ``reset``, or
#: its answer took past the ``timeout``; ``http``, the answer was not HTTP/1.x the driver can
#: read (a head that is not one, a body over :data:`~harness.load.http.MAX_BODY`, bytes past
#: its end): the server's doing, or a proxy's; ``non-2xx``, an answer with another status, and
#: ``protocol``, a 2xx answer that is not a probe response: whatever answered in the probe's
#: place (an auth hook, a proxy's 502); ``os-error``, anything else the socket said.
ERROR_KINDS = ("refused", "reset", "timeout", "http", "non-2xx", "protocol", "os-error")

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
MAX_DURATION_S = 24 * 3600.0
MAX_CONCURRENCY = 4096
MAX_PROCESSES = 256
#: Responses one driver process checks per second of its own CPU time, at best (keep-alive
#: connections to nginx answering from C; ``make bench``, the echo-probe rows).
DRIVER_TOP_RPS = 95_000
#: Requests per load run: what one driver process checks at its best in the longest run
#: (:data:`MAX_DURATION_S`), so no count takes more than about a day of the driver's work; a
#: larger one is a typo that would run for days.
MAX_REQUESTS = int(MAX_DURATION_S) * DRIVER_TOP_RPS


@dataclass
class LoadSpec:
    """One load run against a probe server on the loopback interface.

    Give ``duration`` (seconds), ``requests`` (a total count), or both (whichever ends first).
    ``mode`` is only a label copied into the evidence (the server mode under test).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = 16
    duration: float | None = None
    requests: int | None = None
    connections: str = "keepalive"
    sleep_ms: float = 0.0
    timeout: float = 10.0
    mode: str = "unknown"
    #: How many :class:`Evidence` items to keep; all leaks are counted regardless.
    max_evidence: int = 50
    #: Make ``fail_fraction`` of the requests raise at this phase (``fail=<phase>`` in the probe
    #: query; one of :data:`harness.protocol.FAIL_PHASES`). Those requests are expected
    #: errors, counted in ``injected``; what they leave behind shows in later requests.
    fail_phase: str | None = None
    #: The fraction of requests that fail, spread evenly over the run (0.1: the 10th, 20th, ...
    #: request sent). Needs ``fail_phase``.
    fail_fraction: float = 0.0
    #: Extra request headers sent with every request, e.g. the probe's shared secret
    #: (``X-Ctxbench-Probe-Secret``) for a server started elsewhere (``run --target``).
    headers: tuple[tuple[str, str], ...] = ()
    #: Driver processes the virtual users are shared out to (see :mod:`harness.load.shards`).
    #: 1 runs the driver in the calling process.
    processes: int = 1
    #: The path prefix the app is served under (``"/api"``): the probe is requested at
    #: :func:`harness.protocol.probe_path` of it. ``""``: the server's root.
    mount: str = ""
    #: Keep every answered request's latency (``LoadResult.latencies_ms``). A soak keeps none:
    #: it reports none, and they grow without end (36 bytes each: some 170 MB an hour at
    #: 1,300 requests/s, measured).
    keep_latencies: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        loopback_host(self.host)
        if not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise ValueError(f"port must be an integer in 1..65535, got {self.port!r}.")
        if not (isinstance(self.concurrency, int) and 0 < self.concurrency <= MAX_CONCURRENCY):
            raise ValueError(
                f"concurrency must be an integer in 1..{MAX_CONCURRENCY}, got {self.concurrency!r}."
            )
        if self.duration is None and self.requests is None:
            raise ValueError(
                "A load run needs a bound: give duration (seconds), requests (a count), or both."
            )
        if self.duration is not None and not (
            _finite(self.duration) and 0 < self.duration <= MAX_DURATION_S
        ):
            raise ValueError(
                f"duration must be a number of seconds in (0, {MAX_DURATION_S:g}],"
                f" got {self.duration!r}."
            )
        if self.requests is not None and not (
            isinstance(self.requests, int) and 0 < self.requests <= MAX_REQUESTS
        ):
            raise ValueError(
                f"requests must be an integer in 1..{MAX_REQUESTS}, got {self.requests!r}."
            )
        if self.connections not in CONNECTION_PATTERNS:
            raise ValueError(
                f"connections must be one of {', '.join(CONNECTION_PATTERNS)},"
                f" got {self.connections!r}."
            )
        if not (_finite(self.sleep_ms) and 0 <= self.sleep_ms <= MAX_SLEEP_MS):
            raise ValueError(f"sleep_ms must be in [0, {MAX_SLEEP_MS:g}], got {self.sleep_ms!r}.")
        if not (_finite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}.")
        if not (isinstance(self.max_evidence, int) and self.max_evidence >= 0):
            raise ValueError(f"max_evidence must be >= 0, got {self.max_evidence!r}.")
        if self.fail_phase is not None and self.fail_phase not in FAIL_PHASES:
            raise ValueError(
                f"fail_phase must be one of {', '.join(FAIL_PHASES)}, got {self.fail_phase!r}."
            )
        if not (_finite(self.fail_fraction) and 0.0 <= self.fail_fraction <= 1.0):
            raise ValueError(f"fail_fraction must be in [0, 1], got {self.fail_fraction!r}.")
        if self.fail_fraction > 0 and self.fail_phase is None:
            raise ValueError(
                f"fail_fraction {self.fail_fraction!r} needs a fail_phase: the phase at which"
                f" those requests raise ({', '.join(FAIL_PHASES)})."
            )
        if self.mount:
            try:
                valid = parse_mount(self.mount) == self.mount
            except ValueError:
                valid = False
            if not valid:
                raise ValueError(f"mount must be a path prefix like '/api', got {self.mount!r}.")
        for name, value in self.headers:
            if not _HEADER_NAME.match(name) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"bad request header {name!r}: {value!r}.")
        if not (isinstance(self.processes, int) and 1 <= self.processes <= MAX_PROCESSES):
            raise ValueError(
                f"processes must be an integer in 1..{MAX_PROCESSES}, got {self.processes!r}."
            )
        if self.processes > self.concurrency:
            raise ValueError(
                f"processes ({self.processes}) must not exceed concurrency"
                f" ({self.concurrency}): each driver process runs at least one virtual user."
            )
        if self.requests is not None and self.processes > self.requests:
            raise ValueError(
                f"processes ({self.processes}) must not exceed requests ({self.requests}):"
                " each driver process sends at least one request."
            )


@dataclass
class LoadResult:
    """What a load run saw. Every response was checked; see :func:`harness.load.run_load`."""

    #: Requests that finished, answered or failed (with ``requests=N``, exactly N).
    requests: int = 0
    #: Requests that got no valid probe response: sum of ``error_kinds``.
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    #: Leaking observations (one per :class:`Evidence`), all counted.
    leaks: int = 0
    #: The first ``max_evidence`` of them.
    evidence: list[Evidence] = field(default_factory=list)
    #: Of ``leaks``, those of the framework's own state (:data:`~harness.protocol.FRAMEWORK_NAMES`),
    #: all counted: the rest are of the app's own ``observe()`` state, which is the app's to fix.
    framework_leaks: int = 0
    #: Responses that carried at least one leak.
    leaky_requests: int = 0
    #: Per answered request, from the start of the request (connect included when one was made).
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: Answered requests (leaky included, errors excluded) per second of ``elapsed_s``.
    rps: float = 0.0
    #: Distinct execution units ``(pid, thread, greenlet)`` that answered.
    units: list[tuple[int, int, int | None]] = field(default_factory=list)
    #: The observation names the first answered response carried (``request``, ``g``, the app's
    #: own ``observe()`` names, ...), sorted.
    observed: tuple[str, ...] = ()
    #: Connections re-opened in the keepalive pattern because the server closed one.
    reconnects: int = 0
    #: Count of every HTTP status received (injected failures included).
    statuses: dict[int, int] = field(default_factory=dict)
    #: Requests sent with ``fail=<phase>`` (expected errors, not judged, not in ``errors``).
    injected: int = 0
    #: How each injected failure ended: an HTTP status (``"500"``, ``"200"`` when the framework
    #: logs a teardown error and answers anyway) or an error kind (``"reset"``, ``"timeout"``).
    injected_outcomes: dict[str, int] = field(default_factory=dict)
    #: How many requests had finished (answered, failed or injected) when the first leaky
    #: response arrived, that one included; ``None`` without a leak. "Caught after N requests".
    first_leak_at: int | None = None
    #: Per driver process: its CPU time (user + system) over the wall time of its run, in cores.
    driver_cpu: list[float] = field(default_factory=list)
    #: Per driver process: the time its loop was ready to run but waited for a CPU that other
    #: programs held, over the wall time of its run (empty where the OS does not say).
    driver_cpu_wait: list[float] = field(default_factory=list)
    #: Per driver process: its users' longest waits and its timeline (see
    #: :mod:`harness.load.fairness`); empty when not measured.
    waits: list[Waits] = field(default_factory=list)
    #: Responses first on their connection and on kept-alive ones, and how many of those
    #: waited for the client's delayed ACK (see :mod:`harness.load.acks`); every driver process
    #: added up.
    acks: AckCounts = field(default_factory=AckCounts)

    @property
    def driver_bound(self) -> bool:
        """Whether a driver process was saturated, so the figures may measure the driver.

        See :func:`harness.load.cpu.saturated` for the rule.
        """
        return saturated(self.driver_cpu, self.driver_cpu_wait)

    @property
    def starved(self) -> int | None:
        """How many virtual users the server starved (see :mod:`harness.load.fairness`);
        ``None`` when the waits were not measured."""
        return starved_users(self.waits) if self.waits else None

    @property
    def delayed_acks(self) -> bool:
        """Whether most kept-alive responses waited for the client's delayed ACK while the first
        on each connection was fast (see :mod:`harness.load.acks`)."""
        return waited_on_delayed_acks(self.acks)

    @property
    def longest_waits_ms(self) -> list[float]:
        """Per virtual user, the longest it waited for one response (answered or failed), in
        ms; driver processes one after the other."""
        return [wait / 1e6 for part in self.waits for _, wait in part.longest]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def loopback_host(host: str) -> str:
    """Return the loopback address for ``host``; raise ``ValueError`` for anything else.

    The driver generates load, so it only ever talks to this machine.
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"The load driver only targets the loopback interface, got host {host!r}.\n\n"
            "Use 127.0.0.1 (or ::1, or localhost) and run the server on this machine."
        )
    return str(address)
