"""The per-proxy negative controls and the lifecycle mutants, live (harness.controls).

Each control breaks one thing. Where its traits say it can leak, the harness must report leaks,
and only on the observation names it can break (``Control.breaks``): a control that breaks the
app slot must show through ``g`` or ``current_app`` and never through ``request``, so each of the
probe's readings is shown to detect something on its own. Where it cannot leak, no leak and a run
that exercised what the mode does. Lifecycle mutants leak only after a failed request: the
driver makes a tenth of the requests fail at the control's phase (``fail=<phase>``).

Whether a failure leaves a context behind depends on its phase, and the model says so for every
phase (:meth:`harness.controls.Control.leak_after`): each lifecycle control is run with its
requests failing at every phase of ``FAIL_PHASES``, on a server of its own (what one cell leaves
behind must not show in the next), under a pool of threads and a greenlet per connection, and
must leak where the model says it can and nowhere else. The race control is run the same way on
the corpus's app, whose first requests overlap while it initializes: failures never make it show
through anything but its own count.

CI runs a representative cell per control (one that must leak, one that must not, where they
differ) and the 36 phase cells on :data:`PHASE_MODES` (54 to 123 s on 2 cores at a load of 6
to 9); ``CTXBENCH_FULL_MATRIX=1`` runs every mode and pattern.
"""

from __future__ import annotations

import os
import typing as t

import pytest

from harness.apps import CORE_APP
from harness.controls import CONTROLS, expectation
from harness.expectations import situation
from harness.load.spec import CONNECTION_PATTERNS
from harness.protocol import FAIL_PHASES
from harness.servers import MODES

FULL = os.environ.get("CTXBENCH_FULL_MATRIX") == "1"
FAIL_FRACTION = 0.1

#: The cells CI runs: (control, mode, connections).
CI_CELLS = {
    ("shared-app-slot", "gunicorn-gthread", "keepalive"),
    ("shared-app-slot", "gunicorn-sync", "fresh"),
    ("shared-request-slot", "gunicorn-gevent", "keepalive"),
    ("shared-session", "gunicorn-gthread", "fresh"),
    ("pop-skipped-on-session-error", "gunicorn-gthread", "keepalive"),
    ("pop-skipped-on-session-error", "gunicorn-gevent", "keepalive"),
    ("teardown-skips-pop", "gunicorn-gevent", "keepalive"),
    ("teardown-skips-pop", "gunicorn-gevent", "fresh"),
}
#: The names that show each proxy control on its own: at least one must be in its evidence.
SHOWN_BY = {
    "shared-app-slot": {"g", "current_app", "residue.g", "residue.app_context"},
    "shared-request-slot": {"request", "token", "residue.request_context"},
    "shared-session": {"session", "residue.session"},
    "pop-skipped-on-session-error": {"residue.request_context"},
    "teardown-skips-pop": {"residue.request_context"},
}

CASES = [
    pytest.param(name, mode, connections, id=f"{name}-{mode}-{connections}")
    for name, (control, _) in CONTROLS.items()
    if control.traits.chance is None  # a race is measured by `ctxbench corpus`, not asserted
    for mode in MODES
    for connections in CONNECTION_PATTERNS
    if FULL or (name, mode, connections) in CI_CELLS
]


def test_ci_cells_exist() -> None:
    assert {(n, m, c) for n, m, c in CI_CELLS if m in MODES} <= {
        (n, m, c) for n in CONTROLS for m in MODES for c in CONNECTION_PATTERNS
    }


@pytest.mark.live
@pytest.mark.parametrize(("name", "mode", "connections"), CASES)
def test_control_leaks_where_it_can_through_what_it_breaks(
    name: str,
    mode: str,
    connections: t.Any,
    shared_server: t.Any,
    drive: t.Any,
    assert_exercised: t.Any,
    describe_run: t.Any,
    record_property: t.Callable[[str, object], None],
) -> None:
    control = CONTROLS[name][0]
    cell = expectation(name, mode, MODES[mode].traits, connections, control.fail_phase)
    server = shared_server(mode, app=CORE_APP, backend=name)
    fail = {"fail_phase": control.fail_phase, "fail_fraction": FAIL_FRACTION}

    result = drive(server, connections, **(fail if control.fail_phase else {}))

    record_property("errors", result.errors)
    summary = describe_run(result, server)
    assert result.requests == 300, summary
    if control.fail_phase:
        assert result.injected == 30, summary
    if not cell.can_leak:
        assert result.leaks == 0, (
            f"{name} reported leaking under {mode}/{connections}, where it cannot:"
            f" {cell.reason}.\n{summary}"
        )
        assert_exercised(result, mode, connections)
        return
    assert result.leaks > 0, f"missed {name} under {mode}/{connections}: {cell.reason}\n{summary}"
    names = {e.name for e in result.evidence}
    assert names <= control.breaks, f"{name} showed through {names - control.breaks}: {summary}"
    assert names & SHOWN_BY[name], summary


#: The modes every lifecycle control runs under at every fail phase: pool threads that outlive
#: their connections, and a greenlet per connection, which a kept-alive connection reuses and an
#: escaping error ends.
PHASE_MODES = ("gunicorn-gthread", "gunicorn-gevent")
#: What shows a context left by a failure at each phase: the stale context a later request finds
#: on entry (the request context when it stays, else the app context).
SHOWN_AFTER = {
    "session": {"residue.request_context"},
    "teardown_request": {"residue.request_context"},
    "teardown_appcontext": {"residue.app_context"},
}
#: The app the race control runs on: its before_first_request does I/O, the window a race needs.
RACE_APP = "harness.corpus.entries.e7_lifecycle_mutants:app"

PHASE_CASES = [
    pytest.param(name, mode, connections, phase, id=f"{name}-{mode}-{connections}-{phase}")
    for name, (control, _) in CONTROLS.items()
    if control.kind == "lifecycle"
    for mode in (MODES if FULL else PHASE_MODES)
    for connections in (CONNECTION_PATTERNS if FULL else ("keepalive",))
    if situation(MODES[mode].traits, connections).applicable
    for phase in FAIL_PHASES
]


@pytest.mark.live
@pytest.mark.parametrize(("name", "mode", "connections", "phase"), PHASE_CASES)
def test_a_lifecycle_control_leaks_after_a_failure_where_the_model_says(
    name: str,
    mode: str,
    connections: t.Any,
    phase: str,
    live_server: t.Any,
    drive: t.Any,
    assert_exercised: t.Any,
    describe_run: t.Any,
    record_property: t.Callable[[str, object], None],
) -> None:
    control = CONTROLS[name][0]
    cell = expectation(name, mode, MODES[mode].traits, connections, phase)
    race = control.fail_phase is None
    server = live_server(mode, app=RACE_APP if race else CORE_APP, backend=name)

    result = drive(server, connections, fail_phase=phase, fail_fraction=FAIL_FRACTION)

    names = {e.name for e in result.evidence}
    record_property("leaks", result.leaks)
    record_property("names", ",".join(sorted(names)))
    summary = describe_run(result, server)
    assert result.requests == 300, summary
    assert result.injected == 30, summary
    if race:
        # A chance leak: whether it shows is not asserted, only that a failure at any phase
        # leaves nothing else behind.
        assert cell == expectation(name, mode, MODES[mode].traits, connections)
        assert names <= control.breaks, f"{name} showed through {names - control.breaks}: {summary}"
        return
    if not cell.can_leak:
        assert result.leaks == 0, (
            f"{name} with requests failing at {phase} reported leaking under {mode}/{connections},"
            f" where it cannot: {cell.reason}.\n{summary}"
        )
        assert_exercised(result, mode, connections)
        return
    leak = control.leak_after(phase)
    assert leak is not None
    assert result.leaks > 0, (
        f"missed {name} with requests failing at {phase} under {mode}/{connections}:"
        f" {cell.reason}\n{summary}"
    )
    assert names <= leak.breaks, f"{name} showed through {names - leak.breaks}: {summary}"
    assert names & SHOWN_AFTER[phase], summary


@pytest.mark.live
def test_a_driver_that_reuses_tokens_fails_a_live_scenario(
    shared_server: t.Any,
    drive: t.Any,
    assert_clean: t.Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A driver bug: every request of a user carries the same token. A leak from the user's own
    # previous request would then look right, so the probe reports the reused token itself.
    from harness.load import driver

    begin = driver._Run._begin

    def begin_with_reused_token(self: t.Any, user: t.Any) -> None:
        user.seq = 0
        begin(self, user)

    monkeypatch.setattr(driver._Run, "_begin", begin_with_reused_token)
    mode = "gunicorn-gthread"
    server = shared_server(mode, app=CORE_APP, backend="contextvar")

    result = drive(server, "keepalive")

    with pytest.raises(AssertionError):
        assert_clean(result, server, mode, "keepalive")
    assert result.leaks > 0
    assert {(e.phase, e.name) for e in result.evidence} == {("entry", "residue.token")}
