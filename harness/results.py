"""The results model: one typed record of a run, its JSON form, its statistics, its writer.

A run writes ``results/<run-id>/results.json``. Every part of ctxbench that reads or writes it
goes through the frozen dataclasses here, in the manner of pyperf's ``Benchmark`` and
``BenchmarkSuite``:

- :class:`Run`: the run id, the command, the :class:`Machine`, the package versions, the
  :class:`~harness.settings.RunSettings` and one :class:`Cell` per (app, backend, mode,
  connections, concurrency level) measured; ``ctxbench chaos`` adds its :class:`FaultCell`
  records, ``ctxbench soak`` its :class:`Soak` ones;
- :class:`Cell`: its counts (every checked response, warm-up included), its measured
  :class:`Measurement` repeats, the pooled :class:`Latency`, the :class:`~harness.verdict.Evidence`
  kept, the execution units seen, and the :class:`ServerInfo` (the effective configuration that
  really ran, the server log, and what its server process did with the cell's connections)
  and, on a deliberately broken backend, the :class:`LeakExpectation` it ran under;
- the statistics, computed here and nowhere else: :func:`median`, :func:`spread`
  (``(max - min) / median``) against :data:`SPREAD_WARNING`, and :meth:`Latency.of` (percentiles).

``Run.to_json()`` and ``Run.from_json()`` convert to and from the JSON document;
``from_json(to_json(x)) == x``. The JSON form of every record is its fields, by name, in order,
nested records as objects and tuples as lists (:mod:`harness.records`), so adding an optional
field to a record is the whole change to the schema (give it a default, so older documents
still read). Documents of an
older schema are read through :data:`READERS`, which upgrades them first.

:func:`write_atomic` is the one writer of every file ctxbench produces: a complete old file or
a complete new one, never half of either, with the permissions of the user's umask.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import secrets
import statistics
import typing as t
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness import records
from harness.apps import app_label
from harness.checkpoints import checkpoint
from harness.errors import ResultsError
from harness.exercised import Exercised
from harness.load.acks import AckCounts, waited_on_delayed_acks
from harness.load.cpu import saturated
from harness.owner import Owner, file_tag, tag_gone
from harness.packages import package_version
from harness.settings import ChaosSettings, RunSettings
from harness.verdict import Evidence

__all__ = [
    "EVIDENCE_CAP",
    "LOGS",
    "PACKAGES",
    "PERCENTILES",
    "READERS",
    "RESULTS_FILE",
    "SCHEMA",
    "SPREAD_FORMULA",
    "SPREAD_WARNING",
    "STATUSES",
    "AfterFault",
    "Cell",
    "CellKey",
    "CorpusCheck",
    "FaultCell",
    "FaultEvent",
    "Latency",
    "LeakExpectation",
    "LoadSample",
    "Machine",
    "Measurement",
    "NotMeasured",
    "ProcessSample",
    "ProcessTrend",
    "Run",
    "ServerConnections",
    "ServerInfo",
    "Soak",
    "Warmup",
    "keep_evidence",
    "load",
    "median",
    "package_versions",
    "spread",
    "write",
    "write_atomic",
]

SCHEMA = "ctxbench.results/2"
RESULTS_FILE = "results.json"
#: The folder of the servers' logs in a run folder.
LOGS = "logs"
#: Distributions whose versions every run records (``None`` if not installed).
PACKAGES = (
    "ctxbench", "werkzeug", "flask", "gunicorn", "gevent", "greenlet", "locust", "psutil",
)  # fmt: skip
#: The latency percentiles every :class:`Latency` holds.
PERCENTILES = ("p50", "p90", "p99", "max")
#: Relative spread of repeated measurements above which a median is too noisy to compare.
SPREAD_WARNING = 0.10
SPREAD_FORMULA = "(max - min) / median"
#: Evidence items kept per cell, fault cell or soak; the counts stay exact.
EVIDENCE_CAP = 20
#: What :attr:`Run.status` says, and why a run has it. ``abandoned`` is never written: a reader
#: (:func:`load`) sees it in a ``running`` document whose writer is provably gone.
STATUSES = {
    "running": "it is still being written",
    "complete": "every cell was measured",
    "interrupted": "it was stopped (Ctrl-C or SIGTERM) and kept what it measured until then",
    "failed": "an error stopped it and it kept what it measured until then",
    "abandoned": (
        "the ctxbench process writing it is gone without finishing it (killed outright:"
        " kill -9, the out-of-memory killer, a machine restarted)"
    ),
}


_E = t.TypeVar("_E")


def keep_evidence(kept: list[_E], more: Sequence[_E]) -> None:
    """Append the first of ``more`` to ``kept`` until it holds :data:`EVIDENCE_CAP` items."""
    kept.extend(more[: max(0, EVIDENCE_CAP - len(kept))])


# -- statistics (the one place they are computed) ------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of ``values``; 0.0 for none."""
    return float(statistics.median(values)) if values else 0.0


def spread(values: Sequence[float]) -> float:
    """``(max - min) / median`` of repeated measurements; 0.0 with fewer than two or median 0.

    The full range, not the standard deviation: with three to five repeats the range is what a
    reader can check against the listed values. Above :data:`SPREAD_WARNING` the median is too
    noisy to compare.
    """
    if len(values) < 2:
        return 0.0
    mid = median(values)
    return (max(values) - min(values)) / mid if mid > 0 else 0.0


def _median_known(values: Iterable[float | None]) -> float | None:
    """The median of the known ``values`` (not ``None``); ``None`` when none is known."""
    known = [v for v in values if v is not None]
    return median(known) if known else None


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds; ``None`` when no request was answered."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        """The percentiles of ``values`` (linear interpolation between closest ranks)."""
        if not values:
            return cls()
        ordered = sorted(values)

        def at(q: float) -> float:
            pos = (len(ordered) - 1) * q
            lo, hi = math.floor(pos), math.ceil(pos)
            return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)

        return cls(p50=at(0.50), p90=at(0.90), p99=at(0.99), max=round(ordered[-1], 3))

    def get(self, name: str) -> float | None:
        """The percentile called ``name`` (one of :data:`PERCENTILES`)."""
        if name not in PERCENTILES:
            raise KeyError(name)
        rv: float | None = getattr(self, name)
        return rv


#: What identifies a cell across runs: (app label, backend, mode, connections, concurrency,
#: mount).
CellKey = tuple[str, str, str, str, int | None, str]


# -- the records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One measured load run of a cell (one repeat)."""

    #: Answered requests per second.
    rps: float
    elapsed_s: float | None = None
    #: Latency of this run alone; ``None`` when the document did not record it.
    latency_ms: Latency | None = None
    #: Per driver process: its CPU share over the run and its share waiting for a CPU (see
    #: :mod:`harness.load.cpu`); empty when the document did not record them.
    driver_cpu: tuple[float, ...] = ()
    driver_cpu_wait: tuple[float, ...] = ()
    #: The server's processes (every thread of its process groups): CPU share over the run,
    #: in cores, and share waiting for a CPU; ``None`` when not known (a ``--target`` server).
    server_cpu: float | None = None
    server_cpu_wait: float | None = None
    #: The cores other programs on the machine used during the run (its CPU time, steal
    #: included, less the server's and the driver's, :func:`harness.load.cpu.machine_cpu`);
    #: ``None`` when not known. Well above 0, the machine was shared during the run.
    others_cpu: float | None = None
    #: Virtual users the server starved in this run: one of their requests waited more than half
    #: the measured window while later requests of other users were answered (the rule is
    #: :mod:`harness.load.fairness`'s); ``None`` when the document did not record it.
    starved: int | None = None
    #: Responses first on their connection and on kept-alive ones, and how many of those
    #: stalled on the client's delayed ACK (:mod:`harness.load.acks`); ``None`` when the
    #: document did not record them.
    acks: AckCounts | None = None

    @property
    def driver_load(self) -> float | None:
        """The busiest driver process's demand: on a CPU plus waiting for one, over the run."""
        if not self.driver_cpu:
            return None
        waits = self.driver_cpu_wait if len(self.driver_cpu_wait) == len(self.driver_cpu) else ()
        return max(c + (waits[i] if waits else 0.0) for i, c in enumerate(self.driver_cpu))

    @property
    def driver_bound(self) -> bool:
        """A driver process was saturated: this run may measure the driver, not the server."""
        return saturated(self.driver_cpu, self.driver_cpu_wait)


@dataclass(frozen=True)
class Warmup:
    """What the warm-up before a cell's repeats checked (included in the cell's counts)."""

    requests: int = 0
    leaks: int = 0
    errors: int = 0


@dataclass(frozen=True)
class ServerConnections:
    """What a cell's server process does with the cell's connections, as the runner knew it from
    the server registry when the cell ran (:func:`harness.runner.server_connections_for`).

    The likely cause of the users a server starved follows from these facts
    (:func:`harness.report.summary.starved_cause`): recorded in the run, the report and
    ``compare`` read them there, whichever ctxbench renders the run and whatever became of the
    mode since.
    """

    #: The connection pattern the server process sees, ``keepalive`` or ``fresh``: the client's,
    #: or behind a proxy the proxy's (:func:`harness.expectations.server_connections`);
    #: ``fresh`` where the server closes every connection after its response.
    pattern: str
    #: Whether a kept-alive connection holds the execution unit that accepted it until the other
    #: end closes it (uWSGI's ``--http11-socket``;
    #: :attr:`harness.servers.base.Lifecycle.kept_alive_holds_unit`).
    kept_alive_holds_unit: bool
    #: The reverse proxy in front of the server (``nginx-keepalive``), else ``None``.
    proxy: str | None = None
    #: The most connections the server serves at once, holding each kept-alive one until the
    #: other end closes it (gunicorn's gevent worker and eventlet: ``--worker-connections``;
    #: waitress: its connection limit; :attr:`harness.servers.base.ModeTraits.connection_limit`),
    #: all its processes together; ``None`` where nothing so bounds them, or not recorded.
    connection_limit: int | None = None


@dataclass(frozen=True)
class ServerInfo:
    """The server of a cell: the effective configuration that really ran, and its log.

    ``effective`` is what the mode read back from its server processes (worker class, pids,
    threads, versions; see :meth:`harness.servers.base.ServerMode.effective`); its keys vary by
    mode. ``log`` is the server log's path relative to the run folder.
    """

    effective: Mapping[str, t.Any] = field(default_factory=dict)
    log: str | None = None
    #: What the server process does with the cell's connections; ``None`` when not known (a
    #: ``--target``'s server) or not recorded (a fault cell, a soak, a document written before
    #: it was recorded).
    connections: ServerConnections | None = None

    @property
    def summary(self) -> str:
        """``gthread w2 t8``: worker class, server processes and threads, for a table cell."""
        eff = self.effective
        if "target" in eff:  # a server ctxbench did not start: only its Server header is known
            return str(eff.get("server") or "target")
        threads = eff.get("threads") or 1
        rv = f"{eff.get('worker_class', '?')} w{eff.get('workers', '?')}"
        return rv + (f" t{threads}" if isinstance(threads, int) and threads > 1 else "")

    @property
    def ignored_options(self) -> tuple[str, ...]:
        """The options given that the server ran without, having no use for them
        (``--workers`` under waitress's one process, ``--threads`` under gunicorn's gevent
        worker), as the mode recorded them; ``()`` where it recorded none."""
        rv = self.effective.get("ignored_options")
        return tuple(o for o in rv if isinstance(o, str)) if isinstance(rv, list) else ()

    @property
    def mount(self) -> str:
        """The path prefix the app was checked under (``--mount``): ``"/api"``, or ``"/"`` for
        the root (no ``--mount`` given, or a document older than the option); for a server
        ctxbench did not start, the path of its URL (``run --target``)."""
        eff = self.effective
        rv = eff.get("mount")
        if rv is None and isinstance(eff.get("target"), str):
            rv = urlsplit(eff["target"]).path
        return rv if isinstance(rv, str) and rv else "/"


@dataclass(frozen=True)
class LeakExpectation:
    """Whether a cell's deliberately broken backend (a negative control) can leak there, as the
    expectations model said when the cell ran (:func:`harness.runner.expectation_for`).

    Derived from the backend's traits and the traits its server ran with (behind a proxy, the
    proxy's connections), so the report judges the control from the run alone: a silent cell
    that cannot leak is as expected, one that must leak is a leak the harness missed, one that
    leaked where it cannot is a leak the harness made up.
    """

    #: Whether the backend can leak under this server and connection pattern.
    can_leak: bool
    #: Why it can or cannot, in the model's words (a sentence without its full stop).
    reason: str
    #: Why a possible leak shows only by chance (``None``: every run of the cell can show it).
    chance: str | None = None


@dataclass(frozen=True)
class CorpusCheck:
    """What a corpus cell (``ctxbench corpus``) expected, found and concluded.

    ``expected`` is whether the entry's buggy app can leak in this cell, derived from its traits
    (never true for a fixed twin); ``chance`` says the leak shows only by chance; ``matches``
    whether the cell came out as expected. ``verdict``: the buggy app ``caught`` where it can
    leak (a chance entry may be ``not caught`` without failing), ``clean`` where it cannot;
    ``missed`` or a ``false leak`` is a harness failure; a fixed twin is ``clean`` or ``leaked``.
    """

    entry: str
    variant: str
    expected: bool
    reason: str
    verdict: str
    matches: bool
    chance: bool = False
    #: Requests finished when the first leaky response arrived (that one included).
    first_leak_at: int | None = None


@dataclass(frozen=True)
class Cell:
    """One (app, backend, mode, connections, and number of users in a sweep) measurement of a
    run.

    ``requests``, ``leaks``, ``errors`` and ``error_kinds`` count every checked response, the
    warm-up's included (a leak seen while warming up is still a leak; :attr:`warmup` says how
    much came from it). ``leaks`` counts leaking observations: one response can hold several,
    so ``leaky_requests`` (the responses with at least one) is the number to set against
    ``requests``. Throughput and latency come from the measured ``runs`` only.
    """

    app: str
    backend: str
    mode: str
    connections: str
    requests: int
    leaks: int
    errors: int
    runs: tuple[Measurement, ...]
    #: Virtual users of the load driver (one level of a ``--concurrency`` sweep); readers fill
    #: it from the settings for documents that did not record it.
    concurrency: int | None = None
    #: Driver processes the virtual users were shared out to (``--driver-processes``).
    driver_processes: int = 1
    #: Latency over every measured run's requests pooled.
    latency_ms: Latency = field(default_factory=Latency)
    error_kinds: Mapping[str, int] = field(default_factory=dict)
    #: The HTTP statuses of the ``non-2xx`` errors (``{"401": 12}``): what the app answered
    #: in the probe's place.
    error_statuses: Mapping[str, int] = field(default_factory=dict)
    #: Requests made to fail on purpose (``--fail-phase``): expected errors, never judged and
    #: not in ``errors``; how each ended (an HTTP status or an error kind).
    injected: int = 0
    injected_outcomes: Mapping[str, int] = field(default_factory=dict)
    #: ``None`` when the document did not record it.
    leaky_requests: int | None = None
    #: Of ``leaks``, those of the framework's own state, every one counted (``evidence`` keeps
    #: the first few); the rest are of the app's own ``observe()`` state. ``None`` when the
    #: document did not record it.
    framework_leaks: int | None = None
    warmup: Warmup = field(default_factory=Warmup)
    #: Distinct execution units (pid, thread, greenlet) that answered.
    units_seen: int = 0
    #: The first few pieces of evidence (the counts above are exact).
    evidence: tuple[Evidence, ...] = ()
    #: Every observation name the probe checked in this cell (``request``, ``g``, the app's
    #: own ``observe()`` names, ...), sorted.
    observed: tuple[str, ...] = ()
    server: ServerInfo = field(default_factory=ServerInfo)
    #: What the run exercised (overlap, unit reuse), read from the units the probe reported;
    #: ``None`` when the document did not record it.
    exercised: Exercised | None = None
    #: Why the cell could not be measured to the end (its server died on its own: every
    #: process of it gone), else ``None``. The counts are those checked until then; ``runs``
    #: holds the repeats that finished.
    error: str | None = None
    #: Set on the cells of a corpus run (``ctxbench corpus``).
    corpus: CorpusCheck | None = None
    #: On a deliberately broken backend: whether it can leak here, as the expectations model
    #: said when the cell ran. ``None`` on the default backend, for a ``--target`` (its storage
    #: is not known), a control the model cannot judge under the run's ``--fail-phase``, and
    #: in documents written before it was recorded.
    expectation: LeakExpectation | None = None

    @property
    def failed(self) -> bool:
        """The cell ended early with :attr:`error`."""
        return self.error is not None

    @property
    def target(self) -> str | None:
        """The URL of a server ctxbench did not start (``run --target``), else ``None``."""
        rv = self.server.effective.get("target")
        return rv if isinstance(rv, str) else None

    @property
    def app_label(self) -> str:
        """``core``/``flask`` for the bundled apps, else the app's import string."""
        return app_label(self.app)

    @property
    def key(self) -> CellKey:
        """What identifies the cell across runs: (app label, backend, mode, connections,
        concurrency, mount). The mount tells apart the apps one dispatcher serves under its
        prefixes (``--app pkg:dispatcher --mount /api`` and ``--mount /admin``)."""
        return (
            self.app_label,
            self.backend,
            self.mode,
            self.connections,
            self.concurrency,
            self.server.mount,
        )

    @property
    def driver_bound(self) -> bool:
        """A driver process was saturated in one of the measured runs: the throughput may be
        the driver's, not the server's (see :data:`harness.load.cpu.DRIVER_BOUND_ADVICE`)."""
        return any(run.driver_bound for run in self.runs)

    @property
    def driver_load(self) -> float | None:
        """The highest demand of a driver process over the measured runs (see
        :attr:`Measurement.driver_load`); ``None`` when not recorded."""
        loads = [run.driver_load for run in self.runs if run.driver_load is not None]
        return max(loads) if loads else None

    @property
    def starved(self) -> int | None:
        """The most virtual users the server starved in one measured run (see
        :attr:`Measurement.starved`); ``None`` when not recorded. Not a leak and not an error:
        the throughput and latency of such a cell are the served users' and the starved users'
        wait, so it is never ranked on speed."""
        values = [run.starved for run in self.runs if run.starved is not None]
        return max(values) if values else None

    @property
    def acks(self) -> AckCounts | None:
        """The delayed-ACK counts of the measured runs added up (see :attr:`Measurement.acks`);
        ``None`` when no run recorded them."""
        counts = [run.acks for run in self.runs if run.acks is not None]
        return sum(counts[1:], counts[0]) if counts else None

    @property
    def delayed_acks(self) -> bool:
        """Most responses on kept-alive connections waited for the client's delayed ACK while
        the first on each connection was fast (the rule is :mod:`harness.load.acks`'s, on the
        measured runs' counts pooled): the throughput and latency are the ACK timer's, not the
        server's, so the cell is never ranked on speed."""
        acks = self.acks
        return acks is not None and waited_on_delayed_acks(acks)

    @property
    def server_cpu(self) -> float | None:
        """The server's median CPU share over the measured runs, in cores."""
        return _median_known(run.server_cpu for run in self.runs)

    @property
    def others_cpu(self) -> float | None:
        """The median cores other programs used during the measured runs (see
        :attr:`Measurement.others_cpu`)."""
        return _median_known(run.others_cpu for run in self.runs)

    @property
    def server_cpu_wait(self) -> float | None:
        """The server's median share waiting for a CPU over the measured runs (summed over its
        threads: above its CPU share, the machine was too busy to measure it fairly)."""
        return _median_known(run.server_cpu_wait for run in self.runs)

    @property
    def rps_runs(self) -> tuple[float, ...]:
        return tuple(run.rps for run in self.runs)

    @property
    def rps(self) -> float:
        """The median throughput of the repeats."""
        return median(self.rps_runs)

    @property
    def rps_spread(self) -> float:
        """See :func:`spread`."""
        return spread(self.rps_runs)

    @property
    def noisy(self) -> bool:
        """The repeats disagree by more than :data:`SPREAD_WARNING`."""
        return self.rps_spread > SPREAD_WARNING

    @property
    def checked(self) -> int:
        """Responses the verdict judged: every finished request but the failed ones and those
        made to fail on purpose (``--fail-phase``)."""
        return max(0, self.requests - self.errors - self.injected)

    @property
    def not_probe_answers(self) -> int:
        """Requests answered in the probe's place (a non-2xx status: an auth hook's 401, a rate
        limiter's 429, a proxy's 502; or a 2xx body that is not a probe response): never
        checked, so a cell with any has no "no leak" verdict. An answer that is not HTTP/1.x
        (``http``) is not one: the server sent it, or a proxy, not the app."""
        return self.error_kinds.get("non-2xx", 0) + self.error_kinds.get("protocol", 0)

    @property
    def clean(self) -> bool:
        """Neither leaks nor errors, and measured to the end: only a clean cell may be ranked."""
        return self.leaks == 0 and self.errors == 0 and self.error is None

    @property
    def latency_runs(self) -> tuple[Latency, ...]:
        return tuple(run.latency_ms for run in self.runs if run.latency_ms is not None)

    def latency_spread(self, name: str) -> float:
        """:func:`spread` of one percentile over the repeats."""
        values = [lat.get(name) for lat in self.latency_runs]
        return spread([v for v in values if v is not None])


@dataclass(frozen=True)
class NotMeasured:
    """A (mode, connections) pair of the matrix that cannot run, and why (not a cell)."""

    mode: str
    connections: str
    reason: str


# -- faults and soaks (ctxbench chaos, ctxbench soak) ------------------------------------------


@dataclass(frozen=True)
class FaultEvent:
    """One thing a fault did, ``t`` seconds after the faulted load started."""

    t: float
    action: str
    pid: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class AfterFault:
    """The clean load run once the fault stopped and the server had its workers back."""

    requests: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    leaks: int = 0
    #: Distinct worker processes that answered and were there before the fault.
    survivors_reached: int = 0
    #: Distinct worker processes that answered and were started during or after it.
    respawned_reached: int = 0


@dataclass(frozen=True)
class FaultCell:
    """One fault under one (app, backend, mode, connections), and its verdict.

    Every request sent is accounted for: ``requests == answered + sum(errors.values()) +
    aborted + injected``. ``answered`` counts whole responses that were judged (the leaky ones
    included); ``errors`` the failures by kind (``reset``, ``refused``, ``timeout``, ``5xx``,
    ``other-status``, ``protocol``, ...); ``aborted`` the requests the fault's clients left on
    purpose; ``injected`` the requests made to raise at a phase, with how each ended. The
    verdicts are listed in :data:`harness.faults.VERDICTS`.
    """

    fault: str
    mode: str
    app: str
    backend: str
    connections: str
    verdict: str
    reason: str = ""
    requests: int = 0
    answered: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    aborted: int = 0
    injected: int = 0
    injected_outcomes: Mapping[str, int] = field(default_factory=dict)
    leaks: int = 0
    leaky_requests: int = 0
    evidence: tuple[Evidence, ...] = ()
    events: tuple[FaultEvent, ...] = ()
    workers_before: tuple[int, ...] = ()
    workers_after: tuple[int, ...] = ()
    after: AfterFault | None = None
    #: Load rounds of ``settings.chaos.round_requests`` each.
    rounds: int = 0
    elapsed_s: float = 0.0
    server: ServerInfo = field(default_factory=ServerInfo)

    @property
    def app_label(self) -> str:
        return app_label(self.app)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def passed(self) -> bool:
        """A passing verdict: ``ok``, ``caught`` (a negative control was caught) or ``n/a``."""
        return self.verdict in ("ok", "caught", "n/a")


@dataclass(frozen=True)
class ProcessSample:
    """One server process at one second of a soak."""

    t: float
    pid: int
    #: ``master``, or ``worker`` (a single-process server's one process serves requests).
    role: str
    rss: int
    fds: int
    threads: int


@dataclass(frozen=True)
class LoadSample:
    """The load since the previous sample: the second before ``t``, or more when a report of
    the driver came late (:mod:`harness.soak.sampler`)."""

    t: float
    rps: float
    requests: int
    errors: int
    leaks: int


@dataclass(frozen=True)
class ProcessTrend:
    """One server process over a soak's measured window (after the warm-up)."""

    pid: int
    role: str
    #: Whether it lived through the whole window (only those are judged).
    whole_window: bool
    rss_start: int
    rss_end: int
    rss_growth: float
    fds_start: int
    fds_end: int
    fds_growing: bool
    threads_end: int
    #: Its samples in the window: descriptors are judged only on enough of them
    #: (:data:`harness.soak.verdict.FDS_MIN_SAMPLES`); 0 when not recorded (written before).
    samples: int = 0


#: The verdict of a soak that judged nothing (:func:`harness.soak.verdict.judge_soak`).
SOAK_NOT_JUDGED = "no data"


@dataclass(frozen=True)
class Soak:
    """A soak: its settings, its time series, its verdict (see :mod:`harness.soak.verdict`)."""

    mode: str
    app: str
    backend: str
    connections: str
    seconds: float
    warmup_s: float
    verdict: str
    reason: str = ""
    requests: int = 0
    errors: int = 0
    leaks: int = 0
    #: The failed requests by kind, as a fault cell's ``errors`` (``non-2xx`` split into
    #: ``5xx`` and ``other-status``, the app answering in the probe's place); empty when not
    #: recorded (a soak stopped early, or written before it was).
    error_kinds: Mapping[str, int] = field(default_factory=dict)
    #: Median of the per-second throughput after the warm-up.
    rps: float = 0.0
    #: The RSS growth allowed after the warm-up (a fraction).
    rss_limit: float = 0.05
    processes: tuple[ProcessSample, ...] = ()
    load: tuple[LoadSample, ...] = ()
    trends: tuple[ProcessTrend, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    server: ServerInfo = field(default_factory=ServerInfo)

    @property
    def app_label(self) -> str:
        return app_label(self.app)

    @property
    def passed(self) -> bool:
        return self.verdict == "ok"

    @property
    def judged(self) -> bool:
        """False when the soak has no verdict (stopped inside its warm-up, or no server process
        lived through the measured window): neither a pass nor a failure."""
        return self.verdict != SOAK_NOT_JUDGED


@dataclass(frozen=True)
class Machine:
    """Where the run happened (fields are ``None`` when a document did not record them)."""

    platform: str | None = None
    system: str | None = None
    release: str | None = None
    machine: str | None = None
    processor: str | None = None
    cpu_count: int | None = None
    #: CPUs this process may use (its affinity mask).
    cpu_usable: int | None = None
    python_implementation: str | None = None

    @classmethod
    def here(cls) -> Machine:
        """This machine."""
        try:
            usable: int | None = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            usable = os.cpu_count()
        return cls(
            platform=platform.platform(),
            system=platform.system(),
            release=platform.release(),
            machine=platform.machine(),
            processor=platform.processor(),
            cpu_count=os.cpu_count(),
            cpu_usable=usable,
            python_implementation=platform.python_implementation(),
        )


@dataclass(frozen=True)
class Run:
    """A whole run: what ran where, with which settings, and its cells in the order measured.

    ``status`` is ``running`` while cells are added, then ``complete``, ``interrupted`` or
    ``failed``; a document that is not ``complete`` may lack cells. :func:`load` reads a
    ``running`` document whose :attr:`owner` is provably gone as ``abandoned`` (see
    :data:`STATUSES`).
    """

    run_id: str
    created: str
    command: tuple[str, ...]
    machine: Machine
    python: str
    packages: Mapping[str, str | None]
    settings: RunSettings
    cells: tuple[Cell, ...] = ()
    #: Connection patterns a mode cannot serve, skipped on purpose.
    not_measured: tuple[NotMeasured, ...] = ()
    status: str = "running"
    elapsed_s: float | None = None
    #: ``ctxbench chaos``: the faults' knobs and one judged cell per fault, mode and pattern.
    chaos: ChaosSettings | None = None
    faults: tuple[FaultCell, ...] = ()
    #: ``ctxbench soak``: one soak per mode.
    soaks: tuple[Soak, ...] = ()
    #: The ctxbench process that writes the run (``None`` in documents from before it was
    #: recorded): a reader tells a run in progress from one whose writer was killed.
    owner: Owner | None = None

    @classmethod
    def start(cls, run_id: str, command: Sequence[str], settings: RunSettings) -> Run:
        """A new run on this machine, now, with no cells yet."""
        return cls(
            run_id=run_id,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=tuple(command),
            machine=Machine.here(),
            python=platform.python_version(),
            packages=package_versions(),
            settings=settings,
            owner=Owner.here(),
        )

    def replace(self, **changes: t.Any) -> Run:
        """A copy with ``changes`` applied (``cells=run.cells + (cell,)`` adds one)."""
        return dataclasses.replace(self, **changes)

    @property
    def status_reason(self) -> str:
        """Why the run has its :attr:`status`, in words (from :data:`STATUSES`)."""
        rv = STATUSES.get(self.status, f"status {self.status!r}")
        if self.status == "abandoned" and self.owner is not None:
            where = f"writing it (pid {self.owner.pid} on {self.owner.host})"
            rv = rv.replace("writing it", where, 1)
        elif self.status == "running" and self.owner is not None and self.owner.alive() is None:
            # A document copied from another machine (a CI job's artifact): its writer cannot
            # be looked at from here, so "still being written" is not known.
            rv = (
                f"it was being written by pid {self.owner.pid} on {self.owner.host}, which this"
                " machine cannot check: still running there, or killed before it finished"
            )
        return rv

    @property
    def requests(self) -> int:
        return sum(cell.requests for cell in self.cells)

    @property
    def checked(self) -> int:
        """Responses judged, over every cell (:attr:`Cell.checked`)."""
        return sum(cell.checked for cell in self.cells)

    @property
    def leaks(self) -> int:
        return sum(cell.leaks for cell in self.cells)

    @property
    def errors(self) -> int:
        return sum(cell.errors for cell in self.cells)

    def to_json(self) -> dict[str, t.Any]:
        """The JSON document (``schema`` first)."""
        rv = records.to_json(self)
        return {"schema": SCHEMA, **rv}

    @classmethod
    def from_json(cls, doc: t.Any, *, source: str = "results document") -> Run:
        """Read a document of any schema in :data:`READERS`; raise :class:`ResultsError`."""
        if not isinstance(doc, dict):
            raise ResultsError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        schema = doc.get("schema")
        reader = READERS.get(schema) if isinstance(schema, str) else None
        if reader is None:
            hint = (
                "it was written by another version of ctxbench"
                if isinstance(schema, str) and schema.startswith("ctxbench.results/")
                else "it is not a ctxbench results document"
            )
            raise ResultsError(
                f"{source}: schema is {schema!r}, this ctxbench reads"
                f" {', '.join(map(repr, READERS))}: {hint}"
            )
        body = {k: v for k, v in reader(doc, source).items() if k != "schema"}
        return records.from_json(Run, body, source)


# -- reading and writing -----------------------------------------------------------------------


def package_versions(names: t.Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` for a package that is not installed)."""
    return {name: package_version(name) for name in names}


def load(path: str | os.PathLike[str]) -> Run:
    """Read a run from ``path``, a results.json or the run folder holding one.

    A document that says ``running`` while the process writing it is provably gone (killed
    outright) reads as ``abandoned``. Raises :class:`ResultsError` with the path and what is
    wrong.
    """
    file = Path(path)
    if file.is_dir():
        file = file / RESULTS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        runs = _run_folders_in(file.parent) if file.name == RESULTS_FILE else []
        if runs:  # `ctxbench report results`: the --out folder, which holds the run folders
            held = f"{len(runs):,} run folders" if len(runs) > 1 else "a run folder"
            name = "one, such as the newest," if len(runs) > 1 else "it,"
            raise ResultsError(
                f"no results at {str(file)!r}: {str(file.parent)!r} holds {held}, not a run;"
                f" name {name} {str(runs[0])!r}"
            ) from None
        if file.name == RESULTS_FILE and (file.parent / LOGS).is_dir():  # a run's folder
            raise ResultsError(
                f"no results at {str(file)!r}: the run in {str(file.parent)!r} ended before it"
                " wrote any (killed outright, or its first server did not start); only its"
                f" server logs are there, in {str(file.parent / LOGS)!r}"
            ) from None
        raise ResultsError(f"no results at {str(file)!r}: run 'ctxbench run' first") from None
    except OSError as e:
        raise ResultsError(f"cannot read {str(file)!r}: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ResultsError(f"{str(file)!r} is not valid JSON: {e}") from None
    run = Run.from_json(doc, source=str(file))
    if run.status == "running" and run.owner is not None and run.owner.alive() is False:
        run = run.replace(status="abandoned")
    return run


def _run_folders_in(folder: Path) -> list[Path]:
    """The run folders directly in ``folder`` (those holding a results.json), newest first."""
    found: list[tuple[float, Path]] = []
    with contextlib.suppress(OSError):  # an unreadable folder, a run removed meanwhile
        for file in folder.glob(f"*/{RESULTS_FILE}"):
            with contextlib.suppress(OSError):
                found.append((file.stat().st_mtime, file.parent))
    return [run_dir for _, run_dir in sorted(found, reverse=True)]


def write(run_dir: str | os.PathLike[str], run: Run) -> Path:
    """Write ``run`` to ``run_dir/results.json`` atomically; return the path."""
    return write_atomic(Path(run_dir) / RESULTS_FILE, run.to_json())


def write_ended(
    run_dir: str | os.PathLike[str], run: Run, elapsed_s: float, stopped_by: BaseException | None
) -> Run:
    """Write ``run`` as it ended and return it: ``complete``, or, stopped by an exception,
    ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` with what it measured until then (cells,
    fault cells). A run stopped before it measured anything is not written: nothing to keep."""
    if stopped_by is None:
        status = "complete"
    elif not (run.cells or run.faults or run.soaks):
        return run
    else:
        status = "interrupted" if isinstance(stopped_by, KeyboardInterrupt) else "failed"
    run = run.replace(status=status, elapsed_s=round(elapsed_s, 2))
    write(run_dir, run)
    return run


def write_atomic(
    path: str | os.PathLike[str], data: str | Mapping[str, t.Any] | list[t.Any]
) -> Path:
    """Write ``data`` to ``path`` atomically: a complete old file or a complete new one.

    ``data`` is text, or JSON data (written indented, NaN refused). The file gets the mode a
    plain ``open()`` would give it (0666 less the umask). The parent folder is created.

    The temporary file, ``.<name>.<writer>-<random>.tmp``, names the process writing it
    (:func:`harness.owner.file_tag`). A writer killed between writing it and renaming it leaves
    it behind; the next write into the same folder removes every such file whose writer is
    provably gone, and only those (another process may be writing there now).
    """
    target = Path(path)
    text = data if isinstance(data, str) else json.dumps(data, indent=2, allow_nan=False) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent)
    tmp = target.with_name(f".{target.name}.{file_tag()}-{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL on a random name instead of mkstemp, whose files are 0600 whatever the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        checkpoint(f"write:{target.name}")  # a test hook (harness.checkpoints); nothing without it
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def _remove_stale_tmp(folder: Path) -> None:
    """Remove the temporary files of :func:`write_atomic` in ``folder`` whose writer is gone."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            # ".<name>.<boot>-<pid>-<ticks>-<random>.tmp"; anything else is not ours to touch.
            name = entry.name
            if not (name.startswith(".") and name.endswith(".tmp")) or not entry.is_file():
                continue
            tag, _, _random = name[:-4].rpartition(".")[2].rpartition("-")
            if tag and tag_gone(tag):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


# -- schema versions ---------------------------------------------------------------------------


def _read_v2(doc: dict[str, t.Any], source: str) -> dict[str, t.Any]:
    return _fill_concurrency(doc)


def _fill_concurrency(doc: dict[str, t.Any]) -> dict[str, t.Any]:
    """Cells written before a cell recorded its concurrency ran at the settings' one."""
    settings, cells = doc.get("settings"), doc.get("cells")
    level = settings.get("concurrency") if isinstance(settings, dict) else None
    if isinstance(cells, list) and isinstance(level, int):
        for cell in cells:
            if isinstance(cell, dict):
                cell.setdefault("concurrency", level)
    return doc


def _read_v1(doc: dict[str, t.Any], source: str) -> dict[str, t.Any]:
    """Upgrade a ``ctxbench.results/1`` document to the current shape.

    /1 called cells "entries", kept the repeats as parallel lists (``rps_runs``,
    ``latency_runs``, ``elapsed_runs_s``), stored statistics the model now derives (``rps``,
    ``rps_spread``, ``rps_spread_warning``, ``app_label``, ``settings.spread_formula``), named
    the execution unit of a piece of evidence ``worker`` and counted units as ``workers_seen``.
    """
    rv = {k: v for k, v in doc.items() if k not in ("entries", "not_applicable")}
    if "not_applicable" in doc:
        rv["not_measured"] = doc["not_applicable"]
    rv.setdefault("status", "complete")  # /1 documents without a status read as complete
    if "entries" not in doc:
        raise ResultsError(f"{source}: missing key 'entries'")
    if isinstance(rv.get("settings"), dict):
        rv["settings"] = {k: v for k, v in rv["settings"].items() if k != "spread_formula"}
    entries = doc["entries"]
    if not isinstance(entries, list):
        raise ResultsError(f"{source}: entries: expected a list, got {entries!r}")
    rv["cells"] = [_entry_v1(entry, f"{source}: entries[{i}]") for i, entry in enumerate(entries)]
    return _fill_concurrency(rv)


def _entry_v1(entry: t.Any, where: str) -> dict[str, t.Any]:
    if not isinstance(entry, dict):
        raise ResultsError(f"{where}: expected an object, got {entry!r}")
    derived = {"rps", "rps_runs", "rps_spread", "rps_spread_warning", "app_label",
               "latency_runs", "elapsed_runs_s", "workers_seen"}  # fmt: skip
    rv = {k: v for k, v in entry.items() if k not in derived}
    rps_runs = entry.get("rps_runs") or ([entry["rps"]] if "rps" in entry else [])
    latency_runs = entry.get("latency_runs") or []
    elapsed = entry.get("elapsed_runs_s") or []
    for name, values in (("rps_runs", rps_runs), ("latency_runs", latency_runs),
                         ("elapsed_runs_s", elapsed)):  # fmt: skip
        if not isinstance(values, list):
            raise ResultsError(f"{where}.{name}: expected a list, got {values!r}")
    for name, values in (("latency_runs", latency_runs), ("elapsed_runs_s", elapsed)):
        if values and len(values) != len(rps_runs):
            raise ResultsError(f"{where}.{name}: {len(values)} values for {len(rps_runs)} runs")
    rv["runs"] = [
        {
            "rps": rps,
            "elapsed_s": elapsed[i] if elapsed else None,
            "latency_ms": latency_runs[i] if latency_runs else None,
        }
        for i, rps in enumerate(rps_runs)
    ]
    if "workers_seen" in entry:
        rv["units_seen"] = entry["workers_seen"]
    evidence = entry.get("evidence")
    if isinstance(evidence, list):
        rv["evidence"] = [
            {("unit" if k == "worker" else k): v for k, v in ev.items()}
            if isinstance(ev, dict)
            else ev
            for ev in evidence
        ]
    return rv


#: Reader of each schema this version reads: an upgrade to the current shape.
READERS: dict[str, Callable[[dict[str, t.Any], str], dict[str, t.Any]]] = {
    SCHEMA: _read_v2,
    "ctxbench.results/1": _read_v1,
}
