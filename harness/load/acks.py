"""Whether a kept-alive cell measured the client's delayed-ACK timer instead of the server.

Design note: a server that writes a response in two ``send()`` calls (its head, then its body)
with Nagle's algorithm on (no ``TCP_NODELAY`` on the accepted socket) holds the second write
until the client acknowledges the first. On a fresh connection the client's kernel acknowledges
at once (Linux starts a connection in quick-ACK mode), so the first request is fast; on a
kept-alive connection the client has nothing to send back until the response is whole, so its
kernel delays the ACK (40 ms on Linux) and every request after the first waits for that timer.
The throughput is then the timer's: 16 keep-alive users get about 16 / 44 ms = 360 requests/s
from any server, whatever its speed (uvicorn ``--workers N``, uvicorn #3149, measured 338 req/s
under wrk where the same server with ``TCP_NODELAY`` answered each request in about 1 ms;
gevent's pywsgi without ``TCP_NODELAY`` does the same).

A response **stalled** when its last bytes came :data:`STALL_MIN_NS`..:data:`STALL_MAX_NS`
after its first bytes. The driver counts, per driver process, without a clock read on its
common path (only a response that arrives in more than one read gets one, when its first part
came; a response that arrives whole never stalled):

- ``first``: responses that were the first on their connection, and ``first_stalled``, those
  of them that stalled;
- ``reused``: responses on a kept-alive connection that had already carried one, and
  ``stalled``, those of them that stalled.

A cell **waited on delayed ACKs** (:func:`waited_on_delayed_acks`) when at least
:data:`MIN_REUSED` responses came on kept-alive connections, more than :data:`STALLED_SHARE` of
them stalled, and fewer than :data:`FIRST_STALLED_SHARE` of the first responses on a connection
did. The stall is measured between the first and the last bytes of one response, not as its
latency, because a slow server under load has 40 ms latencies too (16 users on a server that
answers 400 requests/s wait 40 ms each, Little's law; and the first requests of a run queue
behind each other while the server accepts its connections), but it sends each response as
soon as it is made: its head and body leave together, or microseconds apart. The first
responses on a connection are the contrast that names the cause: the client acknowledged them
at once, so they came whole, where a server that pauses between a head and its body (an app
that streams its body, a machine stalled for everybody) splits those too. Nothing here decides
on one response: the judgement runs once, on the counts of the measured runs pooled
(:attr:`harness.results.Cell.delayed_acks`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DELAYED_ACK_ADVICE",
    "FIRST_STALLED_SHARE",
    "MIN_REUSED",
    "STALLED_SHARE",
    "STALL_MAX_NS",
    "STALL_MIN_NS",
    "AckCounts",
    "waited_on_delayed_acks",
]

#: A response whose last bytes came at least this long (ns) after its first ...
STALL_MIN_NS = 30_000_000
#: ... and less than this long waited for the client's delayed ACK (Linux: 40 ms, up to 200 ms
#: once its estimate of the round trip grows; measured here 40-45 ms on loopback).
STALL_MAX_NS = 80_000_000
#: The fewest responses on kept-alive connections a judgement rests on.
MIN_REUSED = 20
#: More than this share of the kept-alive responses stalled ...
STALLED_SHARE = 0.5
#: ... while fewer than this share of the first responses on a connection did.
FIRST_STALLED_SHARE = 0.5

#: What a cell that waited on delayed ACKs means and what to do; the summary and report say it.
DELAYED_ACK_ADVICE = (
    "most responses on kept-alive connections arrived in two parts about 40 ms apart while the"
    " first response on each connection came whole: the server writes a response's head and body"
    " in two sends with Nagle's algorithm on, so the body waited for the client's delayed ACK,"
    " and the throughput and latency are the ACK timer's, not the server's. Set TCP_NODELAY on"
    " the server's accepted sockets; uvicorn --workers N leaves it off (uvicorn #3149: hand it a"
    " listening socket created with IPPROTO_TCP, or run one uvicorn per port behind a proxy)"
)


@dataclass(frozen=True)
class AckCounts:
    """What one driver process (or several, added up) saw of kept-alive responses that waited
    for the client's delayed ACK (see the module's design note)."""

    #: Responses that were the first on their connection ...
    first: int = 0
    #: ... and of those, the ones that stalled (their last bytes came
    #: :data:`STALL_MIN_NS`..:data:`STALL_MAX_NS` after their first).
    first_stalled: int = 0
    #: Responses on a kept-alive connection that had carried one before ...
    reused: int = 0
    #: ... and of those, the ones that stalled.
    stalled: int = 0

    def __add__(self, other: AckCounts) -> AckCounts:
        return AckCounts(
            self.first + other.first,
            self.first_stalled + other.first_stalled,
            self.reused + other.reused,
            self.stalled + other.stalled,
        )


def waited_on_delayed_acks(counts: AckCounts) -> bool:
    """True when most kept-alive responses stalled on the client's delayed ACK while the first
    responses on a connection came whole (see the module's design note)."""
    return (
        counts.reused >= MIN_REUSED
        and counts.stalled > counts.reused * STALLED_SHARE
        and counts.first_stalled < counts.first * FIRST_STALLED_SHARE
    )
