"""The per-proxy negative controls and the lifecycle mutants, live (harness.controls).

Each control breaks one thing. Where its traits say it can leak, the harness must report leaks,
and only on the observation names it can break (``Control.breaks``): a control that breaks the
app slot must show through ``g`` or ``current_app`` and never through ``request``, so each of the
probe's readings is shown to detect something on its own. Where it cannot leak, no leak and a run
that exercised what the mode does. Lifecycle mutants leak only after a failed request: the
driver makes a tenth of the requests fail at the control's phase (``fail=<phase>``).

CI runs a representative cell per control (one that must leak, one that must not, where they
differ); ``CTXBENCH_FULL_MATRIX=1`` runs every mode and pattern.
"""

from __future__ import annotations

import os
import typing as t

import pytest

from harness.apps import CORE_APP
from harness.controls import CONTROLS, expectation
from harness.load.spec import CONNECTION_PATTERNS
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
