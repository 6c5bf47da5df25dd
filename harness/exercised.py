"""What a load run really exercised, read from the identities the probe reported.

A clean run proves isolation only where it exercised the situations in which state can leak:
two requests in flight in one server process at once (cross-talk needs overlap), and one
execution unit serving more than one request (residue needs reuse), across connections too
(residue on a fresh connection needs a unit that outlives its connection). For a server ctxbench
started, the mode's traits say which situations to expect (:mod:`harness.expectations`); for a
server it did not start (``run --target``), this module is all there is to say what a zero means.

Every request sleeps ``sleep_ms`` in the view, so by Little's law ``rps * sleep`` divided by the
server processes seen is a lower bound of the requests in flight per process on average: above 1,
more requests than processes were in flight at some moment, so two overlapped in one process.
Fewer distinct units (pid, OS thread, greenlet) than answered requests means a unit served more
than one; with a new connection per request, that reuse spanned connections. Greenlet ids are
addresses and a later greenlet can take a dead one's, so reuse among greenlet units may be
address reuse: the notes say so; so can a pid, among the thousands of processes of a server
that forks one per request. Under the ``keepalive`` pattern the driver counts the
connections the server closed (each user then opens a new one): a server that closes after
nearly every response (gunicorn's sync worker, uWSGI's ``--http-socket``, a ``keepalive = 0``
config) gave that cell hardly any request on a kept-alive connection, and the notes say so too.
"""

from __future__ import annotations

import typing as t
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from harness.verdict import UnitKey

__all__ = [
    "CLOSED_SHARE",
    "FORKING",
    "ONE_USER",
    "PIDS_KEPT",
    "Exercised",
    "Note",
    "exercised",
    "in_flight_per_process",
    "units_by_process",
]

#: The server processes a cell keeps by pid, the lowest first (:attr:`Exercised.pids`); the rest
#: are counted, as the evidence is. A server that forks a process per request (werkzeug's
#: ``processes=``, a CGI gateway) reports a new pid per answer, which would grow the results
#: and the report with the requests.
PIDS_KEPT = 20
#: A cell answered by more server processes than this had a server that starts a process per
#: request (or every few): no server keeps a pool that large. pids wrap (at pid_max, 32768 by
#: default), so after some 30,000 of them a new process can take a dead one's pid.
FORKING = 1000
#: A keepalive cell whose server closed the connection after at least this share of the answered
#: requests exercised hardly any kept-alive connection.
CLOSED_SHARE = 0.9
#: Why a run at one virtual user shows no overlap, whatever each request sleeps: the terminal's
#: totals and the report's notes say it.
ONE_USER = (
    "one virtual user (--concurrency 1) sends one request at a time, so no leak between requests"
    " served at the same time could show, only state one request left for the next"
)


def units_by_process(units: Iterable[UnitKey]) -> dict[int, set[tuple[int, int | None]]]:
    """The distinct (thread, greenlet) that answered, per server process (pid)."""
    rv: dict[int, set[tuple[int, int | None]]] = defaultdict(set)
    for pid, thread, glet in units:
        rv[pid].add((thread, glet))
    return dict(rv)


def in_flight_per_process(rps: float, sleep_ms: float, processes: int) -> float:
    """A lower bound of the requests in flight per server process on average (Little's law)."""
    return rps * (sleep_ms / 1000.0) / max(processes, 1)


class Note(t.NamedTuple):
    """Why a zero proves little: a ``sentence`` that reads the same for every cell it is said
    of (a run of many cells says it once, then names them), and the ``figure`` it rests on in
    this one (``""``: none)."""

    sentence: str
    figure: str = ""


@dataclass(frozen=True)
class Exercised:
    """The situations a run exercised, each with the figure it rests on."""

    #: The server processes (pids) that answered, sorted: the lowest :data:`PIDS_KEPT`.
    pids: tuple[int, ...]
    #: Distinct OS threads (pid, thread) that answered.
    threads: int
    units: int
    answered: int
    in_flight: float
    #: Two requests were in flight in one server process at once, as the lower bound shows.
    overlap: bool
    #: A unit served more than one request.
    unit_reused: bool
    #: ... on different connections (only known for the ``fresh`` pattern).
    reused_across_connections: bool
    #: Several greenlets served requests on one OS thread.
    greenlets: bool
    #: Connections the server closed under the ``keepalive`` pattern (the user opened a new one);
    #: ``None`` for ``fresh``, or in results written before it was recorded.
    reconnects: int | None = None
    #: Server processes that answered beyond those in :attr:`pids`.
    more_pids: int = 0
    #: Whether the server can run two requests of one process at once, as its traits say
    #: (:func:`harness.expectations.situation`): not a sync worker, a pool of one thread or an
    #: asgiref WSGI thread. ``True`` where unknown (a ``--target``, results written before).
    can_overlap: bool = True

    @property
    def processes(self) -> int:
        return len(self.pids) + self.more_pids

    def notes(self, users: int | None = None) -> list[Note]:
        """Why a zero from this run proves little, one note each (empty: it proves a lot);
        ``users`` is the run's number of virtual users, when known."""
        rv = []
        if self.answered == 0:
            return [Note("no request was answered, so nothing was checked")]
        if not self.can_overlap:  # no run of this server overlaps requests: nothing to ask
            pass
        elif not self.overlap and users == 1:  # a longer sleep cannot help
            rv.append(
                Note(f"requests never overlapped: {ONE_USER}; run more users (--concurrency)")
            )
        elif not self.overlap:
            # in_flight is a lower bound: at or under 1 it fails to show overlap, it does not
            # rule it out (a gthread pool of 4 at 1,800 rps reads 0.92), so say what helps.
            rv.append(
                Note(
                    "requests were not shown to overlap in a server process (the requests in"
                    " flight per process on average, from the throughput and the time each"
                    " request sleeps, must pass 1 to show it), so state shared between"
                    " concurrent requests may not have shown; a longer --sleep-ms (10) holds"
                    " each request longer, so that requests overlap wherever the server runs"
                    " several at once",
                    f"at least {self.in_flight:.2f} requests in flight per process",
                )
            )
        if not self.unit_reused:
            rv.append(
                Note(
                    "no execution unit served two requests, so state left over by an earlier"
                    " request could not show",
                    f"{self.units:,} units for {self.answered:,} answered requests",
                )
            )
        elif self.greenlets:
            rv.append(
                Note(
                    "the units are greenlets, whose ids a later greenlet can reuse: their reuse"
                    " may be address reuse, not one greenlet serving several requests"
                )
            )
        elif self.processes > FORKING:
            rv.append(
                Note(
                    "the server started a process for nearly every request, and a new process"
                    " can take a dead one's pid: the reuse may be pid reuse, not one process"
                    " serving several requests",
                    f"{self.processes:,} processes for {self.answered:,} answered requests",
                )
            )
        if self.reconnects is not None and self.reconnects >= self.answered * CLOSED_SHARE:
            rv.append(
                Note(
                    "the server closed the connection after nearly every response, so hardly any"
                    " request came on a kept-alive connection: a keepalive cell that exercised"
                    " what fresh does, where state a unit keeps for its connection could not show",
                    f"{self.reconnects:,} times in {self.answered:,} answered requests",
                )
            )
        return rv


def exercised(
    units: Iterable[UnitKey],
    *,
    answered: int,
    rps: float,
    sleep_ms: float,
    connections: str,
    reconnects: int | None = None,
    can_overlap: bool = True,
) -> Exercised:
    """Read what a run exercised from its units, answered requests, throughput and sleep (and,
    under ``keepalive``, the connections the server closed); ``can_overlap``: whether the
    server's traits let requests overlap in a process at all."""
    units = list(units)
    by_process = units_by_process(units)
    in_flight = in_flight_per_process(rps, sleep_ms, len(by_process))
    reused = 0 < len(units) < answered
    pids = sorted(by_process)
    return Exercised(
        pids=tuple(pids[:PIDS_KEPT]),
        more_pids=len(pids[PIDS_KEPT:]),
        threads=len({(pid, thread) for pid, thread, _ in units}),
        units=len(units),
        answered=answered,
        in_flight=round(in_flight, 3),
        overlap=in_flight > 1.0 and any(len(u) > 1 for u in by_process.values()),
        unit_reused=reused,
        reused_across_connections=reused and connections == "fresh",
        greenlets=len({(pid, thread) for pid, thread, _ in units}) < len(units),
        reconnects=reconnects if connections == "keepalive" else None,
        can_overlap=can_overlap,
    )
