"""harness.verdict: hand-built probe bodies, clean and leaking, and bodies that are not probes."""

from __future__ import annotations

import dataclasses
import json
import typing as t

import pytest

from harness.protocol import PHASES
from harness.verdict import (
    MAX_SEEN,
    Evidence,
    ProbeChecker,
    ProbeProtocolError,
    Unit,
    check_probe_response,
    examine_probe_response,
    observation_names,
    printable,
)

TOKEN = "run1-3-17"
APP = "probe_app"
WORKER = {"pid": 4242, "thread": 140001, "greenlet": 140002}


def clean_obs(token: str = TOKEN) -> list[list[t.Any]]:
    return [
        ["entry", "residue.request_context", None],
        ["entry", "residue.app_context", None],
        ["before_request", "residue.g", None],
        ["before_request", "residue.session", None],
        ["before_request", "request", token],
        ["before_request", "current_app", APP],
        ["view", "request", token],
        ["view", "g", token],
        ["view", "session", token],
        ["view", "current_app", APP],
        ["after_request", "request", token],
        ["after_request", "g", token],
        ["after_request", "current_app", APP],
        ["teardown_request", "request", token],
        ["teardown_request", "g", token],
        ["teardown_appcontext", "g", token],
        ["teardown_appcontext", "current_app", APP],
    ]


def body(
    *,
    token: t.Any = TOKEN,
    app: t.Any = APP,
    worker: t.Any = None,
    obs: t.Any = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    doc = {
        "token": token,
        "app": app,
        "worker": dict(WORKER) if worker is None else worker,
        "obs": clean_obs() if obs is None else obs,
    }
    for key in drop:
        del doc[key]
    return json.dumps(doc).encode()


def replace(obs: list[list[t.Any]], phase: str, name: str, seen: t.Any) -> list[list[t.Any]]:
    hits = [o for o in obs if o[0] == phase and o[1] == name]
    assert hits, (phase, name)
    for o in hits:
        o[2] = seen
    return obs


def test_clean_response_has_no_evidence() -> None:
    assert check_probe_response(TOKEN, 200, body(), mode="gunicorn-sync") == []


def test_examine_returns_the_unit() -> None:
    verdict = examine_probe_response(TOKEN, 200, body(), mode="m")
    assert verdict.unit == (4242, 140001, 140002)
    assert verdict.evidence == []


def test_null_greenlet_is_accepted() -> None:
    worker = {"pid": 1, "thread": 2, "greenlet": None}
    assert examine_probe_response(TOKEN, 200, body(worker=worker), mode="m").unit == (1, 2, None)


def test_another_requests_token_is_a_leak() -> None:
    obs = replace(clean_obs(), "view", "request", "run1-5-2")
    [ev] = check_probe_response(TOKEN, 200, body(obs=obs), mode="gunicorn-gevent")
    assert ev == Evidence("gunicorn-gevent", "view", "request", TOKEN, "run1-5-2", Unit(**WORKER))


def test_residue_must_be_null() -> None:
    obs = replace(clean_obs(), "entry", "residue.request_context", "run1-3-16")
    obs = replace(obs, "before_request", "residue.g", "<active>")
    evidence = check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert [(e.phase, e.name, e.expected, e.seen) for e in evidence] == [
        ("entry", "residue.request_context", None, "run1-3-16"),
        ("before_request", "residue.g", None, "<active>"),
    ]


def test_current_app_must_equal_the_response_app() -> None:
    obs = replace(clean_obs(), "teardown_appcontext", "current_app", "other_app")
    [ev] = check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert (ev.name, ev.expected, ev.seen) == ("current_app", APP, "other_app")


def test_current_app_equal_to_the_token_is_still_a_leak() -> None:
    obs = replace(clean_obs(), "view", "current_app", TOKEN)
    [ev] = check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert ev.expected == APP


def test_missing_value_and_error_markers_are_leaks() -> None:
    obs = replace(clean_obs(), "view", "g", None)
    obs = replace(obs, "after_request", "request", "<error: RuntimeError>")
    evidence = check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert [(e.name, e.seen) for e in evidence] == [
        ("g", None),
        ("request", "<error: RuntimeError>"),
    ]


def test_observed_names_must_equal_the_token() -> None:
    obs = [*clean_obs(), ["view", "user", TOKEN], ["teardown_request", "cache", "stale"]]
    [ev] = check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert (ev.phase, ev.name, ev.expected, ev.seen) == (
        "teardown_request",
        "cache",
        TOKEN,
        "stale",
    )


def test_echoed_token_must_be_the_clients() -> None:
    [ev] = check_probe_response(TOKEN, 200, body(token="run1-9-9"), mode="m")
    assert (ev.name, ev.expected, ev.seen) == ("token", TOKEN, "run1-9-9")


def test_a_response_for_another_client_is_all_leaks() -> None:
    other = "run1-0-1"
    evidence = check_probe_response(TOKEN, 200, body(token=other, obs=clean_obs(other)), mode="m")
    non_residue = [o for o in clean_obs() if not o[1].startswith("residue.")]
    non_app = [o for o in non_residue if o[1] != "current_app"]
    assert len(evidence) == 1 + len(non_app)
    assert {e.seen for e in evidence} == {other}


def test_evidence_is_frozen_and_serialisable() -> None:
    obs = replace(clean_obs(), "view", "request", "x")
    [ev] = check_probe_response(TOKEN, 200, body(obs=obs), mode="werkzeug-threaded")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.seen = "y"  # type: ignore[misc]
    d = ev.to_dict()
    assert d == {
        "mode": "werkzeug-threaded",
        "phase": "view",
        "name": "request",
        "expected": TOKEN,
        "seen": "x",
        "unit": WORKER,
    }
    assert Evidence.from_dict(json.loads(json.dumps(d))) == ev
    text = str(ev)
    for part in ("werkzeug-threaded", "view", "request", TOKEN, "'x'", "4242", "140001", "140002"):
        assert part in text


DEEP = b'{"token": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_an_observation_name_is_kept_printable() -> None:
    """A name with an escape sequence went as it was to the terminal's evidence table, its list
    of the app's own names, and both reports: a target set the window title, cleared the screen."""
    name = "evil\x1b]0;pwned\x07\x1b[2J"
    raw = body(obs=[*clean_obs(), ["view", name, "other"]])
    (ev,) = check_probe_response(TOKEN, 200, raw, mode="m")
    assert ev.name == "evil\\x1b]0;pwned\\x07\\x1b[2J"
    assert ev.name in observation_names(raw)
    assert printable("y" * 150) == "y" * 100 + "..."


def test_a_long_seen_value_is_kept_cut_with_its_length() -> None:
    """A 500 KB value in 362 leaking responses made a 20 MB results.json, two 20 MB reports and
    2.5 MB of terminal output for a 2 s run."""
    long = "<script>" + "A" * 500_000
    (ev,) = check_probe_response(
        TOKEN, 200, body(obs=[*clean_obs(), ["view", "g", long]]), mode="m"
    )
    assert ev.seen == long[:MAX_SEEN] + "... (500,008 characters)"
    (ev,) = check_probe_response(
        TOKEN, 200, body(obs=[*clean_obs(), ["view", "g", "x" * MAX_SEEN]]), mode="m"
    )
    assert ev.seen == "x" * MAX_SEEN


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        pytest.param(b"Internal Server Error", "not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "not a JSON object", id="not-object"),
        pytest.param(body(obs=[]), "'obs' is missing or empty", id="empty-obs"),
        pytest.param(body(drop=("obs",)), "'obs' is missing or empty", id="no-obs"),
        pytest.param(body(drop=("token",)), "'token' is missing", id="no-token"),
        # Leaks of 'saw 12345' or 'saw nan', a value no request carried.
        pytest.param(body(token=12345), "'token' is neither a string nor null", id="token-int"),
        pytest.param(body(token=float("nan")), "'token' is neither", id="token-nan"),
        pytest.param(body(drop=("app",)), "'app'", id="no-app"),
        pytest.param(body(app=3), "'app'", id="app-not-string"),
        pytest.param(body(worker="w"), "'worker'", id="worker-not-object"),
        pytest.param(
            body(worker={"pid": "1", "thread": 2, "greenlet": None}), "'worker'", id="pid"
        ),
        pytest.param(body(worker={"pid": 1, "thread": 2}), "'worker'", id="no-greenlet-key"),
        pytest.param(body(obs=[["view", "request"]]), "not \\[phase, name, seen\\]", id="short"),
        pytest.param(body(obs=[["view", 1, TOKEN]]), "non-string", id="name-not-string"),
        pytest.param(body(obs=[["view", "request", 3]]), "not a string", id="seen-not-string"),
        pytest.param(body(obs=[["later", "request", TOKEN]]), "unknown phase", id="unknown-phase"),
        # json.loads raised RecursionError, which stopped the load driver with a traceback.
        pytest.param(DEEP, "JSON nested too deep to read", id="deeply-nested"),
    ],
)
def test_not_a_probe_response(raw: bytes, match: str) -> None:
    with pytest.raises(ProbeProtocolError, match=match):
        check_probe_response(TOKEN, 200, raw, mode="m")
    with pytest.raises(ProbeProtocolError, match=match):
        ProbeChecker("m").examine(TOKEN, 200, raw)


def test_observation_names_of_what_is_not_a_probe_response_are_none() -> None:
    assert observation_names(DEEP) == ()
    assert observation_names(b"[1]") == ()


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_a_missing_phase_is_a_protocol_error(phase: str) -> None:
    obs = [o for o in clean_obs() if o[0] != phase]
    with pytest.raises(ProbeProtocolError, match=f"no observations from phase\\(s\\) {phase}") as e:
        check_probe_response(TOKEN, 200, body(obs=obs), mode="m")
    assert e.value.reason == f"no observations from phase(s) {phase}"  # for a message of one's own
    assert ProbeProtocolError("a message", "in a few words").reason == "in a few words"


def test_a_probe_that_records_only_entry_cannot_pass() -> None:
    obs = [o for o in clean_obs() if o[0] == "entry"]
    with pytest.raises(ProbeProtocolError, match="before_request"):
        check_probe_response(TOKEN, 200, body(obs=obs), mode="m")


@pytest.mark.parametrize("status", [201, 204, 302, 404, 500])
def test_non_200_status_is_not_evidence(status: int) -> None:
    with pytest.raises(ProbeProtocolError, match=f"got {status}"):
        check_probe_response(TOKEN, status, body(), mode="m")


def test_protocol_error_is_a_value_error_with_the_body_excerpt() -> None:
    with pytest.raises(ValueError, match="Body starts b'oops'"):
        check_probe_response(TOKEN, 200, b"oops", mode="m")


def test_verdict_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, harness.verdict;"
        "bad = [m for m in ('flask', 'gevent', 'locust', 'core', 'socket') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
