"""The negative controls: every context-storage mutant under every mode and connection pattern.

Where :mod:`harness.expectations` says a mutant can leak, the harness must report leaks, with
evidence naming the mode, the phase, the expected and the seen value and the worker; where it
says the mutant cannot leak, the harness must report none (a leak that cannot happen is a bug in
the harness, not in the app). Errors are allowed for mutants (a broken storage may break a
request) and recorded as test properties. A zero-leak cell counts only if the run exercised what
the mode is said to do (``assert_exercised`` in ``conftest.py``). One server per (backend, mode)
serves both connection patterns.

The first test pins the derived table to a literal one: changing a mode's or a backend's traits
changes what the harness expects, and that must be a conscious decision.
"""

from __future__ import annotations

import typing as t

import pytest

from harness.apps import CORE_APP
from harness.backends import BACKENDS
from harness.expectations import (
    BACKEND_TRAITS,
    applicable_patterns,
    derive_table,
    proxied_mode_traits,
    render_markdown,
)
from harness.load.spec import CONNECTION_PATTERNS
from harness.protocol import PHASES
from harness.servers import MODES, get_mode, proxied_modes

MUTANTS = ("shared-global", "thread-ident", "no-reset")


def _both(*modes: str) -> set[tuple[str, str]]:
    return {(mode, pattern) for mode in modes for pattern in ("keepalive", "fresh")}


#: Where each backend can leak: (mode, connection pattern) cells. Every other cell cannot leak.
EXPECTED_LEAKS: dict[str, set[tuple[str, str]]] = {
    "contextvar": set(),
    # Wherever requests overlap in one process: not where a process serves one at a time
    # (gunicorn sync and tornado, uWSGI processes).
    "shared-global": _both(
        "werkzeug-threaded",
        "gunicorn-gthread",
        "gunicorn-gevent",
        "waitress",
        "eventlet",
        "uwsgi-threads",
        "granian",
    )
    | {("uwsgi-gevent", "fresh")},
    # Across greenlets of one OS thread.
    "thread-ident": _both("gunicorn-gevent", "eventlet") | {("uwsgi-gevent", "fresh")},
    # Wherever a thread or greenlet serves a later request in the context an earlier one set:
    # not with a new thread or greenlet per connection (or per request), nor under tornado,
    # which runs every request in a fresh copy of the context.
    "no-reset": _both(
        "gunicorn-sync",
        "gunicorn-gthread",
        "waitress",
        "uwsgi-processes",
        "uwsgi-threads",
        "granian",
    )
    | {("gunicorn-gevent", "keepalive"), ("eventlet", "keepalive")},
    # A memory leak, not cross-talk: only a soak catches it (scenarios/test_soak.py).
    "never-release": set(),
}

#: (mode, connection pattern) cells that cannot run: the server cannot keep connections alive
#: and does not say so. They are never run and cannot leak.
NOT_APPLICABLE: set[tuple[str, str]] = {("uwsgi-gevent", "keepalive")}

#: The same for nginx in front of gunicorn-gevent (``proxied_modes()``). Behind ``nginx`` every
#: request is a new upstream connection (no residue under gevent, whatever the client does); behind
#: ``nginx-keepalive`` upstream connections go from client to client (residue under gevent even
#: for clients on fresh connections).
EXPECTED_PROXIED_LEAKS: dict[str, set[tuple[str, str]]] = {
    "contextvar": set(),
    "shared-global": {
        ("nginx+gunicorn-gevent", "keepalive"),
        ("nginx+gunicorn-gevent", "fresh"),
        ("nginx-keepalive+gunicorn-gevent", "keepalive"),
        ("nginx-keepalive+gunicorn-gevent", "fresh"),
    },
    "thread-ident": {
        ("nginx+gunicorn-gevent", "keepalive"),
        ("nginx+gunicorn-gevent", "fresh"),
        ("nginx-keepalive+gunicorn-gevent", "keepalive"),
        ("nginx-keepalive+gunicorn-gevent", "fresh"),
    },
    "no-reset": {
        ("nginx-keepalive+gunicorn-gevent", "keepalive"),
        ("nginx-keepalive+gunicorn-gevent", "fresh"),
    },
    "never-release": set(),
}

TABLE = derive_table()
PROXIED_TABLE = derive_table(proxied_mode_traits())


def test_derived_table_is_the_expected_one() -> None:
    assert set(BACKEND_TRAITS) == set(BACKENDS), "every backend needs traits, and only those"
    assert set(MODES) >= {"werkzeug-threaded", "gunicorn-sync", "gunicorn-gthread",
                          "gunicorn-gevent"}  # fmt: skip
    cells = {(b, m, c) for b in BACKENDS for m in MODES for c in CONNECTION_PATTERNS}
    assert set(TABLE) == cells
    derived = {
        backend: {(m, c) for (b, m, c), cell in TABLE.items() if b == backend and cell.can_leak}
        for backend in BACKENDS
    }
    assert derived == EXPECTED_LEAKS, render_markdown(TABLE)
    not_applicable = {(m, c) for (_, m, c), cell in TABLE.items() if not cell.applicable}
    assert not_applicable == NOT_APPLICABLE, render_markdown(TABLE)
    for cell in TABLE.values():
        assert cell.reason, cell


def test_derived_proxied_table_is_the_expected_one() -> None:
    modes = proxied_modes()
    assert modes == ["nginx+gunicorn-gevent", "nginx-keepalive+gunicorn-gevent"]
    cells = {(b, m, c) for b in BACKENDS for m in modes for c in CONNECTION_PATTERNS}
    assert set(PROXIED_TABLE) == cells
    derived = {
        backend: {
            (m, c) for (b, m, c), cell in PROXIED_TABLE.items() if b == backend and cell.can_leak
        }
        for backend in BACKENDS
    }
    assert derived == EXPECTED_PROXIED_LEAKS, render_markdown(PROXIED_TABLE)


CASES = [
    pytest.param(backend, mode, connections, id=f"{backend}-{mode}-{connections}")
    for backend in MUTANTS
    for mode in [*MODES, *proxied_modes()]
    # innermost: both patterns share one server; keep-alive only where it can run
    for connections in applicable_patterns(get_mode(mode).traits)
]


@pytest.mark.live
@pytest.mark.parametrize(("backend", "mode", "connections"), CASES)
def test_mutant_leaks_exactly_where_it_can(
    backend: str,
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    drive: t.Any,
    assert_exercised: t.Any,
    describe_run: t.Any,
    record_property: t.Callable[[str, object], None],
) -> None:
    expectation = {**TABLE, **PROXIED_TABLE}[backend, mode, connections]
    server = shared_server(mode, app=CORE_APP, backend=backend)
    assert server.effective["storage"] == backend, server.effective

    result = drive(server, connections)

    record_property("errors", result.errors)
    record_property("error_kinds", result.error_kinds)
    record_property("leaks", result.leaks)
    summary = describe_run(result, server)
    assert result.requests == 300, summary
    if not expectation.can_leak:
        assert result.leaks == 0, (
            f"the harness reported leaks of {backend} under {mode}/{connections}, where none can"
            f" happen: {expectation.reason}.\n{summary}"
        )
        assert_exercised(result, mode, connections)
        return

    assert result.leaks > 0 and result.evidence, (
        f"the harness missed the leaks of {backend} under {mode}/{connections}:"
        f" {expectation.reason}.\n{summary}"
    )
    worker_pids = set(server.effective["worker_pids"])
    for evidence in result.evidence:
        assert evidence.mode == mode, evidence
        assert evidence.phase in PHASES, evidence
        assert evidence.seen != evidence.expected, evidence
        assert evidence.unit.pid in worker_pids, (evidence, worker_pids)
        assert isinstance(evidence.unit.thread, int), evidence
    traits = BACKEND_TRAITS[backend]
    if not traits.resets:
        # Residue: what an earlier request left set, seen before this one set anything.
        assert any(e.name.startswith("residue.") for e in result.evidence), summary
    if traits.scope != "context":
        # Cross-talk: another client's token of this same run, seen by this request.
        assert any(_is_other_token(e.seen, e.expected) for e in result.evidence), summary


def _is_other_token(seen: str | None, expected: str | None) -> bool:
    # The driver's tokens are "<run>-<user>-<seq>".
    if seen is None or expected is None or seen == expected:
        return False
    return seen.split("-")[0] == expected.split("-")[0] and seen.count("-") == 2
