"""No "no leak" verdict on requests that were not checked, from every command.

A server that comes up and then fails every probe request (resets the connection, or answers
500 because the app raised) leaves nothing checked: ``ctxbench run`` must exit 2 with one line
that says so, never 0 with "0 leaks" (:mod:`scenarios.apps.failing`). The app is a tiny Flask
app under the werkzeug dev server (one process, a second or so per run).
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

APP = "scenarios.apps.failing:create_app"
MODE = "werkzeug-threaded"


def _run(app: str, run_dir: Path) -> list[str]:
    return [
        "run", "--app", app, "--modes", MODE, "--connections", "fresh", "--duration", "0.3",
        "--repeats", "1", "--warmup", "0.1", "--concurrency", "4", "--run-dir", str(run_dir),
    ]  # fmt: skip


def _one_error_line(err: str) -> None:
    """One ``ctxbench: error:`` line and no traceback (the progress lines are stderr's too)."""
    assert sum(line.startswith("ctxbench: error: ") for line in err.splitlines()) == 1, err
    assert "Traceback" not in err, err


def test_a_cell_whose_every_request_was_reset_has_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable(MODE)
    status = main(_run(f"{APP}('reset')", tmp_path / "run"))
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "too few requests were checked" in captured.err and "x reset" in captured.err
    _one_error_line(captured.err)
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["cells"]
    assert cell["errors"] == cell["requests"] > 0 and cell["error_kinds"].get("reset"), cell
    report = (tmp_path / "run" / "report.md").read_text()
    verdict = "**Verdict: NONE: most requests got no answer that could be checked"
    assert verdict in report, report[:600]
    assert "every request saw only its own values" not in report


def test_a_cell_whose_app_raised_on_every_request_has_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_unavailable(MODE)
    status = main(_run(f"{APP}('raise')", tmp_path / "run"))
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "x 500" in captured.err and "the app failed on them" in captured.err, captured.err
    _one_error_line(captured.err)


def test_a_soak_whose_app_answered_in_the_probes_place_has_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rate limiter lets the first requests through, then answers 429: `soak` says what `run`
    # says (exit 2, the app answered in the probe's place), not "a failing cell" (exit 1).
    skip_unavailable(MODE)
    pytest.importorskip("psutil", reason="the soak samples processes with psutil")
    status = main([
        "soak", "--mode", MODE, "--minutes", "0.05", "--concurrency", "4", "--app",
        "scenarios.apps.auth_gate:create_app('429', allow=5)", "--run-dir", str(tmp_path / "run"),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "neither 2xx nor 5xx" in captured.err and "soak werkzeug-threaded" in captured.err
    _one_error_line(captured.err)
    (soak,) = json.loads((tmp_path / "run" / "results.json").read_text())["soaks"]
    assert soak["error_kinds"]["other-status"] == soak["errors"] > 0, soak
    assert all(sample["rps"] >= 0 for sample in soak["load"]), soak["load"]


@pytest.mark.timeout(60)
def test_chaos_loads_end_at_max_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --round-requests and --after-requests go up to 1,000,000: each load of a fault cell ends
    # at --max-seconds too, and every request sent is still accounted for (verdict ok).
    skip_unavailable(MODE)
    status = main([
        "chaos", "--faults", "abort", "--modes", MODE, "--connections", "fresh",
        "--concurrency", "4", "--round-requests", "1000000", "--after-requests", "1000000",
        "--max-seconds", "1", "--run-dir", str(tmp_path / "run"),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["faults"]
    assert cell["verdict"] == "ok" and 0 < cell["requests"] < 100_000, cell
    assert 0 < cell["after"]["requests"] < 100_000, cell["after"]
    assert cell["elapsed_s"] < 30, cell["elapsed_s"]


def test_chaos_whose_app_answered_in_the_probes_place_has_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `chaos` says what `run` says (exit 2), not "a failing cell" (exit 1); and it stops
    # waiting for the server to recover as soon as the app answers a probe request itself (it
    # waited out its 20 s for a run of probe requests that could never succeed).
    skip_unavailable(MODE)
    status = main([
        "chaos", "--faults", "abort", "--modes", MODE, "--connections", "fresh",
        "--concurrency", "4", "--round-requests", "100", "--after-requests", "50",
        "--app", "scenarios.apps.auth_gate:create_app('429', allow=5)",
        "--run-dir", str(tmp_path / "run"),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "neither 2xx nor 5xx" in captured.err and "abort werkzeug-threaded" in captured.err
    _one_error_line(captured.err)
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["faults"]
    assert cell["errors"]["other-status"] > 0 and cell["after"] is None, cell
    assert cell["elapsed_s"] < 10, cell["elapsed_s"]
