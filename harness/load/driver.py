"""The load driver: many virtual users on one thread, non-blocking sockets, one epoll loop.

Design note: the driver runs in one OS thread of the calling process. Each virtual user is a
:class:`_User` object with at most one request in flight, driven by readiness events from one
``epoll`` (``poll`` where epoll is missing); there are no threads, greenlets or locks, so the
per-user state (its socket, its current token, its buffer) is touched only by this loop, one
event at a time, and nothing is shared between users except the counters of the run. A single
loop measured faster than a thread per user (the GIL hand-offs of 16+ threads cost more than the
requests themselves), and the driver must not be the bottleneck: it aims at 90% of wrk's
throughput on one core (see ``benchmarks/driver_vs_wrk.py``).

Every response is validated inside the loop with :func:`harness.verdict.examine_probe_response`
against the token that user sent; a fast server that answers with another request's data has
failed, not won.

Each user also keeps its longest wait for one response, and the loop samples its counts once a
tick, so the run can say which users the server starved (:mod:`harness.load.fairness`); and it
counts the responses first on their connection and those on a kept-alive one, and of each how
many arrived in two parts about 40 ms apart, so the run can say it waited on the client's
delayed ACKs (:mod:`harness.load.acks`).

A user whose connection is refused (nothing listens on the port) waits for the next tick before
it tries again, and the progress callback hears of it at that tick: retried at once, the users
of a server that died spun in the loop, thousands of refused requests a second, and never let
it reach the progress report through which the caller ends a load whose server is gone.
"""

from __future__ import annotations

import errno
import select
import socket
import time
import typing as t
from collections import deque
from collections.abc import Callable

from harness.protocol import FRAMEWORK_NAMES, probe_path
from harness.verdict import Evidence, ProbeChecker, ProbeProtocolError, observation_names

from .acks import STALL_MAX_NS, STALL_MIN_NS, AckCounts
from .cpu import thread_cpu
from .fairness import Timeline, Waits
from .http import (
    CHUNKED,
    INTERIM,
    LENGTH,
    MAX_BODY,
    Dechunker,
    HttpProtocolError,
    ResponseHead,
    parse_head,
)
from .spec import LoadResult, LoadSpec, loopback_host
from .tokens import load_prefix

__all__ = ["Progress", "run_load"]

#: ``progress(requests_done, errors, leaks)``, called about twice a second and once at the end,
#: and at once when a connection is refused (at most once more per half second): nothing may
#: listen on the port any more, and the caller may know the server is gone and end the run by
#: raising.
Progress = Callable[[int, int, int], None]

_MAX_HEAD = 64 * 1024
# recv() into one reused buffer: sock.recv(n) allocates n bytes per call, and above malloc's mmap
# threshold (128 KiB) that is an mmap + munmap per response, which cost the driver ~20% of wrk's
# throughput against gunicorn's sync worker.
_RECV_SIZE = 64 * 1024
_MAX_HEADS = 256
_TICK_NS = 20_000_000  # how often timeouts are checked
_PROGRESS_NS = 500_000_000

# User states.
_IDLE = 0
_CONNECTING = 1
_SENDING = 2
_READING = 3

_EPOLLIN = getattr(select, "EPOLLIN", select.POLLIN)
_EPOLLOUT = getattr(select, "EPOLLOUT", select.POLLOUT)

_REFUSED = frozenset({errno.ECONNREFUSED})
_RESET = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN})
_perf_ns = time.perf_counter_ns


class _Poller:
    """``epoll`` where available, else ``poll``; timeouts in seconds."""

    def __init__(self) -> None:
        epoll = getattr(select, "epoll", None)
        if epoll is not None:
            self._ep = epoll()
            self.poll: Callable[[float], list[tuple[int, int]]] = self._ep.poll
        else:  # pragma: no cover - non-Linux
            self._ep = select.poll()
            self.poll = lambda timeout: self._ep.poll(timeout * 1000.0)
        self.register = self._ep.register
        self.modify = self._ep.modify

    def close(self) -> None:
        close = getattr(self._ep, "close", None)
        if close is not None:
            close()


class _User:
    __slots__ = (
        "body_start",
        "buf",
        "chunks",
        "deadline",
        "failing",
        "fd",
        "head",
        "index",
        "longest",
        "longest_t0",
        "mask",
        "opened",
        "parted",
        "request",
        "retried",
        "reused",
        "sent",
        "seq",
        "sock",
        "state",
        "t0",
        "token",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.sock: socket.socket | None = None
        self.fd = -1
        self.mask = 0
        self.state = _IDLE
        self.seq = 0
        self.token = ""
        self.request = b""
        self.sent = 0
        self.buf: bytes | bytearray = b""
        self.head: ResponseHead | None = None
        self.body_start = 0
        self.chunks: Dechunker | None = None  # a chunked body's decoder, fed as it arrives
        self.t0 = 0
        self.deadline = 0
        self.reused = False  # the connection already carried a response
        self.parted = 0  # when the first part of a response that came in parts came (ns), or 0
        self.retried = False
        self.opened = 0  # connections this user opened
        self.failing = False  # the request in flight asks the probe to fail (fail=<phase>)
        self.longest = 0  # the longest wait for one response, in ns (see harness.load.fairness)
        self.longest_t0 = 0  # when that wait began


class _Run:
    def __init__(
        self, spec: LoadSpec, progress: Progress | None, *, run_id: str | None = None
    ) -> None:
        host = loopback_host(spec.host)
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.addr = (host, spec.port)
        self.mode = spec.mode
        self.fresh = spec.connections == "fresh"
        self.timeout_ns = int(spec.timeout * 1e9)
        self.left = spec.requests if spec.requests is not None else -1
        self.end_ns = 0
        self.duration_ns = None if spec.duration is None else int(spec.duration * 1e9)
        self.max_evidence = spec.max_evidence
        self.checker = ProbeChecker(spec.mode)
        self.progress = progress
        self.run_id = run_id or load_prefix()

        netloc = f"[{host}]:{spec.port}" if ":" in host else f"{host}:{spec.port}"
        close = "Connection: close\r\n" if self.fresh else ""
        self.prefix = f"GET {probe_path(spec.mount)}?token=".encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in spec.headers)
        self.suffix = (
            f"&sleep_ms={spec.sleep_ms:g} HTTP/1.1\r\nHost: {netloc}\r\n{extra}{close}\r\n"
        ).encode()
        self.fail_part = f"&fail={spec.fail_phase}".encode() if spec.fail_phase else b""
        self.fail_fraction = spec.fail_fraction if spec.fail_phase else 0.0
        self.begun = 0  # requests started, the index of the next one

        self.users = [_User(i) for i in range(spec.concurrency)]
        self.by_fd: dict[int, _User] = {}
        self.pending: deque[_User] = deque()
        # Users whose connection was refused: nothing listens on the port (now). Each waits for
        # the next tick before it tries again, where it would retry at once, so a server that
        # is gone is not counted as thousands of failed requests (each user fails once), and
        # the progress callback is asked first (see run).
        self.refused: list[_User] = []
        # Responses received but not yet checked:
        # (token, status, body, latency_ns, failing, how many requests had finished by then).
        self.answered: list[tuple[str, int, bytes, int, bool, int]] = []
        self.active = 0
        self.poller = _Poller()
        # Response heads already parsed: a server sends the same few heads over and over (they
        # differ in the Date header, once a second), and parse_head is a pure function.
        self.heads: dict[bytes, ResponseHead] = {}
        self.recv_buf = bytearray(_RECV_SIZE)
        self.recv_view = memoryview(self.recv_buf)

        self.done = 0
        #: Requests that ended without a response (a reset, a timeout, a head it cannot read):
        #: ``done - failed`` were answered, what the fairness timeline counts.
        self.failed = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.leaks = 0
        self.framework_leaks = 0
        self.leaky = 0
        self.evidence: list[Evidence] = []
        # Without keep_latencies, a deque of no length drops each one as it is appended.
        self.latencies: list[int] | deque[int] = [] if spec.keep_latencies else deque(maxlen=0)
        self.units: set[tuple[int, int, int | None]] = set()
        self.observed: tuple[str, ...] = ()
        self.reconnects = 0
        self.last_done_ns = 0
        self.injected = 0
        self.injected_outcomes: dict[str, int] = {}
        self.first_leak_at: int | None = None
        self.timeline = Timeline()
        # Responses first on their connection and on a kept-alive one, and of each those that
        # stalled (came in two parts about 40 ms apart): harness.load.acks.
        self.first = 0
        self.first_stalled = 0
        self.reused = 0
        self.stalled = 0

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> LoadResult:
        start = _perf_ns()
        self.last_done_ns = start
        if self.duration_ns is not None:
            self.end_ns = start + self.duration_ns
        pending = self.pending
        answered = self.answered
        pending.extend(self.users)
        self.active = len(self.users)
        poll = self.poller.poll
        by_fd = self.by_fd
        next_tick = start + _TICK_NS
        next_progress = start + _PROGRESS_NS
        early_progress = start - _PROGRESS_NS  # the last report made at once on a refusal
        refused = self.refused
        cpu_start = thread_cpu()
        timeline = self.timeline
        try:
            while pending:  # every user's first request, then the first sample of the timeline
                self._begin(pending.popleft())
            timeline.add(_perf_ns(), self.begun, self.done - self.failed)
            while True:
                while pending:
                    self._begin(pending.popleft())
                if answered:
                    self._check(answered)
                    answered.clear()
                if self.active == 0:
                    break
                for fd, _ in poll(0.02):
                    user = by_fd.get(fd)
                    if user is None:
                        continue
                    if user.state == _READING:
                        self._on_readable(user)
                    else:
                        self._on_writable(user)
                now = _perf_ns()
                if now >= next_tick:
                    next_tick = now + _TICK_NS
                    # Before _expire ends a request.
                    timeline.tick(now, self.begun, self.done - self.failed)
                    self._expire(now)
                    if refused:
                        # Report at once, before they try again: the caller may know that the
                        # server is gone, and end the run (at most once more per interval).
                        if now - early_progress >= _PROGRESS_NS:
                            early_progress = next_progress = now
                        pending.extend(refused)
                        refused.clear()
                    if self.progress is not None and now >= next_progress:
                        next_progress = now + _PROGRESS_NS
                        self.progress(self.done, self.errors, self.leaks)
        finally:
            for user in self.users:
                self._close(user)
            self.poller.close()
        cpu_used = thread_cpu() - cpu_start
        end = _perf_ns()
        timeline.add(end, self.begun, self.done - self.failed)
        wall = max(end - start, 1) / 1e9
        if self.progress is not None:
            self.progress(self.done, self.errors, self.leaks)
        elapsed_ns = max(self.last_done_ns - start, 1)
        elapsed = elapsed_ns / 1e9
        window = elapsed_ns if self.duration_ns is None else min(self.duration_ns, elapsed_ns)
        return LoadResult(
            requests=self.done,
            errors=self.errors,
            error_kinds=dict(self.error_kinds),
            leaks=self.leaks,
            evidence=self.evidence,
            framework_leaks=self.framework_leaks,
            leaky_requests=self.leaky,
            latencies_ms=[ns / 1e6 for ns in self.latencies],
            elapsed_s=elapsed,
            rps=(self.done - self.errors - self.injected) / elapsed,
            units=sorted(self.units, key=lambda u: (u[0], u[1], u[2] or -1)),
            observed=self.observed,
            reconnects=self.reconnects,
            statuses=dict(self.statuses),
            injected=self.injected,
            injected_outcomes=dict(self.injected_outcomes),
            driver_cpu=[round(cpu_used.on_cpu / wall, 4)],
            driver_cpu_wait=[round(cpu_used.waiting / wall, 4)] if cpu_used.known_wait else [],
            first_leak_at=self.first_leak_at,
            waits=[Waits(window, [(u.longest_t0, u.longest) for u in self.users], self.timeline)],
            acks=AckCounts(self.first, self.first_stalled, self.reused, self.stalled),
        )

    def _begin(self, user: _User) -> None:
        """Start the user's next request, or retire the user when the run is over."""
        now = _perf_ns()
        if self.left == 0 or (self.end_ns and now >= self.end_ns):
            self._close(user)
            user.state = _IDLE
            self.active -= 1
            return
        if self.left > 0:
            self.left -= 1
        user.seq += 1
        k = self.begun
        self.begun = k + 1
        # Bresenham: request k fails when the running count of failures due steps up, which
        # spreads exactly fail_fraction of the requests evenly over the run.
        fraction = self.fail_fraction
        user.failing = fraction > 0.0 and int((k + 1) * fraction) > int(k * fraction)
        token = f"{self.run_id}-{user.index}-{user.seq}"
        user.token = token
        middle = token.encode() + self.fail_part if user.failing else token.encode()
        user.request = self.prefix + middle + self.suffix
        user.t0 = now
        user.deadline = now + self.timeout_ns
        user.retried = False
        self._start(user)

    def _start(self, user: _User) -> None:
        user.buf = b""
        user.head = None
        user.chunks = None
        user.sent = 0
        user.parted = 0
        if user.sock is None:
            self._connect(user)
        else:
            user.state = _SENDING
            self._send(user)

    def _connect(self, user: _User) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        user.sock = sock
        user.fd = sock.fileno()
        user.mask = 0
        user.reused = False
        self.by_fd[user.fd] = user
        if user.opened and not self.fresh:
            self.reconnects += 1
        user.opened += 1
        err = sock.connect_ex(self.addr)
        if err in (0, errno.EINPROGRESS, errno.EAGAIN):
            # On loopback the handshake is usually complete by the time connect returns: send
            # at once, and only wait for writability when the kernel says it is not ready yet.
            user.state = _CONNECTING
            self._send(user)
        else:
            self._fail(user, _kind(err))

    def _want(self, user: _User, mask: int) -> None:
        if user.mask == mask:
            return
        if user.mask == 0:
            self.poller.register(user.fd, mask)
        else:
            self.poller.modify(user.fd, mask)
        user.mask = mask

    def _send(self, user: _User) -> None:
        sock = t.cast(socket.socket, user.sock)
        request = user.request
        try:
            user.sent += sock.send(request[user.sent :] if user.sent else request)
        except BlockingIOError:
            pass
        except OSError as exc:
            self._lost(user, exc.errno)
            return
        if user.sent < len(request):
            if user.sent:
                user.state = _SENDING
            self._want(user, _EPOLLOUT)
        else:
            user.state = _READING
            self._want(user, _EPOLLIN)

    def _on_writable(self, user: _User) -> None:
        if user.state == _CONNECTING:
            sock = t.cast(socket.socket, user.sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(user, _kind(err))
                return
        self._send(user)

    def _on_readable(self, user: _User) -> None:
        sock = t.cast(socket.socket, user.sock)
        try:
            n = sock.recv_into(self.recv_buf)
            data = self.recv_view[:n].tobytes()
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(user, exc.errno)
            return
        if not data:
            head = user.head
            if head is not None and head.framing not in (LENGTH, CHUNKED):
                self._complete(user, head.status, bytes(user.buf[user.body_start :]), True)
            else:
                self._lost(user, errno.ECONNRESET)
            return
        buf: bytes | bytearray = data  # most responses: whole in one read, as the bytes it came in
        if user.buf:  # one in parts: appended in place, so each byte is copied once, not per read
            buf = user.buf if type(user.buf) is bytearray else bytearray(user.buf)
            buf += data
        user.buf = buf
        head = user.head
        while head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail(user, "http")
                elif not user.parted:
                    user.parted = _perf_ns()
                return
            raw_head = buf[:end]
            if isinstance(raw_head, bytearray):  # a head that came in parts; a key must be bytes
                raw_head = bytes(raw_head)
            head = self.heads.get(raw_head)
            if head is None:
                try:
                    head = parse_head(raw_head)
                except HttpProtocolError:
                    self._fail(user, "http")
                    return
                if len(self.heads) >= _MAX_HEADS:
                    self.heads.clear()
                self.heads[raw_head] = head
            if head.framing == INTERIM:  # 103 Early Hints: the final response follows
                buf = user.buf = buf[end + 4 :]
                head = None
                continue
            user.head = head
            user.body_start = end + 4
            if head.length > MAX_BODY:
                self._fail(user, "http")
                return
        start = user.body_start
        if len(buf) - start > MAX_BODY:  # a chunked body, or one until close, without end
            self._fail(user, "http")
            return
        if head.framing == LENGTH:
            stop = start + head.length
            if len(buf) < stop:
                if not user.parted:
                    user.parted = _perf_ns()
                return
            if len(buf) > stop:  # bytes the driver never asked for
                self._fail(user, "http")
                return
            self._complete(user, head.status, bytes(buf[start:]), head.close)
        elif head.framing == CHUNKED:
            if user.chunks is None:  # each chunk decoded once, not from the first at each read
                user.chunks = Dechunker(start)
            try:
                decoded = user.chunks.feed(buf)
            except HttpProtocolError:
                self._fail(user, "http")
                return
            if decoded is not None:
                self._complete(user, head.status, decoded[0], head.close)
            elif not user.parted:
                user.parted = _perf_ns()

    # -- outcomes ------------------------------------------------------------------------------

    def _complete(self, user: _User, status: int, body: bytes, close: bool) -> None:
        # The connection first, then the user's next request, and the check of this response
        # last, at the end of the loop turn (see _check): gunicorn's sync worker lingers after its
        # response until the client closes, so the close is on the server's critical path, and
        # so is the next request when the connection is kept alive.
        reused = user.reused
        if close or self.fresh:
            self._close(user)
        else:
            user.reused = True
        wait = self._finished(user)
        # harness.load.acks: did the rest of it wait for the client's delayed ACK?
        parted = user.parted
        stalled = parted and STALL_MIN_NS <= user.t0 + wait - parted < STALL_MAX_NS
        if reused:
            self.reused += 1
            if stalled:
                self.stalled += 1
        else:
            self.first += 1
            if stalled:
                self.first_stalled += 1
        self.answered.append((user.token, status, body, wait, user.failing, self.done))
        user.state = _IDLE
        self._begin(user)

    def _check(self, answered: list[tuple[str, int, bytes, int, bool, int]]) -> None:
        """Check the responses received in this turn of the loop, every one of them."""
        examine = self.checker.examine
        statuses = self.statuses
        latencies = self.latencies
        units = self.units
        for token, status, body, latency, failing, index in answered:
            statuses[status] = statuses.get(status, 0) + 1
            if failing:
                # An expected error: not judged; the requests after it are.
                self._count_injected(str(status))
                continue
            if not 200 <= status < 300:
                self._count_error("non-2xx")
                continue
            try:
                verdict = examine(token, status, body)
            except ProbeProtocolError:
                self._count_error("protocol")
                continue
            latencies.append(latency)
            units.add(verdict.unit)
            evidence = verdict.evidence
            if evidence:
                self.leaks += len(evidence)
                self.framework_leaks += sum(e.name in FRAMEWORK_NAMES for e in evidence)
                self.leaky += 1
                if self.first_leak_at is None or index < self.first_leak_at:
                    self.first_leak_at = index
                room = self.max_evidence - len(self.evidence)
                if room > 0:
                    self.evidence.extend(evidence[:room])
        if not self.observed:  # once per run: the names the first answered response carried
            self.observed = next(
                (observation_names(a[2]) for a in answered if a[1] == 200 and not a[4]), ()
            )

    def _lost(self, user: _User, err: int | None) -> None:
        """The connection failed before a whole response arrived."""
        if user.reused and not user.retried and not user.buf and user.state != _CONNECTING:
            # The server closed an idle keep-alive connection just as we reused it: open a new
            # one and send the request again, as any HTTP client does for a GET. With a token of
            # its own: the first one may have reached the app all the same (a proxy that died
            # after forwarding it), and a token served twice is evidence of a leak.
            user.retried = True
            sent, user.token = user.token, user.token + "-r"
            rest = user.request[len(self.prefix) + len(sent) :]  # the token is ASCII
            user.request = self.prefix + user.token.encode() + rest
            self._close(user)
            self._start(user)
            return
        self._fail(user, _kind(err))

    def _finished(self, user: _User) -> int:
        """Count ``user``'s request as done, answered or failed; its wait in nanoseconds, kept
        as the user's longest when it is (:mod:`harness.load.fairness`)."""
        now = _perf_ns()
        self.done += 1
        self.last_done_ns = now
        wait = now - user.t0
        if wait > user.longest:
            user.longest, user.longest_t0 = wait, user.t0
        return wait

    def _fail(self, user: _User, kind: str) -> None:
        self._finished(user)
        self.failed += 1
        if user.failing:
            self._count_injected(kind)
        else:
            self._count_error(kind)
        self._close(user)
        user.state = _IDLE
        # A refused user waits for the next tick (see self.refused); any other tries again now.
        (self.refused if kind == "refused" else self.pending).append(user)

    def _count_injected(self, outcome: str) -> None:
        self.injected += 1
        self.injected_outcomes[outcome] = self.injected_outcomes.get(outcome, 0) + 1

    def _count_error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def _close(self, user: _User) -> None:
        sock = user.sock
        if sock is None:
            return
        # Closing the socket also removes it from epoll; no unregister call needed.
        self.by_fd.pop(user.fd, None)
        sock.close()
        user.sock = None
        user.fd = -1
        user.mask = 0

    def _expire(self, now: int) -> None:
        for user in self.users:
            if user.state != _IDLE and now > user.deadline:
                user.retried = True  # no transparent retry after a timeout
                self._fail(user, "timeout")


def _kind(err: int | None) -> str:
    if err in _REFUSED:
        return "refused"
    if err in _RESET:
        return "reset"
    if err in (errno.ETIMEDOUT,):
        return "timeout"
    return "os-error"


def run_load(spec: LoadSpec, progress: Progress | None = None) -> LoadResult:
    """Drive probe requests at ``spec`` and check every response.

    Each of ``spec.concurrency`` virtual users sends one request at a time with a token unique to
    the run (``"<session>_<pid>x<load>-<user>-<seq>"``, :mod:`harness.load.tokens`) until
    ``spec.duration`` has passed or ``spec.requests`` have been sent; requests in flight at the
    end are finished (each bounded by ``spec.timeout``). ``keepalive`` reuses one connection per
    user and reconnects transparently when the server closes it (counted in ``reconnects``);
    ``fresh`` opens a new connection per request and sends ``Connection: close``.

    With ``spec.fail_phase``, ``spec.fail_fraction`` of the requests (spread evenly) ask the probe
    to raise at that phase; they are expected errors, counted in ``injected`` by outcome and never
    judged, while every request after them is.

    Refused, reset and timed-out connections, non-2xx statuses and bodies that are not probe
    responses are errors (``error_kinds``); observations that differ from the user's token are
    leaks (``leaks``, with the first ``spec.max_evidence`` kept as evidence). A user whose
    connection is refused tries again a tick (20 ms) later, and ``progress`` is called at once:
    a caller who knows the server is gone ends the run by raising there, each user's refusal
    counted once. Only loopback hosts are accepted (``ValueError`` otherwise).

    ``driver_cpu`` and ``driver_cpu_wait`` say how busy the driver was (see
    :mod:`harness.load.cpu`); ``driver_bound`` is true when it was saturated. With
    ``spec.processes > 1`` the virtual users are shared out to that many driver processes and
    their results merged (:mod:`harness.load.shards`).
    """
    spec.validate()
    if spec.processes > 1:
        from .shards import run_sharded  # a cycle: shards runs this module's loop in children

        return run_sharded(spec, progress)
    return _Run(spec, progress).run()
