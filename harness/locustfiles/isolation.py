"""Locust load test that fails on a request-context leak.

    locust -f "$(ctxbench locustfile)" --headless -u 50 -r 50 -t 30s -H http://127.0.0.1:PORT

against a server started with ``ctxbench serve --mode MODE`` (``ctxbench locustfile`` prints
this file's path: it ships in the ``harness`` package, a file for locust to load, never imported).
Each user sends probe requests (``GET /_ctxbench/probe?token=T&sleep_ms=S``) with a fresh token
and checks every response with :func:`harness.verdict.check_probe_response`, the same verdict the
harness's own load driver uses.

What runs where: locust runs every user as a greenlet in this process (``import locust``
monkey-patches it with gevent, so never import this file into a process that hosts a server).
With ``--processes N`` or ``--master``/``--worker``, users run in worker processes and the
master runs none; each worker sends its counts to the master with every stats report
(``report_to_master``), and the master adds them up (``worker_report``) and decides the exit
code. Counts travel as deltas, so a worker's last report (sent when the master tells it to quit,
just before the master shuts down, or as a signal of its own stops it) is folded in like any
other.

Outcomes, each its own constant failure message so locust groups them:

- ``context leak``: the response carried another request's state (details are logged, the first
  few in full; each piece of evidence names mode, phase, name, expected, seen and the unit);
- ``http error``: a status other than 200; ``connection error``: no response at all;
- ``probe protocol error``: a 200 whose body is not a probe response (wrong app, wrong path).

Exit code: 3 when any leak was seen, whatever ``--exit-code-on-error`` says (a leak is never an
acceptable failure rate); 2 when fewer than half the probe requests were checked (no verdict,
with the reason and what to check), whatever it says too; otherwise locust's own rules
(``--exit-code-on-error``, default 1 on any failure; 2 on an unhandled exception). On a
distributed run this is the master's exit code; the workers exit by locust's rules.

The master listens on 127.0.0.1 only (locust's default is every interface): give
``--master-bind-host`` to let workers on other machines in. With ``--processes`` it listens on
a free port, which the workers it forks are told (locust's default, 5557, would be shared by
two runs at once); ``--master-bind-port`` or ``--master-port`` picks one. The workers it forks
die with it, even by ``kill -9``. Separate ``--master`` and ``--worker`` processes meet on
locust's 5557 unless told another.

``-H`` may end in the path prefix the app is served under (``-H http://127.0.0.1:8000/api``
for an app a dispatcher mounts at ``/api``, or behind an nginx ``location /api/``): the probe is
requested there, as ``ctxbench run --target`` requests it; a trailing slash is dropped (locust
would request ``/api//_ctxbench/probe``), and a bad prefix is refused like a bad option.

Options added to locust's: ``--sleep-ms`` (how long each probe request yields in the view,
default 1) and ``--ctx-mode`` (the label written into the evidence, e.g. the server mode). A
probe behind a secret is reached as ``ctxbench run --target`` reaches it: set
``CTXBENCH_PROBE_SECRET`` to the server's value and every request sends it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.exception import RPCSendError
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

try:
    from harness.errors import PortInUseError, UsageError
except ModuleNotFoundError as e:
    if e.name != "harness":
        raise
    # A locust of another Python (pipx, a system package, another venv) loads this file: one
    # line and exit status 2, as for a bad option, not locust's traceback of the import.
    # In a checkout, the folder to install from; installed, the copy of a venv that has it.
    checkout = Path(__file__).resolve().parents[2]
    install = (
        f", or install ctxbench into this one ({sys.executable} -m pip install '{checkout}')"
        if (checkout / "pyproject.toml").is_file()
        else ""
    )
    sys.stderr.write(
        f"locust: error: {Path(__file__).name} needs ctxbench, which the Python this locust runs"
        f" on does not have ({sys.executable}): run the locust of the venv that has ctxbench"
        f"{install}\n"
    )
    raise SystemExit(2) from None
from harness.protocol import FRAMEWORK_NAMES, MAX_SLEEP_MS, PROBE_PATH, parse_mount
from harness.report.summary import MIN_CHECKED_SHARE
from harness.servers import check_port_free, free_port
from harness.servers._state import die_with_parent
from harness.target import secret_headers, secret_hint
from harness.verdict import ProbeProtocolError, check_probe_response

logger = logging.getLogger("ctxbench.locust")

LEAK_EXIT_CODE = 3
#: Fewer than half the probe requests checked (nothing listening, no probe, a missing secret, a
#: server gone mid-run) and no leak: no verdict, as ``ctxbench run`` exits.
NO_VERDICT_EXIT_CODE = 2
#: Pieces of evidence kept (and sent to the master) per process; the counts stay exact.
EVIDENCE_KEPT = 20
#: Leaks logged in full per process; after that only the count grows.
LEAKS_LOGGED = 5

LEAK = "context leak"
HTTP_ERROR = "http error"
CONNECTION_ERROR = "connection error"
PROTOCOL_ERROR = "probe protocol error"


class ProbeFailure(Exception):
    """A failed probe request, named by its message alone wherever locust names it.

    locust names a failure by the ``repr()`` of its exception (its ``--csv`` failures file, the
    web UI, a distributed run's error report) or, in a single process's error report, by the
    message of the ``CatchResponseError`` it wraps a string in. A leak given as a string read
    ``context leak`` there, ``'context leak'`` in a distributed run's report and
    ``CatchResponseError('context leak')`` in the CSV; given as this, it reads ``context leak``
    in all of them, one message to count and grep for.
    """

    def __repr__(self) -> str:
        return str(self)


@dataclass
class Tally:
    """Counts of one process; a worker drains it into each report, the master merges them."""

    checked: int = 0  # probe responses checked (200s that reached the verdict)
    leaky_requests: int = 0  # responses with at least one leaking observation
    leaks: int = 0  # leaking observations, the harness's unit (one per piece of evidence)
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count
    evidence: list[dict[str, Any]] = field(default_factory=list)
    #: Leaking observations per name (``g``, ``request``, an app's own ``observe()`` name), every
    #: one counted where ``evidence`` keeps the first few: whose state leaked, for the verdict.
    names: Counter[str] = field(default_factory=Counter)
    #: On the master: responses checked per worker (its client id), to rate each worker.
    per_worker: Counter[str] = field(default_factory=Counter)

    def drain(self) -> dict[str, Any]:
        """The counts so far as a plain dict for the master, and reset them to zero."""
        data = {
            "checked": self.checked,
            "leaky_requests": self.leaky_requests,
            "leaks": self.leaks,
            "errors": dict(self.errors),
            "evidence": self.evidence,
            "names": dict(self.names),
        }
        self.checked = self.leaky_requests = self.leaks = 0
        self.errors = Counter()
        self.evidence = []
        self.names = Counter()
        return data

    def merge(self, data: dict[str, Any], worker: str = "") -> None:
        """Add a worker's drained counts."""
        self.checked += int(data.get("checked", 0))
        self.per_worker[worker] += int(data.get("checked", 0))
        self.leaky_requests += int(data.get("leaky_requests", 0))
        self.leaks += int(data.get("leaks", 0))
        self.errors.update({str(k): int(v) for k, v in data.get("errors", {}).items()})
        room = EVIDENCE_KEPT - len(self.evidence)
        self.evidence.extend(list(data.get("evidence", []))[: max(room, 0)])
        self.names.update({str(k): int(v) for k, v in data.get("names", {}).items()})

    def summary(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "leaky_requests": self.leaky_requests,
            "leaks": self.leaks,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(sorted(self.errors.items())),
            # The workers' own counts, in the order of their ids (a distributed run only).
            "checked_per_worker": [n for _, n in sorted(self.per_worker.items())],
        }


TALLY = Tally()
#: The probe secret header (from ``CTXBENCH_PROBE_SECRET``), sent with every request when set.
HEADERS = dict(secret_headers())
_logged = 0


#: Where locust's master and its web UI listen unless told otherwise (locust's own default is
#: every interface for both, and either takes commands from anyone who connects).
MASTER_BIND_HOST = "127.0.0.1"
#: locust's own master port, for separate ``--master`` and ``--worker`` processes.
LOCUST_MASTER_PORT = 5557


#: The process locust loaded this file in: under ``--processes``, the one that forks the workers.
_LOADED_IN = os.getpid()


@events.init.add_listener
def _clock_from_now(**kwargs: Any) -> None:
    # locust arms --run-time right after this event with gevent.spawn_later, which counts from
    # the event loop's cached clock, read when the loop was made and not since: imports that
    # took longer than the run time (a busy machine) ended the run before any request was sent.
    import gevent  # locust imported it first

    gevent.get_hub().loop.update_now()


@events.init.add_listener
def _die_with_the_master(environment: Any, runner: Any, **kwargs: Any) -> None:
    # A worker forked by --processes is killed with the process that forked it, even by kill -9:
    # else it waits 60 s for the master's heartbeat, its users loading the server all the while.
    if isinstance(runner, WorkerRunner) and os.getpid() != _LOADED_IN:
        die_with_parent(_LOADED_IN)


@events.init.add_listener
def _report_before_quitting(environment: Any, runner: Any, **kwargs: Any) -> None:
    # A worker stopped by a signal of its own (a Ctrl-C reaches every process of the terminal)
    # tells the master it quits without the report of its last seconds, which locust sends only
    # when the master says quit: up to 3 s of counts, leaks included. Added after locust's own
    # quitting listener, this one runs before it (quitting fires in reverse).
    if not isinstance(runner, WorkerRunner):
        return

    def report(**kwargs: Any) -> None:
        with contextlib.suppress(RPCSendError):  # the master is gone: nobody to report to
            runner._send_stats()  # the stats report, with our counts (_send_counts)

    environment.events.quitting.add_listener(report)


@events.init_command_line_parser.add_listener
def _loopback_master(parser: Any) -> None:
    # An explicit --master-bind-host or --web-host, LOCUST_MASTER_BIND_HOST, LOCUST_WEB_HOST or
    # config value still wins. The ports default to None so that what the user gave can be told
    # from locust's default.
    parser.set_defaults(
        master_bind_host=MASTER_BIND_HOST,
        web_host=MASTER_BIND_HOST,
        master_bind_port=None,
        master_port=None,
    )
    parse_args = parser.parse_args

    def parse(*args: Any, **kwargs: Any) -> Any:
        options = parse_args(*args, **kwargs)
        sleep_ms = getattr(options, "sleep_ms", 1.0)
        if not (math.isfinite(sleep_ms) and 0 <= sleep_ms <= MAX_SLEEP_MS):
            # As locust reports its own bad options (usage, then the error; exit status 2),
            # rather than a run in which every request fails with the probe's 400.
            parser.error(
                f"argument --sleep-ms: use milliseconds in [0, {MAX_SLEEP_MS:g}], got {sleep_ms:g}"
            )
        host = getattr(options, "host", None)
        if host:
            try:
                options.host = _probe_host(host)
            except ValueError as e:
                parser.error(f"argument -H/--host: {e}")
        if getattr(options, "processes", None):
            # The workers are forked after this parse and connect to master_port.
            port = options.master_bind_port or options.master_port or free_port(MASTER_BIND_HOST)
        else:
            port = LOCUST_MASTER_PORT
        options.master_bind_port = options.master_bind_port or port
        options.master_port = options.master_port or port
        if getattr(options, "master", False):
            why = _master_port_taken(options.master_bind_host, options.master_bind_port)
            if why:
                parser.error(why)  # locust's own report of a taken port is a traceback
        return options

    parser.parse_args = parse


def _master_port_taken(host: str, port: int) -> str | None:
    """Why a ``--master`` cannot listen on ``host:port``, or ``None`` when it can."""
    try:
        check_port_free(port, "0.0.0.0" if host in ("*", "") else host)
    except PortInUseError:
        return (
            f"argument --master-bind-port: port {port} on {host} is in use (another locust"
            " master, or another program): stop it, or give this master --master-bind-port N"
            " and each worker --master-port N"
        )
    except UsageError as e:
        return f"argument --master-bind-host: {e}"
    return None


def _probe_host(host: str) -> str:
    """``--host`` as the users' requests are built on it (locust appends the request's path):
    the server's root, or the path prefix its app is served under (``http://127.0.0.1:8000/api``,
    the probe at ``/api/_ctxbench/probe``), without a trailing slash."""
    parts = urllib.parse.urlsplit(host)
    if parts.query or parts.fragment:
        raise ValueError(f"{host!r} has a query or fragment: give the URL the app is served at")
    if not parts.path:
        return host
    mount = parse_mount(parts.path)  # ValueError: what is wrong with the prefix
    return urllib.parse.urlunsplit(parts._replace(path=mount.rstrip("/")))


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--sleep-ms",
        type=float,
        default=1.0,
        help="ctxbench: milliseconds each probe request yields inside the view (default 1)",
    )
    parser.add_argument(
        "--ctx-mode",
        default="locust",
        help="ctxbench: label written into leak evidence, e.g. the server mode (default locust)",
    )


class ProbeUser(FastHttpUser):
    """Sends probe requests back to back, each with its own token, and checks every answer."""

    wait_time = constant(0)

    @task
    def probe(self) -> None:
        options = self.environment.parsed_options
        sleep_ms = getattr(options, "sleep_ms", 1.0)
        mode = getattr(options, "ctx_mode", "locust")
        token = uuid.uuid4().hex  # fork-safe: unique across --processes workers too
        url = f"{PROBE_PATH}?token={token}&sleep_ms={sleep_ms:g}"
        with self.client.get(
            url, name=PROBE_PATH, headers=HEADERS, catch_response=True
        ) as response:
            status = response.status_code
            if not status or response.content is None:
                TALLY.errors[CONNECTION_ERROR] += 1
                response.failure(ProbeFailure(CONNECTION_ERROR))
                return
            if status != 200:
                TALLY.errors[f"{HTTP_ERROR} {status}"] += 1
                response.failure(ProbeFailure(HTTP_ERROR))
                return
            try:
                evidence = check_probe_response(token, status, response.content, mode=mode)
            except ProbeProtocolError as exc:
                TALLY.errors[PROTOCOL_ERROR] += 1
                _log_protocol_error(exc)
                response.failure(ProbeFailure(PROTOCOL_ERROR))
                return
            TALLY.checked += 1
            if not evidence:
                response.success()
                return
            TALLY.leaky_requests += 1
            TALLY.leaks += len(evidence)
            TALLY.names.update(ev.name for ev in evidence)
            room = EVIDENCE_KEPT - len(TALLY.evidence)
            TALLY.evidence.extend(ev.to_dict() for ev in evidence[: max(room, 0)])
            _log_leak(token, evidence)
            response.failure(ProbeFailure(LEAK))


def _log_leak(token: str, evidence: list[Any]) -> None:
    global _logged
    _logged += 1
    if _logged <= LEAKS_LOGGED:
        lines = "\n".join(f"  {ev}" for ev in evidence)
        logger.error("context leak in the response to token %s:\n%s", token, lines)
    elif _logged == LEAKS_LOGGED + 1:
        logger.error("more context leaks: counting them, not logging each one")


def _log_protocol_error(exc: ProbeProtocolError) -> None:
    if TALLY.errors[PROTOCOL_ERROR] <= LEAKS_LOGGED:
        logger.error("probe protocol error: %s", exc)


@events.report_to_master.add_listener
def _send_counts(client_id: str, data: dict[str, Any], **kwargs: Any) -> None:
    data["ctxbench"] = TALLY.drain()


@events.worker_report.add_listener
def _receive_counts(client_id: str, data: dict[str, Any], **kwargs: Any) -> None:
    counts = data.get("ctxbench")
    if counts:
        TALLY.merge(counts, client_id)


@events.quitting.add_listener
def _decide_exit_code(environment: Any, **kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master decides; a worker's counts have gone to it
    if isinstance(environment.runner, LocalRunner):
        # A Ctrl-C or SIGTERM fires quitting with the users still running (locust stops a
        # local run after its quitting listeners; a master stops its workers before this one,
        # in a listener of its own): stopped here, every request locust counts is judged.
        environment.runner.stop()
    summary = TALLY.summary()
    # locust's own failure stats arrive in the same messages as our counts; use them as a
    # cross-check so a leak can never be lost between the two.
    failures = sum(
        err.occurrences for err in environment.stats.errors.values() if LEAK in str(err.error)
    )
    summary["leak_failures"] = failures
    summary["role"] = "master" if isinstance(environment.runner, MasterRunner) else "local"
    # The measured window: first request to last, as locust's own stats keep it.
    total = environment.stats.total
    last = total.last_request_timestamp or total.start_time
    summary["elapsed_s"] = round(max(last - total.start_time, 0.0), 3)
    logger.info("ctxbench summary %s", json.dumps(summary, sort_keys=True))
    if TALLY.leaks or failures:
        for item in TALLY.evidence[:LEAKS_LOGGED]:
            logger.error("leak evidence: %s", json.dumps(item, sort_keys=True))
        leaks, crossed = whose_state(TALLY.names)
        logger.error(
            "ctxbench: %s %s in %s responses: %s; exiting with %d",
            f"{TALLY.leaks:,}",
            leaks,
            f"{max(TALLY.leaky_requests, failures):,}",
            crossed,
            LEAK_EXIT_CODE,
        )
        environment.process_exit_code = LEAK_EXIT_CODE
    elif not TALLY.checked and not TALLY.errors:
        # Nothing came back, not even an error, so the server is not the suspect: the users
        # sent nothing (stopped at once, -u 0), or a master's workers sent no counts (killed
        # outright; one stopped by a signal reports as it quits: _report_before_quitting).
        master = isinstance(environment.runner, MasterRunner)
        logger.error(
            "ctxbench: no verdict: %s, so nothing was checked: the run ended before any request"
            " did (stopped at once, or no users)%s; exiting with %d",
            "no worker reported a probe request's answer or error"
            if master
            else "no probe request got an answer or an error",
            ", or the workers stopped before they reported (interrupted, or gone)"
            if master
            else "",
            NO_VERDICT_EXIT_CODE,
        )
        environment.process_exit_code = NO_VERDICT_EXIT_CODE
    elif too_few_checked(TALLY):
        # As ``ctxbench run`` judges a cell: no "no leak" verdict rests on a run that checked
        # fewer than half its requests, whatever --exit-code-on-error allows.
        sent = TALLY.checked + sum(TALLY.errors.values())
        failed = ", ".join(f"{n:,} {kind}" for kind, n in sorted(TALLY.errors.items()))
        logger.error(
            "ctxbench: no verdict: %s of %s probe requests were checked%s, fewer than %s, so a"
            " clean result proves nothing; check that %s is up and serves the probe (its server"
            " started with CTXBENCH_PROBE=1%s) and that -H is where the app is served (a path"
            " prefix at its end); exiting with %d",
            f"{TALLY.checked:,}",
            f"{sent:,}",
            f" (the others failed: {failed})" if failed else "",
            f"{MIN_CHECKED_SHARE:.0%}",
            environment.host,
            secret_hint(),
            NO_VERDICT_EXIT_CODE,
        )
        environment.process_exit_code = NO_VERDICT_EXIT_CODE


def whose_state(names: Counter[str]) -> tuple[str, str]:
    """What leaked, from the leaking observations' names: ``("context leaks", "the framework's
    context (g, request) crossed between requests")``, or the app's own state it gave
    ``observe()``, "not the framework's context", as ``ctxbench run``'s verdict tells them
    apart. A module-level dict of the app's is no context leak of Flask's."""
    framework = ", ".join(sorted(n for n in names if n in FRAMEWORK_NAMES))
    own = ", ".join(sorted(n for n in names if n not in FRAMEWORK_NAMES))
    if not framework and not own:  # locust counted leak failures that sent no counts
        return "context leaks", "request state crossed between requests"
    if not framework:
        return "leaks", (
            f"the app's own state (observe(): {own}) crossed between requests, not the"
            " framework's context"
        )
    also = f" and the app's own state (observe(): {own})" if own else ""
    return "context leaks", f"the framework's context ({framework}){also} crossed between requests"


def too_few_checked(tally: Tally) -> bool:
    """Fewer than :data:`MIN_CHECKED_SHARE` of the probe requests sent were checked (every one,
    when none was sent): refused, reset, a status other than 200, not a probe response."""
    sent = tally.checked + sum(tally.errors.values())
    return tally.checked == 0 or tally.checked < sent * MIN_CHECKED_SHARE
