"""In-process concurrency tests: does per-request state stay with its request?

Design note: what runs where. Every test builds one probe app on the real core and runs many
requests at once in one of three runtimes, all inside this pytest process:

- ``threads``: 64 OS threads, each with its own werkzeug test client, released together by a
  barrier; the view yields with ``time.sleep`` so requests overlap under the GIL.
- ``greenlets``: 500 gevent greenlets in the main thread, spawned and joined with
  ``gevent.joinall``; the view yields with ``gevent.sleep(0)``. The test process is *not*
  monkey-patched: only code that calls gevent explicitly switches greenlets.
- ``asyncio``: 200 tasks on one event loop. WSGI is synchronous, so a task pushes a request
  context itself (``app.test_request_context``) and runs the hook phases inline, with
  ``await asyncio.sleep(0)`` between them; the teardown hooks run when the context pops.

Every worker serves ``REQUESTS_PER_WORKER`` requests one after the other, each with a unique
token in the query string. A trusted recorder, kept in this module's own ContextVar (which no
backend touches), collects what ``request``, ``g``, ``session`` and ``current_app`` hold at each
phase, and at *entry* (before the app pushes anything) whether a context or anything of the
previous request is still visible. Workers only record; every assertion runs in the main thread.
Exceptions in a worker (a mutant can make a proxy unbound or a pop fail) are recorded as
observations, never allowed to crash the worker.

The same tests run against the correct storage and against each mutant of
``harness.backends``. Expectations, per runtime, and why (a check that never fires is worthless,
so each kind of check has a negative control in every runtime):

=============  ====================  ====================  ====================================
backend        threads               greenlets             asyncio tasks
=============  ====================  ====================  ====================================
contextvar     clean                 clean                 clean
shared-global  cross-talk            cross-talk            cross-talk
thread-ident   clean: each request   cross-talk: all       cross-talk: all tasks run on one
               runs on one OS        greenlets run on one  OS thread, hence one dict entry
               thread, its own key   OS thread, one key
no-reset       residue on every      residue on every      residue on every request after the
               request after the     request after the     first *within a task*; a new task
               first on a thread,    first in a greenlet,  starts from a copy of a clean
               no cross-talk (each   no cross-talk         context, so no cross-talk
               thread has its own    (per-greenlet
               context)              context)
never-release  clean: an entry per   clean: an entry per   cross-talk: the entry belongs to the
               thread, reset on pop  greenlet              thread's greenlet, shared by tasks
               (it leaks memory, not context: see ctxbench soak)
=============  ====================  ====================  ====================================

"cross-talk": some request saw another worker's token during its own phases. "residue": at
entry, a context or the previous request's ``g``/``session`` was still visible. "clean": every
observation equals its expectation, every phase ran, no error, no residue. The no-reset residue is
exact: it shows on request 2..N of every worker and never on request 1.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.test import Client

import core
from core import g, has_app_context, has_request_context, request, session
from harness import backends

THREADS = 64
GREENLETS = 500
TASKS = 200
REQUESTS_PER_WORKER = 3
THREAD_PAUSE_S = 0.002
JOIN_TIMEOUT_S = 30.0

APP_NAME = "ctxbench-probe"
PHASES = ("before_request", "view", "after_request", "teardown_request", "teardown_appcontext")
PROXIES = ("request", "g", "session", "current_app")
# teardown_appcontext runs after the request context is popped (as in Flask): only the app
# context's proxies exist there.
APP_PROXIES = ("g", "current_app")


# -- the trusted recorder ------------------------------------------------------------------------


@dataclass
class Record:
    """What one request saw. ``seen`` values are strings, ``None``, or ``!ExcName`` markers."""

    worker: int
    index: int
    token: str
    obs: list[tuple[str, str, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, phase: str, name: str, seen: str | None) -> None:
        self.obs.append((phase, name, seen))


_cv_record: ContextVar[Record | None] = ContextVar("ctxbench.test.record", default=None)


def token_for(worker: int, index: int) -> str:
    return f"w{worker}-r{index}"


def _read(fn: Callable[[], Any]) -> str | None:
    try:
        rv = fn()
    except Exception as exc:  # a mutant can make a proxy unbound: that is an observation
        return f"!{type(exc).__name__}"
    return None if rv is None else str(rv)


def _read_proxy(name: str) -> str | None:
    if name == "request":
        return _read(lambda: request.args.get("token"))
    if name == "g":
        return _read(lambda: getattr(g, "token", None))
    if name == "session":
        return _read(lambda: session.get("token"))
    return _read(lambda: core.current_app.name)


def observe(phase: str) -> None:
    """Record every proxy as seen now, into the current request's trusted record."""
    rec = _cv_record.get()
    if rec is None:  # a hook ran outside any recorded request: nothing to attribute it to
        return
    for name in APP_PROXIES if phase == "teardown_appcontext" else PROXIES:
        rec.add(phase, name, _read_proxy(name))


def observe_entry(rec: Record) -> None:
    """Before the app pushes: nothing of an earlier request may be visible."""
    rec.add("entry", "residue.has_request_context", _read(lambda: has_request_context() or None))
    rec.add("entry", "residue.has_app_context", _read(lambda: has_app_context() or None))
    rec.add("entry", "residue.g", _read(lambda: getattr(g, "token", None)) if _has_app() else None)
    rec.add("entry", "residue.session", _read(lambda: session.get("token")) if _has_req() else None)


def _has_app() -> bool:
    return _read(has_app_context) == "True"


def _has_req() -> bool:
    return _read(has_request_context) == "True"


# -- the probe app -------------------------------------------------------------------------------


def begin_request() -> None:
    # Store the trusted token, not request.args: a mutant must not be able to launder a foreign
    # token into g or the session and then read it back as "correct".
    rec = _cv_record.get()
    if rec is not None:
        g.token = rec.token
        session["token"] = rec.token
    observe("before_request")


def make_app(pause: Callable[[], object]) -> core.App:
    app = core.App(APP_NAME)
    app.config["SECRET_KEY"] = "ctxbench-test-secret"

    @app.before_request
    def before_request() -> None:
        begin_request()

    @app.route("/probe")
    def view() -> str:
        pause()
        observe("view")
        # Read through the proxy, but never raise: under a mutant an unbound proxy is an
        # observation (the body shows "!RuntimeError"), and every phase still runs.
        return str(_read_proxy("request"))

    @app.after_request
    def after_request(response: Any) -> Any:
        observe("after_request")
        return response

    @app.teardown_request
    def teardown_request(exc: BaseException | None) -> None:
        observe("teardown_request")

    @app.teardown_appcontext
    def teardown_appcontext(exc: BaseException | None) -> None:
        observe("teardown_appcontext")

    return app


# -- the three runtimes --------------------------------------------------------------------------


def serve_wsgi(app: core.App, worker: int) -> list[Record]:
    """One worker: several requests in a row through the real WSGI entry, recorded."""
    client = Client(app, use_cookies=False)
    records: list[Record] = []
    for index in range(REQUESTS_PER_WORKER):
        rec = Record(worker, index, token_for(worker, index))
        records.append(rec)
        reset_token = _cv_record.set(rec)
        try:
            observe_entry(rec)
            response = client.get("/probe", query_string={"token": rec.token})
            try:
                rec.add("response", "status", str(response.status_code))
                rec.add("response", "body", response.get_data(as_text=True))
            finally:
                response.close()
        except Exception as exc:
            rec.errors.append(f"client: {type(exc).__name__}: {exc}")
        finally:
            _cv_record.reset(reset_token)
    return records


def run_threads(app_factory: Callable[[Callable[[], object]], core.App]) -> list[Record]:
    app = app_factory(lambda: time.sleep(THREAD_PAUSE_S))
    start = threading.Barrier(THREADS)
    results: list[list[Record]] = [[] for _ in range(THREADS)]
    failures: list[str] = []

    def target(worker: int) -> None:
        try:
            start.wait(JOIN_TIMEOUT_S)
            results[worker] = serve_wsgi(app, worker)
        except Exception as exc:
            failures.append(f"worker {worker}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "worker threads did not finish"
    assert not failures, failures
    return [rec for worker_records in results for rec in worker_records]


def run_greenlets(app_factory: Callable[[Callable[[], object]], core.App]) -> list[Record]:
    gevent = pytest.importorskip("gevent")
    app = app_factory(lambda: gevent.sleep(0))
    greenlets = [gevent.spawn(serve_wsgi, app, i) for i in range(GREENLETS)]
    gevent.joinall(greenlets, timeout=JOIN_TIMEOUT_S)
    assert all(gl.ready() for gl in greenlets), "greenlets did not finish"
    failed = [f"{gl!r}: {gl.exception!r}" for gl in greenlets if not gl.successful()]
    assert not failed, failed
    return [rec for gl in greenlets for rec in gl.value]


async def serve_async(app: core.App, worker: int) -> list[Record]:
    """One task: several requests in a row, each context pushed directly by the task."""
    records: list[Record] = []
    for index in range(REQUESTS_PER_WORKER):
        rec = Record(worker, index, token_for(worker, index))
        records.append(rec)
        reset_token = _cv_record.set(rec)
        try:
            observe_entry(rec)
            with app.test_request_context("/probe", query_string={"token": rec.token}):
                begin_request()
                await asyncio.sleep(0)
                observe("view")
                body = _read(lambda: request.args.get("token"))
                await asyncio.sleep(0)
                observe("after_request")
                await asyncio.sleep(0)
            # teardown_request / teardown_appcontext ran on pop, above
            rec.add("response", "status", "200")
            rec.add("response", "body", body)
        except Exception as exc:
            rec.errors.append(f"task: {type(exc).__name__}: {exc}")
        finally:
            _cv_record.reset(reset_token)
    return records


def run_asyncio(app_factory: Callable[[Callable[[], object]], core.App]) -> list[Record]:
    # The view's yield is the explicit ``await asyncio.sleep(0)`` in serve_async.
    app = app_factory(lambda: None)

    async def main() -> list[list[Record]]:
        tasks = [asyncio.create_task(serve_async(app, i)) for i in range(TASKS)]
        return await asyncio.wait_for(asyncio.gather(*tasks), JOIN_TIMEOUT_S)

    return [rec for worker_records in asyncio.run(main()) for rec in worker_records]


RUNTIMES: dict[str, Callable[[Callable[[Callable[[], object]], core.App]], list[Record]]] = {
    "threads": run_threads,
    "greenlets": run_greenlets,
    "asyncio": run_asyncio,
}
WORKERS = {"threads": THREADS, "greenlets": GREENLETS, "asyncio": TASKS}


# -- verdict -------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Per-request findings, computed in the main thread from the records."""

    requests: int = 0
    crosstalk: list[str] = field(default_factory=list)  # another worker's token seen
    residue: set[tuple[int, int]] = field(default_factory=set)  # (worker, index) with residue
    # (worker, index) -> {entry name: what was still visible}
    residue_seen: dict[tuple[int, int], dict[str, str]] = field(default_factory=dict)
    residue_foreign: list[str] = field(default_factory=list)  # residue from another worker
    wrong: list[str] = field(default_factory=list)  # any observation != expectation
    missing: list[str] = field(default_factory=list)  # phases that never ran
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.crosstalk or self.residue or self.wrong or self.missing or self.errors)

    def summary(self) -> str:
        def head(items: list[str]) -> str:
            return "; ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        return (
            f"{self.requests} requests: crosstalk={len(self.crosstalk)} [{head(self.crosstalk)}]"
            f" residue={len(self.residue)} wrong={len(self.wrong)} [{head(self.wrong)}]"
            f" missing={len(self.missing)} [{head(self.missing)}]"
            f" errors={len(self.errors)} [{head(self.errors)}]"
        )


def worker_of(token: str) -> int | None:
    if not token.startswith("w") or "-r" not in token:
        return None
    try:
        return int(token[1:].split("-r", 1)[0])
    except ValueError:
        return None


def judge(records: list[Record]) -> Verdict:
    verdict = Verdict(requests=len(records))
    for rec in records:
        where = f"{rec.token}"
        verdict.errors.extend(f"{where}: {err}" for err in rec.errors)
        ran = {phase for phase, _, _ in rec.obs}
        verdict.missing.extend(f"{where}: {p}" for p in PHASES if p not in ran and not rec.errors)
        for phase, name, seen in rec.obs:
            if phase == "entry":
                if seen is not None:
                    verdict.residue.add((rec.worker, rec.index))
                    verdict.residue_seen.setdefault((rec.worker, rec.index), {})[name] = seen
                    other = worker_of(seen)
                    if other is not None and other != rec.worker:
                        verdict.residue_foreign.append(f"{where}: {name}={seen!r}")
                continue
            if name == "status":
                expected: str | None = "200"
            elif name == "current_app":
                expected = APP_NAME
            else:
                expected = rec.token
            if seen == expected:
                continue
            finding = f"{where}: {phase}.{name} expected {expected!r}, saw {seen!r}"
            verdict.wrong.append(finding)
            other = worker_of(seen) if seen is not None else None
            if other is not None and other != rec.worker:
                verdict.crosstalk.append(finding)
    return verdict


# -- the cases -----------------------------------------------------------------------------------

CLEAN, CROSSTALK, RESIDUE = "clean", "crosstalk", "residue"


@dataclass(frozen=True)
class Case:
    runtime: str
    backend: str
    expect: str


CASES = [
    # runtime, backend, expectation; the id carries the reason where a mutant cannot leak
    pytest.param(Case("threads", "contextvar", CLEAN), id="threads-contextvar-clean"),
    pytest.param(Case("threads", "shared-global", CROSSTALK), id="threads-shared-global-crosstalk"),
    pytest.param(
        Case("threads", "thread-ident", CLEAN),
        id="threads-thread-ident-clean-each-request-keeps-its-os-thread",
    ),
    pytest.param(
        Case("threads", "no-reset", RESIDUE),
        id="threads-no-reset-residue-on-thread-reuse-no-crosstalk-context-per-thread",
    ),
    pytest.param(Case("greenlets", "contextvar", CLEAN), id="greenlets-contextvar-clean"),
    pytest.param(
        Case("greenlets", "shared-global", CROSSTALK), id="greenlets-shared-global-crosstalk"
    ),
    pytest.param(
        Case("greenlets", "thread-ident", CROSSTALK),
        id="greenlets-thread-ident-crosstalk-greenlets-share-one-os-thread",
    ),
    pytest.param(
        Case("greenlets", "no-reset", RESIDUE),
        id="greenlets-no-reset-residue-on-greenlet-reuse-no-crosstalk-context-per-greenlet",
    ),
    pytest.param(Case("asyncio", "contextvar", CLEAN), id="asyncio-contextvar-clean"),
    pytest.param(Case("asyncio", "shared-global", CROSSTALK), id="asyncio-shared-global-crosstalk"),
    pytest.param(
        Case("asyncio", "thread-ident", CROSSTALK),
        id="asyncio-thread-ident-crosstalk-tasks-share-one-os-thread",
    ),
    pytest.param(
        Case("asyncio", "no-reset", RESIDUE),
        id="asyncio-no-reset-residue-within-one-task-no-crosstalk-context-per-task",
    ),
    pytest.param(
        Case("threads", "never-release", CLEAN),
        id="threads-never-release-clean-an-entry-per-thread-reset-on-pop",
    ),
    pytest.param(
        Case("greenlets", "never-release", CLEAN),
        id="greenlets-never-release-clean-an-entry-per-greenlet-reset-on-pop",
    ),
    pytest.param(
        Case("asyncio", "never-release", CROSSTALK),
        id="asyncio-never-release-crosstalk-tasks-share-their-threads-entry",
    ),
]


@pytest.fixture(autouse=True)
def _restore_default_storage() -> Iterator[None]:
    # A mutant leaves state behind (stale no-reset values, thread-ident entries of the main
    # thread); clear it, and fail the test if the *correct* storage was left with a context.
    yield
    backends.restore_default()


@pytest.mark.parametrize("case", CASES)
def test_isolation(case: Case) -> None:
    backends.install(case.backend)
    records = RUNTIMES[case.runtime](make_app)
    verdict = judge(records)
    workers = WORKERS[case.runtime]
    assert verdict.requests == workers * REQUESTS_PER_WORKER
    report = f"{case.runtime}/{case.backend}: {verdict.summary()}"

    if case.expect == CLEAN:
        assert verdict.clean, report
    elif case.expect == CROSSTALK:
        assert verdict.crosstalk, f"expected cross-talk, the check did not fire: {report}"
    else:
        # Exact: residue on every request after the first of each worker, never on the first,
        # and only ever the same worker's own earlier request.
        expected = {(w, i) for w in range(workers) for i in range(1, REQUESTS_PER_WORKER)}
        assert verdict.residue == expected, report
        # ...and what is left is exactly the previous request of the same worker.
        for (worker, index), seen in verdict.residue_seen.items():
            previous = token_for(worker, index - 1)
            assert seen == {
                "residue.has_request_context": "True",
                "residue.has_app_context": "True",
                "residue.g": previous,
                "residue.session": previous,
            }, (case, worker, index, seen)
        assert not verdict.residue_foreign, report
        assert not verdict.crosstalk, report


def test_every_check_has_a_negative_control() -> None:
    # For every runtime, each kind of check is expected to fire for at least one mutant.
    cases = [p.values[0] for p in CASES]
    for runtime in RUNTIMES:
        expectations = {c.expect for c in cases if c.runtime == runtime}
        assert {CROSSTALK, RESIDUE} <= expectations, runtime
        assert any(c.backend == "contextvar" and c.expect == CLEAN for c in cases)
    assert {c.backend for c in cases} == set(backends.BACKENDS)
