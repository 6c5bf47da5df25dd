"""Starved users, live: where a server pins a kept-alive connection, and where it does not.

uWSGI's ``--http11-socket`` keeps a kept-alive connection on its worker process until the client
closes it, so with 16 keep-alive users and 2 processes, 2 users are served for the whole run and
the 14 others wait for its end: the driver must say 14 users were starved. The negative controls
must stay silent: the same uWSGI server on fresh connections, and gunicorn's gthread worker on
keep-alive connections (2 processes of 4 threads, fewer than the users too, but a kept-alive
connection goes back to the poller between requests). Each measurement (the scenarios' load:
16 users, the view sleeping 2 ms under uWSGI, 10 ms under gthread) lasts 1 s, after a warm-up:
a user is starved past a wait of 0.5 s, and the longest wait of any user under the controls was
20-65 ms here (246 ms on a cold server, without the warm-up).
"""

from __future__ import annotations

import typing as t

import pytest

from harness.apps import CORE_APP
from harness.load import LoadResult

USERS = 16  # the scenarios' concurrency (conftest.CONCURRENCY)
WORKERS = 2


@pytest.fixture
def measure(drive: t.Any) -> t.Callable[..., LoadResult]:
    """``measure(server, connections)``: a warm-up, then one measurement of 1 s, as ``ctxbench
    run`` does."""

    def run(server: t.Any, connections: str) -> LoadResult:
        drive(server, connections, requests=None, duration=0.3)
        result: LoadResult = drive(server, connections, requests=None, duration=1.0)
        return result

    return run


def describe(result: LoadResult) -> str:
    waits = sorted(round(w) for w in result.longest_waits_ms)
    return (
        f"starved={result.starved} requests={result.requests} errors={result.error_kinds}"
        f" leaks={result.leaks}; each user's longest wait (ms): {waits}"
    )


@pytest.mark.live
def test_uwsgi_processes_starves_keepalive_users_and_not_fresh_ones(
    live_server: t.Any, measure: t.Any
) -> None:
    server = live_server("uwsgi-processes", app=CORE_APP, workers=WORKERS)
    kept = measure(server, "keepalive")
    fresh = measure(server, "fresh")
    for result in (kept, fresh):
        assert result.errors == 0 and result.leaks == 0, describe(result)
    assert kept.starved == USERS - WORKERS, describe(kept)
    assert fresh.starved == 0, describe(fresh)


@pytest.mark.live
def test_gunicorn_gthread_starves_no_keepalive_user(live_server: t.Any, measure: t.Any) -> None:
    server = live_server("gunicorn-gthread", app=CORE_APP, workers=WORKERS, threads=4)
    result = measure(server, "keepalive")
    assert result.errors == 0 and result.leaks == 0, describe(result)
    assert result.starved == 0, describe(result)
