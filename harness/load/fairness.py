"""Whether the server shared itself between the virtual users: the users it starved.

Design note: each virtual user of the driver holds one connection (keepalive) or opens one per
request (fresh), and has one request in flight at a time. A server that gives each connection
its turn answers every user many times in a run; a server that pins a kept-alive connection to
a process or thread until the client closes it (uWSGI's ``--http11-socket``) answers only as
many users as it has of those, and the others wait for the end of the run. Their wait shows as a
p99 near the run's length and a throughput that is only the served users'; this module says it
outright.

Per user the driver keeps its *longest wait*: the time from sending one request (its connect
included) to its whole response, or to its failure (a reset, a timeout), and when that wait began.
A user is **starved** when both hold:

- its longest wait was more than :data:`STARVED_SHARE` (half) of the measured *window* of its
  driver process, and at least :data:`STARVED_MIN_WAIT_NS` (0.25 s). The window is the
  ``duration`` asked for, or the run's length (from its start to its last response) when the run
  ended sooner or was bounded by ``requests`` alone. The floor keeps start-up out: the first
  requests of a run queue while the server accepts its connections, and in a run of a tenth of
  a second that is half the run (measured here under gunicorn-gthread, 3 requests per user: up
  to 97 ms of a 98 ms run; a cold server, right after its start, kept a user waiting 246 ms of a
  1 s run). A run shorter than the floor cannot show starvation;
- while it waited, at least :data:`STARVED_OVERTAKEN` requests sent after it were answered
  before it: the server was serving other users, not stalled for everybody, and the run was not
  just too short for each user to send more than a request or two. A request that failed (a
  reset, a refused connection, a head the driver cannot read) was not answered: when every
  request errored, the errors are the story, not the server's fairness.

A fair queue, first come first served, lets almost nothing overtake a request, so neither a
server that pauses for all its clients nor a run of one request per user counts; under uWSGI's
``--http11-socket`` with 16 keep-alive users and 2 processes, 14 users each waited the whole run
while thousands of the 2 served users' requests overtook them.

The overtaking count is taken from a timeline each driver process samples once per tick of its
loop (every 20 ms): the monotonic time, the requests started and the requests answered so far.
Requests answered by a time ``t1`` either started before ``t0`` or overtook a request waiting from
``t0`` to ``t1``, so ``answered(t1) - started(t0)``, read at the samples just inside the wait, is a
lower bound of the overtaking requests. The clock is the machine's monotonic clock, the same in
every driver process, so the bound adds up over processes (``--driver-processes``): a user whose
whole process starved is still seen to be overtaken by the other processes' users. The timeline
keeps at most :data:`MAX_SAMPLES` samples: past that, every other one is dropped and the
sampling slows by half, which keeps the bound a lower bound.

Nothing here runs per response but a comparison in the driver; the judgement runs once, after
the run (:func:`starved_users`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_SAMPLES",
    "STARVED_ADVICE",
    "STARVED_CAUSES",
    "STARVED_MIN_WAIT_NS",
    "STARVED_OVERTAKEN",
    "STARVED_SHARE",
    "Timeline",
    "Waits",
    "overtaken",
    "starved_advice",
    "starved_users",
]

#: A user whose longest wait for one response passed this share of the measured window ...
STARVED_SHARE = 0.5
#: ... and at least this long (ns) ...
STARVED_MIN_WAIT_NS = 250_000_000
#: ... while at least this many requests sent after it were answered before it, was starved.
STARVED_OVERTAKEN = 16
#: The most samples a timeline keeps (see the module's design note).
MAX_SAMPLES = 2048

#: What a starved cell means; the terminal summary and the report print it, then the likely
#: cause and what to do about it for each cause of :data:`STARVED_CAUSES` that the starved
#: cells' servers fit (:func:`starved_advice`; the report picks a cell's cause from what its run
#: recorded of its server, :attr:`harness.results.ServerInfo.connections`).
STARVED_ADVICE = (
    "some virtual users waited more than half the measured window for one response while other"
    " users' later requests were answered: the server kept serving a few connections and made"
    " the others wait, so the throughput is the served users' and the p99 is the starved users'"
    " wait"
)
STARVED_CAUSES = {
    # The server sees kept-alive connections and holds each on its worker (a --target, whose
    # server is not known, or a run that did not record it, gets this on keep-alive
    # connections: the likeliest cause).
    "keepalive": (
        "With keep-alive, a server that keeps a connection on its worker until the client closes"
        " it does this (uWSGI with --http11-socket): run no more keep-alive users than the server"
        " has processes x threads, use fresh connections, or put a proxy in front (--proxy nginx;"
        " for a --target, a proxy of your own in front of it)"
    ),
    "fresh": (
        "With a connection per request, a listen backlog shorter than the users does this: the"
        " kernel drops the connections it has no room for and the client tries again 1 s and 3 s"
        " later (a p99 near 1,000 ms; wsgiref's and socketserver's backlog is 5): raise the"
        " server's listen backlog (gunicorn --backlog, a socketserver's request_queue_size) or"
        " run fewer users"
    ),
    # The server holds each kept-alive connection while it is open, and holds at most so many
    # (a pool of greenlets, a connection limit): the users outnumber them.
    "limit": (
        "With keep-alive, a server that serves at most so many connections at once and keeps"
        " each until the other end closes it does this when the connections outnumber them"
        " (gunicorn's gevent worker and eventlet: --worker-connections per worker process;"
        " waitress: --worker-connections, its --connection-limit, of which its own listening"
        " socket and wake-up pipe take 2): give the server room for every user's connection"
        " (a higher --worker-connections), or run fewer users"
    ),
    # Behind a proxy that keeps its upstream connections alive, the same server holds them.
    "proxy-keepalive": (
        "Behind a proxy that keeps its upstream connections alive, a server that keeps a"
        " connection on its worker until the other end closes it does this (uWSGI with"
        " --http11-socket): the proxy's idle connections hold the workers; use a proxy that opens"
        " a connection per request (--proxy nginx)"
    ),
    # The server sees kept-alive connections and gives each its turn.
    "turns": (
        "With keep-alive, a server that gives every connection its turn does this only when"
        " something stalls some connections while the others are served: the machine was busy"
        " with other programs, or a request blocked its worker (a blocking call under gevent or"
        " eventlet); rerun on a quieter machine, and look for a request that holds its worker"
    ),
}


def starved_advice(causes: Collection[str]) -> str:
    """:data:`STARVED_ADVICE`, then the cause and the remedy of each of ``causes`` (keys of
    :data:`STARVED_CAUSES`)."""
    return ". ".join([STARVED_ADVICE, *(STARVED_CAUSES[c] for c in sorted(causes))])


@dataclass
class Timeline:
    """Samples ``(monotonic ns, requests started, requests answered)`` of one driver process."""

    samples: list[tuple[int, int, int]] = field(default_factory=list)
    #: Ticks of the driver's loop per sample (doubles each time the samples are thinned).
    every: int = 1
    _ticks: int = 0

    def tick(self, now_ns: int, started: int, finished: int) -> None:
        """Called once per tick of the driver's loop; samples one tick in :attr:`every`."""
        self._ticks += 1
        if self._ticks % self.every:
            return
        self.add(now_ns, started, finished)
        if len(self.samples) >= MAX_SAMPLES:
            del self.samples[1::2]
            self.every *= 2

    def add(self, now_ns: int, started: int, finished: int) -> None:
        """Record one sample now (the start and the end of a run)."""
        self.samples.append((now_ns, started, finished))


@dataclass
class Waits:
    """What one driver process saw of its users' waits: enough to judge starvation across
    driver processes (:func:`starved_users`)."""

    #: The measured window: the duration asked for, or the run's length when it was shorter or
    #: there was no duration.
    window_ns: int = 0
    #: Per virtual user, in its order: ``(start, length)`` of its longest wait, in monotonic ns
    #: (``(0, 0)`` for a user that sent nothing).
    longest: list[tuple[int, int]] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)


def overtaken(parts: Sequence[Waits], start_ns: int, end_ns: int) -> int:
    """A lower bound of the requests sent after ``start_ns`` and answered before ``end_ns``,
    over every driver process of ``parts``."""
    return _overtaken([_times(part) for part in parts], parts, start_ns, end_ns)


def _times(part: Waits) -> list[int]:
    return [sample[0] for sample in part.timeline.samples]


def _overtaken(
    times: Sequence[list[int]], parts: Sequence[Waits], start_ns: int, end_ns: int
) -> int:
    rv = 0
    for at, part in zip(times, parts, strict=True):
        samples = part.timeline.samples
        first = bisect_left(at, start_ns)  # the first sample at or after the start
        last = bisect_right(at, end_ns) - 1  # the last one at or before the end
        if first < len(samples) and last >= 0:
            rv += max(0, samples[last][2] - samples[first][1])
    return rv


def starved_users(parts: Sequence[Waits]) -> int:
    """How many virtual users of a run were starved (see the module's design note)."""
    if not parts:
        return 0
    times = [_times(part) for part in parts]
    rv = 0
    for part in parts:
        floor = max(part.window_ns * STARVED_SHARE, STARVED_MIN_WAIT_NS)
        for start, wait in part.longest:
            if wait > floor and (
                _overtaken(times, parts, start, start + wait) >= STARVED_OVERTAKEN
            ):
                rv += 1
    return rv
