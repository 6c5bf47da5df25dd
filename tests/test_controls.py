"""harness.controls in process: each control breaks what it says, and only that."""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Iterator

import pytest

import core
from harness import backends, controls
from harness.controls import CONTROLS
from harness.expectations import LeakTraits, derive_table
from harness.probe import install_probe
from harness.probe.state import InjectedFailure
from harness.protocol import FAIL_PHASES, PROBE_PATH
from harness.verdict import Evidence, check_probe_response


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    controls.restore()
    backends.restore_default()


def probe_app(name: str = "controls_test") -> t.Any:
    app = core.App(name)
    app.config["SECRET_KEY"] = "controls test key"
    return install_probe(app, enabled=True)


def get(app: t.Any, token: str, fail: str | None = None) -> list[Evidence]:
    query = f"token={token}" + (f"&fail={fail}" if fail else "")
    resp = app.test_client().get(f"{PROBE_PATH}?{query}")
    return check_probe_response(token, resp.status_code, resp.data, mode="in-process")


def while_other_request_is_inside(app: t.Any, other: str) -> list[Evidence]:
    """Run probe request ``other`` in a thread while request "mine" is mid-view here."""
    inside, done = threading.Event(), threading.Event()
    box: list[list[Evidence]] = []

    @app.route("/hold")
    def hold() -> str:
        inside.set()
        done.wait(5)
        return "held"

    thread = threading.Thread(target=lambda: app.test_client().get("/hold"))
    thread.start()
    assert inside.wait(5)
    try:
        box.append(get(app, other))
    finally:
        done.set()
        thread.join(5)
    return box[0]


def test_registry_and_unknown_name() -> None:
    assert list(CONTROLS) == [
        "shared-app-slot",
        "shared-request-slot",
        "shared-session",
        "pop-skipped-on-session-error",
        "teardown-skips-pop",
        "before-first-request-race",
    ]
    assert not set(CONTROLS) & set(backends.BACKENDS)
    with pytest.raises(ValueError, match="Unknown negative control 'nope'"):
        controls.install("nope")


def test_correct_core_is_clean_under_the_same_overlap() -> None:
    app = probe_app()
    assert while_other_request_is_inside(app, "other") == []


@pytest.mark.parametrize(
    ("name", "seen_names"),
    [
        ("shared-app-slot", {"residue.app_context"}),
        ("shared-request-slot", {"residue.request_context"}),
    ],
)
def test_one_shared_slot_breaks_only_its_proxies(name: str, seen_names: set[str]) -> None:
    control = controls.install(name)
    app = probe_app()
    evidence = while_other_request_is_inside(app, "other")
    names = {e.name for e in evidence}
    assert names >= seen_names, evidence
    assert names <= control.breaks, evidence


def test_shared_session_breaks_only_the_session() -> None:
    control = controls.install("shared-session")
    app = probe_app()

    @app.route("/remember")
    def remember() -> str:
        core.session["_ctxbench_token"] = "someone-else"
        return "ok"

    app.test_client().get("/remember")
    evidence = get(app, "mine")
    assert {e.name for e in evidence} == {"residue.session"}
    assert {e.name for e in evidence} <= control.breaks


def in_one_thread(fn: t.Callable[[], t.Any]) -> t.Any:
    """Run ``fn`` in a new thread (one unit, whose stale contexts die with it); return its
    result or raise its exception here."""
    box: list[t.Any] = []

    def run() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:
            box.append(("raised", exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    kind, value = box[0]
    if kind == "raised":
        raise value
    return value


LIFECYCLE = [name for name, (control, _) in CONTROLS.items() if control.kind == "lifecycle"]


def fail_between_two(app: t.Any, phase: str) -> tuple[list[Evidence], bool, list[Evidence]]:
    """In one new thread: a probe request, one made to fail at ``phase``, and one after it.
    Return the first's evidence, whether the failure escaped the app, and the last's evidence."""

    def three_requests() -> tuple[list[Evidence], bool, list[Evidence]]:
        before = get(app, "before")
        try:
            app.test_client().get(f"{PROBE_PATH}?token=failed&fail={phase}")
            escaped = False
        except InjectedFailure:
            escaped = True  # the error reached the server
        return before, escaped, get(app, "after")

    rv: tuple[list[Evidence], bool, list[Evidence]] = in_one_thread(three_requests)
    return rv


@pytest.mark.parametrize("phase", FAIL_PHASES)
@pytest.mark.parametrize("name", LIFECYCLE)
def test_a_failure_leaves_behind_what_the_control_declares_for_its_phase(
    name: str, phase: str
) -> None:
    # One thread serves the three requests, as a pool thread or a worker's main thread does:
    # whatever the failure leaves pushed, the next request finds on entry.
    control = controls.install(name)
    leak = None if control.fail_phase is None else control.leak_after(phase)

    before, escaped, evidence = fail_between_two(probe_app(), phase)

    assert before == []
    if leak is None:
        assert (escaped, evidence) == (False, [])
        return
    assert escaped == leak.traits.error_escapes
    names = {e.name for e in evidence}
    assert names and names <= leak.breaks, evidence
    # the failed request's own context (its g is empty when it failed before the probe's hook)
    assert "failed" in {e.seen for e in evidence if e.phase == "entry"} <= {"failed", "<active>"}


@pytest.mark.parametrize(
    ("name", "phase", "seen_names"),
    [
        ("pop-skipped-on-session-error", "session", {"residue.request_context"}),
        ("teardown-skips-pop", "teardown_request", {"residue.request_context"}),
        ("teardown-skips-pop", "teardown_appcontext", {"residue.app_context"}),
    ],
)
def test_lifecycle_mutant_leaves_the_failed_request_behind(
    name: str, phase: str, seen_names: set[str]
) -> None:
    control = controls.install(name)
    assert phase in control.leak_phases

    _, _, evidence = fail_between_two(probe_app(), phase)

    found = {(e.phase, e.name): e.seen for e in evidence}
    assert {found[("entry", n)] for n in seen_names} == {"failed"}, evidence


@pytest.mark.parametrize("phase", FAIL_PHASES)
def test_correct_core_cleans_up_after_the_same_failures(phase: str) -> None:
    app = probe_app()
    app.test_client().get(f"{PROBE_PATH}?token=failed&fail={phase}")
    assert get(app, "after") == []


def _race_first_requests(app: t.Any, n: int = 4) -> list[Evidence]:
    """``n`` first requests at once, every one of them inside the once-only trigger before the
    first one's initializer returns; then the probe's verdict on a later request."""
    arrived = threading.Condition()
    at_trigger: list[str] = []
    trigger = app._try_trigger_before_first_request  # the core's, or the mutant's

    def counting_trigger() -> None:
        with arrived:
            at_trigger.append(threading.current_thread().name)
            arrived.notify_all()
        trigger()

    app._try_trigger_before_first_request = counting_trigger
    all_in: list[bool] = []

    @app.before_first_request
    def slow_init() -> None:
        # I/O while initializing is the window the race needs: hold it open until every first
        # request has reached the trigger (a sleep would only make the overlap likely).
        with arrived:
            all_in.append(arrived.wait_for(lambda: len(at_trigger) >= n, timeout=10))

    threads = [threading.Thread(target=get, args=(app, f"first-{i}")) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads), "a first request never finished"
    assert all_in and all(all_in), f"the first requests did not overlap: {at_trigger}"
    return get(app, "later")


def test_before_first_request_race_is_counted() -> None:
    control = controls.install("before-first-request-race")
    evidence = _race_first_requests(probe_app())
    assert [e.name for e in evidence] == ["residue.before_first_request"]
    assert evidence[0].seen == "<ran 4 times in this process>"
    assert {e.name for e in evidence} <= control.breaks


def test_before_first_request_runs_once_on_the_correct_core() -> None:
    assert _race_first_requests(probe_app()) == []


def test_expectations_follow_the_traits() -> None:
    from harness.expectations import registered_mode_traits

    modes = registered_mode_traits()
    table = derive_table()
    for mode, traits in modes.items():
        for connections in ("keepalive", "fresh"):
            cell = controls.expectation("shared-app-slot", mode, traits, connections)
            assert cell.can_leak == table["shared-global", mode, connections].can_leak
            cell = controls.expectation(
                "teardown-skips-pop", mode, traits, connections, "teardown_request"
            )
            assert cell.can_leak == table["no-reset", mode, connections].can_leak
    # An escaping error closes the connection: a greenlet per connection serves nothing after.
    gevent = modes["gunicorn-gevent"]
    assert not controls.expectation(
        "pop-skipped-on-session-error", "gunicorn-gevent", gevent, "keepalive", "session"
    ).can_leak
    assert controls.expectation(
        "pop-skipped-on-session-error",
        "gunicorn-gthread",
        modes["gunicorn-gthread"],
        "fresh",
        "session",
    ).can_leak


def test_every_lifecycle_cell_has_a_verdict_for_every_fail_phase() -> None:
    # Run with another --fail-phase than a control's own, the model said nothing at all
    # (runner.expectation_for recorded None): teardown-skips-pop at teardown_appcontext leaves
    # the app context behind, a leak neither expected nor judged.
    from harness.expectations import registered_mode_traits

    table = derive_table()
    for mode, traits in registered_mode_traits().items():
        for connections in ("keepalive", "fresh"):
            for phase in FAIL_PHASES:
                td = controls.expectation("teardown-skips-pop", mode, traits, connections, phase)
                if not td.applicable:
                    continue
                leaves = phase in ("teardown_request", "teardown_appcontext")
                # the stale context is the no-reset backend's leak
                no_reset = table["no-reset", mode, connections]
                assert td.can_leak == (leaves and no_reset.can_leak), (mode, phase, td)
                pop = controls.expectation(
                    "pop-skipped-on-session-error", mode, traits, connections, phase
                )
                session = controls.expectation(
                    "pop-skipped-on-session-error", mode, traits, connections, "session"
                )
                assert pop.can_leak == (phase == "session" and session.can_leak)
                race = controls.expectation(
                    "before-first-request-race", mode, traits, connections, phase
                )
                assert race == controls.expectation(
                    "before-first-request-race", mode, traits, connections
                )

    gthread = registered_mode_traits()["gunicorn-gthread"]
    cell = controls.expectation(
        "teardown-skips-pop", "gunicorn-gthread", gthread, "keepalive", "teardown_appcontext"
    )
    assert cell.can_leak
    assert cell.reason.startswith("A failure at teardown_appcontext leaves the app context pushed;")
    cell = controls.expectation(
        "teardown-skips-pop", "gunicorn-gthread", gthread, "keepalive", "view"
    )
    assert not cell.can_leak
    assert cell.reason == (
        "A failure at view is answered with a 500 inside wsgi_app's try, and its contexts are"
        " popped as on the correct core: only a failure at teardown_request or"
        " teardown_appcontext leaves one behind"
    )
    cell = controls.expectation("teardown-skips-pop", "gunicorn-gthread", gthread, "keepalive")
    assert not cell.can_leak
    assert "(--fail-phase teardown_request or teardown_appcontext)" in cell.reason
    with pytest.raises(ValueError, match="Unknown fail phase 'lunch'"):
        controls.expectation("teardown-skips-pop", "gunicorn-gthread", gthread, "fresh", "lunch")


def test_a_control_declares_its_phases_consistently() -> None:
    traits = LeakTraits(scope="context", resets=False)
    leak = controls.PhaseLeak("the app context", traits, frozenset({"residue.app_context"}))
    with pytest.raises(ValueError, match="got fail_phase 'lunch'"):
        controls.Control("x", "", "lifecycle", traits, frozenset(), "lunch", "the contexts")
    with pytest.raises(ValueError, match="also_leaks_at \\['view'\\]"):
        controls.Control("x", "", "lifecycle", traits, frozenset(), also_leaks_at={"view": leak})
    with pytest.raises(ValueError, match="say what a failure at 'view' leaves pushed"):
        controls.Control("x", "", "lifecycle", traits, frozenset(), "view")
