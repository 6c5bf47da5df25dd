"""Apps built by an application factory (``--app 'pkg:create_app()'``), as real Flask projects are.

Each server process that loads the app calls the factory (:mod:`harness.wsgi`), with the literal
arguments of the import string, and the probe is mounted on what it returns. The factory app of
:mod:`scenarios.apps.factory` is served under modes that load the app in different places: the
werkzeug dev server in its one process, gunicorn in each worker after the fork, uWSGI in its
master before the fork (``app_loaded_in`` of the effective configuration says which processes
called the factory). It must be clean there, and its leaky twin (the current user in a
module-level dict), under gunicorn ``--preload`` (the factory called once, in the master), must
be caught through its own ``observe()`` name, not the framework's.
"""

from __future__ import annotations

import importlib.util
import json
import typing as t
import urllib.request

import pytest

from harness.expectations import applicable_patterns
from harness.protocol import PROBE_PATH
from harness.servers import MODES

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(importlib.util.find_spec("flask") is None, reason="flask is not installed"),
]

NAME = "factory_user"  # scenarios.apps.factory.NAME: the module imports flask
FACTORY = "scenarios.apps.factory:create_app('ctxbench-factory-app')"
LEAKY_FACTORY = "scenarios.apps.factory:create_app('ctxbench-leaky-factory', leaky=True)"

CLEAN = [
    pytest.param(mode, connections, id=f"{mode}-{connections}")
    for mode in ("werkzeug-threaded", "gunicorn-gthread", "uwsgi-processes")
    for connections in applicable_patterns(MODES[mode].traits)
]


def _probe_app_name(url: str) -> str:
    with urllib.request.urlopen(f"{url}{PROBE_PATH}?token=factory-check", timeout=5) as resp:
        return str(json.load(resp)["app"])


@pytest.mark.parametrize(("mode", "connections"), CLEAN)
def test_factory_app_is_isolated(
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    drive: t.Any,
    assert_clean: t.Any,
    describe_run: t.Any,
) -> None:
    server = shared_server(mode, app=FACTORY)
    effective = server.effective
    assert effective["app"] == FACTORY, effective
    # The factory ran with the string's argument, and the probe was mounted on its app.
    assert _probe_app_name(server.url) == "ctxbench-factory-app"
    # It ran in each process that loaded the app: every worker, or uWSGI's master before the fork.
    loaders = [effective["master_pid"]] if mode == "uwsgi-processes" else effective["worker_pids"]
    assert effective["app_loaded_in"] == loaders, effective

    result = drive(server, connections)

    assert_clean(result, server, mode, connections)
    assert NAME in result.observed, describe_run(result, server)


def test_factory_app_leak_is_caught(
    shared_server: t.Any, drive: t.Any, describe_run: t.Any
) -> None:
    mode = "gunicorn-gthread"
    # --preload: the factory runs once, in the master, and every worker serves a copy of its app.
    server = shared_server(mode, app=LEAKY_FACTORY, extra_args=("--preload",))
    assert server.effective["app_loaded_in"] == [server.effective["master_pid"]], server.effective

    result = drive(server, "keepalive")

    summary = describe_run(result, server)
    assert result.errors == 0, summary
    assert result.leaks > 0 and result.evidence, f"observe() missed the shared dict: {summary}"
    for evidence in result.evidence:
        # Only the app's own state leaks; the framework's contexts stay isolated.
        assert (evidence.phase, evidence.name) == ("after_request", NAME), summary
        assert evidence.mode == mode, evidence
        assert evidence.seen is not None and evidence.seen != evidence.expected, evidence
