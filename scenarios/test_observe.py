"""``observe()`` catches an app's own per-request state that is shared across greenlets.

The apps in :mod:`scenarios.apps.local_state` run on the correct core (``contextvar``), so the
framework's proxies are isolated everywhere; what can leak is the app's own state, which it
reports with ``observe("app_local", ...)`` after the probe view yielded. An OS-thread-local
(the original ``threading.local`` under gevent's patching) is shared by every greenlet of a
gevent worker, so it must be caught there, and only there: under real threads (gthread, the
werkzeug dev server) it is isolated. That is the ``thread-ident`` cell of the derived table. The
same app keeping its state in a ``ContextVar`` is the negative control: it passes under gevent.
A plain Flask app with the same thread-local is caught the same way: users bring Flask apps.
"""

from __future__ import annotations

import importlib.util
import typing as t

import pytest

from harness.expectations import (
    MODULE_THREAD_LOCAL,
    applicable_patterns,
    derive_expectation,
    derive_table,
)
from harness.servers import MODES
from harness.servers.uwsgi_gevent import EARLY_PATCH, LATE_PATCH

THREAD_LOCAL_APP = "scenarios.apps.local_state:thread_local_app"
CONTEXTVAR_APP = "scenarios.apps.local_state:contextvar_app"
MODULE_LOCAL_APP = "scenarios.apps.local_state:module_local_app"
FLASK_THREAD_LOCAL_APP = "scenarios.apps.flask_local_state:app"
THREAD_LOCAL_APPS = (THREAD_LOCAL_APP, FLASK_THREAD_LOCAL_APP)
NO_FLASK = pytest.mark.skipif(
    importlib.util.find_spec("flask") is None, reason="flask is not installed"
)
NAME = "app_local"

#: (label, app, mode, server arguments, whether observe() must catch the app's state).
RUNS: list[tuple[str, str, str, tuple[str, ...], bool]] = [
    ("thread-local", THREAD_LOCAL_APP, "gunicorn-gevent", (), True),
    ("thread-local", THREAD_LOCAL_APP, "gunicorn-gthread", (), False),
    ("thread-local", THREAD_LOCAL_APP, "werkzeug-threaded", (), False),
    ("contextvar", CONTEXTVAR_APP, "gunicorn-gevent", (), False),
    # A user's Flask app with the same thread-local: caught under gevent, clean on real threads.
    ("flask-thread-local", FLASK_THREAD_LOCAL_APP, "gunicorn-gevent", (), True),
    ("flask-thread-local", FLASK_THREAD_LOCAL_APP, "gunicorn-gthread", (), False),
    # The same OS-thread-local under the other stacks: caught wherever greenlets share a thread.
    ("thread-local", THREAD_LOCAL_APP, "eventlet", (), True),
    ("thread-local", THREAD_LOCAL_APP, "uwsgi-gevent", (), True),
    ("thread-local", THREAD_LOCAL_APP, "uwsgi-threads", (), False),
    ("thread-local", THREAD_LOCAL_APP, "uwsgi-processes", (), False),
    ("thread-local", THREAD_LOCAL_APP, "gunicorn-tornado", (), False),
    ("thread-local", THREAD_LOCAL_APP, "waitress", (), False),
    ("thread-local", THREAD_LOCAL_APP, "granian", (), False),
    # A plain module-level threading.local(): greenlet-local when the server patches threading
    # before it imports the app, one native local shared by the greenlets when it patches after.
    ("module-local", MODULE_LOCAL_APP, "uwsgi-gevent", (EARLY_PATCH,), False),
    ("module-local", MODULE_LOCAL_APP, "uwsgi-gevent", (LATE_PATCH,), True),
    ("module-local", MODULE_LOCAL_APP, "gunicorn-gevent", ("--preload",), True),
]
CASES = [
    pytest.param(
        app,
        mode,
        args,
        connections,
        leaks,
        id="-".join([label, mode, *(a.lstrip("-") for a in args), connections]),
        marks=[NO_FLASK] if app == FLASK_THREAD_LOCAL_APP else [],
    )
    for label, app, mode, args, leaks in RUNS
    # innermost: both patterns share one server; keep-alive only where it can run
    for connections in applicable_patterns(MODES[mode].traits)
]
TABLE = derive_table()


@pytest.mark.live
@pytest.mark.parametrize(("app", "mode", "args", "connections", "leaks"), CASES)
def test_observe_catches_state_shared_across_greenlets(
    app: str,
    mode: str,
    args: tuple[str, ...],
    connections: t.Any,
    leaks: bool,
    shared_server: t.Any,
    drive: t.Any,
    assert_exercised: t.Any,
    describe_run: t.Any,
) -> None:
    if app in THREAD_LOCAL_APPS:
        # An OS-thread-local is what the thread-ident backend models.
        assert leaks == TABLE["thread-ident", mode, connections].can_leak
    server = shared_server(mode, app=app, backend="contextvar", extra_args=args)
    assert server.effective["app"] == app, server.effective
    if app == MODULE_LOCAL_APP:
        # Whatever threading.local was when the app was imported: derived from when the server
        # monkey-patches, which its arguments may change (traits_for).
        cell = derive_expectation("app", MODULE_THREAD_LOCAL, mode, server.traits, connections)
        assert leaks == cell.can_leak, cell
    if mode == "gunicorn-gevent":
        assert server.effective["gevent_patched"] is True, server.effective
    if mode == "uwsgi-gevent":
        # What the workers saw when they imported the app agrees with the declared order.
        assert server.effective["monkey_patch"] == server.traits.monkey_patch, server.effective

    result = drive(server, connections)

    summary = describe_run(result, server)
    assert result.requests == 300, summary
    assert result.errors == 0, summary
    assert_exercised(result, mode, connections, traits=server.traits)
    if not leaks:
        assert result.leaks == 0, summary
        return
    assert result.leaks > 0 and result.evidence, f"observe() missed the shared state: {summary}"
    for evidence in result.evidence:
        # Only the app's own state leaks; the framework's contexts stay isolated.
        assert (evidence.phase, evidence.name) == ("after_request", NAME), summary
        assert evidence.mode == mode, evidence
        assert evidence.seen is not None and evidence.seen != evidence.expected, evidence
        assert evidence.seen.split("-")[0] == t.cast(str, evidence.expected).split("-")[0], (
            f"expected another client's token of this run: {evidence}"
        )
