"""ctxbench on a Flask app as users have it: an auth hook that answers in the probe's place.

Most internal apps turn away a request without a logged-in user in a ``before_request`` hook
(:mod:`scenarios.apps.auth_gate`). Such an app answers every probe request itself (a 401, a
redirect to ``/login``, a rate limiter's 429), so no request reaches the probe's view and
nothing is checked. ``ctxbench run`` must then exit 2 with one line that says who answered and
what to do, never 0 with "0 leaks" from requests it never checked; an app whose hook lets probe
requests through (as the README says) is checked like any other.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from harness.cli import main
from scenarios.conftest import skip_unavailable

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(importlib.util.find_spec("flask") is None, reason="flask is not installed"),
]

APP = "scenarios.apps.auth_gate:create_app"
MODE = "werkzeug-threaded"  # one process: a rate limiter's count is the whole server's


def _run(app: str, run_dir: Path) -> list[str]:
    return [
        "run", "--app", app, "--modes", MODE, "--connections", "fresh", "--duration", "0.3",
        "--repeats", "1", "--warmup", "0.1", "--concurrency", "4", "--run-dir", str(run_dir),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param("401", "answered 401 from the app itself", id="401"),
        pytest.param("302", "answered 302 (a redirect to /login) from the app itself", id="302"),
    ],
)
def test_an_auth_hook_that_answers_every_probe_request_is_a_one_line_error(
    answer: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable(MODE)
    status = main(_run(f"{APP}({answer!r})", tmp_path / "run"))
    err = capsys.readouterr().err
    assert status == 2, err
    assert says in err and "before_request hooks" in err and "current_token()" in err, err
    assert err.count("\n") == 1, err  # one line, no traceback


def test_a_rate_limiter_that_answers_most_requests_is_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable(MODE)
    # The first requests pass (the server comes up), then every answer is a 429: a run whose
    # only checked requests are those few must not exit 0 with "0 leaks".
    status = main(_run(f"{APP}('429', allow=5)", tmp_path / "run"))
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "x 429" in captured.err and "never checked" in captured.err, captured.err
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    (cell,) = doc["cells"]
    assert cell["error_statuses"]["429"] == cell["errors"] > 0, cell


def test_a_gate_that_lets_probe_requests_through_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable(MODE)
    status = main(_run(f"{APP}(exempt=True)", tmp_path / "run"))
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["cells"]
    assert cell["errors"] == 0 and cell["leaks"] == 0 and cell["requests"] > 0, cell
    assert "auth_user" in cell["observed"], cell
